"""Motion gating: run the object detector only on frames in which something moved.

Most CCTV cameras look at a scene that is still most of the time (a quay at night, an empty
gate). The detector is the most expensive per-frame step, so a camera whose view has not changed
since the detector last ran reuses that run's detections: the tracker still sees the objects
(their tracks stay alive and keep their ids), the scene rules still count dwell time, and
recognition is still bounded per track by its own policy.

The test is cheap frame differencing at low resolution: a blurred grey thumbnail of the frame
against the thumbnail of the frame the detector last saw (not the previous frame, so that slow
drift adds up until it counts). The detector runs anyway when too much time has passed
(``max_reuse_ms``), so an object that stopped in view is confirmed from time to time.

State (per camera, plain values so it checkpoints): the reference thumbnail as bytes and its
shape, when the detector last ran, and that run's raw detections as lists.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .detections import Detections

# model_versions entry of an analysis whose detections were carried over from an earlier frame
REUSED = ("motion-gate", "reused")


class MotionGateConfig(BaseModel):
    """When a frame counts as still, so that the detector's last output is reused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="run the detector only on frames that changed")
    thumbnail_width: int = Field(96, ge=16, le=1024, description="width of the compared grey thumbnail")
    pixel_threshold: int = Field(18, ge=1, le=255, description=(
        "grey-level change that counts as a changed pixel (after blur)"))
    min_changed_fraction: float = Field(0.004, ge=0, le=1, description=(
        "share of thumbnail pixels that must change for the detector to run"))
    max_reuse_ms: int = Field(5_000, ge=0, description=(
        "the detector runs at least this often per camera (event time)"))


@dataclass
class GateDecision:
    detect: bool
    changed_fraction: float  # 1.0 when there was nothing to compare with
    reason: str  # "first" | "resized" | "motion" | "stale" | "still" | "disabled"
    state: dict[str, Any]


# A thumbnail is at most this many times as tall as ``thumbnail_width``: a frame taller than
# that (a 1x65500 strip passes any pixel limit) is fitted into width x 4*width instead of being
# scaled to the width -- 96 x 6,288,000 pixels, gigabytes, written into keyed state.
MAX_THUMBNAIL_ASPECT = 4


def thumbnail(image_bgr: np.ndarray, width: int) -> np.ndarray:
    """Blurred grey thumbnail: sensor noise and JPEG artefacts must not count as motion.

    ``width`` wide, the frame's aspect kept, except that it fits in ``width`` x
    ``MAX_THUMBNAIL_ASPECT * width``: at most ``4 * width**2`` pixels, whatever the frame."""
    h, w = image_bgr.shape[:2]
    if h < 1 or w < 1:
        raise ValueError(f"cannot make a thumbnail of an empty {w}x{h} image")
    max_height = MAX_THUMBNAIL_ASPECT * width
    scale = min(width / w, max_height / h)
    size = (max(1, min(width, round(w * scale))), max(1, min(max_height, round(h * scale))))
    small = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
    return cv2.GaussianBlur(grey, (5, 5), 0)


def changed_fraction(reference: np.ndarray, current: np.ndarray, pixel_threshold: int) -> float:
    diff = cv2.absdiff(reference, current)
    return float(np.count_nonzero(diff > pixel_threshold)) / diff.size


class MotionGate:
    def __init__(self, config: MotionGateConfig = MotionGateConfig()):
        self.config = config

    def decide(self, state: dict | None, image_bgr: np.ndarray, now_ms: int) -> GateDecision:
        """Whether the detector must run on this frame. The caller then calls ``ran`` (the
        detector ran: new reference) or ``reused`` (it did not: take the last detections)."""
        cfg = self.config
        if not cfg.enabled:
            return GateDecision(True, 1.0, "disabled", state or {})
        thumb = thumbnail(image_bgr, cfg.thumbnail_width)
        state = dict(state or {})
        state["candidate"] = thumb.tobytes()
        state["candidate_shape"] = list(thumb.shape)
        if "reference" not in state or state.get("detections") is None:
            return GateDecision(True, 1.0, "first", state)
        if list(thumb.shape) != state["reference_shape"]:
            return GateDecision(True, 1.0, "resized", state)
        reference = np.frombuffer(state["reference"], np.uint8).reshape(state["reference_shape"])
        fraction = changed_fraction(reference, thumb, cfg.pixel_threshold)
        if fraction >= cfg.min_changed_fraction:
            return GateDecision(True, fraction, "motion", state)
        if now_ms - state["detected_ms"] >= cfg.max_reuse_ms or now_ms < state["detected_ms"]:
            return GateDecision(True, fraction, "stale", state)
        return GateDecision(False, fraction, "still", state)

    @staticmethod
    def ran(decision: GateDecision, detections: Detections, now_ms: int) -> dict[str, Any]:
        """The detector ran on this frame: it becomes the reference."""
        state = decision.state
        if "candidate" in state:
            state["reference"] = state.pop("candidate")
            state["reference_shape"] = state.pop("candidate_shape")
        state["detected_ms"] = now_ms
        state["detections"] = {"xyxy": detections.xyxy.tolist(),
                               "confidence": detections.confidence.tolist(),
                               "class_id": detections.class_id.tolist()}
        return state

    @staticmethod
    def reused(decision: GateDecision, class_names: tuple[str, ...]) -> tuple[Detections, dict]:
        """The frame is still: the reference run's detections, untracked (the tracker matches
        them to their tracks again)."""
        state = decision.state
        state.pop("candidate", None)
        state.pop("candidate_shape", None)
        last = state["detections"]
        return Detections(xyxy=np.asarray(last["xyxy"], np.float32).reshape(-1, 4),
                          confidence=last["confidence"], class_id=last["class_id"],
                          class_names=class_names), state


def gated_detections(gate: MotionGate, state: dict | None, image_bgr: np.ndarray, now_ms: int,
                     detector: Callable[[np.ndarray], Detections],
                     class_names: tuple[str, ...]) -> tuple[Detections, dict, GateDecision]:
    """The detector's output for this frame, or the last run's when the frame is still;
    returns the detections, the gate's new state and its decision."""
    decision = gate.decide(state, image_bgr, now_ms)
    if decision.detect:
        detections = detector(image_bgr)
        return detections, gate.ran(decision, detections, now_ms), decision
    detections, state = gate.reused(decision, class_names)
    return detections, state, decision
