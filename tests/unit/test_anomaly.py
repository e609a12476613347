import json
import pickle
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from camflow.transforms.alerts import alert_id
from camflow.transforms.anomaly import (
    AnomalyConfig,
    CameraLiveness,
    LivenessConfig,
    WindowAnomaly,
    hour_of_week,
)

ICT = timezone(timedelta(hours=7))  # Phu Quoc
# Monday 2023-11-13 00:00 local.
MONDAY = int(datetime(2023, 11, 13, tzinfo=ICT).timestamp() * 1000)
WINDOW_MS = 10 * 60_000
CONFIG = AnomalyConfig(warmup_windows=6, consecutive=3, clear_windows=2)


def window(start_ms, persons, vehicles=12.0, camera_id="cam-1", **extra):
    return {"camera_id": camera_id, "window_start_ms": start_ms,
            "window_end_ms": start_ms + WINDOW_MS, "frames": 600,
            "counts_by_class": {"person": int(round(persons)), "car": int(round(vehicles))},
            "mean_by_class": {"person": float(persons), "car": float(vehicles)},
            "unique_tracks": 0, "unique_tracks_by_class": {}, **extra}


def normal_persons(start_ms, rng):
    """Busy by day (~20 people), quiet at night (~1), with noise."""
    hour = hour_of_week(start_ms) % 24
    base = 20.0 if 8 <= hour < 20 else 1.0
    return max(0.0, base + rng.normal(0, 0.15 * base + 0.5))


def normal_vehicles(start_ms, rng):
    hour = hour_of_week(start_ms) % 24
    base = 12.0 if 8 <= hour < 20 else 2.0
    return max(0.0, base + rng.normal(0, 0.15 * base + 0.5))


def run(detector, windows, state=None):
    steps = []
    for w in windows:
        step = detector.step(state, w)
        state = step.state
        steps.append(step)
    return state, steps


def history(weeks=2, seed=0):
    rng = np.random.default_rng(seed)
    starts = range(MONDAY, MONDAY + weeks * 7 * 24 * 3_600_000, WINDOW_MS)
    return [window(s, normal_persons(s, rng), normal_vehicles(s, rng)) for s in starts]


def test_hour_of_week_in_local_time():
    assert hour_of_week(MONDAY) == 0
    assert hour_of_week(MONDAY - 1) == 167  # Sunday 23:59:59.999
    assert hour_of_week(MONDAY + 3 * 86_400_000 + 14 * 3_600_000 + 59 * 60_000) == 3 * 24 + 14
    assert hour_of_week(MONDAY, utc_offset_minutes=0) == 167 - 6  # Sunday 17h UTC


def test_no_score_and_no_alert_during_warm_up():
    detector = WindowAnomaly(CONFIG)
    # Five windows of one slot (warm-up needs 6), the last three a huge surge.
    windows = [window(MONDAY + 9 * 3_600_000 + i * WINDOW_MS, p)
               for i, p in enumerate([20, 21, 500, 500, 500])]
    _, steps = run(detector, windows)
    assert [s.extra["aggregate"]["anomaly_score"] for s in steps] == [None] * 5
    assert all(s.alerts == [] for s in steps)
    assert steps[-1].extra["scores"]["persons"]["n"] == 4


def test_quiet_on_normal_days_then_one_alert_per_surge_episode():
    detector = WindowAnomaly(CONFIG)
    state, steps = run(detector, history(weeks=3))
    assert [a for s in steps for a in s.alerts] == []
    scores = [s.extra["aggregate"]["anomaly_score"] for s in steps[-7 * 144:]]
    assert all(z is not None for z in scores) and max(abs(z) for z in scores) < CONFIG.surge_z

    # Week 4, Monday 10:00-11:40 local: 4 normal windows, 5 of a surge, 2 normal, 3 surge.
    rng = np.random.default_rng(1)
    start = MONDAY + 3 * 7 * 86_400_000 + 10 * 3_600_000
    pattern = [False] * 4 + [True] * 5 + [False] * 2 + [True] * 3
    windows = [window(start + i * WINDOW_MS, 80.0 if surge else normal_persons(start, rng))
               for i, surge in enumerate(pattern)]
    state, steps = run(detector, windows, state)
    fired = [(i, a) for i, s in enumerate(steps) for a in s.alerts]
    assert [(i, a["type"]) for i, a in fired] == [(6, "crowd_surge"), (13, "crowd_surge")]
    first, second = fired[0][1], fired[1][1]
    episode_start = start + 4 * WINDOW_MS
    assert first["alert_id"] == alert_id("crowd_surge", "cam-1", json.dumps(["person", None]),
                                         episode_start)
    assert first["alert_id"] != second["alert_id"]
    assert first["time_ms"] == start + 7 * WINDOW_MS and first["subject"] == "person"
    assert first["severity"] == "warning" and first["track_id"] is None
    evidence = json.loads(first["evidence"])
    assert evidence["episode_start_ms"] == episode_start and evidence["consecutive_windows"] == 3
    assert evidence["z"] >= 4.0 and evidence["z_threshold"] == 4.0
    assert evidence["hour_of_week"] == 11 and evidence["baseline_windows"] >= 18
    assert first["score"] == pytest.approx(evidence["z"], abs=1e-4)
    assert steps[4].extra["aggregate"]["anomaly_score"] > 4.0


