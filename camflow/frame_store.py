"""Claim check for frames: the sampler puts each JPEG in a frame store and publishes only its
reference (``FrameSample.jpeg_ref``); the job reads the bytes where it decodes them.

Why: a 960-px JPEG is 50-150 KB. Carried inline it is copied through every hop of the job
before the keyed analysis (Kafka fetch, the Python admit step and back, the keyed exchange,
the Python analysis). With 2 TaskManagers on 2 cores those copies made parallelism 2 slower
than 1; claim-checked, it is faster (bench/README.md). A reference is ~80 bytes.

Stores, by URL:
- ``file:///dev/shm/camflow-frames``: a directory every TaskManager can read (a tmpfs on one
  machine, or a shared mount); ``prune`` deletes frames past retention.
- ``s3://bucket/prefix``: any S3 API (MinIO, Ceph, AWS); ``endpoint_url`` for non-AWS.
  Retention is the bucket's lifecycle rule.

A frame that is not in the store (expired, never written) is ``None``: the job dead-letters it
as ``missing_image``. A reference outside the store (another directory, another bucket) is
refused the same way, so a hostile record cannot make the job read arbitrary files. A store
that cannot be reached raises: a transient outage fails the task, which Flink restarts from
its checkpoint, rather than dead-lettering every frame.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse


class FrameRefError(ValueError):
    """A reference this store does not serve (wrong scheme, outside the store)."""


def frame_key(camera_id: str, capture_ms: int, sequence: int) -> str:
    """Store key of one frame: per camera, ordered by capture time, unique per sequence."""
    safe_camera = "".join(c if c.isalnum() or c in "-_." else "_" for c in camera_id)
    return f"{safe_camera}/{capture_ms:013d}-{sequence}.jpg"


class FileFrameStore:
    """Frames as files under one root directory (tmpfs or a shared mount)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def put(self, camera_id: str, capture_ms: int, sequence: int, jpeg: bytes) -> str:
        path = self.root / frame_key(camera_id, capture_ms, sequence)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        partial.write_bytes(jpeg)
        os.replace(partial, path)  # readers never see half a frame
        return path.as_uri()

    def _path(self, ref: str) -> Path:
        parsed = urlparse(ref)
        if parsed.scheme != "file":
            raise FrameRefError(f"jpeg_ref {ref!r} is not a file:// reference of {self.url}")
        path = Path(parsed.path).resolve()
        if not path.is_relative_to(self.root):
            raise FrameRefError(f"jpeg_ref {ref!r} is outside the frame store {self.url}")
        return path

    def get(self, ref: str) -> bytes | None:
        try:
            return self._path(ref).read_bytes()
        except FileNotFoundError:
            return None

    def prune(self, older_than_ms: int) -> int:
        """Deletes frames captured before ``older_than_ms``; returns how many."""
        removed = 0
        for path in self.root.glob("*/*.jpg"):
            try:
                captured = int(path.name.split("-", 1)[0])
            except ValueError:
                continue
            if captured < older_than_ms:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


class S3FrameStore:
    """Frames as objects under ``s3://bucket/prefix`` (boto3; credentials from the usual
    AWS environment or files)."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, client=None):
        import boto3

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = client or boto3.client("s3", endpoint_url=endpoint_url)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, camera_id: str, capture_ms: int, sequence: int, jpeg: bytes) -> str:
        key = self._key(frame_key(camera_id, capture_ms, sequence))
        self.client.put_object(Bucket=self.bucket, Key=key, Body=jpeg, ContentType="image/jpeg")
        return f"s3://{self.bucket}/{key}"

    def get(self, ref: str) -> bytes | None:
        parsed = urlparse(ref)
        key = parsed.path.lstrip("/")
        in_prefix = key.startswith(self.prefix + "/") if self.prefix else True
        if parsed.scheme != "s3" or parsed.netloc != self.bucket or not in_prefix:
            raise FrameRefError(f"jpeg_ref {ref!r} is outside the frame store {self.url}")
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None


def open_frame_store(url: str, endpoint_url: str | None = None):
    """The store behind ``url``: ``file:///path`` (or a plain path) or ``s3://bucket/prefix``."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        return S3FrameStore(parsed.netloc, parsed.path, endpoint_url=endpoint_url)
    if parsed.scheme in ("file", ""):
        return FileFrameStore(parsed.path if parsed.scheme else url)
    raise ValueError(f"frame store {url!r}: use file:///path or s3://bucket/prefix")



def configured_store(config):
    """The deployment's store (``frame_store`` in the config), or None: JPEGs travel inline."""
    if config.frame_store is None:
        return None
    return open_frame_store(config.frame_store.url, config.frame_store.endpoint_url)
