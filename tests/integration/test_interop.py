"""A consumer outside camflow reads every output topic: the job's real output wiring
(``camera_job.encoded`` + ``to_kafka``: the keyed Kafka sink) on Flink's mini-cluster writes
records of each output, and they are read back with kafka-python (its own implementation of
the Kafka protocol; camflow uses librdkafka and Flink's Java client) and decoded with the
Apache ``avro`` library from the ``.avsc`` files alone. Both wire formats: Avro single-object
encoding (no registry) and the Confluent wire format through a schema registry reached over
HTTPS with a test CA, a client certificate and basic auth, the contracts registered at deploy
time by ``camflow schemas register`` (FULL_TRANSITIVE) and the job's producers not
registering anything. The registry is ``fake_registry.FakeRegistry``: a small stand-in
speaking the Confluent REST API, because no real Schema Registry can run on these machines.
Keys: every record is keyed by its camera id, and a camera's records share one partition.
"""
from __future__ import annotations

import io
import json
import os
import struct
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.integration.fake_registry import FakeRegistry, make_pki

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
CAMERAS = ("pq-port-01", "pq-market-02", "pq-airport-03")
PER_CAMERA = 4
PARTITIONS = 3
PASSWORD_ENV = "CAMFLOW_TEST_REGISTRY_PASSWORD"
# output -> the .avsc its topic carries (camera_job.OUTPUTS names the contracts)
AVSC = {"analyses": "frame_analysis.avsc", "alerts": "alert.avsc", "aggregates": "aggregate.avsc",
        "dead_letters": "dead_letter.avsc", "sightings": "sighting.avsc",
        "face_embeddings": "face_embedding.avsc", "appearances": "appearance.avsc"}


def example(schema, path: str = ""):
    """A value of an Avro schema (JSON form), deterministic; records recurse."""
    if isinstance(schema, list):  # union: its first non-null branch
        return example(next(s for s in schema if s != "null"), path)
    if isinstance(schema, dict):
        kind = schema["type"]
        if kind == "record":
            return {f["name"]: example(f["type"], f["name"]) for f in schema["fields"]}
        if kind == "array":
            return [example(schema["items"], path)]
        if kind == "map":
            return {"k": example(schema["values"], path)}
        if schema.get("logicalType") == "timestamp-millis":
            return 1_764_000_000_000
        return example(kind, path)
    return {"string": f"{path}-value", "long": 7, "int": 3, "float": 0.5, "double": 0.25,
            "boolean": True, "bytes": b"\x01\x02", "null": None}[schema]


def records_of(output: str) -> list[dict]:
    """PER_CAMERA records of an output per camera, in order (``n`` in an id-like field), and
    for dead letters one more without a camera (no key)."""
    schema = json.loads((SCHEMAS / AVSC[output]).read_text())
    out = []
    for camera in CAMERAS:
        for n in range(PER_CAMERA):
            record = example(schema)
            record["camera_id"] = camera
            for field in ("sequence", "time_ms", "capture_ms", "window_start_ms", "first_seen_ms"):
                if field in record:
                    record[field] = 1_764_000_000_000 + n
            out.append(record)
    if output == "dead_letters":
        out.append({**example(schema), "camera_id": None})
    return out


def run_outputs(config) -> dict[str, list[dict]]:
    """The job's output wiring over in-memory records: encode, key and write each output."""
    from pyflink.common import Types

    from camflow.jobs import camera_job
    env = camera_job.make_env(config, parallelism=2)
    sent, streams = {}, {}
    for output, (contract, topic_field, _) in camera_job.OUTPUTS.items():
        sent[output] = rows = records_of(output)
        # keyed by camera, as every output of the job is: a camera's records, in order, in one
        # subtask of the encoder and the sink (the source and its map: one subtask, in order)
        stream = (env.from_collection(list(range(len(rows))), type_info=Types.INT())
                  .map(lambda i, rows=rows: rows[i], output_type=Types.PICKLED_BYTE_ARRAY())
                  .set_parallelism(1)
                  .key_by(lambda r: r["camera_id"] or "", key_type=Types.STRING()))
        streams[output] = camera_job.encoded(stream, contract, config,
                                             getattr(config.kafka.topics, topic_field), name=output)
    camera_job.to_kafka(streams, config)
    env.execute("interop")
    return sent


def read_with_kafka_python(bootstrap: str, topic: str, expect: int, timeout_s: float = 60.0):
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", client_id="interop-kafka-python")
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        found, deadline = [], time.monotonic() + timeout_s
        while len(found) < expect and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                found.extend(batch)
        return found
    finally:
        consumer.close()


def avro_schema(output: str):
    import avro.schema
    return avro.schema.parse((SCHEMAS / AVSC[output]).read_text())


