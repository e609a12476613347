"""How many OCR readings a plate search costs: a tight crop that does not parse is re-read
upscaled with a border; a vehicle crop without a plate box is read once (the retry cannot
help there, and doubled the OCR calls of the job's plate reading)."""
from __future__ import annotations

import numpy as np

from camflow.transforms.detections import Detections
from camflow.transforms.plates import PLATE_CLASSES, PlateReader, PlateRecogniser


class CountingOcr:
    """Stands in for RapidOCR's call: sees every reading, finds no text."""

    def __init__(self):
        self.shapes = []

    def __call__(self, image):
        self.shapes.append(image.shape)
        return type("Result", (), {"boxes": None, "txts": None, "scores": None})()


class NoPlates:
    def find(self, image):
        return Detections(xyxy=np.zeros((0, 4), np.float32), confidence=np.zeros(0, np.float32),
                          class_id=np.zeros(0), class_names=PLATE_CLASSES,
                          data={"corners": np.zeros((0, 4, 2), np.float32)})


def test_a_tight_crop_that_does_not_parse_is_read_twice():
    ocr = CountingOcr()
    assert PlateReader(ocr=ocr).read(np.full((40, 120, 3), 200, np.uint8)) is None
    assert len(ocr.shapes) == 2 and ocr.shapes[1][0] > 160  # upscaled and bordered


def test_a_vehicle_without_a_plate_box_is_read_once():
    ocr = CountingOcr()
    recogniser = PlateRecogniser(finder=NoPlates(), reader=PlateReader(ocr=ocr))
    frame = np.full((540, 960, 3), 90, np.uint8)
    vehicles = Detections(xyxy=np.array([[100, 100, 400, 300]], np.float32),
                          confidence=np.array([0.9], np.float32), class_id=np.array([2]))
    assert recogniser.read_vehicles(frame, vehicles) == []
    assert len(ocr.shapes) == 1
    assert ocr.shapes[0][0] >= recogniser.vehicle_crop_height  # the upscaled vehicle crop
    ocr.shapes.clear()
    assert recogniser.read_region(frame) == []  # a still image's search keeps both readings
    assert len(ocr.shapes) == 2
