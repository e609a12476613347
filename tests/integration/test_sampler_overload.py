"""The sampler's overload policies against a broker that stops for a few seconds.

latest-only drops older unsent frames (counted) and delivers the newest; keep-all waits and
delivers every frame. Runs its own broker on another port, with storage that outlives the
broker restart (``storage="s3"``), so what the topic holds afterwards is exactly what was
delivered.
"""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from camflow.config import Config
from camflow.core.kafka import ensure_topic, read_topic
from camflow.schemas.codec import AvroCodec

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PORT = 19292
FRAMES = 160  # 16 s at 10 fps: the broker is away from ~1.5 s to ~10 s


def _ingest_through_a_broker_outage(own_durable_broker, vtest_path, policy):
    broker, bootstrap = own_durable_broker
    from camflow.services.sampler import ingest
    config = Config.model_validate({"kafka": {"bootstrap_servers": bootstrap,
                                              "topics": {"frames": f"frames-{uuid.uuid4().hex[:6]}"}}})
    topic = config.kafka.topics.frames
    ensure_topic(config.kafka, topic, 1)

    back = {}

    def stop_broker_meanwhile():
        time.sleep(1.5)
        broker.stop(port=PORT)  # Tansu takes a few seconds to shut down
        time.sleep(3.0)  # the sampler keeps sampling while the broker is away
        broker.start(port=PORT, storage="s3")
        back["at"] = time.monotonic()

    outage = threading.Thread(target=stop_broker_meanwhile)
    outage.start()
    started = time.monotonic()
    report = ingest(config.kafka, "walkway", str(vtest_path), fps=10, max_width=160,
                    max_frames=FRAMES, realtime=True, policy=policy, max_in_flight=5)
    outage.join()
    codec = AvroCodec("FrameSample")
    delivered = [codec.decode(m.value())["sequence"]
                 for m in read_topic(config.kafka, topic, idle_timeout_s=3)]
    from camflow.services.sampler import sample_file
    sampled = [f.sequence for f in sample_file(str(vtest_path), fps=10, max_frames=FRAMES)]
    # frames sampled (paced at 10 fps from the start) at least 2 s after the broker was back up,
    # by when the producer has reconnected (reconnect backoff at most 1 s)
    newest = [s for i, s in enumerate(sampled) if started + i / 10 > back["at"] + 2.0]
    return report, delivered, sampled, newest


def test_latest_only_drops_older_frames_and_delivers_the_newest(own_durable_broker, vtest_path):
    report, delivered, sampled, newest = _ingest_through_a_broker_outage(own_durable_broker, vtest_path,
                                                                         "latest-only")
    assert report.frames == FRAMES and report.policy == "latest-only"
    assert report.dropped > 0
    # Every sampled frame was delivered or counted as dropped, none both (at least once:
    # duplicates of a re-sent frame are allowed, so distinct sequences are counted).
    assert len(set(delivered)) + report.dropped == FRAMES, (sorted(set(delivered)), report.dropped)
    assert set(delivered) <= set(sampled)
    # The newest frames are there: everything sampled once the broker was back.
    assert newest and set(newest) <= set(delivered), (newest, sorted(set(delivered)))


def test_keep_all_delivers_every_frame(own_durable_broker, vtest_path):
    report, delivered, sampled, _ = _ingest_through_a_broker_outage(own_durable_broker, vtest_path, "keep-all")
    assert report.frames == FRAMES and report.dropped == 0
    assert set(delivered) == set(sampled)
