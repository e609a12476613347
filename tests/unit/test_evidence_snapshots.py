"""Every alert's snapshot: what is drawn (transforms/evidence.py), how it is capped, and how the
job's operators write it (camflow/core/evidence_store.py), on a real frame of vtest.avi."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from camflow.config import Config
from camflow.core.evidence_store import AlertSnapshots, EvidenceStore, evidence_key
from camflow.core.frame_store import FileFrameStore
from camflow.transforms import aggregate
from camflow.transforms.alerts import alert_record
from camflow.transforms.detections import Detections, FrameAnalysis
from camflow.transforms.evidence import (SUBJECT_COLOUR, Marks, SnapshotError, alert_marks,
                                         snapshot_jpeg, window_marks)
from camflow.transforms.scene import Scene

VTEST = Path(__file__).resolve().parents[3] / "shared" / "data" / "video" / "vtest.avi"


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    if not VTEST.is_file():
        pytest.skip(f"{VTEST} not present")
    cap = cv2.VideoCapture(str(VTEST))
    ok, image = cap.read()
    cap.release()
    assert ok
    return image


def people(boxes, track_ids) -> Detections:
    n = len(boxes)
    return Detections(xyxy=np.array(boxes, np.float32).reshape(n, 4),
                      confidence=np.full(n, 0.9, np.float32),
                      class_id=np.zeros(n, np.int64), tracker_id=np.array(track_ids, np.int64))


def red_pixels(jpeg: bytes, box) -> int:
    """Pixels of the subject's colour on the border of ``box`` (JPEG blurs them a little)."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    x1, y1, x2, y2 = (int(v) for v in box)
    border = np.concatenate([image[y1, x1:x2], image[y2, x1:x2], image[y1:y2, x1], image[y1:y2, x2]])
    b, g, r = border[:, 0].astype(int), border[:, 1].astype(int), border[:, 2].astype(int)
    return int(((r > 170) & (g < 90) & (b < 90)).sum())


def intrusion(track_id=7, zone="lawn", time_ms=1_700_000_000_000):
    return alert_record("intrusion", "warning", "walkway", time_ms, "person", 1.0,
                        id_key=json.dumps(["person", zone, track_id]), bucket_ms=time_ms,
                        track_id=track_id, evidence={"rule": "intrusion", "zone_id": zone})


def config_with(tmp_path, frame_store: bool = False, **evidence) -> Config:
    raw = {"evidence": {"url": (tmp_path / "evidence").as_uri(), **evidence}}
    if frame_store:
        raw["frame_store"] = {"url": (tmp_path / "frames").as_uri()}
    return Config.model_validate(raw)


def test_a_track_alert_boxes_its_track_and_outlines_its_zone():
    scene = Scene.model_validate({"zones": [{"id": "lawn", "kind": "restricted",
                                             "polygon": [[0, 0.5], [0.5, 0.5], [0.5, 1], [0, 1]]}]})
    detections = people([[10, 10, 50, 90], [100, 20, 140, 100]], [3, 7])
    marks = alert_marks(intrusion(track_id=7), detections,
                        {z.id: z.polygon for z in scene.zones})
    assert marks.boxes == [(100.0, 20.0, 140.0, 100.0)] and marks.subject == [True]
    assert marks.labels == ["person #7"] and len(marks.outline) == 4 and marks.closed


def test_an_alert_without_a_track_boxes_every_object_of_its_subject():
    crowd = alert_record("zone_crowd", "warning", "walkway", 1, "person", 1.5, bucket_ms=1,
                         evidence={"zone_id": "nowhere", "people_inside": 2})
    marks = alert_marks(crowd, people([[0, 0, 5, 5], [10, 10, 20, 20]], [-1, 4]), {})
    assert len(marks.boxes) == 2 and all(marks.subject) and marks.outline is None


def test_the_snapshot_shows_the_subjects_box(frame):
    box = (300, 150, 360, 300)
    marks = Marks()
    marks.add(box, "person #7", True)
    jpeg = snapshot_jpeg(frame, marks, max_bytes=200_000)
    assert jpeg[:2] == b"\xff\xd8" and len(jpeg) <= 200_000
    assert red_pixels(jpeg, box) > 100
    # The same frame without the box has no such border: the count above is the box.
    plain = cv2.imencode(".jpg", frame)[1].tobytes()
    assert red_pixels(plain, box) < 10


def test_the_snapshot_is_capped_by_quality_then_size(frame):
    big = cv2.resize(frame, None, fx=3, fy=3)
    jpeg = snapshot_jpeg(big, Marks(), max_bytes=20_000, max_width=1280)
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert len(jpeg) <= 20_000 and image.shape[1] <= 1280
    with pytest.raises(SnapshotError):
        snapshot_jpeg(None, Marks(), max_bytes=20_000)


