"""YOLOv8 decoding end to end on a tiny ONNX graph built with onnx.helper and run by ORT."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from camflow.transforms.detect import (  # noqa: E402
    ObjectDetector,
    decode_yolov8,
    postprocess,
)
from camflow.transforms.detections import COCO_CLASSES  # noqa: E402

NC = 80
SIZE = 64  # model input 64x64


def _raw_output() -> np.ndarray:
    """[1, 84, N]: cx, cy, w, h rows, then 80 class-score rows (no objectness)."""
    boxes = [  # (cx, cy, w, h, class, score)
        (20, 20, 10, 20, 0, 0.90),   # person A
        (21, 21, 10, 20, 0, 0.80),   # overlaps A heavily (IoU > 0.5) -> suppressed
        (21, 21, 10, 20, 2, 0.70),   # same place but a car -> kept (per-class NMS)
        (48, 40, 12, 12, 7, 0.60),   # truck
        (10, 50, 6, 6, 0, 0.20),     # below the 0.25 threshold
        (40, 10, 8, 8, 16, 0.55),    # dog
    ]
    out = np.zeros((1, 4 + NC, len(boxes)), np.float32)
    for j, (cx, cy, w, h, c, s) in enumerate(boxes):
        out[0, :4, j] = (cx, cy, w, h)
        out[0, 4:, j] = 0.01
        out[0, 4 + c, j] = s
    return out


def _model_bytes(raw: np.ndarray) -> bytes:
    """images [1,3,64,64] -> output0 = const + 0 * ReduceSum(images) (keeps the input live)."""
    const = numpy_helper.from_array(raw, "raw")
    nodes = [
        helper.make_node("ReduceSum", ["images"], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "zero"], ["z"]),
        helper.make_node("Add", ["raw", "z"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes, "fake_yolov8",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(raw.shape))],
        initializer=[const, numpy_helper.from_array(np.zeros((), np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


ENTRY = {
    "name": "fake-yolo",
    "decoder": "yolov8",
    "classes": "coco80",
    "input": {"width": SIZE, "height": SIZE, "layout": "NCHW", "colour": "RGB",
              "scale": 1 / 255, "resize": "letterbox"},
    "thresholds": {"score": 0.25, "nms_iou": 0.5, "max_detections": 100},
    "source": {"kind": "file", "path": "fake.onnx"},
}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("yolo") / "fake.onnx"
    path.write_bytes(_model_bytes(_raw_output()))
    return path


def test_decode_layout_and_nms():
    raw = _raw_output()
    xyxy, score, cls = decode_yolov8(raw, num_classes=NC)
    assert xyxy.shape == (6, 4)
    np.testing.assert_allclose(xyxy[0], [15, 10, 25, 30])
    assert list(cls) == [0, 0, 2, 7, 0, 16]
    keep = postprocess(xyxy, score, cls, score_threshold=0.25, iou_threshold=0.5,
                       max_detections=100)
    assert list(keep) == [0, 2, 3, 5]
    # Transposed layout [1, N, 84] decodes the same.
    xyxy_t, score_t, cls_t = decode_yolov8(raw.transpose(0, 2, 1), num_classes=NC)
    np.testing.assert_array_equal(xyxy_t, xyxy)
    np.testing.assert_array_equal(cls_t, cls)


def test_detector_through_onnxruntime_maps_back_to_pixels(model_file):
    det = ObjectDetector(ENTRY, model_file, threads=1)
    # 128x64 image: letterbox scale 0.5, then 16 px of padding top and bottom.
    image = np.zeros((64, 128, 3), np.uint8)
    out = det(image)
    assert out.class_names == COCO_CLASSES
    assert list(out.class_id) == [0, 2, 7, 16]
    np.testing.assert_allclose(out.confidence, [0.9, 0.7, 0.6, 0.55], rtol=1e-6)
    expected = np.array([
        [15, 10, 25, 30],    # person
        [16, 11, 26, 31],    # car
        [42, 34, 54, 46],    # truck
        [36, 6, 44, 14],     # dog
    ], np.float32)
    expected[:, [1, 3]] -= 16  # remove the vertical padding
    expected /= 0.5            # undo the scale
    expected[:, [1, 3]] = expected[:, [1, 3]].clip(0, 64)
    np.testing.assert_allclose(out.xyxy, expected, atol=1e-4)
    assert list(out.class_name) == ["person", "car", "truck", "dog"]
    assert (out.tracker_id == -1).all()


def test_class_filter_and_threshold(model_file):
    det = ObjectDetector(ENTRY, model_file, classes=["person", "truck"], score_threshold=0.65)
    out = det(np.zeros((64, 64, 3), np.uint8))
    assert list(out.class_name) == ["person"]
    det = ObjectDetector(ENTRY, model_file, classes=["car", "truck", "bus"])
    out = det(np.zeros((64, 64, 3), np.uint8))
    assert list(out.class_name) == ["car", "truck"]
    np.testing.assert_allclose(out.xyxy, [[16, 11, 26, 31], [42, 34, 54, 46]], atol=1e-4)


