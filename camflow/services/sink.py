"""``camflow sink``: Kafka topics -> analyst store, at least once, idempotent.

Offsets are committed to Kafka only after the rows are committed to the store, and every
write is an upsert on the record's key, so a crash between the two re-delivers records that
overwrite themselves: the store ends with exactly one row per alert, window and frame.
Records that cannot be decoded, and records the store refuses (a value it cannot hold: a NUL
in text on PostgreSQL, a time out of range), are kept in ``sink_rejects`` with their bytes,
never dropped, and the sink goes on; a store or broker that does not answer stops the sink
with the batch uncommitted, so a restart writes it again (``store_refuses`` tells them apart).
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException

from camflow.schemas.codec import AvroCodec, SchemaError

from camflow.services import metrics
from camflow.config import Config
from camflow.core.evidence_store import configured_evidence
from camflow.core.frame_store import configured_store
from camflow.services.store import AnalystStore


@dataclass
class SinkReport:
    written: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    expired_embeddings: int = 0  # unmatched face embeddings deleted by the retention
    expired: dict[str, int] = field(default_factory=dict)  # every kind deleted by retention
    clips: int = 0  # alert clips made (config.evidence with a frame store)
    seconds: float = 0.0


RETENTION_EVERY_S = 60.0
JOIN_GRACE_S = 30.0  # longest wait for the consumer group's assignment before idle counts
LAG_EVERY_S = 5.0
# The store table each record kind is upserted into (its main table), for the metrics.
TABLE_OF = {"upsert_alert": "alerts", "upsert_aggregate": "aggregates",
            "upsert_analysis": "frame_analyses", "upsert_sighting": "sightings",
            "insert_watchlist_change": "watchlist_audit", "upsert_face_embedding": "face_embeddings",
            "upsert_appearance": "appearances"}


# DB-API exception classes that mean "the database refused these values", whatever the driver
# (psycopg, duckdb): the record's fault. OperationalError, InterfaceError (connection lost,
# server gone), InternalError and ProgrammingError (our SQL) are not.
_REFUSED_BY_DATABASE = frozenset({"DataError", "IntegrityError"})


def store_refuses(exc: BaseException) -> bool:
    """Whether ``exc`` from a store upsert is the record's fault (reject it and go on) rather
    than the store's (stop, write the batch again after a restart)."""
    if isinstance(exc, OSError):
        return False
    if isinstance(exc, (ValueError, TypeError, KeyError, OverflowError)):
        return True  # the upsert could not turn the record's values into a row
    return any(cls.__name__ in _REFUSED_BY_DATABASE for cls in type(exc).__mro__)


def write_batch(store: AnalystStore, messages, handlers: dict, report: SinkReport,
                alerts: list | None = None) -> int:
    """Upsert one batch of consumed messages into the open transaction; returns how many
    records it held (the caller commits the store, then the offsets). The alert records
    written are appended to ``alerts`` when given (the clip maker's input).

    A record the store refuses aborts the transaction (PostgreSQL and DuckDB both), so the
    batch's earlier writes are rolled back and done again, and the record goes to
    ``sink_rejects`` (reason ``store_refused``) instead of stopping the sink for good."""
    done: list = []  # every write of this batch, in order, to redo after a rollback
    processed = 0
    for msg in messages:
        if msg.error():
            # A topic nobody has written yet (e.g. sightings before the first match).
            if msg.error().code() in (KafkaError._PARTITION_EOF,
                                      KafkaError.UNKNOWN_TOPIC_OR_PART):
                continue
            metrics.SINK_ERRORS.labels("kafka").inc()
            raise KafkaException(msg.error())
        processed += 1
        metrics.RECORDS_CONSUMED.labels(msg.topic()).inc()
        codec, method = handlers[msg.topic()]
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        try:
            record = codec.decode(msg.value())
        except SchemaError as exc:
            _reject(store, msg, exc.reason, f"{where}: {exc}", done, report)
            continue
        write = (lambda m, r: lambda: getattr(store, m)(r))(method, record)
        try:
            write()
        except Exception as exc:  # noqa: BLE001 -- sorted: the record's fault, or the store's
            if not store_refuses(exc):
                raise
            try:
                store.rollback()
            except Exception:  # noqa: BLE001 -- no transaction (DuckDB autocommits each
                pass           # statement): the batch's earlier writes stand, nothing to redo
            else:
                for redo in done:
                    redo()
            _reject(store, msg, "store_refused",
                    f"{where}: the store refused it: {type(exc).__name__}: {exc}", done, report)
            continue
        done.append(write)
        if alerts is not None and method == "upsert_alert":
            alerts.append(record)
        report.written[msg.topic()] += 1
        metrics.ROWS_WRITTEN.labels(TABLE_OF[method]).inc()
    return processed


def _reject(store: AnalystStore, msg, reason: str, message: str, done: list,
            report: SinkReport) -> None:
    from camflow.transforms.dead_letters import redact

    metrics.SINK_ERRORS.labels("rejected").inc()
    print(f"camflow sink: {redact(message)[:2000]}", file=sys.stderr)
    reject = (lambda: store.reject(msg.topic(), msg.partition(), msg.offset(), reason,
                                   msg.value()))
    reject()
    done.append(reject)
    report.rejected += 1


