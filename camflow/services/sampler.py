"""Samplers: read a camera (RTSP, HTTP, file), sample it at F fps, publish FrameSamples.

Every frame is grabbed (demuxed and decoded) but only the sampled ones are retrieved
(converted to BGR and copied out): ``grab()`` for the frames in between, ``retrieve()`` for
the ones sent. Capture times come from the stream's own timestamps (``CAP_PROP_POS_MSEC``).

Files replay as fast as the broker takes them, with capture times spaced as in the video and
ending now, so event-time windows see the real cadence; ``realtime=True`` paces them and
stamps them from now on.
Live streams are sampled on their own timestamps, anchored to the wall clock
(``StreamClock``), and reopened with exponential backoff when they fail. RTSP asks for the
camera's ``rtsp_transport`` (tcp by default, or udp) through OpenCV's FFmpeg options.
"""
from __future__ import annotations

import math
import os
import socket
import sys
import threading
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
RTSP_SCHEMES = ("rtsp", "rtsps")
RTSP_TRANSPORTS = ("tcp", "udp")
SNAPSHOT_SUFFIXES = (".jpg", ".jpeg", ".png")
# OpenCV's FFmpeg backend reads its demuxer options from this variable at every open
# ("key;value|key;value"); without it OpenCV asks RTSP servers for TCP.
CAPTURE_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
# The variable is process-wide: opens that set it are serialised (samplers of several cameras
# in one process open one at a time; reading frames is not affected).
_capture_env_lock = threading.Lock()


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


def is_rtsp(source: str) -> bool:
    return urlparse(source).scheme.lower() in RTSP_SCHEMES


def capture_options(current: str | None, rtsp_transport: str) -> str:
    """OpenCV's FFmpeg capture options ``current`` (``key;value|key;value``, may be empty) with
    ``rtsp_transport`` set to the given one (the camera's setting wins over the environment)."""
    pairs = [p for p in (current or "").split("|")
             if p.strip() and p.split(";", 1)[0].strip() != "rtsp_transport"]
    return "|".join(pairs + [f"rtsp_transport;{rtsp_transport}"])


def _check_transport(rtsp_transport: str) -> str:
    if rtsp_transport not in RTSP_TRANSPORTS:
        raise ValueError(f"rtsp_transport must be one of {RTSP_TRANSPORTS}, not {rtsp_transport!r}")
    return rtsp_transport


def _video_capture(source: str, decode_threads: int | None) -> cv2.VideoCapture:
    if decode_threads is None:
        return cv2.VideoCapture(source)
    return cv2.VideoCapture(source, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, int(decode_threads)])


def open_capture(source: str, rtsp_transport: str = "tcp",
                 decode_threads: int | None = None) -> cv2.VideoCapture:
    """An opened ``VideoCapture`` of a file or stream; an ``rtsp://`` source asks the server for
    ``rtsp_transport`` (``OPENCV_FFMPEG_CAPTURE_OPTIONS`` set for this open only, then restored).
    ``decode_threads``: the decoder's threads (None: OpenCV's default, one per core; 1 costs
    less CPU per frame where many cameras share a machine, see bench/README.md)."""
    _check_transport(rtsp_transport)
    if not is_stream(source):
        path = Path(source.removeprefix("file://"))
        if not path.is_file():
            raise SourceError(f"cannot open video source {redact(source)!r}: no such file")
        source = str(path)
    if is_rtsp(source):
        with _capture_env_lock:
            previous = os.environ.get(CAPTURE_OPTIONS_ENV)
            os.environ[CAPTURE_OPTIONS_ENV] = capture_options(previous, rtsp_transport)
            try:
                capture = _video_capture(source, decode_threads)
            finally:
                if previous is None:
                    os.environ.pop(CAPTURE_OPTIONS_ENV, None)
                else:
                    os.environ[CAPTURE_OPTIONS_ENV] = previous
        if not capture.isOpened():
            other = RTSP_TRANSPORTS[1 - RTSP_TRANSPORTS.index(rtsp_transport)]
            raise SourceError(
                f"cannot open video source {redact(source)!r} over RTSP/{rtsp_transport.upper()} "
                f"(rtsp_transport {rtsp_transport}): OpenCV/FFmpeg could not open it (wrong URL, "
                f"unsupported codec, camera unreachable, or a server that does not offer "
                f"{rtsp_transport}: try rtsp_transport {other})")
        return capture
    capture = _video_capture(source, decode_threads)
    if not capture.isOpened():
        raise SourceError(f"cannot open video source {redact(source)!r}: OpenCV/FFmpeg could not open it "
                          "(wrong URL, unsupported codec, or camera unreachable)")
    return capture


