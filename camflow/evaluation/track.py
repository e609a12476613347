"""Multi-object tracking on a real video against MOT ground truth (``camflow eval track``).

    camflow eval track --video ../shared/data/video/vtest.avi \\
        --gt ../shared/data/tracking/PETS09-S2L1-gt.txt --fps 4 --fps 1 \\
        [--config infra/config/demo.yaml --camera walkway] [--frames N]

For each sampling rate the video is sampled as the sampler samples a file
(``camflow.services.sampler.sample_file``), resized to the camera's ``max_width`` and passed
through the sampler's JPEG encoding, then the configured detector (``job.detector``) and
tracker (``job.tracking``) run on it as the job runs them, frame by frame, with the decoded
image. Each distinct video frame is detected once per run, whatever the rates share.

Scoring: ``motmetrics`` (CLEAR MOT and identity metrics) over the person tracks. Ground truth
is MOTChallenge text (``frame,id,left,top,width,height,conf,...``, 1-based frames: MOT frame F
is video frame F-1); only rows with ``conf`` 1 are scored (0 marks "don't care"). A
hypothesis matches a truth box at IoU >= 0.5, as in the MOT benchmarks. Only the sampled
frames are scored, so each rate is judged on what it could have seen.

Counting lines: when ``--camera`` names a camera with a scene, each counting line's crossings
per direction are counted for the tracker's person tracks and for the ground-truth tracks on
the same sampled frames, both by the job's own rule code (``transforms.behaviour``).

Prints one line per rate and, last, one JSON object keyed by fps.
"""
from __future__ import annotations

import argparse
import inspect
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

PERSON = "person"
MATCH_IOU = 0.5  # the MOT benchmarks' match threshold

GroundTruth = dict[int, tuple[np.ndarray, np.ndarray]]  # video frame -> (ids [N], xyxy [N, 4])


def load_mot_ground_truth(path: str | Path) -> GroundTruth:
    """``{0-based video frame: (ids, xyxy boxes)}`` from a MOTChallenge gt.txt; rows with
    ``conf`` 0 ("don't care") are left out."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground truth not found: {path}")
    rows = np.loadtxt(path, delimiter=",", ndmin=2)
    if rows.size == 0:
        return {}
    if rows.shape[1] < 7:
        raise ValueError(f"{path}: expected MOT rows frame,id,left,top,width,height,conf,...")
    rows = rows[rows[:, 6] == 1]
    out: GroundTruth = {}
    for frame in np.unique(rows[:, 0]).astype(int):
        r = rows[rows[:, 0] == frame]
        xyxy = np.column_stack([r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5]])
        out[int(frame) - 1] = (r[:, 1].astype(np.int64), xyxy)
    return out


def iou_distances(gt_xyxy: np.ndarray, hyp_xyxy: np.ndarray, min_iou: float = MATCH_IOU
                  ) -> np.ndarray:
    """motmetrics' distance matrix: 1 - IoU, NaN (no match allowed) below ``min_iou``.

    (``motmetrics.distances.iou_matrix`` calls ``np.asfarray``, which numpy 2 removed.)"""
    from camflow.transforms.tracking import box_iou

    iou = box_iou(gt_xyxy, hyp_xyxy)
    dist = 1.0 - iou
    dist[iou < min_iou] = np.nan
    return dist


class Sample:
    """One sampled frame: its video index, capture time, decoded image and that image's
    width over the video's (the camera's ``max_width`` may shrink it)."""

    __slots__ = ("index", "capture_ms", "image", "scale")

    def __init__(self, index: int, capture_ms: int, image: np.ndarray, scale: float = 1.0) -> None:
        self.index, self.capture_ms, self.image, self.scale = index, capture_ms, image, scale


def sample_video(video: str | Path, fps: float, max_width: int = 960,
                 max_frames: int | None = None) -> Iterator[Sample]:
    """The frames the sampler would publish at ``fps`` (capture times from 0), as the job
    decodes them (resized to ``max_width``, JPEG quality 85 and back); ``max_frames`` limits
    the *video* frames read."""
    from camflow.services.sampler import sample_file
    from camflow.transforms.frames import decode_jpeg, encode_jpeg, resize_to_max_width

    for frame in sample_file(str(video), fps, start_ms=0):
        if max_frames is not None and frame.sequence >= max_frames:
            break
        image = decode_jpeg(encode_jpeg(resize_to_max_width(frame.image, max_width), 85))
        yield Sample(frame.sequence, frame.capture_ms, image,
                     image.shape[1] / float(frame.image.shape[1]))


def load_detector(config, camera_id: str | None = None) -> Callable[[np.ndarray], Any]:
    """The configured detector, loaded as the job loads it (``camflow.core.perception``: the
    model must be built and verified, never built here), keeping what the camera's score
    threshold keeps."""
    from camflow.core.perception import camera_settings, detector_for_cameras

    detector = detector_for_cameras(config)
    threshold = camera_settings(config)(camera_id or "").score_threshold

    def detect(image: np.ndarray):
        detections = detector(image)
        if threshold is not None:
            detections = detections[detections.confidence >= threshold]
        return detections
    return detect


def count_crossings(scene, frames: Iterable[tuple[int, Any]], width: int, height: int,
                    camera_id: str = "eval") -> dict[str, dict[str, int]]:
    """``{line_id: {"a_to_b": n, "b_to_a": n}}`` of the tracked rows in ``frames`` (pairs of
    capture time and ``Detections`` with ``tracker_id``), counted by the job's line rule."""
    from camflow.transforms.behaviour import SceneBehaviour
    from camflow.transforms.detections import FrameAnalysis

    # Only the lines: the zone and zone-free rules (falls, running, dispersal) cost time and
    # change no count.
    scene = scene.model_copy(update={
        "zones": [], **{rule: getattr(scene, rule).model_copy(update={"enabled": False})
                        for rule in ("fall", "running", "dispersal") if hasattr(scene, rule)}})
    behaviour = SceneBehaviour(scene)
    counts = {line.id: {"a_to_b": 0, "b_to_a": 0} for line in behaviour.scene.lines}
    state = None
    for capture_ms, detections in frames:
        analysis = FrameAnalysis(camera_id=camera_id, capture_ms=capture_ms, sequence=0,
                                 width=width, height=height, jpeg=b"", detections=detections)
        step = behaviour.step(state, analysis)
        state = step.state
        for crossing in step.extra["crossings"]:
            counts[crossing["line_id"]][crossing["direction"]] += 1
    return counts


