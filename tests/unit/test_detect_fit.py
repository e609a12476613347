"""``resize: fit``: a frame is scaled into the input box and padded only up to the stride, and
detections map back to frame pixels; ``input_size`` is accepted only by such models."""
from __future__ import annotations

import numpy as np
import pytest

from camflow.transforms.detect import InputConfig, ObjectDetector, preprocess

FIT = InputConfig(width=512, height=512, layout="NHWC", colour="RGB", scale=1.0, resize="fit",
                  pad_value=114, stride=32)


@pytest.mark.parametrize("frame_hw, tensor_hw", [
    ((540, 960), (288, 512)),   # 16:9: exactly 512x288, no padding at all
    ((576, 768), (384, 512)),   # 4:3
    ((300, 1000), (160, 512)),  # 154 rows scaled, padded to the next multiple of 32
    ((960, 540), (512, 288)),   # portrait
    ((100, 120), (448, 512)),   # small frames are scaled up, as letterbox does
])
def test_fit_tensor_is_the_scaled_frame_padded_to_the_stride(frame_hw, tensor_hw):
    frame = np.zeros((*frame_hw, 3), np.uint8)
    x, _ = preprocess(frame, FIT)
    assert x.shape == (*tensor_hw, 3)
    assert x.shape[0] % 32 == 0 and x.shape[1] % 32 == 0


def test_fit_pads_right_and_bottom_and_maps_boxes_back():
    frame = np.full((300, 1000, 3), 7, np.uint8)
    x, tr = preprocess(frame, FIT)
    scaled_h = round(300 * 512 / 1000)  # 154
    assert (x[:scaled_h] == 7).all() and (x[scaled_h:] == 114).all()
    box_in_input = np.array([[51.2, 15.36, 512.0, 153.6]], np.float32)
    back = tr.to_original(box_in_input)
    np.testing.assert_allclose(back, [[100, 30, 1000, 300]], atol=1.0)


def test_fit_costs_less_than_the_square_letterbox():
    """The point of fit: the same scale as letterbox, without the grey bars."""
    frame = np.zeros((540, 960, 3), np.uint8)
    fit, fit_tr = preprocess(frame, FIT)
    square, square_tr = preprocess(frame, InputConfig(**{**FIT.__dict__, "resize": "letterbox"}))
    assert fit_tr.scale_x == square_tr.scale_x and fit_tr.scale_y == square_tr.scale_y
    assert fit.size / square.size == pytest.approx(288 / 512)


def test_input_size_needs_a_fit_model():
    class FakeSession:  # only what the constructor reads
        def get_inputs(self):
            return [type("I", (), {"name": "x", "shape": [1, "h", "w", 3]})()]

        def get_outputs(self):
            return [type("O", (), {"name": "y"})()]

    entry = {"name": "square", "decoder": "centernet-tfjs", "classes": "coco80",
             "input": {**FIT.__dict__, "resize": "letterbox", "mean": list(FIT.mean)}}
    with pytest.raises(ValueError, match="resize 'fit'"):
        ObjectDetector(entry, "square.onnx", session=FakeSession(), input_size=384)
    fit_entry = {**entry, "input": {**entry["input"], "resize": "fit"}}
    detector = ObjectDetector(fit_entry, "fit.onnx", session=FakeSession(), input_size=384)
    assert (detector.input.width, detector.input.height) == (384, 384)
    with pytest.raises(ValueError):
        ObjectDetector(fit_entry, "fit.onnx", session=FakeSession(), input_size=400)
