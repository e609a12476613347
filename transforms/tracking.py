"""Per-camera multi-object tracking: IoU matching in the two stages of ByteTrack.

The tracker is a pure function ``update(state, detections, capture_ms)``: all memory lives in
``TrackerState``, a dataclass of primitives that the job keeps in Flink keyed state (one per
camera) and that pickles or round-trips through ``to_dict``/``from_dict``. The same frames in
the same order always give the same ids, so a job restored from a checkpoint continues exactly
where it left off.

Why ByteTrack's two stages: a partly occluded person is often detected with low confidence.
Matching confident detections first and then letting low-confidence ones extend *existing*
tracks keeps ids through occlusion without letting low-confidence noise start new tracks.

Why event-time expiry (``max_age_ms``) rather than a count of missed frames: the sampler skips
frames when nothing moves and frame rates differ per camera, so "3 frames" means nothing;
"2 seconds of capture time" means the same on every camera.

Motion model: a constant velocity per box corner (pixels per ms, smoothed), used only to
predict where a track should be at this frame's time before matching. It is what keeps two
people who walk past each other from swapping ids, and what lets a track that went unseen for
a few frames be found again a few pixels further on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from .detections import Detections

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TrackerConfig:
    # Detections at or above this start tracks and are matched first (ByteTrack's track_thresh).
    high_confidence: float = 0.5
    # Detections below this are ignored; between the two they may only extend confirmed tracks.
    low_confidence: float = 0.1
    # Minimum IoU between a predicted track box and a detection for each stage. ByteTrack uses
    # a cost limit of 0.8 (IoU >= 0.2) for confident detections and 0.5 for weak ones.
    min_iou_high: float = 0.2
    min_iou_low: float = 0.5
    # Consecutive matches before a track is confirmed and its id is reported.
    min_hits: int = 3
    # Capture-time gap after which an unmatched track ends.
    max_age_ms: int = 2_000
    # Weight of the newest displacement in the smoothed velocity (1.0: no smoothing).
    velocity_smoothing: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_confidence <= self.high_confidence:
            raise ValueError("need 0 <= low_confidence <= high_confidence")
        if self.min_hits < 1 or self.max_age_ms < 0:
            raise ValueError("need min_hits >= 1 and max_age_ms >= 0")
        if not 0.0 < self.velocity_smoothing <= 1.0:
            raise ValueError("velocity_smoothing must be in (0, 1]")


@dataclass
class Track:
    """One object followed across frames. ``box`` is the last matched detection's box."""

    track_id: int
    class_id: int
    box: Box
    first_seen_ms: int
    last_seen_ms: int
    hits: int = 1
    misses: int = 0  # frames processed since the last match
    confidence: float = 0.0
    velocity: Box = (0.0, 0.0, 0.0, 0.0)  # pixels per ms for x1, y1, x2, y2


@dataclass
class TrackerState:
    """Everything the tracker remembers about one camera between frames."""

    next_id: int = 1
    tracks: list[Track] = field(default_factory=list)
    last_frame_ms: int | None = None
    # Tracks ever confirmed on this camera: a running "unique objects" counter for dashboards.
    confirmed_total: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, lists and numbers, independent of this module's import path (so state
        written by ``transforms.tracking`` still loads as ``camflow.transforms.tracking``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrackerState":
        tracks = [
            Track(**{**t, "box": tuple(t["box"]),
                     "velocity": tuple(t.get("velocity", (0.0, 0.0, 0.0, 0.0)))})
            for t in data.get("tracks", [])
        ]
        return cls(
            next_id=data.get("next_id", 1),
            tracks=tracks,
            last_frame_ms=data.get("last_frame_ms"),
            confirmed_total=data.get("confirmed_total", 0),
        )


class TrackUpdate(NamedTuple):
    state: TrackerState
    # The input detections, same rows and order, with tracker_id set for rows matched to a
    # confirmed track and -1 for the rest (tentative tracks, unmatched low-confidence rows).
    detections: Detections
    # Confirmed tracks that expired at this update (last matched more than max_age_ms ago).
    ended: list[Track]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of two xyxy box arrays."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def _match(
    track_boxes: np.ndarray,
    track_classes: np.ndarray,
    det_boxes: np.ndarray,
    det_classes: np.ndarray,
    min_iou: float,
) -> list[tuple[int, int]]:
    """(track index, detection index) pairs: the assignment with the largest total IoU among
    same-class pairs with IoU >= min_iou."""
    if len(track_boxes) == 0 or len(det_boxes) == 0:
        return []
    iou = box_iou(track_boxes, det_boxes)
    # Zeroing invalid pairs before assigning (not filtering after) keeps one bad pair from
    # pulling the optimum away from a valid one.
    iou[(track_classes[:, None] != det_classes[None, :]) | (iou < min_iou)] = 0.0
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] > 0.0]