def test_surge_shorter_than_k_windows_does_not_alert():
    detector = WindowAnomaly(CONFIG)
    state, _ = run(detector, history(weeks=3))
    start = MONDAY + 3 * 7 * 86_400_000 + 10 * 3_600_000
    windows = [window(start + i * WINDOW_MS, p) for i, p in enumerate([20, 80, 80, 20, 80, 80, 20])]
    assert [a for s in run(detector, windows, state)[1] for a in s.alerts] == []


def test_absence_where_normally_busy_but_not_at_night():
    detector = WindowAnomaly(CONFIG)
    state, _ = run(detector, history(weeks=3))
    week4 = MONDAY + 3 * 7 * 86_400_000
    day = [window(week4 + 12 * 3_600_000 + i * WINDOW_MS, 0.0, 12.0) for i in range(4)]
    _, steps = run(detector, day, state)
    alerts = [a for s in steps for a in s.alerts]
    assert [(a["type"], a["subject"], a["severity"], a["time_ms"]) for a in alerts] == [
        ("unusual_absence", "person", "info", day[2]["window_end_ms"])]
    night = [window(week4 + 2 * 3_600_000 + i * WINDOW_MS, 0.0, 0.0) for i in range(4)]
    assert [a for s in run(detector, night, state)[1] for a in s.alerts] == []


def test_traffic_jam_needs_low_speed_when_speed_is_known():
    detector = WindowAnomaly(CONFIG)
    state, _ = run(detector, history(weeks=3))
    start = MONDAY + 3 * 7 * 86_400_000 + 17 * 3_600_000
    slow = [window(start + i * WINDOW_MS, 20.0, 60.0, mean_speed_by_class={"car": 0.1})
            for i in range(3)]
    fast = [window(start + i * WINDOW_MS, 20.0, 60.0, mean_speed_by_class={"car": 1.2})
            for i in range(3)]
    unknown = [window(start + i * WINDOW_MS, 20.0, 60.0) for i in range(3)]
    assert [(a["type"], a["subject"]) for s in run(detector, slow, state)[1] for a in s.alerts] == [
        ("traffic_jam", "vehicle")]
    assert [a for s in run(detector, fast, state)[1] for a in s.alerts] == []
    assert [a["type"] for s in run(detector, unknown, state)[1] for a in s.alerts] == ["traffic_jam"]


def test_gap_between_windows_restarts_the_count():
    detector = WindowAnomaly(CONFIG)
    state, _ = run(detector, history(weeks=3))
    start = MONDAY + 3 * 7 * 86_400_000 + 10 * 3_600_000
    windows = [window(start, 80), window(start + WINDOW_MS, 80),
               window(start + 4 * WINDOW_MS, 80), window(start + 5 * WINDOW_MS, 80)]
    assert [a for s in run(detector, windows, state)[1] for a in s.alerts] == []


def test_duplicate_window_is_scored_but_not_learned():
    detector = WindowAnomaly(CONFIG)
    state, _ = run(detector, history(weeks=1))
    last = history(weeks=1)[-1]
    step = detector.step(state, last)
    assert step.state is state and step.extra["learned"] is False


def test_state_pickles_mid_sequence_and_continues_identically():
    detector = WindowAnomaly(CONFIG)
    windows = history(weeks=3)
    start = MONDAY + 3 * 7 * 86_400_000 + 10 * 3_600_000
    windows += [window(start + i * WINDOW_MS, 80.0) for i in range(5)]
    full_state, full_steps = run(detector, windows)
    cut = len(windows) - 4
    state, first = run(detector, windows[:cut])
    state, rest = run(detector, windows[cut:], pickle.loads(pickle.dumps(state)))
    assert state == full_state
    assert [(s.alerts, s.extra) for s in first + rest] == [(s.alerts, s.extra) for s in full_steps]
    assert sum(len(s.alerts) for s in full_steps) == 1
    assert len(full_state["slots"]) == 168 and len(pickle.dumps(full_state)) < 40_000


