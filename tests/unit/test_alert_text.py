"""Alerts in words: one sentence per alert type the job raises, built from the evidence the
real rules write (rule code run on small scenes where that is cheap), and local times."""
from __future__ import annotations

import json

import numpy as np
import pytest

from camflow.transforms.alert_text import duration, local_time, why
from camflow.transforms.alerts import CrowdLimitRule, alert_record
from camflow.transforms.anomaly import AnomalyConfig, CameraLiveness, WindowAnomaly
from camflow.transforms.behaviour import SceneBehaviour
from camflow.transforms.scene import Scene, Zone
from camflow.transforms.watchlist import (FaceMatchDecider, MatchingConfig, PlateMatchDecider,
                                          PlateWatchlist, WatchlistState)
from tests.unit.test_behaviour import (HOTSPOT, LINE, RIGHT_HALF, T0, crowd, dumping, lying, person,
                                       run, thing, upright, walk_into_right_half)
from tests.unit.test_watchlist import face, plate, unit


def only(alerts, alert_type):
    found = [a for a in alerts if a["type"] == alert_type]
    assert len(found) == 1, [a["type"] for a in alerts]
    return found[0]


def behaviour_alert(scene, frames, alert_type):
    return only(run(SceneBehaviour(scene), frames)[1], alert_type)


# -- window rules -----------------------------------------------------------------------------
def test_crowd_limit_reads_as_people_against_the_limit():
    window = {"camera_id": "gate", "window_start_ms": T0, "window_end_ms": T0 + 10_000,
              "frames": 35, "counts_by_class": {"person": 8}, "mean_by_class": {"person": 5.2}}
    alert = only(CrowdLimitRule({"gate": 6}).evaluate(window), "crowd_limit")
    assert why(alert) == "8 people in view at once, limit 6 (window of 35 frames)"


def anomaly_alert(key, value, mean, z, speed=None):
    """The anomaly rule's own alert builder, on scores as ``WindowAnomaly.step`` makes them."""
    metric = "persons" if key == "crowd_surge" else "vehicles"
    scores = {metric: {"value": value, "mean": mean, "spread": 2.0, "n": 20, "z": z}}
    window = {"window_start_ms": T0, "window_end_ms": T0 + 600_000}
    return WindowAnomaly(AnomalyConfig())._alert(key, "square", None, T0 + 600_000,
                                                 {"start_ms": T0, "streak": 3}, scores, window,
                                                 speed)


def test_anomalies_say_more_or_fewer_than_usual_and_by_how_much():
    assert why(anomaly_alert("crowd_surge", 80.0, 20.1, 4.21)) == (
        "Far more people than usual: 80 against a usual 20.1 at this hour "
        "(z 4.21, threshold 4, 3 windows in a row)")
    assert why(anomaly_alert("unusual_absence:vehicles", 0.5, 12.0, -5.75)).startswith(
        "Far fewer vehicles than usual: 0.5 against a usual 12")
    jam = why(anomaly_alert("traffic_jam", 40.0, 12.0, 6.0, speed=0.12))
    assert jam.startswith("Far more vehicles than usual") and jam.endswith(
        "moving at 0.12 body heights/s")


def test_camera_offline_and_recovered_say_how_long_it_was_silent():
    liveness = CameraLiveness()
    state = liveness.step(None, "gate", T0, T0).state
    offline = liveness.step(state, "gate", None, T0 + 150_000)
    assert why(only(offline.alerts, "camera_offline")) == "No frame for 2 min 30 s (offline after 2 min)"
    back = liveness.step(offline.state, "gate", T0 + 600_000, T0 + 600_000)
    assert why(only(back.alerts, "camera_recovered")) == "Frames again after 10 min of silence"


# -- behaviour rules (the scenes of tests/unit/test_behaviour.py) -----------------------------
def test_zone_rules():
    intrusion = behaviour_alert(
        Scene(zones=[Zone(id="pier", kind="restricted", polygon=RIGHT_HALF, min_inside_ms=1000)],
              fall={"enabled": False}), walk_into_right_half(dwell_frames=40), "intrusion")
    assert why(intrusion) == "Person #1 inside restricted zone 'pier' for 1 s (alerts after 1 s)"

    stay = [(T0 + s * 1000, [person(7, 700 + (s % 3) * 5, 600)]) for s in range(181)]
    loitering = behaviour_alert(
        Scene(zones=[Zone(id="atm", kind="loiter", polygon=RIGHT_HALF, max_dwell_ms=120_000)]),
        stay, "loitering")
    assert why(loitering) == "Person #7 stayed in zone 'atm' for 2 min, limit 2 min"

    parked = [(T0 + s * 1000, [thing(5, "car", 520 + min(s, 10) * 30 + (s % 2) * 4, 700, 120, 80)])
              for s in range(100)]
    parking = behaviour_alert(
        Scene(zones=[Zone(id="kerb", kind="no_parking", polygon=RIGHT_HALF, max_stopped_ms=60_000)]),
        parked, "illegal_parking")
    assert why(parking) == "Car #5 stopped in no-parking zone 'kerb' for 1 min, limit 1 min"

    busy = [(T0 + s * 1000, [person(k, 600 + k * 50, 500) for k in range(1, 6 if 3 <= s < 8 else 3)])
            for s in range(12)]
    zone_crowd = behaviour_alert(
        Scene(zones=[Zone(id="square", kind="crowd", polygon=RIGHT_HALF, max_people=3,
                          min_over_ms=2000)], dispersal={"enabled": False}), busy, "zone_crowd")
    assert why(zone_crowd) == "5 people in zone 'square', limit 3, for 2 s"

    litter = behaviour_alert(Scene(zones=[HOTSPOT], running={"enabled": False}), dumping(),
                             "littering")
    assert why(litter) == ("Suitcase #20 left in zone 'beach-bins' for 13 s (limit 10 s), "
                           "its owner gone for 5 s")


