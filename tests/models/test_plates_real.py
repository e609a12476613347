"""Plate finding and reading on real Vietnamese plates in ../shared/data (needs the models):
tight crops (plates/), whole street and parking photos with labelled boxes (scenes/), and the
job's path -- plates read on vehicle crops."""
import csv
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
PLATES = DATA / "plates"
SCENES = DATA / "scenes"
if not (PLATES / "labels.csv").exists():
    pytest.skip(f"real plate data not found at {PLATES}", allow_module_level=True)
pytest.importorskip("onnxruntime", reason="onnxruntime not installed")


@pytest.fixture(scope="module")
def recogniser():
    from camflow.evaluation.perception import plate_recogniser

    return plate_recogniser(threads=1)


@pytest.fixture(scope="module")
def crops(recogniser):
    from camflow.evaluation.perception import eval_plates

    return eval_plates(PLATES, PLATES / "labels.csv", vehicles=False, recogniser=recogniser)


@pytest.fixture(scope="module")
def scenes(recogniser):
    if not (SCENES / "labels.csv").exists():
        pytest.skip(f"real scene data not found at {SCENES}")
    from camflow.evaluation.perception import eval_plates

    return eval_plates(SCENES, SCENES / "labels.csv", recogniser=recogniser)


def test_tight_crops(crops):
    assert crops["plates"] >= 20
    assert crops["exact"] >= 0.95, crops["misses"]
    assert crops["char_accuracy"] >= 0.95


def test_whole_scenes_found_and_read(scenes):
    assert scenes["plates"] >= 26 and scenes["plates_with_box"] == scenes["plates"]
    assert scenes["plate_recall"] >= 0.95, scenes["misses"]
    assert scenes["exact"] >= 0.90, scenes["misses"]
    for m in scenes["misses"]:  # each failure is named
        assert m["kind"] in ("not_found", "misread") and "candidate_iou" in m
    assert scenes["ms_per_image"] > 0 and scenes["not_found"] + scenes["misread"] == len(scenes["misses"])


def test_plates_on_vehicle_crops(recogniser):
    """The job's path: a vehicle box around each labelled plate (the plate in its lower part,
    as on the rear or front of a vehicle) -> ``read_vehicles`` reads it on the upscaled crop."""
    import cv2

    from camflow.transforms.detections import Detections

    if not (SCENES / "labels.csv").exists():
        pytest.skip(f"real scene data not found at {SCENES}")
    rows = list(csv.DictReader(open(SCENES / "labels.csv", newline="", encoding="utf-8")))
    read = 0
    for r in rows:
        image = cv2.imread(str(SCENES / r["file"]))
        x1, y1, x2, y2 = (float(v) for v in r["plate_box"].split())
        w, h = x2 - x1, y2 - y1
        ih, iw = image.shape[:2]
        vehicle = [max(0, x1 - 1.2 * w), max(0, y1 - 3.0 * h), min(iw, x2 + 1.2 * w), min(ih, y2 + 1.2 * h)]
        vehicles = Detections(xyxy=np.array([vehicle], np.float32), confidence=np.array([0.9], np.float32),
                              class_id=np.array([3 if r["vehicle_type"] == "motorbike" else 2]))
        pairs = recogniser.read_vehicles(image, vehicles)
        read += any(p.text == r["plate_text"] for _, p in pairs)
    assert read / len(rows) >= 0.9


def test_plate_found_in_a_frame(recogniser):
    """A real plate crop placed small in a real street frame is found and read by the job's
    ``read_plate`` (no vehicles given: the whole frame is searched)."""
    import cv2

    from camflow.transforms.plates import read_plate

    video = DATA / "video" / "car-detection.mp4"
    cap = cv2.VideoCapture(str(video))
    ok, frame = cap.read()
    cap.release()
    if not ok:
        frame = np.full((432, 768, 3), 90, np.uint8)
    plate = cv2.imread(str(PLATES / "2xemay7.jpg"))
    plate = cv2.resize(plate, None, fx=70 / plate.shape[0], fy=70 / plate.shape[0])
    frame[300:300 + plate.shape[0], 100:100 + plate.shape[1]] = plate
    found = read_plate(frame, recogniser=recogniser)
    assert "59F168955" in list(found.data["plate_text"])
    k = list(found.data["plate_text"]).index("59F168955")
    x1, y1, x2, y2 = found.xyxy[k]
    assert x1 < 150 and y1 < 340 and x2 > 140 and y2 > 330
    assert len(found.data["char_conf"][k].split(",")) == 9
