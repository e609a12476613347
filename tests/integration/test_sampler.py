"""camflow ingest: real video files and a real (local) HTTP camera into the real broker."""
from __future__ import annotations

import http.server
import threading
import time

import cv2
import numpy as np
import pytest

from camflow.config import Kafka
from camflow.core.kafka import read_topic
from camflow.services.sampler import SourceError, ingest, sample_file, sample_stream
from camflow.schemas.codec import AvroCodec
from camflow.transforms.frames import encode_jpeg

pytestmark = pytest.mark.integration


def test_file_is_sampled_at_fps_with_stable_sequences(vtest_path):
    frames = list(sample_file(str(vtest_path), fps=2, max_frames=6))
    # vtest.avi is 10 fps: every 5th frame, sequence = index in the file
    assert [f.sequence for f in frames] == [0, 5, 10, 15, 20, 25]
    assert [f.capture_ms - frames[0].capture_ms for f in frames] == [0, 500, 1000, 1500, 2000, 2500]
    assert frames[-1].capture_ms <= int(time.time() * 1000)  # replays end at "now", never later


def test_ingest_publishes_keyed_frame_samples(vtest_path, kafka_bootstrap, make_topics, unique_topic):
    kafka = Kafka(bootstrap_servers=kafka_bootstrap, topics={"frames": unique_topic("frames")})
    make_topics({kafka.topics.frames: 2})
    report = ingest(kafka, "walkway", str(vtest_path), fps=1, max_width=384, max_frames=5)
    assert report.frames == 5 and sum(report.next_offsets.values()) == 5
    messages = list(read_topic(kafka, kafka.topics.frames, idle_timeout_s=2))
    assert len(messages) == 5 and {m.key() for m in messages} == {b"walkway"}
    assert len({m.partition() for m in messages}) == 1  # one camera, one partition: ordered
    records = [AvroCodec("FrameSample").decode(m.value()) for m in messages]
    for message, record in zip(messages, records):
        assert message.timestamp()[1] == record["capture_ms"]
        image = cv2.imdecode(np.frombuffer(record["jpeg"], np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (record["height"], record["width"]) == (288, 384)


def test_missing_file_gives_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        next(sample_file(str(tmp_path / "nope.mp4"), fps=1))


def test_unreachable_stream_gives_up_with_a_clear_error():
    started = time.monotonic()
    with pytest.raises(SourceError, match="cannot open video source"):
        next(sample_stream("rtsp://127.0.0.1:9/nothing", fps=1, give_up_after_s=1.0, max_backoff_s=0.5))
    assert time.monotonic() - started < 30


class FlakyCamera(http.server.BaseHTTPRequestHandler):
    """An HTTP snapshot camera that fails its first requests, then serves JPEGs."""

    failures_left = 2
    jpeg = encode_jpeg(np.full((48, 64, 3), 128, np.uint8))

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if FlakyCamera.failures_left > 0:
            FlakyCamera.failures_left -= 1
            self.send_error(503)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.jpeg)))
        self.end_headers()
        self.wfile.write(self.jpeg)

    def log_message(self, *args):
        pass


def test_stream_reconnects_with_backoff_after_failures():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyCamera)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/snapshot.jpg"
        frames = list(sample_stream(url, fps=5, max_frames=3, max_backoff_s=0.3))
        assert len(frames) == 3 and FlakyCamera.failures_left == 0
        assert all(f.image.shape == (48, 64, 3) for f in frames)
        assert frames[0].capture_ms < frames[1].capture_ms < frames[2].capture_ms
    finally:
        server.shutdown()
