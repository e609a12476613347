"""Object detection with ONNX Runtime: preprocessing, decoders, NMS, mapping back to pixels.

Pure numpy / OpenCV / onnxruntime. Two output layouts are decoded:

- ``centernet-tfjs``: ``[1, K, 6]`` rows ``x1, y1, x2, y2, score, class`` with corners in
  *input* pixels (0..512) and 0-based COCO class ids (the @vladmandic/human CenterNet).
- ``yolov8``: ``[1, 4 + nc, N]`` (Ultralytics YOLOv8 / YOLO11 export): ``cx, cy, w, h`` in input
  pixels then one sigmoid score per class, no objectness. ``[1, N, 4 + nc]`` is accepted too.

    det = ObjectDetector(manifest_entry, model_path)   # camflow.core.perception finds both
    detections = det(frame_bgr)           # camflow.transforms.detections.Detections
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from camflow.transforms.boxes import batched_nms
from camflow.transforms.detections import COCO_CLASSES, Detections
from camflow.transforms.onnx_runtime import open_session

class DetectorConfig(BaseModel):
    """Which object detector the job runs, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field("centernet-coco", description="a detector in models/manifest.yaml")
    score_threshold: float | None = Field(None, gt=0, lt=1, description="default: the model manifest's")
    nms_iou: float | None = Field(None, gt=0, lt=1, description="default: the model manifest's")
    classes: tuple[str, ...] = Field((
        "person", "bicycle", "car", "motorcycle", "bus", "truck",
        "backpack", "handbag", "suitcase", "bottle"), description="classes kept; others are dropped")
    threads: int = Field(1, ge=1, le=64, description="ONNX Runtime intra-op threads per operator instance")
    input_size: int | None = Field(None, ge=64, le=2048, multiple_of=32, description=(
        "the detector input's longest side, for models that take any frame shape ('fit' in "
        "the manifest, e.g. centernet-coco-fit); default: the manifest's. Work grows with "
        "its square; the smallest objects found shrink with it"))


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class InputConfig:
    width: int
    height: int
    layout: str = "NCHW"  # or NHWC
    colour: str = "RGB"  # or BGR
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    resize: str = "letterbox"  # or stretch, or fit (see ``preprocess``)
    pad_value: int = 114
    stride: int = 32  # fit: the tensor's sides are padded up to a multiple of this
    batch: int | None = 1  # None: dynamic batch dimension

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> "InputConfig":
        keys = cls.__dataclass_fields__
        return cls(**{k: (tuple(v) if k == "mean" else v) for k, v in m.items() if k in keys})


@dataclass(frozen=True)
class Transform:
    """How input-space coordinates map back: ``orig = (inp - pad) / scale``."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    width: int  # original image size
    height: int

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        out = np.asarray(xyxy, np.float32).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale_y
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.height)
        return out


def preprocess(image_bgr: np.ndarray, cfg: InputConfig) -> tuple[np.ndarray, Transform]:
    """One HxWx3 uint8 BGR image -> a model tensor without batch dim, plus the back-mapping."""
    h0, w0 = image_bgr.shape[:2]
    if cfg.resize == "stretch":
        img = cv2.resize(image_bgr, (cfg.width, cfg.height), interpolation=cv2.INTER_LINEAR)
        tr = Transform(cfg.width / w0, cfg.height / h0, 0.0, 0.0, w0, h0)
    elif cfg.resize == "letterbox":
        r = min(cfg.width / w0, cfg.height / h0)
        nw, nh = max(1, round(w0 * r)), max(1, round(h0 * r))
        resized = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        px, py = (cfg.width - nw) // 2, (cfg.height - nh) // 2
        img = np.full((cfg.height, cfg.width, 3), cfg.pad_value, np.uint8)
        img[py:py + nh, px:px + nw] = resized
        tr = Transform(nw / w0, nh / h0, float(px), float(py), w0, h0)
    elif cfg.resize == "fit":
        # Models with a free input size: scaled as letterbox would, then padded (right and
        # bottom) only up to the stride, not to the square: no convolutions on grey bars.
        r = min(cfg.width / w0, cfg.height / h0)
        nw, nh = max(1, round(w0 * r)), max(1, round(h0 * r))
        resized = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        tw, th = -(-nw // cfg.stride) * cfg.stride, -(-nh // cfg.stride) * cfg.stride
        img = np.full((th, tw, 3), cfg.pad_value, np.uint8)
        img[:nh, :nw] = resized
        tr = Transform(nw / w0, nh / h0, 0.0, 0.0, w0, h0)
    else:
        raise ValueError(f"unknown resize mode {cfg.resize!r}")
    if cfg.colour == "RGB":
        img = img[:, :, ::-1]
    x = img.astype(np.float32)
    if any(cfg.mean):
        x -= np.asarray(cfg.mean, np.float32)
    if cfg.scale != 1.0:
        x *= np.float32(cfg.scale)
    if cfg.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x), tr


# --------------------------------------------------------------------------- decoders


def decode_centernet_tfjs(output: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[1, K, 6]`` or ``[K, 6]`` -> (xyxy in input pixels, score, 0-based class id)."""
    out = np.asarray(output, np.float32).reshape(-1, 6)
    return out[:, :4].copy(), out[:, 4].copy(), out[:, 5].round().astype(np.int32)