class IouTracker:
    """Stateless operator: ``update`` maps (state, frame) to (state', tracked frame, ended)."""

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        self.config = config

    def is_confirmed(self, track: Track) -> bool:
        return track.hits >= self.config.min_hits

    def expire(self, state: TrackerState, now_ms: int) -> tuple[TrackerState, list[Track]]:
        """Drop tracks unmatched for more than ``max_age_ms`` at ``now_ms``; returns the new
        state and the confirmed ones that ended. For event-time timers when a camera goes quiet."""
        live, ended = [], []
        for track in state.tracks:
            if now_ms - track.last_seen_ms > self.config.max_age_ms:
                if self.is_confirmed(track):
                    ended.append(replace(track))
            else:
                live.append(replace(track))
        return replace(state, tracks=live), ended

    def _predicted_box(self, track: Track, capture_ms: int) -> Box:
        # Late (out-of-order) frames get no extrapolation backwards in time.
        elapsed = max(0, capture_ms - track.last_seen_ms)
        return tuple(c + v * elapsed for c, v in zip(track.box, track.velocity))  # type: ignore

    def _absorb(self, track: Track, box: Box, confidence: float, capture_ms: int) -> None:
        """Move ``track`` to a newly matched detection."""
        elapsed = capture_ms - track.last_seen_ms
        if elapsed > 0:
            measured = tuple((n - o) / elapsed for n, o in zip(box, track.box))
            # The first measurement is taken as is; smoothing it against the initial zero
            # would halve the speed of every new track.
            weight = 1.0 if track.hits == 1 else self.config.velocity_smoothing
            track.velocity = tuple(
                weight * m + (1.0 - weight) * v for m, v in zip(measured, track.velocity)
            )  # type: ignore[assignment]
            track.last_seen_ms = capture_ms
        track.box = box
        track.confidence = confidence
        track.hits += 1
        track.misses = 0

    def update(self, state: TrackerState, detections: Detections, capture_ms: int) -> TrackUpdate:
        """Match one frame's detections to ``state``'s tracks. ``state`` is not modified."""
        config = self.config
        state, ended = self.expire(state, capture_ms)
        tracks = state.tracks  # fresh copies, ours to change
        next_id = state.next_id
        confirmed_total = state.confirmed_total

        det_boxes = detections.xyxy.astype(np.float64)
        det_classes = detections.class_id
        confidence = detections.confidence
        high = np.flatnonzero(confidence >= config.high_confidence)
        low = np.flatnonzero(
            (confidence >= config.low_confidence) & (confidence < config.high_confidence)
        )

        predicted = np.array(
            [self._predicted_box(t, capture_ms) for t in tracks], np.float64
        ).reshape(-1, 4)
        track_classes = np.array([t.class_id for t in tracks], np.int64)
        matched: dict[int, int] = {}  # track index -> detection row

        # Stage 1: confident detections against every live track.
        for ti, di in _match(predicted, track_classes, det_boxes[high], det_classes[high],
                             config.min_iou_high):
            matched[ti] = int(high[di])
        # Stage 2: weak detections may only extend confirmed tracks, never tentative ones.
        remaining = [i for i, t in enumerate(tracks) if i not in matched and self.is_confirmed(t)]
        for ri, di in _match(predicted[remaining], track_classes[remaining], det_boxes[low],
                             det_classes[low], config.min_iou_low):
            matched[remaining[ri]] = int(low[di])

        tracker_id = np.full(len(detections), -1, np.int64)
        kept: list[Track] = []
        for index, track in enumerate(tracks):
            row = matched.get(index)
            if row is None:
                track.misses += 1
                # ByteTrack drops a tentative track at its first miss: most are false positives.
                if self.is_confirmed(track):
                    kept.append(track)
                continue
            was_confirmed = self.is_confirmed(track)
            self._absorb(track, tuple(map(float, det_boxes[row])), float(confidence[row]),
                         capture_ms)
            if self.is_confirmed(track):
                confirmed_total += not was_confirmed
                tracker_id[row] = track.track_id
            kept.append(track)

        used_rows = set(matched.values())
        for row in high:
            if int(row) in used_rows:
                continue
            track = Track(
                track_id=next_id,
                class_id=int(det_classes[row]),
                box=tuple(map(float, det_boxes[row])),  # type: ignore[arg-type]
                first_seen_ms=capture_ms,
                last_seen_ms=capture_ms,
                confidence=float(confidence[row]),
            )
            next_id += 1
            if self.is_confirmed(track):  # min_hits == 1
                confirmed_total += 1
                tracker_id[row] = track.track_id
            kept.append(track)

        last_frame_ms = capture_ms if state.last_frame_ms is None else max(
            state.last_frame_ms, capture_ms
        )
        new_state = TrackerState(next_id, kept, last_frame_ms, confirmed_total)
        tracked = Detections(
            xyxy=detections.xyxy,
            confidence=detections.confidence,
            class_id=detections.class_id,
            tracker_id=tracker_id,
            data=dict(detections.data),
            class_names=detections.class_names,
        )
        return TrackUpdate(new_state, tracked, ended)


def tracked_ids(detections: Detections) -> set[int]:
    """Ids of the confirmed tracks present in a frame (rows with tracker_id >= 0)."""
    return {int(i) for i in detections.tracker_id if i >= 0}
