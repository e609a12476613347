"""Kafka settings and topics of a test job run: fresh topic names per run, created up front."""
from __future__ import annotations

JOB_TOPICS = ("frames", "analyses", "alerts", "aggregates", "dead_letters")


def kafka_settings(bootstrap: str, suffix: str, partitions: int) -> dict:
    """The ``kafka`` section: topics named ``<name>-<suffix>`` (dead letters with a dash)."""
    topics = {name: f"{name.replace('_', '-')}-{suffix}" for name in JOB_TOPICS}
    return {"bootstrap_servers": bootstrap, "group_id": suffix,
            "topics": {**topics, "partitions": partitions}}


def create_job_topics(bootstrap: str, config) -> None:
    from camflow.infra.broker import ensure_topics
    topics = config.kafka.topics
    ensure_topics(bootstrap, {getattr(topics, name): topics.partitions for name in JOB_TOPICS})
