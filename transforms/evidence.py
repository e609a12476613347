"""What an alert's snapshot shows, and the snapshot itself: the frame with the alert's subject
boxed (and its zone outlined), as a size-capped JPEG.

Pure: the operator that raises an alert calls ``alert_snapshot`` on the frame it already has
decoded, and writes the bytes to the evidence store (camflow/core/evidence_store.py). Window
alerts (crowd limit, anomalies) are about a window, not a frame: theirs is the window's
busiest frame (``aggregate.WindowCounts`` keeps its reference and boxes).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .alert_text import evidence_of

SUBJECT_COLOUR = (0, 0, 255)   # BGR red: what the alert is about
OTHER_COLOUR = (0, 200, 255)   # amber: the others counted by a crowd rule
ZONE_COLOUR = (255, 160, 0)    # blue: the rule's zone or line
QUALITIES = (85, 70, 55, 40)


class SnapshotError(ValueError):
    """The snapshot cannot be made (no image, or it cannot fit ``max_bytes``)."""


@dataclass
class Marks:
    """What to draw: pixel boxes ``(x1, y1, x2, y2)`` with labels, the subject's first, and
    the rule's zone polygon or line in normalised coordinates."""

    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    subject: list[bool] = field(default_factory=list)
    outline: list[tuple[float, float]] | None = None
    closed: bool = True

    def add(self, box, label: str, is_subject: bool) -> None:
        self.boxes.append(tuple(float(v) for v in box[:4]))
        self.labels.append(label)
        self.subject.append(is_subject)




def alert_marks(alert: Mapping[str, Any], detections, zones: Mapping[str, Sequence] | None = None,
                lines: Mapping[str, Sequence] | None = None) -> Marks:
    """The boxes and outline of ``alert`` on the frame whose ``detections`` (a ``Detections``)
    raised it: its track's box when it is about one track, else every object of its subject's
    class (inside its zone when it has one); ``zones``/``lines`` map a scene's ids to their
    normalised points."""
    evidence = evidence_of(alert)
    marks = Marks()
    zone_id, line_id = evidence.get("zone_id"), evidence.get("line_id")
    if zone_id is not None and zones and zone_id in zones:
        marks.outline = [tuple(p) for p in zones[zone_id]]
    elif line_id is not None and lines and line_id in lines:
        marks.outline, marks.closed = [tuple(p) for p in lines[line_id]], False
    if detections is None or len(detections) == 0:
        return marks
    names = [str(n) for n in detections.class_name]
    track_id = alert.get("track_id")
    if track_id is not None:
        rows = [i for i, t in enumerate(detections.tracker_id) if int(t) == int(track_id)]
        for i in rows:
            marks.add(detections.xyxy[i], f"{names[i]} #{int(track_id)}", True)
        if rows:
            return marks
    subject = str(alert.get("subject", ""))
    for i, name in enumerate(names):
        if name == subject:
            tid = int(detections.tracker_id[i])
            marks.add(detections.xyxy[i], name if tid < 0 else f"{name} #{tid}", track_id is None)
    return marks


def window_marks(alert: Mapping[str, Any], frame: Mapping[str, Any]) -> Marks:
    """Marks of a window alert on the window's busiest frame (``WindowCounts``'s
    ``busiest_frame``: its objects' boxes and classes): the alert's subject class boxed as the
    subject, the other objects as context."""
    marks = Marks()
    subject = str(alert.get("subject", ""))
    for box, name in zip(frame.get("boxes", []), frame.get("classes", [])):
        marks.add(box, str(name), str(name) == subject or subject in ("camera", ""))
    return marks


def _draw(image: np.ndarray, marks: Marks) -> np.ndarray:
    canvas = image.copy()
    height, width = canvas.shape[:2]
    thickness = max(2, round(width / 400))
    if marks.outline:
        points = np.array([(x * width, y * height) for x, y in marks.outline], np.int32)
        cv2.polylines(canvas, [points], marks.closed, ZONE_COLOUR, thickness, cv2.LINE_AA)
    # Context first, subject last: the subject's box is never hidden under another.
    order = sorted(range(len(marks.boxes)), key=lambda i: marks.subject[i])
    for i in order:
        x1, y1, x2, y2 = (int(round(v)) for v in marks.boxes[i])
        colour = SUBJECT_COLOUR if marks.subject[i] else OTHER_COLOUR
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
        if marks.subject[i] and marks.labels[i]:
            cv2.putText(canvas, marks.labels[i], (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * thickness, colour, max(1, thickness // 2), cv2.LINE_AA)
    return canvas


def snapshot_jpeg(image: np.ndarray | None, marks: Marks, max_bytes: int,
                  max_width: int = 1280) -> bytes:
    """``image`` (BGR) with ``marks`` drawn, as a JPEG of at most ``max_bytes``: scaled to at
    most ``max_width`` px wide, then lower qualities, then halved, until it fits."""
    if image is None or image.ndim != 3 or image.size == 0:
        raise SnapshotError("no decoded frame to draw on")
    canvas = _draw(image, marks)
    if canvas.shape[1] > max_width:
        scale = max_width / canvas.shape[1]
        canvas = cv2.resize(canvas, (max_width, max(1, round(canvas.shape[0] * scale))),
                            interpolation=cv2.INTER_AREA)
    while True:
        for quality in QUALITIES:
            ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and len(encoded) <= max_bytes:
                return encoded.tobytes()
        if canvas.shape[1] < 160:
            raise SnapshotError(f"a snapshot does not fit in {max_bytes} bytes")
        canvas = cv2.resize(canvas, (canvas.shape[1] // 2, max(1, canvas.shape[0] // 2)),
                            interpolation=cv2.INTER_AREA)
