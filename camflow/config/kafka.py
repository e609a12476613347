"""Kafka: brokers, security (credentials by reference, never in the YAML), topics."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field

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


class Topics(Strict):
    frames: str = Field("frames", description="FrameSample records from the samplers, keyed by camera")
    analyses: str = Field("analyses", description="every analysed frame (FrameAnalysis)")
    alerts: str = Field("alerts", description="every alert (Alert), for alert systems")
    aggregates: str = Field("aggregates", description="per camera and window counts and anomaly scores")
    dead_letters: str = Field("dead-letters", description="records the job could not use, with the reason")
    watchlist: str = Field("watchlist", description="compacted: the current watchlist, keyed kind:id")
    watchlist_audit: str = Field("watchlist-audit", description="every watchlist change, kept (who, when, what)")
    sightings: str = Field("sightings", description="confirmed watchlist matches")
    face_embeddings: str = Field("face-embeddings", description=(
        "every face read (embedding, box, track, watchlist match) for retroactive search"))
    partitions: int = Field(4, ge=1, description="partitions per topic: the most parallelism a stage can use")


class Kafka(Strict):
    bootstrap_servers: str = Field("127.0.0.1:19092", description="host:port[,host:port...] of the brokers")
    security: KafkaSecurity = KafkaSecurity()
    schema_registry_url: str | None = Field(None, description="Confluent-compatible schema registry (None: single-object Avro)")
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
        return {"url": self.schema_registry_url} if self.schema_registry_url else None
