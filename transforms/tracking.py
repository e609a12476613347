"""Per-camera multi-object tracking that holds identities at low frame rates (1-10 frames/s).

The tracker is a pure function ``update(state, detections, capture_ms, image=None)``: all
memory lives in ``TrackerState``, a dataclass of primitives that the job keeps in Flink keyed
state (one per camera) and that pickles or round-trips through ``to_dict``/``from_dict``
(state written by earlier versions loads too: missing fields get defaults). The same frames in
the same order always give the same ids, so a job restored from a checkpoint continues exactly
where it left off.

Why not box overlap (IoU) alone: at 1-4 frames/s a walking person moves more than their own
width between samples, so their boxes in consecutive frames often do not overlap at all and
two people passing each other overlap the *wrong* box. Association here is by

- motion: each track's *ground point* (box bottom-centre, where the person stands) is
  predicted at the frame's capture time from an *observation-centric* velocity -- the
  displacement between the track's newest detection and its oldest one within
  ``velocity_window_ms`` (as OC-SORT, from observations, never from its own predictions, so
  after a gap the velocity comes straight from the detections either side of it). The distance
  from the prediction, in units of the track's box height (so it means the same near and far
  from the camera), must lie inside a gate that widens with the time since the track was last
  seen (``gate_radius`` + ``gate_growth`` x seconds);
- appearance (when the frame ``image`` is given): a small colour histogram of the upper and
  lower body (hue x saturation for coloured pixels, brightness for grey ones), kept in the
  track as a running average; the Hellinger distance between histograms weighs into the cost;
- box size: the log ratio of heights, a cheap depth cue.

Matching is one optimal assignment (Hungarian) per stage, as in ByteTrack: confident
detections (``high_confidence``) first, against every live track; then weak ones
(``low_confidence`` .. ``high_confidence``, often half-occluded people) may extend confirmed
tracks only, never start new ones. A confirmed track that goes unmatched is *lost*, not
ended: it keeps its id and its appearance for ``max_age_ms`` of capture time and is
re-identified when a detection appears inside its widened gate that also looks like it
(``reid_max_distance``). Tentative tracks (fewer than ``min_hits`` matches) end at their
first miss: most are false positives.

Why event-time expiry (``max_age_ms``) rather than a count of missed frames: the sampler skips
frames when nothing moves and frame rates differ per camera, so "3 frames" means nothing;
"2 seconds of capture time" means the same on every camera.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.optimize import linear_sum_assignment

from .detections import Detections

Box = tuple[float, float, float, float]
# One observation in a track's history: (capture_ms, ground x, ground y, box width, height).
Observation = tuple[float, float, float, float, float]

# Appearance histogram layout, per body part: HUE_BINS x SAT_BINS for coloured pixels and
# GREY_BINS of brightness for the others (dark, grey and white clothing has no stable hue).
HUE_BINS, SAT_BINS, GREY_BINS = 8, 2, 4
MIN_SATURATION, MIN_VALUE = 30, 30  # of 255: below either a pixel counts as grey
# Body parts as fractions of the box height (head and feet left out: hair, shadows, ground),
# and the fraction of the width trimmed on each side (background beside the body).
BODY_PARTS = ((0.15, 0.5), (0.5, 0.9))
SIDE_TRIM = 0.2
APPEARANCE_SIZE = len(BODY_PARTS) * (HUE_BINS * SAT_BINS + GREY_BINS)
MAX_HISTORY = 16  # observations kept per track, whatever the frame rate
# Crops smaller than this many pixels on a side give no usable histogram.
MIN_CROP_PX = 4
BIG = 1e6


class TrackerConfig(BaseModel):
    """How the tracker associates detections with tracks (``job.tracking`` in the config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    high_confidence: float = Field(0.4, gt=0, le=1, description=(
        "detections at or above this start tracks and are matched first (ByteTrack's "
        "track_thresh); the default detector's scores run low, so it matches its threshold"))
    low_confidence: float = Field(0.1, ge=0, le=1, description=(
        "detections below this are ignored; between the two they may only extend confirmed tracks"))
    min_hits: int = Field(2, ge=1, description=(
        "consecutive matches before a track is confirmed and its id is reported"))
    max_age_ms: int = Field(3_000, ge=0, description=(
        "capture time a lost track is kept for re-identification before it ends"))
    velocity_window_ms: int = Field(1_000, ge=0, description=(
        "span of a track's recent detections its velocity is measured over (longer: smoother)"))
    gate_radius: float = Field(0.6, gt=0, le=10, description=(
        "farthest a detection's ground point may lie from the track's prediction, in box heights"))
    gate_growth: float = Field(0.5, ge=0, le=10, description=(
        "how much that gate widens per second since the track was last seen, in box heights"))
    new_track_speed: float = Field(1.5, ge=0, le=10, description=(
        "the gate's growth per second for a track seen only once (no velocity yet), in box "
        "heights: a brisk walk is about 1"))
    max_height_ratio: float = Field(2.0, gt=1, le=10, description=(
        "largest ratio between a track's and a detection's box heights that may still match"))
    appearance_weight: float = Field(0.7, ge=0, le=1, description=(
        "share of the colour-histogram distance in the matching cost (the rest is motion); "
        "used only when the tracker is given the frame image"))
    reid_max_distance: float = Field(0.45, gt=0, le=1, description=(
        "a lost track is re-identified only by a detection whose colour histogram is at most "
        "this far (Hellinger distance) from the track's"))
    appearance_smoothing: float = Field(0.3, gt=0, le=1, description=(
        "weight of the newest detection in a track's running colour histogram"))
    min_iou_low: float = Field(0.3, ge=0, le=1, description=(
        "least IoU with a track's predicted box for a weak (below high_confidence) detection"))

    @model_validator(mode="after")
    def _check(self) -> "TrackerConfig":
        if self.low_confidence > self.high_confidence:
            raise ValueError("need low_confidence <= high_confidence")
        return self


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
    # Pixels per ms for x1, y1, x2, y2 (the ground point's velocity applied to the whole box).
    velocity: Box = (0.0, 0.0, 0.0, 0.0)
    # Recent observations (capture_ms, gx, gy, w, h), oldest first, for the velocity.
    history: tuple[Observation, ...] = ()
    # Running colour histogram (APPEARANCE_SIZE floats), empty until the tracker sees an image.
    appearance: tuple[float, ...] = ()


@dataclass
class TrackerState:
    """Everything the tracker remembers about one camera between frames."""

    next_id: int = 1
    tracks: list[Track] = field(default_factory=list)
    last_frame_ms: int | None = None
    # Tracks ever confirmed on this camera: a running "unique objects" counter for dashboards.
    confirmed_total: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, lists, tuples and numbers, independent of this module's import path (so
        state written by ``transforms.tracking`` still loads as ``camflow.transforms.tracking``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrackerState":
        """The inverse of ``to_dict``; also reads the dicts of earlier versions (no history,
        no appearance: the history starts from the last box, the appearance empty)."""
        tracks = []
        for t in data.get("tracks", []):
            box = tuple(float(v) for v in t["box"])
            history = t.get("history")
            if history is None:
                history = [_observation(t["last_seen_ms"], box)]
            tracks.append(Track(
                track_id=int(t["track_id"]), class_id=int(t["class_id"]), box=box,
                first_seen_ms=int(t["first_seen_ms"]), last_seen_ms=int(t["last_seen_ms"]),
                hits=int(t.get("hits", 1)), misses=int(t.get("misses", 0)),
                confidence=float(t.get("confidence", 0.0)),
                velocity=tuple(float(v) for v in t.get("velocity", (0.0, 0.0, 0.0, 0.0))),
                history=tuple(tuple(float(v) for v in o) for o in history),
                appearance=tuple(float(v) for v in t.get("appearance", ())),
            ))
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


def _observation(capture_ms: float, box: Box) -> Observation:
    x1, y1, x2, y2 = box
    return (float(capture_ms), (x1 + x2) / 2.0, float(y2), float(x2 - x1), float(y2 - y1))


def _lookup_tables() -> tuple[np.ndarray, np.ndarray]:
    """A per-channel lookup table that turns an HSV pixel into one of 8 x 3 x 5 cells (hue
    eighth; saturation below MIN_SATURATION / below 128 / above; value below MIN_VALUE, then
    quarters), and the [cells, part size] matrix that folds cell counts into a part's
    histogram: coloured pixels (saturation and value at least the minimums) by hue x
    saturation half, the others by value quarter. Vectorised, exact, a few C calls per box."""
    levels = np.arange(256)
    table = np.zeros((256, 1, 3), np.uint8)
    table[:, 0, 0] = np.minimum(levels * HUE_BINS // 180, HUE_BINS - 1)
    table[:, 0, 1] = np.where(levels < MIN_SATURATION, 0, np.where(levels < 128, 1, 2))
    table[:, 0, 2] = np.where(levels < MIN_VALUE, 0, 1 + np.minimum(levels // 64, 3) * (levels >= 64))
    value_quarter = (0, 0, 1, 2, 3)  # value cell -> grey bin
    fold = np.zeros((HUE_BINS, 3, 5, HUE_BINS * SAT_BINS + GREY_BINS))
    for h in range(HUE_BINS):
        for s in range(3):
            for v in range(5):
                if s == 0 or v == 0:
                    fold[h, s, v, HUE_BINS * SAT_BINS + value_quarter[v]] = 1.0
                else:
                    fold[h, s, v, h * SAT_BINS + (s - 1)] = 1.0
    return table, fold.reshape(HUE_BINS * 15, -1)


_CELL_TABLE, _CELL_FOLD = _lookup_tables()


def colour_histograms(image: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    """[N, APPEARANCE_SIZE] appearance histograms of the boxes in a BGR ``image``; each row sums
    to 1, or is all zeros where the box is too small or outside the image."""
    out = np.zeros((len(xyxy), APPEARANCE_SIZE), np.float64)
    if image is None or not len(xyxy):
        return out
    height, width = image.shape[:2]
    for row, (x1, y1, x2, y2) in enumerate(np.asarray(xyxy, np.float64)):
        w, h = x2 - x1, y2 - y1
        xa, xb = int(max(0.0, x1 + SIDE_TRIM * w)), int(min(width, x2 - SIDE_TRIM * w))
        ya, yb = int(max(0.0, y1 + BODY_PARTS[0][0] * h)), int(min(height, y1 + BODY_PARTS[-1][1] * h))
        if xb - xa < MIN_CROP_PX or yb - ya < MIN_CROP_PX * len(BODY_PARTS):
            continue
        cell = cv2.LUT(cv2.cvtColor(np.ascontiguousarray(image[ya:yb, xa:xb]),
                                    cv2.COLOR_BGR2HSV), _CELL_TABLE)
        cell = cell[..., 0] * 15 + cell[..., 1] * 5 + cell[..., 2]  # < 120: fits uint8
        cells = []
        for top, bottom in BODY_PARTS:
            pa = int(max(0.0, y1 + top * h)) - ya
            pb = min(int(min(height, y1 + bottom * h)) - ya, yb - ya)
            if pb - pa < MIN_CROP_PX:
                break
            cells.append(np.bincount(cell[pa:pb].ravel(), minlength=HUE_BINS * 15))
        if len(cells) == len(BODY_PARTS):
            parts = np.stack(cells).astype(np.float64) @ _CELL_FOLD
            out[row] = (parts / parts.sum(axis=1, keepdims=True)).ravel() / len(BODY_PARTS)
    return out


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2.0


def hellinger(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] Hellinger distances (0 same .. 1 disjoint) of histograms summing to 1."""
    coefficient = np.sqrt(a)[:, None, :] * np.sqrt(b)[None, :, :]
    return np.sqrt(np.clip(1.0 - coefficient.sum(axis=2), 0.0, 1.0))


class Tracker:
    """Stateless operator: ``update`` maps (state, frame) to (state', tracked frame, ended)."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config if config is not None else TrackerConfig()

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

    # ------------------------------------------------------------------------------ motion

    @staticmethod
    def _ground_velocity(track: Track) -> tuple[float, float]:
        """Ground-point velocity (pixels per ms): the box's, whose corners move together."""
        vx1, vy1, vx2, vy2 = track.velocity
        return (vx1 + vx2) / 2.0, vy2

    def _predicted(self, track: Track, capture_ms: int) -> tuple[float, float, Box]:
        """Ground point and box predicted at ``capture_ms`` (late frames: no backwards move)."""
        elapsed = max(0, capture_ms - track.last_seen_ms)
        vx, vy = self._ground_velocity(track)
        dx, dy = vx * elapsed, vy * elapsed
        x1, y1, x2, y2 = track.box
        return (x1 + x2) / 2.0 + dx, y2 + dy, (x1 + dx, y1 + dy, x2 + dx, y2 + dy)

    def _absorb(self, track: Track, box: Box, confidence: float, capture_ms: int,
                appearance: np.ndarray | None) -> None:
        """Move ``track`` to a newly matched detection."""
        config = self.config
        if capture_ms > track.last_seen_ms:
            history = [o for o in track.history if o[0] < capture_ms]
            history.append(_observation(capture_ms, box))
            newest = history[-1][0]
            # Keep what the velocity window needs: the observations inside it or, when only
            # the newest one is (slow rates, or after a gap), the one before it as well, so
            # the velocity spans the gap (OC-SORT's re-update after an occlusion).
            inside = [i for i, o in enumerate(history) if newest - o[0] <= config.velocity_window_ms]
            start = max(0, inside[0] - 1) if inside[0] > 0 and len(inside) == 1 else inside[0]
            history = history[max(start, len(history) - MAX_HISTORY):]
            track.history = tuple(history)
            if len(history) >= 2:
                t0, gx0, gy0, _, _ = history[0]
                t1, gx1, gy1, _, _ = history[-1]
                vx, vy = (gx1 - gx0) / (t1 - t0), (gy1 - gy0) / (t1 - t0)
                track.velocity = (vx, vy, vx, vy)
            track.last_seen_ms = capture_ms
        track.box = box
        track.confidence = confidence
        track.hits += 1
        track.misses = 0
        if appearance is not None and appearance.any():
            if track.appearance:
                w = config.appearance_smoothing
                mixed = w * appearance + (1.0 - w) * np.asarray(track.appearance)
                track.appearance = tuple((mixed / mixed.sum()).tolist())
            else:
                track.appearance = tuple(appearance.tolist())

    # --------------------------------------------------------------------------- matching

    def _costs(self, tracks: list[Track], capture_ms: int, det_boxes: np.ndarray,
               det_classes: np.ndarray, det_appearance: np.ndarray | None) -> np.ndarray:
        """[tracks, detections] matching cost, BIG where the pair is outside a gate."""
        config = self.config
        costs = np.full((len(tracks), len(det_boxes)), BIG)
        if not len(tracks) or not len(det_boxes):
            return costs
        gx = (det_boxes[:, 0] + det_boxes[:, 2]) / 2.0
        gy = det_boxes[:, 3]
        det_h = np.maximum(det_boxes[:, 3] - det_boxes[:, 1], 1.0)
        track_app = None
        if det_appearance is not None:
            track_app = np.array([t.appearance if t.appearance else (0.0,) * APPEARANCE_SIZE
                                  for t in tracks], np.float64)
            appearance = hellinger(track_app, det_appearance)
            known = track_app.any(axis=1)[:, None] & det_appearance.any(axis=1)[None, :]
        log_ratio_limit = math.log(config.max_height_ratio)
        for i, track in enumerate(tracks):
            px, py, _ = self._predicted(track, capture_ms)
            # The track's size: the median of its recent heights, so that one box cut short
            # by an occluder neither shrinks the gate nor fails the size check.
            height = max(_median([o[4] for o in track.history]), 1.0) \
                if track.history else max(track.box[3] - track.box[1], 1.0)
            seconds = max(0, capture_ms - track.last_seen_ms) / 1000.0
            # A track seen once has no velocity yet: it may have gone anywhere a person walks.
            growth = config.gate_growth if len(track.history) >= 2 else config.new_track_speed
            radius = config.gate_radius + growth * seconds
            distance = np.hypot(gx - px, gy - py) / height / radius
            size = np.abs(np.log(det_h / height)) / log_ratio_limit
            motion = np.maximum(distance, size)
            cost = motion
            ok = (distance <= 1.0) & (size <= 1.0) & (det_classes == track.class_id)
            if track_app is not None:
                w = config.appearance_weight
                a = appearance[i]
                cost = np.where(known[i], (1.0 - w) * motion + w * a, motion)
                if track.misses > 0:  # lost: re-identified only by a look-alike
                    ok &= ~known[i] | (a <= config.reid_max_distance)
            costs[i] = np.where(ok, cost, BIG)
        return costs

    @staticmethod
    def _assign(costs: np.ndarray) -> list[tuple[int, int]]:
        if not costs.size:
            return []
        rows, cols = linear_sum_assignment(costs)
        return [(int(r), int(c)) for r, c in zip(rows, cols) if costs[r, c] < BIG]

    def update(self, state: TrackerState, detections: Detections, capture_ms: int,
               image: np.ndarray | None = None) -> TrackUpdate:
        """Match one frame's detections to ``state``'s tracks. ``state`` is not modified.

        ``image``: the decoded BGR frame the detections were found in; with it the tracker
        also compares colour histograms (without it, motion and size alone)."""
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
        appearance = None
        if image is not None and config.appearance_weight > 0:
            appearance = colour_histograms(image, det_boxes)

        def sub(rows: np.ndarray) -> np.ndarray | None:
            return None if appearance is None else appearance[rows]

        matched: dict[int, int] = {}  # track index -> detection row
        # Stage 1: confident detections against every live track.
        costs = self._costs(tracks, capture_ms, det_boxes[high], det_classes[high], sub(high))
        for ti, di in self._assign(costs):
            matched[ti] = int(high[di])
        # Stage 2: weak detections may only extend confirmed tracks, never tentative ones, and
        # only where they overlap the prediction (a weak blob far away is more likely noise).
        remaining = [i for i, t in enumerate(tracks) if i not in matched and self.is_confirmed(t)]
        if remaining and len(low):
            rest = [tracks[i] for i in remaining]
            costs = self._costs(rest, capture_ms, det_boxes[low], det_classes[low], sub(low))
            predicted = np.array([self._predicted(t, capture_ms)[2] for t in rest], np.float64)
            costs[box_iou(predicted, det_boxes[low]) < config.min_iou_low] = BIG
            for ri, di in self._assign(costs):
                matched[remaining[ri]] = int(low[di])

        # Appearance is learnt only from detections that do not overlap another one: a crop
        # that holds half of someone else would teach the track their colours.
        clean = np.ones(len(detections), bool)
        if appearance is not None and len(detections) > 1:
            overlap = box_iou(det_boxes, det_boxes)
            np.fill_diagonal(overlap, 0.0)
            clean = overlap.max(axis=1) < 0.1

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
            learn = appearance[row] if appearance is not None and clean[row] else None
            self._absorb(track, tuple(map(float, det_boxes[row])), float(confidence[row]),
                         capture_ms, learn)
            if self.is_confirmed(track):
                confirmed_total += not was_confirmed
                tracker_id[row] = track.track_id
            kept.append(track)

        used_rows = set(matched.values())
        for row in high:
            if int(row) in used_rows:
                continue
            box = tuple(map(float, det_boxes[row]))
            track = Track(
                track_id=next_id,
                class_id=int(det_classes[row]),
                box=box,  # type: ignore[arg-type]
                first_seen_ms=capture_ms,
                last_seen_ms=capture_ms,
                confidence=float(confidence[row]),
                history=(_observation(capture_ms, box),),  # type: ignore[arg-type]
                appearance=(tuple(appearance[row].tolist())
                            if appearance is not None and appearance[row].any() else ()),
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


# The job (jobs/operators.py) and bench/pipeline.py know the tracker by its first name.
IouTracker = Tracker


def tracked_ids(detections: Detections) -> set[int]:
    """Ids of the confirmed tracks present in a frame (rows with tracker_id >= 0)."""
    return {int(i) for i in detections.tracker_id if i >= 0}
