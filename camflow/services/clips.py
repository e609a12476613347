"""Short H.264 clips around alerts, assembled by the sink from the claim-checked frames.

Each alert the config wants a clip for (``evidence.wants_clip``) waits in ``ClipMaker`` until
the frame store holds a frame of its camera captured at or after the clip's end (the alert
time + ``clip_after_s``), or until ``clip_wait_s`` of wall clock passed (a camera that went
quiet, a replay of old alerts); then the frames in [alert - ``clip_before_s``, alert +
``clip_after_s``] are read, encoded as one MP4 and written to the evidence store, and the
alert's row gets its ``clip_ref``. Frames already gone from the frame store (past its
retention) give no clip: that is logged, nothing is recorded.

Encoder: PyAV (FFmpeg's libx264, bundled in its wheel). OpenCV's headless wheel has no
software H.264 encoder (its ``avc1`` writer only tries ``h264_v4l2m2m`` hardware, which fails
on a server), and browsers play H.264 but not OpenCV's ``mp4v``.
"""
from __future__ import annotations

import bisect
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Sequence

import cv2
import numpy as np

from camflow.core.frame_store import FrameRefError
from camflow.transforms.alert_text import evidence_of
from camflow.transforms.frames import BadFrame, decode_jpeg

# A poll lists each camera with pending clips in the frame store (a directory listing or an
# S3 list call): once a second is plenty against clips that wait ~5 s for their frames.
POLL_EVERY_S = 1.0
# Encoding runs in the sink's loop: past this much work in one poll, the rest wait for the
# next one, so that consuming never stalls for long behind a burst of alerts.
POLL_BUDGET_S = 2.0
# "No upper bound" for a frame listing (capture ms; zero-padded keys have 13 digits).
_LATEST_MS = 9_999_999_999_999


@dataclass(frozen=True)
class EncodedClip:
    data: bytes  # the MP4 file
    frames: int  # video frames in it (fps x its duration)
    width: int
    height: int
    source_frames: int  # camera frames it was made of (those that decoded)


def _even(n: int) -> int:
    """H.264 in 4:2:0 needs an even width and height."""
    return max(2, n - n % 2)


def encode_clip(frames: Sequence[tuple[int, bytes]], fps: float) -> EncodedClip:
    """``(capture_ms, jpeg)`` frames -> an H.264 MP4 at ``fps`` that plays in real time.

    Cameras are sampled slower than a video plays (1-5 fps), so each frame is held until the
    next one's capture time: output frame k shows the latest frame captured at or before
    ``first + k/fps``. The last frame is held for the median gap between frames (1/fps when
    there is one frame). Every frame is scaled to the first one's size (made even). JPEGs that
    do not decode are skipped; ``ValueError`` when none does."""
    images: list[tuple[int, np.ndarray]] = []
    for capture_ms, jpeg in sorted(frames, key=lambda f: f[0]):
        try:
            images.append((int(capture_ms), decode_jpeg(jpeg)))
        except BadFrame:
            continue  # a corrupt or truncated frame: the previous one is held over its time
    if not images:
        raise ValueError("no frame of the clip could be decoded")
    times = [t for t, _ in images]
    gaps = [b - a for a, b in zip(times, times[1:]) if b > a]
    last_hold_ms = statistics.median(gaps) if gaps else 1000.0 / fps
    duration_ms = times[-1] - times[0] + last_hold_ms
    count = max(1, round(duration_ms * fps / 1000.0))
    height, width = (_even(n) for n in images[0][1].shape[:2])
    # A temporary file, not memory: faststart (the index first, so a browser starts playing
    # before the whole file came) rewrites the file in a second pass, by name.
    with tempfile.TemporaryDirectory(prefix="camflow-clip-") as folder:
        path = os.path.join(folder, "clip.mp4")
        _write_mp4(path, images, times, count, fps, width, height)
        with open(path, "rb") as written:
            data = written.read()
    return EncodedClip(data, count, width, height, len(images))


