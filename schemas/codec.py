"""Avro encoding of camflow's contracts.

Two wire formats, chosen by configuration:
- no schema registry configured: Avro single-object encoding (``C3 01`` + 8-byte CRC-64-AVRO
  fingerprint, little-endian, + body). Readers resolve the writer schema from the fingerprint
  among the contract versions shipped in ``schemas/history``.
- a schema registry URL configured: the Confluent wire format (``00`` + 4-byte big-endian
  schema id + body), written and read by Confluent's ``AvroSerializer`` / ``AvroDeserializer``
  under the subject ``<topic>-value``. In production the schemas are registered at deploy time
  (``camflow schemas register``, FULL_TRANSITIVE) and producers only look their id up
  (``auto.register.schemas`` off): a producer whose schema is not registered, or not
  compatible, fails when it starts, not a running job on a record.

Registry settings (``registry_conf``): the client's own (``url``, ``ssl.ca.location``,
``ssl.certificate.location``, ``ssl.key.location``, ``basic.auth.user.info``) plus camflow's,
read where the client is opened, so that no secret travels in a job graph:
``camflow.auto.register.schemas`` ("true"/"false"; default true, the serializer's own default),
``camflow.basic.auth.user`` with ``camflow.basic.auth.password.env`` or ``...password.file``.

Either way the reader schema is the current contract and Avro schema resolution bridges the
versions (see schemas/README.md for the compatibility rule).
"""
from __future__ import annotations

import io
import json
import os
import re
import struct
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
# camflow's own registry settings (see the module docstring), removed before the client sees them.
AUTO_REGISTER = "camflow.auto.register.schemas"
AUTH_USER = "camflow.basic.auth.user"
AUTH_PASSWORD_ENV = "camflow.basic.auth.password.env"
AUTH_PASSWORD_FILE = "camflow.basic.auth.password.file"
CONFLUENT_MAGIC = b"\x00"

# Contract name -> file of its current version.
CONTRACTS = {
    "FrameSample": "frame_sample.avsc",
    "FrameAnalysis": "frame_analysis.avsc",
    "Alert": "alert.avsc",
    "Aggregate": "aggregate.avsc",
    "DeadLetter": "dead_letter.avsc",
    "WatchlistEntry": "watchlist_entry.avsc",
    "Sighting": "sighting.avsc",
    "FaceEmbedding": "face_embedding.avsc",
    "Appearance": "appearance.avsc",
}