def decode_yolov8(output: np.ndarray, num_classes: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[1, 4 + nc, N]`` (or ``[1, N, 4 + nc]``) -> (xyxy in input pixels, score, class id).

    Rows are ``cx, cy, w, h`` then per-class scores (no objectness): score = max class score.
    """
    out = np.asarray(output, np.float32)
    if out.ndim == 3:
        if out.shape[0] != 1:
            raise ValueError(f"decode one image at a time, got batch {out.shape[0]}")
        out = out[0]
    if out.ndim != 2:
        raise ValueError(f"expected [1, 4+nc, N], got {np.shape(output)}")
    if num_classes is not None:
        transposed = out.shape[0] != 4 + num_classes
    else:  # channels are the short axis for every real export (84 vs 8400)
        transposed = out.shape[0] > out.shape[1]
    if transposed:
        out = out.T
    if out.shape[0] < 5:
        raise ValueError(f"need at least 4 box rows + 1 class row, got {out.shape}")
    cx, cy, w, h = out[0], out[1], out[2], out[3]
    scores = out[4:]
    class_id = scores.argmax(axis=0).astype(np.int32)
    score = scores[class_id, np.arange(scores.shape[1])]
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return xyxy.astype(np.float32), score.astype(np.float32), class_id


DECODERS = {"centernet-tfjs": decode_centernet_tfjs, "yolov8": decode_yolov8}


def postprocess(xyxy: np.ndarray, score: np.ndarray, class_id: np.ndarray, *,
                score_threshold: float, iou_threshold: float, max_detections: int,
                keep_classes: np.ndarray | None = None, num_classes: int | None = None,
                ) -> np.ndarray:
    """Indices that survive score threshold, class filter, per-class NMS and the top-k cut."""
    # A broken or hostile model can emit NaN/inf: such rows are never detections.
    mask = (score >= score_threshold) & np.isfinite(score) & (score <= 1.0) \
        & np.isfinite(xyxy).all(axis=1)
    if num_classes is not None:
        mask &= (class_id >= 0) & (class_id < num_classes)
    if keep_classes is not None:
        mask &= np.isin(class_id, keep_classes)
    idx = np.flatnonzero(mask)
    kept = batched_nms(xyxy[idx], score[idx], class_id[idx], iou_threshold)
    return idx[kept][:max_detections]


# --------------------------------------------------------------------------- detector


def _as_mapping(entry: Any) -> dict[str, Any]:
    if hasattr(entry, "model_dump"):
        return entry.model_dump()
    return dict(entry)


class ObjectDetector:
    """Runs one object-detection ONNX model described by a manifest entry.

    ``classes``: names or ids to keep (default: all of the model's classes).
    """

    def __init__(self, entry: Any, model_path: str | os.PathLike, *, threads: int = 1,
                 providers: Sequence[Any] | None = None, classes: Iterable[str | int] | None = None,
                 score_threshold: float | None = None, iou_threshold: float | None = None,
                 max_detections: int | None = None, session: Any = None,
                 input_size: int | None = None) -> None:
        m = _as_mapping(entry)
        self.name: str = m.get("name", Path(model_path).stem)
        self.decoder_name: str = m.get("decoder", "yolov8")
        if self.decoder_name not in DECODERS:
            raise ValueError(f"unknown decoder {self.decoder_name!r}; known: {sorted(DECODERS)}")
        self.decoder = DECODERS[self.decoder_name]
        names = m.get("classes", "coco80")
        if hasattr(entry, "class_names"):
            names = entry.class_names
        self.class_names: tuple[str, ...] = COCO_CLASSES if names == "coco80" else tuple(names)
        self.input = InputConfig.from_mapping(m["input"])
        if input_size is not None:
            if self.input.resize != "fit" or input_size % self.input.stride:
                raise ValueError(f"input_size needs a model with resize 'fit' and a multiple of "
                                 f"{self.input.stride}; {self.name} has {self.input.resize!r}")
            self.input = replace(self.input, width=input_size, height=input_size)
        th = m.get("thresholds") or {}
        self.score_threshold = float(score_threshold if score_threshold is not None
                                     else th.get("score", 0.35))
        self.iou_threshold = float(iou_threshold if iou_threshold is not None
                                   else th.get("nms_iou", 0.5))
        self.max_detections = int(max_detections if max_detections is not None
                                  else th.get("max_detections", 100))
        self.keep_classes = self._class_ids(classes)
        self.model_path = Path(model_path)
        self.session = session or open_session(model_path, threads=threads, providers=providers)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        batch = inp.shape[0] if inp.shape else 1
        self.dynamic_batch = not isinstance(batch, int) or batch <= 0
        sha = (m.get("output") or {}).get("sha256") or (m.get("source") or {}).get("sha256")
        self.version = f"{self.name}@{sha[:12]}" if sha else self.name

    def _class_ids(self, classes: Iterable[str | int] | None) -> np.ndarray | None:
        if classes is None:
            return None
        ids = []
        for c in classes:
            if isinstance(c, str):
                if c not in self.class_names:
                    raise ValueError(f"unknown class {c!r}")
                ids.append(self.class_names.index(c))
            else:
                ids.append(int(c))
        return np.asarray(sorted(set(ids)), np.int32)

    def _finish(self, raw: np.ndarray, tr: Transform) -> Detections:
        if self.decoder_name == "yolov8":
            xyxy, score, cls = decode_yolov8(raw, num_classes=len(self.class_names))
        else:
            xyxy, score, cls = self.decoder(raw)
        keep = postprocess(xyxy, score, cls, score_threshold=self.score_threshold,
                           iou_threshold=self.iou_threshold, max_detections=self.max_detections,
                           keep_classes=self.keep_classes, num_classes=len(self.class_names))
        return Detections(xyxy=tr.to_original(xyxy[keep]), confidence=score[keep],
                          class_id=cls[keep], class_names=self.class_names)

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        x, tr = preprocess(image_bgr, self.input)
        raw = self.session.run([self.output_name], {self.input_name: x[None]})[0]
        return self._finish(raw[0:1], tr)

