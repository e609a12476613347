"""Kafka: brokers, security (credentials by reference, never in the YAML), topics and how
`camflow topics apply` provisions them, the schema registry."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from camflow.config import kafka_security
from camflow.config.base import Strict


class KafkaSecurity(Strict):
    """librdkafka-style security settings; the password comes from the environment or a file."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="security.protocol of every client")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = Field(
        None, description="SASL mechanism (with a SASL_* protocol)")
    username: str | None = Field(None, description="SASL user name")
    password_env: str | None = Field(None, description="environment variable holding the SASL password")
    password_file: Path | None = Field(None, description="...or a file holding it")
    ssl_ca_location: Path | None = Field(None, description="PEM file of the CA that signed the brokers")
    ssl_certificate_location: Path | None = Field(None, description="client certificate (PEM), for mutual TLS")
    ssl_key_location: Path | None = Field(None, description="its private key (PEM, PKCS#8)")
    oauth_token_endpoint_url: str | None = Field(None, description=(
        "OAUTHBEARER: the OIDC token endpoint (username = client id, password = client secret)"))
    oauth_scope: str | None = Field(None, description="OAUTHBEARER: the scope asked for")

    def password(self) -> str | None:
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise RuntimeError(f"environment variable {self.password_env} (Kafka password) is not set")
            return value
        if self.password_file:
            return self.password_file.read_text().strip()
        return None


DAY_MS = 86_400_000
MIB = 1024 * 1024


class TopicSettings(Strict):
    """How `camflow topics apply` creates or updates one topic. A setting left unset is the
    deployment-wide one (``kafka.topics``) or the broker's default, and is never changed."""

    partitions: int | None = Field(None, ge=1, description=(
        "partitions (unset: kafka.topics.partitions); at least the job's parallelism"))
    retention_ms: int | None = Field(None, ge=-1, description=(
        "retention.ms: how long records are kept, -1 forever (unset: the broker's default)"))
    cleanup_policy: Literal["delete", "compact", "compact,delete"] | None = Field(None, description=(
        "cleanup.policy (unset: the broker's default, delete)"))
    min_insync_replicas: int | None = Field(None, ge=1, description=(
        "min.insync.replicas: replicas an acks=all write must reach (unset: kafka.topics.min_insync_replicas)"))
    max_message_bytes: int | None = Field(None, ge=1024, description=(
        "max.message.bytes: the largest record batch the topic takes (unset: the broker's default, 1 MiB)"))
    config: dict[str, str] = Field(default_factory=dict, description=(
        "any other topic configuration, e.g. {'segment.ms': '3600000'}"))


# The settings each topic gets where the YAML is silent (documented in the README, "Topics").
TOPIC_DEFAULTS: dict[str, dict[str, Any]] = {
    "frames": {"retention_ms": DAY_MS, "max_message_bytes": 16 * MIB},
    "analyses": {"retention_ms": 7 * DAY_MS},
    "alerts": {"retention_ms": 30 * DAY_MS},
    "aggregates": {"retention_ms": 30 * DAY_MS},
    "dead_letters": {"retention_ms": 14 * DAY_MS, "max_message_bytes": 16 * MIB},
    "watchlist": {"cleanup_policy": "compact"},
    "watchlist_audit": {"retention_ms": 365 * DAY_MS},
    "sightings": {"retention_ms": 30 * DAY_MS},
    "face_embeddings": {"retention_ms": 7 * DAY_MS},
    "appearances": {"retention_ms": 7 * DAY_MS},
    "notify_failures": {"retention_ms": 30 * DAY_MS},
}


def _topic(kind: str, what: str):
    defaults = ", ".join(f"{k}={v}" for k, v in TOPIC_DEFAULTS[kind].items())
    return Field(default_factory=lambda: TopicSettings(**TOPIC_DEFAULTS[kind]),
                 description=f"{what} (default {defaults})")


class TopicSettingsByTopic(Strict):
    """Per topic settings; what the YAML gives for a topic is laid over that topic's defaults."""

    frames: TopicSettings = _topic("frames", "large records, read within seconds: a day to replay a backlog")
    analyses: TopicSettings = _topic("analyses", "a week")
    alerts: TopicSettings = _topic("alerts", "a month")
    aggregates: TopicSettings = _topic("aggregates", "a month")
    dead_letters: TopicSettings = _topic("dead_letters", "two weeks to look into, with the original bytes")
    watchlist: TopicSettings = _topic("watchlist", "compacted: the latest entry per kind:id, kept")
    watchlist_audit: TopicSettings = _topic("watchlist_audit", "every watchlist change for a year")
    sightings: TopicSettings = _topic("sightings", "a month")
    face_embeddings: TopicSettings = _topic("face_embeddings", "personal data: a week, as store.embedding_retention_days")
    appearances: TopicSettings = _topic("appearances", "personal data: a week, as store.embedding_retention_days")
    notify_failures: TopicSettings = _topic("notify_failures", "camflow notify's undeliverable alerts: a month")

    @model_validator(mode="before")
    @classmethod
    def _over_the_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {kind: ({**TOPIC_DEFAULTS[kind], **given} if kind in TOPIC_DEFAULTS
                           and isinstance(given, dict) else given)
                    for kind, given in data.items()}
        return data


