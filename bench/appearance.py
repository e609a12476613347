"""What per-track appearance records cost the job's per-camera step, on real footage.

    python -m bench.appearance [--video ../shared/data/video/vtest.avi] [--fps 4] [--frames 400]
                               [--config infra/config/demo.yaml --camera walkway]

The job's own step (``transforms/camera_analysis.py``, models loaded as the job loads them) runs
over the same decoded frames twice per frame, alternating: without appearance records (the
baseline) and with them (colour stripes, named colours, best crop, and the MobileNetV2
embedding as ``job.appearance`` sets it), each with its own camera state. Prints ms per frame of
both, their ratio, how many records and embeddings the candidate made, and, last, one JSON line.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(REPO.parent / "shared" / "data" / "video" / "vtest.avi"))
    parser.add_argument("--fps", type=float, default=4.0)
    parser.add_argument("--frames", type=int, default=400, help="video frames read")
    parser.add_argument("--config", default=str(REPO / "infra" / "config" / "demo.yaml"))
    parser.add_argument("--camera", default="walkway")
    args = parser.parse_args(argv)

    from camflow.config import load_config
    from camflow.core import perception
    from camflow.evaluation.track import sample_video
    from camflow.transforms.camera_analysis import CameraState
    from camflow.transforms.detections import FrameAnalysis

    config = load_config(args.config)
    camera = config.camera(args.camera)
    candidate = perception.camera_analysis(config)
    appearances = candidate.appearances
    if appearances is None:
        raise SystemExit("job.appearance.enabled is off in this config: nothing to compare")
    baseline_state, candidate_state = CameraState(), CameraState()
    spent = {"baseline": 0.0, "candidate": 0.0}
    frames = records = embedded = 0
    for sample in sample_video(args.video, args.fps, camera.max_width if camera else 960,
                               args.frames):
        for name in ("baseline", "candidate"):
            candidate.appearances = appearances if name == "candidate" else None
            analysis = FrameAnalysis(camera_id=args.camera, capture_ms=sample.capture_ms,
                                     sequence=sample.index, width=sample.image.shape[1],
                                     height=sample.image.shape[0], jpeg=b"",
                                     image=sample.image.copy())
            state = baseline_state if name == "baseline" else candidate_state
            t0 = time.perf_counter()
            step = candidate.frame(state, analysis, None)
            spent[name] += time.perf_counter() - t0
            if name == "baseline":
                baseline_state = step.state
            else:
                candidate_state = step.state
                records += len(step.appearances)
                embedded += sum(1 for r in step.appearances if r["embedding"] is not None)
        frames += 1
    result = {"video": Path(args.video).name, "fps": args.fps, "frames": frames,
              "baseline_ms_per_frame": round(spent["baseline"] * 1000 / max(frames, 1), 2),
              "candidate_ms_per_frame": round(spent["candidate"] * 1000 / max(frames, 1), 2),
              "appearance_records": records, "embeddings": embedded}
    result["ratio"] = round(result["candidate_ms_per_frame"] / max(result["baseline_ms_per_frame"], 1e-9), 3)
    print(f"{frames} frames: step without appearance {result['baseline_ms_per_frame']} ms, with "
          f"{result['candidate_ms_per_frame']} ms (x{result['ratio']}); {records} records, "
          f"{embedded} embeddings")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