def test_the_operator_writes_one_object_per_alert_id(tmp_path, frame):
    snapshots = AlertSnapshots(config_with(tmp_path))
    detections = people([[300, 150, 360, 300]], [7])
    first = snapshots.frame_alerts([intrusion()], frame, detections)[0]
    ref = first["evidence_ref"]
    assert ref.endswith(evidence_key("walkway", first["alert_id"], "jpg"))
    assert red_pixels(EvidenceStore(snapshots.store.url).get(ref), (300, 150, 360, 300)) > 100
    # A replay after a restart raises the same alert: it rewrites the same object.
    again = snapshots.frame_alerts([intrusion()], frame, detections)[0]
    assert again["evidence_ref"] == ref
    assert len(list((tmp_path / "evidence").rglob("*.jpg"))) == 1
    offline = alert_record("camera_offline", "warning", "walkway", 1, "camera", 0.0, bucket_ms=1,
                           evidence={})
    assert snapshots.frame_alerts([offline], frame, detections)[0]["evidence_ref"] is None


def test_a_store_that_cannot_be_written_leaves_the_alert_without_a_picture(tmp_path, frame):
    (tmp_path / "evidence").write_text("a file where the store's directory should be")
    snapshots = AlertSnapshots(config_with(tmp_path))
    alert = snapshots.frame_alerts([intrusion()], frame, people([[1, 1, 9, 9]], [7]))[0]
    assert alert["evidence_ref"] is None and snapshots.failed == 1


def test_without_an_evidence_store_nothing_is_written(frame):
    snapshots = AlertSnapshots(Config())
    alert = snapshots.frame_alerts([intrusion()], frame, people([[1, 1, 9, 9]], [7]))[0]
    assert not snapshots.enabled and alert["evidence_ref"] is None


def test_a_window_alert_is_drawn_on_the_windows_busiest_frame(tmp_path, frame):
    config = config_with(tmp_path, frame_store=True)
    frames = FileFrameStore(tmp_path / "frames")
    t0 = 1_700_000_000_000
    acc = aggregate.WindowCounts.create()
    for i, boxes in enumerate([[[10, 10, 40, 80]], [[300, 150, 360, 300], [400, 150, 450, 290]],
                               [[500, 100, 540, 200]]]):
        ref = frames.put("walkway", t0 + i * 1000, i, cv2.imencode(".jpg", frame)[1].tobytes())
        analysis = FrameAnalysis(camera_id="walkway", capture_ms=t0 + i * 1000, sequence=i,
                                 width=frame.shape[1], height=frame.shape[0], jpeg=b"", jpeg_ref=ref,
                                 detections=people(boxes, list(range(len(boxes)))))
        acc = aggregate.WindowCounts.add(acc, aggregate.summarise(analysis))
    busiest = aggregate.WindowCounts.busiest_frame(acc)
    assert busiest["capture_ms"] == t0 + 1000 and busiest["classes"] == ["person", "person"]
    window = {**aggregate.WindowCounts.result(acc, "walkway", t0, t0 + 10_000), "busiest_frame": busiest}
    crowd = alert_record("crowd_limit", "warning", "walkway", t0 + 10_000, "person", 2.0,
                         bucket_ms=t0 + 10_000, evidence={"max_persons_in_frame": 2})
    assert len(window_marks(crowd, busiest).boxes) == 2
    alert = AlertSnapshots(config).window_alerts([crowd], window)[0]
    jpeg = EvidenceStore(config.evidence.url).get(alert["evidence_ref"])
    assert red_pixels(jpeg, (300, 150, 360, 300)) > 100 and red_pixels(jpeg, (400, 150, 450, 290)) > 100


def test_inline_frames_leave_window_alerts_without_a_picture(tmp_path):
    analysis = FrameAnalysis(camera_id="walkway", capture_ms=1, sequence=1, width=10, height=10, jpeg=b"",
                             detections=people([[1, 1, 5, 5]], [1]))
    acc = aggregate.WindowCounts.add(aggregate.WindowCounts.create(), aggregate.summarise(analysis))
    assert aggregate.WindowCounts.busiest_frame(acc) is None
    assert tuple(SUBJECT_COLOUR) == (0, 0, 255)


def test_frames_prune_expires_snapshots_past_their_retention(tmp_path, capsys):
    import os
    import time

    from camflow.commands import main as camflow_main
    store = EvidenceStore((tmp_path / "evidence").as_uri())
    old = store.put(intrusion(time_ms=1_000_000), "jpg", b"\xff\xd8old")
    new = store.put(intrusion(time_ms=2_000_000), "jpg", b"\xff\xd8new")
    forty_days_ago = time.time() - 40 * 86_400
    os.utime(old[len("file://"):], (forty_days_ago, forty_days_ago))
    config = tmp_path / "camflow.yaml"
    config.write_text(f"evidence: {{url: '{store.url}', retention_days: 30}}\n")
    assert camflow_main(["frames", "prune", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["removed"] == 1
    assert store.get(old) is None and store.get(new) == b"\xff\xd8new"