def test_zone_key_goes_into_the_alert():
    detector = WindowAnomaly(CONFIG)
    windows = [dict(w, zone_id="plaza") for w in history(weeks=2)]
    start = MONDAY + 2 * 7 * 86_400_000 + 10 * 3_600_000
    windows += [window(start + i * WINDOW_MS, 80.0, zone_id="plaza") for i in range(3)]
    alerts = [a for s in run(detector, windows)[1] for a in s.alerts]
    assert len(alerts) == 1 and json.loads(alerts[0]["evidence"])["zone_id"] == "plaza"
    assert alerts[0]["alert_id"] == alert_id("crowd_surge", "cam-1", json.dumps(["person", "plaza"]),
                                             start)


# ------------------------------------------------------------------------------ liveness

def test_camera_offline_then_recovered():
    liveness = CameraLiveness(LivenessConfig(offline_after_ms=60_000))
    t = MONDAY
    step = liveness.step(None, "cam-1", t, t)
    assert step.alerts == [] and step.extra["next_check_ms"] == t + 60_000
    step = liveness.step(step.state, "cam-1", None, t + 59_999)
    assert step.alerts == []
    step = liveness.step(step.state, "cam-1", None, t + 61_000)
    assert [(a["type"], a["time_ms"], a["severity"]) for a in step.alerts] == [
        ("camera_offline", t + 60_000, "warning")]
    assert step.alerts[0]["alert_id"] == alert_id("camera_offline", "cam-1", "camera", t)
    assert step.extra["next_check_ms"] is None
    state = pickle.loads(pickle.dumps(step.state))
    assert liveness.step(state, "cam-1", None, t + 500_000).alerts == []  # once per outage
    step = liveness.step(state, "cam-1", t + 600_000, t + 600_000)
    assert [(a["type"], a["time_ms"], a["severity"]) for a in step.alerts] == [
        ("camera_recovered", t + 600_000, "info")]
    assert json.loads(step.alerts[0]["evidence"])["silent_ms"] == 600_000
    assert liveness.step(step.state, "cam-1", t + 601_000, t + 601_000).alerts == []


def test_liveness_ignores_old_frames_and_unknown_cameras():
    liveness = CameraLiveness(LivenessConfig(offline_after_ms=60_000))
    assert liveness.step(None, "cam-1", None, MONDAY).alerts == []
    state = liveness.step(None, "cam-1", MONDAY, MONDAY).state
    state = liveness.step(state, "cam-1", MONDAY - 5_000, MONDAY + 1000).state
    assert state["last_frame_ms"] == MONDAY


def test_hour_of_day_slots_learn_from_earlier_days_at_the_same_hour():
    """A baseline per hour of the day is warm after the same hour of earlier days (the demo's
    history replay); per hour of the week, only a week earlier counts."""
    from camflow.transforms.anomaly import AnomalyConfig, WindowAnomaly, baseline_slot
    day = 86_400_000
    now = 1_764_000_000_000
    daily = AnomalyConfig(slots="hour_of_day", warmup_windows=4)
    weekly = AnomalyConfig(slots="hour_of_week", warmup_windows=4)
    assert baseline_slot(now - day, daily) == baseline_slot(now, daily)
    assert baseline_slot(now - day, weekly) != baseline_slot(now, weekly)
    assert baseline_slot(now - 7 * day, weekly) == baseline_slot(now, weekly)

    def scored(cfg):
        rule, state = WindowAnomaly(cfg), None
        for start in [now - 2 * day + i * 10_000 for i in range(2)] + \
                     [now - day + i * 10_000 for i in range(2)] + [now]:
            step = rule.step(state, {"camera_id": "c", "window_start_ms": start,
                                     "window_end_ms": start + 10_000, "frames": 10,
                                     "counts_by_class": {"person": 3}, "mean_by_class": {"person": 3.0},
                                     "unique_tracks": 3, "unique_tracks_by_class": {"person": 3}})
            state = step.state
        return step.extra["aggregate"]["anomaly_score"]
    assert scored(daily) is not None and scored(weekly) is None
