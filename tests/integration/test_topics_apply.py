"""``camflow topics apply`` against the real (dev) broker: the topics appear as configured, a
second run changes nothing, a changed setting changes only that; ``camflow status`` warns
about a topic narrower than the job's parallelism."""
from __future__ import annotations

import json
import uuid

import pytest
import yaml

pytestmark = pytest.mark.integration


def described(bootstrap: str, names: list[str]) -> dict[str, dict[str, str]]:
    from confluent_kafka.admin import AdminClient, ConfigResource
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
    return {r.name: {k: e.value for k, e in f.result().items()}
            for r, f in admin.describe_configs(resources).items()}


def partitions(bootstrap: str) -> dict[str, int]:
    from confluent_kafka.admin import AdminClient
    return {name: len(t.partitions) for name, t in
            AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics.items()}


def write(path, raw) -> str:
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def run(args, capsys) -> tuple[int, dict]:
    from camflow.commands import main
    code = main(args + ["--json"])
    return code, json.loads(capsys.readouterr().out)


def test_apply_creates_as_configured_and_a_second_run_changes_nothing(kafka_bootstrap, tmp_path, capsys):
    from camflow.config import load_config
    from camflow.services.topics import specs
    suffix = uuid.uuid4().hex[:8]
    names = ("frames", "analyses", "alerts", "aggregates", "dead_letters", "watchlist",
             "watchlist_audit", "sightings", "face_embeddings", "appearances")
    raw = {"deployment": f"topics-{suffix}",
           "kafka": {"bootstrap_servers": kafka_bootstrap, "topics": {
               **{n: f"{n}-{suffix}" for n in names}, "partitions": 3, "min_insync_replicas": 1,
               "settings": {"alerts": {"partitions": 5, "retention_ms": 3_600_000}}}},
           "notify": {"failures_topic": f"notify-failures-{suffix}"},
           "job": {"parallelism": 4, "rest_url": None}}
    path = write(tmp_path / "topics.yaml", raw)
    config = load_config(path)
    wanted = {s.name: s for s in specs(config)}

    code, dry = run(["topics", "apply", "--config", path, "--dry-run"], capsys)
    assert code == 0 and {t["action"] for t in dry["topics"]} == {"create"}
    assert not set(wanted) & set(partitions(kafka_bootstrap)), "a dry run created topics"

    code, first = run(["topics", "apply", "--config", path], capsys)
    assert code == 0 and {t["action"] for t in first["topics"]} == {"create"}
    present = partitions(kafka_bootstrap)
    assert {n: present.get(n) for n in wanted} == {n: s.partitions for n, s in wanted.items()}
    assert present[f"alerts-{suffix}"] == 5
    configs = described(kafka_bootstrap, list(wanted))
    for name, spec in wanted.items():
        assert {k: configs[name].get(k) for k in spec.configs} == spec.configs, name
    assert configs[f"watchlist-{suffix}"]["cleanup.policy"] == "compact"
    assert configs[f"alerts-{suffix}"]["retention.ms"] == "3600000"

    code, second = run(["topics", "apply", "--config", path], capsys)
    assert code == 0 and {t["action"] for t in second["topics"]} == {"unchanged"}
    assert all(not t["configs"] and not t["partitions"] for t in second["topics"])

    raw["kafka"]["topics"]["settings"]["alerts"]["retention_ms"] = 7_200_000
    write(tmp_path / "topics.yaml", raw)
    code, third = run(["topics", "apply", "--config", path], capsys)
    changed = [t for t in third["topics"] if t["action"] != "unchanged"]
    assert code == 0 and [t["topic"] for t in changed] == [f"alerts-{suffix}"]
    assert changed[0]["configs"] == {"retention.ms": {"now": "3600000", "wanted": "7200000"}}
    assert described(kafka_bootstrap, [f"alerts-{suffix}"])[f"alerts-{suffix}"]["retention.ms"] == "7200000"
    code, fourth = run(["topics", "apply", "--config", path], capsys)
    assert {t["action"] for t in fourth["topics"]} == {"unchanged"}

    # parallelism 4 > 3 partitions: camflow status says so (alerts has 5: no warning there)
    from camflow.services.status import status
    report = status(config)
    assert any(w.startswith(f"topic frames-{suffix} has 3 partition(s), fewer than the job's "
                            "parallelism 4") for w in report["warnings"])
    assert not any(f"alerts-{suffix}" in w for w in report["warnings"])
