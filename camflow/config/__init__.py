"""One YAML file configures a deployment; these typed models validate it.

Each domain owns its settings model and their one default (``camflow/config/*.py`` for the
deployment's own parts, ``transforms/`` for the perception and rule settings); ``Config``
composes them. ``camflow config check --config FILE`` validates a file and prints the
normalised result; ``camflow config schema`` prints the JSON Schema for editors.

Secrets never live in the YAML: credentials name environment variables or files
(``password_env`` / ``password_file``) that are read only when a client is built.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from camflow.config.base import Strict
from camflow.config.cameras import CAMERA_ID, Camera, DetectorOverrides, Location
from camflow.config.console import Console, ConsoleUser
from camflow.config.job import Job
from camflow.config.kafka import Kafka, KafkaSecurity, Topics
from camflow.config.notify import NotifyConfig
from camflow.config.store import EvidenceStore, FrameStore, Store

__all__ = ["CAMERA_ID", "Camera", "Config", "ConfigError", "Console", "ConsoleUser",
           "DetectorOverrides", "EvidenceStore", "FrameStore", "Job", "Kafka", "KafkaSecurity",
           "Location", "NotifyConfig", "Store", "Topics", "load_config"]


class Config(Strict):
    deployment: str = Field("camflow", description="name of this deployment (the job is camflow-<deployment>)")
    time_zone: str = Field("UTC", description=(
        "IANA time zone people read times in (console, report, notifications), e.g. "
        "Asia/Ho_Chi_Minh; records always carry UTC epoch milliseconds"))
    cameras: list[Camera] = Field(default_factory=list, description="every camera the job analyses")
    kafka: Kafka = Kafka()
    frame_store: FrameStore | None = Field(None, description=(
        "none: JPEGs travel inline in the frames topic (simplest; fine for a few cameras)"))
    evidence: EvidenceStore | None = Field(None, description=(
        "none: alerts carry no snapshot or clip (watchlist alerts still carry their crop)"))
    job: Job = Job()
    store: Store = Store()
    console: Console = Console()
    notify: NotifyConfig = Field(default_factory=NotifyConfig, description=(
        "camflow notify: alert routes to MQTT brokers and webhooks"))

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Asia/Ho_Chi_Minh)") from None
        return value

    @model_validator(mode="after")
    def _unique_cameras(self) -> "Config":
        seen: set[str] = set()
        for cam in self.cameras:
            if cam.id in seen:
                raise ValueError(f"camera id {cam.id!r} appears twice")
            seen.add(cam.id)
        return self

    def camera(self, camera_id: str) -> Camera | None:
        return next((c for c in self.cameras if c.id == camera_id), None)

    def crowd_limits(self) -> dict[str, int]:
        return {c.id: c.crowd_limit for c in self.cameras if c.crowd_limit}


class ConfigError(ValueError):
    pass


def load_config(path: str | Path | None) -> Config:
    """Read and validate a YAML config; ``None`` gives the defaults. Errors name the field."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{path}: invalid configuration:"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from exc
