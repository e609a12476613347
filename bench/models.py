"""Latency of each built model per frame, with 1 and 2 ONNX Runtime intra-op threads.

    python -m bench.models [--models NAME ...] [--iters 30] [--warmup 5]
    (or: python bench/models.py)

Baseline = 1 thread; the ratio column is t(1 thread) / t(2 threads). "model" times only
``session.run`` on a model-sized input; "e2e" adds preprocessing, decoding and NMS on a real
768x576 frame (vtest.avi frame 150) when available. The LAST line printed is JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

VTEST = Path(os.environ.get("CAMFLOW_DATA", "/work/shared/data")) / "video" / "vtest.avi"


def _frame() -> np.ndarray:
    try:
        import cv2

        cap = cv2.VideoCapture(str(VTEST))
        cap.set(cv2.CAP_PROP_POS_FRAMES, 150)
        ok, frame = cap.read()
        cap.release()
        if ok:
            return frame
    except Exception:
        pass
    return np.random.default_rng(0).integers(0, 255, (576, 768, 3), dtype=np.uint8)


def _time(fn, iters: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
    samples.sort()
    return {"median_ms": round(statistics.median(samples), 2),
            "p90_ms": round(samples[int(0.9 * (len(samples) - 1))], 2),
            "min_ms": round(samples[0], 2)}


def bench_model(name: str, iters: int, warmup: int, threads_list=(1, 2)) -> dict:
    from camflow.models import registry
    from camflow.transforms.detect import ObjectDetector, preprocess

    entry = registry.get(name)
    path = registry.model_path(name)
    frame = _frame()
    result: dict = {"model": name, "input": f"{entry.input.width}x{entry.input.height}",
                    "threads": {}}
    for threads in threads_list:
        det = ObjectDetector(entry, path, threads=threads)
        x, _ = preprocess(frame, det.input)
        feed = {det.input_name: x[None]}
        row = {
            "model": _time(lambda: det.session.run([det.output_name], feed), iters, warmup),
            "e2e": _time(lambda: det(frame), iters, warmup),
            "providers": det.session.get_providers(),
        }
        result["threads"][str(threads)] = row
    base = result["threads"]["1"]["model"]["median_ms"]
    for t, row in result["threads"].items():
        row["speedup_vs_1"] = round(base / row["model"]["median_ms"], 2)
    return result


def main(argv: list[str] | None = None) -> int:
    from camflow.models import registry

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--build", action="store_true", help="build missing models first")
    args = parser.parse_args(argv)
    names = args.models or [r["name"] for r in registry.list_models()
                            if registry.get(r["name"]).role == "objects"]
    if args.build:
        from camflow.models.build import build

        build(names)
    results, skipped = [], []
    for name in names:
        if not registry.verify(name):
            skipped.append(name)
            print(f"{name}: not built/verified, skipped (python -m camflow.models.build {name})")
            continue
        r = bench_model(name, args.iters, args.warmup)
        results.append(r)
        for t, row in r["threads"].items():
            print(f"{name} {r['input']} threads={t}: model {row['model']['median_ms']} ms "
                  f"(p90 {row['model']['p90_ms']}), e2e {row['e2e']['median_ms']} ms, "
                  f"speedup vs 1 thread x{row['speedup_vs_1']} [{row['providers'][0]}]")
    summary = {"bench": "models", "cpu_count": os.cpu_count(), "machine": platform.machine(),
               "python": platform.python_version(), "results": results, "skipped": skipped}
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