class Topics(Strict):
    frames: str = Field("frames", description="FrameSample records from the samplers, keyed by camera")
    analyses: str = Field("analyses", description="every analysed frame (FrameAnalysis), keyed by camera")
    alerts: str = Field("alerts", description="every alert (Alert), for alert systems, keyed by camera")
    aggregates: str = Field("aggregates", description="per camera and window counts and anomaly scores, keyed by camera")
    dead_letters: str = Field("dead-letters", description="records the job could not use, with the reason (keyed by camera when known)")
    watchlist: str = Field("watchlist", description="compacted: the current watchlist, keyed kind:id")
    watchlist_audit: str = Field("watchlist-audit", description="every watchlist change, kept (who, when, what)")
    sightings: str = Field("sightings", description="confirmed watchlist matches, keyed by camera")
    face_embeddings: str = Field("face-embeddings", description=(
        "every face read (embedding, box, track, watchlist match) for retroactive search, keyed by camera"))
    appearances: str = Field("appearances", description=(
        "what each person or vehicle track looks like (colours, embedding, best crop) for "
        "camflow find / similar, keyed by camera"))
    partitions: int = Field(4, ge=1, description="partitions per topic: the most parallelism a stage can use")
    replication_factor: int | None = Field(None, ge=1, description=(
        "replicas of each topic `camflow topics apply` creates (unset: the broker's default)"))
    min_insync_replicas: int | None = Field(None, ge=1, description=(
        "min.insync.replicas of every topic unless its settings say (unset: the broker's default)"))
    settings: TopicSettingsByTopic = Field(default_factory=TopicSettingsByTopic, description=(
        "per topic: partitions, retention, cleanup policy, min.insync.replicas, other configs"))


class SchemaRegistry(Strict):
    """How clients reach the schema registry at ``kafka.schema_registry_url``: TLS with an
    internal CA, a client certificate, basic auth (the password by reference)."""

    ssl_ca_location: Path | None = Field(None, description="PEM file of the CA that signed the registry's certificate")
    ssl_certificate_location: Path | None = Field(None, description="client certificate (PEM), for mutual TLS")
    ssl_key_location: Path | None = Field(None, description="its private key (PEM)")
    username: str | None = Field(None, description="basic auth user")
    password_env: str | None = Field(None, description="environment variable holding the basic auth password")
    password_file: Path | None = Field(None, description="...or a file holding it")
    auto_register_schemas: bool = Field(False, description=(
        "producers register their schema when they start (development only); off: "
        "`camflow schemas register` at deploy time, and producers only look it up"))

    @model_validator(mode="after")
    def _password_with_user(self) -> "SchemaRegistry":
        if self.username and not (self.password_env or self.password_file):
            raise ValueError("schema_registry.username needs password_env or password_file")
        return self


class Kafka(Strict):
    bootstrap_servers: str = Field("127.0.0.1:19092", description="host:port[,host:port...] of the brokers")
    security: KafkaSecurity = KafkaSecurity()
    schema_registry_url: str | None = Field(None, description="Confluent-compatible schema registry (None: single-object Avro)")
    schema_registry: SchemaRegistry = SchemaRegistry()
    group_id: str = Field("camflow", description="prefix of every consumer group camflow uses")
    topics: Topics = Topics()

    def client_conf(self) -> dict[str, str]:
        """Settings shared by every librdkafka client (sampler, sink, tools)."""
        return {"bootstrap.servers": self.bootstrap_servers,
                **kafka_security.librdkafka_properties(
                    **kafka_security.settings_of(self.security, self.security.password()))}

    def java_client_properties(self) -> dict[str, str]:
        """The same settings for Flink's Java Kafka connector (JAAS built with quoting, one
        login module per mechanism, client certificates as a PEM keystore)."""
        return kafka_security.java_client_properties(
            **kafka_security.settings_of(self.security, self.security.password()))

    def registry_conf(self) -> dict[str, str] | None:
        """Settings of the schema registry client (``camflow.schemas.codec.registry_conf``):
        the password stays a reference, read where the client opens."""
        if not self.schema_registry_url:
            return None
        registry = self.schema_registry
        conf = {"url": self.schema_registry_url,
                "camflow.auto.register.schemas": str(registry.auto_register_schemas).lower()}
        for key, value in (("ssl.ca.location", registry.ssl_ca_location),
                           ("ssl.certificate.location", registry.ssl_certificate_location),
                           ("ssl.key.location", registry.ssl_key_location),
                           ("camflow.basic.auth.user", registry.username),
                           ("camflow.basic.auth.password.env", registry.password_env),
                           ("camflow.basic.auth.password.file", registry.password_file)):
            if value:
                conf[key] = str(value)
        return conf