def test_line_and_movement_rules():
    frames = [(T0 + i * 100, [thing(3, "car", 300, 595 - i * 10, 100, 60)]) for i in range(20)]
    wrong_way = behaviour_alert(Scene(lines=[LINE], running={"enabled": False}), frames, "wrong_way")
    assert why(wrong_way) == ("Car #3 crossed line 'gate' from side B to side A; "
                              "allowed: side A to side B")

    falls = [(T0 + i * 100, [upright(4) if i < 20 else lying(4)]) for i in range(80)]
    fall = behaviour_alert(Scene(), falls, "fall")
    assert why(fall) == "Person #4 went down and stayed down for 2 s (alerts after 2 s), confirmed by the box"

    sprint = [(T0 + i * 100, [person(2, 100 + i * 30, 500)]) for i in range(30)]
    running = behaviour_alert(Scene(), sprint, "running")
    assert why(running) == "Person #2 running at 3 body heights/s for 1 s (threshold 2)"

    dispersal = behaviour_alert(Scene(running={"enabled": False}), crowd(outward=True),
                                "crowd_dispersal")
    assert why(dispersal).startswith("6 of 6 moving people ran outwards at once, median ")


# -- watchlist --------------------------------------------------------------------------------
def test_watchlist_face_and_plate_name_the_entry_and_the_match():
    rng = np.random.default_rng(7)
    embedding = unit(rng, 1)[0]
    faces = WatchlistState().apply(face("W-7", [embedding], name="Barack Obama"))
    decider = FaceMatchDecider(MatchingConfig(face_confirmations=1))
    alerts, _ = decider.observe(FaceMatchDecider.new_state(), "gate", T0, [5], ["W-7"], [0.9461],
                                faces)
    assert why(only(alerts, "watchlist_face")) == (
        f"Face matches watchlist entry W-7, Barack Obama, wanted: similarity 0.95 "
        f"(threshold {decider.threshold:g}), 1 matching frame")

    plates = PlateWatchlist.build(WatchlistState().apply(plate("51F59881", "suspect")))
    decider = PlateMatchDecider(MatchingConfig(plate_confirmations=1))
    exact, _ = decider.observe(PlateMatchDecider.new_state(), "gate", T0, [9], ["51F59881"], plates)
    assert why(only(exact, "watchlist_plate")) == (
        "Plate read 51F59881 matches 51F59881 exactly (watchlist entry 51F59881, white Vios, "
        "suspect), 1 matching frame")
    near, _ = decider.observe(PlateMatchDecider.new_state(), "gate", T0, [9], ["51F59B81"], plates)
    assert "matches 51F59881 at distance 0.5" in why(only(near, "watchlist_plate"))


# -- never raises -----------------------------------------------------------------------------
@pytest.mark.parametrize("evidence", [None, "", "not json", "[1, 2]", json.dumps({"frames": 3}),
                                      json.dumps({"max_persons_in_frame": None, "crowd_limit": 6,
                                                  "frames": "x"})])
def test_missing_or_odd_evidence_falls_back_to_a_plain_sentence(evidence):
    alert = alert_record("crowd_limit", "warning", "gate", T0, "person", 1.5, bucket_ms=T0,
                         evidence=evidence if evidence is not None else "")
    alert["evidence"] = evidence
    assert why(alert) == "Crowd limit (person), score 1.5"


def test_unknown_types_and_bare_records_still_read():
    assert why({"type": "smoke_detected", "subject": "smoke", "score": 0.873,
                "evidence": '{"rule": "smoke"}'}) == "Smoke detected (smoke), score 0.87"
    assert why({}) == "Alert"
    assert why({"type": "intrusion", "evidence": {"zone_id": "pier"}}) == "Intrusion"


def test_durations_read_like_speech():
    assert [duration(v) for v in (850, 12_400, 125_000, 3_600_000, 4_200_000)] == [
        "850 ms", "12 s", "2 min 5 s", "1 h", "1 h 10 min"]


def test_local_time_carries_the_zone_offset():
    ms = 1_796_137_445_000  # 2026-12-01 15:04:05 UTC
    assert local_time(ms, "Asia/Ho_Chi_Minh") == "2026-12-01 22:04:05 +07"
    assert local_time(ms) == local_time(ms, "UTC") == "2026-12-01 15:04:05 UTC"
    assert local_time(ms, "Asia/Kolkata") == "2026-12-01 20:34:05 +05:30"
    assert local_time(ms, "America/St_Johns") == "2026-12-01 11:34:05 -03:30"
    assert local_time(ms, "Asia/Ho_Chi_Minh", seconds=False) == "2026-12-01 22:04 +07"
    assert local_time(None, "Asia/Ho_Chi_Minh") == ""
