import numpy as np

from camflow.transforms.boxes import batched_nms, nms


def greedy_nms(xyxy, scores, iou_threshold):
    """The textbook loop, kept here as the reference OpenCV's NMS must agree with."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (xyxy[:, i] for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        iou = w * h / np.maximum(areas[i] + areas[rest] - w * h, 1e-9)
        order = rest[iou <= iou_threshold]
    return keep


def random_boxes(rng, n):
    xy = rng.uniform(0, 500, (n, 2))
    wh = rng.uniform(5, 120, (n, 2))
    return np.column_stack([xy, xy + wh]).astype(np.float32), rng.uniform(0, 1, n).astype(np.float32)


def test_same_boxes_as_the_greedy_loop_per_class():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(0, 80))
        boxes, scores = random_boxes(rng, n)
        classes = rng.integers(0, 3, n)
        thr = float(rng.uniform(0.2, 0.7))
        expected = [i for c in range(3) for i in np.flatnonzero(classes == c)[
            greedy_nms(boxes[classes == c], scores[classes == c], thr)]]
        assert sorted(batched_nms(boxes, scores, classes, thr).tolist()) == sorted(expected)


def test_kept_boxes_come_highest_score_first_across_classes():
    boxes = np.array([[0, 0, 10, 10], [100, 100, 110, 110], [200, 200, 210, 210]], np.float32)
    scores = np.array([0.2, 0.9, 0.5], np.float32)
    assert batched_nms(boxes, scores, np.array([0, 1, 0]), 0.5).tolist() == [1, 2, 0]


def test_overlapping_boxes_suppress_only_within_a_class():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0]
    assert sorted(batched_nms(boxes, scores, np.array([0, 1]), 0.5).tolist()) == [0, 1]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).tolist() == []
