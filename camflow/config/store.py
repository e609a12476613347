"""The analysts' SQL store and the claim-check frame store."""
from __future__ import annotations

from pydantic import Field, field_validator

from camflow.config.base import Strict


class Retention(Strict):
    """How long the analyst store keeps each kind of personal data (days after capture); the
    sink deletes what is older (SECURITY.md has the table, topics included)."""

    matched_embeddings_days: float = Field(365, gt=0, description=(
        "face embeddings that matched a watchlist subject (evidence of a sighting)"))
    sightings_days: float = Field(365, gt=0, description="confirmed watchlist sightings")
    alerts_days: float = Field(365, gt=0, description="alerts, their evidence crops and operator actions")
    evidence_days: float = Field(30, gt=0, description=(
        "evidence crops of alerts (faces, plates), kept shorter than the alerts themselves"))
    frame_analyses_days: float = Field(30, gt=0, description=(
        "per-frame analyses (boxes, tracks, plate texts: movement of identifiable people)"))
    vehicle_plates_days: float = Field(90, gt=0, description="each vehicle track's fused plate read")
    sink_rejects_days: float = Field(7, gt=0, description="records the store refused, with their raw payloads")
    access_audit_days: float = Field(730, gt=0, description="who searched or viewed evidence, and when")


class Store(Strict):
    url: str = Field("duckdb:///var/camflow.duckdb", description=(
        "duckdb:///PATH or postgresql://user@host/db (never a password here: password_env)"))
    password_env: str | None = Field(None, description=(
        "environment variable holding the PostgreSQL password"))
    password_file: str | None = Field(None, description="...or a file holding it")
    embedding_retention_days: float = Field(7, gt=0, description=(
        "face embeddings of faces that matched no watchlist subject are personal data: the "
        "sink deletes them this long after capture"))
    retention: Retention = Field(default_factory=Retention, description=(
        "how long every other kind of personal data is kept"))

    def password(self) -> str | None:
        if self.password_file:
            with open(self.password_file, encoding="utf-8") as f:
                return f.read().strip() or None
        if self.password_env:
            import os
            value = os.environ.get(self.password_env)
            if value is None:
                raise RuntimeError(f"environment variable {self.password_env} (store password) is not set")
            return value
        return None


def _object_store_url(value: str) -> str:
    """The frame store's and the evidence store's backends: a directory or an S3 prefix."""
    if not value.startswith(("file://", "s3://")):
        raise ValueError("must be file:///path or s3://bucket/prefix")
    return value


class FrameStore(Strict):
    """Claim check (camflow/core/frame_store.py): samplers put each JPEG here and publish only its
    reference, so the bytes never travel through Kafka and Flink's exchanges."""

    url: str = Field(description="file:///dir (tmpfs or a mount every TaskManager reads) or s3://bucket/prefix")
    endpoint_url: str | None = Field(None, description="S3 API endpoint for non-AWS stores (MinIO, Ceph)")
    retention_minutes: float = Field(60, gt=0, description=(
        "file stores: frames older than this are deleted by `camflow frames prune`; S3: set "
        "the bucket's lifecycle rule to the same age"))

    _scheme = field_validator("url")(_object_store_url)


class EvidenceStore(Strict):
    """Where each alert's pictures go (camflow/core/evidence_store.py): a snapshot written by
    the operator that raises the alert, and a short clip assembled from the claim-checked
    frames around it. Objects are named by alert id, so a replay rewrites the same object."""

    url: str = Field(description=(
        "file:///dir (a directory every TaskManager, the sink and the console reach) or "
        "s3://bucket/prefix, its own prefix beside the frame store's"))
    endpoint_url: str | None = Field(None, description="S3 API endpoint for non-AWS stores (MinIO, Ceph)")
    retention_days: float = Field(30, gt=0, description=(
        "file stores: snapshots and clips older than this are deleted by `camflow frames "
        "prune`; S3: the bucket's lifecycle rule"))
    max_snapshot_bytes: int = Field(200_000, ge=10_000, description=(
        "a snapshot is re-encoded at lower quality, then smaller, until it fits"))
    max_snapshot_width: int = Field(1280, ge=160, description="snapshots wider than this are scaled down")
    clip_before_s: float = Field(5.0, ge=0, description="a clip starts this long before the alert")
    clip_after_s: float = Field(5.0, ge=0, description="...and ends this long after it")
    clip_fps: float = Field(5.0, gt=0, le=30, description=(
        "the clip's frame rate: each sampled frame is shown for as long as it lasted, so the "
        "clip plays in real time whatever the sampling rate"))
    clip_types: list[str] = Field(default_factory=lambda: ["*"], description=(
        "alert types that get a clip ('*': every type that has frames around it)"))
    clip_wait_s: float = Field(30.0, gt=0, description=(
        "the sink waits this long (wall clock) for the frames after an alert before it "
        "assembles the clip from what is there"))

    _scheme = field_validator("url")(_object_store_url)

    def wants_clip(self, alert_type: str) -> bool:
        return alert_type != "camera_offline" and ("*" in self.clip_types or alert_type in self.clip_types)
