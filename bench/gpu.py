"""The figures the card asks of a GPU machine, as one JSON line on stdout:
{"gpu", "detector_ms", "plate_ms", "face_ms", "faiss_1m_qps", "cameras_at_1fps"}.

    bash bench/gpu.sh            # on the GPU machine: sets up (GPU extras), builds models, runs this
    python -m bench.gpu [--quick] [--workers N] [--seconds S] [--faiss-n N] [--detector NAME]

Everything else (per-case detail, the providers each model really ran on) goes to stderr.
Without a GPU it measures the CPU (``gpu``: null), which is how it is checked on a CPU box.

* ``detector_ms``: the job's detector (``job.detector.model``, default centernet-coco) on one
  frame, end to end (letterbox, ``session.run``, decoding, NMS): vtest.avi frame 150, median
  (``bench.models.bench_detector``).
* ``plate_ms``: one plate read: the plate finder on a frame (car-detection.mp4 frame 0) + the
  PP-OCRv6 reader on a plate crop (median over ``plates/``) (``bench_clp_det`` + ``bench_ocr``).
* ``face_ms``: one face: CenterFace on a 1280x720 frame + dlib alignment and embedding of one
  face (``bench_centerface`` + ``bench_dlib``; dlib-bin has no CUDA: that part stays on the CPU).
* ``faiss_1m_qps``: a 1M-entry watchlist as ``FaceIndex`` builds it (IVF, nprobe tuned to
  recall@1 >= 0.99): queries/s at batch 1, on the GPU (``index_cpu_to_all_gpus``) when faiss
  sees one (``bench.faiss.bench_size``); null when --faiss-n is not 1,000,000.
* ``cameras_at_1fps``: --workers processes (default: cores / 2) each run the job's per-camera
  step (JPEG decode, detect, track, faces and plates once per track, scene rules; the plain
  loop of ``bench.pipeline``) over 41 cameras' frames of the videos for --seconds after a
  warm-up, all at once; the sum of their frames/s, floored: cameras at 1 fps whose analysis
  this machine keeps up with. Flink and Kafka are not in it (on the CPU box the job reached
  0.83-0.94 of this loop: bench/README.md).

ONNX Runtime's CUDA provider finds the CUDA/cuDNN libraries of the nvidia-*-cu12 wheels only
after ``onnxruntime.preload_dlls()``, which this bench calls first (see bench/README.md, GPU).
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))


def log(message: str) -> None:
    print(f"[gpu] {message}", file=sys.stderr, flush=True)


def gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return (names[0] + (f" (x{len(names)})" if len(names) > 1 else "")) if out.returncode == 0 and names else None


def preload_cuda() -> list[str]:
    """Load the CUDA/cuDNN libraries of the nvidia-*-cu12 wheels (onnxruntime-gpu >= 1.21) so
    that the CUDA provider can start; returns ONNX Runtime's providers."""
    import onnxruntime as ort
    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" in providers and hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except Exception as exc:  # noqa: BLE001 (the sessions then fall back to the CPU)
            log(f"onnxruntime.preload_dlls() failed: {exc}")
    return providers


def _median(result: dict) -> tuple[float, str]:
    row = result["threads"]["1"]
    key = "e2e" if "e2e" in row else "model"
    return row[key]["median_ms"], row.get("providers", ["?"])[0]


def model_figures(detector: str, iters: int, warmup: int, crop_reps: int) -> dict:
    from bench import models as m
    out: dict = {}
    cases = {
        "detector_ms": [lambda: m.bench_detector(detector, iters, warmup, [1])],
        "plate_ms": [lambda: m.bench_clp_det(iters, warmup, [1]), lambda: m.bench_ocr(crop_reps, [1])],
        "face_ms": [lambda: m.bench_centerface(iters, warmup, [1]), lambda: m.bench_dlib(iters, warmup)],
    }
    for key, parts in cases.items():
        total = 0.0
        try:
            for part in parts:
                result = part()
                ms, provider = _median(result)
                log(f"{key}: {result['case']} ({result['model']}) {ms} ms per {result['unit']} on {provider}")
                total += ms
        except m.Skip as exc:
            log(f"{key}: skipped ({exc})")
            out[key] = None
            continue
        out[key] = round(total, 2)
    return out


def faiss_figure(n: int, seconds: float) -> float | None:
    import faiss

    from bench.faiss import bench_size
    gpus = faiss.get_num_gpus()
    threads = os.cpu_count() or 1
    try:
        result = bench_size(n, 256, seconds, hnsw_max=0, gpu=gpus > 0, target_recall=0.99,
                            threads=threads, build_threads=threads)
    except Exception as exc:  # noqa: BLE001 (a GPU clone that fails: say so, keep the CPU)
        if gpus == 0:
            raise
        log(f"faiss on the GPU failed ({exc}); CPU only")
        result = bench_size(n, 256, seconds, hnsw_max=0, gpu=False, target_recall=0.99,
                            threads=threads, build_threads=threads)
    device = "gpu" if result["gpu"].get("ivf") else "cpu"
    row = result[device]["ivf"]
    log(f"faiss n={n}: IVF on the {device} (nprobe {result['cpu']['ivf']['nprobe']}): "
        f"{row['qps_b1']} q/s at batch 1, {row['qps_b64']} at batch 64, recall@1 {row['recall_at_1']}")
    return round(row["qps_b1"], 1) if n == 1_000_000 else None


