"""Samplers: read a camera (RTSP, HTTP, file), sample it at F fps, publish FrameSamples.

Files replay as fast as the broker takes them, with capture times spaced as in the video and
ending now, so event-time windows see the real cadence; ``realtime=True`` paces them and
stamps them from now on.
Live streams are sampled by wall clock and reopened with exponential backoff when they fail.
"""
from __future__ import annotations

import os
import socket
import sys
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import cv2
import numpy as np

from camflow.schemas.codec import AvroCodec
from camflow.transforms.dead_letters import redact
from camflow.transforms.frames import encode_jpeg, resize_to_max_width

from camflow.config import Kafka
from camflow.core.kafka import ReliablePublisher
from camflow.services.metrics import SamplerMetrics
from camflow.core.overload import DEFAULT_MAX_IN_FLIGHT

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")
SNAPSHOT_SUFFIXES = (".jpg", ".jpeg", ".png")


class SourceError(RuntimeError):
    """A camera source that cannot be opened or read. Its message never holds the source's
    credentials (``rtsp://user:***@host``): it is printed on every reconnect."""

    def __init__(self, message: str):
        super().__init__(redact(message))


@dataclass
class SampledFrame:
    capture_ms: int
    sequence: int
    image: np.ndarray


def is_stream(source: str) -> bool:
    return urlparse(source).scheme.lower() in STREAM_SCHEMES


def open_capture(source: str) -> cv2.VideoCapture:
    if not is_stream(source):
        path = Path(source.removeprefix("file://"))
        if not path.is_file():
            raise SourceError(f"cannot open video source {redact(source)!r}: no such file")
        source = str(path)
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise SourceError(f"cannot open video source {redact(source)!r}: OpenCV/FFmpeg could not open it "
                          "(wrong URL, unsupported codec, or camera unreachable)")
    return capture


def sample_file(source: str, fps: float, start_ms: int | None = None,
                realtime: bool = False, max_frames: int | None = None) -> Iterator[SampledFrame]:
    """Frames of a video file at ``fps``; sequence is the source frame index (stable on replay)."""
    capture = open_capture(source)
    native_fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    if start_ms is None:
        # Recorded footage replays as if it had just been captured: its last frame is "now",
        # so no capture time lies in the future (the job refuses those).
        duration_ms = capture.get(cv2.CAP_PROP_FRAME_COUNT) * 1000.0 / native_fps
        start_ms = int(time.time() * 1000 - (0 if realtime else duration_ms))
    step_ms = 1000.0 / fps
    next_pos_ms = 0.0
    wall_start = time.monotonic()
    emitted = index = 0
    try:
        while max_frames is None or emitted < max_frames:
            ok, image = capture.read()
            if not ok:
                break
            pos_ms = index * 1000.0 / native_fps  # container timestamps are unreliable in AVI
            if pos_ms + 1e-6 >= next_pos_ms:
                next_pos_ms += step_ms
                if realtime:
                    time.sleep(max(0.0, pos_ms / 1000.0 - (time.monotonic() - wall_start)))
                yield SampledFrame(start_ms + int(round(pos_ms)), index, image)
                emitted += 1
            index += 1
    finally:
        capture.release()


def sample_stream(source: str, fps: float, max_frames: int | None = None,
                  max_backoff_s: float = 30.0, give_up_after_s: float | None = None,
                  on_reconnect=None) -> Iterator[SampledFrame]:
    """Frames of a live source by wall clock; reconnects with backoff, forever by default
    (``on_reconnect()`` hears each attempt)."""
    backoff = 0.5
    emitted = 0
    down_since: float | None = None
    next_due = 0.0
    while max_frames is None or emitted < max_frames:
        try:
            capture = open_capture(source) if not _is_snapshot(source) else None
        except SourceError as exc:
            down_since = down_since or time.monotonic()
            if give_up_after_s is not None and time.monotonic() - down_since > give_up_after_s:
                raise
            print(f"camflow ingest: {redact(exc)}; retrying in {backoff:.1f}s", file=sys.stderr)
            if on_reconnect is not None:
                on_reconnect()
            time.sleep(backoff)
            backoff = min(max_backoff_s, backoff * 2)
            continue
        try:
            while max_frames is None or emitted < max_frames:
                image = _snapshot(source) if capture is None else _grab(capture)
                if image is None:
                    raise SourceError(f"{redact(source)!r} stopped delivering frames")
                down_since, backoff = None, 0.5
                now = time.monotonic()
                if now < next_due:
                    continue  # drain the stream's buffer so the next sample is fresh
                next_due = now + 1.0 / fps
                capture_ms = int(time.time() * 1000)
                yield SampledFrame(capture_ms, capture_ms, image)
                emitted += 1
                if capture is None:
                    time.sleep(max(0.0, next_due - time.monotonic()))
        except SourceError as exc:
            down_since = down_since or time.monotonic()
            print(f"camflow ingest: {redact(exc)}; reconnecting in {backoff:.1f}s", file=sys.stderr)
            if on_reconnect is not None:
                on_reconnect()
            time.sleep(backoff)
            backoff = min(max_backoff_s, backoff * 2)
        finally:
            if capture is not None:
                capture.release()


