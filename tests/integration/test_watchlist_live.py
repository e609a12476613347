"""The watchlist inside the running job: a person added while the job runs is recognised
without a restart; after removal the same person raises no new alert."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from camflow.core.kafka import read_topic
from camflow.schemas.codec import AvroCodec
from camflow.services.enrolment import Watchlist
from tests.integration.job_setup import running_watchlist_job, wait_until_admitted

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces"


def wait_for_alerts(config, predicate, timeout_s=90.0):
    deadline = time.monotonic() + timeout_s
    codec = AvroCodec("Alert")
    while time.monotonic() < deadline:
        alerts = [codec.decode(m.value()) for m in read_topic(config.kafka, config.kafka.topics.alerts,
                                                              idle_timeout_s=1.0)]
        if predicate(alerts):
            return alerts
        time.sleep(2)
    return alerts


def wait_for_analyses(config, sequences, timeout_s=60.0) -> list[dict]:
    deadline, wanted, codec = time.monotonic() + timeout_s, set(sequences), AvroCodec("FrameAnalysis")
    while True:
        found = [a for a in (codec.decode(m.value()) for m in read_topic(
            config.kafka, config.kafka.topics.analyses, idle_timeout_s=1.0)) if a["sequence"] in wanted]
        if {a["sequence"] for a in found} == wanted or time.monotonic() > deadline:
            return found
        time.sleep(1)


@pytest.fixture
def live_job(live_config, built_models):
    if not FACES.is_dir():
        pytest.skip(f"shared face photos not present at {FACES}")
    yield from running_watchlist_job(live_config, "live", {"plates": False})


def test_person_added_while_running_is_alerted_and_removal_stops_alerts(live_job, publish_still):
    config = live_job
    now = int(time.time() * 1000)
    # Before enrolment: the person walks by, no watchlist alert.
    publish_still(config, "port-gate", FACES / "tests__test_images__obama2.jpg", now - 60_000)
    watchlist = Watchlist(config.kafka)
    watchlist.add_face("W-7", "Barack Obama", "wanted", [str(FACES / "tests__test_images__obama.jpg")],
                       added_by="test")
    time.sleep(3)  # the broadcast reaches every instance
    publish_still(config, "port-gate", FACES / "tests__test_images__obama2.jpg", now - 40_000,
                 first_sequence=100)
    alerts = wait_for_alerts(config, lambda a: any(x["type"] == "watchlist_face" for x in a))
    faces = [a for a in alerts if a["type"] == "watchlist_face"]
    assert len(faces) == 1, alerts
    assert faces[0]["subject"] == "W-7" and faces[0]["severity"] == "critical"
    assert faces[0]["score"] >= config.job.watchlist.face_threshold
    assert faces[0]["evidence_jpeg"] and faces[0]["evidence_jpeg"][:2] == b"\xff\xd8"
    sightings = [AvroCodec("Sighting").decode(m.value())
                 for m in read_topic(config.kafka, config.kafka.topics.sightings, idle_timeout_s=2)]
    assert sightings and {s["subject_id"] for s in sightings} == {"W-7"}

    # Someone else is not matched.
    publish_still(config, "port-gate", FACES / "tests__test_images__biden.jpg", now - 30_000,
                 first_sequence=200)
    # After removal the same person (beyond the cooldown) raises nothing new.
    watchlist.remove("W-7", added_by="test")
    time.sleep(3)
    # 71 s after the first sighting: past the 60 s cooldown, so a match would be a new alert
    wait_until_admitted(config, now + 31_000 + 5 * 500)
    late = publish_still(config, "port-gate", FACES / "tests__test_images__obama3.jpg", now + 31_000,
                         first_sequence=300)
    analysed = wait_for_analyses(config, late)
    assert len(analysed) == len(late), "the post-removal frames were not all analysed"
    time.sleep(2)  # analyses and alerts leave through different sinks
    after = wait_for_alerts(config, lambda a: False, timeout_s=5)
    assert [a["alert_id"] for a in after if a["type"] == "watchlist_face"] == [faces[0]["alert_id"]]
