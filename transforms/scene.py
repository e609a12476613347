"""What a camera looks at: zones, counting lines and the parameters of zone-free rules.

Coordinates are NORMALISED to the image, x and y in [0, 1] with (0, 0) the top-left corner, so
one scene survives a change of stream resolution (``Camera.max_width``) unchanged.

Counting-line sides. A line runs from ``points[0]`` (start) to ``points[1]`` (end). Side **A**
is on the left of start->end *as seen on screen* (image y grows downwards), side **B** on the
right. For a line drawn left to right across the image, A is above it and B below. ``a_to_b``
means "objects may cross from side A to side B"; ``draw_scene`` shows the sides and the allowed
direction as arrows so a person can check before deploying.

The models validate geometry with shapely and fail with messages that name the zone or line:
self-intersecting or zero-area polygons, points outside the image, lines too short to cross,
duplicate ids, parameters given to a zone kind that never reads them.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import cv2
import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from shapely.geometry import Polygon
from shapely.validation import explain_validity

from .detections import COCO_CLASSES, MOTOR_VEHICLE_CLASSES, VEHICLE_CLASSES

Point = tuple[float, float]
ZoneKind = Literal["restricted", "loiter", "no_parking", "litter_hotspot", "crowd"]
Severity = Literal["info", "warning", "critical"]
Direction = Literal["a_to_b", "b_to_a", "both"]

SCENE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
# Lines shorter than this (in normalised units, ~1% of the image) are almost certainly a
# mis-click, and a track's jitter alone would "cross" them.
MIN_LINE_LENGTH = 0.01
MIN_ZONE_AREA = 1e-5

PERSON_CLASSES = ("person",)
PARKING_CLASSES = tuple(c for c in COCO_CLASSES if c in MOTOR_VEHICLE_CLASSES)
# Objects left behind at dumping spots; the detector's default class list carries these four.
LITTER_CLASSES = ("backpack", "handbag", "suitcase", "bottle")
LINE_CLASSES = ("person", *(c for c in COCO_CLASSES if c in VEHICLE_CLASSES))

DEFAULT_CLASSES: dict[str, tuple[str, ...]] = {
    "restricted": PERSON_CLASSES,
    "loiter": PERSON_CLASSES,
    "no_parking": PARKING_CLASSES,
    "litter_hotspot": LITTER_CLASSES,
    "crowd": PERSON_CLASSES,
}
DEFAULT_SEVERITY: dict[str, str] = {
    "restricted": "critical",
    "loiter": "warning",
    "no_parking": "warning",
    "litter_hotspot": "warning",
    "crowd": "warning",
}
# Which zone parameters each kind reads; setting another kind's parameter is an error, because
# a silently ignored "max_dwell_ms" on a restricted zone is a configuration bug.
KIND_PARAMETERS: dict[str, frozenset[str]] = {
    "restricted": frozenset({"min_inside_ms"}),
    "loiter": frozenset({"max_dwell_ms"}),
    "no_parking": frozenset({"max_stopped_ms"}),
    "litter_hotspot": frozenset({"min_static_ms", "owner_gone_ms"}),
    "crowd": frozenset({"max_people", "min_over_ms"}),
}
ALL_PARAMETERS = frozenset().union(*KIND_PARAMETERS.values())


class SceneModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_point(point: Point, owner: str) -> Point:
    x, y = float(point[0]), float(point[1])
    if not (np.isfinite(x) and np.isfinite(y)):
        raise ValueError(f"{owner}: point ({x}, {y}) is not finite")
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise ValueError(
            f"{owner}: point ({x:g}, {y:g}) lies outside the image; coordinates are normalised "
            "to [0, 1] (divide pixels by the frame width and height)"
        )
    return (x, y)


def _check_classes(classes: list[str], owner: str) -> list[str]:
    unknown = [c for c in classes if c not in COCO_CLASSES]
    if unknown:
        raise ValueError(f"{owner}: unknown class(es) {unknown}; use COCO class names, e.g. 'person'")
    if not classes:
        raise ValueError(f"{owner}: classes must not be empty (leave it out for the default)")
    return list(dict.fromkeys(classes))


def _check_id(value: str) -> str:
    if not SCENE_ID.match(value):
        raise ValueError("id must be 1-64 chars of A-Z a-z 0-9 _ . : - (starting alphanumeric)")
    return value


# Zone and line ids end up in alert subjects and state keys: one format for both.
SceneId = Annotated[str, AfterValidator(_check_id)]


class Zone(SceneModel):
    """A polygon where one kind of rule applies to objects whose ground point lies inside.

    The ground point is a box's bottom-centre: where a person stands or a vehicle touches the
    road, which is what "inside the zone" means on a ground-plane polygon.
    """

    id: SceneId
    kind: ZoneKind
    polygon: list[Point] = Field(min_length=3, description="≥3 normalised (x, y) vertices")
    classes: list[str] | None = Field(None, description="classes the rule applies to; default per kind")
    severity: Severity | None = Field(None, description="alert severity; default per kind")
    # restricted: seconds inside before an intrusion alert (0: the first frame inside).
    min_inside_ms: int = Field(0, ge=0)
    # loiter: dwell time that counts as loitering.
    max_dwell_ms: int = Field(120_000, ge=1)
    # no_parking: time a vehicle may stand still inside.
    max_stopped_ms: int = Field(120_000, ge=1)
    # litter_hotspot: how long an object must lie still, and how long its owner must be gone.
    min_static_ms: int = Field(10_000, ge=1)
    owner_gone_ms: int = Field(5_000, ge=0)
    # crowd: people inside above which, for min_over_ms, an alert fires.
    max_people: int | None = Field(None, ge=1)
    min_over_ms: int = Field(5_000, ge=0)

    @model_validator(mode="after")
    def _validate(self) -> "Zone":
        owner = f"zone {self.id!r}"
        points = [_check_point(p, owner) for p in self.polygon]
        if len(points) > 3 and points[0] == points[-1]:
            points = points[:-1]  # a closed ring written out in full
        if len(set(points)) < 3:
            raise ValueError(f"{owner}: polygon needs at least 3 distinct points")
        shape = Polygon(points)
        # Collinear points first: shapely would call them a self-intersection.
        if shape.convex_hull.area < MIN_ZONE_AREA:
            raise ValueError(f"{owner}: polygon has (almost) zero area (points on one line)")
        if not shape.is_valid:
            raise ValueError(
                f"{owner}: polygon is not simple ({explain_validity(shape)}); "
                "list the vertices in order around the boundary without crossing edges"
            )
        if shape.area < MIN_ZONE_AREA:
            raise ValueError(f"{owner}: polygon has (almost) zero area {shape.area:.2g}")
        misplaced = sorted((self.model_fields_set & ALL_PARAMETERS) - KIND_PARAMETERS[self.kind])
        if misplaced:
            raise ValueError(
                f"{owner}: parameter(s) {misplaced} do not apply to kind {self.kind!r} "
                f"(it reads {sorted(KIND_PARAMETERS[self.kind])})"
            )
        if self.kind == "crowd" and self.max_people is None:
            raise ValueError(f"{owner}: a crowd zone needs max_people")
        classes = _check_classes(self.classes, owner) if self.classes is not None \
            else list(DEFAULT_CLASSES[self.kind])
        # frozen model: write the normalised values through object.__setattr__.
        object.__setattr__(self, "polygon", points)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "severity", self.severity or DEFAULT_SEVERITY[self.kind])
        return self

    def shape(self) -> Polygon:
        return Polygon(self.polygon)


class CountingLine(SceneModel):
    """A tripwire that counts crossings per direction and class (see the module doc for sides)."""

    id: SceneId
    points: tuple[Point, Point] = Field(description="start and end, normalised (x, y)")
    direction: Direction = Field("both", description="allowed crossing direction; the other is wrong-way")
    classes: list[str] = Field(default_factory=lambda: list(LINE_CLASSES))
    severity: Severity = "warning"
    # Distance from the line (normalised units) a ground point must reach before its side
    # counts: without this dead band a person standing on the line "crosses" it every frame.
    hysteresis: float = Field(0.01, ge=0.0, le=0.2)

    @model_validator(mode="after")
    def _validate(self) -> "CountingLine":
        owner = f"line {self.id!r}"
        start, end = (_check_point(p, owner) for p in self.points)
        length = float(np.hypot(end[0] - start[0], end[1] - start[1]))
        if length < MIN_LINE_LENGTH:
            raise ValueError(f"{owner}: degenerate line (length {length:.3g} < {MIN_LINE_LENGTH})")
        object.__setattr__(self, "points", (start, end))
        object.__setattr__(self, "classes", _check_classes(self.classes, owner))
        return self


class FallRule(SceneModel):
    """A tracked person goes from upright to down and stays down: "down" is a lying pose (the
    pose model on the person's crop, run only when the box changed shape, dropped or was lost),
    else the box's shape (lying) or its collapse from the standing height.

    ratio = box height / box width. A standing person is ~2-3, a lying one < 1.
    ``upright_within_ms``: the person must have been upright this shortly before lying down,
    so people already lying when first seen (sunbathers on a beach) never alert.
    """

    enabled: bool = Field(True, description="raise fall alerts on this camera")
    classes: list[str] = Field(default_factory=lambda: list(PERSON_CLASSES), description="who can fall")
    upright_ratio: float = Field(1.6, gt=0, description="box height/width at or above this is standing")
    lying_ratio: float = Field(0.9, gt=0, description="box height/width at or below this is lying")
    upright_within_ms: int = Field(3_000, ge=0, description=(
        "the person stood this shortly before going down (lying down slowly, or already lying "
        "when first seen, never alerts)"))
    min_down_ms: int = Field(2_000, ge=0, description=(
        "down for this long after the fall raises it (measured on real falls: people who "
        "fell are still down 2-3 s later; a stumble is up again sooner)"))
    severity: Severity = Field("critical", description="fall alerts")

    @model_validator(mode="after")
    def _validate(self) -> "FallRule":
        if self.lying_ratio >= self.upright_ratio:
            raise ValueError("fall: lying_ratio must be below upright_ratio")
        _check_classes(self.classes, "fall")
        return self


class RunningRule(SceneModel):
    """Sudden running: ground-point speed above ``min_speed`` (box heights per second; walking
    is ~0.8, running 2-4) for ``min_duration_ms``. Speed is measured over ``speed_window_ms``
    so that one jittery box does not make a sprint."""

    enabled: bool = True
    classes: list[str] = Field(default_factory=lambda: list(PERSON_CLASSES))
    min_speed: float = Field(2.0, gt=0)
    min_duration_ms: int = Field(1_000, ge=0)
    speed_window_ms: int = Field(1_000, ge=100)
    severity: Severity = "warning"

    @model_validator(mode="after")
    def _validate(self) -> "RunningRule":
        _check_classes(self.classes, "running")
        return self


class DispersalRule(SceneModel):
    """Crowd dispersal: at least ``min_tracks`` people, and ``min_fraction`` of those moving,
    speed away from where the group stood (faster than ``min_speed`` box heights/s, outwards
    from the group's centroid). Re-arms after ``rearm_ms`` without the condition."""

    enabled: bool = True
    min_tracks: int = Field(5, ge=2)
    min_fraction: float = Field(0.5, gt=0, le=1)
    min_speed: float = Field(1.5, gt=0)
    rearm_ms: int = Field(10_000, ge=0)
    severity: Severity = "critical"


class Scene(SceneModel):
    """Everything the behaviour rules need to know about one camera's view."""

    zones: list[Zone] = Field(default_factory=list)
    lines: list[CountingLine] = Field(default_factory=list)
    fall: FallRule = FallRule()
    running: RunningRule = RunningRule()
    dispersal: DispersalRule = DispersalRule()
    # A track unseen for this long (event time) is forgotten: bounds state per camera.
    track_ttl_ms: int = Field(10_000, ge=100)
    # Hard cap on remembered tracks, in case a crowded view outruns the TTL.
    max_tracks: int = Field(500, ge=1)
    # Leaving a zone for less than this does not end the visit (boxes jitter across edges).
    exit_grace_ms: int = Field(1_000, ge=0)
    # A ground point that stays within this fraction of its box size counts as standing still.
    still_tolerance: float = Field(0.3, gt=0, le=5)
    # Alert ids hash the episode start's bucket: a replay reproduces them, and a track that
    # flickers out of a zone and back within one bucket upserts the same alert.
    dedupe_bucket_ms: int = Field(60_000, ge=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> "Scene":
        seen: set[str] = set()
        for item in [*self.zones, *self.lines]:
            if item.id in seen:
                raise ValueError(f"scene id {item.id!r} is used twice (zone and line ids share one namespace)")
            seen.add(item.id)
        return self

    def zone(self, zone_id: str) -> Zone | None:
        return next((z for z in self.zones if z.id == zone_id), None)


# ----------------------------------------------------------------------------------- drawing

KIND_COLOURS: dict[str, tuple[int, int, int]] = {  # BGR
    "restricted": (0, 0, 255),
    "loiter": (0, 165, 255),
    "no_parking": (255, 0, 255),
    "litter_hotspot": (0, 200, 0),
    "crowd": (255, 255, 0),
}
LINE_COLOUR = (255, 128, 0)
WRONG_WAY_COLOUR = (0, 0, 255)


def _to_pixels(points: Any, width: int, height: int) -> np.ndarray:
    pts = np.asarray(points, np.float64).reshape(-1, 2) * [width - 1, height - 1]
    return np.round(pts).astype(np.int32)


def _label(image: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, int, int],
           scale: float) -> None:
    thickness = max(1, int(round(scale * 2)))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x = int(np.clip(org[0], 0, max(0, image.shape[1] - w - 1)))
    y = int(np.clip(org[1], h + 1, image.shape[0] - base - 1))
    cv2.rectangle(image, (x, y - h - 2), (x + w + 2, y + base), (0, 0, 0), -1)
    cv2.putText(image, text, (x + 1, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness,
                cv2.LINE_AA)


def line_normal(line: CountingLine) -> np.ndarray:
    """Unit vector (normalised coords) pointing from side A to side B."""
    (sx, sy), (ex, ey) = line.points
    dx, dy = ex - sx, ey - sy
    # Side B is where cross((end-start), (p-start)) > 0, i.e. along (-dy, dx).
    n = np.array([-dy, dx], np.float64)
    return n / np.linalg.norm(n)


def draw_scene(image_bgr: np.ndarray, scene: Scene) -> np.ndarray:
    """A copy of ``image_bgr`` with zones (tinted, outlined, labelled ``id (kind)``) and lines
    (labelled, sides A/B marked, arrows for allowed directions; a red cross over the forbidden
    one) drawn on it."""
    image = np.ascontiguousarray(image_bgr).copy()
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    height, width = image.shape[:2]
    scale = max(0.4, min(width, height) / 900)
    thickness = max(1, int(round(scale * 2)))

    overlay = image.copy()
    for zone in scene.zones:
        cv2.fillPoly(overlay, [_to_pixels(zone.polygon, width, height)], KIND_COLOURS[zone.kind])
    cv2.addWeighted(overlay, 0.25, image, 0.75, 0, dst=image)
    for zone in scene.zones:
        pts = _to_pixels(zone.polygon, width, height)
        colour = KIND_COLOURS[zone.kind]
        cv2.polylines(image, [pts], True, colour, thickness, cv2.LINE_AA)
        top = pts[np.argmin(pts[:, 1])]
        _label(image, f"{zone.id} ({zone.kind})", (int(top[0]), int(top[1]) - 4), colour, scale)

    arrow_len = 0.06 * min(width, height)
    for line in scene.lines:
        start, end = _to_pixels(line.points, width, height)
        cv2.line(image, tuple(map(int, start)), tuple(map(int, end)), LINE_COLOUR, thickness + 1,
                 cv2.LINE_AA)
        mid = (start + end) / 2.0
        n = line_normal(line) * [width, height]
        n = n / np.linalg.norm(n)
        a_side = mid - n * arrow_len
        b_side = mid + n * arrow_len
        _label(image, "A", (int(a_side[0]), int(a_side[1])), LINE_COLOUR, scale)
        _label(image, "B", (int(b_side[0]), int(b_side[1])), LINE_COLOUR, scale)
        offset = (end - start) / max(1.0, np.linalg.norm(end - start)) * arrow_len * 0.4
        for direction, origin, tip, shift in (("a_to_b", a_side, b_side, offset),
                                              ("b_to_a", b_side, a_side, -offset)):
            allowed = line.direction in (direction, "both")
            colour = LINE_COLOUR if allowed else WRONG_WAY_COLOUR
            p0 = tuple(int(v) for v in origin + shift)
            p1 = tuple(int(v) for v in tip + shift)
            cv2.arrowedLine(image, p0, p1, colour, thickness, cv2.LINE_AA, tipLength=0.3)
            if not allowed:
                c = ((p0[0] + p1[0]) // 2, (p0[1] + p1[1]) // 2)
                r = int(arrow_len * 0.25)
                cv2.line(image, (c[0] - r, c[1] - r), (c[0] + r, c[1] + r), colour, thickness)
                cv2.line(image, (c[0] - r, c[1] + r), (c[0] + r, c[1] - r), colour, thickness)
        _label(image, f"{line.id} [{line.direction}]",
               (int(end[0]) + 4, int(end[1]) - 4), LINE_COLOUR, scale)
    return image