def update_lag(consumer: Consumer) -> None:
    """Consumer lag per assigned partition from the end offsets the broker last reported with
    its fetch responses (no extra request; Tansu's are wrong after batched writes)."""
    assigned = consumer.assignment()
    for tp in consumer.position(assigned) if assigned else []:
        _, end = consumer.get_watermark_offsets(tp, cached=True)
        if end >= 0 and tp.offset >= 0:
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, end - tp.offset))


def _clip_maker(config: Config, evidence, store: AnalystStore):
    """The clip maker when the config has an evidence store and a frame store, else None."""
    frames = configured_store(config)
    if evidence is None or frames is None:
        return None
    from camflow.services.clips import ClipMaker  # PyAV loads only where clips are made
    return ClipMaker(config.evidence, frames, evidence, store)


def run_sink(config: Config, store_url: str | None = None, idle_exit_s: float | None = None,
             max_seconds: float | None = None, batch_size: int = 500,
             topics: tuple[str, ...] = ("alerts", "aggregates", "analyses", "sightings",
                                        "watchlist_audit", "face_embeddings",
                                        "appearances")) -> SinkReport:
    """Consume until stopped (or idle for ``idle_exit_s``); returns what was written.

    Also enforces the retention of face embeddings: unmatched faces captured more than
    ``store.embedding_retention_days`` ago are deleted at start and then at most once per
    ``RETENTION_EVERY_S`` while running (with every other kind of ``store.retention``, and
    the evidence store's snapshots and clips past ``evidence.retention_days``). With an
    evidence store and a frame store, alerts get clips (camflow/services/clips.py)."""
    kafka = config.kafka
    registry = kafka.registry_conf()
    # kind -> (topic, contract, store method)
    routes = {
        "alerts": (kafka.topics.alerts, "Alert", "upsert_alert"),
        "aggregates": (kafka.topics.aggregates, "Aggregate", "upsert_aggregate"),
        "analyses": (kafka.topics.analyses, "FrameAnalysis", "upsert_analysis"),
        "sightings": (kafka.topics.sightings, "Sighting", "upsert_sighting"),
        "watchlist_audit": (kafka.topics.watchlist_audit, "WatchlistEntry", "insert_watchlist_change"),
        "face_embeddings": (kafka.topics.face_embeddings, "FaceEmbedding", "upsert_face_embedding"),
        "appearances": (kafka.topics.appearances, "Appearance", "upsert_appearance"),
    }
    handlers = {topic: (AvroCodec(contract, registry, subject=f"{topic}-value"), method)
                for kind, (topic, contract, method) in routes.items() if kind in topics}
    store = AnalystStore.of(config.store, store_url)
    evidence = configured_evidence(config)  # snapshots and clips: pruned by the retention pass
    clips = _clip_maker(config, evidence, store)
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
    last_retention = last_lag = None
    assigned = False
    stopping = []
    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a service manager, a test harness) ends the sink after the batch in hand
        # is written and its offsets committed, not in the middle of it.
        previous_handler = signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        while not stopping:
            now = time.monotonic()
            if last_retention is None or now - last_retention >= RETENTION_EVERY_S:
                for kind, rows in store.delete_expired(
                        config.store.retention, config.store.embedding_retention_days).items():
                    report.expired[kind] = report.expired.get(kind, 0) + rows
                report.expired_embeddings = report.expired.get("unmatched_embeddings", 0)
                if evidence is not None:
                    report.expired["evidence_objects"] = report.expired.get(
                        "evidence_objects", 0) + evidence.prune(config.evidence.retention_days)
                last_retention = now
            if max_seconds is not None and now - started > max_seconds:
                break
            if not assigned:
                # Idle counts from the group join on (Tansu takes seconds to join a group): a
                # short idle_exit_s must not end the sink before it was given its partitions.
                assigned = bool(consumer.assignment())
                if not assigned and now - started < JOIN_GRACE_S:
                    last_record = now
            if idle_exit_s is not None and now - last_record > idle_exit_s:
                break
            messages = consumer.consume(batch_size, timeout=0.5)
            batch_started = time.perf_counter()
            alerts: list[dict] = []
            processed = write_batch(store, messages, handlers, report, alerts)
            if processed:
                last_record = time.monotonic()
                store.commit()
                consumer.commit(asynchronous=False)
                metrics.BATCH_LATENCY.observe(time.perf_counter() - batch_started)
            if clips is not None:
                # After the commit: a clip is linked to a row that exists. poll() returns at
                # once unless clips are due (their frames in, or their wait over).
                for alert in alerts:
                    clips.offer(alert)
                clips.poll()
                report.clips = clips.made
            if last_lag is None or time.monotonic() - last_lag >= LAG_EVERY_S:
                update_lag(consumer)
                last_lag = time.monotonic()
        if clips is not None and not stopping:
            # Idle or time limit: the clips still waiting are made from the frames there
            # (not on SIGTERM, which asks for a prompt stop).
            clips.flush()
            report.clips = clips.made
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        consumer.close()
        store.close()
        report.seconds = time.monotonic() - started
    return report
