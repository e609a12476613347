import copy
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from camflow.transforms.alerts import alert_id, time_bucket
from camflow.transforms.behaviour import SceneBehaviour, expire, new_state
from camflow.transforms.detections import COCO_CLASSES, Detections, FrameAnalysis
from camflow.transforms.scene import CountingLine, Scene, Zone

W = H = 1000  # pixels; scene coordinates are these / 1000
T0 = 1_700_000_040_000  # a multiple of 60 s
CAM = "cam-1"
ALERT_SCHEMA = Path(__file__).parents[2] / "schemas" / "alert.avsc"

RIGHT_HALF = [(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)]


def frame(t: int, objects) -> FrameAnalysis:
    """objects: (track_id, class name, (x1, y1, x2, y2) pixels)."""
    objects = list(objects)
    detections = Detections(
        xyxy=np.array([o[2] for o in objects], np.float32).reshape(-1, 4),
        confidence=np.full(len(objects), 0.9, np.float32),
        class_id=np.array([COCO_CLASSES.index(o[1]) for o in objects], np.int32),
        tracker_id=np.array([o[0] for o in objects], np.int64),
    )
    return FrameAnalysis(CAM, t, (t - T0) // 100, W, H, b"", detections=detections)


def person(tid, gx, gy, h=100.0, w=40.0):
    """A person standing at ground point (gx, gy) pixels."""
    return (tid, "person", (gx - w / 2, gy - h, gx + w / 2, gy))


def thing(tid, cls, gx, gy, w=60.0, h=40.0):
    return (tid, cls, (gx - w / 2, gy - h, gx + w / 2, gy))


def run(behaviour, frames, state=None):
    """Feed (t, objects) pairs; returns (state, alerts, extras)."""
    alerts, extras = [], []
    for t, objects in frames:
        step = behaviour.step(state, frame(t, objects))
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
        ("fall", down + 3000, "critical", 4)]
    ev = evidence(alerts[0])
    assert ev["down_since_ms"] == down and ev["upright_ms"] == T0 + 1900
    assert ev["aspect_ratio"] == pytest.approx(1 / 3, abs=1e-4) and ev["upright_aspect_ratio"] == 3.0
    assert alerts[0]["alert_id"] == expected_id("fall", "person", "fall", 4, down)


def test_no_fall_for_people_lying_from_the_start_or_getting_up_quickly():
    sunbather = [(T0 + i * 100, [lying(4)]) for i in range(80)]
    assert run(SceneBehaviour(Scene()), sunbather)[1] == []
    stumble = [(T0 + i * 100, [lying(4) if 20 <= i < 40 else upright(4)]) for i in range(80)]
    assert run(SceneBehaviour(Scene()), stumble)[1] == []


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
