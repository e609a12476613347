"""Issue 16: records that fail downstream. One dead-letter builder with a payload cap (a
near-limit record made a dead letter too large to write, and the job failed on it forever); a
schema-registry outage is transient, not ``unknown_schema`` for every good frame; the sink
rejects a record its store refuses and goes on instead of stopping for good."""
from __future__ import annotations

import hashlib
import struct

import pytest

from camflow.schemas.codec import AvroCodec, SchemaError, SchemaRegistryUnavailable
from camflow.transforms.dead_letters import MAX_PAYLOAD_BYTES, dead_letter, redact


# --- dead letters ----------------------------------------------------------------------------
def test_a_near_limit_payload_makes_a_dead_letter_that_can_be_written():
    payload = bytes(range(256)) * (4 * 1024 * 1024 // 256)  # a 4 MiB inline frame record
    letter = dead_letter("oversize_frame", "too big", "admit", "frames", payload, "walkway",
                         time_ms=1)
    assert len(letter["payload"]) == MAX_PAYLOAD_BYTES
    assert letter["payload"] == payload[:MAX_PAYLOAD_BYTES]
    assert hashlib.sha256(payload).hexdigest() in letter["message"]
    assert str(len(payload)) in letter["message"]
    encoded = AvroCodec("DeadLetter").encode(letter)
    assert len(encoded) < 1024 * 1024  # Kafka's default max.message.bytes
    assert AvroCodec("DeadLetter").decode(encoded)["reason"] == "oversize_frame"


def test_dead_letter_text_is_bounded_encodable_and_redacted():
    letter = dead_letter("corrupt_jpeg", "ref rtsp://admin:s3cret@cam/x " + "m" * 100_000,
                         "analyse", "frames", b"small", "c" * 10_000 + "\udcff", time_ms=5)
    assert letter["payload"] == b"small"
    assert "s3cret" not in letter["message"] and "admin:***@cam" in letter["message"]
    assert len(letter["message"]) <= 2_000 and len(letter["camera_id"]) <= 256
    AvroCodec("DeadLetter").encode(letter)  # a lone surrogate would make this raise
    assert dead_letter("x", "y", "z", "t", None)["payload"] == b""


@pytest.mark.parametrize("text,secret", [
    ("rtsp://admin:hunter2@10.0.0.5:554/stream", "hunter2"),
    ("rtsp://admin:pa@ss@cam.local/x", "pa@ss"),
    ("postgresql://camflow:pg-secret@db:5432/camflow", "pg-secret"),
    ("https://reg-token@registry.local/subjects", "reg-token"),
    ("dsn: host=db password=libpq-secret user=x", "libpq-secret"),
    ('sasl.jaas.config=Module required username="u" password="a\\"b c";', 'a\\"b c'),
])
def test_redact_masks_credentials(text, secret):
    assert secret not in redact(text)


def test_redact_is_linear_on_hostile_text():
    import time

    started = time.process_time()
    for text in ("x" * 200_000, "a://" * 50_000, "password=" * 20_000):
        redact(text)
    assert time.process_time() - started < 5  # was quadratic: minutes


# --- schema registry: outage versus unknown id ------------------------------------------------
class FakeRegistry:
    def __init__(self, error: Exception):
        self.error, self.calls = error, 0

    def get_schema(self, schema_id):
        self.calls += 1
        raise self.error


def confluent_record(schema_id: int = 7) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + b"\x02"


def test_registry_outage_is_transient_not_unknown_schema():
    codec = AvroCodec("FrameSample", {"url": "http://registry.invalid:8081"})
    for error in (ConnectionRefusedError(111, "Connection refused"),
                  TimeoutError("read timed out"), OSError("network unreachable")):
        codec._client = FakeRegistry(error)
        with pytest.raises(SchemaRegistryUnavailable) as excinfo:
            codec.decode(confluent_record())
        assert not isinstance(excinfo.value, SchemaError)


def test_registry_server_errors_are_transient():
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    codec = AvroCodec("FrameSample", {"url": "http://registry.invalid:8081"})
    for status in (500, 503, 401, 403):
        codec._client = FakeRegistry(SchemaRegistryError(status, status * 100, "no"))
        with pytest.raises(SchemaRegistryUnavailable):
            codec.decode(confluent_record())


def test_an_id_the_registry_does_not_know_is_unknown_schema_and_remembered():
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    codec = AvroCodec("FrameSample", {"url": "http://registry.invalid:8081"})
    registry = codec._client = FakeRegistry(SchemaRegistryError(404, 40403, "Schema not found"))
    for _ in range(3):
        with pytest.raises(SchemaError) as excinfo:
            codec.decode(confluent_record(99))
        assert excinfo.value.reason == "unknown_schema"
    assert registry.calls == 1  # a flood of made-up ids is not a flood of registry requests


def test_schema_error_pickles():
    import pickle

    error = pickle.loads(pickle.dumps(SchemaError("unknown_schema", "id 9")))
    assert (error.reason, error.message) == ("unknown_schema", "id 9")


# --- the sink: a record the store refuses ------------------------------------------------------
class Message:
    def __init__(self, topic: str, offset: int, value: bytes):
        self._topic, self._offset, self._value = topic, offset, value

    def error(self):
        return None

    def topic(self):
        return self._topic

    def partition(self):
        return 0

    def offset(self):
        return self._offset

    def value(self):
        return self._value


def aggregate(camera: str, start: int, crossings: dict | None = None) -> dict:
    return {"camera_id": camera, "window_start_ms": start, "window_end_ms": start + 60_000,
            "frames": 3, "counts_by_class": {"person": 2}, "mean_by_class": {"person": 1.5},
            "unique_tracks": 2, "unique_tracks_by_class": {"person": 2}, "anomaly_score": None,
            "line_crossings": crossings or {}}


def test_sink_rejects_a_record_the_store_refuses_and_keeps_the_rest(tmp_path, capsys):
    from camflow.services.sink import SinkReport, write_batch
    from camflow.services.store import AnalystStore

    codec = AvroCodec("Aggregate")
    good = [aggregate("gate", 1_790_000_000_000 + i * 60_000) for i in range(3)]
    refused = aggregate("gate", 1_790_000_900_000, {"no colons in this key": 1})
    messages = [Message("aggregates", 0, codec.encode(good[0])),
                Message("aggregates", 1, codec.encode(refused)),
                Message("aggregates", 2, b"\x00garbage"),
                Message("aggregates", 3, codec.encode(good[1])),
                Message("aggregates", 4, codec.encode(good[2]))]
    store = AnalystStore(f"duckdb:///{tmp_path}/store.duckdb")
    report = SinkReport(written={"aggregates": 0})
    try:
        assert write_batch(store, messages, {"aggregates": (codec, "upsert_aggregate")},
                           report) == 5
        store.commit()
        assert report.written == {"aggregates": 3} and report.rejected == 2
        starts = {r[0] for r in store.query("SELECT window_start_ms FROM aggregates")}
        assert {g["window_start_ms"] for g in good} <= starts
        assert store.query("SELECT kafka_offset, reason FROM sink_rejects ORDER BY 1") == [
            (1, "store_refused"), (2, "unknown_schema")]
    finally:
        store.close()
    assert "store refused" in capsys.readouterr().err


def test_sink_store_refusal_classification():
    import psycopg

    from camflow.services.sink import store_refuses

    assert store_refuses(psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"))
    assert store_refuses(psycopg.errors.UniqueViolation("dup"))
    assert store_refuses(ValueError("year 60000 is out of range"))
    assert not store_refuses(psycopg.OperationalError("server closed the connection"))
    assert not store_refuses(psycopg.InterfaceError("connection already closed"))
    assert not store_refuses(psycopg.ProgrammingError("syntax error"))
    assert not store_refuses(OSError(5, "I/O"))


def test_sink_replays_the_batch_after_a_refused_record():
    """PostgreSQL aborts the transaction on the refused row: the batch's earlier rows are
    written again after the rollback, exactly once each."""
    import psycopg

    from camflow.services.sink import SinkReport, write_batch

    class PostgresLikeStore:
        def __init__(self):
            self.rows, self.pending, self.rejects = [], [], []

        def upsert_aggregate(self, record):
            if "\x00" in record["camera_id"]:
                raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
            self.pending.append(record["camera_id"])

        def reject(self, topic, partition, offset, reason, payload):
            self.pending.append(("reject", offset, reason))

        def rollback(self):
            self.pending = []

    codec = AvroCodec("Aggregate")
    messages = [Message("aggregates", i, codec.encode(aggregate(camera, i * 60_000)))
                for i, camera in enumerate(["a", "b", "nul\x00here", "c"])]
    store = PostgresLikeStore()
    report = SinkReport(written={"aggregates": 0})
    write_batch(store, messages, {"aggregates": (codec, "upsert_aggregate")}, report)
    assert store.pending == ["a", "b", ("reject", 2, "store_refused"), "c"]
    assert report.rejected == 1 and report.written == {"aggregates": 3}


def test_registry_errors_never_carry_its_credentials():
    codec = AvroCodec("FrameSample", {"url": "https://camflow:reg-s3cret@registry.local"})
    codec._client = FakeRegistry(ConnectionError(
        "GET https://camflow:reg-s3cret@registry.local/schemas/ids/7: connection refused"))
    with pytest.raises(SchemaRegistryUnavailable) as excinfo:
        codec.decode(confluent_record())
    assert "reg-s3cret" not in str(excinfo.value) and excinfo.value.__cause__ is None
