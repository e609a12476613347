"""``camflow schemas register|check``: the contracts in the schema registry, at deploy time.

Every topic's subject is ``<topic>-value`` (the serializers' topic name strategy) and holds
its contract (``SUBJECTS``). ``register`` sets each subject's compatibility level to
FULL_TRANSITIVE (here, in code, not by hand), has the registry test the current contract
against every version it holds, and registers it; ``check`` changes nothing and says, per
subject, whether the level is FULL_TRANSITIVE, whether the current contract is compatible and
whether it is registered (its id). Producers run with ``auto.register.schemas`` off, so a
contract that is not registered stops a producer when it starts, never a running job on a
record.

Both also check the rule locally, with the Apache ``avro`` library's reader/writer checker:
the current ``.avsc`` must read every shipped version (``schemas/history``) and be readable by
each. The client's in-memory registry (``mock://`` URLs, for tests) registers and looks up but
has no compatibility levels or checks: there only the local check runs, and the result says so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from camflow.config import Config
from camflow.schemas.codec import CONTRACTS, open_registry, schema_json

RULE = "FULL_TRANSITIVE"
# Topic (a kafka.topics field) -> the contract its records carry.
SUBJECTS = {"frames": "FrameSample", "analyses": "FrameAnalysis", "alerts": "Alert",
            "aggregates": "Aggregate", "dead_letters": "DeadLetter", "watchlist": "WatchlistEntry",
            "watchlist_audit": "WatchlistEntry", "sightings": "Sighting",
            "face_embeddings": "FaceEmbedding", "appearances": "Appearance"}


class RegistryNotConfigured(ValueError):
    """No ``kafka.schema_registry_url``: nothing to register (a config error)."""


@dataclass
class SubjectResult:
    subject: str
    contract: str
    schema_id: int | None = None
    level: str | None = None
    compatible: bool | None = None  # None: the registry could not tell (in-memory registry)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"subject": self.subject, "contract": self.contract, "id": self.schema_id,
                "level": self.level, "compatible": self.compatible, "ok": self.ok,
                "problems": self.problems, "notes": self.notes}


def subjects(config: Config) -> list[tuple[str, str]]:
    """(subject, contract) of every topic of the deployment."""
    topics = config.kafka.topics
    return [(f"{getattr(topics, kind)}-value", contract) for kind, contract in SUBJECTS.items()]


def local_problems(contract: str) -> list[str]:
    """The FULL_TRANSITIVE rule over the shipped versions, checked by Apache avro: the current
    contract reads each shipped version, and each reads the current one."""
    import avro.schema
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
    from importlib import resources

    current = avro.schema.parse(json.dumps(schema_json(contract)))
    checker = ReaderWriterCompatibilityChecker()
    problems = []
    history = resources.files("camflow.schemas").joinpath("history")
    for entry in sorted(history.iterdir(), key=lambda e: e.name):
        if not (entry.name.startswith(f"{contract}.v") and entry.name.endswith(".avsc")):
            continue
        old = avro.schema.parse(entry.read_text())
        for reader, writer, how in ((current, old, f"cannot read {entry.name}"),
                                    (old, current, f"{entry.name} readers cannot read it")):
            result = checker.get_compatibility(reader, writer)
            if result.compatibility is not SchemaCompatibilityType.compatible:
                problems.append(f"{contract}: {how}: {'; '.join(result.messages)[:300]}")
    return problems


def _is_in_memory(client) -> bool:
    from confluent_kafka.schema_registry._sync.mock_schema_registry_client import \
        MockSchemaRegistryClient
    return isinstance(client, MockSchemaRegistryClient)


def _status(exc) -> tuple[int | None, int | None]:
    return getattr(exc, "http_status_code", None), getattr(exc, "error_code", None)


def run(config: Config, write: bool, client=None) -> list[SubjectResult]:
    """``write``: register (set the level, test, register); else only check."""
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    conf = config.kafka.registry_conf()
    if not conf:
        raise RegistryNotConfigured("kafka.schema_registry_url is not set: the topics use "
                                    "Avro single-object encoding, no registry")
    client = client or open_registry(conf)
    in_memory = _is_in_memory(client)
    results = []
    local = {contract: local_problems(contract) for contract in CONTRACTS}
    for subject, contract in subjects(config):
        result = SubjectResult(subject, contract)
        results.append(result)
        result.problems += local[contract]
        schema = Schema(json.dumps(schema_json(contract)), "AVRO")
        if in_memory:
            result.notes.append("in-memory registry (mock://): no compatibility levels or "
                                "checks there; the rule was checked locally only")
        else:
            if write:
                client.set_compatibility(subject_name=subject, level=RULE)
            try:
                result.level = client.get_compatibility(subject)
            except SchemaRegistryError as exc:
                if _status(exc)[0] != 404:
                    raise
            if result.level != RULE:
                result.problems.append(f"compatibility level is {result.level or 'not set'}, "
                                       f"not {RULE}: run camflow schemas register")
            try:
                result.compatible = bool(client.test_compatibility_all_versions(subject, schema))
            except SchemaRegistryError as exc:
                if _status(exc)[0] != 404:  # a subject with no versions yet: nothing to break
                    raise
                result.compatible = True
            if not result.compatible:
                result.problems.append(f"the registry says {contract} is not {RULE}-compatible "
                                       f"with the versions under {subject}")
        if write and result.ok:
            result.schema_id = client.register_schema(subject, schema)
            continue
        try:
            result.schema_id = client.lookup_schema(subject, schema).schema_id
        except SchemaRegistryError as exc:
            if _status(exc)[0] != 404:
                raise
            if not write:
                result.problems.append(f"{contract} is not registered under {subject}: "
                                       "run camflow schemas register")
    return results


def format_results(results: list[SubjectResult]) -> list[str]:
    width = max([7] + [len(r.subject) for r in results])
    lines = [f"{'SUBJECT':<{width}}  {'CONTRACT':<14} {'ID':>5}  {'LEVEL':<16} RESULT"]
    for r in results:
        schema_id = "-" if r.schema_id is None else r.schema_id
        lines.append(f"{r.subject:<{width}}  {r.contract:<14} {schema_id:>5}  "
                     f"{r.level or '-':<16} {'ok' if r.ok else 'FAILED'}")
        lines += [f"    problem: {p}" for p in r.problems]
    notes = sorted({n for r in results for n in r.notes})
    lines += [f"note: {n}" for n in notes]
    return lines
