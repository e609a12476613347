"""Kafka: brokers, security (credentials by reference, never in the YAML), topics."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from camflow.config.base import Strict


class KafkaSecurity(Strict):
    """librdkafka-style security settings; the password comes from the environment or a file."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None

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
    frames: str = "frames"
    analyses: str = "analyses"
    alerts: str = "alerts"
    aggregates: str = "aggregates"
    dead_letters: str = "dead-letters"
    watchlist: str = Field("watchlist", description="compacted: the current watchlist, keyed kind:id")
    watchlist_audit: str = Field("watchlist-audit", description="every watchlist change, kept (who, when, what)")
    sightings: str = "sightings"
    face_embeddings: str = Field("face-embeddings", description=(
        "every face read (embedding, box, track, watchlist match) for retroactive search"))
    partitions: int = Field(4, ge=1, description="partitions per topic: the most parallelism a stage can use")


class Kafka(Strict):
    bootstrap_servers: str = "127.0.0.1:19092"
    security: KafkaSecurity = KafkaSecurity()
    schema_registry_url: str | None = None
    group_id: str = "camflow"
    topics: Topics = Topics()

    def client_conf(self) -> dict[str, str]:
        """Settings shared by every librdkafka client (sampler, sink, tools)."""
        conf = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security.protocol}
        sec = self.security
        if sec.sasl_mechanism:
            conf["sasl.mechanism"] = sec.sasl_mechanism
        if sec.username:
            conf["sasl.username"] = sec.username
        password = sec.password()
        if password is not None:
            conf["sasl.password"] = password
        for key, value in (("ssl.ca.location", sec.ssl_ca_location),
                           ("ssl.certificate.location", sec.ssl_certificate_location),
                           ("ssl.key.location", sec.ssl_key_location)):
            if value:
                conf[key] = str(value)
        return conf

    def java_client_properties(self) -> dict[str, str]:
        """The same settings for Flink's Java Kafka connector."""
        props = {"security.protocol": self.security.protocol}
        sec = self.security
        if sec.sasl_mechanism:
            props["sasl.mechanism"] = sec.sasl_mechanism
            password = sec.password() or ""
            module = ("org.apache.kafka.common.security.plain.PlainLoginModule"
                      if sec.sasl_mechanism == "PLAIN"
                      else "org.apache.kafka.common.security.scram.ScramLoginModule")
            props["sasl.jaas.config"] = (f'{module} required username="{sec.username or ""}" '
                                         f'password="{password}";')
        if sec.ssl_ca_location:
            props["ssl.truststore.type"] = "PEM"
            props["ssl.truststore.location"] = str(sec.ssl_ca_location)
        return props

    def registry_conf(self) -> dict[str, str] | None:
        return {"url": self.schema_registry_url} if self.schema_registry_url else None
