import pickle

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from camflow.transforms.scene import CountingLine, Scene, Zone, draw_scene, line_normal

SQUARE = [(0.1, 0.1), (0.5, 0.1), (0.5, 0.5), (0.1, 0.5)]

SCENE_YAML = """
zones:
  - id: pier-gate
    kind: restricted
    polygon: [[0.6, 0.2], [0.9, 0.2], [0.9, 0.6], [0.6, 0.6]]
    min_inside_ms: 2000
  - id: taxi-rank
    kind: no_parking
    polygon: [[0.0, 0.7], [0.4, 0.7], [0.4, 1.0], [0.0, 1.0]]
    max_stopped_ms: 300000
  - id: plaza
    kind: crowd
    polygon: [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]
    max_people: 40
lines:
  - id: exit-lane
    points: [[0.0, 0.5], [1.0, 0.5]]
    direction: a_to_b
    classes: [car, motorcycle]
running:
  min_speed: 2.5
"""


def test_yaml_scene_loads_with_defaults_filled_in():
    scene = Scene.model_validate(yaml.safe_load(SCENE_YAML))
    gate, rank, plaza = scene.zones
    assert gate.classes == ["person"] and gate.severity == "critical" and gate.min_inside_ms == 2000
    assert rank.classes == ["car", "motorcycle", "bus", "truck"] and rank.severity == "warning"
    assert plaza.max_people == 40
    assert scene.lines[0].points == ((0.0, 0.5), (1.0, 0.5))
    assert scene.running.min_speed == 2.5 and scene.fall.enabled
    assert scene.zone("pier-gate") is gate and scene.zone("nope") is None
    assert pickle.loads(pickle.dumps(scene)) == scene


def test_empty_scene_is_valid():
    scene = Scene()
    assert scene.zones == [] and scene.lines == [] and scene.dispersal.enabled


def test_closed_ring_is_accepted_and_normalised():
    zone = Zone(id="z", kind="loiter", polygon=SQUARE + [SQUARE[0]])
    assert zone.polygon == SQUARE


@pytest.mark.parametrize("polygon, message", [
    ([(0.1, 0.1), (0.5, 0.5), (0.5, 0.1), (0.1, 0.5)], "not simple (Self-intersection"),
    ([(0.1, 0.1), (1.2, 0.1), (0.5, 0.5)], "lies outside the image"),
    ([(0.1, 0.1), (0.2, 0.2), (0.3, 0.3)], "zero area"),
    ([(0.1, 0.1), (0.1, 0.1), (0.3, 0.3)], "3 distinct points"),
    ([(0.1, 0.1), (0.3, 0.3)], "at least 3"),
])
def test_bad_polygons_are_rejected_with_a_clear_message(polygon, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        Zone(id="bad", kind="restricted", polygon=polygon)


def test_zone_errors_name_the_zone_and_the_problem():
    with pytest.raises(ValidationError, match=r"zone 'gate'.*do not apply to kind 'restricted'"):
        Zone(id="gate", kind="restricted", polygon=SQUARE, max_dwell_ms=10)
    with pytest.raises(ValidationError, match="crowd zone needs max_people"):
        Zone(id="c", kind="crowd", polygon=SQUARE)
    with pytest.raises(ValidationError, match=r"unknown class\(es\) \['persn'\]"):
        Zone(id="z", kind="loiter", polygon=SQUARE, classes=["persn"])
    with pytest.raises(ValidationError, match="id must be"):
        Zone(id="bad id", kind="loiter", polygon=SQUARE)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Zone(id="z", kind="loiter", polygon=SQUARE, colour="red")
    with pytest.raises(ValidationError):
        Zone(id="z", kind="parking", polygon=SQUARE)


def test_lines_validate_geometry():
    with pytest.raises(ValidationError, match="degenerate line"):
        CountingLine(id="l", points=((0.5, 0.5), (0.5, 0.501)))
    with pytest.raises(ValidationError, match="outside the image"):
        CountingLine(id="l", points=((0.5, 0.5), (0.5, -0.1)))
    with pytest.raises(ValidationError):
        CountingLine(id="l", points=((0.5, 0.5), (0.6, 0.5)), direction="north")


def test_duplicate_ids_across_zones_and_lines_are_rejected():
    zone = Zone(id="x", kind="loiter", polygon=SQUARE)
    line = CountingLine(id="x", points=((0, 0.5), (1, 0.5)))
    with pytest.raises(ValidationError, match="'x' is used twice"):
        Scene(zones=[zone], lines=[line])
    with pytest.raises(ValidationError, match="used twice"):
        Scene(zones=[zone, zone])


def test_fall_rule_thresholds_must_be_ordered():
    with pytest.raises(ValidationError, match="lying_ratio must be below"):
        Scene.model_validate({"fall": {"upright_ratio": 1.0, "lying_ratio": 1.2}})


def test_side_b_is_on_the_right_of_the_line_on_screen():
    # Left-to-right line: A above, B below (image y grows downwards).
    assert line_normal(CountingLine(id="l", points=((0, 0.5), (1, 0.5)))).tolist() == [-0.0, 1.0]


def test_draw_scene_draws_on_a_copy():
    scene = Scene.model_validate(yaml.safe_load(SCENE_YAML))
    image = np.zeros((360, 640, 3), np.uint8)
    drawn = draw_scene(image, scene)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert image.sum() == 0, "the input must not be drawn on"
    # Inside the restricted zone (tinted red, BGR) and on the line's row.
    assert drawn[int(0.4 * 359), int(0.75 * 639), 2] > 0
    assert drawn[int(0.5 * 359), 20].sum() > 0
    assert draw_scene(np.zeros((100, 100), np.uint8), Scene()).shape == (100, 100, 3)
