"""The live feed: a background Kafka consumer of the ``alerts`` topic kept as a ring buffer of
numbered events that server-sent-event streams follow.

It uses ``assign()`` on every partition (no consumer group: every console instance sees every
alert, and no group join delays the start), from ``lookback`` before now. Alerts arrive at
least once, so they are de-duplicated by ``alert_id``. Operator actions taken in this console
are events too, so every open page learns of an acknowledgement at once.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from camflow.config import Kafka
from camflow.schemas.codec import AvroCodec, SchemaError

log = logging.getLogger("camflow.services.console")


class AlertFeed:
    def __init__(self, kafka: Kafka, topic: str, capacity: int = 200, lookback_ms: int = 86_400_000):
        self.kafka, self.topic = kafka, topic
        self.capacity, self.lookback_ms = capacity, lookback_ms
        self.events: deque[tuple[int, str, dict]] = deque(maxlen=4 * capacity)
        self.alerts: dict[str, dict] = {}  # alert_id -> alert (with evidence bytes), bounded
        self.order: deque[str] = deque()
        self.seq = 0
        self.connected = False
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-feed", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> "AlertFeed":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _assignments(self, consumer: Consumer) -> list[TopicPartition]:
        meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise RuntimeError(f"alerts topic {self.topic!r} not found on {self.kafka.bootstrap_servers}")
        since = int(time.time() * 1000) - self.lookback_ms
        wanted = [TopicPartition(self.topic, p, since) for p in sorted(meta.partitions)]
        try:  # the first offset at or after `since`; brokers that cannot say: from the start
            found = consumer.offsets_for_times(wanted, timeout=10)
            return [TopicPartition(self.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                    for tp in found]
        except Exception as exc:  # noqa: BLE001 - any failure here only widens the replay
            log.warning("offsets_for_times failed (%s); reading %s from the start", exc, self.topic)
            return [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)]

    def _run(self) -> None:
        codec = AvroCodec("Alert", self.kafka.registry_conf(), subject=f"{self.topic}-value")
        while not self._stop.is_set():
            consumer = None
            try:
                consumer = Consumer({**self.kafka.client_conf(), "group.id": "camflow-console",
                                     "enable.auto.commit": False, "enable.partition.eof": False})
                consumer.assign(self._assignments(consumer))
                self.connected, self.error = True, None
                while not self._stop.is_set():
                    msg = consumer.poll(0.3)
                    if msg is None:
                        continue
                    if msg.error():
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("alerts feed: %s", msg.error())
                        continue
                    try:
                        alert = codec.decode(msg.value())
                        # Some brokers (Tansu) answer offsets_for_times with the start of the
                        # log: older alerts still arrive and are left out here.
                        if alert["time_ms"] >= time.time() * 1000 - self.lookback_ms:
                            self.add_alert(alert)
                    except SchemaError as exc:
                        log.warning("alerts feed: %s[%d]@%d undecodable: %s", msg.topic(),
                                    msg.partition(), msg.offset(), exc)
            except Exception as exc:  # noqa: BLE001 - keep the console up; retry the broker
                if str(exc) != self.error:  # once per distinct problem, not every retry
                    log.warning("alerts feed: %s; retrying every 2 s", exc)
                self.connected, self.error = False, str(exc)
                self._stop.wait(2.0)
            finally:
                if consumer is not None:
                    consumer.close()

    # -- events ---------------------------------------------------------------------------
    def _push(self, kind: str, payload: dict) -> int:
        self.seq += 1
        self.events.append((self.seq, kind, payload))
        return self.seq

    def add_alert(self, alert: dict) -> bool:
        """Keep an alert and announce it; False for a re-delivery of one already kept."""
        with self._lock:
            if alert["alert_id"] in self.alerts:
                return False
            self.alerts[alert["alert_id"]] = alert
            self.order.append(alert["alert_id"])
            while len(self.order) > self.capacity:
                self.alerts.pop(self.order.popleft(), None)
            self._push("alert", alert)
            return True

    def add_action(self, alert_id: str, action: dict) -> None:
        with self._lock:
            self._push("action", {"alert_id": alert_id, **action})

    def since(self, seq: int) -> list[tuple[int, str, dict]]:
        with self._lock:
            return [e for e in self.events if e[0] > seq]

    def recent(self) -> list[dict]:
        with self._lock:
            return [self.alerts[a] for a in self.order]

    def get(self, alert_id: str) -> dict | None:
        with self._lock:
            return self.alerts.get(alert_id)
