"""The whole job topology on in-memory collections: no broker, real Flink (the embedded
mini-cluster) and the real models, on real frames of vtest.avi.

``camera_job.analytics`` takes its sources as streams and returns its outputs as streams of
``(Kafka key, Avro bytes)`` pairs; here the sources are ``from_collection`` and the outputs are collected back.
"""
from __future__ import annotations

import time

import cv2
import pytest

from camflow.config import Config
from camflow.schemas.codec import AvroCodec

pytestmark = pytest.mark.slow

FRAMES = 12  # 3 s of vtest.avi at 4 fps


@pytest.fixture(scope="module")
def outputs(vtest_path, built_models):
    from pyflink.common import Types

    from camflow.jobs import camera_job
    from camflow.jobs.kafka_io import BYTES

    config = Config.model_validate({
        "deployment": "topology",
        "cameras": [{"id": "walkway", "crowd_limit": 2, "max_width": 768}],
        "job": {"window_ms": 1000, "sliding_window_ms": 0, "out_of_orderness_ms": 0,
                "recognition": {"faces": False, "plates": False}},
    })
    frame_codec = AvroCodec("FrameSample")
    capture = cv2.VideoCapture(str(vtest_path))
    now = int(time.time() * 1000) - 60_000
    records, index = [], 0
    while len(records) < FRAMES:
        ok, image = capture.read()
        assert ok, "vtest.avi ended early"
        if index % 2 == 0:  # 10 fps video -> 5 fps
            jpeg = cv2.imencode(".jpg", image)[1].tobytes()
            records.append(frame_codec.encode({
                "camera_id": "walkway", "capture_ms": now + index * 100, "sequence": index,
                "jpeg": jpeg, "jpeg_ref": None, "width": image.shape[1],
                "height": image.shape[0], "sampler_id": "test"}))
        index += 1
    capture.release()
    records.append(b"not a frame at all")  # bad input must come out as a dead letter
    records.append(frame_codec.encode({    # a camera nobody configured
        "camera_id": "nowhere", "capture_ms": now, "sequence": 1, "jpeg": b"\xff\xd8\xff\xd9",
        "jpeg_ref": None, "width": 0, "height": 0, "sampler_id": "test"}))

    env = camera_job.make_env(config, parallelism=1)
    # PyFlink's collection source cannot carry raw bytes: it carries indices into the records.
    frames = (env.from_collection(list(range(len(records))), type_info=Types.INT())
              .map(lambda i: records[i], output_type=BYTES))
    streams = camera_job.analytics(config, camera_job.Sources(frames))
    tagged = [stream.map(lambda pair, name=name: (name, pair[0], pair[1]),
                         Types.TUPLE([Types.STRING(), BYTES, BYTES]))
              for name, stream in streams.items()]
    merged = tagged[0].union(*tagged[1:])
    found: dict[str, list[dict]] = {}
    with merged.execute_and_collect() as results:
        for name, key, value in results:
            contract = camera_job.OUTPUTS[name][0]
            key, value = (bytes(b & 0xFF for b in data)  # Java's signed bytes, as a list
                          if not isinstance(data, (bytes, bytearray)) else bytes(data)
                          for data in (key, value))
            record = AvroCodec(contract).decode(value)
            found.setdefault(name, []).append(record)
            found.setdefault(f"{name}_keys", []).append((key, record.get("camera_id")))
    return found


def test_every_good_frame_is_analysed_with_people_found(outputs):
    analyses = outputs["analyses"]
    assert sorted(a["sequence"] for a in analyses) == list(range(0, 2 * FRAMES, 2))
    persons = [sum(d["class_name"] == "person" for d in a["detections"]) for a in analyses]
    assert max(persons) >= 3  # vtest.avi shows several people at once


def test_windows_close_and_crowd_alerts_fire(outputs):
    aggregates = outputs["aggregates"]
    assert aggregates and {a["camera_id"] for a in aggregates} == {"walkway"}
    assert sum(a["frames"] for a in aggregates) == FRAMES
    crowd = [a for a in outputs.get("alerts", []) if a["type"] == "crowd_limit"]
    assert crowd, "crowd_limit 2 on a walkway with several people must alert"


def test_bad_records_become_dead_letters(outputs):
    reasons = sorted(d["reason"] for d in outputs["dead_letters"])
    assert "unknown_camera" in reasons
    assert any(r.startswith("unknown") and r != "unknown_camera" for r in reasons), reasons


def test_every_output_record_is_keyed_by_its_camera(outputs):
    """The Kafka key of every output record is its camera id (none where a dead letter has no
    camera), so a camera's records share a partition."""
    names = [name for name in outputs if not name.endswith("_keys")]
    assert {"analyses", "aggregates", "alerts", "dead_letters"} <= set(names)
    for name in names:
        keys = outputs[f"{name}_keys"]
        assert keys and all(key == (camera or "").encode() for key, camera in keys), (name, keys[:3])
    assert {key for key, _ in outputs["analyses_keys"]} == {b"walkway"}