def _position_ms(capture: cv2.VideoCapture) -> float | None:
    """The grabbed frame's presentation time in the stream (ms), None when it has none."""
    pos = capture.get(cv2.CAP_PROP_POS_MSEC)
    return pos if pos is not None and math.isfinite(pos) and pos >= 0 else None


def duration_ms(capture: cv2.VideoCapture) -> float:
    """A video file's length: its frame count at its nominal rate."""
    return capture.get(cv2.CAP_PROP_FRAME_COUNT) * 1000.0 / (capture.get(cv2.CAP_PROP_FPS) or 25.0)


def video_duration_ms(source: str) -> int:
    capture = open_capture(source)
    try:
        return int(duration_ms(capture))
    finally:
        capture.release()


def sample_file(source: str, fps: float, start_ms: int | None = None,
                realtime: bool = False, max_frames: int | None = None,
                decode_threads: int | None = None) -> Iterator[SampledFrame]:
    """Frames of a video file at ``fps``; sequence is the source frame index (stable on replay).

    Capture time = ``start_ms`` + the frame's timestamp in the file (``CAP_PROP_POS_MSEC``,
    relative to the first frame; where a frame's timestamp does not advance, the previous one
    plus one frame at the file's nominal rate). Only sampled frames are retrieved."""
    capture = open_capture(source, decode_threads=decode_threads)
    native_fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    frame_ms = 1000.0 / native_fps
    now_ms = int(time.time() * 1000)
    clamp = start_ms is None
    if start_ms is None:
        # Recorded footage replays as if it had just been captured: its last frame is "now",
        # so no capture time lies in the future (the job refuses those).
        start_ms = int(now_ms - (0 if realtime else duration_ms(capture)))
    step_ms = 1000.0 / fps
    next_pos_ms = 0.0
    first_pos: float | None = None
    pos_ms = -frame_ms
    wall_start = time.monotonic()
    emitted = index = 0
    try:
        while max_frames is None or emitted < max_frames:
            if not capture.grab():
                break
            raw = _position_ms(capture)
            if raw is not None and first_pos is None:
                first_pos = raw - (pos_ms + frame_ms)
            if raw is not None and raw - first_pos > pos_ms + 1e-6:
                pos_ms = raw - first_pos
            else:  # no timestamp, or one that does not advance: the nominal frame interval
                pos_ms += frame_ms
            if pos_ms + 1e-6 >= next_pos_ms:
                next_pos_ms += step_ms
                if next_pos_ms <= pos_ms:  # a gap in the timestamps: sample from here on
                    next_pos_ms = pos_ms + step_ms
                ok, image = capture.retrieve()
                if not ok or image is None or not image.size:
                    break
                if realtime:
                    time.sleep(max(0.0, pos_ms / 1000.0 - (time.monotonic() - wall_start)))
                capture_ms = start_ms + int(round(pos_ms))
                if clamp:
                    capture_ms = min(capture_ms, int(time.time() * 1000))
                yield SampledFrame(capture_ms, index, image)
                emitted += 1
            index += 1
    finally:
        capture.release()


class StreamClock:
    """Capture times (wall-clock ms) of a live stream's frames from its own timestamps.

    A frame cannot have been captured after it arrived, so the offset between the wall clock
    and the stream's clock is taken as the smallest ``arrival - timestamp`` seen (the frame
    that came quickest): capture = offset + timestamp. Frames drained from a buffer just after
    connecting are stamped with their arrival until the stream runs at its own pace; from then
    on stamps keep the camera's cadence, not the network's jitter. The offset creeps up by
    ``drift_ppm`` of the elapsed time so that a camera clock slower than ours cannot pull the
    stamps ever further back. The clock re-anchors on arrival when timestamps go backwards or
    would put a frame more than ``max_lag_ms`` before its arrival; while they stand still
    (``stall_frames`` frames in a row, or none at all) frames are stamped with their arrival.
    Stamps never decrease. One clock per connection."""

    def __init__(self, max_lag_ms: float = 10_000.0, drift_ppm: float = 1000.0,
                 stall_frames: int = 3):
        self.max_lag_ms, self.drift_ppm, self.stall_frames = max_lag_ms, drift_ppm, stall_frames
        self._offset: float | None = None
        self._last_pos: float | None = None
        self._last_arrival: float | None = None
        self._last: int | None = None
        self._still = 0

    def __call__(self, pos_ms: float | None, arrival_ms: float) -> int:
        if pos_ms is None or not math.isfinite(pos_ms):
            self._offset, self._last_pos = None, None
            capture = float(arrival_ms)
        elif self._last_pos is not None and abs(pos_ms - self._last_pos) <= 1e-3:  # stands still
            self._still += 1
            if self._still >= self.stall_frames:
                self._offset = None  # arrival times until it moves again, then re-anchor
            capture = arrival_ms if self._offset is None else self._offset + pos_ms
        elif self._offset is None or self._last_pos is None or pos_ms < self._last_pos:
            self._offset, self._still = arrival_ms - pos_ms, 0  # (re-)anchor
            capture = float(arrival_ms)
        else:
            self._still = 0
            self._offset += max(0.0, arrival_ms - self._last_arrival) * self.drift_ppm / 1e6
            self._offset = min(self._offset, arrival_ms - pos_ms)
            if arrival_ms - (self._offset + pos_ms) > self.max_lag_ms:
                self._offset = arrival_ms - pos_ms
            capture = self._offset + pos_ms
        if pos_ms is not None and math.isfinite(pos_ms):
            self._last_pos = pos_ms
        self._last_arrival = arrival_ms
        stamp = int(round(min(capture, arrival_ms)))
        self._last = stamp if self._last is None else max(stamp, self._last)
        return self._last


