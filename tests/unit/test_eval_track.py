"""``camflow eval track``: ground-truth loading, motmetrics scoring, line counts and the command
on a small synthetic video (the real-footage run is tests/integration/test_eval_track_real.py)."""
import json

import cv2
import numpy as np
import pytest

from camflow.config import load_config
from camflow.evaluation import track as ev
from camflow.transforms.detections import Detections
from camflow.transforms.scene import Scene

pytest.importorskip("motmetrics")

WIDTH, HEIGHT, FPS, FRAMES = 320, 240, 10, 40
BACKGROUND = 100
COLOURS = [((40, 40, 220), (220, 80, 40)), ((40, 200, 40), (200, 200, 200))]  # BGR top, bottom


def people_at(index: int) -> list[tuple[int, tuple[int, int, int, int]]]:
    """(MOT id, box) of the two walkers at a video frame: 1 walks right, 2 walks left,
    both crossing the vertical line x = 160 (0.5 of the width)."""
    a = 20 + 6 * index
    b = 280 - 6 * index
    return [(1, (a, 60, a + 20, 120)), (2, (b, 130, b + 20, 190))]


@pytest.fixture
def video_and_truth(tmp_path):
    video = tmp_path / "walk.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened()
    rows = []
    for index in range(FRAMES):
        image = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
        for (person, (x1, y1, x2, y2)), (top, bottom) in zip(people_at(index), COLOURS):
            image[y1:(y1 + y2) // 2, x1:x2] = top
            image[(y1 + y2) // 2:y2, x1:x2] = bottom
            rows.append(f"{index + 1},{person},{x1},{y1},{x2 - x1},{y2 - y1},1,-1,-1,-1")
        writer.write(image)
    writer.release()
    rows.append(f"3,7,0,0,10,10,0,-1,-1,-1")  # "don't care": never scored
    truth = tmp_path / "gt.txt"
    truth.write_text("\n".join(rows) + "\n")
    return video, truth


def blob_detector(calls: list):
    """A stand-in detector: every blob that differs from the background is a person."""

    def detect(image):
        calls.append(1)
        mask = (np.abs(image.astype(np.int16) - BACKGROUND).max(axis=2) > 40).astype(np.uint8)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        boxes = [(x, y, x + w, y + h) for x, y, w, h, area in stats[1:count] if area > 50]
        return Detections(xyxy=np.array(boxes, np.float32).reshape(-1, 4),
                          confidence=np.full(len(boxes), 0.9), class_id=np.zeros(len(boxes)))
    return detect


def test_ground_truth_is_0_based_xyxy_without_dont_care_rows(video_and_truth):
    _, truth = video_and_truth
    gt = ev.load_mot_ground_truth(truth)
    assert sorted(gt) == list(range(FRAMES))
    ids, boxes = gt[0]
    assert ids.tolist() == [1, 2]
    np.testing.assert_allclose(boxes, [box for _, box in people_at(0)])
    assert 7 not in gt[2][0]  # the conf-0 row of MOT frame 3
    with pytest.raises(FileNotFoundError):
        ev.load_mot_ground_truth(truth.parent / "missing.txt")


def test_iou_distances_forbid_matches_below_half_overlap():
    d = ev.iou_distances(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10]]))
    assert d[0, 0] == 0.0 and np.isnan(d[0, 1])


def test_score_mot_counts_identity_switches():
    boxes = np.array([[0, 0, 10, 20], [50, 0, 60, 20]], float)
    gt = {f: (np.array([1, 2]), boxes) for f in range(4)}
    perfect = {f: (np.array([5, 6]), boxes) for f in range(4)}
    swapped = {f: (np.array([5, 6]) if f < 2 else np.array([6, 5]), boxes) for f in range(4)}
    ok = ev.score_mot(gt, perfect, list(range(4)))
    assert (ok["idf1"], ok["mota"], ok["num_switches"]) == (1.0, 1.0, 0)
    bad = ev.score_mot(gt, swapped, list(range(4)))
    assert bad["num_switches"] == 2 and bad["idf1"] == pytest.approx(0.5)
    missing = ev.score_mot(gt, {}, list(range(4)))
    assert missing["num_misses"] == 8 and missing["mota"] == 0.0


