"""The console's live feed through the real broker: alerts once each (re-deliveries dropped),
nothing older than the look-back, undecodable records skipped without stopping the feed."""
from __future__ import annotations

import time

import pytest

from camflow.config import Kafka
from camflow.services.console.feed import AlertFeed
from camflow.core.kafka import DeliveryTracker, produce_reliably, reliable_producer
from camflow.schemas.codec import AvroCodec

pytestmark = [pytest.mark.integration]


def alert(alert_id: str, time_ms: int) -> dict:
    return {"alert_id": alert_id, "type": "crowd_limit", "severity": "warning", "camera_id": "gate",
            "time_ms": time_ms, "subject": "person", "score": 1.4, "track_id": None,
            "evidence": "{}", "evidence_jpeg": None, "evidence_ref": None}


def test_feed_keeps_recent_alerts_once_and_survives_garbage(kafka_bootstrap, unique_topic, make_topics):
    topic = unique_topic("alerts")
    make_topics({topic: 2})
    kafka = Kafka(bootstrap_servers=kafka_bootstrap)
    codec, producer, tracker = AvroCodec("Alert"), reliable_producer(kafka), DeliveryTracker()
    now = int(time.time() * 1000)
    records = [codec.encode(alert("old", now - 3 * 86_400_000)), codec.encode(alert("a1", now - 5000)),
               b"not avro at all", codec.encode(alert("a1", now - 5000)),
               codec.encode(alert("a2", now - 1000))]
    for i, value in enumerate(records):
        produce_reliably(producer, topic, value, f"k{i}".encode(), now, tracker)
    producer.flush(30)
    feed = AlertFeed(kafka, topic, capacity=10, lookback_ms=86_400_000).start()
    try:
        deadline = time.monotonic() + 30
        while len(feed.recent()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # anything left would arrive by now
        assert sorted(a["alert_id"] for a in feed.recent()) == ["a1", "a2"]
        assert [kind for _, kind, _ in feed.since(0)] == ["alert", "alert"]
        assert feed.connected
        # a live alert after the start arrives too
        produce_reliably(producer, topic, codec.encode(alert("a3", now)), b"k9", now, tracker)
        producer.flush(30)
        deadline = time.monotonic() + 30
        while feed.get("a3") is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert feed.get("a3") is not None
    finally:
        feed.stop()
