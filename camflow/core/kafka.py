"""Kafka clients outside Flink (sampler, analyst-store sink, tools), built from the config.

Everything connects by bootstrap servers and security settings only, so the same code runs
against the local Tansu broker and any Apache Kafka cluster.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from camflow.config import Kafka
from camflow.core.overload import DEFAULT_MAX_IN_FLIGHT, SendBacklog


def reliable_producer(kafka: Kafka, **overrides) -> Producer:
    """A producer that loses nothing: acks from all in-sync replicas, idempotent retries."""
    conf = {
        **kafka.client_conf(),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "message.max.bytes": 16 * 1024 * 1024,
        "delivery.timeout.ms": 300_000,  # keep retrying through a broker restart
        "retry.backoff.ms": 200,
        "retry.backoff.max.ms": 5_000,
        "reconnect.backoff.max.ms": 1_000,  # back within a second of a broker restart (default 10 s)
        **overrides,
    }
    return Producer(conf)


@dataclass
class DeliveryTracker:
    """Counts deliveries and remembers, per partition, the offset after the last record."""

    delivered: int = 0
    failed: list[str] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def __call__(self, err, msg) -> None:
        if err is not None:
            self.failed.append(str(err))
            return
        self.delivered += 1
        _note_offset(self.next_offsets, msg)


def _note_offset(next_offsets: dict[tuple[str, int], int], msg) -> None:
    """Remember the offset after an acknowledged record. A broker that recognises an
    idempotent re-send as a duplicate acknowledges it without an offset (None): skip those."""
    offset = msg.offset()
    if offset is None or offset < 0:
        return
    key = (msg.topic(), msg.partition())
    next_offsets[key] = max(next_offsets.get(key, 0), offset + 1)


def produce_reliably(producer: Producer, topic: str, value: bytes, key: bytes | None,
                     timestamp_ms: int | None, on_delivery: Callable) -> None:
    """Produce, waiting for queue space instead of dropping when the local queue is full."""
    while True:
        try:
            kwargs = {"timestamp": timestamp_ms} if timestamp_ms is not None else {}
            producer.produce(topic, value=value, key=key, on_delivery=on_delivery, **kwargs)
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.1)


def partition_count(kafka: Kafka, topic: str, timeout: float = 10.0) -> int:
    consumer = Consumer({**kafka.client_conf(), "group.id": "camflow-meta"})
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise KafkaException(f"topic {topic!r} not found on {kafka.bootstrap_servers}")
        return len(meta.partitions)
    finally:
        consumer.close()


def read_topic(kafka: Kafka, topic: str, idle_timeout_s: float = 3.0, max_wait_s: float = 120.0,
               start_offsets: dict[int, int] | None = None,
               stop_offsets: dict[int, int] | None = None) -> Iterator:
    """Yield every message of a topic from the start, with ``assign()`` (no group join).

    The read ends at ``stop_offsets`` when given; otherwise once no message arrived for
    ``idle_timeout_s`` (Tansu reports wrong end offsets, so they are not trusted).
    """
    partitions = partition_count(kafka, topic)
    consumer = Consumer({**kafka.client_conf(), "group.id": "camflow-reader",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    starts = start_offsets or {}
    consumer.assign([TopicPartition(topic, p, starts.get(p, 0)) for p in range(partitions)])
    remaining = dict(stop_offsets) if stop_offsets else None
    if remaining is not None:
        remaining = {p: o for p, o in remaining.items() if o > starts.get(p, 0)}
    deadline = time.monotonic() + max_wait_s
    last_message = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if remaining is not None and not remaining:
                return
            msg = consumer.poll(0.2)
            if msg is None:
                if remaining is None and time.monotonic() - last_message > idle_timeout_s:
                    return
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            last_message = time.monotonic()
            if remaining is not None:
                stop = remaining.get(msg.partition())
                if stop is None or msg.offset() >= stop:
                    continue
                if msg.offset() + 1 >= stop:
                    del remaining[msg.partition()]
            yield msg
        if remaining:
            raise TimeoutError(f"{topic}: stop offsets {remaining} not reached in {max_wait_s}s")
    finally:
        consumer.close()


def scan_next_offsets(kafka: Kafka, topic: str, idle_timeout_s: float = 3.0) -> dict[int, int]:
    """partition -> offset after the last record now in the topic, found by reading it.

    Used to make a bounded job run stop exactly at what was there when it started (the
    broker's reported end offsets are not trusted: Tansu gets them wrong after batches).
    """
    found: dict[int, int] = {p: 0 for p in range(partition_count(kafka, topic))}
    for msg in read_topic(kafka, topic, idle_timeout_s=idle_timeout_s, max_wait_s=3600):
        found[msg.partition()] = max(found[msg.partition()], msg.offset() + 1)
    return found


def ensure_topic(kafka: Kafka, name: str, partitions: int, config: dict[str, str] | None = None,
                 timeout: float = 15.0) -> bool:
    """Create ``name`` if it does not exist (with topic ``config``, e.g. compaction); True if created."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(kafka.client_conf())
    if name in admin.list_topics(timeout=timeout).topics:
        return False
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=-1,
                                            config=config or {})], request_timeout=timeout)
    try:
        futures[name].result()
    except KafkaException as exc:
        if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
            raise
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and name not in admin.list_topics(timeout=timeout).topics:
        time.sleep(0.2)
    return True