def spec_fingerprint(schema) -> bytes:
    """CRC-64-AVRO of the schema's Parsing Canonical Form, as Avro's single-object encoding
    writes it (8 bytes, little-endian), by Apache avro. avro 1.12's ``canonical_form`` keeps a
    primitive with a logical type as ``{"type":"long"}``, where the specification's
    [PRIMITIVES] rule (and Java's SchemaNormalization) gives ``"long"``: fixed here first."""
    import re

    import avro.schema
    pcf = re.sub(r'\{"type":"(null|boolean|int|long|float|double|bytes|string)"\}', r'"\1"',
                 schema.canonical_form)
    return avro.schema._crc_64_fingerprint(pcf.encode())


def avro_body(schema, body: bytes) -> dict:
    import avro.io
    decoder = avro.io.BinaryDecoder(io.BytesIO(body))
    return avro.io.DatumReader(schema).read(decoder)


def topics_config(bootstrap: str, suffix: str, **kafka) -> dict:
    names = ("frames", "analyses", "alerts", "aggregates", "dead_letters", "watchlist",
             "watchlist_audit", "sightings", "face_embeddings", "appearances")
    return {"deployment": f"interop-{suffix}",
            "cameras": [{"id": c} for c in CAMERAS],
            "kafka": {"bootstrap_servers": bootstrap, "group_id": f"interop-{suffix}",
                      "topics": {**{n: f"{n.replace('_', '-')}-{suffix}" for n in names},
                                 "partitions": PARTITIONS}, **kafka},
            "notify": {"failures_topic": f"notify-failures-{suffix}"},
            "job": {"checkpoint_interval_ms": 2000}}


def check_topic(records, sent: list[dict], output: str, read_value) -> None:
    """Keys are camera ids, a camera's records are in one partition and in order, and every
    value decodes (``read_value``) to what was sent."""
    assert len(records) == len(sent), output
    partitions: dict[bytes | None, set[int]] = {}
    decoded = []
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        value = read_value(record.value)
        expected_key = value["camera_id"].encode() if value["camera_id"] else None
        assert record.key == expected_key, (output, record.key, value["camera_id"])
        partitions.setdefault(record.key, set()).add(record.partition)
        decoded.append((record.partition, record.offset, value))
    assert {k for k in partitions if k} == {c.encode() for c in CAMERAS}, output
    assert all(len(p) == 1 for key, p in partitions.items() if key), (output, partitions)
    for camera in CAMERAS:  # one partition, in the order the job emitted them
        mine = [v for _, _, v in decoded if v["camera_id"] == camera]
        assert mine == sorted(mine, key=lambda v: v.get("sequence", v.get("time_ms", v.get(
            "capture_ms", v.get("window_start_ms", v.get("first_seen_ms", 0)))))), output
    sent_ids = sorted(json.dumps(_plain(r), sort_keys=True, default=str) for r in sent)
    got_ids = sorted(json.dumps(_plain(v), sort_keys=True, default=str) for _, _, v in decoded)
    assert got_ids == sent_ids, output


def _plain(record: dict) -> dict:
    """Apache avro reads timestamp-millis as datetimes: compare in epoch milliseconds."""
    import datetime
    return {k: (int(v.timestamp() * 1000) if isinstance(v, datetime.datetime) else v)
            for k, v in record.items()}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    password = uuid.uuid4().hex
    os.environ[PASSWORD_ENV] = password
    fake = FakeRegistry(pki, "camflow", password)
    fake.start()
    yield fake, pki
    fake.stop()
    os.environ.pop(PASSWORD_ENV, None)


def test_single_object_records_of_every_output_read_outside_camflow(kafka_bootstrap, tmp_path):
    from camflow.config import Config
    from camflow.services.topics import apply
    config = Config.model_validate(topics_config(kafka_bootstrap, uuid.uuid4().hex[:8]))
    assert not [c.error for c in apply(config) if c.error]
    sent = run_outputs(config)
    for output, rows in sent.items():
        schema = avro_schema(output)
        fingerprint = spec_fingerprint(schema)  # of the .avsc's canonical form

        def read_value(data: bytes, schema=schema, fingerprint=fingerprint) -> dict:
            assert data[:2] == b"\xc3\x01", "Avro single-object marker"
            assert data[2:10] == fingerprint, "the .avsc's fingerprint"
            return avro_body(schema, data[10:])

        topic = getattr(config.kafka.topics, output)
        check_topic(read_with_kafka_python(kafka_bootstrap, topic, len(rows)), rows, output, read_value)