def _analysis_worker(index: int, videos: list[str], detector: str | None, warmup_s: float,
                     seconds: float, barrier, results) -> None:
    """One process of the job's plain per-camera loop: warm-up, then --seconds measured."""
    preload_cuda()
    from bench.pipeline import bench_config, camera_frames
    from camflow.core import perception
    from camflow.transforms import frames as frame_checks
    from camflow.transforms.camera_analysis import CameraState
    names = [f"bench-cam-{c:03d}" for c in range(41)]
    overrides = [f"job.detector.model={detector}"] if detector else []
    config = bench_config(names, "127.0.0.1:9", 1, None, overrides)  # no broker is used
    frames = camera_frames([Path(v) for v in videos], 41, 1.0, max(seconds, warmup_s) + 30, 960)
    step = perception.camera_analysis(config)
    states = {c: CameraState() for c in frames}
    order = [(i, c) for i in range(max(len(v) for v in frames.values())) for c in frames
             if i < len(frames[c])]
    now = int(time.time() * 1000)

    def run(limit_s: float, start: int) -> tuple[int, float]:
        t0, done = time.monotonic(), 0
        for k in range(start, start + len(order) * 1000):
            i, camera = order[k % len(order)]
            record = {"camera_id": camera, "capture_ms": now + k * 1000, "sequence": k,
                      "jpeg": frames[camera][i], "jpeg_ref": None, "width": 0, "height": 0,
                      "sampler_id": "bench"}
            analysis = frame_checks.validate(record, now_ms=record["capture_ms"])
            states[camera] = step.frame(states[camera], analysis, watermark_ms=None).state
            done += 1
            if time.monotonic() - t0 > limit_s:
                break
        return done, time.monotonic() - t0

    warm, _ = run(warmup_s, 0)  # loads the lazily made face and plate models
    barrier.wait()
    done, took = run(seconds, warm)
    results.put((index, done / took))


def analysis_figure(workers: int, videos: list[Path], detector: str | None, warmup_s: float,
                    seconds: float) -> int:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_analysis_worker, args=(i, [str(v) for v in videos], detector,
                                                         warmup_s, seconds, barrier, results))
             for i in range(workers)]
    for p in procs:
        p.start()
    rates = [results.get(timeout=1800)[1] for _ in procs]
    for p in procs:
        p.join(60)
    total = sum(rates)
    log(f"per-camera step: {workers} process(es), {', '.join(f'{r:.2f}' for r in rates)} frames/s "
        f"= {total:.2f} frames/s")
    return math.floor(total)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a short check (fewer iterations, 100k faiss entries, 20 s loop)")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--crop-reps", type=int, default=3)
    parser.add_argument("--detector", help="detector model (default: the job's, job.detector.model)")
    parser.add_argument("--faiss-n", type=int, default=1_000_000)
    parser.add_argument("--faiss-seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds of the loop")
    parser.add_argument("--loop-warmup", type=float, default=30.0)
    parser.add_argument("--videos", default=str(REPO.parent / "shared" / "data" / "video"))
    parser.add_argument("--skip", nargs="*", default=[], choices=["models", "faiss", "cameras"])
    args = parser.parse_args(argv)
    if args.quick:
        args.iters, args.warmup, args.crop_reps = 5, 1, 1
        args.faiss_n, args.faiss_seconds = min(args.faiss_n, 100_000), 1.0
        args.seconds, args.loop_warmup = 20.0, 10.0

    from camflow.config import Config
    detector = args.detector or Config().job.detector.model
    gpu = gpu_name()
    providers = preload_cuda()
    import faiss
    log(f"GPU: {gpu or 'none'}; ONNX Runtime providers {providers}; faiss {faiss.__version__} "
        f"sees {faiss.get_num_gpus()} GPU(s); {os.cpu_count()} cores")
    if gpu and "CUDAExecutionProvider" not in providers:
        log("a GPU but no CUDA provider: the GPU extras are not installed (infra/setup_env.sh)")
    result: dict = {"gpu": gpu}
    if "models" not in args.skip:
        result.update(model_figures(detector, args.iters, args.warmup, args.crop_reps))
    if "faiss" not in args.skip:
        result["faiss_1m_qps"] = faiss_figure(args.faiss_n, args.faiss_seconds)
    if "cameras" not in args.skip:
        videos = sorted(p for p in Path(args.videos).iterdir()
                        if p.suffix.lower() in (".avi", ".mp4", ".mkv", ".mov"))
        result["cameras_at_1fps"] = analysis_figure(args.workers, videos, args.detector,
                                                    args.loop_warmup, args.seconds)
    keys = ("gpu", "detector_ms", "plate_ms", "face_ms", "faiss_1m_qps", "cameras_at_1fps")
    print(json.dumps({k: result.get(k) for k in keys}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
