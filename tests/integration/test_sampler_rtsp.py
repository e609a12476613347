"""`camflow ingest` from a real RTSP server into the real broker, through a server restart.

The server is Debian's rtsp-server-perl fed by ffmpeg (``infra/rtsp_server.sh``, which installs
both when missing): it speaks RTP over UDP only, as the issue found, so OpenCV's default (TCP)
cannot open it and the camera's ``rtsp_transport: udp`` can. The video is vtest.avi re-encoded
to H.264 at test time (what cameras send), replayed in real time.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import cv2
import numpy as np
import pytest
import yaml

from camflow.schemas.codec import AvroCodec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = "infra/rtsp_server.sh"
CAMERA = "gate-1"
PASSWORD = "Cam3ra-s3cret"


@pytest.fixture(scope="module")
def h264_clip(repo_root, vtest_path, tmp_path_factory):
    installed = subprocess.run(["bash", SCRIPT, "install"], cwd=repo_root, capture_output=True,
                               text=True, timeout=900)
    if installed.returncode == 3:
        pytest.skip(f"no RTSP server: ffmpeg / rtsp-server-perl cannot be installed here "
                    f"({installed.stderr.strip()[-300:]})")
    assert installed.returncode == 0, installed.stderr
    clip = tmp_path_factory.mktemp("rtsp") / "vtest-h264.mp4"
    subprocess.run(["nice", "-n", "10", "bash", SCRIPT, "clip", str(vtest_path), str(clip), "40"],
                   cwd=repo_root, check=True, timeout=300)
    return clip


def _free_ports(count: int) -> int:
    """A first port of ``count`` consecutive ones free for TCP and UDP on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = s.getsockname()[1]
        if first + count > 65535:
            continue
        try:
            for port in range(first, first + count):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, kind) as s:
                        s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError("no free ports")


class RtspCamera:
    """rtsp://127.0.0.1:PORT/cam served by ``infra/rtsp_server.sh serve`` (its own session,
    so that stopping it stops the server and the publisher with it)."""

    def __init__(self, repo_root, clip):
        self.repo_root, self.clip = repo_root, clip
        self.port = _free_ports(8)  # RTSP, the publisher's port, then the server's RTP ports
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["nice", "-n", "10", "bash", SCRIPT, "serve", str(self.clip), str(self.port), "cam"],
            cwd=self.repo_root, start_new_session=True, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        from camflow.services.sampler import SourceError, open_capture
        deadline = time.monotonic() + 60  # serving once the stream opens and delivers
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stderr.read()
            try:
                capture = open_capture(self.url, rtsp_transport="udp")
            except SourceError:
                time.sleep(0.5)
                continue
            try:
                if capture.grab():
                    return
            finally:
                capture.release()
        raise AssertionError("the RTSP server did not serve within 60 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None


@pytest.fixture
def rtsp_camera(repo_root, h264_clip):
    camera = RtspCamera(repo_root, h264_clip)
    camera.start()
    yield camera
    camera.stop()


def test_a_udp_only_server_refuses_tcp_with_an_error_naming_the_transport(rtsp_camera):
    from camflow.services.sampler import SourceError, open_capture

    source = rtsp_camera.url.replace("rtsp://", f"rtsp://admin:{PASSWORD}@")
    with pytest.raises(SourceError) as refused:
        open_capture(source)  # tcp, the default
    message = str(refused.value)
    assert "RTSP/TCP" in message and "rtsp_transport tcp" in message and "try rtsp_transport udp" in message
    assert f"admin:***@127.0.0.1:{rtsp_camera.port}/cam" in message and PASSWORD not in message
    assert "OPENCV_FFMPEG_CAPTURE_OPTIONS" not in os.environ  # set for the open only
    capture = open_capture(source, rtsp_transport="udp")
    try:
        assert capture.grab()
    finally:
        capture.release()


def test_ingest_over_udp_reconnects_after_a_server_restart(rtsp_camera, repo_root, tmp_path,
                                                           kafka_bootstrap, make_topics,
                                                           unique_topic, topic_reader):
    from camflow.jobs.environment import child_env

    topic = unique_topic("frames")
    make_topics({topic: 1})
    config = tmp_path / "camflow.yaml"  # the camera's transport comes from the config
    config.write_text(yaml.safe_dump({
        "cameras": [{"id": CAMERA, "source": rtsp_camera.url, "fps": 2, "rtsp_transport": "udp"}],
        "kafka": {"bootstrap_servers": kafka_bootstrap, "group_id": f"rtsp-{uuid.uuid4().hex[:8]}",
                  "topics": {"frames": topic}}}))
    frames = 16
    ingest = subprocess.Popen(
        [sys.executable, "-m", "camflow.commands", "ingest", "--camera", CAMERA, "--config",
         str(config), "--max-frames", str(frames), "--quiet"],
        cwd=repo_root, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        before = topic_reader(topic, expect=4, timeout=90)
        assert len(before) >= 4, "no frames from the RTSP camera before the restart"
        down_ms = int(time.time() * 1000)
        rtsp_camera.stop()
        time.sleep(3.0)  # the sampler finds the stream gone and retries meanwhile
        restart_ms = int(time.time() * 1000)
        rtsp_camera.start()
        out, err = ingest.communicate(timeout=180)
    finally:
        if ingest.poll() is None:
            ingest.kill()
            ingest.communicate()
    assert ingest.returncode == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["camera"] == CAMERA and report["frames"] == frames

    messages = topic_reader(topic, expect=frames, timeout=30)
    records = [AvroCodec("FrameSample").decode(m.value()) for m in messages]
    assert len(records) == frames and {m.key() for m in messages} == {CAMERA.encode()}
    stamps = [r["capture_ms"] for r in records]
    assert stamps == sorted(set(stamps)) and [r["sequence"] for r in records] == stamps
    after = [s for s in stamps if s >= restart_ms]
    assert len(after) >= 4, (stamps, down_ms, restart_ms)  # it reconnected and kept publishing
    # nothing is stamped while the camera was away (0.5 s for frames still in flight)
    assert not [s for s in stamps if down_ms + 500 < s < restart_ms], (stamps, down_ms, restart_ms)
    assert "over RTSP/UDP" in err  # the reconnect lines name the transport
    image = cv2.imdecode(np.frombuffer(records[-1]["jpeg"], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (576, 768, 3)
