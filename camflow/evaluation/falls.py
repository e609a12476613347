"""Fall alerts on labelled clips (``camflow eval falls``).

    camflow eval falls --videos ../shared/data/falls --labels ../shared/data/falls/labels.csv \\
        [--fps 2] [--config FILE --camera ID] [--min-down-ms N] [--no-pose] [--threads N]

Each clip is sampled as the sampler samples a file (``camflow.services.sampler.sample_file``,
capture times from 0), resized to ``max_width`` and passed through the sampler's JPEG
encoding; then, frame by frame as the job runs them, the configured detector
(``job.detector``; on every sampled frame: no motion gate), the tracker (``job.tracking``, given
the frame as the job gives it) and the scene rules (the camera's scene with ``--camera``, else
the defaults), with the person-down pose model (``movenet-multipose``) looking at the decoded
frame. ``--no-pose``: the rules without it (box geometry only).

Labels: a CSV with ``file, fps, event`` (``fall`` / ``none``) and, for falls,
``event_start_frame`` (0-based frames of the clip). Scoring per clip: a fall clip with a
``fall`` alert at or after ``event_start - EARLY_S`` is a true alert (one per clip; its delay
is the alert's time minus the event start), without one it is missed; every ``fall`` alert in
a ``none`` clip, and every one before that window in a fall clip, is a false alert.

Prints one line per clip, then one JSON object: ``{clips, true_alerts, false_alerts, missed,
mean_delay_s}``.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

POSE_MODEL = "movenet-multipose"
EARLY_S = 1.0  # label frames are read by eye (about +-3 frames); alerts this early still count
JPEG_QUALITY = 85  # the sampler's


def read_labels(path: str | Path) -> list[dict[str, Any]]:
    """Rows of the labels CSV with typed ``fps``, ``event`` and ``event_start_frame``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels not found: {path}")
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            event = (row.get("event") or "").strip()
            if event not in ("fall", "none"):
                raise ValueError(f"{path}: {row.get('file')}: event must be fall or none, "
                                 f"got {event!r}")
            start = (row.get("event_start_frame") or "").strip()
            if event == "fall" and not start:
                raise ValueError(f"{path}: {row['file']}: a fall needs event_start_frame")
            rows.append({"file": row["file"], "fps": float(row["fps"]), "event": event,
                         "event_start_frame": int(start) if start else None})
    return rows


