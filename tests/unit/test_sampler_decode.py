"""Samplers decode only what they send: every frame grabbed, only sampled ones retrieved;
capture times from the stream's timestamps (``StreamClock``); ``rtsp_transport`` per camera."""
from __future__ import annotations

import os
import types

import cv2
import numpy as np
import pytest

from camflow.services import sampler
from camflow.services.sampler import StreamClock, capture_options


# --- StreamClock: capture times from the stream's own timestamps ----------------------------
def test_steady_stream_keeps_its_cadence_not_the_network_jitter():
    clock = StreamClock()
    jitter = [0, 35, 3, 60, 12, 0, 48, 7, 22, 0]
    stamps = [clock(i * 40.0, 1_000_000 + i * 40 + 50 + j) for i, j in enumerate(jitter)]
    # the quickest arrivals (50 ms after capture) fix the offset; jitter does not show
    assert [s - stamps[0] for s in stamps][5:] == [200, 240, 280, 320, 360]
    assert all(s <= 1_000_000 + i * 40 + 50 + j for i, (s, j) in enumerate(zip(stamps, jitter)))


def test_a_buffer_drained_at_connect_is_stamped_by_arrival_then_by_cadence():
    clock = StreamClock()
    # 3 s of frames buffered while connecting arrive within 0.3 s, then the stream runs live
    burst = [clock(i * 100.0, 5_000 + i * 4) for i in range(30)]
    live = [clock(3000.0 + i * 100, 5_120 + 100 + i * 100) for i in range(10)]
    assert all(b <= 5_000 + i * 4 for i, b in enumerate(burst))  # never after arrival
    stamps = burst + live
    assert stamps == sorted(stamps)
    assert all(100 <= b - a <= 101 for a, b in zip(live, live[1:]))  # (+ the drift allowance)


def test_no_timestamps_or_stuck_ones_fall_back_to_arrival():
    clock = StreamClock(stall_frames=3)
    assert [clock(None, t) for t in (100, 200, 300)] == [100, 200, 300]
    stuck = StreamClock(stall_frames=3)
    stamps = [stuck(0.0, 1000 + 40 * i) for i in range(8)]
    assert stamps[-1] == 1000 + 40 * 7 and stamps == sorted(stamps)


def test_timestamps_that_go_back_or_lag_far_behind_reanchor_on_arrival():
    clock = StreamClock(max_lag_ms=10_000)
    clock(50_000.0, 1_000)
    assert clock(50_100.0, 1_100) == 1_100
    assert clock(200.0, 1_200) == 1_200  # the stream restarted its timestamps
    assert clock(300.0, 1_300) == 1_300
    # a stream that stalled 20 s and resumed where its timestamps left off
    assert clock(400.0, 21_400) == 21_400


def test_a_slower_camera_clock_does_not_drift_the_stamps_away():
    clock = StreamClock(drift_ppm=1000)
    # the camera's clock runs 500 ppm slow: its timestamps fall behind ours 0.5 ms per second
    stamps = [clock(i * 1000 * (1 - 500e-6), 10_000 + i * 1000) for i in range(0, 600)]
    assert 10_000 + 599 * 1000 - stamps[-1] < 50


# --- grab for skipped frames, retrieve for sampled ones --------------------------------------
class FakeClock:
    def __init__(self):
        self.now = 1_700_000_000.0

    def time(self):
        return self.now

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += max(0.0, seconds)


class FakeStream:
    """A 25 fps live camera: each grab takes a frame interval of (fake) wall time."""

    def __init__(self, clock: FakeClock, frames: int):
        self.clock, self.frames = clock, frames
        self.grabbed = self.retrieved = 0
        self.pos = None

    def grab(self):
        if self.grabbed >= self.frames:
            return False
        self.clock.now += 0.04
        self.pos = self.grabbed * 40.0
        self.grabbed += 1
        return True

    def retrieve(self):
        self.retrieved += 1
        return True, np.full((4, 4, 3), self.grabbed % 256, np.uint8)

    def get(self, prop):
        assert prop == cv2.CAP_PROP_POS_MSEC
        return self.pos

    def release(self):
        pass


