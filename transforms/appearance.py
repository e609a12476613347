"""What a person or vehicle looks like, for finding it again without a face or a plate.

Two cues, each a unit vector so that cosine similarity is a dot product (and FAISS's inner
product index searches them):

- **colour**: hue x saturation x value histograms of ``STRIPES`` horizontal stripes of the box
  (head to feet for a person), square-rooted before normalising, so the dot product of two
  vectors is the mean Bhattacharyya coefficient of their stripes' histograms. Stripes keep
  "red shirt, dark trousers" apart from "dark shirt, red trousers".
- **embedding**: ImageNet MobileNetV2 features of the whole crop (``mobilenetv2-appearance`` in
  the model manifest), which carry texture and shape that colour misses.

``similarity`` mixes the two. Named colours (``colour_names``) are what an investigator types:
"upper red, lower dark". Measured on ``vtest.avi`` with ``camflow eval reid`` (see
``bench/README.md``).
"""
from __future__ import annotations

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .detections import VEHICLE_CLASSES
from .frames import encode_jpeg

STRIPES = 6
# 8 x 3 x 3 cells per stripe (432 floats in all) rank as well as 8 x 8 x 8 (3072) on vtest
# (bench/README.md) at a seventh of the bytes per record and per search.
HUE_BINS, SAT_BINS, VALUE_BINS = 8, 3, 3
# Vertical extent of the stripes as fractions of the box height (the ground under the feet
# and the top of the box, often background, left out) and the width trimmed on each side.
STRIPE_TOP, STRIPE_BOTTOM, SIDE_TRIM = 0.1, 0.95, 0.1
COLOUR_SIZE = STRIPES * HUE_BINS * SAT_BINS * VALUE_BINS
MIN_CROP_PX = 8
# Body parts for named colours, as fractions of the box height.
UPPER_BODY, LOWER_BODY = (0.15, 0.5), (0.5, 0.9)
VEHICLE_BODY = (0.2, 0.8)
# Embedding input (manifest ``mobilenetv2-appearance``): RGB 224 x 224, ImageNet statistics.
EMBEDDING_INPUT = 224
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# Default weight of the colour cue in ``similarity`` (the rest is the embedding's).
COLOUR_WEIGHT = 0.5

# Named colours as investigators say them. A pixel is "black" when dark, "white" or "grey" when
# unsaturated, otherwise named by its hue (OpenCV hue 0-179); "brown" is a dark orange.
COLOUR_NAMES = ("black", "white", "grey", "red", "orange", "brown", "yellow", "green", "cyan",
                "blue", "purple", "pink")
# Synonyms accepted in queries.
COLOUR_SYNONYMS = {"dark": "black", "gray": "grey", "silver": "grey", "navy": "blue",
                   "violet": "purple", "beige": "brown", "tan": "brown"}
_HUE_NAMES = ((10, "red"), (22, "orange"), (34, "yellow"), (85, "green"), (100, "cyan"),
              (130, "blue"), (150, "purple"), (170, "pink"), (180, "red"))
_DARK_VALUE, _GREY_SATURATION, _WHITE_VALUE, _BROWN_VALUE = 60, 45, 180, 150


def _pixel_names_table() -> np.ndarray:
    """[180]: OpenCV hue -> index of its name in COLOUR_NAMES (dark and unsaturated pixels
    are named black, grey or white before the hue is looked at)."""
    table = np.zeros(180, np.uint8)
    start = 0
    for end, name in _HUE_NAMES:
        table[start:end] = COLOUR_NAMES.index(name)
        start = end
    return table


_HUE_TABLE = _pixel_names_table()


def _clip_box(box, width: int, height: int, top: float, bottom: float, trim: float):
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    xa, xb = int(max(0.0, x1 + trim * w)), int(min(width, x2 - trim * w))
    ya, yb = int(max(0.0, y1 + top * h)), int(min(height, y1 + bottom * h))
    return xa, ya, xb, yb