def sample_stream(source: str, fps: float, max_frames: int | None = None,
                  max_backoff_s: float = 30.0, give_up_after_s: float | None = None,
                  on_reconnect=None, rtsp_transport: str = "tcp",
                  decode_threads: int | None = None) -> Iterator[SampledFrame]:
    """Frames of a live source at ``fps`` by their capture times (``StreamClock``; snapshot
    URLs by wall clock); reconnects with backoff, forever by default (``on_reconnect()``
    hears each attempt). Sequence = capture ms."""
    _check_transport(rtsp_transport)
    backoff = 0.5
    emitted = 0
    down_since: float | None = None
    step_ms = 1000.0 / fps
    next_due_ms: float | None = None
    last_ms = -1
    how = f" over RTSP/{rtsp_transport.upper()}" if is_rtsp(source) else ""
    while max_frames is None or emitted < max_frames:
        snapshot = _is_snapshot(source)
        try:
            capture = None if snapshot else open_capture(source, rtsp_transport,
                                                         decode_threads=decode_threads)
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
        clock = StreamClock()
        try:
            while max_frames is None or emitted < max_frames:
                if capture is None:
                    image = _snapshot(source)
                    if image is None:
                        raise SourceError(f"{redact(source)!r} stopped delivering frames")
                    capture_ms = int(time.time() * 1000)
                else:
                    if not capture.grab():
                        raise SourceError(f"{redact(source)!r} stopped delivering frames{how}")
                    capture_ms = clock(_position_ms(capture), time.time() * 1000)
                down_since, backoff = None, 0.5
                if capture is not None and next_due_ms is not None and capture_ms < next_due_ms:
                    continue  # grabbed, not retrieved: only what is sent is converted
                if capture is not None:
                    ok, image = capture.retrieve()
                    if not ok or image is None or not image.size:
                        raise SourceError(f"{redact(source)!r} delivered a frame that does not decode{how}")
                next_due_ms = (capture_ms if next_due_ms is None else next_due_ms) + step_ms
                if next_due_ms <= capture_ms:  # behind by more than a step: from now on
                    next_due_ms = capture_ms + step_ms
                capture_ms = max(capture_ms, last_ms + 1)
                last_ms = capture_ms
                yield SampledFrame(capture_ms, capture_ms, image)
                emitted += 1
                if capture is None:
                    time.sleep(max(0.0, next_due_ms / 1000.0 - time.time()))
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
           max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, frame_store=None,
           rtsp_transport: str = "tcp", decode_threads: int | None = None) -> IngestReport:
    """Sample ``source`` and publish FrameSamples keyed by camera; returns once all are acked.

    ``policy`` says what happens when ``max_in_flight`` frames are unacknowledged (see
    camflow/core/overload.py): keep-all waits, latest-only drops older unsent frames (counted).
    ``frame_store`` (camflow/core/frame_store.py): each JPEG goes there and the record carries only
    its reference (claim check); None sends the bytes inline. ``rtsp_transport`` (tcp, udp):
    what an ``rtsp://`` source asks its server for; ``decode_threads``: see ``open_capture``."""
    _check_transport(rtsp_transport)
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
                               on_reconnect=metrics.reconnects.inc, rtsp_transport=rtsp_transport,
                               decode_threads=decode_threads)
        bar = None
    else:
        frames = sample_file(source, fps, start_ms=start_ms, realtime=realtime, max_frames=max_frames,
                             decode_threads=decode_threads)
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