def _is_snapshot(source: str) -> bool:
    parsed = urlparse(source)
    return parsed.scheme in ("http", "https") and parsed.path.lower().endswith(SNAPSHOT_SUFFIXES)


def _grab(capture: cv2.VideoCapture) -> np.ndarray | None:
    ok, image = capture.read()
    return image if ok and image is not None and image.size else None


def _snapshot(url: str) -> np.ndarray | None:
    import requests
    try:
        response = requests.get(url, timeout=5)
        response.raise_for_status()
    except requests.RequestException:
        return None
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    return image


@dataclass
class IngestReport:
    camera_id: str
    frames: int = 0
    bytes: int = 0
    seconds: float = 0.0
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    producer_restarts: int = 0
    policy: str = "keep-all"
    dropped: int = 0  # latest-only: older unsent frames dropped while the broker was behind


def ingest(kafka: Kafka, camera_id: str, source: str, fps: float, max_width: int = 960,
           quality: int = 85, max_frames: int | None = None, realtime: bool = False,
           start_ms: int | None = None, progress: bool | None = None,
           sampler_id: str | None = None, policy: str = "keep-all",
           max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, frame_store=None) -> IngestReport:
    """Sample ``source`` and publish FrameSamples keyed by camera; returns once all are acked.

    ``policy`` says what happens when ``max_in_flight`` frames are unacknowledged (see
    camflow/core/overload.py): keep-all waits, latest-only drops older unsent frames (counted).
    ``frame_store`` (camflow/core/frame_store.py): each JPEG goes there and the record carries only
    its reference (claim check); None sends the bytes inline."""
    codec = AvroCodec("FrameSample", kafka.registry_conf(), subject=f"{kafka.topics.frames}-value")
    metrics = SamplerMetrics(camera_id)  # served by `camflow ingest --metrics-port`
    publisher = ReliablePublisher(kafka, kafka.topics.frames, policy=policy,
                                  max_in_flight=max_in_flight, label=camera_id,
                                  on_ack=metrics.acked, on_rotate=metrics.producer_restarts.inc)
    # weakly: the process-wide gauge must not keep this run's publisher (and its producer,
    # still reconnecting to its broker) alive after ingest returns
    publisher_ref = weakref.ref(publisher)
    metrics.unacknowledged.set_function(
        lambda: len(publisher_ref().pending) if publisher_ref() is not None else 0)
    sampler_id = sampler_id or f"{socket.gethostname()}:{os.getpid()}"
    report = IngestReport(camera_id, policy=policy)
    started = time.monotonic()
    if is_stream(source):
        frames = sample_stream(source, fps, max_frames=max_frames,
                               on_reconnect=metrics.reconnects.inc)
        bar = None
    else:
        frames = sample_file(source, fps, start_ms=start_ms, realtime=realtime, max_frames=max_frames)
        bar = _progress_bar(source, fps, max_frames, progress)
    key = camera_id.encode()
    for frame in frames:
        metrics.sampled.inc()
        image = resize_to_max_width(frame.image, max_width)
        jpeg, ref = encode_jpeg(image, quality), None
        if frame_store is not None:  # stored before it is published: the job never waits for it
            jpeg, ref = None, frame_store.put(camera_id, frame.capture_ms, frame.sequence, jpeg)
        value = codec.encode({
            "camera_id": camera_id, "capture_ms": frame.capture_ms, "sequence": frame.sequence,
            "jpeg": jpeg, "jpeg_ref": ref, "width": int(image.shape[1]),
            "height": int(image.shape[0]), "sampler_id": sampler_id,
        })
        dropped_before = publisher.backlog.dropped
        publisher.send(frame.sequence, key, value, frame.capture_ms)
        if publisher.backlog.dropped > dropped_before:
            metrics.dropped("latest_only", publisher.backlog.dropped - dropped_before)
        metrics.published.inc()
        report.frames += 1
        report.bytes += len(value)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    try:
        publisher.close(timeout_s=180)
    except RuntimeError as exc:
        metrics.dropped("unacknowledged", len(publisher.pending))
        raise RuntimeError(f"{camera_id}: {redact(exc)}") from exc
    report.seconds = time.monotonic() - started
    report.producer_restarts = publisher.rotations
    report.dropped = publisher.backlog.dropped
    report.next_offsets = dict(publisher.next_offsets)
    return report


def _progress_bar(source: str, fps: float, max_frames: int | None, progress: bool | None):
    from tqdm import tqdm
    capture = cv2.VideoCapture(source.removeprefix("file://"))
    total_frames = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    native_fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    capture.release()
    total = int(total_frames / native_fps * fps) + 1 if total_frames > 0 else None
    if max_frames is not None:
        total = min(total or max_frames, max_frames)
    disable = (not sys.stderr.isatty()) if progress is None else not progress
    return tqdm(total=total, unit="frame", desc=f"ingest {Path(source).name}", disable=disable)
