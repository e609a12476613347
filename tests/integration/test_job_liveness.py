"""Camera liveness through the real broker and the real job (embedded mini-cluster): a camera
that goes silent while another keeps sending is reported offline once the watermark passes
its last frame + ``offline_after_ms``, exactly once, with that time; the busy camera is not.

Each camera keeps one pending silence check, moved along by later frames (not a timer per
frame): this test is what says the moved check still fires at the right event time. The job
runs unbounded, as in production: a bounded run ends with the final watermark, which by design
raises no silence alert (the input ended, the cameras did not go quiet)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from camflow.config import Config
from camflow.core.kafka import DeliveryTracker, produce_reliably, read_topic, reliable_producer
from camflow.schemas.codec import AvroCodec
from tests.integration.job_setup import create_job_topics, kafka_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OFFLINE_AFTER_MS = 3_000
STEP_MS = 500  # 2 fps
QUIET_LAST_MS = 4_000  # "quiet" stops here; "busy" goes on to 12 s


@pytest.fixture(scope="module")
def liveness_run(kafka_bootstrap, built_models):
    from camflow.jobs.camera_job import start as start_job
    from camflow.transforms.frames import encode_jpeg

    suffix = f"live-{int(time.time() * 1000)}"
    config = Config.model_validate({
        "deployment": "liveness",
        "cameras": [{"id": "quiet"}, {"id": "busy"}],
        "kafka": kafka_settings(kafka_bootstrap, suffix, partitions=1),
        "job": {"window_ms": 2000, "sliding_window_ms": 0, "out_of_orderness_ms": 0,
                "idleness_ms": 60_000, "checkpoint_interval_ms": 2000,
                "liveness": {"offline_after_ms": OFFLINE_AFTER_MS},
                "recognition": {"faces": False, "plates": False}},
    })
    t = config.kafka.topics
    create_job_topics(kafka_bootstrap, config)
    jpeg = encode_jpeg(np.full((48, 64, 3), 128, np.uint8))
    codec, producer, tracker = AvroCodec("FrameSample"), reliable_producer(config.kafka), DeliveryTracker()

    def send(camera: str, capture_ms: int, sequence: int) -> None:
        value = codec.encode({"camera_id": camera, "capture_ms": capture_ms, "sequence": sequence,
                              "jpeg": jpeg, "jpeg_ref": None, "width": 0, "height": 0,
                              "sampler_id": "test"})
        produce_reliably(producer, t.frames, value, camera.encode(), capture_ms, tracker)
        producer.flush(10)

    client = start_job(config, parallelism=1, job_name=suffix)
    try:
        # Frames go out in real time once the job runs, so the watermark moves the way it does in
        # production (in small steps), and the quiet camera's first checks fire while it is still
        # sending: they must move on, not raise nor stop checking.
        send("busy", int(time.time() * 1000) - 5_000, 0)
        deadline = time.monotonic() + 120
        while not list(read_topic(config.kafka, t.analyses, idle_timeout_s=1)):
            assert time.monotonic() < deadline, "the job analysed no frame in 120 s"
        start = int(time.time() * 1000)
        for offset in range(0, 12_001, STEP_MS):
            time.sleep(max(0.0, (start + offset) / 1000 - time.time()))
            for camera in ("quiet", "busy"):
                if camera == "busy" or offset <= QUIET_LAST_MS:
                    send(camera, start + offset, 1 + offset // STEP_MS)
        alerts, codec = [], AvroCodec("Alert")
        # the silence check fires once the watermark has moved past the deadline
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not any(
                a["type"] == "camera_offline" for a in alerts):
            time.sleep(2)
            alerts = [codec.decode(m.value())
                      for m in read_topic(config.kafka, t.alerts, idle_timeout_s=1)]
        time.sleep(3)  # a second, wrong alert would have arrived by now
        alerts = [codec.decode(m.value()) for m in read_topic(config.kafka, t.alerts, idle_timeout_s=2)]
    finally:
        client.cancel().result()
    return {"start": start, "alerts": alerts}


def test_the_silent_camera_is_offline_once_at_its_deadline(liveness_run):
    offline = [a for a in liveness_run["alerts"] if a["type"] == "camera_offline"]
    assert [a["camera_id"] for a in offline] == ["quiet"], liveness_run["alerts"]
    assert offline[0]["time_ms"] == liveness_run["start"] + QUIET_LAST_MS + OFFLINE_AFTER_MS


def test_the_busy_camera_is_never_offline(liveness_run):
    assert not [a for a in liveness_run["alerts"]
                if a["type"] in ("camera_offline", "camera_recovered") and a["camera_id"] == "busy"]