def _samples(video: Path, fps: float, max_width: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """(frame index, capture ms from 0, decoded image) as the job would see them."""
    from camflow.services.sampler import sample_file
    from camflow.transforms.frames import decode_jpeg, encode_jpeg, resize_to_max_width

    for frame in sample_file(str(video), fps, start_ms=0):
        image = resize_to_max_width(frame.image, max_width)
        yield frame.sequence, frame.capture_ms, decode_jpeg(encode_jpeg(image, JPEG_QUALITY))


def load_person_down(threads: int = 1):
    """The fall rule's pose look-up from the verified model cache (``camflow models build``)."""
    from camflow.core.perception import model_path
    from camflow.transforms.pose import PersonDown, PoseEstimator

    return PersonDown(PoseEstimator(model_path(POSE_MODEL), threads=threads))


def _detector(config):
    from camflow.core.perception import configured_detector

    return configured_detector(config.job.detector)


def _tracker(config):
    from camflow.transforms.tracking import IouTracker

    return IouTracker(config.job.tracking)


def run_clip(video: str | Path, fps: float, scene, detector, tracker, person_down,
             max_width: int = 960, camera_id: str = "eval") -> dict[str, Any]:
    """One clip through detector, tracker and rules: its fall alerts (``time_s`` from the
    clip's start) and what the pose cost (calls, ms per call, the rules' ms per frame with
    the pose calls in it)."""
    from camflow.transforms.behaviour import SceneBehaviour
    from camflow.transforms.detections import FrameAnalysis
    from camflow.transforms.tracking import TrackerState

    pose_s = [0.0]

    def timed_pose(image, box, search=False):
        t0 = time.perf_counter()
        try:
            return person_down(image, box, search=search)
        finally:
            pose_s[0] += time.perf_counter() - t0

    behaviour = SceneBehaviour(scene, pose=timed_pose if person_down is not None else None)
    tracker_state, state = TrackerState(), None
    alerts, frames, pose_calls, rules_s = [], 0, 0, 0.0
    for index, capture_ms, image in _samples(Path(video), fps, max_width):
        update = tracker.update(tracker_state, detector(image), capture_ms, image=image)
        tracker_state = update.state
        height, width = image.shape[:2]
        analysis = FrameAnalysis(camera_id=camera_id, capture_ms=capture_ms, sequence=index,
                                 width=width, height=height, jpeg=b"",
                                 detections=update.detections, image=image)
        t0 = time.perf_counter()
        step = behaviour.step(state, analysis)
        rules_s += time.perf_counter() - t0
        state = step.state
        frames += 1
        pose_calls += step.extra["pose_calls"]
        for alert in step.alerts:
            if alert["type"] != "fall":
                continue
            evidence = json.loads(alert["evidence"])
            alerts.append({"time_s": round(capture_ms / 1000.0, 2), "frame": index,
                           "track_id": alert["track_id"],
                           "confirmed_by": evidence.get("confirmed_by"),
                           "down_since_s": round(evidence["down_since_ms"] / 1000.0, 2)})
    return {"frames": frames, "alerts": alerts, "pose_calls": pose_calls,
            "pose_ms_per_call": round(pose_s[0] * 1000.0 / pose_calls, 1) if pose_calls else None,
            "rules_ms_per_frame": round(rules_s * 1000.0 / frames, 2) if frames else 0.0}


def score(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``{clips, true_alerts, false_alerts, missed, mean_delay_s}`` of clip results (label
    row + ``alerts``), marking each row's ``result`` and ``delay_s``."""
    true_alerts = false_alerts = missed = 0
    delays = []
    for row in rows:
        times = [a["time_s"] for a in row["alerts"]]
        if row["event"] == "none":
            false_alerts += len(times)
            row["result"] = "false alert" if times else "ok"
            continue
        start_s = row["event_start_frame"] / row["fps"]
        early = [t for t in times if t < start_s - EARLY_S]
        late = [t for t in times if t >= start_s - EARLY_S]
        false_alerts += len(early)
        if late:
            true_alerts += 1
            row["delay_s"] = round(late[0] - start_s, 2)
            delays.append(row["delay_s"])
            row["result"] = "alert"
        else:
            missed += 1
            row["result"] = "missed"
    return {"clips": len(rows), "true_alerts": true_alerts, "false_alerts": false_alerts,
            "missed": missed,
            "mean_delay_s": round(float(np.mean(delays)), 2) if delays else None}


def eval_falls(videos: str | Path, labels: str | Path, fps: float = 2.0, config=None,
               camera_id: str | None = None, min_down_ms: int | None = None,
               use_pose: bool = True, threads: int = 1) -> dict[str, Any]:
    """Every labelled clip of ``videos`` at ``fps``: ``{"summary": score(...), "clips": [...]}``."""
    from camflow.config import Config
    from camflow.transforms.scene import Scene

    if fps <= 0:
        raise ValueError("fps must be > 0")
    config = config or Config()
    camera = config.camera(camera_id) if camera_id else None
    if camera_id and camera is None:
        raise ValueError(f"camera {camera_id!r} is not in the configuration")
    scene = camera.scene if camera is not None and camera.scene is not None else Scene()
    if min_down_ms is not None:
        scene = scene.model_copy(update={"fall": scene.fall.model_copy(
            update={"min_down_ms": int(min_down_ms)})})
    max_width = camera.max_width if camera is not None else 960
    videos = Path(videos)
    label_rows = read_labels(labels)
    missing = [r["file"] for r in label_rows if not (videos / r["file"]).is_file()]
    if missing:
        raise FileNotFoundError(f"clips named in {labels} not in {videos}: {missing}")
    detector, tracker = _detector(config), _tracker(config)
    person_down = load_person_down(threads) if use_pose else None
    rows = []
    for label in label_rows:
        result = run_clip(videos / label["file"], fps, scene, detector, tracker, person_down,
                          max_width=max_width)
        rows.append({**label, **result})
    summary = score(rows)
    return {"summary": summary, "clips": rows, "fps": fps,
            "min_down_ms": scene.fall.min_down_ms, "pose": use_pose}


def format_clip(row: dict[str, Any]) -> str:
    alerts = ", ".join(f"{a['time_s']}s (track {a['track_id']}, {a['confirmed_by']})"
                       for a in row["alerts"]) or "none"
    delay = f", delay {row['delay_s']} s" if "delay_s" in row else ""
    return (f"{row['file']}: {row['event']} -> {row['result']}{delay}; alerts: {alerts}; "
            f"{row['frames']} frames, {row['pose_calls']} pose calls "
            f"({row['pose_ms_per_call']} ms each), rules {row['rules_ms_per_frame']} ms/frame")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videos", required=True, help="folder of the clips")
    parser.add_argument("--labels", required=True,
                        help="CSV: file, fps, event (fall/none), event_start_frame")
    parser.add_argument("--fps", type=float, default=2.0, help="sampling rate (frames/s)")
    parser.add_argument("--config", help="deployment YAML (default: built-in defaults)")
    parser.add_argument("--camera", help="camera id in --config: its scene and max_width")
    parser.add_argument("--min-down-ms", type=int, default=None,
                        help="override the scene's fall.min_down_ms")
    parser.add_argument("--no-pose", action="store_true",
                        help="the rules without the pose model (box geometry only)")
    parser.add_argument("--threads", type=int, default=1, help="pose model threads")


def run(args: argparse.Namespace) -> int:
    from camflow.config import load_config

    config = load_config(getattr(args, "config", None))
    result = eval_falls(args.videos, args.labels, fps=args.fps, config=config,
                        camera_id=getattr(args, "camera", None),
                        min_down_ms=getattr(args, "min_down_ms", None),
                        use_pose=not getattr(args, "no_pose", False),
                        threads=getattr(args, "threads", 1))
    for row in result["clips"]:
        print(format_clip(row))
    print(json.dumps(result["summary"], sort_keys=True))
    return 0
