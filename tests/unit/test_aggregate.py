import copy
import json
import pickle
from functools import reduce
from pathlib import Path

import numpy as np
import pytest

from camflow.transforms.aggregate import WindowCounts, summarise
from camflow.transforms.detections import Detections, FrameAnalysis

PERSON, CAR = 0, 2
T0 = 1_700_000_000_000
AGGREGATE_SCHEMA = Path(__file__).parents[2] / "schemas" / "aggregate.avsc"


def summary(persons=0, cars=0, person_ids=(), car_ids=(), capture_ms=T0, sequence=0):
    counts = {k: v for k, v in (("person", persons), ("car", cars)) if v}
    ids = {k: list(v) for k, v in (("person", person_ids), ("car", car_ids)) if v}
    return {
        "camera_id": "cam-1",
        "capture_ms": capture_ms,
        "sequence": sequence,
        "counts_by_class": counts,
        "track_ids_by_class": ids,
    }


def add_all(summaries, acc=None):
    return reduce(WindowCounts.add, summaries, acc or WindowCounts.create())


def test_summarise_counts_confident_or_tracked_objects_and_lists_track_ids():
    detections = Detections(
        xyxy=np.zeros((5, 4)),
        class_id=[PERSON, PERSON, PERSON, CAR, CAR],
        confidence=[0.9, 0.3, 0.2, 0.8, 0.7],
        tracker_id=[5, 3, -1, -1, 8],
    )
    analysis = FrameAnalysis(
        camera_id="cam-1", capture_ms=T0, sequence=42, width=640, height=360, jpeg=b"\xff\xd8",
        detections=detections, image=np.zeros((360, 640, 3), np.uint8),
    )
    result = summarise(analysis, min_confidence=0.5)
    assert result == {
        "camera_id": "cam-1",
        "capture_ms": T0,
        "sequence": 42,
        # person 0.9 (confident), person 0.3 (tracked, counted), person 0.2 (neither);
        # car 0.8 (confident), car 0.7 (confident and tracked).
        "counts_by_class": {"person": 2, "car": 2},
        "track_ids_by_class": {"person": [3, 5], "car": [8]},
        "line_crossings": {},
    }
    # Only primitives: nothing of the image or arrays travels into the window.
    assert len(pickle.dumps(result)) < 500
    assert all(type(v) is int for v in result["counts_by_class"].values())


def test_summarise_empty_frame():
    analysis = FrameAnalysis(camera_id="c", capture_ms=1, sequence=2, width=1, height=1, jpeg=b"")
    assert summarise(analysis) == {
        "camera_id": "c", "capture_ms": 1, "sequence": 2,
        "counts_by_class": {}, "track_ids_by_class": {}, "line_crossings": {},
    }


def test_window_result_exact_values():
    acc = add_all([
        summary(persons=2, person_ids=[1, 2], sequence=1),
        summary(persons=3, cars=1, person_ids=[1, 2, 3], car_ids=[7], sequence=2),
        summary(persons=1, person_ids=[3], sequence=3),
        summary(sequence=4),  # an empty frame still counts towards the means
    ])
    assert WindowCounts.result(acc, "cam-1", T0, T0 + 60_000) == {
        "camera_id": "cam-1",
        "window_start_ms": T0,
        "window_end_ms": T0 + 60_000,
        "frames": 4,
        "counts_by_class": {"car": 1, "person": 3},
        "mean_by_class": {"car": 0.25, "person": 1.5},
        "unique_tracks": 4,
        "unique_tracks_by_class": {"car": 1, "person": 3},
        "line_crossings": {},
    }


def test_empty_window_result():
    assert WindowCounts.result(WindowCounts.create(), "cam-1", 0, 10) == {
        "camera_id": "cam-1", "window_start_ms": 0, "window_end_ms": 10, "frames": 0,
        "counts_by_class": {}, "mean_by_class": {}, "unique_tracks": 0,
        "unique_tracks_by_class": {}, "line_crossings": {},
    }


def test_result_satisfies_the_avro_contract():
    fastavro = pytest.importorskip("fastavro")
    schema = fastavro.parse_schema(json.loads(AGGREGATE_SCHEMA.read_text()))
    acc = add_all([summary(persons=2, cars=1, person_ids=[1, 2], car_ids=[3])])
    result = WindowCounts.result(acc, "cam-1", T0, T0 + 60_000)
    assert fastavro.validation.validate(result, schema, raise_errors=True)
    assert set(result) <= {f["name"] for f in schema["fields"]}


def test_add_leaves_the_summary_untouched():
    a = add_all([summary(persons=2, person_ids=[1, 2])])
    b = add_all([summary(persons=1, cars=2, person_ids=[3], car_ids=[4])])
    a_before, b_before = copy.deepcopy(a), copy.deepcopy(b)
    frame = summary(persons=5, person_ids=[9])
    frame_before = copy.deepcopy(frame)
    WindowCounts.add(a, frame)
    assert (a, b, frame) == (a_before, b_before, frame_before)


def test_accumulator_survives_pickle():
    acc = add_all([summary(persons=2, person_ids=[1, 2]), summary(cars=1, car_ids=[5])])
    assert pickle.loads(pickle.dumps(acc)) == acc


def test_line_crossings_are_counted_per_window():
    analysis = FrameAnalysis(camera_id="c", capture_ms=1, sequence=2, width=1, height=1, jpeg=b"")
    analysis.crossings = [{"line_id": "gate", "track_id": 4, "class": "car", "direction": "a_to_b", "time_ms": 1},
                          {"line_id": "gate", "track_id": 5, "class": "car", "direction": "a_to_b", "time_ms": 1},
                          {"line_id": "gate", "track_id": 6, "class": "person", "direction": "b_to_a", "time_ms": 1}]
    both = WindowCounts.add(WindowCounts.add(WindowCounts.create(), summarise(analysis)),
                            summarise(analysis))
    assert WindowCounts.result(both, "c", 0, 10)["line_crossings"] == {
        "gate:a_to_b:car": 4, "gate:b_to_a:person": 2}
