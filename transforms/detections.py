"""The one value that flows through the job: a frame's analysis, enriched stage by stage.

``Detections`` follows supervision's ``Detections`` (parallel numpy arrays, one row per object)
without importing supervision, which would pull the non-headless OpenCV wheel.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# COCO-80 class names in the order every default detector and YOLO export uses.
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
# The one vocabulary of vehicles: everything on wheels, and the motor vehicles among them
# (those that carry a licence plate, park, and jam).
VEHICLE_CLASSES = frozenset({"bicycle", "car", "motorcycle", "bus", "truck"})
MOTOR_VEHICLE_CLASSES = VEHICLE_CLASSES - {"bicycle"}


@dataclass
class Detections:
    """Objects found in one frame, as parallel arrays (row i is object i).

    xyxy: float32 [N, 4] pixel box corners; confidence: float32 [N]; class_id: int32 [N]
    (index into ``class_names``); tracker_id: int64 [N], -1 until tracking assigns one;
    data: extra per-object arrays (e.g. ``"embedding"`` [N, 128]) added by later stages.
    """

    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    confidence: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    class_id: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    tracker_id: np.ndarray | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict)
    class_names: tuple[str, ...] = COCO_CLASSES

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.confidence = np.asarray(self.confidence, np.float32).reshape(n)
        self.class_id = np.asarray(self.class_id, np.int32).reshape(n)
        if self.tracker_id is None:
            self.tracker_id = np.full(n, -1, np.int64)
        self.tracker_id = np.asarray(self.tracker_id, np.int64).reshape(n)
        for key, values in self.data.items():
            if len(values) != n:
                raise ValueError(f"data[{key!r}] has {len(values)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> "Detections":
        """Select rows by boolean mask, index array or slice (like supervision)."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
            tracker_id=self.tracker_id[index],
            data={k: v[index] for k, v in self.data.items()},
            class_names=self.class_names,
        )

    @classmethod
    def empty(cls, class_names: tuple[str, ...] = COCO_CLASSES) -> "Detections":
        return cls(class_names=class_names)

    @classmethod
    def merge(cls, parts: list["Detections"]) -> "Detections":
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        keys = set.intersection(*(set(p.data) for p in parts))
        return cls(
            xyxy=np.concatenate([p.xyxy for p in parts]),
            confidence=np.concatenate([p.confidence for p in parts]),
            class_id=np.concatenate([p.class_id for p in parts]),
            tracker_id=np.concatenate([p.tracker_id for p in parts]),
            data={k: np.concatenate([p.data[k] for p in parts]) for k in keys},
            class_names=parts[0].class_names,
        )

    @property
    def class_name(self) -> np.ndarray:
        return np.array([self.class_names[i] for i in self.class_id], dtype=object)

    @property
    def area(self) -> np.ndarray:
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]


@dataclass
class FrameAnalysis:
    """One sampled frame and everything the job learned about it so far.

    ``image`` is the decoded BGR frame; it is decoded once per operator chain and never
    serialised (``__getstate__`` drops it) so that keyed exchanges ship only the JPEG.
    """

    camera_id: str
    capture_ms: int
    sequence: int
    width: int
    height: int
    jpeg: bytes
    sampler_id: str = ""
    # Claim check: where the JPEG lives when the sampler stored it instead of sending it; the
    # job then carries the reference, not the bytes (camflow/core/frame_store.py).
    jpeg_ref: str | None = None
    detections: Detections = field(default_factory=Detections)
    # Faces (with data["embedding"]) and licence plates (data["plate_text"]) found on the
    # objects above; tracker_id is the owning person's / vehicle's track.
    faces: Detections = field(default_factory=lambda: Detections(class_names=("face",)))
    plates: Detections = field(default_factory=lambda: Detections(class_names=("licence_plate",)))
    # Counting-line crossings in this frame: {line_id, track_id, class, direction, time_ms}.
    crossings: list[dict] = field(default_factory=list)
    model_versions: dict[str, str] = field(default_factory=dict)
    image: np.ndarray | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["image"] = None
        return state

    @property
    def key(self) -> tuple[str, int]:
        return (self.camera_id, self.sequence)


def analysis_record(analysis: FrameAnalysis, processed_ms: int) -> dict:
    """The ``FrameAnalysis`` Avro record (schemas/frame_analysis.avsc) for one analysed frame."""
    rows = []
    for det in (analysis.detections, analysis.faces, analysis.plates):
        names = det.class_name
        texts = det.data.get("plate_text")
        subjects = det.data.get("watchlist_id")
        for i in range(len(det)):
            attributes = {}
            if texts is not None:
                attributes["plate_text"] = str(texts[i])
                attributes["plate_display"] = str(det.data["plate_display"][i])
                # the track's fused read: how many reads, since when, and this frame's own
                for key in ("plate_read", "plate_reads", "plate_first_ms"):
                    if key in det.data:
                        attributes[key] = str(det.data[key][i])
            if subjects is not None and subjects[i]:
                attributes["watchlist_id"] = str(subjects[i])
            rows.append({
                "class_name": str(names[i]),
                "score": float(det.confidence[i]),
                "x1": float(det.xyxy[i, 0]), "y1": float(det.xyxy[i, 1]),
                "x2": float(det.xyxy[i, 2]), "y2": float(det.xyxy[i, 3]),
                "track_id": int(det.tracker_id[i]),
                "attributes": attributes,
            })
    return {
        "camera_id": analysis.camera_id,
        "capture_ms": int(analysis.capture_ms),
        "sequence": int(analysis.sequence),
        "width": int(analysis.width),
        "height": int(analysis.height),
        "detections": rows,
        "model_versions": dict(analysis.model_versions),
        "processed_ms": int(processed_ms),
    }