def _write_mp4(path: str, images: list[tuple[int, np.ndarray]], times: list[int], count: int,
               fps: float, width: int, height: int) -> None:
    import av  # here, not at import: the sink imports this module only when clips are on

    with av.open(path, mode="w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # veryfast: the sink encodes on the consumer's loop; crf 26 keeps a 10 s clip of
        # 960-px frames in the hundreds of KB (held frames cost almost nothing).
        stream.options = {"preset": "veryfast", "crf": "26"}
        shown, frame = -1, None  # the source frame on screen, converted once while held
        for k in range(count):
            index = bisect.bisect_right(times, times[0] + k * 1000.0 / fps) - 1
            if index != shown:
                image = images[index][1]
                if image.shape[:2] != (height, width):
                    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
                shown, frame = index, av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = k  # the stream's time base is 1/fps
            container.mux(stream.encode(frame))
        container.mux(stream.encode())  # flush the encoder's delayed frames


@dataclass
class PendingClip:
    alert: dict  # the alert record (alert_id, camera_id, time_ms, ...)
    start_ms: int  # the clip's first and last capture times
    end_ms: int
    arrived_s: float  # when the sink got the alert (monotonic clock)


def _log(message: str) -> None:
    print(f"camflow sink: {message}", file=sys.stderr)


def moment_ms(alert: dict) -> int:
    """What a clip is centred on: the frame the alert's snapshot shows (``frame_ms`` in its
    evidence: a window alert's busiest frame), else the alert's time."""
    frame_ms = evidence_of(alert).get("frame_ms")
    return int(frame_ms) if isinstance(frame_ms, int) else int(alert["time_ms"])


class ClipMaker:
    """The sink's clips: ``offer(alert)`` after the alert's row is committed, ``poll()`` in
    the sink's loop (makes the clips whose frames are in), ``flush()`` before the sink stops.

    State: ``pending``, alert id -> PendingClip, in memory only (a clip still waiting when the
    sink stops is made by ``flush`` from the frames there, or not at all if it was killed)."""

    def __init__(self, settings, frames, evidence, store, clock: Callable[[], float] = time.monotonic,
                 log: Callable[[str], None] = _log):
        try:
            import av  # noqa: F401 -- a missing encoder shows when the sink starts, not per clip
        except ImportError as exc:
            raise RuntimeError(f"alert clips need PyAV (pip install av): {exc}") from None
        self.settings = settings  # config.evidence (camflow.config.store.EvidenceStore)
        self.frames = frames  # the frame store: frames_between, get
        self.evidence = evidence  # camflow.core.evidence_store.EvidenceStore
        self.store = store  # the AnalystStore whose alerts get clip_ref
        self.clock, self.log = clock, log
        self.pending: dict[str, PendingClip] = {}
        self.made = 0  # clips written (for the sink's report)
        self._last_poll: float | None = None

    def offer(self, alert: dict) -> bool:
        """Queues ``alert``'s clip; False when it gets none: a type without clips, already
        pending, or already clipped (a re-delivered alert is not encoded again)."""
        if not self.settings.wants_clip(alert["type"]) or alert["alert_id"] in self.pending:
            return False
        row = self.store.alert(alert["alert_id"])
        if row is not None and row.get("clip_ref"):
            return False
        t = moment_ms(alert)
        self.pending[alert["alert_id"]] = PendingClip(
            alert, t - round(self.settings.clip_before_s * 1000),
            t + round(self.settings.clip_after_s * 1000), self.clock())
        return True

    def poll(self, force: bool = False) -> list[str]:
        """Makes every pending clip whose frames are in (or whose wait is over; all of them
        when ``force``), within ``POLL_BUDGET_S`` of encoding; returns their evidence refs."""
        now = self.clock()
        if not self.pending or (not force and self._last_poll is not None
                                and now - self._last_poll < POLL_EVERY_S):
            return []
        self._last_poll = now
        started = time.monotonic()
        made: list[str] = []
        by_camera: dict[str, list[PendingClip]] = {}
        for clip in self.pending.values():
            by_camera.setdefault(clip.alert["camera_id"], []).append(clip)
        for camera, clips in by_camera.items():
            # One listing per camera serves every clip of it: frames from the earliest start on
            # (and one clip length before it, for a clip slid back from the end of the footage).
            try:
                listing = self.frames.frames_between(
                    camera, min(c.start_ms for c in clips) - self._length_ms(), _LATEST_MS)
            except Exception as exc:  # noqa: BLE001 -- a frame store outage costs clips, not alerts
                self.log(f"clips of {camera}: frame store not readable: {type(exc).__name__}: {exc}")
                for clip in clips:  # retried next poll until their wait is over
                    if force or now - clip.arrived_s >= self.settings.clip_wait_s:
                        del self.pending[clip.alert["alert_id"]]
                continue
            latest_ms = listing[-1][0] if listing else None
            for clip in sorted(clips, key=lambda c: c.end_ms):
                frames_in = latest_ms is not None and latest_ms >= clip.end_ms
                waited = now - clip.arrived_s >= self.settings.clip_wait_s
                if not (force or frames_in or waited):
                    continue
                if not force and time.monotonic() - started > POLL_BUDGET_S:
                    return made  # the rest next time
                del self.pending[clip.alert["alert_id"]]
                start_ms, end_ms = self._span(clip, listing)
                ref = self._make(clip, [(t, r) for t, r in listing if start_ms <= t <= end_ms])
                if ref is not None:
                    made.append(ref)
        return made

    def _length_ms(self) -> int:
        return round((self.settings.clip_before_s + self.settings.clip_after_s) * 1000)

    def _span(self, clip: PendingClip, listing: list[tuple[int, str]]) -> tuple[int, int]:
        """The clip's time span: ``before`` to ``after`` around the moment, slid (never past
        the moment) to lie within the footage when the camera's frames end before the span
        does (a recording that ends, a camera that went down) or begin after it starts."""
        start, end = clip.start_ms, clip.end_ms
        if not listing:
            return start, end
        first, last = listing[0][0], listing[-1][0]
        before = round(self.settings.clip_before_s * 1000)
        after = round(self.settings.clip_after_s * 1000)
        if last < end:
            shift = min(end - last, after)
            start, end = start - shift, end - shift
        elif first > start:
            shift = min(first - start, before, max(last - end, 0))
            start, end = start + shift, end + shift
        return start, end

    def flush(self) -> list[str]:
        """Makes every pending clip now from the frames there (the sink is stopping)."""
        return self.poll(force=True)

    def _make(self, clip: PendingClip, listing: list[tuple[int, str]]) -> str | None:
        alert_id = clip.alert["alert_id"]
        frames = []
        for capture_ms, ref in listing:
            try:
                jpeg = self.frames.get(ref)
            except FrameRefError:
                continue  # not a readable frame (never ours to read): skipped like a bad JPEG
            if jpeg:  # None: expired between the listing and now
                frames.append((capture_ms, jpeg))
        if not frames:
            self.log(f"no clip for alert {alert_id} ({clip.alert['camera_id']}): no frames in "
                     f"[{clip.start_ms}, {clip.end_ms}] in the frame store (expired?)")
            return None
        try:
            encoded = encode_clip(frames, self.settings.clip_fps)
            ref = self.evidence.put(clip.alert, "mp4", encoded.data)
            self.store.set_clip_ref(alert_id, ref)
            self.store.commit()
        except ValueError as exc:  # no frame decoded
            self.log(f"no clip for alert {alert_id}: {exc}")
            return None
        except Exception as exc:  # noqa: BLE001 -- a clip is extra: the alert is stored already
            self.log(f"clip of alert {alert_id} failed: {type(exc).__name__}: {exc}")
            try:
                self.store.rollback()  # PostgreSQL: the failed statement aborted the transaction
            except Exception:  # noqa: BLE001 -- the store is gone: the sink's next batch says so
                pass
            return None
        self.made += 1
        return ref
