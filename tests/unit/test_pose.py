"""transforms/pose.py: posture from keypoints, the model's input and output mapping, and which
pose the person-down look-up scores. A fake ONNX session; the real model is in
tests/integration/test_falls_real.py."""
from __future__ import annotations

import numpy as np
import pytest

from camflow.transforms.pose import (KEYPOINTS, PersonDown, Pose, PoseEstimator, PostureConfig,
                                     posture)


def body(points: dict[str, tuple[float, float]], score: float = 0.8, person: float = 0.6) -> Pose:
    """A pose from named keypoints (x, y pixels); the others unseen (score 0)."""
    kp = np.zeros((17, 3), np.float32)
    for name, (x, y) in points.items():
        kp[KEYPOINTS.index(name)] = (x, y, score)
    seen = kp[kp[:, 2] > 0]
    box = (float(seen[:, 0].min()), float(seen[:, 1].min()), float(seen[:, 0].max()),
           float(seen[:, 1].max()))
    return Pose(kp, box, person)


def pair(name: str, x: float, y: float, dx: float = 10.0) -> dict[str, tuple[float, float]]:
    return {f"left_{name}": (x - dx, y), f"right_{name}": (x + dx, y)}


STANDING = body({"nose": (100, 20), **pair("shoulder", 100, 50), **pair("hip", 100, 110),
                 **pair("knee", 100, 160), **pair("ankle", 100, 210)})
LYING = body({"nose": (20, 200), **pair("shoulder", 50, 200, 0), **pair("hip", 110, 205, 0),
              **pair("knee", 160, 205, 0), **pair("ankle", 210, 208, 0)})
# On the back, knees up, feet on the floor (thanhnc58 Fall07's last second).
LYING_KNEES_UP = body({**pair("shoulder", 50, 200, 0), **pair("hip", 110, 200, 0),
                       **pair("knee", 140, 170, 0), **pair("ankle", 170, 198, 0)})
BENDING = body({"nose": (40, 110), **pair("shoulder", 55, 105, 0), **pair("hip", 110, 110, 0),
                **pair("knee", 110, 160), **pair("ankle", 110, 210)})
SITTING = body({"nose": (100, 20), **pair("shoulder", 100, 50), **pair("hip", 100, 110),
                **pair("knee", 150, 110), **pair("ankle", 150, 160)})


@pytest.mark.parametrize("pose, verdict", [
    (STANDING, "standing"), (LYING, "lying"), (LYING_KNEES_UP, "lying"), (BENDING, "other"),
    (SITTING, "other")], ids=["standing", "lying", "lying-knees-up", "bending", "sitting"])
def test_posture_verdicts(pose, verdict):
    got = posture(pose)
    assert got.verdict == verdict
    if verdict == "lying":
        assert got.torso_deg >= 80
    if verdict == "standing":
        assert got.torso_deg < 5 and got.legs_deg < 5


def test_posture_without_a_confident_torso_or_person_is_unknown():
    faint = body({**pair("shoulder", 50, 200, 0), **pair("hip", 110, 205, 0)}, score=0.1)
    assert posture(faint).verdict == "unknown"
    assert posture(LYING._replace(score=0.1)).verdict == "unknown"
    head_only = body({"nose": (10, 10), "left_eye": (12, 8)})
    assert posture(head_only).verdict == "unknown"
    # Without legs a level torso may be someone bending behind a table: unknown, and an
    # upright one is not standing.
    torso = body({**pair("shoulder", 50, 200, 0), **pair("hip", 110, 200, 0)})
    assert posture(torso).verdict == "unknown" and posture(torso).torso_deg >= 80
    upright_torso = body({**pair("shoulder", 100, 50), **pair("hip", 100, 110)})
    assert posture(upright_torso).verdict == "other"
    assert posture(LYING, PostureConfig(lying_torso_deg=89.9)).verdict == "other"


class FakeSession:
    """An ONNX session stand-in: remembers its input, answers ``rows`` ([6, 56])."""

    def __init__(self, rows: np.ndarray):
        self.rows = rows
        self.inputs = []

    def get_inputs(self):
        return [type("Input", (), {"name": "input:0"})()]

    def run(self, outputs, feeds):
        self.inputs.append(feeds["input:0"])
        return [self.rows[None]]


def person_row(y: float, x: float, score: float = 0.9, box=(0.1, 0.2, 0.9, 0.8)) -> np.ndarray:
    """One output row: every keypoint at (y, x) normalised, then ymin, xmin, ymax, xmax, score."""
    row = np.zeros(56, np.float32)
    row[:51] = np.tile([y, x, 0.8], 17)
    row[51:55] = box
    row[55] = score
    return row


def test_estimator_input_and_output_mapping():
    rows = np.zeros((6, 56), np.float32)
    rows[0] = person_row(0.5, 0.25)
    session = FakeSession(rows)
    estimator = PoseEstimator("unused.onnx", session=session)
    image = np.zeros((720, 1280, 3), np.uint8)
    image[:, :, 2] = 200  # red in BGR
    poses = estimator(image, (-100.0, 100.0, 300.0, 300.0))  # clipped to x 0..300
    tensor = session.inputs[0]
    # Region 300 x 200 -> 256 x 171, padded to 256 x 192; int32 RGB, raw 0-255.
    assert tensor.shape == (1, 192, 256, 3) and tensor.dtype == np.int32
    assert tensor[0, 0, 0].tolist() == [200, 0, 0] and tensor[0, -1, -1].tolist() == [0, 0, 0]
    assert len(poses) == 6
    scale = 256 / 300
    x, y, s = poses[0].keypoints[0]
    assert x == pytest.approx(0 + 0.25 * 256 / scale, abs=0.01)
    assert y == pytest.approx(100 + 0.5 * 192 / scale, abs=0.01)
    assert s == pytest.approx(0.8) and poses[0].score == pytest.approx(0.9)
    x1, y1, x2, y2 = poses[0].box
    assert (x1, y1) == pytest.approx((0.2 * 256 / scale, 100 + 0.1 * 192 / scale), abs=0.01)
    assert estimator(image, (5, 5, 10, 400)) == []  # too thin to look at
    with pytest.raises(ValueError):
        PoseEstimator("unused.onnx", input_size=250, session=session)


class ScriptedEstimator:
    def __init__(self, poses):
        self.poses = poses
        self.regions = []

    def __call__(self, image, region):
        self.regions.append(region)
        return self.poses


def test_person_down_picks_the_tracked_person_or_any_lying_one():
    image = np.zeros((400, 400, 3), np.uint8)
    standing_here = STANDING._replace(box=(90, 10, 110, 210))
    lying_beside = LYING._replace(box=(20, 195, 210, 210))
    estimator = ScriptedEstimator([lying_beside, standing_here])
    look = PersonDown(estimator, margin=0.5)
    # The tracked box: the pose that overlaps it, not the lying one beside it; widened by margin.
    assert look(image, (80, 10, 120, 210)).verdict == "standing"
    assert estimator.regions[-1] == (60, -90, 140, 310)
    # A search: anyone lying there counts, whoever else stands by.
    assert look(image, (0, 0, 400, 400), search=True).verdict == "lying"
    assert estimator.regions[-1] == (0, 0, 400, 400)
    assert PersonDown(ScriptedEstimator([]))(image, (0, 0, 10, 10)) is None
    faint = PersonDown(ScriptedEstimator([LYING._replace(score=0.05)]))
    assert faint(image, (0, 0, 400, 400), search=True) is None
    elsewhere = PersonDown(ScriptedEstimator([standing_here]), margin=0.0)
    assert elsewhere(image, (300, 300, 350, 390)) is None
