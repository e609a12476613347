"""Track-based behaviour rules for one camera, fed one tracked frame at a time.

``SceneBehaviour(scene, pose=None).step(state, analysis, event_time_ms=None, pose=None) ->
BehaviourStep(state, alerts, extra)`` is a pure function of its inputs: ``state`` is a plain dict
of ints, floats, strings, tuples, lists and dicts (see ``new_state``) that pickles into Flink
keyed state (one per camera) without depending on this module's import path, and the input
state is never modified. ``pose`` (optional) is the fall rule's person-down look-up
(``transforms.pose.PersonDown``): ``pose(image, box, search=False) -> Posture | None``, called
on ``analysis.image`` (the decoded frame) only for tracks that need it (see falls below).

Rules (alert ``type`` in brackets):

- zones: intrusion into ``restricted`` (``intrusion``), dwelling in ``loiter`` (``loitering``),
  vehicles standing still in ``no_parking`` (``illegal_parking``), objects left behind at
  ``litter_hotspot`` (``littering``), too many people in ``crowd`` (``zone_crowd``);
- lines: crossings counted per direction and class (``extra``), wrong-way crossings
  (``wrong_way``);
- zone-free, on with an empty scene: falls (``fall``), sudden running (``running``) and crowd
  dispersal (``crowd_dispersal``).

Geometry: an object's *ground point* is its box's bottom-centre, normalised by the frame's
width and height, the same coordinates as the scene. Speeds are in *box heights per second*, so
a person walking far from the camera and one walking close to it move at the same speed.

One alert per episode: every rule is "a condition held for N ms fires once, and re-arms when the
condition clears", written once in ``persist``; its record (``{"since", "last", "fired"}``)
lives in the state. The alert id hashes (type, camera, [subject, rule target, track], bucket of
the episode start), so a replay from a checkpoint, or from scratch, gives the same id and the
upserting sink keeps one alert.

Falls: a person seen standing (box height/width >= ``upright_ratio``) goes down within
``upright_within_ms`` and stays down (not standing again) for ``min_down_ms``. "Down" is
confirmed by, in this order: the pose (``lying``: torso near horizontal, legs not under it);
without a pose verdict, the box (height/width <= ``lying_ratio``, box not cut by the frame's
bottom edge) or a *collapse* (the box's top fell by ``COLLAPSE_DROP`` of the standing height
and its shape went below the middle of the two ratios, while its bottom stayed). A pose that
sees the person sitting, crouching or bending (``other``) confirms nothing, so sitting down,
bending and lying down slowly (down only after ``upright_within_ms``) never fire.

The detector often misses a person on the floor, and the tracker often does not know them
again after a fall. So a track lost within ``upright_within_ms`` of standing is *searched* for
with the pose in the area around where it stood (not when it was last seen at the frame's
side or top edge: it walked out; no more once found standing twice), and a lying person found
there continues its episode, "down" from the first frame it was missed; and a new track that
is not standing, over the feet of such a lost track, takes over the lost track's fall. Pose
runs only for these tracks (box changed shape or dropped, or track lost), at most once per
``POSE_EVERY_MS`` per track, and not once a fall is confirmed; without ``pose`` or an image,
only the box confirms (the rule as it was).

Only confirmed tracks (``tracker_id >= 0``) take part: unconfirmed rows are mostly noise.
Frames older than the last processed one (out of order) are ignored by the rules.

State versions: 2 (this layout); a version-1 state (savepoints from before ``persist``) is
upgraded on the first step (``upgrade_state``): zone visits, crowd, running, dispersal and
littering records keep their clocks and fired flags; an open fall episode keeps its start and
fired flag and counts as confirmed (version 1 only opened it for a box lying after upright).
What version 1 did not keep starts empty: a track's standing box (so a collapse, not a lying
pose or box, confirms a fall only after the person is seen standing again) and pose verdicts.
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable, NamedTuple

import numpy as np
import shapely
from shapely.geometry import Polygon

from .alerts import alert_record, time_bucket
from .detections import FrameAnalysis
from .scene import CountingLine, Scene, Zone

STATE_VERSION = 2
# Samples of position history kept per track; with the time bound below this is what makes
# per-track state O(1) whatever the frame rate.
MAX_HISTORY = 64
# Person tracks seen near a new litter object while it is young are its possible owners.
ATTRIBUTION_MS = 3_000
MAX_OWNERS = 4
OWNER_NEAR_HEIGHTS = 1.0  # ground points within one person height: "with" the object
OWNER_GONE_HEIGHTS = 2.0  # further than two heights (or unseen): "gone"
# Falls (see the module docstring). A collapse: the box's top fell by this fraction of the
# standing box's height, its bottom rose by less than COLLAPSE_RISE of it (not walking away),
# and its height/width went below the middle of upright_ratio and lying_ratio.
COLLAPSE_DROP = 0.2
COLLAPSE_RISE = 0.25
# At most one pose call per track per this much event time (so the cost per track does not
# grow with the frame rate; at 2 frames/s, whose intervals vary by a few ms, every frame).
POSE_EVERY_MS = 400
# Where a lost person is searched for, around the ground point where they were last seen, in
# heights of their standing box: a person who falls lies within about one height of their feet.
SEARCH_SIDE, SEARCH_ABOVE, SEARCH_BELOW = 1.1, 1.0, 0.5
SEARCH_STANDING_STOP = 2  # searches that found it standing before they stop (see _fall_search)
# A box whose bottom is this close (pixels, or fraction of the frame's height) to the frame's
# bottom edge is cut off: its shape says nothing about lying.
EDGE_PX, EDGE = 2, 0.01

PoseLookup = Callable[..., Any]  # (image, box, search=False) -> Posture | None


class BehaviourStep(NamedTuple):
    state: dict[str, Any]
    alerts: list[dict[str, Any]]
    # {"crossings": [{line_id, track_id, class, direction, time_ms}],
    #  "line_counts": {line_id: {"a_to_b": {class: n}, "b_to_a": {class: n}}},  (this frame)
    #  "zone_counts": {zone_id: objects of the zone's classes inside this frame},
    #  "tracks": confirmed tracks in this frame, "late": frame ignored as out of order,
    #  "pose_calls": person-down look-ups made for this frame}
    extra: dict[str, Any]


def persist(record: dict[str, Any] | None, holds: bool | None, now: int, hold_ms: int | None,
            *, grace_ms: int = 0, start: int | None = None, ready: bool = True
            ) -> tuple[dict[str, Any] | None, bool]:
    """One step of "a condition held for ``hold_ms`` fires once; it re-arms when it clears".

    ``record`` is None (not holding) or ``{"since": ms, "last": ms, "fired": bool}``: when the
    condition started holding, when it last held, whether this episode fired. ``holds``: True
    or False at ``now``; None (not observed) changes nothing. A False within ``grace_ms`` of
    the last True keeps the episode (a box jittering across a zone edge); later, it clears.
    ``start``: when the episode's clock started, if the caller knows better than ``since``
    (e.g. since when a car in a zone stands still). ``ready``: the episode may fire (e.g. a
    fall is confirmed); ``hold_ms`` None: it never fires (the record only keeps time).

    Returns ``(record, fire)``; the input record is never modified (plain dicts only, so it
    pickles into keyed state)."""
    if holds is None:
        return record, False
    if not holds:
        if record is not None and now - record["last"] <= grace_ms:
            return record, False
        return None, False
    new = dict(record) if record is not None else {"since": now, "last": now, "fired": False}
    new["last"] = now
    began = new["since"] if start is None else start
    fire = (ready and hold_ms is not None and not new["fired"] and now - began >= hold_ms)
    if fire:
        new["fired"] = True
    return new, fire


def _new_fall() -> dict[str, Any]:
    return {"up_ms": None, "up_box": None, "up_head": None, "up_ratio": None, "left_ms": None,
            "episode": None,
            "confirmed": None, "pose_ms": None, "posture": None, "found": None,
            "searched": 0, "from_track": None}


def new_state() -> dict[str, Any]:
    """Empty per-camera state.

    ``tracks``: {track_id: track}, where track is::

        {"class": str, "first_ms": int, "last_ms": int,
         "history": [(t_ms, gx, gy, w, h), ...],  # normalised ground point and box size
         "anchor": (gx, gy), "still_since": int,  # where/since when it stands still
         "zones": {zone_id: record},               # a visit: persist record (since = entered)
         "sides": {line_id: (side, gx, gy)},        # last confirmed side (-1 A, +1 B) and point
         "fall": {"up_ms", "up_box", "up_ratio",    # last seen standing: time, box (x1, y1, x2,
                                                    #   y2 normalised), height/width
                  "up_head",                        # (top, height) of its tallest recent box
                  "left_ms",                        # first frame after that, not standing
                  "episode": record | None,         # down since the fall
                  "confirmed": None | {"by": "pose" | "box" | "collapse", "ms": int, ...},
                  "pose_ms", "posture",             # last pose call and its verdict
                  "found",                          # where a lost person was found lying
                  "searched",                       # searches that found it standing since lost
                  "from_track"},                    # the lost track whose fall it took over
         "run": record | None,
         "owners": [track_id], "owner_near_ms": int | None, "litter": record | None}

    ``zones``: {zone_id: record} for crowd zones; ``dispersal``: record | None.
    """
    return {"version": STATE_VERSION, "last_ms": None, "tracks": {}, "zones": {},
            "dispersal": None}


def _v1_record(since: int | None, last: int | None, fired: bool) -> dict[str, Any] | None:
    return None if since is None else {"since": since, "last": last if last is not None else since,
                                       "fired": bool(fired)}


def upgrade_state(state: dict[str, Any]) -> dict[str, Any]:
    """A version-1 state (before ``persist``) in this version's layout (a copy); others as
    they are. Clocks and fired flags carry over (see the module docstring)."""
    if state.get("version", 1) != 1:
        return state
    tracks = {}
    for tid, old in state["tracks"].items():
        track = {k: v for k, v in old.items() if k not in ("fall", "run", "litter_fired")}
        track["zones"] = {z: _v1_record(v["since"], v["last_inside"], v["fired"])
                          for z, v in old["zones"].items()}
        fall, f = _new_fall(), old["fall"]
        fall["up_ms"], fall["up_ratio"] = f["upright_ms"], f["upright_ratio"]
        if f["down_since"] is not None:
            fall["left_ms"] = f["down_since"]
            fall["episode"] = _v1_record(f["down_since"], old["last_ms"], f["fired"])
            fall["confirmed"] = {"by": "box", "ms": f["down_since"]}
        track["fall"] = fall
        track["run"] = _v1_record(old["run"]["since"], old["last_ms"], old["run"]["fired"])
        # A v1 object that fired its littering alert keeps it fired: the record holds.
        track["litter"] = ({"since": old["last_ms"], "last": old["last_ms"], "fired": True}
                           if old.get("litter_fired") else None)
        tracks[tid] = track
    zones = {z: _v1_record(v["over_since"], state["last_ms"], v["fired"])
             for z, v in state["zones"].items()}
    zones = {z: v for z, v in zones.items() if v is not None}
    d = state["dispersal"]
    dispersal = ({"since": d["last_true_ms"], "last": d["last_true_ms"], "fired": True}
                 if d["active"] and d["last_true_ms"] is not None else None)
    return {"version": STATE_VERSION, "last_ms": state["last_ms"], "tracks": tracks,
            "zones": zones, "dispersal": dispersal}


def _copy_track(track: dict[str, Any]) -> dict[str, Any]:
    """A copy whose mutable parts are ours to change. Records inside (persist's dicts) and
    tuples are replaced, never changed in place, so they are shared."""
    copy = dict(track)
    copy["history"] = list(track["history"])
    copy["zones"] = dict(track["zones"])
    copy["sides"] = dict(track["sides"])
    copy["fall"] = dict(track["fall"])
    copy["owners"] = list(track["owners"])
    return copy


def _new_track(cls: str, now: int, gx: float, gy: float) -> dict[str, Any]:
    return {"class": cls, "first_ms": now, "last_ms": now, "history": [],
            "anchor": (gx, gy), "still_since": now, "zones": {}, "sides": {},
            "fall": _new_fall(), "run": None,
            "owners": [], "owner_near_ms": None, "litter": None}


def _posture_record(posture) -> dict[str, Any] | None:
    """A pose verdict as plain values for the state and the alert's evidence."""
    if posture is None:
        return None
    return {"verdict": str(posture.verdict),
            "torso_deg": None if posture.torso_deg is None else round(float(posture.torso_deg), 1),
            "legs_deg": None if posture.legs_deg is None else round(float(posture.legs_deg), 1),
            "score": round(float(posture.score), 3)}


def _r(value: float) -> float:
    """Evidence values rounded so that the JSON text is stable and readable."""
    return round(float(value), 4)


def expire(state: dict[str, Any], now_ms: int, ttl_ms: int) -> dict[str, Any]:
    """State without tracks unseen for more than ``ttl_ms`` at ``now_ms`` (for event-time timers
    when a camera goes quiet; ``step`` does the same on every frame)."""
    state = upgrade_state(state)
    tracks = {tid: t for tid, t in state["tracks"].items() if now_ms - t["last_ms"] <= ttl_ms}
    return {**state, "tracks": tracks}


class SceneBehaviour:
    """All behaviour rules of one camera's ``Scene``; stateless apart from its configuration.

    ``pose``: the fall rule's person-down look-up (see the module docstring), used by every
    ``step`` that does not pass its own."""

    def __init__(self, scene: Scene | None = None, pose: PoseLookup | None = None) -> None:
        self.scene = scene or Scene()
        self.pose = pose
        self._zones: list[tuple[Zone, Polygon]] = []
        for zone in self.scene.zones:
            shape = zone.shape()
            shapely.prepare(shape)
            self._zones.append((zone, shape))
        self._history_ms = self.scene.running.speed_window_ms * 2

    # ------------------------------------------------------------------------------ helpers

    def _alert(self, alert_type: str, severity: str, camera_id: str, now: int, subject: str,
               score: float, track_id: int | None, target: str, episode_ms: int,
               evidence: dict[str, Any]) -> dict[str, Any]:
        bucket = time_bucket(episode_ms, self.scene.dedupe_bucket_ms)
        # Subject, rule target and track all go into the hashed subject: two people in the
        # same zone in the same bucket are two alerts, not one.
        key = json.dumps([subject, target, track_id], ensure_ascii=False)
        return alert_record(alert_type, severity, camera_id, now, subject, score, id_key=key,
                            bucket_ms=bucket, track_id=track_id, evidence=evidence)

    def _speed(self, track: dict[str, Any], now: int, width: int, height: int,
               window_ms: int) -> tuple[float, tuple[float, float]] | None:
        """(box heights per second, ground point at the window's start) or None when the
        track's history is too short to say."""
        history = track["history"]
        start = next((s for s in history if now - s[0] <= window_ms), None)
        if start is None or now - start[0] < window_ms / 2:
            return None
        t0, x0, y0 = start[0], start[1], start[2]
        _, x1, y1, _, _ = history[-1]
        mean_h = float(np.mean([s[4] for s in history if s[0] >= t0])) * height
        if mean_h <= 0:
            return None
        distance_px = math.hypot((x1 - x0) * width, (y1 - y0) * height)
        return distance_px / mean_h / ((now - t0) / 1000.0), (x0, y0)

    # --------------------------------------------------------------------------------- step

    def step(self, state: dict[str, Any] | None, analysis: FrameAnalysis,
             event_time_ms: int | None = None, pose: PoseLookup | None = None) -> BehaviourStep:
        """One frame through every rule. ``pose``: this step's person-down look-up (default:
        the one given to the constructor); it looks at ``analysis.image``."""
        scene = self.scene
        now = int(analysis.capture_ms if event_time_ms is None else event_time_ms)
        state = upgrade_state(state) if state else new_state()
        extra: dict[str, Any] = {"crossings": [], "line_counts": {}, "zone_counts": {},
                                 "tracks": 0, "late": False, "pose_calls": 0}
        if state["last_ms"] is not None and now < state["last_ms"]:
            return BehaviourStep(state, [], {**extra, "late": True})

        camera_id = analysis.camera_id
        width, height = max(1, int(analysis.width)), max(1, int(analysis.height))
        det = analysis.detections
        names = det.class_name

        tracks = {tid: t for tid, t in state["tracks"].items()
                  if now - t["last_ms"] <= scene.track_ttl_ms}
        seen: dict[int, dict[str, Any]] = {}
        for row in np.flatnonzero(det.tracker_id >= 0):
            tid = int(det.tracker_id[row])
            x1, y1, x2, y2 = (float(v) for v in det.xyxy[row])
            gx, gy = (x1 + x2) / 2 / width, y2 / height
            bw, bh = max(0.0, x2 - x1) / width, max(0.0, y2 - y1) / height
            old = tracks.get(tid)
            track = _copy_track(old) if old is not None else _new_track(str(names[row]), now, gx, gy)
            track["last_ms"] = now
            history = track["history"]
            history.append((now, gx, gy, bw, bh))
            cut = next((i for i, s in enumerate(history) if now - s[0] <= self._history_ms),
                       len(history))
            track["history"] = history[max(cut, len(history) - MAX_HISTORY):]
            # Standing still: within still_tolerance of the box size of where it settled.
            ax, ay = track["anchor"]
            size_px = max(bw * width, bh * height, 1.0)
            if math.hypot((gx - ax) * width, (gy - ay) * height) > scene.still_tolerance * size_px:
                track["anchor"], track["still_since"] = (gx, gy), now
            tracks[tid] = seen[tid] = track
        if len(tracks) > scene.max_tracks:
            newest = sorted(tracks, key=lambda k: (tracks[k]["last_ms"], k))[-scene.max_tracks:]
            tracks = {k: tracks[k] for k in newest}
        extra["tracks"] = len(seen)

        alerts: list[dict[str, Any]] = []
        speeds = {tid: self._speed(t, now, width, height, scene.running.speed_window_ms)
                  for tid, t in seen.items()}
        zone_state = dict(state["zones"])
        self._zones_step(camera_id, now, seen, zone_state, alerts, extra)
        self._lines_step(camera_id, now, seen, alerts, extra)
        self._litter_step(camera_id, now, width, height, seen, alerts)
        if scene.fall.enabled:
            look = pose if pose is not None else self.pose
            image = analysis.image if look is not None else None
            extra["pose_calls"] = self._fall_step(camera_id, now, tracks, seen, width, height,
                                                  image, look if image is not None else None,
                                                  alerts)
        if scene.running.enabled:
            self._running_step(camera_id, now, seen, speeds, alerts)
        dispersal = state["dispersal"]
        if scene.dispersal.enabled:
            dispersal = self._dispersal_step(camera_id, now, seen, speeds, width, height,
                                             dispersal, alerts)

        new = {"version": STATE_VERSION, "last_ms": now, "tracks": tracks, "zones": zone_state,
               "dispersal": dispersal}
        return BehaviourStep(new, alerts, extra)

    # ------------------------------------------------------------------------------- zones

    def _zones_step(self, camera_id, now, seen, zone_state, alerts, extra) -> None:
        grace = self.scene.exit_grace_ms
        for zone, shape in self._zones:
            members = [(tid, t) for tid, t in seen.items() if t["class"] in zone.classes]
            if members:
                xs = np.array([t["history"][-1][1] for _, t in members])
                ys = np.array([t["history"][-1][2] for _, t in members])
                # Points on the boundary count as inside: covers, not contains.
                inside = shapely.intersects_xy(shape, xs, ys)
            else:
                inside = np.zeros(0, bool)
            inside_now = []
            for (tid, track), is_in in zip(members, inside):
                visits = track["zones"]
                visit = visits.get(zone.id)
                # A visit is a persist record: since = entered, last = last inside; leaving
                # for longer than exit_grace_ms ends it (and re-arms its alert).
                start, hold = None, None
                if zone.kind == "restricted":
                    hold = zone.min_inside_ms
                elif zone.kind == "loiter":
                    hold = zone.max_dwell_ms
                elif zone.kind == "no_parking":
                    hold = zone.max_stopped_ms
                    start = max(visit["since"] if visit is not None else now, track["still_since"])
                visit, fire = persist(visit, bool(is_in), now, hold, grace_ms=grace, start=start)
                if visit is None:
                    visits.pop(zone.id, None)
                    continue
                visits[zone.id] = visit
                if is_in:
                    inside_now.append((tid, track, visit))
                if fire:
                    self._zone_alert(camera_id, now, zone, tid, track, visit, start, alerts)
            extra["zone_counts"][zone.id] = len(inside_now)
            if zone.kind == "crowd":
                self._zone_crowd(camera_id, now, zone, inside_now, zone_state, alerts)

    def _zone_alert(self, camera_id, now, zone, tid, track, visit, start, alerts) -> None:
        dwell = now - visit["since"]
        if zone.kind == "restricted":
            alert_type, threshold, measured, started = (
                "intrusion", zone.min_inside_ms, dwell, visit["since"])
            evidence = {"inside_ms": dwell, "min_inside_ms": zone.min_inside_ms}
        elif zone.kind == "loiter":
            alert_type, threshold, measured, started = (
                "loitering", zone.max_dwell_ms, dwell, visit["since"])
            evidence = {"dwell_ms": dwell, "max_dwell_ms": zone.max_dwell_ms}
        else:  # no_parking
            stopped = now - start
            alert_type, threshold, measured, started = (
                "illegal_parking", zone.max_stopped_ms, stopped, start)
            evidence = {"stopped_ms": stopped, "max_stopped_ms": zone.max_stopped_ms,
                        "still_tolerance": self.scene.still_tolerance}
        evidence.update({"rule": alert_type, "zone_id": zone.id, "zone_kind": zone.kind,
                         "track_id": tid, "entered_ms": visit["since"],
                         "ground_point": [_r(v) for v in track["history"][-1][1:3]]})
        alerts.append(self._alert(
            alert_type, zone.severity, camera_id, now, track["class"],
            measured / threshold if threshold else 1.0, tid, f"zone:{zone.id}", started,
            evidence))

    def _zone_crowd(self, camera_id, now, zone, inside_now, zone_state, alerts) -> None:
        count = len(inside_now)
        record, fire = persist(zone_state.get(zone.id), count > zone.max_people, now,
                               zone.min_over_ms)
        if record is None:
            zone_state.pop(zone.id, None)
            return
        zone_state[zone.id] = record
        if not fire:
            return
        alerts.append(self._alert(
            "zone_crowd", zone.severity, camera_id, now, "person", count / zone.max_people, None,
            f"zone:{zone.id}", record["since"],
            {"rule": "zone_crowd", "zone_id": zone.id, "people_inside": count,
             "max_people": zone.max_people, "over_ms": now - record["since"],
             "min_over_ms": zone.min_over_ms,
             "track_ids": sorted(tid for tid, _, _ in inside_now)}))

    # ------------------------------------------------------------------------------- lines

    @staticmethod
    def _side_distance(line: CountingLine, gx: float, gy: float) -> float:
        """Signed distance (normalised units) to the infinite line; < 0 on side A, > 0 on B."""
        (sx, sy), (ex, ey) = line.points
        dx, dy = ex - sx, ey - sy
        return (dx * (gy - sy) - dy * (gx - sx)) / math.hypot(dx, dy)

    @staticmethod
    def _crosses_segment(line: CountingLine, p0: tuple[float, float],
                         p1: tuple[float, float]) -> bool:
        """Whether the move p0 -> p1 (on opposite sides) passes through the line *segment*,
        not just its infinite extension."""
        (sx, sy), (ex, ey) = line.points
        d0 = SceneBehaviour._side_distance(line, *p0)
        d1 = SceneBehaviour._side_distance(line, *p1)
        if d0 == d1:
            return False
        f = d0 / (d0 - d1)
        cx, cy = p0[0] + f * (p1[0] - p0[0]), p0[1] + f * (p1[1] - p0[1])
        dx, dy = ex - sx, ey - sy
        along = ((cx - sx) * dx + (cy - sy) * dy) / (dx * dx + dy * dy)
        return 0.0 <= along <= 1.0

    def _lines_step(self, camera_id, now, seen, alerts, extra) -> None:
        for line in self.scene.lines:
            for tid, track in seen.items():
                if track["class"] not in line.classes:
                    continue
                gx, gy = track["history"][-1][1:3]
                distance = self._side_distance(line, gx, gy)
                if abs(distance) <= line.hysteresis:
                    continue  # in the dead band: the side is whatever it was
                side = 1 if distance > 0 else -1
                previous = track["sides"].get(line.id)
                track["sides"][line.id] = (side, gx, gy)
                if previous is None or previous[0] == side:
                    continue
                if not self._crosses_segment(line, (previous[1], previous[2]), (gx, gy)):
                    continue  # went round the end of the line
                direction = "a_to_b" if side > 0 else "b_to_a"
                cls = track["class"]
                extra["crossings"].append({"line_id": line.id, "track_id": tid, "class": cls,
                                           "direction": direction, "time_ms": now})
                per_dir = extra["line_counts"].setdefault(line.id, {"a_to_b": {}, "b_to_a": {}})
                per_dir[direction][cls] = per_dir[direction].get(cls, 0) + 1
                if line.direction in ("both", direction):
                    continue
                alerts.append(self._alert(
                    "wrong_way", line.severity, camera_id, now, cls, 1.0, tid, f"line:{line.id}",
                    now,
                    {"rule": "wrong_way", "line_id": line.id, "track_id": tid,
                     "direction": direction, "allowed": line.direction,
                     "from_point": [_r(previous[1]), _r(previous[2])],
                     "to_point": [_r(gx), _r(gy)]}))

    # ------------------------------------------------------------------------------ litter

    def _litter_step(self, camera_id, now, width, height, seen, alerts) -> None:
        hotspots = [z for z, _ in self._zones if z.kind == "litter_hotspot"]
        if not hotspots:
            return
        persons = {tid: t for tid, t in seen.items() if t["class"] == "person"}

        def distance_heights(obj, person) -> float:
            _, ox, oy, _, _ = obj["history"][-1]
            _, px, py, _, ph = person["history"][-1]
            return math.hypot((ox - px) * width, (oy - py) * height) / max(ph * height, 1.0)

        for zone in hotspots:
            for tid, obj in seen.items():
                visit = obj["zones"].get(zone.id)
                if visit is None or visit["last"] != now or obj["litter"] is not None:
                    continue
                if now - obj["first_ms"] <= ATTRIBUTION_MS:
                    for pid, person in sorted(persons.items()):
                        if (pid not in obj["owners"] and len(obj["owners"]) < MAX_OWNERS
                                and distance_heights(obj, person) <= OWNER_NEAR_HEIGHTS):
                            obj["owners"].append(pid)
                if not obj["owners"]:
                    continue  # nobody brought it (or it was there before anyone): not dumping
                near = [pid for pid in obj["owners"]
                        if pid in persons and distance_heights(obj, persons[pid]) <= OWNER_GONE_HEIGHTS]
                if near or obj["owner_near_ms"] is None:
                    obj["owner_near_ms"] = now
                static = now - max(obj["still_since"], visit["since"])
                gone = now - obj["owner_near_ms"]
                # Left behind: static and unattended long enough. It fires once per object and
                # never re-arms (the record stays as long as the object's track).
                due = static >= zone.min_static_ms and gone >= zone.owner_gone_ms
                obj["litter"], fire = persist(obj["litter"], True if due else None, now, 0)
                if not fire:
                    continue
                alerts.append(self._alert(
                    "littering", zone.severity, camera_id, now, obj["class"],
                    static / zone.min_static_ms, tid, f"zone:{zone.id}", obj["first_ms"],
                    {"rule": "littering", "zone_id": zone.id, "track_id": tid,
                     "owner_track_ids": list(obj["owners"]), "static_ms": static,
                     "min_static_ms": zone.min_static_ms, "owner_gone_ms": gone,
                     "min_owner_gone_ms": zone.owner_gone_ms,
                     "ground_point": [_r(v) for v in obj["history"][-1][1:3]]}))

    # -------------------------------------------------------------------------- zone-free

    def _fall_step(self, camera_id, now, tracks, seen, width, height, image, pose,
                   alerts) -> int:
        """Falls (see the module docstring) for every remembered track; ``pose`` is None when
        there is no look-up or no image. Returns the number of pose calls made."""
        rule = self.scene.fall
        calls = 0
        self._fall_handover(now, tracks, seen, width, height)
        for tid in sorted(tracks):
            track = tracks[tid]
            if track["class"] not in rule.classes:
                continue
            if tid in seen:
                holds, called = self._fall_seen(now, track["fall"], track, width, height,
                                                image, pose)
                fall = track["fall"]
            else:
                fall = track["fall"]
                recent = fall["up_ms"] is not None and now - fall["up_ms"] <= rule.upright_within_ms
                episode = fall["episode"]
                if pose is None or (episode is not None and episode["fired"]) or not (
                        recent or (fall["confirmed"] is not None and episode is not None)):
                    continue
                if fall["confirmed"] is None and (fall["searched"] >= SEARCH_STANDING_STOP
                                                  or self._left_view(track)):
                    continue
                track = tracks[tid] = _copy_track(track)
                fall = track["fall"]
                holds, called = self._fall_search(now, fall, track, width, height, image, pose,
                                                  recent)
            calls += called
            fall["episode"], fire = persist(fall["episode"], holds, now, rule.min_down_ms,
                                            start=fall["left_ms"],
                                            ready=fall["confirmed"] is not None)
            if fire:
                self._fall_alert(camera_id, now, tid, track, fall, tid in seen, width, height,
                                 alerts)
        return calls

    def _fall_handover(self, now, tracks, seen, width, height) -> None:
        """After a fall the tracker often does not know the person again (their box and look
        changed): a new track that is not standing, over the feet of a track lost within
        ``upright_within_ms`` of standing, takes over that track's fall (its standing, its
        "down since", any confirmation); the lost one stops."""
        rule = self.scene.fall
        window = rule.upright_within_ms
        lost = [tid for tid, t in sorted(tracks.items())
                if tid not in seen and t["class"] in rule.classes
                and t["fall"]["up_ms"] is not None and now - t["fall"]["up_ms"] <= window
                and not (t["fall"]["episode"] or {}).get("fired")]
        for tid, track in sorted(seen.items()):
            fall = track["fall"]
            if (not lost or track["class"] not in rule.classes or fall["up_ms"] is not None
                    or now - track["first_ms"] > window):
                continue
            _, gx, gy, bw, bh = track["history"][-1]
            if (bh * height) / max(bw * width, 1e-6) >= rule.upright_ratio:
                continue  # standing: someone else, or back on their feet
            box = (gx - bw / 2, gy - bh, gx + bw / 2, gy)
            donors = [d for d in lost if tracks[d]["class"] == track["class"]
                      and tracks[d]["fall"]["up_box"] is not None
                      and self._over_feet(tracks[d]["fall"]["up_box"], box)]
            if not donors:
                continue
            donor = min(donors, key=lambda d: abs((tracks[d]["fall"]["up_box"][0]
                                                   + tracks[d]["fall"]["up_box"][2]) / 2 - gx))
            lost.remove(donor)
            tracks[donor] = _copy_track(tracks[donor])
            given = tracks[donor]["fall"]
            fall.update({k: given[k] for k in ("up_ms", "up_box", "up_head", "up_ratio",
                                               "left_ms", "episode", "confirmed")})
            fall["from_track"] = donor
            tracks[donor]["fall"] = _new_fall()

    def _fall_seen(self, now, fall, track, width, height, image, pose) -> tuple[bool, int]:
        """A visible track: updates ``fall`` (the track's own copy); returns (down, pose calls)."""
        rule = self.scene.fall
        _, gx, gy, bw, bh = track["history"][-1]
        box = (gx - bw / 2, gy - bh, gx + bw / 2, gy)
        ratio = (bh * height) / max(bw * width, 1e-6)
        standing = ratio >= rule.upright_ratio
        recent = fall["up_ms"] is not None and now - fall["up_ms"] <= rule.upright_within_ms
        confirm, called = None, 0
        if not standing and recent and fall["confirmed"] is None:
            box_lying = (ratio <= rule.lying_ratio and gy < 1.0 - max(EDGE_PX / height, EDGE)
                         and self._over_feet(fall["up_box"], box))
            dropped = self._dropped(fall, box)
            collapse = dropped and ratio <= (rule.upright_ratio + rule.lying_ratio) / 2
            if pose is None:
                confirm = "box" if box_lying else None
            elif (dropped or ratio <= (rule.upright_ratio + rule.lying_ratio) / 2) and (
                    fall["pose_ms"] is None or now - fall["pose_ms"] >= POSE_EVERY_MS):
                pixels = (box[0] * width, box[1] * height, box[2] * width, box[3] * height)
                posture = pose(image, pixels, search=False)
                called = 1
                fall["pose_ms"], fall["posture"] = now, _posture_record(posture)
                verdict = "unknown" if posture is None else posture.verdict
                if verdict == "standing":
                    standing = True
                elif verdict == "lying":
                    confirm = "pose"
                elif verdict == "unknown":  # the pose cannot tell: the box decides
                    confirm = "box" if box_lying else "collapse" if collapse else None
        fall["searched"] = 0
        if standing:
            # How tall they stood: the highest top among the recent boxes (the last standing
            # box may already be a stumble's).
            top = min(track["history"], key=lambda s: (s[2] - s[4], -s[0]))
            fall.update(up_ms=now, up_box=box, up_head=(top[2] - top[4], top[4]), up_ratio=ratio,
                        left_ms=None, confirmed=None, found=None)
            return False, called
        if fall["left_ms"] is None:
            fall["left_ms"] = now
        if confirm is not None:
            fall["confirmed"] = {"by": confirm, "ms": now}
        return True, called

    def _fall_search(self, now, fall, track, width, height, image, pose,
                     recent) -> tuple[bool | None, int]:
        """A lost track: look for a lying person around where it was. Returns (True: found
        lying, False: found standing, None: nothing seen; pose calls)."""
        if fall["left_ms"] is None:
            fall["left_ms"] = now  # the first frame without it since it stood
        if fall["pose_ms"] is not None and now - fall["pose_ms"] < POSE_EVERY_MS:
            # Between look-ups the last one stands.
            last = fall["posture"]
            return (True if fall["found"] is not None and last is not None
                    and last["verdict"] == "lying" else None), 0
        posture = pose(image, self._search_region(fall, track, width, height), search=True)
        fall["pose_ms"], fall["posture"] = now, _posture_record(posture)
        if posture is not None and posture.verdict == "standing":
            # Still on their feet (a fall may only be starting): standing from now on. Found
            # standing twice, they most likely stand there undetected: no more searches until
            # the track is seen again (each search costs a model run).
            fall["up_ms"], fall["left_ms"] = now, None
            fall["searched"] += 1
            return False, 1
        if posture is None or posture.verdict != "lying":
            return None, 1
        if fall["confirmed"] is None and recent:
            fall["confirmed"] = {"by": "pose", "ms": now}
        x1, y1, x2, y2 = (float(v) for v in posture.box)
        fall["found"] = (x1 / width, y1 / height, x2 / width, y2 / height)
        track["last_ms"] = now  # found: the track's memory stays as long as it is found
        return True, 1

    @staticmethod
    def _left_view(track) -> bool:
        """Last seen touching the frame's left, right or top edge: most likely it walked out
        of view (its box cut by the edge), so a search would find nothing."""
        _, gx, gy, bw, bh = track["history"][-1]
        edge = 0.005
        return gx - bw / 2 <= edge or gx + bw / 2 >= 1.0 - edge or gy - bh <= edge

    @staticmethod
    def _dropped(fall, box) -> bool:
        """The box's top fell by COLLAPSE_DROP of the standing height below the top of the
        tallest recent box, while its bottom rose by less than COLLAPSE_RISE of it (rising:
        walking away from the camera), and it still spans where the standing person's feet
        were (a person falls from their feet; a track that jumped to someone else does not)."""
        up_box = fall["up_box"]
        if up_box is None:
            return False
        top, up_h = fall["up_head"] or (up_box[1], up_box[3] - up_box[1])
        up_h = max(up_h, 1e-6)
        return (box[1] - top >= COLLAPSE_DROP * up_h
                and up_box[3] - box[3] < COLLAPSE_RISE * up_h
                and SceneBehaviour._over_feet(up_box, box))

    @staticmethod
    def _over_feet(up_box, box) -> bool:
        """``box`` spans (give or take a quarter of its width) where the standing box's feet
        were: a person falls from where they stood. True without a standing box."""
        if up_box is None:
            return True
        feet = (up_box[0] + up_box[2]) / 2
        margin = (up_box[2] - up_box[0]) / 4
        return box[0] - margin <= feet <= box[2] + margin

    @staticmethod
    def _search_region(fall, track, width, height) -> tuple[float, float, float, float]:
        """Frame pixels: around the ground point where the track was last seen, sized by its
        standing height. (The same area every time: a tighter one around the lying person
        found gives the model too little context.)"""
        _, gx, gy, _, bh = track["history"][-1]
        up_h = fall["up_box"][3] - fall["up_box"][1] if fall["up_box"] is not None else bh
        h = max(up_h, bh) * height
        x, y = gx * width, gy * height
        return (x - SEARCH_SIDE * h, y - SEARCH_ABOVE * h,
                x + SEARCH_SIDE * h, y + SEARCH_BELOW * h)

    def _fall_alert(self, camera_id, now, tid, track, fall, visible, width, height,
                    alerts) -> None:
        rule = self.scene.fall
        down_since = fall["left_ms"]
        down = now - down_since
        ratio = None
        if visible:
            _, _, _, bw, bh = track["history"][-1]
            ratio = _r((bh * height) / max(bw * width, 1e-6))
        alerts.append(self._alert(
            "fall", rule.severity, camera_id, now, track["class"],
            down / rule.min_down_ms if rule.min_down_ms else 1.0, tid, "fall", down_since,
            {"rule": "fall", "track_id": tid, "aspect_ratio": ratio,
             "upright_aspect_ratio": None if fall["up_ratio"] is None else _r(fall["up_ratio"]),
             "upright_ms": fall["up_ms"], "down_since_ms": down_since, "down_ms": down,
             "min_down_ms": rule.min_down_ms, "upright_within_ms": rule.upright_within_ms,
             "upright_ratio": rule.upright_ratio, "lying_ratio": rule.lying_ratio,
             "confirmed_by": fall["confirmed"]["by"], "confirmed_ms": fall["confirmed"]["ms"],
             "seen": visible, "posture": fall["posture"], "from_track": fall["from_track"]}))

    def _running_step(self, camera_id, now, seen, speeds, alerts) -> None:
        rule = self.scene.running
        for tid, track in seen.items():
            if track["class"] not in rule.classes:
                continue
            measured = speeds.get(tid)
            fast = measured is not None and measured[0] >= rule.min_speed
            track["run"], fire = persist(track["run"], fast, now, rule.min_duration_ms)
            if not fire:
                continue
            run = track["run"]
            duration = now - run["since"]
            alerts.append(self._alert(
                "running", rule.severity, camera_id, now, track["class"],
                measured[0] / rule.min_speed, tid, "running", run["since"],
                {"rule": "running", "track_id": tid, "speed_heights_per_s": _r(measured[0]),
                 "min_speed": rule.min_speed, "running_ms": duration,
                 "min_duration_ms": rule.min_duration_ms,
                 "speed_window_ms": rule.speed_window_ms}))

    def _dispersal_step(self, camera_id, now, seen, speeds, width, height, dispersal,
                        alerts) -> dict[str, Any] | None:
        rule = self.scene.dispersal
        moving = {tid: speeds[tid] for tid, t in seen.items()
                  if t["class"] == "person" and speeds.get(tid) is not None}
        fleeing: list[tuple[int, float]] = []
        if len(moving) >= rule.min_tracks:
            starts = np.array([m[1] for m in moving.values()]) * [width, height]
            centroid = starts.mean(axis=0)
            for (tid, (speed, start)), start_px in zip(moving.items(), starts):
                now_px = np.array(seen[tid]["history"][-1][1:3]) * [width, height]
                outward = float(np.dot(now_px - start_px, start_px - centroid)) > 0
                if outward and speed >= rule.min_speed:
                    fleeing.append((tid, speed))
        condition = (len(fleeing) >= rule.min_tracks
                     and len(fleeing) >= rule.min_fraction * len(moving))
        # Fires at once; re-arms after rearm_ms without the condition.
        dispersal, fire = persist(dispersal, condition, now, 0, grace_ms=rule.rearm_ms)
        if not fire:
            return dispersal
        alerts.append(self._alert(
            "crowd_dispersal", rule.severity, camera_id, now, "person",
            len(fleeing) / rule.min_tracks, None, "dispersal", now,
            {"rule": "crowd_dispersal", "fleeing_tracks": len(fleeing),
             "tracked_moving": len(moving), "min_tracks": rule.min_tracks,
             "min_fraction": rule.min_fraction, "min_speed": rule.min_speed,
             "track_ids": sorted(t for t, _ in fleeing),
             "median_speed_heights_per_s": _r(float(np.median([s for _, s in fleeing])))}))
        return dispersal