def test_count_crossings_uses_the_line_rule_per_direction():
    scene = Scene.model_validate({"lines": [{"id": "mid", "points": [[0.5, 0.0], [0.5, 1.0]]}]})
    frames = []
    for i in range(10):  # track 1 left -> right, track 2 right -> left, track 3 stays left
        xs = {1: 10 + 20 * i, 2: 190 - 20 * i, 3: 20}
        frames.append((i * 250, Detections(
            xyxy=[(x, 50, x + 10, 80) for x in xs.values()], confidence=[0.9] * 3,
            class_id=[0] * 3, tracker_id=list(xs))))
    counts = ev.count_crossings(scene, frames, width=200, height=100)
    # The line runs top to bottom: side A (its left as drawn) is the image's right.
    assert counts == {"mid": {"a_to_b": 1, "b_to_a": 1}}


def test_eval_track_command_prints_rows_then_json(video_and_truth, tmp_path, monkeypatch,
                                                  capsys):
    video, truth = video_and_truth
    config = tmp_path / "config.yaml"
    config.write_text(
        "cameras:\n"
        "  - id: walk\n"
        f"    max_width: {WIDTH}\n"
        "    scene:\n"
        "      lines: [{id: middle, points: [[0.5, 0.05], [0.5, 0.95]]}]\n")
    calls: list = []
    monkeypatch.setattr(ev, "load_detector", lambda cfg, camera_id: blob_detector(calls))
    from camflow.commands import main
    assert main(["eval", "track", "--video", str(video), "--gt", str(truth), "--fps", "10",
                 "--fps", "2", "--config", str(config), "--camera", "walk"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert sorted(result) == ["10", "2"]
    assert lines[0].startswith("fps 10: IDF1 0.98") and "ID switches 0" in lines[0]
    assert "line middle: a_to_b 1 (truth 1)  b_to_a 1 (truth 1)" in lines[1]
    assert any(line.startswith("fps 2: IDF1 ") for line in lines)
    for fps, frames in (("10", FRAMES), ("2", FRAMES // 5)):
        row = result[fps]
        assert row["frames"] == frames
        assert row["ids_truth"] == 2 and row["ids_tracked"] == 2
        assert row["num_switches"] == 0
        # Both walkers cross once, one each way; the tracker sees what the truth says.
        assert row["lines"]["middle"]["truth"] == {"a_to_b": 1, "b_to_a": 1}
        assert row["lines"]["middle"]["tracker"] == row["lines"]["middle"]["truth"]
    # Only each track's tentative first sample goes unreported: of n samples per walker,
    # n - 1 are identity true positives and 1 a miss, IDF1 = 2(n-1) / (2(n-1) + 1).
    for fps, n in (("10", FRAMES), ("2", FRAMES // 5)):
        assert result[fps]["idf1"] == pytest.approx((2 * n - 2) / (2 * n - 1), abs=1e-3)
    assert len(calls) == FRAMES  # each video frame detected once, whatever the rates share


def test_eval_track_refuses_an_unknown_camera(video_and_truth):
    video, truth = video_and_truth
    with pytest.raises(ValueError, match="camera 'nope'"):
        ev.eval_track(video, truth, [4], config=load_config(None), camera_id="nope")


def test_truth_is_scaled_to_a_camera_that_shrinks_the_video(video_and_truth, tmp_path,
                                                            monkeypatch):
    # The camera's max_width halves the frames: the tracker's boxes are in half-size pixels,
    # and the truth is scaled to them before scoring and counting.
    video, truth = video_and_truth
    config = tmp_path / "half.yaml"
    config.write_text(
        "cameras:\n"
        "  - id: walk\n"
        f"    max_width: {WIDTH // 2}\n"
        "    scene:\n"
        "      lines: [{id: middle, points: [[0.5, 0.05], [0.5, 0.95]]}]\n")
    monkeypatch.setattr(ev, "load_detector", lambda cfg, camera_id: blob_detector([]))
    row = ev.eval_track(video, truth, [5], config=load_config(config), camera_id="walk")["rates"]["5"]
    assert row["frames"] == FRAMES // 2
    assert row["idf1"] == pytest.approx((FRAMES - 2) / (FRAMES - 1), abs=1e-3)
    assert row["lines"]["middle"] == {"tracker": {"a_to_b": 1, "b_to_a": 1},
                                      "truth": {"a_to_b": 1, "b_to_a": 1}}