class SchemaError(ValueError):
    """A record that cannot be read as the expected contract; ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self):
        return (type(self), (self.reason, self.message))


class SchemaRegistryUnavailable(RuntimeError):
    """The schema registry could not answer (unreachable, timeout, 5xx, refused credentials):
    transient, so NOT a ``SchemaError`` -- the caller must not dead-letter the record but fail
    (the task restarts and reads it again), or the registry's outage would dead-letter every
    good record as ``unknown_schema``."""


# Schema ids the registry said it does not know, remembered (bounded) so that a flood of
# records with made-up ids does not become a flood of registry requests.
_MAX_UNKNOWN_IDS = 1024


# A registry URL may carry credentials (https://user:password@registry): never in a message.
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]{0,31}://)[^\s/'\"<>]{1,512}@")


def _safe(exc: Exception) -> str:
    return _URL_CREDENTIALS.sub(r"\1***@", f"{type(exc).__name__}: {exc}")[:500]


def _registry_says_unknown(exc: Exception) -> bool:
    """The registry answered that the id does not exist (HTTP 404: SR codes 40401/40403)."""
    return getattr(exc, "http_status_code", None) == 404


def registry_client_conf(registry_conf: dict[str, Any]) -> dict[str, Any]:
    """The schema registry client's settings from camflow's: the basic-auth password read now
    from its environment variable or file (``RuntimeError`` naming it when missing)."""
    conf = {k: v for k, v in registry_conf.items() if not k.startswith("camflow.")}
    user = registry_conf.get(AUTH_USER)
    if user:
        password = None
        if registry_conf.get(AUTH_PASSWORD_ENV):
            password = os.environ.get(registry_conf[AUTH_PASSWORD_ENV])
            if password is None:
                raise RuntimeError(f"environment variable {registry_conf[AUTH_PASSWORD_ENV]} "
                                   "(schema registry password) is not set")
        elif registry_conf.get(AUTH_PASSWORD_FILE):
            password = Path(registry_conf[AUTH_PASSWORD_FILE]).read_text().strip()
        if password is None:
            raise RuntimeError("schema registry user set without password_env or password_file")
        conf["basic.auth.user.info"] = f"{user}:{password}"
    return conf


def open_registry(registry_conf: dict[str, Any]):
    """A schema registry client (``mock://`` URLs: the client's in-memory registry)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    return SchemaRegistryClient.new_client(registry_client_conf(registry_conf))


def _read_json(name: str) -> dict:
    return json.loads(resources.files(__package__).joinpath(name).read_text())


@lru_cache(maxsize=None)
def schema_json(contract: str) -> dict:
    """The current version of a contract as JSON."""
    return _read_json(CONTRACTS[contract])


@lru_cache(maxsize=None)
def parsed_schema(contract: str) -> dict:
    return parse_schema(schema_json(contract))


def schema_fingerprint(schema: dict) -> bytes:
    """CRC-64-AVRO fingerprint of a parsed schema, as the 8 little-endian bytes Avro specifies."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


@lru_cache(maxsize=None)
def current_fingerprint(contract: str) -> bytes:
    """The current version's fingerprint, once: pure-Python CRC-64 over the canonical form
    costs about as much as encoding a whole frame record."""
    return schema_fingerprint(parsed_schema(contract))


@lru_cache(maxsize=None)
def known_writer_schemas(contract: str) -> dict[bytes, dict]:
    """Every known version of a contract, by fingerprint: the current one, the shipped
    ``history/<Name>.v*.avsc``, and any in the folders of ``CAMFLOW_SCHEMA_PATH`` (so that a
    deployed reader can learn a newer writer version without a code change)."""
    found = {schema_fingerprint(parsed_schema(contract)): parsed_schema(contract)}
    folders = [resources.files(__package__).joinpath("history")]
    folders += [Path(p) for p in os.environ.get("CAMFLOW_SCHEMA_PATH", "").split(os.pathsep) if p]
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.name.startswith(f"{contract}.v") and entry.name.endswith(".avsc"):
                schema = parse_schema(json.loads(entry.read_text()))
                found[schema_fingerprint(schema)] = schema
    return found


class AvroCodec:
    """Encodes and decodes one contract. Picklable: the registry client is opened lazily."""

    def __init__(self, contract: str, registry_conf: dict[str, Any] | None = None,
                 subject: str | None = None):
        if contract not in CONTRACTS:
            raise KeyError(f"unknown contract {contract!r}; known: {sorted(CONTRACTS)}")
        self.contract = contract
        self.registry_conf = dict(registry_conf or {}) or None
        self.subject = subject or f"{contract}-value"
        self.auto_register = str((self.registry_conf or {}).get(AUTO_REGISTER, "true")).lower() == "true"
        self._client = None
        self._serializer = None
        self._deserializer = None
        self._writers_by_id: dict[int, dict] = {}
        self._unknown_ids: dict[int, str] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_client"] = state["_serializer"] = state["_deserializer"] = None
        return state

    @property
    def schema(self) -> dict:
        return parsed_schema(self.contract)

    # -- writing --------------------------------------------------------------------------
    def encode(self, record: dict) -> bytes:
        if self.registry_conf:
            return self._confluent_serializer()(record, None)
        body = io.BytesIO()
        fastavro.schemaless_writer(body, self.schema, record)
        return SINGLE_OBJECT_MAGIC + current_fingerprint(self.contract) + body.getvalue()

    def _registry(self):
        if self._client is None:
            self._client = open_registry(self.registry_conf)
        return self._client

    def _confluent_serializer(self):
        """Confluent's ``AvroSerializer`` for this contract under ``self.subject``: registers the
        schema there on first use when ``auto_register``, else only looks its id up (and fails,
        ``SchemaRegistryError``, when it is not registered)."""
        if self._serializer is None:
            from confluent_kafka.schema_registry.avro import AvroSerializer
            subject = self.subject
            self._serializer = AvroSerializer(
                self._registry(), json.dumps(schema_json(self.contract)),
                conf={"auto.register.schemas": self.auto_register, "use.latest.version": False,
                      "subject.name.strategy": lambda ctx, record_name: subject})
        return self._serializer

    def _schema_id(self) -> int:
        """The id of the current contract under ``self.subject`` (registered first when
        ``auto_register``), as the serializer writes it."""
        serializer = self._confluent_serializer()
        if serializer._schema_id is not None and serializer._schema_id.id is not None:
            return serializer._schema_id.id
        if self.auto_register:
            return self._registry().register_schema(self.subject, serializer._schema)
        return self._registry().lookup_schema(self.subject, serializer._schema).schema_id

    # -- reading --------------------------------------------------------------------------
    def decode(self, data: bytes) -> dict:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise SchemaError("malformed_record", f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        if data.startswith(SINGLE_OBJECT_MAGIC) and len(data) >= 10:
            writer = known_writer_schemas(self.contract).get(data[2:10])
            if writer is None:
                raise SchemaError("unknown_schema", f"fingerprint {data[2:10].hex()} is no known "
                                  f"version of {self.contract}")
            return self._read_body(data[10:], writer)
        if data.startswith(CONFLUENT_MAGIC) and len(data) >= 5:
            if not self.registry_conf:
                raise SchemaError("unknown_schema", "Confluent-framed record but no schema "
                                  "registry is configured")
            self._writer_by_id(struct.unpack(">I", data[1:5])[0])  # unknown or not this contract
            return self._read_confluent(data)
        raise SchemaError("unknown_encoding", f"not an Avro single-object or Confluent record "
                          f"(first bytes {data[:4].hex() or 'empty'})")

    def _writer_by_id(self, schema_id: int) -> dict:
        """The writer schema registered under ``schema_id``.

        ``SchemaError("unknown_schema")`` when the registry answers that it has no such id, or
        the schema is not a version of this contract (the record's fault: a dead letter);
        ``SchemaRegistryUnavailable`` when it does not answer (transient: never a dead letter)."""
        if schema_id in self._unknown_ids:
            raise SchemaError("unknown_schema", self._unknown_ids[schema_id])
        if schema_id not in self._writers_by_id:
            try:
                registered = self._registry().get_schema(schema_id)
            except Exception as exc:  # noqa: BLE001 -- sorted: unknown id, or no answer
                if _registry_says_unknown(exc):
                    self._unknown(schema_id, f"schema id {schema_id}: {_safe(exc)}")
                raise SchemaRegistryUnavailable(
                    f"schema registry did not answer for schema id {schema_id}: "
                    f"{_safe(exc)}") from None
            try:
                writer = parse_schema(json.loads(registered.schema_str))
            except Exception as exc:  # noqa: BLE001 -- a registered schema that is not Avro
                self._unknown(schema_id, f"schema id {schema_id} is no Avro schema: {_safe(exc)}")
            if not isinstance(writer, dict) or writer.get("name") != self.schema.get("name"):
                name = writer.get("name") if isinstance(writer, dict) else type(writer).__name__
                self._unknown(schema_id, f"schema id {schema_id} is {name}, not "
                              f"{self.schema.get('name')}")
            self._writers_by_id[schema_id] = writer
        return self._writers_by_id[schema_id]

    def _unknown(self, schema_id: int, message: str):
        if len(self._unknown_ids) >= _MAX_UNKNOWN_IDS:
            self._unknown_ids.pop(next(iter(self._unknown_ids)))
        self._unknown_ids[schema_id] = message
        raise SchemaError("unknown_schema", message)

    def _read_confluent(self, data: bytes) -> dict:
        """Confluent's ``AvroDeserializer``: the writer schema by the record's id, resolved to
        the current contract."""
        if self._deserializer is None:
            from confluent_kafka.schema_registry.avro import AvroDeserializer
            self._deserializer = AvroDeserializer(self._registry(),
                                                  json.dumps(schema_json(self.contract)))
        try:
            record = self._deserializer(data, None)
        except Exception as exc:  # truncated or garbage body: fastavro raises many types
            raise SchemaError("malformed_record", f"cannot read {self.contract}: "
                              f"{_safe(exc)}") from None
        return _epoch_ms(record)

    def _read_body(self, body: bytes, writer: dict) -> dict:
        stream = io.BytesIO(body)
        try:
            record = fastavro.schemaless_reader(stream, writer, self.schema)
        except Exception as exc:  # truncated or garbage body: fastavro raises many types
            raise SchemaError("malformed_record", f"cannot read {self.contract}: "
                              f"{type(exc).__name__}: {exc}") from exc
        if stream.tell() != len(body):
            raise SchemaError("malformed_record", f"{len(body) - stream.tell()} trailing bytes "
                              f"after a {self.contract} record")
        return _epoch_ms(record)


def _epoch_ms(record: dict) -> dict:
    """fastavro turns timestamp-millis into datetimes; the job works in epoch milliseconds."""
    for key, value in record.items():
        if isinstance(value, datetime):
            record[key] = int(value.timestamp() * 1000)
    return record
