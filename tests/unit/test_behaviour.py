import copy
import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from camflow.transforms.alerts import alert_id, time_bucket
from camflow.transforms.behaviour import (POSE_EVERY_MS, STATE_VERSION, SceneBehaviour, expire,
                                          new_state, persist, upgrade_state)
from camflow.transforms.detections import COCO_CLASSES, Detections, FrameAnalysis
from camflow.transforms.scene import FallRule, CountingLine, Scene, Zone

W = H = 1000  # pixels; scene coordinates are these / 1000
DOWN_MS = FallRule().min_down_ms  # the fall rule's default

T0 = 1_700_000_040_000  # a multiple of 60 s
CAM = "cam-1"
ALERT_SCHEMA = Path(__file__).parents[2] / "schemas" / "alert.avsc"

RIGHT_HALF = [(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)]


def frame(t: int, objects, image=None) -> FrameAnalysis:
    """objects: (track_id, class name, (x1, y1, x2, y2) pixels)."""
    objects = list(objects)
    detections = Detections(
        xyxy=np.array([o[2] for o in objects], np.float32).reshape(-1, 4),
        confidence=np.full(len(objects), 0.9, np.float32),
        class_id=np.array([COCO_CLASSES.index(o[1]) for o in objects], np.int32),
        tracker_id=np.array([o[0] for o in objects], np.int64),
    )
    return FrameAnalysis(CAM, t, (t - T0) // 100, W, H, b"", detections=detections, image=image)


def person(tid, gx, gy, h=100.0, w=40.0):
    """A person standing at ground point (gx, gy) pixels."""
    return (tid, "person", (gx - w / 2, gy - h, gx + w / 2, gy))


def thing(tid, cls, gx, gy, w=60.0, h=40.0):
    return (tid, cls, (gx - w / 2, gy - h, gx + w / 2, gy))


def run(behaviour, frames, state=None, image=None):
    """Feed (t, objects) pairs; returns (state, alerts, extras)."""
    alerts, extras = [], []
    for t, objects in frames:
        step = behaviour.step(state, frame(t, objects, image))
        state = step.state
        alerts += step.alerts
        extras.append(step.extra)
    return state, alerts, extras


def evidence(alert):
    return json.loads(alert["evidence"])


def expected_id(alert_type, subject, target, track_id, episode_ms, bucket_ms=60_000):
    key = json.dumps([subject, target, track_id])
    return alert_id(alert_type, CAM, key, time_bucket(episode_ms, bucket_ms))


# ------------------------------------------------------------------------------ intrusion

def walk_into_right_half(tid=1, cls="person", dwell_frames=30, step_ms=100):
    """Enter the right half at frame 10 (x crosses 500) and stay for dwell_frames."""
    frames = []
    for i in range(10 + dwell_frames):
        x = 410 + min(i, 10) * 10  # 410 .. 510, then stands at 510
        obj = person(tid, x, 500) if cls == "person" else thing(tid, cls, x, 500)
        frames.append((T0 + i * step_ms, [obj]))
    return frames


def test_intrusion_fires_once_after_min_inside():
    scene = Scene(zones=[Zone(id="pier", kind="restricted", polygon=RIGHT_HALF,
                              min_inside_ms=1000)], fall={"enabled": False})
    _, alerts, extras = run(SceneBehaviour(scene), walk_into_right_half(dwell_frames=40))
    entered = T0 + 900  # x reaches 500 (on the boundary, which counts) at frame 9
    assert [(a["type"], a["time_ms"]) for a in alerts] == [("intrusion", entered + 1000)]
    alert = alerts[0]
    assert alert["alert_id"] == expected_id("intrusion", "person", "zone:pier", 1, entered)
    assert alert["severity"] == "critical" and alert["subject"] == "person"
    assert alert["track_id"] == 1 and alert["score"] == 1.0
    assert evidence(alert) == {
        "rule": "intrusion", "zone_id": "pier", "zone_kind": "restricted", "track_id": 1,
        "entered_ms": entered, "inside_ms": 1000, "min_inside_ms": 1000,
        "ground_point": [0.51, 0.5]}
    assert extras[-1]["zone_counts"] == {"pier": 1}


def test_intrusion_negative_cases():
    scene = Scene(zones=[Zone(id="pier", kind="restricted", polygon=RIGHT_HALF,
                              min_inside_ms=1000)])
    behaviour = SceneBehaviour(scene)
    # Inside for 900 ms only.
    assert run(behaviour, walk_into_right_half(dwell_frames=9))[1] == []
    # A class the zone does not watch.
    assert run(behaviour, walk_into_right_half(cls="car", dwell_frames=40))[1] == []
    # Unconfirmed detections (tracker_id -1) never count.
    assert run(behaviour, walk_into_right_half(tid=-1, dwell_frames=40))[1] == []


def test_leaving_within_exit_grace_keeps_one_visit_and_one_alert():
    scene = Scene(zones=[Zone(id="pier", kind="restricted", polygon=RIGHT_HALF,
                              min_inside_ms=0)], exit_grace_ms=1000)
    frames = [(T0 + i * 100, [person(1, 600 if i % 10 != 5 else 400, 500)]) for i in range(50)]
    alerts = run(SceneBehaviour(scene), frames)[1]
    assert [a["time_ms"] for a in alerts] == [T0]


# ------------------------------------------------------------------------------ loitering

def test_loitering_after_max_dwell_and_not_before():
    scene = Scene(zones=[Zone(id="atm", kind="loiter", polygon=RIGHT_HALF,
                              max_dwell_ms=120_000)])
    stay = [(T0 + s * 1000, [person(7, 700 + (s % 3) * 5, 600)]) for s in range(181)]
    _, alerts, _ = run(SceneBehaviour(scene), stay)
    assert [(a["type"], a["time_ms"], a["track_id"], a["severity"]) for a in alerts] == [
        ("loitering", T0 + 120_000, 7, "warning")]
    assert alerts[0]["alert_id"] == expected_id("loitering", "person", "zone:atm", 7, T0)
    assert evidence(alerts[0])["dwell_ms"] == 120_000
    assert run(SceneBehaviour(scene), stay[:120])[1] == []


# ------------------------------------------------------------------------- line crossing

LINE = CountingLine(id="gate", points=((0.0, 0.5), (0.6, 0.5)), direction="a_to_b",
                    classes=["person", "car"])


def test_line_counts_by_direction_and_class_and_wrong_way():
    scene = Scene(lines=[LINE], running={"enabled": False})
    frames = []
    for i in range(20):
        y_down, y_up = 405 + i * 10, 595 - i * 10  # 405 -> 595 and 595 -> 405
        frames.append((T0 + i * 100, [person(1, 100, y_down), person(2, 200, y_down),
                                      thing(3, "car", 300, y_up, 100, 60)]))
    _, alerts, extras = run(SceneBehaviour(scene), frames)
    crossings = [c for e in extras for c in e["crossings"]]
    # A side counts once 0.01 (10 px) from the line: y=515 going down, y=485 going up.
    assert crossings == [
        {"line_id": "gate", "track_id": 1, "class": "person", "direction": "a_to_b",
         "time_ms": T0 + 1100},
        {"line_id": "gate", "track_id": 2, "class": "person", "direction": "a_to_b",
         "time_ms": T0 + 1100},
        {"line_id": "gate", "track_id": 3, "class": "car", "direction": "b_to_a",
         "time_ms": T0 + 1100},
    ]
    assert extras[11]["line_counts"] == {"gate": {"a_to_b": {"person": 2}, "b_to_a": {"car": 1}}}
    assert [(a["type"], a["track_id"], a["subject"], a["time_ms"]) for a in alerts] == [
        ("wrong_way", 3, "car", T0 + 1100)]
    assert alerts[0]["alert_id"] == expected_id("wrong_way", "car", "line:gate", 3, T0 + 1100)
    ev = evidence(alerts[0])
    assert (ev["direction"], ev["allowed"], ev["line_id"]) == ("b_to_a", "a_to_b", "gate")


def test_line_ignores_jitter_on_the_line_and_passing_round_its_end():
    scene = Scene(lines=[LINE])
    jitter = [(T0 + i * 100, [person(1, 300, 500 + (5 if i % 2 else -5))]) for i in range(30)]
    beyond_end = [(T0 + i * 100, [person(2, 800, 400 + i * 10)]) for i in range(20)]
    for frames in (jitter, beyond_end):
        _, alerts, extras = run(SceneBehaviour(scene), frames)
        assert alerts == [] and all(e["crossings"] == [] for e in extras)


# ------------------------------------------------------------------------------- parking

def test_illegal_parking_after_max_stopped():
    scene = Scene(zones=[Zone(id="kerb", kind="no_parking", polygon=RIGHT_HALF,
                              max_stopped_ms=60_000)])
    # Drives in (moving until t=10 s), then stands with detector jitter of a few pixels.
    frames = [(T0 + s * 1000, [thing(5, "car", 520 + min(s, 10) * 30 + (s % 2) * 4, 700,
                                     120, 80)]) for s in range(100)]
    _, alerts, _ = run(SceneBehaviour(scene), frames)
    stopped = T0 + 10_000
    assert [(a["type"], a["time_ms"], a["subject"]) for a in alerts] == [
        ("illegal_parking", stopped + 60_000, "car")]
    assert alerts[0]["alert_id"] == expected_id("illegal_parking", "car", "zone:kerb", 5, stopped)
    assert evidence(alerts[0])["stopped_ms"] == 60_000


def test_no_parking_alert_for_slow_traffic_or_outside_the_zone():
    scene = Scene(zones=[Zone(id="kerb", kind="no_parking", polygon=RIGHT_HALF,
                              max_stopped_ms=30_000)])
    crawling = [(T0 + s * 1000, [thing(5, "car", 520 + s * 8, 700, 120, 80)]) for s in range(60)]
    outside = [(T0 + s * 1000, [thing(6, "car", 200, 700, 120, 80)]) for s in range(60)]
    assert run(SceneBehaviour(scene), crawling)[1] == []
    assert run(SceneBehaviour(scene), outside)[1] == []


# ----------------------------------------------------------------------------- littering

HOTSPOT = Zone(id="beach-bins", kind="litter_hotspot", polygon=RIGHT_HALF, min_static_ms=10_000,
               owner_gone_ms=5_000)


def dumping(owner_leaves=True, seconds=40):
    frames = []
    for s in range(seconds):
        objects = []
        if s >= 5:  # the bag appears next to the person at t=5 s and stays
            objects.append(thing(20, "suitcase", 700, 600))
        px = 720 if (s < 10 or not owner_leaves) else 720 - (s - 10) * 60
        if px > 0:
            objects.append(person(1, px, 600))
        frames.append((T0 + s * 1000, objects))
    return frames


def test_littering_when_the_owner_has_left():
    scene = Scene(zones=[HOTSPOT], running={"enabled": False})
    _, alerts, _ = run(SceneBehaviour(scene), dumping())
    # Owner within 2 heights (200 px) until x=540 (s=13); gone for 5 s at s=18; the bag has
    # been still since s=5, 13 s >= 10 s.
    assert [(a["type"], a["time_ms"], a["subject"], a["track_id"]) for a in alerts] == [
        ("littering", T0 + 18_000, "suitcase", 20)]
    ev = evidence(alerts[0])
    assert ev["owner_track_ids"] == [1] and ev["owner_gone_ms"] == 5_000
    assert ev["static_ms"] == 13_000 and ev["zone_id"] == "beach-bins"
    assert alerts[0]["alert_id"] == expected_id("littering", "suitcase", "zone:beach-bins", 20,
                                                T0 + 5_000)


def test_no_littering_when_the_owner_stays_or_nobody_brought_it():
    scene = Scene(zones=[HOTSPOT])
    assert run(SceneBehaviour(scene), dumping(owner_leaves=False))[1] == []
    unattended_from_start = [(T0 + s * 1000, [thing(20, "suitcase", 700, 600)]) for s in range(60)]
    assert run(SceneBehaviour(scene), unattended_from_start)[1] == []


# ---------------------------------------------------------------------------------- falls

def upright(tid, x=300, y=500):
    return (tid, "person", (x - 25, y - 150, x + 25, y))  # h/w = 3


def lying(tid, x=300, y=500):
    return (tid, "person", (x - 75, y - 50, x + 75, y))  # h/w = 1/3


def test_fall_with_an_empty_scene():
    frames = [(T0 + i * 100, [upright(4) if i < 20 else lying(4)]) for i in range(80)]
    _, alerts, _ = run(SceneBehaviour(Scene()), frames)
    down = T0 + 2000
    assert [(a["type"], a["time_ms"], a["severity"], a["track_id"]) for a in alerts] == [
        ("fall", down + DOWN_MS, "critical", 4)]
    ev = evidence(alerts[0])
    assert ev["down_since_ms"] == down and ev["upright_ms"] == T0 + 1900
    assert ev["aspect_ratio"] == pytest.approx(1 / 3, abs=1e-4) and ev["upright_aspect_ratio"] == 3.0
    assert alerts[0]["alert_id"] == expected_id("fall", "person", "fall", 4, down)


def test_no_fall_for_people_lying_from_the_start_or_getting_up_quickly():
    sunbather = [(T0 + i * 100, [lying(4)]) for i in range(80)]
    assert run(SceneBehaviour(Scene()), sunbather)[1] == []
    stumble = [(T0 + i * 100, [lying(4) if 20 <= i < 40 else upright(4)]) for i in range(80)]
    assert run(SceneBehaviour(Scene()), stumble)[1] == []


# ------------------------------------------------------------------------- falls by pose

IMAGE = np.zeros((H, W, 3), np.uint8)


class FakePose:
    """A person-down look-up scripted by time: ``verdicts`` maps (search, from_ms) to a verdict
    ("lying", "standing", "other", "unknown" or None: nobody found); the latest entry at or
    before the frame's time applies. Records every call."""

    def __init__(self, verdicts=None, default=None):
        self.verdicts = dict(verdicts or {})
        self.default = default
        self.calls = []
        self.now = None

    def __call__(self, image, box, search=False):
        assert image is IMAGE
        self.calls.append((self.now, bool(search), tuple(round(v) for v in box)))
        times = [t for (s, t) in self.verdicts if s == bool(search) and t <= self.now]
        verdict = self.verdicts[(bool(search), max(times))] if times else self.default
        if verdict is None:
            return None
        return SimpleNamespace(verdict=verdict, torso_deg=80.0 if verdict == "lying" else 5.0,
                               legs_deg=70.0, score=0.5, box=box)


def run_pose(behaviour, frames, pose, state=None):
    alerts, extras = [], []
    for t, objects in frames:
        pose.now = t
        step = behaviour.step(state, frame(t, objects, IMAGE), pose=pose)
        state = step.state
        alerts += step.alerts
        extras.append(step.extra)
    return state, alerts, extras


def sat(tid, x=300, y=500):
    """The same person sitting, or crouching: top fell by a third, h/w = 1.25."""
    return (tid, "person", (x - 40, y - 100, x + 40, y))


def test_fall_found_by_pose_after_the_detector_loses_the_person():
    # Standing until 2.0 s, then nothing detected (a person on the floor often is not): the
    # pose finds them lying around where they stood from 2.5 s on.
    frames = [(T0 + i * 500, [upright(4)] if i < 5 else []) for i in range(16)]
    pose = FakePose({(True, T0 + 2500): "lying"}, default="other")
    _, alerts, extras = run_pose(SceneBehaviour(Scene()), frames, pose)
    left = T0 + 2500  # first frame without the track
    assert [(a["type"], a["time_ms"], a["track_id"]) for a in alerts] == [("fall", left + DOWN_MS, 4)]
    ev = evidence(alerts[0])
    assert ev["confirmed_by"] == "pose" and ev["seen"] is False and ev["down_since_ms"] == left
    assert ev["posture"]["verdict"] == "lying" and ev["aspect_ratio"] is None
    assert alerts[0]["alert_id"] == expected_id("fall", "person", "fall", 4, left)
    # Searched around the feet at (300, 500), one standing height (150 px) each way; no more
    # searches once it fired.
    assert {c[1:] for c in pose.calls} == {(True, (135, 350, 465, 575))}
    assert pose.calls[-1][0] == T0 + 2500 + DOWN_MS
    assert sum(e["pose_calls"] for e in extras) == len(pose.calls) <= 1 + DOWN_MS // 400


def test_no_fall_when_the_pose_sees_sitting_bending_or_a_slow_lie_down():
    scene = Scene()
    # Sits down (box drops and widens) and stays seated: the pose says "other".
    sit = [(T0 + i * 500, [upright(4) if i < 4 else sat(4)]) for i in range(20)]
    pose = FakePose(default="other")
    assert run_pose(SceneBehaviour(scene), sit, pose)[1] == []
    assert pose.calls and all(not c[1] for c in pose.calls)
    # The same box with a pose that cannot tell: a collapse, so it counts as a fall.
    assert [a["type"] for a in run_pose(SceneBehaviour(scene), sit, FakePose())[1]] == ["fall"]
    # Sits for 5 s, then lies down: lying comes too long after standing.
    slow = [(T0 + i * 500, [upright(4) if i < 4 else sat(4) if i < 14 else lying(4)])
            for i in range(30)]
    pose = FakePose({(False, T0 + 7000): "lying"}, default="other")
    assert run_pose(SceneBehaviour(scene), slow, pose)[1] == []
    # Bends over and gets up again within min_down_ms.
    bend = [(T0 + i * 500, [sat(4) if 4 <= i < 8 else upright(4)]) for i in range(20)]
    assert run_pose(SceneBehaviour(scene), bend, FakePose())[1] == []


def test_fall_confirmed_by_pose_on_a_visible_box_and_pose_runs_only_when_needed():
    # 10 frames/s: standing 2 s, then a wide box (still detected) for 4 s.
    frames = [(T0 + i * 100, [upright(4) if i < 20 else lying(4)]) for i in range(60)]
    pose = FakePose({(False, T0 + 2000): "other", (False, T0 + 2400): "lying"})
    _, alerts, _ = run_pose(SceneBehaviour(Scene()), frames, pose)
    assert [(a["type"], a["time_ms"]) for a in alerts] == [("fall", T0 + 2000 + DOWN_MS)]
    assert evidence(alerts[0])["confirmed_by"] == "pose"
    # Not while upright; once per POSE_EVERY_MS while unconfirmed; never once confirmed.
    assert [c[0] for c in pose.calls] == [T0 + 2000, T0 + 2000 + POSE_EVERY_MS]
    # A pose that sees them sitting vetoes the box's "lying" shape.
    assert run_pose(SceneBehaviour(Scene()), frames, FakePose(default="other"))[1] == []
    # Without a pose look-up (or without an image) the box alone decides, as before.
    assert [a["time_ms"] for a in run(SceneBehaviour(Scene()), frames)[1]] == [T0 + 2000 + DOWN_MS]


def test_no_search_for_people_walking_out_of_view_or_found_standing():
    scene = Scene()
    # Walks out at the left edge: no search.
    out = [(T0 + i * 500, [upright(4, x=25)] if i < 4 else []) for i in range(10)]
    pose = FakePose(default="lying")
    assert run_pose(SceneBehaviour(scene), out, pose)[1] == [] and pose.calls == []
    # Stands undetected (the search finds them standing twice): searching stops.
    hidden = [(T0 + i * 500, [upright(4)] if i < 4 else []) for i in range(10)]
    pose = FakePose(default="standing")
    assert run_pose(SceneBehaviour(scene), hidden, pose)[1] == [] and len(pose.calls) == 2


def test_no_collapse_when_the_track_jumps_to_someone_else():
    # The track's box moves to a seated person elsewhere (an id switch): its drop is no fall.
    frames = [(T0 + i * 500, [upright(4) if i < 4 else sat(4, x=600)]) for i in range(20)]
    assert run_pose(SceneBehaviour(Scene()), frames, FakePose())[1] == []


def test_a_new_track_where_a_standing_one_was_lost_takes_over_its_fall():
    # The tracker loses person 4 as they fall and finds them again, low, as track 7; the pose
    # cannot tell (None). Their box collapsed from where 4 stood: 7 carries 4's fall.
    frames = [(T0 + i * 500, [upright(4)] if i < 4 else [] if i < 6 else [sat(7)])
              for i in range(16)]
    _, alerts, _ = run_pose(SceneBehaviour(Scene()), frames, FakePose())
    left = T0 + 2000  # 4's first missing frame
    assert [(a["type"], a["time_ms"], a["track_id"]) for a in alerts] == [("fall", left + DOWN_MS, 7)]
    ev = evidence(alerts[0])
    assert (ev["from_track"], ev["confirmed_by"], ev["down_since_ms"]) == (4, "collapse", left)
    # Someone standing there, or low but elsewhere, takes nothing over.
    standing = [(t, [upright(7)] if objs == [sat(7)] else objs) for t, objs in frames]
    assert run_pose(SceneBehaviour(Scene()), standing, FakePose())[1] == []
    elsewhere = [(t, [sat(7, x=700)] if objs == [sat(7)] else objs) for t, objs in frames]
    assert run_pose(SceneBehaviour(Scene()), elsewhere, FakePose())[1] == []


def test_collapse_is_measured_from_the_tallest_recent_box():
    # At 10 frames/s: stands (150 px) until 1.9 s, stumbles (120 px, still h/w >= 1.6) at
    # 2.0 s, then stays low: its top 18 px (0.15 of 120) below the stumble's, but 48 px (0.32
    # of 150) below standing; h/w 1.21.
    def stumble(tid, x=300, y=500):
        return (tid, "person", (x - 35, y - 120, x + 35, y))

    def low(tid, x=300, y=500):
        return (tid, "person", (x - 42, y - 102, x + 42, y))

    frames = [(T0 + i * 100, [upright(4) if i < 20 else stumble(4) if i < 21 else low(4)])
              for i in range(60)]
    _, alerts, _ = run_pose(SceneBehaviour(Scene()), frames, FakePose())
    assert [(a["time_ms"], evidence(a)["confirmed_by"]) for a in alerts] == [
        (T0 + 2100 + DOWN_MS, "collapse")]


def test_pose_given_to_the_constructor_and_state_continues_after_pickling():
    frames = [(T0 + i * 500, [upright(4)] if i < 5 else []) for i in range(16)]
    make = lambda: FakePose({(True, T0 + 2500): "lying"}, default="other")  # noqa: E731
    pose = make()
    behaviour = SceneBehaviour(Scene(), pose=pose)
    state, alerts = None, []
    for cut, (t, objects) in enumerate(frames):
        pose.now = t
        step = behaviour.step(state, frame(t, objects, IMAGE))
        state, alerts = pickle.loads(pickle.dumps(step.state)), alerts + step.alerts
    assert [a["time_ms"] for a in alerts] == [T0 + 2500 + DOWN_MS]
    assert run_pose(SceneBehaviour(Scene()), frames, make())[1] == alerts


# ------------------------------------------------------------------------ running, crowds

def test_running_fires_once_for_a_sprint_and_not_for_walking():
    sprint = [(T0 + i * 100, [person(2, 100 + i * 30, 500)]) for i in range(30)]  # 3 h/s
    _, alerts, _ = run(SceneBehaviour(Scene()), sprint)
    # Speed is known from 500 ms of history (t=500); running for 1 s at t=1500.
    assert [(a["type"], a["time_ms"], a["track_id"]) for a in alerts] == [
        ("running", T0 + 1500, 2)]
    assert alerts[0]["score"] == pytest.approx(1.5)
    assert evidence(alerts[0])["speed_heights_per_s"] == 3.0
    walk = [(T0 + i * 100, [person(2, 100 + i * 8, 500)]) for i in range(60)]  # 0.8 h/s
    assert run(SceneBehaviour(Scene()), walk)[1] == []


def crowd(outward: bool, n=6, seconds=4):
    centre = np.array([500.0, 500.0])
    angles = [2 * np.pi * k / n for k in range(n)]
    frames = []
    for i in range(seconds * 10):
        t = i * 100
        moving = max(0, t - 2000) / 1000.0  # stands 2 s, then moves at 2 heights/s
        objects = []
        for k, a in enumerate(angles):
            start = centre + 80 * np.array([np.cos(a), np.sin(a)])
            heading = np.array([np.cos(a), np.sin(a)]) if outward else np.array([1.0, 0.0])
            gx, gy = start + heading * 200 * moving
            objects.append(person(k + 1, gx, gy))
        frames.append((T0 + t, objects))
    return frames


def test_crowd_dispersal_once_and_not_for_a_group_walking_together():
    scene = Scene(running={"enabled": False})
    _, alerts, _ = run(SceneBehaviour(scene), crowd(outward=True))
    assert [(a["type"], a["subject"], a["track_id"]) for a in alerts] == [
        ("crowd_dispersal", "person", None)]
    ev = evidence(alerts[0])
    assert ev["fleeing_tracks"] == 6 and ev["track_ids"] == [1, 2, 3, 4, 5, 6]
    # Speed over the last second reaches 1.5 heights/s 750 ms after they start.
    assert alerts[0]["time_ms"] == T0 + 2800
    assert run(SceneBehaviour(scene), crowd(outward=False))[1] == []


def test_zone_crowd():
    scene = Scene(zones=[Zone(id="square", kind="crowd", polygon=RIGHT_HALF, max_people=3,
                              min_over_ms=2000)], dispersal={"enabled": False})
    frames = [(T0 + s * 1000, [person(k, 600 + k * 50, 500) for k in range(1, 6 if 3 <= s < 8 else 3)])
              for s in range(12)]
    _, alerts, _ = run(SceneBehaviour(scene), frames)
    assert [(a["type"], a["time_ms"], a["score"]) for a in alerts] == [
        ("zone_crowd", T0 + 5000, 5 / 3)]


# ------------------------------------------------------------------- state and contract

def mixed_scenario():
    scene = Scene(zones=[Zone(id="pier", kind="restricted", polygon=RIGHT_HALF, min_inside_ms=1000),
                         HOTSPOT.model_copy(update={"polygon": [(0.6, 0.55), (0.8, 0.55),
                                                                  (0.8, 0.65), (0.6, 0.65)]})],
                  lines=[LINE])
    frames = {}
    for t, objs in walk_into_right_half(dwell_frames=60) + [
            (T0 + i * 100, [person(9, 100, 400 + i * 10)]) for i in range(30)]:
        frames.setdefault(t, []).extend(objs)
    return scene, sorted(frames.items())


def test_state_pickles_mid_sequence_and_continues_identically():
    scene, frames = mixed_scenario()
    behaviour = SceneBehaviour(scene)
    full_state, full_alerts, full_extras = run(behaviour, frames)
    assert {a["type"] for a in full_alerts} == {"intrusion"}
    for cut in (5, 15, 33):
        state, alerts, extras = run(behaviour, frames[:cut])
        state = pickle.loads(pickle.dumps(state))
        state, more, more_extras = run(behaviour, frames[cut:], state)
        assert alerts + more == full_alerts
        assert extras + more_extras == full_extras
        assert state == full_state


def test_step_leaves_its_input_state_alone():
    scene, frames = mixed_scenario()
    behaviour = SceneBehaviour(scene)
    state, _, _ = run(behaviour, frames[:12])
    before = copy.deepcopy(state)
    for t, objects in frames[12:]:
        behaviour.step(state, frame(t, objects))
    assert state == before


def test_state_stays_bounded_and_old_tracks_are_forgotten():
    scene = Scene(track_ttl_ms=2000, max_tracks=50)
    behaviour = SceneBehaviour(scene)
    state = None
    for i in range(600):  # a new track every frame, each seen once
        state = behaviour.step(state, frame(T0 + i * 100, [person(i + 1, 300, 500)])).state
    assert len(state["tracks"]) == 21  # seen within the last 2 s
    # Long-lived tracks keep a bounded history.
    state = None
    for i in range(1000):
        state = behaviour.step(state, frame(T0 + i * 33, [person(1, 300, 500)])).state
    assert len(state["tracks"][1]["history"]) <= 64
    assert expire(state, T0 + 999 * 33 + 10_001, 10_000)["tracks"] == {}
    assert len(pickle.dumps(state)) < 10_000
    tiny = Scene(max_tracks=5)
    state = SceneBehaviour(tiny).step(None, frame(T0, [person(k, 300, 500) for k in range(1, 9)])).state
    assert sorted(state["tracks"]) == [4, 5, 6, 7, 8]


def test_late_frames_are_ignored():
    behaviour = SceneBehaviour(Scene())
    state = behaviour.step(new_state(), frame(T0 + 1000, [person(1, 300, 500)])).state
    step = behaviour.step(state, frame(T0 + 500, [person(1, 900, 500)]))
    assert step.state is state and step.alerts == [] and step.extra["late"]


def test_replay_gives_the_same_alerts_and_they_match_the_avro_schema():
    fastavro = pytest.importorskip("fastavro")
    scene, frames = mixed_scenario()
    first = run(SceneBehaviour(scene), frames)[1]
    again = run(SceneBehaviour(scene), frames)[1]
    assert first == again and first
    schema = fastavro.parse_schema(json.loads(ALERT_SCHEMA.read_text()))
    for alert in first + run(SceneBehaviour(Scene()), crowd(outward=True))[1]:
        assert fastavro.validation.validate(alert, schema, raise_errors=True)
        assert set(alert) <= {f["name"] for f in schema["fields"]}


# ------------------------------------------------------------------------ persist-then-fire

def test_persist_fires_once_after_hold_and_rearms_when_the_condition_clears():
    record, fired = None, []
    for t, holds in [(0, True), (400, True), (999, True), (1000, True), (1500, True),
                     (1600, False), (1700, True), (2700, True)]:
        record, fire = persist(record, holds, t, 1000)
        fired.append(fire)
    assert fired == [False, False, False, True, False, False, False, True]
    assert record == {"since": 1700, "last": 2700, "fired": True}


def test_persist_unknown_grace_start_ready_and_purity():
    record, _ = persist(None, True, 0, 1000)
    frozen = dict(record)
    assert persist(record, None, 5000, 1000) == (record, False)  # not observed: unchanged
    assert persist(None, None, 5000, 1000) == (None, False)
    assert persist(None, False, 5000, 1000) == (None, False)
    # A False within grace_ms of the last True keeps the episode, later it ends.
    kept, _ = persist(record, False, 300, 1000, grace_ms=500)
    assert kept is record and persist(kept, False, 501, 1000, grace_ms=500) == (None, False)
    assert persist(kept, True, 1000, 1000, grace_ms=500)[1]  # the same episode fires
    # start: the caller's clock; ready: held back until allowed; hold None: never fires.
    assert not persist(record, True, 1000, 1000, start=500)[1]
    assert persist(record, True, 1500, 1000, start=500)[1]
    held, fire = persist(record, True, 3000, 1000, ready=False)
    assert not fire and not held["fired"] and persist(held, True, 3100, 1000)[1]
    assert not persist(record, True, 10**9, None)[1]
    assert record == frozen  # never changed in place


def test_every_rule_keeps_one_alert_per_episode_through_the_helper():
    # Dispersal fires at once and re-arms only after rearm_ms without the condition.
    record, fires = None, []
    for t, holds in [(0, True), (100, True), (200, False), (300, True), (20_000, False),
                     (20_100, True)]:
        record, fire = persist(record, holds, t, 0, grace_ms=10_000)
        fires.append(fire)
    assert fires == [True, False, False, False, False, True]


# ------------------------------------------------------------------ savepoints (state v1)

def v1_state():
    """A version-1 state as a savepoint from before the persist helper holds it: a person 0.5 s
    into a restricted zone, down for 1 s after standing, a crowd zone over its limit (with a
    second person, who arrives in the next frame)."""
    history = [(T0 + 900, 0.51, 0.5, 0.15, 0.05)]
    return {"version": 1, "last_ms": T0 + 900, "zones": {"plaza": {"over_since": T0, "fired": False}},
            "dispersal": {"active": False, "last_true_ms": None},
            "tracks": {
                1: {"class": "person", "first_ms": T0, "last_ms": T0 + 900, "history": history,
                    "anchor": (0.51, 0.5), "still_since": T0 + 400,
                    "zones": {"pier": {"since": T0 + 400, "last_inside": T0 + 900, "fired": False}},
                    "sides": {},
                    "fall": {"upright_ms": T0, "upright_ratio": 3.0, "down_since": T0 - 100,
                             "fired": False},
                    "run": {"since": None, "fired": False},
                    "owners": [], "owner_near_ms": None, "litter_fired": False}}}


def test_a_version_1_savepoint_continues_with_its_clocks_and_flags():
    scene = Scene(zones=[Zone(id="pier", kind="restricted", polygon=RIGHT_HALF, min_inside_ms=1000),
                         Zone(id="plaza", kind="crowd", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)],
                              max_people=1, min_over_ms=2000)])
    old = v1_state()
    before = copy.deepcopy(old)
    upgraded = upgrade_state(old)
    assert old == before and upgraded["version"] == STATE_VERSION == new_state()["version"]
    assert upgraded["tracks"][1]["zones"]["pier"] == {"since": T0 + 400, "last": T0 + 900,
                                                      "fired": False}
    assert upgrade_state(upgraded) is upgraded
    frames = [(T0 + 1000 + i * 100, [lying(1, x=510), person(2, 200, 500)]) for i in range(40)]
    _, alerts, _ = run(SceneBehaviour(scene), frames, state=old)
    got = [(a["type"], a["time_ms"]) for a in alerts]
    # The visit started at +400 (intrusion at +1400), the crowd at T0 (+2000), the fall at -100
    # (+ min_down), each once.
    assert sorted(got, key=lambda g: g[1]) == sorted(
        [("intrusion", T0 + 1400), ("zone_crowd", T0 + 2000), ("fall", T0 - 100 + DOWN_MS)],
        key=lambda g: g[1])
    assert pickle.loads(pickle.dumps(upgraded)) == upgraded
    assert expire(old, T0 + 900, 10_000)["version"] == STATE_VERSION
