"""``camflow notify``: where alerts go (MQTT brokers, webhooks) and which alerts go where."""
from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Annotated, Callable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SEVERITIES = ("info", "warning", "critical")
TARGET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- configuration

class Backoff(_Strict):
    """Exponential backoff between retries: initial_s, then x multiplier each time, capped."""

    initial_s: float = Field(0.5, gt=0, le=300, description="wait before the first retry")
    multiplier: float = Field(2.0, ge=1, le=10, description="each further wait is this many times the previous one")
    max_s: float = Field(30.0, gt=0, le=3600, description="the longest single wait (also caps a Retry-After)")
    jitter: float = Field(0.1, ge=0, le=1, description="each wait varies randomly by up to this fraction (senders do not retry in step)")

    def delay(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``retry`` (1 = the first retry)."""
        base = min(self.max_s, self.initial_s * self.multiplier ** max(0, retry - 1))
        if self.jitter:
            base *= 1 + self.jitter * (2 * rand() - 1)
        return max(0.0, min(self.max_s, base))

    def total(self, retries: int) -> float:
        """Longest time all ``retries`` waits add up to (no jitter): how long a target may be
        unreachable before a delivery is given up (plus the attempts' own timeouts)."""
        return sum(min(self.max_s, self.initial_s * self.multiplier ** r) for r in range(retries))


def _secret(env: str | None, file: Path | None, what: str) -> str | None:
    """A secret from a file (first) or an environment variable; never from the YAML itself."""
    if file is not None:
        try:
            value = Path(file).read_text().strip()
        except OSError as exc:
            raise RuntimeError(f"{what}: cannot read secret file {file}: {exc}") from exc
        if not value:
            raise RuntimeError(f"{what}: secret file {file} is empty")
        return value
    if env:
        value = os.environ.get(env)
        if not value:
            raise RuntimeError(f"{what}: environment variable {env} is not set")
        return value
    return None


class MqttTarget(_Strict):
    """An MQTT broker (Mosquitto, EMQX, Home Assistant's add-on...)."""

    kind: Literal["mqtt"] = Field(description="mqtt")
    host: str = Field("127.0.0.1", description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port (8883 is usual with tls)")
    username: str | None = Field(None, description="user name, when the broker requires a login")
    password_env: str | None = Field(None, description="environment variable holding the password")
    password_file: Path | None = Field(None, description="...or a file holding it")
    tls: bool = Field(False, description="connect with TLS (the system's CAs unless ca_file)")
    ca_file: Path | None = Field(None, description="CA bundle (PEM) that signed the broker's certificate")
    topic_prefix: str = Field("camflow", description="first topic level: <prefix>/<site>/<camera>/<type>")
    qos: Literal[1, 2] = Field(1, description="1: at least once (the broker acknowledges each alert)")
    camera_status: bool = Field(True, description=(
        "publish a retained <prefix>/<camera>/status (online/offline) from the liveness alerts, "
        "whatever the routes say"))
    client_id: str | None = Field(None, description="MQTT client id; default camflow-notify-<deployment>-<target>")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive interval")
    timeout_s: float = Field(60.0, gt=0, le=3600, description=(
        "wait this long for the broker's acknowledgement (reconnecting meanwhile), then give up "
        "with a notify-failures record"))

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or value.startswith("/") or value.endswith("/") or any(c in value for c in "+#\0"):
            raise ValueError("a topic prefix is non-empty, has no + # and no leading or trailing /")
        return value

    @model_validator(mode="after")
    def _password_source(self) -> "MqttTarget":
        if self.password_env and self.password_file:
            raise ValueError("give password_env or password_file, not both")
        return self

    def password(self, name: str) -> str | None:
        return _secret(self.password_env, self.password_file, f"notify target {name!r} (MQTT password)")


class WebhookTarget(_Strict):
    """An HTTP endpoint that receives each alert as a signed JSON POST."""

    kind: Literal["webhook"] = Field(description="webhook")
    url: str = Field(description="http:// or https:// URL the alerts are POSTed to")
    secret_env: str | None = Field(None, description="environment variable holding the HMAC-SHA256 signing secret")
    secret_file: Path | None = Field(None, description="...or a file holding it")
    timeout_s: float = Field(10.0, gt=0, le=300, description="one attempt's connect + response timeout")
    retries: int = Field(6, ge=0, le=100, description="attempts after the first, for network errors, timeouts, 408/425/429 and 5xx")
    backoff: Backoff = Field(default_factory=Backoff, description="waits between the attempts")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers (not for secrets)")
    verify_tls: bool = Field(True, description="check the server's certificate (https)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _secret_source(self) -> "WebhookTarget":
        if bool(self.secret_env) == bool(self.secret_file):
            raise ValueError("give exactly one of secret_env or secret_file: every webhook is signed")
        return self

    def secret(self, name: str) -> str:
        value = _secret(self.secret_env, self.secret_file, f"notify target {name!r} (webhook secret)")
        assert value is not None
        return value


Target = Annotated[Union[MqttTarget, WebhookTarget], Field(discriminator="kind")]


class Match(_Strict):
    """Which alerts a route takes; every given condition must hold (empty lists: any)."""

    types: list[str] = Field(default_factory=list, description="alert types, e.g. [intrusion, watchlist_face]; empty: any")
    min_severity: Literal["info", "warning", "critical"] = Field("info", description=(
        "lowest severity taken (an unknown severity is always taken)"))
    cameras: list[str] = Field(default_factory=list, description="camera ids; empty: any")
    sites: list[str] = Field(default_factory=list, description="sites (cameras[].location.site); empty: any")

    def matches(self, alert: dict, site: str | None) -> bool:
        if self.types and alert.get("type") not in self.types:
            return False
        if self.cameras and alert.get("camera_id") not in self.cameras:
            return False
        if self.sites and site not in self.sites:
            return False
        severity = alert.get("severity")
        if severity in SEVERITIES and SEVERITIES.index(severity) < SEVERITIES.index(self.min_severity):
            return False
        return True


class Route(_Strict):
    match: Match = Field(default_factory=Match, description="which alerts (default: all)")
    targets: list[str] = Field(min_length=1, description="names of notify.targets that receive them")


class NotifyConfig(_Strict):
    """``camflow notify``: where alerts go (MQTT, webhooks) and by which rules."""

    targets: dict[str, Target] = Field(default_factory=dict, description="name -> an mqtt or webhook target")
    routes: list[Route] = Field(default_factory=list, description=(
        "an alert goes to the targets of every route it matches, once each"))
    state_dir: Path = Field(Path("var/notify"), description=(
        "where the delivery log (SQLite, <deployment>.sqlite) remembers what was sent, across restarts"))
    failures_topic: str = Field("notify-failures", min_length=1, description=(
        "Kafka topic for deliveries given up or interrupted (JSON records)"))
    evidence_base_url: str | None = Field(None, description=(
        "the console's URL (e.g. https://console.example): inline evidence images are linked as "
        "<url>/api/alerts/<alert_id>/evidence.jpg"))
    max_alert_age_s: float | None = Field(None, gt=0, description=(
        "alerts whose event time is older than this when read are not sent (e.g. after a long "
        "outage); none: send all"))
    remember_days: float = Field(30, gt=0, description="the delivery log forgets deliveries older than this")
    max_in_flight: int = Field(1000, ge=1, le=100_000, description=(
        "alerts read but not yet delivered everywhere before reading pauses"))

    @field_validator("targets")
    @classmethod
    def _target_names(cls, value: dict) -> dict:
        for name in value:
            if not TARGET_NAME.match(name):
                raise ValueError(f"target name {name!r}: 1-64 chars of a-z 0-9 _ - (lower case)")
        return value

    @model_validator(mode="after")
    def _routes_name_targets(self) -> "NotifyConfig":
        for i, route in enumerate(self.routes):
            for name in route.targets:
                if name not in self.targets:
                    raise ValueError(f"routes[{i}] names target {name!r}, which notify.targets does not define")
        return self

    def route(self, alert: dict, site: str | None) -> list[str]:
        """Names of the targets ``alert`` goes to, in config order, each once."""
        out: dict[str, None] = {}
        for route in self.routes:
            if route.match.matches(alert, site):
                out.update(dict.fromkeys(route.targets))
        return list(out)


# --------------------------------------------------------------------------- payload, topics, signing