def bounded_run_offsets(kafka: Kafka) -> tuple[dict[int, int], dict[int, int] | None]:
    """Stop offsets for a bounded job run: what the frames topic holds now, and the watchlist
    topic's (None when there is no watchlist topic yet: the run goes without one)."""
    frames = scan_next_offsets(kafka, kafka.topics.frames)
    try:
        watchlist = scan_next_offsets(kafka, kafka.topics.watchlist, idle_timeout_s=1.5)
    except KafkaException:
        watchlist = None
    return frames, watchlist


class ReliablePublisher:
    """Keeps every record until the broker acknowledged it; a producer that stops getting
    acknowledgements for ``stall_s`` (e.g. a broker that came back without its producer state,
    as the in-memory dev broker does) is replaced and the unacknowledged records are sent
    again. At least once: a record may arrive twice, so consumers dedupe by its identity
    (camera + sequence for frames). ``on_ack(seconds)`` hears each first acknowledgement with
    the time since the record was sent, ``on_rotate()`` each producer restart (metrics)."""

    def __init__(self, kafka: Kafka, topic: str, stall_s: float = 20.0, max_rotations: int = 10,
                 policy: str = "keep-all", max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 label: str | None = None,
                 on_ack: Callable[[float], None] | None = None,
                 on_rotate: Callable[[], None] | None = None):
        self.kafka, self.topic = kafka, topic
        self.on_ack, self.on_rotate = on_ack, on_rotate
        self.sent_at: dict[object, float] = {}
        self.stall_s, self.max_rotations = stall_s, max_rotations
        self.pending: dict[object, tuple[bytes | None, bytes, int | None]] = {}
        self.next_offsets: dict[tuple[str, int], int] = {}
        self.acked = 0
        self.rotations = 0
        self.last_ack = time.monotonic()
        self.producer = reliable_producer(kafka)
        # overload policy: at most max_in_flight unacknowledged; see camflow/core/overload.py
        self.backlog = SendBacklog(policy, max_in_flight)
        self.label = label or topic
        self._dropped_reported = 0

    def _on_delivery(self, ident):
        def done(err, msg):
            if err is not None or ident not in self.pending:
                return  # failed (resent on rotation) or a duplicate ack after a resend
            del self.pending[ident]
            self.acked += 1
            self.last_ack = time.monotonic()
            sent = self.sent_at.pop(ident, None)
            if self.on_ack is not None and sent is not None:
                self.on_ack(self.last_ack - sent)
            _note_offset(self.next_offsets, msg)
        return done

    def send(self, ident, key: bytes | None, value: bytes, timestamp_ms: int | None) -> None:
        """Hand a record on under the overload policy: keep-all waits while ``max_in_flight``
        are unacknowledged, latest-only returns at once and may drop older waiting records."""
        displaced = self.backlog.offer(ident, (key, value, timestamp_ms))
        if displaced and (self._dropped_reported == 0
                          or self.backlog.dropped - self._dropped_reported >= 100):
            print(f"camflow ingest: {self.label}: broker behind ({len(self.pending)} unacknowledged); "
                  f"latest-only dropped {self.backlog.dropped} older unsent frames so far",
                  file=sys.stderr)
            self._dropped_reported = self.backlog.dropped
        self._dispatch(block=self.backlog.blocks)

    def _dispatch(self, block: bool) -> None:
        while True:
            for ident, (key, value, timestamp_ms) in self.backlog.take(len(self.pending)):
                self.pending[ident] = (key, value, timestamp_ms)
                self.sent_at[ident] = time.monotonic()
                produce_reliably(self.producer, self.topic, value, key, timestamp_ms,
                                 self._on_delivery(ident))
            if self.pending and time.monotonic() - self.last_ack > self.stall_s:
                self._rotate()
            if not (block and self.backlog.waiting):
                self.producer.poll(0)
                return
            self.producer.poll(0.1)  # wait for acknowledgements (keep-all: back-pressure)

    def _rotate(self) -> None:
        """A fresh producer (new producer id) re-sends everything not yet acknowledged."""
        if self.rotations >= self.max_rotations:
            raise RuntimeError(f"{self.topic}: {len(self.pending)} records unacknowledged after "
                               f"{self.rotations} producer restarts")
        self.rotations += 1
        if self.on_rotate is not None:
            self.on_rotate()
        self.producer.purge()
        self.producer.flush(0)
        self.producer = reliable_producer(self.kafka)
        self.last_ack = time.monotonic()
        for ident, (key, value, timestamp_ms) in list(self.pending.items()):
            produce_reliably(self.producer, self.topic, value, key, timestamp_ms, self._on_delivery(ident))

    def close(self, timeout_s: float = 120.0) -> None:
        """Returns once everything is acknowledged; raises if that takes over ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while (self.pending or self.backlog.waiting) and time.monotonic() < deadline:
            self._dispatch(block=False)
            self.producer.flush(min(1.0 if self.backlog.waiting else self.stall_s,
                                    max(0.1, deadline - time.monotonic())))
            if self.pending and time.monotonic() - self.last_ack > self.stall_s:
                self._rotate()
        if self.backlog.dropped > self._dropped_reported:
            print(f"camflow ingest: {self.label}: latest-only dropped {self.backlog.dropped} "
                  "older unsent frames in all", file=sys.stderr)
        if self.pending or self.backlog.waiting:
            raise RuntimeError(f"{self.topic}: {len(self.pending) + len(self.backlog.waiting)} "
                               f"records not acknowledged by the broker within {timeout_s:.0f}s")