def test_live_stream_retrieves_only_the_sampled_frames_and_reconnects(monkeypatch):
    clock = FakeClock()
    opened: list[FakeStream] = []

    def open_capture(source, rtsp_transport="tcp", decode_threads=None):
        assert rtsp_transport == "udp"
        opened.append(FakeStream(clock, frames=60))  # 2.4 s, then the stream drops
        return opened[-1]

    monkeypatch.setattr(sampler, "time", types.SimpleNamespace(
        time=clock.time, monotonic=clock.monotonic, sleep=clock.sleep))
    monkeypatch.setattr(sampler, "open_capture", open_capture)
    frames = list(sampler.sample_stream("rtsp://cam/1", fps=2, max_frames=8, rtsp_transport="udp"))
    assert len(opened) == 2  # reconnected once after the first stream ended
    assert sum(s.retrieved for s in opened) == 8
    assert sum(s.grabbed for s in opened) > 4 * 8
    stamps = [f.capture_ms for f in frames]
    assert stamps == sorted(set(stamps)) and [f.sequence for f in frames] == stamps
    # the stream's own cadence: frames every 40 ms, the first at or after each 500 ms step
    assert [b - a for a, b in zip(stamps[:5], stamps[1:5])] == [520, 480, 520, 480]


def test_file_sampling_retrieves_the_same_frames_that_read_would(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    rng = np.random.default_rng(0)
    for i in range(35):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    frames = list(sampler.sample_file(str(path), fps=2, start_ms=0))
    assert [f.sequence for f in frames] == [0, 5, 10, 15, 20, 25, 30]
    assert [f.capture_ms for f in frames] == [0, 500, 1000, 1500, 2000, 2500, 3000]
    capture = cv2.VideoCapture(str(path))
    read = [capture.read()[1] for _ in range(35)]
    capture.release()
    for f in frames:
        assert np.array_equal(f.image, read[f.sequence])


# --- rtsp_transport -------------------------------------------------------------------------
def test_capture_options_set_the_transport_and_keep_other_options():
    assert capture_options(None, "udp") == "rtsp_transport;udp"
    assert capture_options("stimeout;5000000|rtsp_transport;tcp", "udp") == \
        "stimeout;5000000|rtsp_transport;udp"
    assert capture_options("", "tcp") == "rtsp_transport;tcp"


def test_an_unknown_transport_is_refused():
    with pytest.raises(ValueError, match="rtsp_transport"):
        sampler.open_capture("rtsp://127.0.0.1:1/cam", rtsp_transport="http")


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtsp_open_errors_name_the_transport_and_restore_the_environment(monkeypatch, transport):
    monkeypatch.setenv(sampler.CAPTURE_OPTIONS_ENV, "stimeout;1000000")
    seen = {}

    class Capture:
        def __init__(self, source):
            seen["options"] = os.environ.get(sampler.CAPTURE_OPTIONS_ENV)

        def isOpened(self):  # noqa: N802 (OpenCV's name)
            return False

    monkeypatch.setattr(sampler.cv2, "VideoCapture", Capture)
    with pytest.raises(sampler.SourceError) as error:
        sampler.open_capture("rtsp://admin:pw-123@10.0.0.7:554/main", rtsp_transport=transport)
    assert seen["options"] == f"stimeout;1000000|rtsp_transport;{transport}"
    assert os.environ[sampler.CAPTURE_OPTIONS_ENV] == "stimeout;1000000"
    message = str(error.value)
    assert f"RTSP/{transport.upper()}" in message and f"rtsp_transport {transport}" in message
    assert "admin:***@10.0.0.7:554/main" in message and "pw-123" not in message


def test_camera_config_and_cli_carry_the_transport(tmp_path, monkeypatch):
    from camflow.commands import main
    from camflow.config import Camera
    from pydantic import ValidationError

    assert Camera(id="c1").rtsp_transport == "tcp"
    assert Camera(id="c1", rtsp_transport="udp").rtsp_transport == "udp"
    with pytest.raises(ValidationError):
        Camera(id="c1", rtsp_transport="http")

    config = tmp_path / "camflow.yaml"
    config.write_text("cameras:\n  - {id: quay, source: 'rtsp://10.0.0.9/s', rtsp_transport: udp}\n")
    calls = []

    def ingest(kafka, camera_id, source, fps, **kwargs):
        calls.append(kwargs["rtsp_transport"])
        return sampler.IngestReport(camera_id)

    monkeypatch.setattr(sampler, "ingest", ingest)
    assert main(["ingest", "--camera", "quay", "--config", str(config), "--quiet"]) == 0
    assert main(["ingest", "--camera", "quay", "--config", str(config), "--quiet",
                 "--rtsp-transport", "tcp"]) == 0
    assert main(["ingest", "--camera", "other", "--source", "rtsp://x/y", "--config", str(config),
                 "--quiet"]) == 0
    assert calls == ["udp", "tcp", "tcp"]
