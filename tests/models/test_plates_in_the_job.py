"""Plates through the real broker, the real job and the sink: each labelled street scene is a
camera that sends its photo as a short sequence of frames; the job detects the vehicles,
tracks them, reads their plates on every frame it tries, and fuses a track's reads into one
result. The store then holds one ``vehicle_plates`` row per vehicle track, read as labelled."""
from __future__ import annotations

import csv
import re
import time
from collections import defaultdict
from pathlib import Path

import cv2
import pytest

from camflow.config import Config
from camflow.core.kafka import DeliveryTracker, produce_reliably, reliable_producer
from camflow.schemas.codec import AvroCodec
from tests.integration.job_setup import create_job_topics, kafka_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long]
SCENES = Path(__file__).resolve().parents[3] / "shared" / "data" / "scenes"
FRAMES_PER_SCENE = 3


def camera_id(file_name: str) -> str:
    return re.sub(r"[^a-z0-9_.-]", "-", Path(file_name).stem.lower())[:60]


@pytest.fixture(scope="module")
def plates_run(tmp_path_factory, kafka_bootstrap, built_models):
    if not (SCENES / "labels.csv").is_file():
        pytest.skip(f"no labelled scenes in {SCENES}")
    from camflow.jobs.camera_job import run
    from camflow.services.sink import run_sink
    from camflow.services.store import AnalystStore

    labels: dict[str, set[str]] = defaultdict(set)
    with open(SCENES / "labels.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            labels[camera_id(row["file"])].add(row["plate_text"])
    images = {camera_id(p.name): p for p in sorted(SCENES.glob("*.jpg"))
              if camera_id(p.name) in labels}
    suffix = f"plates-{int(time.time() * 1000)}"
    store_url = f"duckdb:///{tmp_path_factory.mktemp('store')}/plates.duckdb"
    config = Config.model_validate({
        "deployment": "plates",
        "cameras": [{"id": c, "max_width": 1600, "scene": {"fall": {"enabled": False}}}
                    for c in images],
        "kafka": kafka_settings(kafka_bootstrap, suffix, partitions=1),
        "store": {"url": store_url},
        "job": {"window_ms": 2000, "sliding_window_ms": 0, "idleness_ms": 1000,
                "out_of_orderness_ms": 1000, "watchlist": {"enabled": False},
                "motion_gate": {"enabled": False},
                "recognition": {"faces": False, "retry_ms": 0, "readings_per_track": 3}},
    })
    create_job_topics(kafka_bootstrap, config)
    codec, producer, tracker = AvroCodec("FrameSample"), reliable_producer(config.kafka), DeliveryTracker()
    start = int(time.time() * 1000) - 60_000
    for camera, path in images.items():
        image = cv2.imread(str(path))
        scale = min(1.0, 1600 / max(image.shape[:2]))
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        for i in range(FRAMES_PER_SCENE):  # a parked vehicle seen by a still camera
            produce_reliably(producer, config.kafka.topics.frames, codec.encode({
                "camera_id": camera, "capture_ms": start + 500 * i, "sequence": i, "jpeg": jpeg,
                "jpeg_ref": None, "width": image.shape[1], "height": image.shape[0],
                "sampler_id": "test"}), camera.encode(), start + 500 * i, tracker)
    producer.flush(60)
    run(config, {0: tracker.next_offsets[(config.kafka.topics.frames, 0)]})
    run_sink(config, store_url=store_url, idle_exit_s=5.0)
    store = AnalystStore(store_url)
    try:
        rows = store.query("SELECT camera_id, track_id, plate_text, reads FROM vehicle_plates")
    finally:
        store.close()
    return {"rows": rows, "labels": labels}


def test_one_row_per_vehicle_track_with_its_fused_read(plates_run):
    rows, labels = plates_run["rows"], plates_run["labels"]
    tracks = [(camera, track) for camera, track, _, _ in rows]
    assert len(tracks) == len(set(tracks))  # one row per track
    assert all(reads >= 1 for *_, reads in rows)
    assert any(reads >= 2 for *_, reads in rows), rows  # reads of several frames were fused
    correct = [r for r in rows if r[2] in labels[r[0]]]
    found = {(camera, text) for camera, _, text, _ in correct}
    plates = sum(len(v) for v in labels.values())
    # the job's own vehicle detector decides which vehicles are tried (it misses close-up
    # motorbikes); what it reads must be right
    assert len(correct) >= 0.9 * len(rows), rows
    assert len(found) >= plates // 3, (len(found), plates, rows)