def colour_vectors(image: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    """[N, COLOUR_SIZE] float32 unit vectors (rows of zeros where a box is too small or
    outside the BGR ``image``)."""
    out = np.zeros((len(xyxy), COLOUR_SIZE), np.float32)
    if image is None or not len(xyxy):
        return out
    height, width = image.shape[:2]
    edges = np.linspace(STRIPE_TOP, STRIPE_BOTTOM, STRIPES + 1)
    for row, box in enumerate(np.asarray(xyxy, np.float64)):
        xa, ya, xb, yb = _clip_box(box, width, height, STRIPE_TOP, STRIPE_BOTTOM, SIDE_TRIM)
        if xb - xa < MIN_CROP_PX // 2 or yb - ya < MIN_CROP_PX:
            continue
        hsv = cv2.cvtColor(np.ascontiguousarray(image[ya:yb, xa:xb]), cv2.COLOR_BGR2HSV)
        y1, h = float(box[1]), float(box[3] - box[1])
        parts = []
        for top, bottom in zip(edges[:-1], edges[1:]):
            pa = max(int(y1 + top * h) - ya, 0)
            pb = min(max(int(y1 + bottom * h) - ya, pa + 1), hsv.shape[0])
            hist = cv2.calcHist([hsv[pa:pb]], [0, 1, 2], None, [HUE_BINS, SAT_BINS, VALUE_BINS],
                                [0, 180, 0, 256, 0, 256]).ravel()
            parts.append(hist / max(float(hist.sum()), 1.0))
        vector = np.sqrt(np.concatenate(parts))
        norm = float(np.linalg.norm(vector))
        if norm > 0:
            out[row] = vector / norm
    return out


def named_colour(pixels_bgr: np.ndarray) -> str | None:
    """The most common named colour of a crop (None for an empty one)."""
    if pixels_bgr is None or pixels_bgr.size == 0:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(pixels_bgr), cv2.COLOR_BGR2HSV).reshape(-1, 3)
    h, s, v = hsv[:, 0].astype(np.int32), hsv[:, 1].astype(np.int32), hsv[:, 2].astype(np.int32)
    names = _HUE_TABLE[h]
    orange = names == COLOUR_NAMES.index("orange")
    names = np.where(orange & (v < _BROWN_VALUE), COLOUR_NAMES.index("brown"), names)
    grey = s < _GREY_SATURATION
    names = np.where(grey, np.where(v >= _WHITE_VALUE, COLOUR_NAMES.index("white"),
                                    COLOUR_NAMES.index("grey")), names)
    names = np.where(v < _DARK_VALUE, COLOUR_NAMES.index("black"), names)
    counts = np.bincount(names, minlength=len(COLOUR_NAMES))
    return COLOUR_NAMES[int(np.argmax(counts))]


def colour_names(image: np.ndarray, box, class_name: str) -> dict[str, str | None]:
    """``{"upper": name, "lower": name}`` for a person, ``{"body": name}`` for anything else."""
    height, width = image.shape[:2]
    parts = {"upper": UPPER_BODY, "lower": LOWER_BODY} if class_name == "person" \
        else {"body": VEHICLE_BODY}
    out: dict[str, str | None] = {}
    for part, (top, bottom) in parts.items():
        xa, ya, xb, yb = _clip_box(box, width, height, top, bottom, 0.2)
        out[part] = named_colour(image[ya:yb, xa:xb]) if xb > xa and yb > ya else None
    return out


def canonical_colour(name: str) -> str:
    """A query's colour word as one of COLOUR_NAMES (ValueError names the accepted words)."""
    word = name.strip().lower()
    word = COLOUR_SYNONYMS.get(word, word)
    if word not in COLOUR_NAMES:
        raise ValueError(f"unknown colour {name!r}: use one of {', '.join(COLOUR_NAMES)} "
                         f"(or {', '.join(sorted(COLOUR_SYNONYMS))})")
    return word


