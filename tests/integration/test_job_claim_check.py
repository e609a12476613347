"""Claim check through the real broker and the real job (embedded mini-cluster): the sampler
puts each JPEG in a file frame store and publishes only its reference; the job reads the frame
where it analyses it. A reference to a frame that is gone, or outside the store, is a
``missing_image`` dead letter, and the other frames still flow."""
from __future__ import annotations

import time

import pytest

from camflow.config import Config
from camflow.core.kafka import DeliveryTracker, produce_reliably, read_topic, reliable_producer
from camflow.schemas.codec import AvroCodec
from tests.integration.job_setup import create_job_topics, kafka_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GOOD_FRAMES = 10  # 2 s of vtest.avi at 5 fps


@pytest.fixture(scope="module")
def claim_checked_run(tmp_path_factory, vtest_path, kafka_bootstrap, built_models):
    from camflow.core.frame_store import FileFrameStore
    from camflow.jobs.camera_job import run
    from camflow.services.sampler import ingest

    root = tmp_path_factory.mktemp("frames")
    outside = root.parent / "not-a-frame.jpg"
    outside.write_bytes(b"\xff\xd8\xff\xd9")
    suffix = f"claim-{int(time.time() * 1000)}"
    config = Config.model_validate({
        "deployment": "claim-check",
        "cameras": [{"id": "walkway", "max_width": 768}],
        "frame_store": {"url": root.as_uri()},
        "kafka": kafka_settings(kafka_bootstrap, suffix, partitions=1),
        "job": {"window_ms": 2000, "sliding_window_ms": 0, "idleness_ms": 1000,
                "checkpoint_interval_ms": 2000,
                "recognition": {"faces": False, "plates": False}},
    })
    t = config.kafka.topics
    create_job_topics(kafka_bootstrap, config)
    store = FileFrameStore(root)
    report = ingest(config.kafka, "walkway", str(vtest_path), fps=5, max_frames=GOOD_FRAMES,
                    frame_store=store)
    assert report.frames == GOOD_FRAMES

    codec, now = AvroCodec("FrameSample"), int(time.time() * 1000)
    bad_refs = {"gone": (root / "walkway" / "0000000000001-1.jpg").as_uri(),
                "outside": outside.as_uri()}
    producer, tracker = reliable_producer(config.kafka), DeliveryTracker()
    for sequence, ref in enumerate(bad_refs.values(), start=10_000):
        value = codec.encode({"camera_id": "walkway", "capture_ms": now, "sequence": sequence,
                              "jpeg": None, "jpeg_ref": ref, "width": 0, "height": 0,
                              "sampler_id": "test"})
        produce_reliably(producer, t.frames, value, b"walkway", now, tracker)
    producer.flush(30)
    stops = {0: max(report.next_offsets[(t.frames, 0)], tracker.next_offsets[(t.frames, 0)])}
    run(config, stops)
    return {"config": config, "bad_refs": bad_refs}


def _records(config, topic, contract):
    codec = AvroCodec(contract)
    return [codec.decode(m.value()) for m in read_topic(config.kafka, topic, idle_timeout_s=3)]


def test_frames_topic_carries_references_not_bytes(claim_checked_run):
    config = claim_checked_run["config"]
    frames = list(read_topic(config.kafka, config.kafka.topics.frames, idle_timeout_s=3))
    assert len(frames) == GOOD_FRAMES + 2
    decoded = [AvroCodec("FrameSample").decode(m.value()) for m in frames]
    assert all(f["jpeg"] is None and f["jpeg_ref"].startswith("file://") for f in decoded)
    assert max(len(m.value()) for m in frames) < 1_000  # an inline 768-px JPEG is ~60 KB


def test_claim_checked_frames_are_analysed(claim_checked_run):
    config = claim_checked_run["config"]
    analyses = _records(config, config.kafka.topics.analyses, "FrameAnalysis")
    sequences = [a["sequence"] for a in analyses]
    assert len(sequences) == len(set(sequences)) == GOOD_FRAMES
    persons = [sum(d["class_name"] == "person" for d in a["detections"]) for a in analyses]
    assert max(persons) >= 3  # vtest.avi's walkway: the pixels really were read from the store


def test_missing_or_foreign_references_are_dead_letters(claim_checked_run):
    config = claim_checked_run["config"]
    dead = _records(config, config.kafka.topics.dead_letters, "DeadLetter")
    assert len(dead) == 2 and {d["reason"] for d in dead} == {"missing_image"}
    messages = " ".join(d["message"] for d in dead)
    assert "not found" in messages and "outside the frame store" in messages
