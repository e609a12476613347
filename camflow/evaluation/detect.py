"""Object detector on a real video: persons and vehicles per frame (``camflow eval detect``).

    camflow eval detect --video ../shared/data/video/vtest.avi --every 50 [--config FILE]

Runs the configured detector (``job.detector``: model, threads, score / NMS thresholds, classes)
on every K-th frame (0, K, 2K, ...). When by-eye person counts exist for the video (a
``*_person_counts.csv`` with ``file, frame_index_0based, persons_min, persons_max`` next to the
video or in ``../shared/data/video`` / ``$CAMFLOW_DATA/video``; rows matched by file name), the
labelled frames are detected too (in addition to the every-K-th ones) and compared with the
``[min, max]`` range: ``within_1`` / ``within_2`` count the labelled frames whose detected
person count is within 1 / 2 of it.
"""
from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from camflow.transforms.detections import MOTOR_VEHICLE_CLASSES

REPO = Path(__file__).resolve().parents[2]
PERSON_CLASSES = ("person",)


def _label_files(video: Path) -> list[Path]:
    dirs = [video.parent, REPO.parent / "shared" / "data" / "video"]
    if os.environ.get("CAMFLOW_DATA"):
        dirs.insert(1, Path(os.environ["CAMFLOW_DATA"]) / "video")
    out: list[Path] = []
    for d in dirs:
        for p in sorted(d.glob("*_person_counts.csv")) if d.is_dir() else []:
            if p.resolve() not in [q.resolve() for q in out]:
                out.append(p)
    return out


def person_count_labels(video: str | Path) -> dict[int, tuple[int, int]]:
    """``{frame index: (persons_min, persons_max)}`` for this video's file name, or ``{}``."""
    video = Path(video)
    for path in _label_files(video):
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if Path(r.get("file", "")).name == video.name]
        if rows:
            return {int(r["frame_index_0based"]): (int(r["persons_min"]), int(r["persons_max"]))
                    for r in rows}
    return {}


def _detector(config=None):
    from camflow.core import perception
    from camflow.config import Config

    return perception.configured_detector((config or Config()).job.detector)


def eval_detect(video: str | Path, every: int = 50, config=None) -> dict[str, Any]:
    """Persons / vehicles per every-``every``-th frame of ``video`` with the configured detector;
    plus agreement with by-eye person counts where they exist."""
    import cv2

    if every < 1:
        raise ValueError("every must be >= 1")
    video = Path(video)
    if not video.is_file():
        raise FileNotFoundError(f"video not found: {video}")
    det = _detector(config)
    labels = person_count_labels(video)
    persons: list[int] = []
    vehicles: list[int] = []
    counted: dict[int, int] = {}
    ms: list[float] = []
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise RuntimeError(f"cannot open {video}")
    index = 0
    try:
        while True:
            on_grid = index % every == 0
            if not (on_grid or index in labels):
                if not cap.grab():  # skipped frame: no decode into an array
                    break
                index += 1
                continue
            ok, frame = cap.read()
            if not ok:
                break
            t0 = time.perf_counter()
            d = det(frame)
            ms.append((time.perf_counter() - t0) * 1000.0)
            names = d.class_name if len(d) else np.array([], dtype=object)
            n_persons = int(np.isin(names, PERSON_CLASSES).sum())
            counted[index] = n_persons
            if on_grid:
                persons.append(n_persons)
                vehicles.append(int(np.isin(names, sorted(MOTOR_VEHICLE_CLASSES)).sum()))
            index += 1
    finally:
        cap.release()
    s = config.job.detector if config is not None else None
    result: dict[str, Any] = {
        "video": video.name,
        "frames": len(persons),
        "every": every,
        "model": det.version,
        "threads": s.threads if s else 1,
        "score_threshold": det.score_threshold,
        "persons_per_frame": persons,
        "vehicles_per_frame": vehicles,
        "mean_persons": round(float(np.mean(persons)), 3) if persons else 0.0,
        "mean_vehicles": round(float(np.mean(vehicles)), 3) if vehicles else 0.0,
        "ms_per_frame": round(float(np.mean(ms)), 2) if ms else 0.0,
    }
    if labels:
        rows = [(i, counted[i], lo, hi) for i, (lo, hi) in sorted(labels.items()) if i in counted]
        result["labelled_frames"] = len(rows)
        result["within_1"] = sum(lo - 1 <= n <= hi + 1 for _, n, lo, hi in rows)
        result["within_2"] = sum(lo - 2 <= n <= hi + 2 for _, n, lo, hi in rows)
        result["labelled"] = [{"frame": i, "persons": n, "min": lo, "max": hi} for i, n, lo, hi in rows]
    return result
