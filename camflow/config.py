"""One YAML file configures a deployment; these typed models validate it.

Secrets never live in the YAML: Kafka credentials name environment variables or files
(``password_env`` / ``password_file``) that are read only when a client is built.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from camflow.transforms.anomaly import AnomalyConfig, LivenessConfig
from camflow.transforms.motion import MotionGateConfig
from camflow.transforms.scene import Scene

CAMERA_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Location(Strict):
    site: str = Field(description="Place name, e.g. 'Bai Vong port, arrivals hall'")
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    kind: str | None = Field(None, description="port | airport | market | square | gateway | beach | ...")


class Camera(Strict):
    id: str
    name: str = ""
    location: Location | None = None
    source: str | None = Field(None, description="rtsp://, http(s):// or a video file path")
    fps: float = Field(1.0, gt=0, le=30)
    max_width: int = Field(960, ge=64, le=7680)
    crowd_limit: int | None = Field(None, ge=1, description="persons in one frame that raise crowd_limit")
    sampler_policy: Literal["keep-all", "latest-only"] = Field("keep-all", description=(
        "when the broker cannot keep up: keep-all waits and never drops a frame; latest-only "
        "drops older unsent frames and sends the newest (camflow/overload.py)"))
    sampler_max_in_flight: int = Field(100, ge=1, description=(
        "unacknowledged frames before the sampler_policy applies"))
    scene: Scene | None = Field(None, description="zones and counting lines (normalised coordinates)")

    @field_validator("id")
    @classmethod
    def _id_format(cls, value: str) -> str:
        if not CAMERA_ID.match(value):
            raise ValueError("camera id must be 1-64 chars of a-z 0-9 _ . - (lower case)")
        return value


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


class Detector(Strict):
    model: str = "centernet-coco"
    score_threshold: float | None = Field(None, gt=0, lt=1, description="default: the model manifest's")
    nms_iou: float | None = Field(None, gt=0, lt=1, description="default: the model manifest's")
    classes: list[str] = Field(default_factory=lambda: [
        "person", "bicycle", "car", "motorcycle", "bus", "truck",
        "backpack", "handbag", "suitcase", "bottle"])
    threads: int = Field(1, ge=1, le=64, description="ONNX Runtime intra-op threads per operator instance")
    input_size: int | None = Field(None, ge=64, le=2048, multiple_of=32, description=(
        "the detector input's longest side, for models that take any frame shape ('fit' in "
        "the manifest, e.g. centernet-coco-fit); default: the manifest's. Work grows with "
        "its square; the smallest objects found shrink with it"))


class Tracking(Strict):
    high_confidence: float = Field(0.4, gt=0, lt=1, description=(
        "detections at or above this start tracks (ByteTrack's track_thresh); the default "
        "detector's scores run low, so it matches the detector's own threshold"))
    iou_threshold: float = Field(0.3, gt=0, lt=1)
    max_age_ms: int = Field(3000, ge=0)
    min_hits: int = Field(2, ge=1)


class Recognition(Strict):
    """Faces and plates are read once per track (a few good readings), not on every frame."""

    faces: bool = True
    plates: bool = True
    max_attempts: int = Field(6, ge=1, description="tries per track before giving up")
    retry_ms: int = Field(400, ge=0, description="event time between tries on one track")
    readings_per_track: int = Field(3, ge=1, description="good readings that finish a track")
    min_person_height_px: int = Field(96, ge=8, description=(
        "faces are looked for only on people at least this tall: a shorter person's face is a "
        "few pixels (6-11 px on vtest.avi's 60-150 px people), too small to recognise"))
    min_face_px: int = Field(24, ge=8, description=(
        "faces smaller than this (box height) are not embedded: the embedding would be noise "
        "and costs ~80 ms per face"))
    min_vehicle_width_px: int = Field(96, ge=8, description=(
        "plates are looked for only on vehicles at least this wide: a plate is a fifth to a "
        "third of a vehicle's width and unreadable below ~20 px (vtest.avi's 81 px van cost "
        "~25 % of the job's time in fruitless OCR before this was raised from 48)"))


class WatchlistMatching(Strict):
    """When a face or plate read becomes an alert (see transforms/watchlist.py)."""

    enabled: bool = True
    face_threshold: float = Field(0.91, gt=0, le=1, description=(
        "cosine similarity of L2-normalised dlib embeddings; calibrate with `camflow eval faces` "
        "(threshold_at_far_1e-3 was 0.903 on the development faces)"))
    face_confirmations: int = Field(2, ge=1, description="matching faces needed in one track")
    plate_confirmations: int = Field(1, ge=1)
    confirm_window_ms: int = Field(5_000, ge=0)
    cooldown_ms: int = Field(600_000, ge=0, description="one alert per subject and camera per cooldown")
    evidence_max_bytes: int = Field(64_000, ge=0, description="inline evidence JPEG cap; 0 = none")


class Limits(Strict):
    max_jpeg_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(3840 * 2160, ge=64 * 64)
    max_future_skew_ms: int = Field(60_000, ge=0)
    max_age_ms: int = Field(7 * 24 * 3600 * 1000, ge=0)


class Job(Strict):
    parallelism: int = Field(1, ge=1)
    checkpoint_interval_ms: int = Field(10_000, ge=500)
    python_bundle_ms: int = Field(100, ge=1, description=(
        "PyFlink flushes a Python operator's batch after this long (Flink's default, 1000 ms, "
        "adds about a second of latency per Python stage)"))
    python_bundle_size: int = Field(100, ge=1, description="...or after this many records")
    checkpoint_dir: str | None = Field(None, description="file:// or s3:// URI for retained checkpoints")
    window_ms: int = Field(60_000, ge=1000, description="tumbling window: counts, crowd rule, anomaly score")
    sliding_window_ms: int = Field(300_000, ge=0, description=(
        "sliding window (sliding by window_ms) for smoother counts; 0 turns it off"))
    out_of_orderness_ms: int = Field(5_000, ge=0)
    idleness_ms: int = Field(10_000, ge=100, description="a silent partition stops holding back the watermark after this")
    allowed_lateness_ms: int = Field(0, ge=0)
    default_crowd_limit: int | None = Field(None, ge=1)
    detector: Detector = Detector()
    # The detector runs only on frames that changed since it last ran (transforms/motion.py).
    motion_gate: MotionGateConfig = MotionGateConfig()
    tracking: Tracking = Tracking()
    recognition: Recognition = Recognition()
    watchlist: WatchlistMatching = WatchlistMatching()
    anomaly: AnomalyConfig = AnomalyConfig()
    liveness: LivenessConfig = LivenessConfig()
    limits: Limits = Limits()
    reject_unknown_cameras: bool = Field(True, description="frames from cameras not in the config go to dead-letters")
    flink_options: dict[str, str] = Field(default_factory=dict, description=(
        "extra Flink options for the job, e.g. {'rest.port': '8082'} to serve the embedded "
        "mini-cluster's REST API (metrics) on a fixed port, or a metrics reporter"))
    rest_url: str | None = Field("http://localhost:8081", description=(
        "Flink REST API that `camflow status` asks for job health (None: do not ask)"))


class Store(Strict):
    url: str = Field("duckdb:///var/camflow.duckdb", description="duckdb:///PATH or postgresql://...")
    embedding_retention_days: float = Field(7, gt=0, description=(
        "face embeddings of faces that matched no watchlist subject are personal data: the "
        "sink deletes them this long after capture (matched faces are kept)"))


PASSWORD_HASH = re.compile(r"^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$")


class ConsoleUser(Strict):
    """An operator console login; ``password_hash`` from ``camflow console hash-password``."""

    name: str = Field(min_length=1, max_length=64)
    role: Literal["operator", "viewer"] = Field(description="operator: acknowledge/dismiss; viewer: read only")
    password_hash: str = Field(description="scrypt$N$r$p$salt$hash (never the password itself)")

    @field_validator("password_hash")
    @classmethod
    def _hash_format(cls, value: str) -> str:
        if not PASSWORD_HASH.match(value):
            raise ValueError("must be a hash from `camflow console hash-password` "
                             "(scrypt$N$r$p$salt$hash), never a plain password")
        return value


class Console(Strict):
    """``camflow console``: live alerts, acknowledgements, camera status, subjects."""

    host: str = Field("127.0.0.1", description="bind address; expose it only behind TLS")
    port: int = Field(8090, ge=1, le=65535)
    users: list[ConsoleUser] = Field(default_factory=list)
    secret_env: str | None = Field("CAMFLOW_CONSOLE_SECRET", description=(
        "environment variable holding the session-signing secret"))
    secret_file: Path | None = Field(None, description="...or a file holding it")
    session_max_age_s: int = Field(8 * 3600, ge=60)
    offline_after_s: float = Field(60, gt=0, description="a camera without frames this long is offline")
    recent_alerts: int = Field(200, ge=1, le=10_000, description="alerts the live feed keeps in memory")
    lookback_hours: float = Field(24, gt=0, description="the live feed starts this far back in the topic")

    @model_validator(mode="after")
    def _unique_users(self) -> "Console":
        names = [u.name for u in self.users]
        if len(names) != len(set(names)):
            raise ValueError("console user names must be unique")
        return self

    def secret(self) -> str | None:
        if self.secret_file:
            return self.secret_file.read_text().strip() or None
        if self.secret_env:
            return os.environ.get(self.secret_env) or None
        return None


class FrameStore(Strict):
    """Claim check (camflow/frame_store.py): samplers put each JPEG here and publish only its
    reference, so the bytes never travel through Kafka and Flink's exchanges."""

    url: str = Field(description="file:///dir (tmpfs or a mount every TaskManager reads) or s3://bucket/prefix")
    endpoint_url: str | None = Field(None, description="S3 API endpoint for non-AWS stores (MinIO, Ceph)")
    retention_minutes: float = Field(60, gt=0, description=(
        "file stores: frames older than this are deleted by `camflow frames prune`; S3: set "
        "the bucket's lifecycle rule to the same age"))

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("file://", "s3://")):
            raise ValueError("must be file:///path or s3://bucket/prefix")
        return value


class Config(Strict):
    deployment: str = "camflow"
    cameras: list[Camera] = Field(default_factory=list)
    kafka: Kafka = Kafka()
    frame_store: FrameStore | None = Field(None, description=(
        "none: JPEGs travel inline in the frames topic (simplest; fine for a few cameras)"))
    job: Job = Job()
    store: Store = Store()
    console: Console = Console()

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
