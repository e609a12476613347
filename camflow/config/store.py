"""The analysts' SQL store and the claim-check frame store."""
from __future__ import annotations

from pydantic import Field, field_validator

from camflow.config.base import Strict


class Store(Strict):
    url: str = Field("duckdb:///var/camflow.duckdb", description="duckdb:///PATH or postgresql://...")
    embedding_retention_days: float = Field(7, gt=0, description=(
        "face embeddings of faces that matched no watchlist subject are personal data: the "
        "sink deletes them this long after capture (matched faces are kept)"))


class FrameStore(Strict):
    """Claim check (camflow/core/frame_store.py): samplers put each JPEG here and publish only its
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