def embedding_inputs(image: np.ndarray, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([M, 3, 224, 224] float32 network input, [M] indices of the boxes it holds): whole
    crops, stretched, RGB, ImageNet statistics; boxes too small or outside are left out."""
    height, width = image.shape[:2]
    batch, kept = [], []
    for row, box in enumerate(np.asarray(xyxy, np.float64)):
        xa, ya, xb, yb = _clip_box(box, width, height, 0.0, 1.0, 0.0)
        if xb - xa < MIN_CROP_PX // 2 or yb - ya < MIN_CROP_PX:
            continue
        crop = cv2.resize(image[ya:yb, xa:xb], (EMBEDDING_INPUT, EMBEDDING_INPUT),
                          interpolation=cv2.INTER_LINEAR)[..., ::-1]
        batch.append(((crop.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD)
                     .transpose(2, 0, 1))
        kept.append(row)
    if not batch:
        return np.zeros((0, 3, EMBEDDING_INPUT, EMBEDDING_INPUT), np.float32), np.zeros(0, int)
    return np.ascontiguousarray(np.stack(batch)), np.asarray(kept)


class AppearanceEmbedder:
    """``embedder(image, xyxy) -> [N, D]`` unit vectors (zeros for boxes it could not crop);
    ``session`` is an ONNX Runtime session of the manifest's appearance embedding."""

    def __init__(self, session, max_batch: int = 16) -> None:
        self.session, self.max_batch = session, max_batch
        self.input_name = session.get_inputs()[0].name
        self.size = int(session.get_outputs()[0].shape[-1])

    def __call__(self, image: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        out = np.zeros((len(xyxy), self.size), np.float32)
        if image is None or not len(xyxy):
            return out
        batch, kept = embedding_inputs(image, xyxy)
        for start in range(0, len(kept), self.max_batch):
            part = self.session.run(None, {self.input_name: batch[start:start + self.max_batch]})[0]
            out[kept[start:start + self.max_batch]] = unit(part)
        return out


def unit(vector: np.ndarray) -> np.ndarray:
    """``vector`` scaled to length 1 (zeros stay zeros); rows of a 2-D array each."""
    vector = np.asarray(vector, np.float32)
    norms = np.linalg.norm(vector, axis=-1, keepdims=True)
    return np.where(norms > 0, vector / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


def similarity(colour_a: np.ndarray, embedding_a: np.ndarray | None, colour_b: np.ndarray,
               embedding_b: np.ndarray | None, colour_weight: float = COLOUR_WEIGHT) -> np.ndarray:
    """[len(a), len(b)] similarity in [0, 1]-ish: the weighted mean of colour and embedding
    cosines; colour alone where either side has no embedding."""
    colour = np.atleast_2d(colour_a) @ np.atleast_2d(colour_b).T
    if embedding_a is None or embedding_b is None or colour_weight >= 1.0:
        return colour
    embedding = np.atleast_2d(embedding_a) @ np.atleast_2d(embedding_b).T
    return colour_weight * colour + (1.0 - colour_weight) * embedding


# --- Per-track appearance records (the job's ``analyse`` step) -------------------------------

class AppearanceConfig(BaseModel):
    """When the job writes what a track looks like (``appearances`` topic, analyst store)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="write one appearance record per track (personal data: "
                          "the store keeps them store.embedding_retention_days)")
    embedding: bool = Field(True, description=(
        "add the MobileNetV2 embedding (~12 ms per crop on one core) to the colour cue"))
    classes: list[str] = Field(default_factory=lambda: ["person", *sorted(VEHICLE_CLASSES)],
                               description="classes that get appearance records")
    min_height_px: int = Field(40, ge=8, description="a crop shorter than this is never a track's best")
    min_gain: float = Field(1.25, ge=1.0, description=(
        "a later crop replaces the track's best when its area is this many times larger"))
    min_interval_ms: int = Field(2000, ge=0, description="at most one refreshed record per track this often")
    close_after_ms: int = Field(5000, ge=0, description=(
        "a track unseen this long is closed: one last record with its last-seen time"))
    crop_height_px: int = Field(128, ge=16, description="height of the best crop kept as evidence (JPEG)")
    colour_weight: float = Field(COLOUR_WEIGHT, ge=0.0, le=1.0, description=(
        "weight of the colour cue in `camflow similar` (the rest is the embedding's)"))


def _area(box) -> float:
    x1, y1, x2, y2 = box
    return (x2 - x1) * (y2 - y1)


def heading(dx: float, dy: float, scale: float) -> str:
    """Where a track went in the image: 'left', 'right', 'up' (usually away from the camera),
    'down' (towards it), or 'still' when it moved less than ``scale`` (half its height)."""
    if (dx * dx + dy * dy) ** 0.5 < scale:
        return "still"
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def crop_jpeg(image: np.ndarray, box, height_px: int) -> bytes:
    """The box's crop, scaled to at most ``height_px`` tall, as JPEG (quality 80)."""
    h, w = image.shape[:2]
    xa, ya, xb, yb = _clip_box(box, w, h, 0.0, 1.0, 0.0)
    crop = image[ya:yb, xa:xb]
    if crop.shape[0] > height_px:
        scale = height_px / crop.shape[0]
        crop = cv2.resize(crop, (max(1, int(crop.shape[1] * scale)), height_px),
                          interpolation=cv2.INTER_AREA)
    return encode_jpeg(crop, 80)


def appearance_id(camera_id: str, track_id: int, first_seen_ms: int) -> str:
    """Stable across a replay (the tracker numbers tracks the same way): the store upserts on it."""
    return f"{camera_id}:{track_id}:{first_seen_ms}"


def appearance_record(camera_id: str, track_id: int, track: dict, *, colour=None, embedding=None,
                      names: dict | None = None, crop: bytes | None = None,
                      model_version: str | None = None, closed: bool = False) -> dict:
    """The one builder of an ``Appearance`` record (``schemas/appearance.avsc``). A record
    without vectors (``colour`` None) only moves the track's last-seen time and heading on."""
    names = names or {}
    (x1, y1, x2, y2) = track["best_box"]
    (fx, fy), (lx, ly) = track["first_centre"], track["centre"]
    return {
        "appearance_id": appearance_id(camera_id, track_id, track["first_ms"]),
        "camera_id": camera_id, "track_id": int(track_id), "class_name": track["class"],
        "first_seen_ms": int(track["first_ms"]), "last_seen_ms": int(track["last_ms"]),
        "best_ms": int(track["best_ms"]),
        "x1": float(x1), "y1": float(y1), "x2": float(x2), "y2": float(y2),
        "upper_colour": names.get("upper"), "lower_colour": names.get("lower"),
        "body_colour": names.get("body"),
        "heading": heading(lx - fx, ly - fy, 0.5 * (y2 - y1)),
        "colour": None if colour is None else [float(v) for v in colour],
        "embedding": None if embedding is None else [float(v) for v in embedding],
        "embedding_model": model_version if embedding is not None else None,
        "crop_jpeg": crop, "closed": closed,
    }


class TrackAppearances:
    """Per camera: each confirmed track's best crop so far (largest, not cut by the frame's
    edge), described by colour stripes, named colours and (``embedder``) an embedding, written
    as an ``Appearance`` record when it first qualifies and again when a crop ``min_gain`` times
    larger comes (at most every ``min_interval_ms``); when the track has been gone
    ``close_after_ms``, a closing record moves its last-seen time on.

    State: ``{str(track_id): {class, first_ms, last_ms, best_ms, best_box, emitted_ms,
    first_centre, centre}}``, plain values, so Flink can pickle it; ``emitted_ms`` None: no
    best crop yet."""

    EDGE_PX = 2  # a box this close to the frame's edge is cut off: never a best crop

    def __init__(self, config: AppearanceConfig, embedder=None, model_version: str | None = None):
        self.config = config
        self.embedder = embedder if config.embedding else None
        self.model_version = model_version
        self.classes = frozenset(config.classes)

    def __call__(self, state: dict | None, camera_id: str, capture_ms: int, image: np.ndarray,
                 detections) -> tuple[dict, list[dict]]:
        config, tracks, records = self.config, dict(state or {}), []
        height, width = image.shape[:2] if image is not None else (0, 0)
        best_rows = []
        if len(detections):
            class_names = detections.class_name
            for row in range(len(detections)):
                track_id = int(detections.tracker_id[row])
                if track_id < 0 or str(class_names[row]) not in self.classes:
                    continue
                x1, y1, x2, y2 = (float(v) for v in detections.xyxy[row])
                key, centre = str(track_id), [(x1 + x2) / 2.0, (y1 + y2) / 2.0]
                track = tracks.get(key)
                if track is None:
                    track = {"class": str(class_names[row]), "first_ms": int(capture_ms),
                             "best_box": [x1, y1, x2, y2], "best_ms": int(capture_ms),
                             "emitted_ms": None, "first_centre": centre}
                track = {**track, "last_ms": int(capture_ms), "centre": centre}
                tracks[key] = track
                area, inside = _area((x1, y1, x2, y2)), (
                    x1 > self.EDGE_PX and y1 > self.EDGE_PX and x2 < width - self.EDGE_PX
                    and y2 < height - self.EDGE_PX)
                emitted_ms = track["emitted_ms"]
                due = emitted_ms is None or capture_ms - emitted_ms >= config.min_interval_ms
                best_area = 0.0 if emitted_ms is None else _area(track["best_box"])
                if (image is not None and inside and y2 - y1 >= config.min_height_px and due
                        and area >= best_area * config.min_gain):
                    best_rows.append((row, key))
        if best_rows:
            boxes = detections.xyxy[[row for row, _ in best_rows]]
            colours = colour_vectors(image, boxes)
            embeddings = self.embedder(image, boxes) if self.embedder is not None else None
            for i, (row, key) in enumerate(best_rows):
                if not colours[i].any():
                    continue
                track = {**tracks[key], "best_ms": int(capture_ms),
                         "best_box": [float(v) for v in boxes[i]], "emitted_ms": int(capture_ms)}
                tracks[key] = track
                records.append(appearance_record(
                    camera_id, int(key), track, colour=colours[i],
                    embedding=None if embeddings is None else embeddings[i],
                    names=colour_names(image, boxes[i], track["class"]),
                    crop=crop_jpeg(image, boxes[i], config.crop_height_px),
                    model_version=self.model_version))
        for key, track in list(tracks.items()):
            if capture_ms - track["last_ms"] >= config.close_after_ms:
                del tracks[key]
                if track["emitted_ms"] is not None:
                    records.append(appearance_record(camera_id, int(key), track, closed=True))
        return tracks, records
