"""Alert clips: H.264 MP4s made from the claim-checked frames around an alert
(camflow/services/clips.py), with a real frame store, evidence store and DuckDB store."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from camflow.config import Config
from camflow.core.evidence_store import EvidenceStore
from camflow.core.frame_store import FileFrameStore
from camflow.services.clips import POLL_EVERY_S, ClipMaker, encode_clip
from camflow.services.store import AnalystStore

VTEST = Path(__file__).resolve().parents[3] / "shared" / "data" / "video" / "vtest.avi"
T0 = 1_764_000_000_000  # a capture time (ms)


def decoded(data: bytes, tmp_path: Path) -> tuple[int, tuple[int, ...] | None]:
    """(frames, shape of a frame) of an MP4 as OpenCV reads it."""
    path = tmp_path / "decoded.mp4"
    path.write_bytes(data)
    capture, count, shape = cv2.VideoCapture(str(path)), 0, None
    while True:
        ok, image = capture.read()
        if not ok:
            break
        count, shape = count + 1, image.shape
    capture.release()
    return count, shape


def vtest_jpegs(count: int, every: int = 10) -> list[bytes]:
    if not VTEST.exists():
        pytest.skip(f"{VTEST} is not there")
    capture, jpegs, index = cv2.VideoCapture(str(VTEST)), [], 0
    while len(jpegs) < count:
        ok, image = capture.read()
        assert ok, "vtest.avi ended early"
        if index % every == 0:
            jpegs.append(cv2.imencode(".jpg", image)[1].tobytes())
        index += 1
    capture.release()
    return jpegs


def test_twelve_frames_a_second_apart_make_a_real_time_clip(tmp_path):
    frames = [(T0 + i * 1000, jpeg) for i, jpeg in enumerate(vtest_jpegs(12))]
    started = time.perf_counter()
    clip = encode_clip(frames, fps=5.0)
    encode_ms = (time.perf_counter() - started) * 1000
    count, shape = decoded(clip.data, tmp_path)
    # 11 s between the first and the last frame, the last held for the 1 s gap: 12 s at 5 fps.
    assert clip.frames == 60 and count == 60
    assert shape == (576, 768, 3) and (clip.width, clip.height) == (768, 576)
    assert clip.source_frames == 12 and clip.data[4:8] == b"ftyp"
    print(f"vtest clip: {count} frames decoded, {len(clip.data)} bytes, {encode_ms:.0f} ms to encode")


def test_frames_take_the_first_frames_even_size_and_bad_jpegs_are_skipped(tmp_path):
    def jpeg(width, height, value):
        return cv2.imencode(".jpg", np.full((height, width, 3), value, np.uint8))[1].tobytes()

    frames = [(T0 + 500, jpeg(320, 240, 90)), (T0, jpeg(161, 121, 30)),  # out of order
              (T0 + 1000, b"\xff\xd8 not a jpeg"), (T0 + 1500, jpeg(160, 120, 200))]
    clip = encode_clip(frames, fps=4.0)
    count, shape = decoded(clip.data, tmp_path)
    # 0 .. 1.5 s, the last frame held 0.75 s (median of 0.5 s and 1 s): 2.25 s at 4 fps = 9.
    assert (clip.frames, count, shape, clip.source_frames) == (9, 9, (120, 160, 3), 3)
    with pytest.raises(ValueError):
        encode_clip([(T0, b"garbage")], fps=5.0)


# -- ClipMaker ------------------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def frame_jpeg(i: int) -> bytes:
    image = np.zeros((120, 160, 3), np.uint8)
    cv2.putText(image, str(i), (40, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 2)
    return cv2.imencode(".jpg", image)[1].tobytes()


def alert(alert_id: str, time_ms: int, type_: str = "intrusion") -> dict:
    return {"alert_id": alert_id, "type": type_, "severity": "warning", "camera_id": "quay",
            "time_ms": time_ms, "subject": "person", "score": 0.9, "track_id": 3,
            "evidence": "{}", "evidence_jpeg": None, "evidence_ref": None}


@pytest.fixture
def clips(tmp_path):
    frames = FileFrameStore(tmp_path / "frames")
    evidence_url = (tmp_path / "evidence").as_uri()
    config = Config.model_validate({"frame_store": {"url": frames.url},
                                    "evidence": {"url": evidence_url, "clip_wait_s": 30}})
    store = AnalystStore("duckdb:///:memory:")
    log: list[str] = []
    maker = ClipMaker(config.evidence, frames, EvidenceStore(evidence_url), store,
                      clock=Clock(), log=log.append)
    maker.log_lines = log
    yield maker
    store.close()


def put_frames(frames: FileFrameStore, start_ms: int, end_ms: int, step_ms: int = 1000) -> None:
    for t in range(start_ms, end_ms + 1, step_ms):
        frames.put("quay", t, t // step_ms, frame_jpeg(t // step_ms))


def test_an_alert_whose_frames_are_in_gets_its_clip_at_once(clips, tmp_path):
    put_frames(clips.frames, T0 - 6000, T0 + 6000)
    clips.store.upsert_alert(alert("a-in", T0))
    assert clips.offer(alert("a-in", T0))
    [ref] = clips.poll()
    assert clips.store.alert("a-in")["clip_ref"] == ref and ref.endswith("/quay/a-in.mp4")
    count, shape = decoded(clips.evidence.get(ref), tmp_path)
    # frames T0-5 s .. T0+5 s (11 frames, 1 s apart): 11 s at 5 fps.
    assert count == 55 and count >= 30 and shape == (120, 160, 3)
    assert clips.made == 1 and not clips.pending


def test_an_alert_waits_for_the_frames_after_it(clips, tmp_path):
    put_frames(clips.frames, T0 - 5000, T0 + 2000)
    clips.store.upsert_alert(alert("a-wait", T0, "crowd_limit"))
    assert clips.offer(alert("a-wait", T0, "crowd_limit"))
    assert clips.poll() == [] and "a-wait" in clips.pending
    put_frames(clips.frames, T0 + 3000, T0 + 7000)
    assert clips.poll() == []  # polled less than POLL_EVERY_S ago: not even listed
    clips.clock.advance(POLL_EVERY_S)
    [ref] = clips.poll()
    assert clips.store.alert("a-wait")["clip_ref"] == ref
    assert decoded(clips.evidence.get(ref), tmp_path)[0] == 55


def test_a_redelivered_alert_is_not_encoded_again_and_keeps_its_clip(clips):
    put_frames(clips.frames, T0 - 5000, T0 + 5000)
    record = alert("a-again", T0)
    clips.store.upsert_alert(record)
    clips.offer(record)
    [ref] = clips.poll()
    clip_file = clips.evidence.backend.root / "quay" / "a-again.mp4"
    written = clip_file.stat().st_mtime_ns
    clips.store.upsert_alert(record)  # the replay of the alert, after a sink restart
    assert clips.store.alert("a-again")["clip_ref"] == ref
    assert not clips.offer(record)
    clips.clock.advance(POLL_EVERY_S)
    assert clips.poll() == [] and clips.made == 1
    assert clip_file.stat().st_mtime_ns == written


def test_after_the_wait_a_clip_is_made_from_the_frames_there_and_none_when_expired(clips, tmp_path):
    put_frames(clips.frames, T0 - 5000, T0)  # the camera went quiet at the alert
    for record in (alert("a-quiet", T0), alert("a-expired", T0 - 3_600_000), alert("offline", T0, "camera_offline")):
        clips.store.upsert_alert(record)
    assert clips.offer(alert("a-quiet", T0)) and clips.offer(alert("a-expired", T0 - 3_600_000))
    assert not clips.offer(alert("offline", T0, "camera_offline"))  # no clip for that type
    assert clips.poll() == []
    clips.clock.advance(clips.settings.clip_wait_s)
    [ref] = clips.poll()
    assert decoded(clips.evidence.get(ref), tmp_path)[0] == 30  # 6 frames, 6 s at 5 fps
    assert clips.store.alert("a-expired")["clip_ref"] is None and not clips.pending
    assert any("a-expired" in line and "no frames" in line for line in clips.log_lines)


def test_an_older_store_gains_the_clip_ref_column(tmp_path):
    import duckdb

    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as old:
        old.execute("""CREATE TABLE alerts (
            alert_id TEXT PRIMARY KEY, type TEXT NOT NULL, severity TEXT NOT NULL,
            camera_id TEXT NOT NULL, time_ms BIGINT NOT NULL, alert_time TIMESTAMP NOT NULL,
            subject TEXT, score DOUBLE PRECISION, track_id BIGINT, evidence TEXT,
            evidence_ref TEXT, has_evidence_jpeg BOOLEAN, deliveries INTEGER NOT NULL DEFAULT 1)""")
        old.execute("INSERT INTO alerts (alert_id, type, severity, camera_id, time_ms, alert_time) "
                    "VALUES ('a-old', 'intrusion', 'warning', 'quay', 1, TIMESTAMP '2025-01-01')")
    store = AnalystStore(f"duckdb:///{path}")
    try:
        assert store.alert("a-old")["clip_ref"] is None
        store.set_clip_ref("a-old", "file:///evidence/quay/a-old.mp4")
        store.commit()
        assert store.alerts_since(0, 10)[0]["clip_ref"] == "file:///evidence/quay/a-old.mp4"
    finally:
        store.close()


def test_the_sinks_batch_feeds_the_clip_maker(tmp_path):
    """What run_sink does with a consumed batch: upsert, commit, offer the alerts, poll."""
    from camflow.schemas.codec import AvroCodec
    from camflow.services.sink import SinkReport, _clip_maker, write_batch

    class Message:  # a consumed Kafka message, as confluent_kafka hands it over
        def __init__(self, offset: int, value: bytes):
            self._offset, self._value = offset, value

        def error(self):
            return None

        def topic(self):
            return "alerts"

        def partition(self):
            return 0

        def offset(self):
            return self._offset

        def value(self):
            return self._value

    frames = FileFrameStore(tmp_path / "frames")
    put_frames(frames, T0 - 5000, T0 + 5000)
    evidence_url = (tmp_path / "evidence").as_uri()
    config = Config.model_validate({"frame_store": {"url": frames.url},
                                    "evidence": {"url": evidence_url}})
    store = AnalystStore("duckdb:///:memory:")
    try:
        assert _clip_maker(Config.model_validate({"evidence": {"url": evidence_url}}),
                           EvidenceStore(evidence_url), store) is None  # no frame store: no clips
        maker = _clip_maker(config, EvidenceStore(evidence_url), store)
        codec = AvroCodec("Alert")
        alerts: list[dict] = []
        report = SinkReport(written={"alerts": 0})
        messages = [Message(0, codec.encode(alert("a-sink", T0))),
                    Message(1, codec.encode(alert("a-off", T0, "camera_offline")))]
        assert write_batch(store, messages, {"alerts": (codec, "upsert_alert")}, report, alerts) == 2
        store.commit()
        assert [a["alert_id"] for a in alerts] == ["a-sink", "a-off"]
        for record in alerts:
            maker.offer(record)
        [ref] = maker.poll()
        assert store.alert("a-sink")["clip_ref"] == ref and store.alert("a-off")["clip_ref"] is None
    finally:
        store.close()


def test_a_clip_at_the_end_of_the_footage_slides_back_to_keep_its_length(clips, tmp_path):
    put_frames(clips.frames, T0 - 12_000, T0 + 1000)  # the recording ends 1 s after the alert
    clips.store.upsert_alert(alert("a-end", T0))
    assert clips.offer(alert("a-end", T0))
    clips.clock.advance(clips.settings.clip_wait_s)
    [ref] = clips.poll()
    # T0-9 s .. T0+1 s instead of T0-5 s .. T0+1 s: 11 frames, 11 s at 5 fps, the moment inside.
    assert decoded(clips.evidence.get(ref), tmp_path)[0] == 55
