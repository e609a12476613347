"""Plate reading without models: the line split, CTC decoding with per-character confidence,
text lines grouped into plates, and how many model calls a plate costs (fakes stand in for the
recogniser and the text detector)."""
from __future__ import annotations

import cv2
import numpy as np

from camflow.transforms.detections import Detections
from camflow.transforms.plate_text import CharRead, parse_chars
from camflow.transforms.plates import (
    PLATE_CLASSES, PLATE_REGION, PlateReader, PlateRecogniser, _plate_shape, ctc_decode,
    plate_candidates_from_lines, plate_detections, split_two_lines,
)


def two_line_plate(h=140, w=190, top="59-S2", bottom="447.17") -> np.ndarray:
    img = np.full((h, w, 3), 235, np.uint8)
    cv2.rectangle(img, (2, 2), (w - 3, h - 3), (20, 20, 20), 2)
    cv2.putText(img, top, (18, 58), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (10, 10, 10), 4)
    cv2.putText(img, bottom, (8, 122), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (10, 10, 10), 4)
    return img


def chars(text, conf=0.99):
    return [CharRead(c, conf) for c in text]


class FakeRecogniser:
    """Returns scripted lines; records how many images each call had and their shapes."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, images):
        self.calls.append([im.shape for im in images])
        out = []
        for _ in images:
            out.append(self.answers.pop(0) if self.answers else [])
        return out


class FakeDetector:
    def __init__(self, quads=None):
        self.quads = quads if quads is not None else np.zeros((0, 4, 2), np.float32)
        self.calls = []

    def __call__(self, image, max_side=960, max_scale=2.0, min_side=64):
        self.calls.append((image.shape, max_side))
        return self.quads, np.full(len(self.quads), 0.9, np.float32)


class NoPlates:
    def find(self, image, sizes=None):
        return Detections(xyxy=np.zeros((0, 4), np.float32), confidence=np.zeros(0, np.float32),
                          class_id=np.zeros(0), class_names=PLATE_CLASSES,
                          data={"corners": np.zeros((0, 4, 2), np.float32)})


def test_two_lines_split_at_the_gap():
    img = two_line_plate()
    s = split_two_lines(img)
    ink_rows = np.flatnonzero((img[:, 10:-10, 0] < 100).any(1))
    ink_rows = ink_rows[(ink_rows > 5) & (ink_rows < img.shape[0] - 5)]  # not the border
    top_end = ink_rows[ink_rows < 75].max()
    bottom_start = ink_rows[ink_rows > 75].min()
    assert top_end < s < bottom_start
    faint = two_line_plate()
    faint[:75][faint[:75] < 100] = 150  # a washed-out top line next to a dark bottom line
    assert top_end < split_two_lines(faint) < bottom_start


def test_ctc_decode_confidence_and_alternatives():
    alphabet = ["", "1", "7", "T"]
    p = np.array([
        [0.9, 0.05, 0.0, 0.05],   # blank
        [0.1, 0.7, 0.0, 0.2],     # "1" (T second)
        [0.1, 0.8, 0.0, 0.1],     # still "1": one character
        [0.95, 0.05, 0.0, 0.0],   # blank
        [0.1, 0.0, 0.6, 0.3],     # "7"
    ], np.float32)
    out = ctc_decode(p, alphabet)
    assert [c.char for c in out] == ["1", "7"]
    assert abs(out[0].conf - 0.8) < 1e-6 and abs(out[0].alts["T"] - 0.1) < 1e-6
    assert abs(out[1].alts["T"] - 0.3) < 1e-6


def test_model_alternatives_repair_by_position():
    # the recogniser read 'T' where the series digit must be, with '1' second: '59-H1'
    top = chars("59-H") + [CharRead("T", 0.64, {"1": 0.26, "7": 0.08})]
    p = parse_chars([top, chars("354.60")])
    assert p.text == "59H135460" and p.repairs == 1
    assert len(p.char_conf) == 9 and abs(p.char_conf[3] - 0.26 / 0.34) < 1e-3  # among digits


def test_a_square_crop_is_one_recogniser_call_with_two_lines():
    rec = FakeRecogniser([chars("59-S2"), chars("447.17")])
    det = FakeDetector()
    reader = PlateReader(recogniser=rec, detector=det)
    p = reader.read(two_line_plate())
    assert p.text == "59S244717" and p.lines == 2 and p.display == "59-S2 447.17"
    assert len(rec.calls) == 1 and len(rec.calls[0]) == 2
    assert det.calls == []  # a confident reading: no text detection


def test_a_wide_crop_is_read_as_one_line():
    rec = FakeRecogniser([chars("51F-598.81")])
    reader = PlateReader(recogniser=rec, detector=FakeDetector())
    p = reader.read(np.full((40, 200, 3), 200, np.uint8))
    assert p.text == "51F59881" and len(rec.calls) == 1 and len(rec.calls[0]) == 1
    h, w, _ = rec.calls[0][0]
    assert w / h == 5 and h >= reader.min_height  # small crops are upscaled first


def test_an_unreadable_crop_falls_back_to_the_text_detector_once():
    rec = FakeRecogniser([])
    det = FakeDetector()
    reader = PlateReader(recogniser=rec, detector=det)
    assert reader.read(np.full((40, 120, 3), 200, np.uint8)) is None
    assert len(rec.calls) == 1 and len(det.calls) == 1


def test_text_lines_grouped_into_a_two_line_plate():
    top = np.array([[100, 100], [180, 100], [180, 130], [100, 130]], np.float32)
    bottom = top + np.array([-5, 40], np.float32)
    bottom[1:3, 0] += 10
    far = top + np.array([400, 0], np.float32)
    cands = plate_candidates_from_lines(np.stack([top, bottom, far]), np.full(3, 0.9), (480, 640))
    pairs = [c for c in cands if c["kind"] == 2]
    assert len(pairs) == 1
    q = pairs[0]["quad"]
    assert q[:, 1].min() <= 100 and q[:, 1].max() >= 170 and q[:, 0].min() <= 95
    assert sum(c["kind"] == 1 for c in cands) == 3


def test_a_vehicle_without_a_plate_box_costs_one_text_detection_on_its_lower_part():
    rec = FakeRecogniser([])
    det = FakeDetector()
    reader = PlateReader(recogniser=rec, detector=det)
    recogniser = PlateRecogniser(finder=NoPlates(), reader=reader)
    frame = np.full((540, 960, 3), 90, np.uint8)
    vehicles = Detections(xyxy=np.array([[100, 100, 400, 300]], np.float32),
                          confidence=np.array([0.9], np.float32), class_id=np.array([2]))
    assert recogniser.read_vehicles(frame, vehicles) == []
    assert len(det.calls) == 1 and rec.calls == []
    (h, w, _), side = det.calls[0]
    crop_h = recogniser.vehicle_crop_height  # the vehicle box + 5 % margins, upscaled
    assert abs(h - crop_h * (1 - PLATE_REGION[1])) < 0.05 * crop_h and side == recogniser.vehicle_text_side


def test_two_line_reading_of_a_one_line_box_gets_a_plate_shape():
    band = np.array([[0, 40], [90, 40], [90, 76], [0, 76]], np.float32)
    q = _plate_shape(band, lines=2)
    w = q[:, 0].max() - q[:, 0].min()
    h = q[:, 1].max() - q[:, 1].min()
    assert abs(w / h - 1.4) < 0.01 and abs(q[:, 1].mean() - 58) < 1e-3
    assert np.array_equal(_plate_shape(band, lines=1), band)


def test_plate_detections_carry_char_conf():
    p = parse_chars([chars("51F-598.81", 0.9)])
    p.box = np.array([[0, 0], [10, 0], [10, 5], [0, 5]], np.float32)
    d = plate_detections([(3, p)])
    assert list(d.data["plate_text"]) == ["51F59881"] and d.data["vehicle_index"][0] == 3
    assert d.data["char_conf"][0].split(",") == ["0.900"] * 8
