"""``camflow topics apply``: every topic of the deployment as its config sets it.

What each topic should be comes from ``kafka.topics`` (names, partitions, replication factor,
min.insync.replicas) and ``kafka.topics.settings.<topic>`` (partitions, retention, cleanup
policy, min.insync.replicas, max.message.bytes, other configs; each topic has documented
defaults, ``camflow/config/kafka.py`` ``TOPIC_DEFAULTS``). ``plan`` compares that with the
cluster: a missing topic is created; an existing one gets the partitions it lacks and the
topic configs that differ (an incremental alter of only those keys). Settings left unset are
the broker's and never touched, so a second run changes nothing. What Kafka cannot do in
place is reported, not attempted: fewer partitions than a topic has, another replication
factor (that takes a partition reassignment).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from camflow.config import Config

# Every topic a deployment uses: the kafka.topics field, or notify's own setting.
KINDS = ("frames", "analyses", "alerts", "aggregates", "dead_letters", "watchlist",
         "watchlist_audit", "sightings", "face_embeddings", "appearances",
         "notify_failures")
# Topics read whole by every instance of their reader (broadcast): parallelism needs no partitions.
BROADCAST = ("watchlist", "watchlist_audit")


@dataclass
class TopicSpec:
    """One topic as the config wants it."""

    kind: str
    name: str
    partitions: int
    replication_factor: int | None
    configs: dict[str, str]


@dataclass
class TopicChange:
    """What ``apply`` does (or, dry, would do) to one topic."""

    kind: str
    topic: str
    action: str = "unchanged"  # create | update | unchanged
    partitions: tuple[int, int] | None = None  # (now, wanted) when partitions are added
    configs: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # key: (now, wanted)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict:
        return {"kind": self.kind, "topic": self.topic, "action": self.action,
                "partitions": list(self.partitions) if self.partitions else None,
                "configs": {k: {"now": now, "wanted": wanted}
                            for k, (now, wanted) in self.configs.items()},
                "warnings": self.warnings, "error": self.error}


def topic_name(config: Config, kind: str) -> str:
    return config.notify.failures_topic if kind == "notify_failures" \
        else getattr(config.kafka.topics, kind)


def specs(config: Config) -> list[TopicSpec]:
    """Every topic of the deployment with the partitions and topic configs it should have."""
    topics = config.kafka.topics
    out = []
    for kind in KINDS:
        settings = getattr(topics.settings, kind)
        configs = dict(settings.config)
        for key, value in (("retention.ms", settings.retention_ms),
                           ("cleanup.policy", settings.cleanup_policy),
                           ("min.insync.replicas",
                            settings.min_insync_replicas or topics.min_insync_replicas),
                           ("max.message.bytes", settings.max_message_bytes)):
            if value is not None:
                configs[key] = str(value)
        out.append(TopicSpec(kind, topic_name(config, kind), settings.partitions or topics.partitions,
                             topics.replication_factor, configs))
    return out


def _same(key: str, now: str | None, wanted: str) -> bool:
    if now is None:
        return False
    if key == "cleanup.policy":  # a list: "compact,delete" == "delete,compact"
        return sorted(p.strip() for p in now.split(",")) == sorted(wanted.split(","))
    return now.strip() == wanted


def plan(config: Config, admin, timeout: float = 15.0) -> list[TopicChange]:
    """Compare the config with the cluster (nothing is changed)."""
    from confluent_kafka.admin import ConfigResource

    metadata = admin.list_topics(timeout=timeout).topics
    changes, existing = [], []
    for spec in specs(config):
        change = TopicChange(spec.kind, spec.name)
        changes.append(change)
        meta = metadata.get(spec.name)
        if meta is None or meta.error is not None:
            change.action = "create"
            change.partitions = (0, spec.partitions)
            change.configs = {k: (None, v) for k, v in spec.configs.items()}
            continue
        now = len(meta.partitions)
        if now < spec.partitions:
            change.partitions = (now, spec.partitions)
        elif now > spec.partitions:
            change.warnings.append(f"has {now} partitions, more than the {spec.partitions} "
                                   "configured (Kafka cannot remove partitions)")
        replicas = {len(p.replicas) for p in meta.partitions.values()}
        if spec.replication_factor and replicas != {spec.replication_factor}:
            change.warnings.append(f"replication factor {sorted(replicas)} is not the "
                                   f"{spec.replication_factor} configured (that takes a partition "
                                   "reassignment: kafka-reassign-partitions)")
        existing.append((change, spec))
    if existing:
        resources = {change.topic: ConfigResource(ConfigResource.Type.TOPIC, change.topic)
                     for change, _ in existing}
        described = admin.describe_configs(list(resources.values()), request_timeout=timeout)
        for change, spec in existing:
            current = {k: e.value for k, e in described[resources[change.topic]].result().items()}
            change.configs = {k: (current.get(k), v) for k, v in spec.configs.items()
                              if not _same(k, current.get(k), v)}
            if change.partitions or change.configs:
                change.action = "update"
    return changes


def apply(config: Config, dry_run: bool = False, timeout: float = 30.0) -> list[TopicChange]:
    """Create or update every topic as configured (``dry_run``: only say what would change).
    A change the broker refuses is the topic's ``error``; the others still go through."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                       ConfigResource, NewPartitions, NewTopic)

    admin = AdminClient(config.kafka.client_conf())
    changes = plan(config, admin, timeout)
    wanted = {spec.name: spec for spec in specs(config)}
    if dry_run:
        return changes

    def settle(futures: dict, name_of=lambda key: key) -> None:
        for key, future in futures.items():
            change = next(c for c in changes if c.topic == name_of(key))
            try:
                future.result()
            except KafkaException as exc:
                error = exc.args[0]
                if getattr(error, "name", lambda: "")() != "TOPIC_ALREADY_EXISTS":
                    change.error = error.str() if hasattr(error, "str") else str(error)

    create = [NewTopic(c.topic, num_partitions=wanted[c.topic].partitions,
                       replication_factor=wanted[c.topic].replication_factor or -1,
                       config=wanted[c.topic].configs)
              for c in changes if c.action == "create"]
    if create:
        settle(admin.create_topics(create, operation_timeout=timeout, request_timeout=timeout))
    grow = [NewPartitions(c.topic, c.partitions[1]) for c in changes
            if c.action == "update" and c.partitions]
    if grow:
        settle(admin.create_partitions(grow, operation_timeout=timeout, request_timeout=timeout))
    alter = [ConfigResource(ConfigResource.Type.TOPIC, c.topic, incremental_configs=[
        ConfigEntry(k, wanted_value, incremental_operation=AlterConfigOpType.SET)
        for k, (_, wanted_value) in c.configs.items()])
        for c in changes if c.action == "update" and c.configs]
    if alter:
        settle(admin.incremental_alter_configs(alter, request_timeout=timeout),
               name_of=lambda resource: resource.name)
    _wait_for_metadata(admin, {c.topic: c.partitions[1] for c in changes
                               if c.partitions and not c.error}, timeout)
    return changes


def _wait_for_metadata(admin, partitions: dict[str, int], timeout: float) -> None:
    """Until the cluster's metadata shows the topics with their partitions (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while partitions and time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=timeout).topics
        if all(name in metadata and len(metadata[name].partitions) >= n
               for name, n in partitions.items()):
            return
        time.sleep(0.2)


def format_changes(changes: list[TopicChange], dry_run: bool) -> list[str]:
    """One line per topic, then its changes, warnings and errors indented."""
    width = max([5] + [len(c.topic) for c in changes])
    verb = {"create": "would create" if dry_run else "created",
            "update": "would update" if dry_run else "updated", "unchanged": "unchanged"}
    lines = []
    for change in changes:
        action = "FAILED" if change.error else verb[change.action]
        lines.append(f"{change.topic:<{width}}  {action}")
        if change.partitions:
            now, wanted = change.partitions
            lines.append(f"    partitions {now or '-'} -> {wanted}")
        for key, (now, wanted_value) in change.configs.items():
            lines.append(f"    {key} {now if now is not None else '-'} -> {wanted_value}")
        lines += [f"    warning: {w}" for w in change.warnings]
        if change.error:
            lines.append(f"    error: {change.error}")
    return lines
