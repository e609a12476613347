"""Motion gate on real footage: how many detector runs it saves, and whether the detections it
reuses agree with what the detector would have found.

    python -m bench.motion_gate [--videos ../shared/data/video] [--fps 1]

For every video sampled at --fps (frames resized to 960 px wide, as the bench does), the
detector runs on EVERY frame (the baseline) and the gate decides alongside; on frames the gate
calls still, the reused detections are compared with the fresh ones by class counts. Prints a
line per video and, last, one JSON object with the totals.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default=str(REPO.parent / "shared" / "data" / "video"))
    parser.add_argument("--fps", type=float, default=1.0)
    args = parser.parse_args(argv)
    from bench.pipeline import VIDEO_SUFFIXES
    from camflow.config import Config
    from camflow.core import perception
    from camflow.transforms.frames import resize_to_max_width
    from camflow.transforms.motion import MotionGate

    detector = perception.configured_detector(Config().job.detector)
    totals = {"frames": 0, "skipped": 0, "agree": 0, "count_diff": 0,
              "detect_s": 0.0, "gate_s": 0.0}
    for video in sorted(p for p in Path(args.videos).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES):
        capture = cv2.VideoCapture(str(video))
        native = capture.get(cv2.CAP_PROP_FPS) or 25.0
        step = max(1, int(round(native / args.fps)))
        gate, state, index = MotionGate(), None, 0
        row = {"frames": 0, "skipped": 0, "agree": 0, "count_diff": 0, "detect_s": 0.0, "gate_s": 0.0}
        while True:
            ok, image = capture.read()
            if not ok:
                break
            if index % step == 0:
                image = resize_to_max_width(image, 960)
                now_ms = int(index / native * 1000)
                t0 = time.perf_counter()
                decision = gate.decide(state, image, now_ms)
                t1 = time.perf_counter()
                fresh = detector(image)
                row["detect_s"] += time.perf_counter() - t1
                row["gate_s"] += t1 - t0
                row["frames"] += 1
                if decision.detect:
                    state = gate.ran(decision, fresh, now_ms)
                else:
                    reused, state = gate.reused(decision, fresh.class_names)
                    n = len(fresh.class_names)
                    diff = int(np.abs(np.bincount(fresh.class_id, minlength=n)
                                      - np.bincount(reused.class_id, minlength=n)).sum())
                    row["skipped"] += 1
                    row["agree"] += diff == 0
                    row["count_diff"] += diff
            index += 1
        capture.release()
        print(f"{video.name}: {row['skipped']}/{row['frames']} frames still (detector skipped); "
              f"reused detections agree on class counts in {row['agree']}/{row['skipped']} "
              f"(total count difference {row['count_diff']}); gate {row['gate_s'] / max(1, row['frames']) * 1000:.2f} ms/frame, "
              f"detector {row['detect_s'] / max(1, row['frames']) * 1000:.1f} ms/frame", flush=True)
        for key in totals:
            totals[key] += row[key]
    frames = max(1, totals["frames"])
    saved = totals["skipped"] * totals["detect_s"] / frames - totals["gate_s"]
    print(json.dumps({
        "fps": args.fps, "frames": totals["frames"], "skipped_share": round(totals["skipped"] / frames, 3),
        "reused_agree_share": round(totals["agree"] / max(1, totals["skipped"]), 3),
        "count_diff": totals["count_diff"],
        "gate_ms_per_frame": round(totals["gate_s"] / frames * 1000, 2),
        "detector_ms_per_frame": round(totals["detect_s"] / frames * 1000, 1),
        "detector_time_saved_share": round(saved / max(1e-9, totals["detect_s"]), 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
