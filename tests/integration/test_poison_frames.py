"""Poison frames through the real broker and the real job (embedded mini-cluster, restarts
off): a ``jpeg_ref`` naming a directory of the frame store, a progressive-JPEG scan bomb and an
aspect-ratio bomb arrive between two cameras' good frames. Each becomes a dead letter with its
reason; the job never fails (with restarts off, one exception would end the run), and every
good frame of both cameras is analysed."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from camflow.config import Config
from camflow.core.kafka import DeliveryTracker, produce_reliably, reliable_producer
from camflow.schemas.codec import AvroCodec
from tests.integration.job_setup import create_job_topics, decoded, kafka_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GOOD_PER_CAMERA = 6


def progressive_scan_bomb(image: np.ndarray, copies: int) -> bytes:
    """A progressive JPEG whose smallest scan is repeated: it decodes, one full pass per copy."""
    from bench.fuzz import scan_bomb
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    return scan_bomb(data.tobytes(), copies)


@pytest.fixture(scope="module")
def poisoned_run(tmp_path_factory, vtest_path, kafka_bootstrap, built_models):
    from camflow.core.frame_store import FileFrameStore
    from camflow.jobs.camera_job import run
    from camflow.services.sampler import sample_file

    root = tmp_path_factory.mktemp("frames")
    suffix = f"poison-{int(time.time() * 1000)}"
    config = Config.model_validate({
        "deployment": "poison",
        "cameras": [{"id": "walkway", "max_width": 640}, {"id": "quay", "max_width": 640}],
        "frame_store": {"url": root.as_uri()},
        "kafka": kafka_settings(kafka_bootstrap, suffix, partitions=1),
        "job": {"window_ms": 2000, "sliding_window_ms": 0, "idleness_ms": 1000,
                "checkpoint_interval_ms": 2000, "flink_options": {"restart-strategy.type": "none"},
                "recognition": {"faces": False, "plates": False}},
    })
    create_job_topics(kafka_bootstrap, config)
    store = FileFrameStore(root)
    codec, producer, tracker = AvroCodec("FrameSample"), reliable_producer(config.kafka), DeliveryTracker()
    topic = config.kafka.topics.frames
    start = int(time.time() * 1000) - 30_000
    frames = list(sample_file(str(vtest_path), 4, start_ms=start, max_frames=GOOD_PER_CAMERA))

    def send(camera: str, sequence: int, capture_ms: int, jpeg=None, ref=None):
        produce_reliably(producer, topic, codec.encode({
            "camera_id": camera, "capture_ms": capture_ms, "sequence": sequence, "jpeg": jpeg,
            "jpeg_ref": ref, "width": 0, "height": 0, "sampler_id": "test"}),
            camera.encode(), capture_ms, tracker)

    image = cv2.resize(frames[0].image, (640, 480))
    poison = {
        "directory_ref": dict(ref=(root / "walkway").as_uri()),
        "scan_bomb": dict(jpeg=progressive_scan_bomb(image, 500)),  # < 4 MiB: no size refusal
        "aspect_bomb": dict(jpeg=cv2.imencode(".jpg", np.full((1, 65_000, 3), 128, np.uint8))[1].tobytes()),
    }
    (root / "walkway").mkdir(exist_ok=True)
    for i, frame in enumerate(frames):
        for camera in ("walkway", "quay"):
            jpeg = cv2.imencode(".jpg", cv2.resize(frame.image, (640, 480)))[1].tobytes()
            send(camera, frame.sequence, frame.capture_ms, ref=store.put(camera, frame.capture_ms,
                                                                          frame.sequence, jpeg))
        if i == 2:  # the poison arrives mid-stream, on one camera's key
            for n, (name, fields) in enumerate(poison.items()):
                send("walkway", 90_000 + n, frame.capture_ms + 1 + n, **fields)
    producer.flush(30)
    started = time.monotonic()
    run(config, {0: tracker.next_offsets[(topic, 0)]})  # raises if the job failed
    return {"config": config, "frames": frames, "seconds": time.monotonic() - started,
            "poison": poison}


def test_every_good_frame_of_both_cameras_is_analysed(poisoned_run):
    config = poisoned_run["config"]
    analyses = decoded(config, config.kafka.topics.analyses, "FrameAnalysis")
    expected = {(c, f.sequence) for c in ("walkway", "quay") for f in poisoned_run["frames"]}
    assert {(a["camera_id"], a["sequence"]) for a in analyses} == expected


def test_each_poison_frame_is_a_dead_letter_with_its_reason(poisoned_run):
    config = poisoned_run["config"]
    letters = [d for d in decoded(config, config.kafka.topics.dead_letters, "DeadLetter")
               if d["stage"] == "analyse"]
    assert len(poisoned_run["poison"]["scan_bomb"]["jpeg"]) < 4 << 20  # no size refusal
    # a directory is no frame; hundreds of progressive scans and a 1 x 65000 strip are
    # refused before decoding
    assert sorted(d["reason"] for d in letters) == ["decode_budget", "decode_budget",
                                                    "missing_image"], letters
    assert {d["camera_id"] for d in letters} == {"walkway"}
    # the scan bomb's record is larger than a dead letter keeps: cut, with its length said
    assert any("bytes" in d["message"] and len(d["payload"]) <= 256 * 1024 for d in letters)