def test_registry_records_of_every_output_read_outside_camflow(kafka_bootstrap, registry, tmp_path):
    from camflow.commands import main
    from camflow.config import Config
    from camflow.services.topics import apply
    fake, pki = registry
    suffix = uuid.uuid4().hex[:8]
    raw = topics_config(kafka_bootstrap, suffix, schema_registry_url=fake.url, schema_registry={
        "ssl_ca_location": str(pki["ca.pem"]), "ssl_certificate_location": str(pki["client.pem"]),
        "ssl_key_location": str(pki["client.key"]), "username": "camflow",
        "password_env": PASSWORD_ENV})
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = Config.model_validate(raw)
    assert not [c.error for c in apply(config) if c.error]

    # Nothing registered yet: the check fails, and so does building the job (not a record).
    assert main(["schemas", "check", "--config", str(path)]) == 1
    with pytest.raises(RuntimeError, match="schemas register"):
        run_outputs(config)
    # Deploy time: FULL_TRANSITIVE on every subject, then the contracts registered.
    assert main(["schemas", "register", "--config", str(path)]) == 0
    assert main(["schemas", "check", "--config", str(path)]) == 0
    subjects = {f"{getattr(config.kafka.topics, kind)}-value" for kind in
                ("frames", "analyses", "alerts", "aggregates", "dead_letters", "watchlist",
                 "watchlist_audit", "sightings", "face_embeddings", "appearances")}
    assert subjects <= set(fake.subjects) and all(fake.levels[s] == "FULL_TRANSITIVE" for s in subjects)
    registrations = [r for r in fake.requests if r[0] == "POST" and r[1].endswith("/versions")
                     and r[1].startswith("/subjects/")]

    sent = run_outputs(config)
    assert [r for r in fake.requests if r[0] == "POST" and r[1].endswith("/versions")
            and r[1].startswith("/subjects/")] == registrations, "the job registered a schema"
    assert fake.refused == 0
    for output, rows in sent.items():
        schema = avro_schema(output)
        subject = f"{getattr(config.kafka.topics, output)}-value"

        def read_value(data: bytes, schema=schema, subject=subject) -> dict:
            assert data[:1] == b"\x00", "Confluent magic byte"
            schema_id = struct.unpack(">I", data[1:5])[0]
            assert schema_id in fake.subjects[subject], "an id registered under <topic>-value"
            return avro_body(schema, data[5:])

        topic = getattr(config.kafka.topics, output)
        check_topic(read_with_kafka_python(kafka_bootstrap, topic, len(rows)), rows, output, read_value)


def test_an_incompatible_contract_fails_at_deploy_time(registry, tmp_path):
    """A subject holding a version the current contract cannot be FULL_TRANSITIVE-compatible
    with: ``schemas register`` refuses (exit 1) and registers nothing there."""
    import copy

    from camflow.commands import main
    from camflow.schemas.codec import schema_json
    fake, pki = registry
    suffix = uuid.uuid4().hex[:8]
    raw = topics_config("127.0.0.1:1", suffix, schema_registry_url=fake.url, schema_registry={
        "ssl_ca_location": str(pki["ca.pem"]), "ssl_certificate_location": str(pki["client.pem"]),
        "ssl_key_location": str(pki["client.key"]), "username": "camflow",
        "password_env": PASSWORD_ENV})
    path = tmp_path / "incompatible.yaml"
    path.write_text(yaml.safe_dump(raw))
    old = copy.deepcopy(schema_json("Alert"))  # a version with a field the current one lacks,
    old["fields"].append({"name": "zone_code", "type": "string"})  # and no default
    subject = f"alerts-{suffix}-value"
    fake.subjects[subject] = []
    fake.register(subject, json.dumps(old))
    fake.levels[subject] = "FULL_TRANSITIVE"
    assert main(["schemas", "register", "--config", str(path)]) == 1
    assert len(fake.subjects[subject]) == 1  # only the old version
    assert main(["schemas", "check", "--config", str(path)]) == 1


def test_a_registry_without_the_credentials_refuses(registry, tmp_path, monkeypatch):
    from camflow.commands import main
    fake, pki = registry
    raw = topics_config("127.0.0.1:1", uuid.uuid4().hex[:8], schema_registry_url=fake.url,
                        schema_registry={"ssl_ca_location": str(pki["ca.pem"]),
                                         "ssl_certificate_location": str(pki["client.pem"]),
                                         "ssl_key_location": str(pki["client.key"]),
                                         "username": "camflow", "password_env": "CAMFLOW_TEST_WRONG"})
    monkeypatch.setenv("CAMFLOW_TEST_WRONG", "not-the-password")
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump(raw))
    refused = fake.refused
    with pytest.raises(Exception, match="401|Unauthorized"):
        main(["schemas", "check", "--config", str(path)])
    assert fake.refused > refused
