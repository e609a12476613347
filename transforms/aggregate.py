"""Per-camera window counts, shaped like a Flink ``AggregateFunction``.

Windows hold one small summary per frame, never images: ``summarise`` reduces a
``FrameAnalysis`` to a dict of primitives before it enters the window. The accumulator is a
plain dict (ints, dicts, sets of ints), so it pickles into Flink state without depending on
this module's import path.

Accumulator layout::

    {"frames": int,                       # frames seen in the window
     "sum_by_class": {class: int},        # objects summed over frames (for the mean)
     "max_by_class": {class: int},        # most objects of the class in a single frame
     "tracks_by_class": {class: {int}},   # distinct confirmed track ids
     "busiest_frame": {...} | None}       # claim-checked frames only: the frame with the most
                                          # counted objects (reference, boxes, classes), the
                                          # picture of the window's alerts (transforms/evidence)

``add`` and ``merge`` return new accumulators and leave their inputs untouched: Flink allows
mutation, but pure functions make merge order (session windows, two-phase aggregation)
impossible to get wrong.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from .detections import FrameAnalysis


def summarise(analysis: FrameAnalysis, min_confidence: float = 0.5) -> dict[str, Any]:
    """The part of a frame a window needs: who was seen, how many, under which track ids.

    An object counts when it is confident (``confidence >= min_confidence``) or when the
    tracker has confirmed it (``tracker_id >= 0``): a tracked person matched through a
    low-confidence detection during occlusion is still there, while an unmatched weak
    detection is more likely noise.
    """
    detections = analysis.detections
    counted = (detections.confidence >= min_confidence) | (detections.tracker_id >= 0)
    names = detections.class_name
    counts_by_class = dict(Counter(str(n) for n in names[counted]))
    track_ids_by_class: dict[str, list[int]] = {}
    for name, track_id in zip(names, detections.tracker_id):
        if track_id >= 0:
            track_ids_by_class.setdefault(str(name), []).append(int(track_id))
    summary = {
        "camera_id": analysis.camera_id,
        "capture_ms": int(analysis.capture_ms),
        "sequence": int(analysis.sequence),
        "counts_by_class": counts_by_class,
        "track_ids_by_class": {k: sorted(v) for k, v in track_ids_by_class.items()},
        "line_crossings": dict(Counter(crossing_key(c) for c in analysis.crossings)),
    }
    if analysis.jpeg_ref:
        # Only a claim-checked frame can be shown again later (inline JPEGs are gone once
        # analysed): its reference and counted boxes, a few hundred bytes.
        summary["frame"] = {
            "capture_ms": int(analysis.capture_ms), "jpeg_ref": analysis.jpeg_ref,
            "count": int(counted.sum()),
            "boxes": [[round(float(v), 1) for v in box] for box in detections.xyxy[counted]],
            "classes": [str(n) for n in names[counted]],
        }
    return summary


def crossing_key(crossing: dict[str, Any]) -> str:
    """``line:direction:class``, e.g. ``gate-in:a_to_b:car``: the key of a window's counts."""
    return f"{crossing['line_id']}:{crossing['direction']}:{crossing['class']}"


def _add_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    total = dict(a)
    for key, n in b.items():
        total[key] = total.get(key, 0) + int(n)
    return total


class WindowCounts:
    """``create`` / ``add`` / ``merge`` / ``result`` over dict accumulators (see module doc)."""

    @staticmethod
    def create() -> dict[str, Any]:
        return {"frames": 0, "sum_by_class": {}, "max_by_class": {}, "tracks_by_class": {},
                "line_crossings": {}}

    @staticmethod
    def add(acc: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
        counts = summary.get("counts_by_class", {})
        sums = dict(acc["sum_by_class"])
        maxima = dict(acc["max_by_class"])
        sums = _add_counts(sums, counts)
        for name, count in counts.items():
            maxima[name] = max(maxima.get(name, 0), int(count))
        tracks = dict(acc["tracks_by_class"])
        for name, ids in summary.get("track_ids_by_class", {}).items():
            tracks[name] = tracks.get(name, set()) | {int(i) for i in ids}
        busiest, frame = acc.get("busiest_frame"), summary.get("frame")
        if frame is not None and (busiest is None or frame["count"] > busiest["count"]):
            busiest = frame
        return {
            "frames": acc["frames"] + 1,
            "sum_by_class": sums,
            "max_by_class": maxima,
            "tracks_by_class": tracks,
            "line_crossings": _add_counts(acc.get("line_crossings", {}),
                                          summary.get("line_crossings", {})),
            "busiest_frame": busiest,
        }

    @staticmethod
    def result(
        acc: dict[str, Any], camera_id: str, window_start_ms: int, window_end_ms: int
    ) -> dict[str, Any]:
        """An ``Aggregate`` record. Means divide by all frames in the window: a frame without
        the class counts as zero objects of it."""
        frames = acc["frames"]
        all_ids: set[int] = set()
        for ids in acc["tracks_by_class"].values():
            all_ids |= ids
        return {
            "camera_id": camera_id,
            "window_start_ms": int(window_start_ms),
            "window_end_ms": int(window_end_ms),
            "frames": frames,
            "counts_by_class": dict(sorted(acc["max_by_class"].items())),
            "mean_by_class": {
                name: (total / frames if frames else 0.0)
                for name, total in sorted(acc["sum_by_class"].items())
            },
            # Track ids are unique per camera across classes, so the union is the object count.
            "unique_tracks": len(all_ids),
            "unique_tracks_by_class": {
                name: len(ids) for name, ids in sorted(acc["tracks_by_class"].items())
            },
            "line_crossings": dict(sorted(acc.get("line_crossings", {}).items())),
        }

    @staticmethod
    def busiest_frame(acc: dict[str, Any]) -> dict[str, Any] | None:
        """The window's busiest claim-checked frame (reference, boxes, classes), the picture of
        its alerts; not part of the ``Aggregate`` record."""
        return acc.get("busiest_frame")

