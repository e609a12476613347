"""Track-based behaviour rules for one camera, fed one tracked frame at a time.

``SceneBehaviour(scene).step(state, analysis, event_time_ms) -> BehaviourStep(state, alerts,
extra)`` is a pure function: ``state`` is a plain dict of ints, floats, strings, tuples, lists
and dicts (see ``new_state``) that pickles into Flink keyed state (one per camera) without
depending on this module's import path, and the input state is never modified.

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

One alert per episode: each rule remembers, in the state, that it fired for the current episode
(a visit to a zone, a fall, a run); the alert id hashes (type, camera, [subject, rule target,
track], bucket of the episode start), so a replay from a checkpoint, or from scratch, gives the
same id and the upserting sink keeps one alert.

Only confirmed tracks (``tracker_id >= 0``) take part: unconfirmed rows are mostly noise.
Frames older than the last processed one (out of order) are ignored by the rules.
"""
from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

import numpy as np
import shapely
from shapely.geometry import Polygon

from .alerts import alert_id, time_bucket
from .detections import FrameAnalysis
from .scene import CountingLine, Scene, Zone

STATE_VERSION = 1
# Samples of position history kept per track; with the time bound below this is what makes
# per-track state O(1) whatever the frame rate.
MAX_HISTORY = 64
# Person tracks seen near a new litter object while it is young are its possible owners.
ATTRIBUTION_MS = 3_000
MAX_OWNERS = 4
OWNER_NEAR_HEIGHTS = 1.0  # ground points within one person height: "with" the object
OWNER_GONE_HEIGHTS = 2.0  # further than two heights (or unseen): "gone"


class BehaviourStep(NamedTuple):
    state: dict[str, Any]
    alerts: list[dict[str, Any]]
    # {"crossings": [{line_id, track_id, class, direction, time_ms}],
    #  "line_counts": {line_id: {"a_to_b": {class: n}, "b_to_a": {class: n}}},  (this frame)
    #  "zone_counts": {zone_id: objects of the zone's classes inside this frame},
    #  "tracks": confirmed tracks in this frame, "late": frame ignored as out of order}
    extra: dict[str, Any]


def new_state() -> dict[str, Any]:
    """Empty per-camera state.

    ``tracks``: {track_id: track}, where track is::

        {"class": str, "first_ms": int, "last_ms": int,
         "history": [(t_ms, gx, gy, w, h), ...],  # normalised ground point and box size
         "anchor": (gx, gy), "still_since": int,  # where/since when it stands still
         "zones": {zone_id: {"since": int, "last_inside": int, "fired": bool}},
         "sides": {line_id: (side, gx, gy)},        # last confirmed side (-1 A, +1 B) and point
         "fall": {"upright_ms", "upright_ratio", "down_since", "fired"},
         "run": {"since", "fired"},
         "owners": [track_id], "owner_near_ms": int | None, "litter_fired": bool}

    ``zones``: {zone_id: {"over_since": int | None, "fired": bool}} for crowd zones;
    ``dispersal``: {"active": bool, "last_true_ms": int | None}.
    """
    return {"version": STATE_VERSION, "last_ms": None, "tracks": {}, "zones": {},
            "dispersal": {"active": False, "last_true_ms": None}}


def _copy_track(track: dict[str, Any]) -> dict[str, Any]:
    """A copy whose mutable parts are ours to change (tuples inside are immutable)."""
    copy = dict(track)
    copy["history"] = list(track["history"])
    copy["zones"] = {k: dict(v) for k, v in track["zones"].items()}
    copy["sides"] = dict(track["sides"])
    copy["fall"] = dict(track["fall"])
    copy["run"] = dict(track["run"])
    copy["owners"] = list(track["owners"])
    return copy


def _new_track(cls: str, now: int, gx: float, gy: float) -> dict[str, Any]:
    return {"class": cls, "first_ms": now, "last_ms": now, "history": [],
            "anchor": (gx, gy), "still_since": now, "zones": {}, "sides": {},
            "fall": {"upright_ms": None, "upright_ratio": None, "down_since": None, "fired": False},
            "run": {"since": None, "fired": False},
            "owners": [], "owner_near_ms": None, "litter_fired": False}


def _r(value: float) -> float:
    """Evidence values rounded so that the JSON text is stable and readable."""
    return round(float(value), 4)


def expire(state: dict[str, Any], now_ms: int, ttl_ms: int) -> dict[str, Any]:
    """State without tracks unseen for more than ``ttl_ms`` at ``now_ms`` (for event-time timers
    when a camera goes quiet; ``step`` does the same on every frame)."""
    tracks = {tid: t for tid, t in state["tracks"].items() if now_ms - t["last_ms"] <= ttl_ms}
    return {**state, "tracks": tracks}