def score_mot(gt: GroundTruth, hyp: dict[int, tuple[np.ndarray, np.ndarray]],
              frames: list[int]) -> dict[str, Any]:
    """motmetrics over ``frames`` (video indices): IDF1, MOTA, ID switches and the rest."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=False)
    empty = (np.zeros(0, np.int64), np.zeros((0, 4)))
    for index in frames:
        gt_ids, gt_boxes = gt.get(index, empty)
        hyp_ids, hyp_boxes = hyp.get(index, empty)
        acc.update(gt_ids.tolist(), hyp_ids.tolist(), iou_distances(gt_boxes, hyp_boxes),
                   frameid=index)
    names = ["idf1", "idp", "idr", "mota", "motp", "num_switches", "num_false_positives",
             "num_misses", "num_objects", "num_unique_objects", "mostly_tracked",
             "num_fragmentations", "precision", "recall"]
    summary = mm.metrics.create().compute(acc, metrics=names, name="all")
    row = summary.loc["all"]

    def value(name: str) -> float | int:
        v = row[name]
        return int(v) if name.startswith("num_") or name == "mostly_tracked" else round(float(v), 4)

    return {name: value(name) for name in names}


def track_samples(tracker, samples: Iterable[Sample], detect: Callable[[Sample], Any],
                  ) -> tuple[list[tuple[Sample, Any]], float]:
    """Run ``tracker`` over ``samples``; returns [(sample, tracked detections)] and the mean
    tracker time per frame (ms)."""
    from camflow.transforms.tracking import TrackerState

    state = TrackerState()
    out, spent = [], 0.0
    # The appearance cue needs the frame; a tracker without it (e.g. a baseline) gets none.
    takes_image = "image" in inspect.signature(tracker.update).parameters
    for sample in samples:
        detections = detect(sample)
        t0 = time.perf_counter()
        if takes_image:
            update = tracker.update(state, detections, sample.capture_ms, image=sample.image)
        else:
            update = tracker.update(state, detections, sample.capture_ms)
        spent += time.perf_counter() - t0
        state = update.state
        out.append((sample, update.detections))
    return out, (spent * 1000.0 / len(out) if out else 0.0)


def evaluate_rate(tracker, samples: Iterable[Sample], detect: Callable[[Sample], Any],
                  gt: GroundTruth, scene=None) -> dict[str, Any]:
    """One rate's row: track ``samples``, score the person tracks against ``gt`` and, when
    ``scene`` has counting lines, count crossings of both."""
    tracked, tracker_ms = track_samples(tracker, samples, detect)
    frames = [s.index for s, _ in tracked]
    # Truth in the sampled images' pixels, as the tracker's boxes are.
    truth: GroundTruth = {s.index: (gt[s.index][0], gt[s.index][1] * s.scale)
                          for s, _ in tracked if s.index in gt}
    hyp: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    hyp_ids: set[int] = set()
    person_rows = []
    for sample, det in tracked:
        keep = (det.tracker_id >= 0) & (det.class_name == PERSON) if len(det) else np.zeros(0, bool)
        hyp[sample.index] = (det.tracker_id[keep], det.xyxy[keep].astype(np.float64))
        hyp_ids.update(int(i) for i in det.tracker_id[keep])
        person_rows.append((sample.capture_ms, det[keep]))
    truth_ids = {int(i) for ids, _ in truth.values() for i in ids}
    row: dict[str, Any] = {"frames": len(frames), **score_mot(truth, hyp, frames),
                           "ids_tracked": len(hyp_ids), "ids_truth": len(truth_ids),
                           "tracker_ms_per_frame": round(tracker_ms, 3)}
    if scene is not None and scene.lines and tracked:
        height, width = tracked[0][0].image.shape[:2]
        row["lines"] = _line_rows(scene, person_rows, truth, tracked, width, height)
    return row


def eval_track(video: str | Path, gt_path: str | Path, fps_list: Iterable[float],
               config=None, camera_id: str | None = None, max_frames: int | None = None,
               detections_cache: dict[int, Any] | None = None,
               tracker=None) -> dict[str, Any]:
    """Per fps: motmetrics scores, ids tracked vs in truth, tracker ms per frame and, when the
    camera has counting lines, crossings per line and direction (tracker vs ground truth).

    ``detections_cache`` ({video frame index: Detections}) is filled as frames are detected
    and consulted first (one detection per distinct frame across rates; tests may pre-fill
    it). ``tracker``: default the configured ``Tracker(config.job.tracking)``."""
    from camflow.config import Config
    from camflow.transforms import tracking as _tracking

    config = config or Config()
    video = Path(video)
    if not video.is_file():
        raise FileNotFoundError(f"video not found: {video}")
    gt = load_mot_ground_truth(gt_path)
    camera = config.camera(camera_id) if camera_id else None
    if camera_id and camera is None:
        raise ValueError(f"camera {camera_id!r} is not in the configuration")
    scene = camera.scene if camera is not None else None
    max_width = camera.max_width if camera is not None else 960
    tracker = tracker or _tracking.Tracker(config.job.tracking)
    cache = {} if detections_cache is None else detections_cache
    detector = None

    def detect(sample: Sample):
        nonlocal detector
        if sample.index not in cache:
            if detector is None:
                detector = load_detector(config, camera_id)
            cache[sample.index] = detector(sample.image)
        return cache[sample.index]

    results: dict[str, Any] = {}
    for fps in fps_list:
        if fps <= 0:
            raise ValueError("fps must be > 0")
        samples = sample_video(video, fps, max_width, max_frames)
        results[_fps_key(fps)] = evaluate_rate(tracker, samples, detect, gt, scene)
    return {"video": video.name, "ground_truth": Path(gt_path).name,
            "tracker": type(tracker).__name__, "rates": results}


def _line_rows(scene, person_rows, gt: GroundTruth, tracked, width: int, height: int):
    from camflow.transforms.detections import COCO_CLASSES, Detections

    person = COCO_CLASSES.index(PERSON)
    empty = (np.zeros(0, np.int64), np.zeros((0, 4)))
    truth_rows = []
    for sample, _ in tracked:
        ids, boxes = gt.get(sample.index, empty)
        truth_rows.append((sample.capture_ms, Detections(
            xyxy=boxes, confidence=np.ones(len(ids)), class_id=np.full(len(ids), person),
            tracker_id=ids)))
    ours = count_crossings(scene, person_rows, width, height)
    truth = count_crossings(scene, truth_rows, width, height)
    return {line_id: {"tracker": ours[line_id], "truth": truth[line_id]} for line_id in ours}


def _fps_key(fps: float) -> str:
    return f"{fps:g}"


def format_row(fps: str, row: dict[str, Any]) -> str:
    text = (f"fps {fps}: IDF1 {row['idf1']:.3f}  MOTA {row['mota']:.3f}  "
            f"ID switches {row['num_switches']}  ids tracked {row['ids_tracked']} / "
            f"in truth {row['ids_truth']}  ({row['frames']} frames, tracker "
            f"{row['tracker_ms_per_frame']:.2f} ms/frame)")
    for line_id, c in row.get("lines", {}).items():
        text += (f"\n  line {line_id}: a_to_b {c['tracker']['a_to_b']} (truth "
                 f"{c['truth']['a_to_b']})  b_to_a {c['tracker']['b_to_a']} (truth "
                 f"{c['truth']['b_to_a']})")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", required=True, help="video file to sample")
    parser.add_argument("--gt", required=True, help="MOTChallenge gt.txt of the same video")
    parser.add_argument("--fps", type=float, action="append", required=True,
                        help="sampling rate (frames/s); repeat for several rates")
    parser.add_argument("--config", help="deployment YAML (default: built-in defaults)")
    parser.add_argument("--camera", help="camera id in --config: its max_width and counting lines")
    parser.add_argument("--frames", type=int, help="only the first N video frames")


def run(args: argparse.Namespace) -> int:
    from camflow.config import load_config

    config = load_config(getattr(args, "config", None))
    result = eval_track(args.video, args.gt, args.fps, config=config,
                        camera_id=getattr(args, "camera", None),
                        max_frames=getattr(args, "frames", None))
    for fps, row in result["rates"].items():
        print(format_row(fps, row))
    print(json.dumps(result["rates"], sort_keys=True))
    return 0
