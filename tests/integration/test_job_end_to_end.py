"""Real frames through the real broker and the real Flink job (embedded mini-cluster).

Also puts a corrupt JPEG, a record of the wrong schema and a frame from an unknown camera on
the frames topic: they must land in dead-letters while the good frames still flow.
"""
from __future__ import annotations

import time

import pytest

from camflow.config import Config
from camflow.core.kafka import DeliveryTracker, produce_reliably, read_topic, reliable_producer
from camflow.schemas.codec import AvroCodec
from tests.integration.job_setup import create_job_topics, kafka_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GOOD_FRAMES = 30  # 6 s of vtest.avi at 5 fps


@pytest.fixture(scope="module")
def job_run(request, tmp_path_factory, vtest_path, kafka_bootstrap, built_models):
    from camflow.jobs.camera_job import run
    from camflow.services.sampler import ingest

    suffix = f"e2e-{int(time.time() * 1000)}"
    config = Config.model_validate({
        "deployment": "e2e",
        "cameras": [{"id": "walkway", "crowd_limit": 2, "max_width": 768}],
        "kafka": kafka_settings(kafka_bootstrap, suffix, partitions=2),
        "job": {"window_ms": 2000, "sliding_window_ms": 4000, "out_of_orderness_ms": 500,
                "idleness_ms": 1000,
                "checkpoint_interval_ms": 2000, "detector": {"threads": 2}},
    })
    t = config.kafka.topics
    create_job_topics(kafka_bootstrap, config)
    report = ingest(config.kafka, "walkway", str(vtest_path), fps=5, max_frames=GOOD_FRAMES)
    assert report.frames == GOOD_FRAMES

    # Bad input, sent after the good frames, each keyed like a real camera.
    frame_codec = AvroCodec("FrameSample")
    now = int(time.time() * 1000)
    bad = {
        "corrupt_jpeg": frame_codec.encode({
            "camera_id": "walkway", "capture_ms": now, "sequence": 10_000,
            "jpeg": b"\xff\xd8\xff\xe0" + b"\x13" * 500 + b"\xff\xd9", "jpeg_ref": None,
            "width": 0, "height": 0, "sampler_id": "test"}),
        "unknown_schema": AvroCodec("Alert").encode({
            "alert_id": "x", "type": "t", "severity": "info", "camera_id": "walkway", "time_ms": now}),
        "unknown_encoding": b'{"camera_id": "walkway", "jpeg": "not avro"}',
        "unknown_camera": frame_codec.encode({
            "camera_id": "nowhere", "capture_ms": now, "sequence": 1, "jpeg": b"\xff\xd8\xff\xd9",
            "jpeg_ref": None, "width": 0, "height": 0, "sampler_id": "test"}),
        "future_timestamp": frame_codec.encode({
            "camera_id": "walkway", "capture_ms": now + 86_400_000, "sequence": 10_001,
            "jpeg": b"\xff\xd8\xff\xd9", "jpeg_ref": None, "width": 0, "height": 0,
            "sampler_id": "test"}),
    }
    producer, tracker = reliable_producer(config.kafka), DeliveryTracker()
    for value in bad.values():
        produce_reliably(producer, t.frames, value, b"walkway", now, tracker)
    producer.flush(30)
    stops: dict[int, int] = {}
    for delivered in (report.next_offsets, tracker.next_offsets):
        for (_, partition), offset in delivered.items():
            stops[partition] = max(stops.get(partition, 0), offset)

    started = time.monotonic()
    run(config, stops)
    return {"config": config, "bad": bad, "seconds": time.monotonic() - started}


def records(config, topic, contract):
    codec = AvroCodec(contract)
    return [codec.decode(m.value()) for m in read_topic(config.kafka, topic, idle_timeout_s=3)]


def test_every_good_frame_is_analysed_once_with_people_found(job_run):
    config = job_run["config"]
    analyses = records(config, config.kafka.topics.analyses, "FrameAnalysis")
    assert sorted(a["sequence"] for a in analyses) == sorted({a["sequence"] for a in analyses})
    assert len(analyses) == GOOD_FRAMES
    persons = [sum(d["class_name"] == "person" for d in a["detections"]) for a in analyses]
    # vtest.avi shows 3-8 pedestrians in its first seconds
    assert min(persons) >= 1 and max(persons) >= 3
    tracked = {d["track_id"] for a in analyses for d in a["detections"] if d["track_id"] >= 0}
    assert len(tracked) >= 3
    assert all(a["model_versions"] for a in analyses)
    assert all(a["processed_ms"] >= a["capture_ms"] for a in analyses)


def test_windows_produce_aggregates_and_crowd_alerts(job_run):
    config = job_run["config"]
    windows = records(config, config.kafka.topics.aggregates, "Aggregate")
    aggregates = [a for a in windows if a["window_end_ms"] - a["window_start_ms"] == 2000]
    sliding = [a for a in windows if a["window_end_ms"] - a["window_start_ms"] == 4000]
    assert len(aggregates) + len(sliding) == len(windows)
    # 6 s of capture time in 2 s tumbling windows: 3 or 4 windows depending on alignment
    assert 3 <= len(aggregates) <= 4
    assert sum(a["frames"] for a in aggregates) == GOOD_FRAMES
    # 4 s windows sliding by 2 s: every frame is counted in two of them
    assert sum(a["frames"] for a in sliding) == 2 * GOOD_FRAMES
    assert max(a["counts_by_class"].get("person", 0) for a in aggregates) >= 3
    alerts = records(config, config.kafka.topics.alerts, "Alert")
    assert alerts, "more than 2 people per frame on the walkway must raise crowd_limit"
    assert {a["type"] for a in alerts} == {"crowd_limit"}
    assert len({a["alert_id"] for a in alerts}) == len(alerts)


def test_bad_input_lands_in_dead_letters_with_reason_and_bytes(job_run):
    config = job_run["config"]
    dead = records(config, config.kafka.topics.dead_letters, "DeadLetter")
    by_reason = {d["reason"]: d for d in dead}
    assert set(by_reason) == set(job_run["bad"]), [(d["reason"], d["message"]) for d in dead]
    for reason, payload in job_run["bad"].items():
        assert by_reason[reason]["payload"] == payload, reason
        assert by_reason[reason]["message"]
    assert by_reason["corrupt_jpeg"]["stage"] == "analyse"
    assert by_reason["unknown_camera"]["camera_id"] == "nowhere"
