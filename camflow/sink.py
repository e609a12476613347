"""``camflow sink``: Kafka topics -> analyst store, at least once, idempotent.

Offsets are committed to Kafka only after the rows are committed to the store, and every
write is an upsert on the record's key, so a crash between the two re-delivers records that
overwrite themselves: the store ends with exactly one row per alert, window and frame.
Records that cannot be decoded are kept in ``sink_rejects`` with their bytes, never dropped.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException

from camflow.schemas.codec import AvroCodec, SchemaError

from .config import Config
from .store import AnalystStore


@dataclass
class SinkReport:
    written: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    seconds: float = 0.0


def run_sink(config: Config, store_url: str | None = None, idle_exit_s: float | None = None,
             max_seconds: float | None = None, batch_size: int = 500,
             topics: tuple[str, ...] = ("alerts", "aggregates", "analyses")) -> SinkReport:
    """Consume until stopped (or idle for ``idle_exit_s``); returns what was written."""
    kafka = config.kafka
    names = {"alerts": kafka.topics.alerts, "aggregates": kafka.topics.aggregates,
             "analyses": kafka.topics.analyses}
    registry = kafka.registry_conf()
    handlers = {
        names["alerts"]: (AvroCodec("Alert", registry), "upsert_alert"),
        names["aggregates"]: (AvroCodec("Aggregate", registry), "upsert_aggregate"),
        names["analyses"]: (AvroCodec("FrameAnalysis", registry), "upsert_analysis"),
    }
    handlers = {topic: h for kind, topic in names.items() if kind in topics for h in [handlers[topic]]}
    store = AnalystStore(store_url or config.store.url)
    consumer = Consumer({
        **kafka.client_conf(),
        "group.id": f"{kafka.group_id}-sink",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,  # Tansu delays a group join by about half of this
        "heartbeat.interval.ms": 1000,
    })
    consumer.subscribe(list(handlers))
    report = SinkReport(written={t: 0 for t in handlers})
    started = last_record = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            if max_seconds is not None and now - started > max_seconds:
                break
            if idle_exit_s is not None and now - last_record > idle_exit_s:
                break
            messages = consumer.consume(batch_size, timeout=0.5)
            if not messages:
                continue
            for msg in messages:
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(msg.error())
                last_record = time.monotonic()
                codec, method = handlers[msg.topic()]
                try:
                    getattr(store, method)(codec.decode(msg.value()))
                    report.written[msg.topic()] += 1
                except SchemaError as exc:
                    print(f"camflow sink: {msg.topic()}[{msg.partition()}]@{msg.offset()}: {exc}",
                          file=sys.stderr)
                    store.reject(msg.topic(), msg.partition(), msg.offset(), exc.reason, msg.value())
                    report.rejected += 1
            store.commit()
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
        store.close()
        report.seconds = time.monotonic() - started
    return report
