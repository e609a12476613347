"""Plate reading on the real Vietnamese plates in ../shared/data/plates (needs the models)."""
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "plates"
if not (DATA / "labels.csv").exists():
    pytest.skip(f"real plate data not found at {DATA}", allow_module_level=True)
pytest.importorskip("rapidocr", reason="rapidocr not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed")


@pytest.fixture(scope="module")
def result():
    from camflow.evaluation.perception import eval_plates

    return eval_plates(DATA, DATA / "labels.csv")


def test_exact_match_target(result):
    assert result["plates"] >= 20
    assert result["exact"] >= 0.9, result["misses"]
    assert result["char_accuracy"] >= 0.95


def test_plate_found_in_a_scene():
    """A real plate crop placed small in a real street frame is found and read."""
    import cv2
    import numpy as np

    from camflow.transforms.plates import read_plate

    video = DATA.parent / "video" / "car-detection.mp4"
    cap = cv2.VideoCapture(str(video))
    ok, frame = cap.read()
    cap.release()
    if not ok:
        frame = np.full((432, 768, 3), 90, np.uint8)
    plate = cv2.imread(str(DATA / "2xemay7.jpg"))
    plate = cv2.resize(plate, None, fx=70 / plate.shape[0], fy=70 / plate.shape[0])
    frame[300:300 + plate.shape[0], 100:100 + plate.shape[1]] = plate
    found = read_plate(frame)
    assert "59F168955" in list(found.data["plate_text"])
    k = list(found.data["plate_text"]).index("59F168955")
    x1, y1, x2, y2 = found.xyxy[k]
    assert x1 < 150 and y1 < 340 and x2 > 140 and y2 > 330