class SceneBehaviour:
    """All behaviour rules of one camera's ``Scene``; stateless apart from its configuration."""

    def __init__(self, scene: Scene | None = None) -> None:
        self.scene = scene or Scene()
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
        return {
            "alert_id": alert_id(alert_type, camera_id, key, bucket),
            "type": alert_type,
            "severity": severity,
            "camera_id": camera_id,
            "time_ms": int(now),
            "subject": subject,
            "score": float(score),
            "track_id": None if track_id is None else int(track_id),
            "evidence": json.dumps(evidence, sort_keys=True, separators=(",", ":")),
            "evidence_jpeg": None,
            "evidence_ref": None,
        }

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
             event_time_ms: int | None = None) -> BehaviourStep:
        scene = self.scene
        now = int(analysis.capture_ms if event_time_ms is None else event_time_ms)
        state = state or new_state()
        extra: dict[str, Any] = {"crossings": [], "line_counts": {}, "zone_counts": {},
                                 "tracks": 0, "late": False}
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
        zone_state = {k: dict(v) for k, v in state["zones"].items()}
        self._zones_step(camera_id, now, seen, zone_state, alerts, extra)
        self._lines_step(camera_id, now, seen, alerts, extra)
        self._litter_step(camera_id, now, width, height, seen, alerts)
        if scene.fall.enabled:
            self._fall_step(camera_id, now, seen, width, height, alerts)
        if scene.running.enabled:
            self._running_step(camera_id, now, seen, speeds, alerts)
        dispersal = dict(state["dispersal"])
        if scene.dispersal.enabled:
            self._dispersal_step(camera_id, now, seen, speeds, width, height, dispersal, alerts)

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
                if is_in:
                    if visit is None:
                        visit = visits[zone.id] = {"since": now, "last_inside": now, "fired": False}
                    visit["last_inside"] = now
                    inside_now.append((tid, track, visit))
                elif visit is not None and now - visit["last_inside"] > grace:
                    del visits[zone.id]
            extra["zone_counts"][zone.id] = len(inside_now)
            if zone.kind == "crowd":
                self._zone_crowd(camera_id, now, zone, inside_now, zone_state, alerts)
                continue
            for tid, track, visit in inside_now:
                if visit["fired"]:
                    continue
                dwell = now - visit["since"]
                if zone.kind == "restricted" and dwell >= zone.min_inside_ms:
                    alert_type, threshold, measured, started = (
                        "intrusion", zone.min_inside_ms, dwell, visit["since"])
                    evidence = {"inside_ms": dwell, "min_inside_ms": zone.min_inside_ms}
                elif zone.kind == "loiter" and dwell >= zone.max_dwell_ms:
                    alert_type, threshold, measured, started = (
                        "loitering", zone.max_dwell_ms, dwell, visit["since"])
                    evidence = {"dwell_ms": dwell, "max_dwell_ms": zone.max_dwell_ms}
                elif zone.kind == "no_parking":
                    stopped_since = max(visit["since"], track["still_since"])
                    stopped = now - stopped_since
                    if stopped < zone.max_stopped_ms:
                        continue
                    alert_type, threshold, measured, started = (
                        "illegal_parking", zone.max_stopped_ms, stopped, stopped_since)
                    evidence = {"stopped_ms": stopped, "max_stopped_ms": zone.max_stopped_ms,
                                "still_tolerance": self.scene.still_tolerance}
                else:
                    continue
                visit["fired"] = True
                evidence.update({"rule": alert_type, "zone_id": zone.id, "zone_kind": zone.kind,
                                 "track_id": tid, "entered_ms": visit["since"],
                                 "ground_point": [_r(v) for v in track["history"][-1][1:3]]})
                alerts.append(self._alert(
                    alert_type, zone.severity, camera_id, now, track["class"],
                    measured / threshold if threshold else 1.0, tid, f"zone:{zone.id}", started,
                    evidence))

    def _zone_crowd(self, camera_id, now, zone, inside_now, zone_state, alerts) -> None:
        record = zone_state.setdefault(zone.id, {"over_since": None, "fired": False})
        count = len(inside_now)
        if count <= zone.max_people:
            record["over_since"], record["fired"] = None, False
            return
        if record["over_since"] is None:
            record["over_since"] = now
        over = now - record["over_since"]
        if record["fired"] or over < zone.min_over_ms:
            return
        record["fired"] = True
        alerts.append(self._alert(
            "zone_crowd", zone.severity, camera_id, now, "person", count / zone.max_people, None,
            f"zone:{zone.id}", record["over_since"],
            {"rule": "zone_crowd", "zone_id": zone.id, "people_inside": count,
             "max_people": zone.max_people, "over_ms": over, "min_over_ms": zone.min_over_ms,
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
                if visit is None or visit["last_inside"] != now or obj["litter_fired"]:
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
                if static < zone.min_static_ms or gone < zone.owner_gone_ms:
                    continue
                obj["litter_fired"] = True
                alerts.append(self._alert(
                    "littering", zone.severity, camera_id, now, obj["class"],
                    static / zone.min_static_ms, tid, f"zone:{zone.id}", obj["first_ms"],
                    {"rule": "littering", "zone_id": zone.id, "track_id": tid,
                     "owner_track_ids": list(obj["owners"]), "static_ms": static,
                     "min_static_ms": zone.min_static_ms, "owner_gone_ms": gone,
                     "min_owner_gone_ms": zone.owner_gone_ms,
                     "ground_point": [_r(v) for v in obj["history"][-1][1:3]]}))

    # -------------------------------------------------------------------------- zone-free

    def _fall_step(self, camera_id, now, seen, width, height, alerts) -> None:
        rule = self.scene.fall
        for tid, track in seen.items():
            if track["class"] not in rule.classes:
                continue
            _, _, _, bw, bh = track["history"][-1]
            ratio = (bh * height) / max(bw * width, 1e-6)
            fall = track["fall"]
            if ratio >= rule.upright_ratio:
                fall.update(upright_ms=now, upright_ratio=ratio, down_since=None, fired=False)
                continue
            if ratio > rule.lying_ratio:
                continue  # bending, sitting, or the box is mid-change: neither up nor down
            if fall["down_since"] is None:
                if fall["upright_ms"] is None or now - fall["upright_ms"] > rule.upright_within_ms:
                    continue  # lying since before we knew it upright: resting, not falling
                fall["down_since"] = now
            down = now - fall["down_since"]
            if fall["fired"] or down < rule.min_down_ms:
                continue
            fall["fired"] = True
            alerts.append(self._alert(
                "fall", rule.severity, camera_id, now, track["class"],
                down / rule.min_down_ms if rule.min_down_ms else 1.0, tid, "fall",
                fall["down_since"],
                {"rule": "fall", "track_id": tid, "aspect_ratio": _r(ratio),
                 "upright_aspect_ratio": _r(fall["upright_ratio"]),
                 "upright_ms": fall["upright_ms"], "down_since_ms": fall["down_since"],
                 "down_ms": down, "min_down_ms": rule.min_down_ms,
                 "upright_ratio": rule.upright_ratio, "lying_ratio": rule.lying_ratio}))

    def _running_step(self, camera_id, now, seen, speeds, alerts) -> None:
        rule = self.scene.running
        for tid, track in seen.items():
            if track["class"] not in rule.classes:
                continue
            measured = speeds.get(tid)
            run = track["run"]
            if measured is None or measured[0] < rule.min_speed:
                run["since"], run["fired"] = None, False
                continue
            if run["since"] is None:
                run["since"] = now
            duration = now - run["since"]
            if run["fired"] or duration < rule.min_duration_ms:
                continue
            run["fired"] = True
            alerts.append(self._alert(
                "running", rule.severity, camera_id, now, track["class"],
                measured[0] / rule.min_speed, tid, "running", run["since"],
                {"rule": "running", "track_id": tid, "speed_heights_per_s": _r(measured[0]),
                 "min_speed": rule.min_speed, "running_ms": duration,
                 "min_duration_ms": rule.min_duration_ms,
                 "speed_window_ms": rule.speed_window_ms}))

    def _dispersal_step(self, camera_id, now, seen, speeds, width, height, dispersal,
                        alerts) -> None:
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
        if condition:
            dispersal["last_true_ms"] = now
        elif dispersal["active"] and (dispersal["last_true_ms"] is None
                                      or now - dispersal["last_true_ms"] > rule.rearm_ms):
            dispersal["active"] = False
        if not condition or dispersal["active"]:
            return
        dispersal["active"] = True
        alerts.append(self._alert(
            "crowd_dispersal", rule.severity, camera_id, now, "person",
            len(fleeing) / rule.min_tracks, None, "dispersal", now,
            {"rule": "crowd_dispersal", "fleeing_tracks": len(fleeing),
             "tracked_moving": len(moving), "min_tracks": rule.min_tracks,
             "min_fraction": rule.min_fraction, "min_speed": rule.min_speed,
             "track_ids": sorted(t for t, _ in fleeing),
             "median_speed_heights_per_s": _r(float(np.median([s for _, s in fleeing])))}))
