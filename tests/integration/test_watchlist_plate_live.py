"""The plate half of the live watchlist: a plate added while the job runs raises one alert
when a vehicle carrying it passes, without a restart; another plate raises nothing; after
removal the same plate raises no new alert.

The frames are real images: frame 231 of ``car-detection.mp4`` (a red saloon seen from above
and behind, its rear plate visible), enlarged 3x as a closer camera would see it, with a real
Vietnamese plate crop from ``shared/data/plates`` pasted over the car's own (US) plate at a
plausible size (a 520 mm plate on a ~1.8 m wide car: ~30 px of the car's ~120 px at source
scale). The COCO detector finds the car there (score ~0.6 against its 0.4 threshold) and the
plate reader reads the pasted plate on the vehicle crop, checked by the pre-enrolment clip.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.integration.job_setup import running_watchlist_job, wait_until_admitted

from camflow.core.kafka import read_topic
from camflow.schemas.codec import AvroCodec
from camflow.services.enrolment import Watchlist

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
VIDEO = DATA / "video" / "car-detection.mp4"
PLATES = DATA / "plates"
LISTED = ("3CarLongPlate565.jpg", "51F59881")  # labels.csv: 51F-598.81
OTHER = ("3CarLongPlate339.jpg", "51F82606")   # labels.csv: 51F-826.06

# The car in frame 231: its rear plate is centred at (376.5, 53.5), ~23x11 px, at source scale.
CAR_FRAME, PLATE_CENTRE, SCALE, PLATE_WIDTH = 231, (376.5, 53.5), 3.0, 30


def car_with_plate(plate_file: str) -> np.ndarray:
    """A 960x540 BGR frame: the car of frame ``CAR_FRAME`` enlarged ``SCALE`` times, carrying
    the real plate crop ``plate_file`` (``PLATE_WIDTH`` px wide at source scale)."""
    cap = cv2.VideoCapture(str(VIDEO))
    try:
        for _ in range(CAR_FRAME + 1):  # read, not seek: seeking an mp4 is not frame-exact
            ok, frame = cap.read()
            assert ok, f"{VIDEO} has fewer than {CAR_FRAME + 1} frames"
    finally:
        cap.release()
    big = cv2.resize(frame, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_CUBIC)
    plate = cv2.imread(str(PLATES / plate_file))
    pw = int(round(PLATE_WIDTH * SCALE))
    ph = int(round(pw * plate.shape[0] / plate.shape[1]))
    plate = cv2.resize(plate, (pw, ph), interpolation=cv2.INTER_AREA)
    cx, cy = int(PLATE_CENTRE[0] * SCALE), int(PLATE_CENTRE[1] * SCALE)
    big[cy - ph // 2:cy - ph // 2 + ph, cx - pw // 2:cx - pw // 2 + pw] = plate
    x0 = max(0, min(big.shape[1] - 960, cx - 480))
    return np.ascontiguousarray(big[:540, x0:x0 + 960])


def decoded(config, topic: str, contract: str, idle_timeout_s: float = 1.0) -> list[dict]:
    codec = AvroCodec(contract)
    return [codec.decode(m.value()) for m in read_topic(config.kafka, topic, idle_timeout_s=idle_timeout_s)]


def wait_for_analyses(config, sequences, timeout_s=60.0) -> list[dict]:
    """The analyses of frames ``sequences``, once the job has written all of them."""
    deadline = time.monotonic() + timeout_s
    wanted = set(sequences)
    while True:
        found = [a for a in decoded(config, config.kafka.topics.analyses, "FrameAnalysis")
                 if a["sequence"] in wanted]
        if {a["sequence"] for a in found} == wanted or time.monotonic() > deadline:
            return found
        time.sleep(1)


def plates_read(analyses: list[dict]) -> list[str]:
    return [d["attributes"]["plate_text"] for a in analyses for d in a["detections"]
            if "plate_text" in d["attributes"]]


def plate_alerts(config) -> list[dict]:
    return [a for a in decoded(config, config.kafka.topics.alerts, "Alert")
            if a["type"] == "watchlist_plate"]


def wait_for_plate_alerts(config, timeout_s=60.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        alerts = plate_alerts(config)
        if alerts or time.monotonic() > deadline:
            return alerts
        time.sleep(1)


@pytest.fixture
def live_job(live_config, built_models):
    if not (VIDEO.is_file() and (PLATES / LISTED[0]).is_file() and (PLATES / OTHER[0]).is_file()):
        pytest.skip(f"shared video / plate crops not present under {DATA}")
    yield from running_watchlist_job(live_config, "live-plate", {"faces": False, "plates": True})


def test_plate_added_while_running_is_alerted_and_removal_stops_alerts(live_job, publish_still):
    config = live_job
    listed, other = car_with_plate(LISTED[0]), car_with_plate(OTHER[0])
    now = int(time.time() * 1000)

    # Before enrolment: the car passes, its plate is read, no watchlist alert.
    sequences = publish_still(config, "port-gate", listed, now - 60_000, frames=4)
    before = wait_for_analyses(config, sequences, timeout_s=90)
    assert len(before) == len(sequences)
    assert LISTED[1] in plates_read(before), before  # the composed frame works end to end

    watchlist = Watchlist(config.kafka)
    entry = watchlist.add_plate("51F-598.81", reason="stolen vehicle", added_by="test")
    assert entry["id"] == LISTED[1]
    time.sleep(3)  # the broadcast reaches every instance
    sequences = publish_still(config, "port-gate", listed, now - 40_000, frames=4, first_sequence=100)
    assert LISTED[1] in plates_read(wait_for_analyses(config, sequences))
    alerts = wait_for_plate_alerts(config)
    assert len(alerts) == 1, alerts
    alert = alerts[0]
    assert alert["subject"] == LISTED[1] and alert["camera_id"] == "port-gate"
    assert alert["severity"] == "critical" and alert["score"] == 1.0
    assert alert["time_ms"] >= now - 40_000  # raised by the post-enrolment clip
    evidence = json.loads(alert["evidence"])
    assert evidence["plate_read"] == LISTED[1] and evidence["exact"]
    assert evidence["reason"] == "stolen vehicle"
    assert alert["evidence_jpeg"] and alert["evidence_jpeg"][:2] == b"\xff\xd8"
    crop = cv2.imdecode(np.frombuffer(alert["evidence_jpeg"], np.uint8), cv2.IMREAD_COLOR)
    assert crop is not None and crop.shape[1] >= 60  # the plate with a margin, not a sliver
    sightings = decoded(config, config.kafka.topics.sightings, "Sighting", idle_timeout_s=2)
    assert sightings and {(s["subject_id"], s["kind"], s["plate"]) for s in sightings} == \
        {(LISTED[1], "plate", LISTED[1])}
    assert {s["alert_id"] for s in sightings} == {alert["alert_id"]}

    # A car with another real plate: read, not matched.
    sequences = publish_still(config, "port-gate", other, now - 30_000, frames=4, first_sequence=200)
    assert OTHER[1] in plates_read(wait_for_analyses(config, sequences))

    # After removal the listed plate (beyond the cooldown) raises nothing new.
    watchlist.remove(LISTED[1], kind="plate", added_by="test")
    time.sleep(3)
    # 71 s after the first sighting: past the 60 s cooldown, so a match would be a new alert.
    later = now + 31_000
    wait_until_admitted(config, later + 3 * 500)
    sequences = publish_still(config, "port-gate", listed, later, frames=4, first_sequence=300)
    assert LISTED[1] in plates_read(wait_for_analyses(config, sequences))
    time.sleep(2)  # analyses and alerts leave through different sinks
    assert [a["alert_id"] for a in plate_alerts(config)] == [alert["alert_id"]]
    sightings = decoded(config, config.kafka.topics.sightings, "Sighting")
    assert {s["alert_id"] for s in sightings} == {alert["alert_id"]}
    assert max(s["time_ms"] for s in sightings) < now - 30_000  # none after the removal
