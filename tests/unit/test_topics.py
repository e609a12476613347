"""Topic provisioning and registry settings from the config, without a broker: what each
topic should be, the status warning, and ``camflow schemas`` on the registry client's
in-memory registry (``mock://``: it registers and looks up, but has no compatibility levels
or checks, so there the FULL_TRANSITIVE rule is checked locally only; the HTTPS registry
test is tests/integration/test_interop.py)."""
from __future__ import annotations

import pytest

from camflow.config import Config
from camflow.config.kafka import DAY_MS, TOPIC_DEFAULTS
from camflow.services import schemas, topics


def spec(config: Config, kind: str) -> topics.TopicSpec:
    return next(s for s in topics.specs(config) if s.kind == kind)


def test_every_topic_has_its_documented_defaults():
    config = Config()
    assert {s.kind for s in topics.specs(config)} == set(TOPIC_DEFAULTS) == set(topics.KINDS)
    assert spec(config, "watchlist").configs == {"cleanup.policy": "compact"}
    assert spec(config, "frames").configs == {"retention.ms": str(DAY_MS),
                                              "max.message.bytes": str(16 * 1024 * 1024)}
    assert spec(config, "face_embeddings").configs == {"retention.ms": str(7 * DAY_MS)}
    assert spec(config, "notify_failures").name == config.notify.failures_topic
    assert all(s.partitions == config.kafka.topics.partitions for s in topics.specs(config))
    assert all(s.replication_factor is None for s in topics.specs(config))


def test_a_topic_setting_is_laid_over_that_topics_defaults():
    config = Config.model_validate({"kafka": {"topics": {
        "partitions": 6, "replication_factor": 3, "min_insync_replicas": 2,
        "settings": {"frames": {"partitions": 12, "config": {"segment.ms": "3600000"}},
                     "watchlist": {"cleanup_policy": "compact,delete", "retention_ms": -1}}}}})
    frames = spec(config, "frames")
    assert frames.partitions == 12 and frames.replication_factor == 3
    assert frames.configs == {"retention.ms": str(DAY_MS), "max.message.bytes": str(16 * 1024 * 1024),
                              "min.insync.replicas": "2", "segment.ms": "3600000"}
    assert spec(config, "watchlist").configs == {"cleanup.policy": "compact,delete",
                                                 "retention.ms": "-1", "min.insync.replicas": "2"}
    assert spec(config, "alerts").partitions == 6
    with pytest.raises(ValueError):
        Config.model_validate({"kafka": {"topics": {"settings": {"alerts": {"cleanup_policy": "keep"}}}}})


def test_cleanup_policies_compare_as_sets():
    assert topics._same("cleanup.policy", "delete,compact", "compact,delete")
    assert not topics._same("retention.ms", None, "1")
    assert topics._same("retention.ms", "86400000", "86400000")


def test_status_warns_about_topics_narrower_than_the_parallelism():
    from camflow.services.status import format_status, warnings
    kafka = {"bootstrap_servers": "b:9092", "exact": False, "topics": [
        {"topic": "frames", "kind": "frames", "exists": True, "partitions": 2, "end": {}, "groups": []},
        {"topic": "alerts", "kind": "alerts", "exists": True, "partitions": 8, "end": {}, "groups": []},
        {"topic": "watchlist", "kind": "watchlist", "exists": True, "partitions": 1, "end": {}, "groups": []},
        {"topic": "sightings", "kind": "sightings", "exists": False}]}
    found = warnings(kafka, parallelism=4)
    assert found[0].startswith("topic frames has 2 partition(s), fewer than the job's parallelism 4")
    assert found[1] == "topic sightings is missing: camflow topics apply --config FILE"
    assert len(found) == 2  # alerts is wide enough; the watchlist is broadcast
    lines = format_status({"time_ms": 0, "kafka": kafka, "warnings": found, "flink": None})
    assert "warning: topic frames has 2 partition(s)" in "\n".join(lines)


def test_registry_settings_keep_the_password_a_reference(monkeypatch, tmp_path):
    from camflow.schemas.codec import registry_client_conf
    config = Config.model_validate({"kafka": {
        "schema_registry_url": "https://registry.internal:8081",
        "schema_registry": {"ssl_ca_location": "/etc/camflow/ca.pem", "username": "camflow",
                            "password_env": "REGISTRY_PASSWORD"}}})
    conf = config.kafka.registry_conf()
    assert "s3cret" not in str(conf) and conf["camflow.auto.register.schemas"] == "false"
    with pytest.raises(RuntimeError, match="REGISTRY_PASSWORD"):
        registry_client_conf(conf)
    monkeypatch.setenv("REGISTRY_PASSWORD", "s3cret")
    assert registry_client_conf(conf) == {"url": "https://registry.internal:8081",
                                          "ssl.ca.location": "/etc/camflow/ca.pem",
                                          "basic.auth.user.info": "camflow:s3cret"}
    with pytest.raises(ValueError, match="password_env or password_file"):
        Config.model_validate({"kafka": {"schema_registry": {"username": "u"}}})


def test_producers_do_not_register_when_auto_register_is_off():
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    from camflow.schemas.codec import AvroCodec
    off = {"url": "mock://off", "camflow.auto.register.schemas": "false"}
    record = {"alert_id": "a", "type": "t", "severity": "info", "camera_id": "c", "time_ms": 1}
    with pytest.raises(SchemaRegistryError):
        AvroCodec("Alert", off, subject="alerts-value").encode(record)
    codec = AvroCodec("Alert", off, subject="alerts-value")
    codec._registry().register_schema("alerts-value", codec._confluent_serializer()._schema)
    data = codec.encode(record)
    assert data[:1] == b"\x00" and codec.decode(data)["alert_id"] == "a"


def test_every_contract_keeps_the_rule_over_its_shipped_versions():
    assert {c: schemas.local_problems(c) for c in schemas.CONTRACTS} == \
        {c: [] for c in schemas.CONTRACTS}


def test_a_contract_breaking_the_rule_is_found_locally(monkeypatch):
    import copy

    from camflow.schemas import codec
    broken = copy.deepcopy(codec.schema_json("Aggregate"))
    broken["fields"] = [f for f in broken["fields"] if f["name"] != "frames"]  # removed, no default
    monkeypatch.setattr(schemas, "schema_json", lambda contract: broken)
    problems = schemas.local_problems("Aggregate")
    assert problems and any("readers cannot read it" in p for p in problems)


def test_schemas_register_and_check_on_the_in_memory_registry():
    config = Config.model_validate({"kafka": {"schema_registry_url": "mock://deploy"}})
    client = schemas.open_registry(config.kafka.registry_conf())
    before = schemas.run(config, write=False, client=client)
    assert not any(r.ok for r in before) and all(r.schema_id is None for r in before)
    registered = schemas.run(config, write=True, client=client)
    assert all(r.ok and r.schema_id for r in registered)
    assert {r.subject for r in registered} == {f"{getattr(config.kafka.topics, k)}-value"
                                               for k in schemas.SUBJECTS}
    after = schemas.run(config, write=False, client=client)
    assert [r.schema_id for r in after] == [r.schema_id for r in registered]
    assert all("locally only" in " ".join(r.notes) for r in after)  # said so
    with pytest.raises(schemas.RegistryNotConfigured):
        schemas.run(Config(), write=False)
