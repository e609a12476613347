"""Latency of every default model, with 1 and 2 ONNX Runtime intra-op threads where it applies.

    python -m bench.models [--cases detector centerface dlib clp_det ocr] [--iters 15] [--warmup 3]
    (or: python bench/models.py)

Cases, all on real data from ``../shared/data`` (relative to the repo; ``$CAMFLOW_DATA``
overrides):

* ``detector``: each ``objects`` model in the manifest (default ``centernet-coco``) per frame --
  vtest.avi frame 150 (768x576). "model" = ``session.run`` only, "e2e" adds letterbox,
  decoding and NMS.
* ``centerface``: per 1280x720 frame (faces/examples__knn_examples__test__obama1.jpg, 1480x832, resized to 16:9
  1280x720); "model" = ``session.run`` on the padded 1280x736 blob, "e2e" = ``detect``.
* ``dlib``: ``dlib-shape5`` + ``dlib-face-resnet`` embedding per face (tests__test_images__obama.jpg,
  the largest CenterFace face); dlib has no ORT threads: 1 row only.
* ``clp_det``: plate detector per frame (car-detection.mp4 frame 0, 768x432): "model" = one
  ``session.run`` at longer side 1024, "e2e" = ``PlateFinder.find`` (sides 640 and 1024, NMS).
* ``ocr``: ``PlateReader.read`` (PP-OCRv6 det + rec through rapidocr) per plate crop, every
  crop in plates/ read ``--crop-reps`` times; median / p90 over all reads.

Baseline = 1 thread; ``speedup_vs_1`` = t(1 thread) / t(N threads) on the median of the "e2e"
column (of "model" where there is no e2e). Nothing else should run meanwhile: on a shared
2-core machine the 2-thread figures are noisy. The LAST line printed is one JSON object.
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
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CAMFLOW_DATA") or REPO.parent / "shared" / "data")
VTEST = DATA / "video" / "vtest.avi"
CARS = DATA / "video" / "car-detection.mp4"
FACE_FRAME = DATA / "faces" / "examples__knn_examples__test__obama1.jpg"
FACE_PHOTO = DATA / "faces" / "tests__test_images__obama.jpg"
PLATES = DATA / "plates"
CASES = ("detector", "centerface", "dlib", "clp_det", "ocr")


class Skip(Exception):
    pass


def _video_frame(path: Path, index: int) -> np.ndarray:
    import cv2

    if not path.is_file():
        raise Skip(f"{path} not found")
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise Skip(f"cannot read frame {index} of {path}")
    return frame


def _image(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path)) if path.is_file() else None
    if img is None:
        raise Skip(f"{path} not found")
    return img


def _stats(samples: list[float]) -> dict:
    samples = sorted(samples)
    return {"median_ms": round(statistics.median(samples), 2),
            "p90_ms": round(samples[int(0.9 * (len(samples) - 1))], 2),
            "min_ms": round(samples[0], 2), "n": len(samples)}


def _time(fn: Callable[[], object], iters: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
    return _stats(samples)


def _verified(*names: str) -> None:
    from camflow.models import registry

    bad = [n for n in names if not registry.verify(n)]
    if bad:
        raise Skip(f"not built/verified: {bad} (camflow models build)")


def _finish(result: dict) -> dict:
    rows = result["threads"]
    key = "e2e" if "e2e" in rows["1"] else "model"
    base = rows["1"][key]["median_ms"]
    for row in rows.values():
        row["speedup_vs_1"] = round(base / row[key]["median_ms"], 2)
    result["speedup_basis"] = key
    return result


# ---------------------------------------------------------------- cases
def bench_detector(name: str, iters: int, warmup: int, threads_list) -> dict:
    from camflow.models import registry
    from camflow.transforms.detect import ObjectDetector, preprocess

    _verified(name)
    entry = registry.get(name)
    frame = _video_frame(VTEST, 150)
    result = {"case": "detector", "model": name, "unit": "frame",
              "input": f"vtest.avi[150] {frame.shape[1]}x{frame.shape[0]} -> "
                       f"{entry.input.width}x{entry.input.height}", "threads": {}}
    for t in threads_list:
        det = ObjectDetector(entry, registry.model_path(name), threads=t)
        x, _ = preprocess(frame, det.input)
        feed = {det.input_name: x[None]}
        result["threads"][str(t)] = {
            "model": _time(lambda: det.session.run([det.output_name], feed), iters, warmup),
            "e2e": _time(lambda: det(frame), iters, warmup),
            "providers": det.session.get_providers()[:1],
        }
    return _finish(result)


def bench_centerface(iters: int, warmup: int, threads_list) -> dict:
    import cv2

    from camflow.core import perception
    from camflow.core.perception import FACE_DETECTOR_MODEL as DETECTOR_MODEL

    _verified(DETECTOR_MODEL)
    frame = cv2.resize(_image(FACE_FRAME), (1280, 720), interpolation=cv2.INTER_AREA)
    result = {"case": "centerface", "model": DETECTOR_MODEL, "unit": "frame",
              "input": f"{FACE_FRAME.name} resized to 1280x720", "threads": {}}
    for t in threads_list:
        det = perception.face_detector(threads=t)
        row: dict = {"faces": len(det.detect(frame))}
        if det._sess is not None:
            blob = np.zeros((1, 3, 736, 1280), np.float32)
            blob[0, :, :720, :] = frame[:, :, ::-1].transpose(2, 0, 1)
            row["model"] = _time(lambda: det._sess.run(None, {"input.1": blob}), iters, warmup)
            row["providers"] = det._sess.get_providers()[:1]
        row["e2e"] = _time(lambda: det.detect(frame), iters, warmup)
        result["threads"][str(t)] = row
    return _finish(result)


def bench_dlib(iters: int, warmup: int) -> dict:
    from camflow.core import perception
    from camflow.core.perception import FACE_EMBEDDING_MODEL as EMBEDDING_MODEL
    from camflow.core.perception import FACE_LANDMARK_MODEL as LANDMARK_MODEL
    from camflow.transforms.faces import largest

    _verified(EMBEDDING_MODEL, LANDMARK_MODEL)
    image = _image(FACE_PHOTO)
    face = largest(perception.face_detector(threads=1).detect(image))
    if not len(face):
        raise Skip(f"no face found in {FACE_PHOTO.name}")
    emb = perception.face_embedder()
    box = face.xyxy[0]
    result = {"case": "dlib", "model": f"{LANDMARK_MODEL}+{EMBEDDING_MODEL}", "unit": "face",
              "input": f"{FACE_PHOTO.name}, face {int(box[2] - box[0])}x{int(box[3] - box[1])} px",
              "threads": {"1": {"e2e": _time(lambda: emb.embed(image, face), iters, warmup),
                                "providers": ["dlib (CPU, no ORT threads)"]}}}
    return _finish(result)


def bench_clp_det(iters: int, warmup: int, threads_list) -> dict:
    import cv2

    from camflow.transforms.plates import PLATE_MODEL, PlateFinder

    _verified(PLATE_MODEL)
    frame = _video_frame(CARS, 0)
    h, w = frame.shape[:2]
    result = {"case": "clp_det", "model": PLATE_MODEL, "unit": "frame",
              "input": f"car-detection.mp4[0] {w}x{h}, sides 640+1024", "threads": {}}
    scale = 1024 / max(h, w)
    big = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
    blob = (big.astype(np.float32) - PlateFinder.MEAN).transpose(2, 0, 1)[None]
    for t in threads_list:
        finder = PlateFinder(threads=t)
        result["threads"][str(t)] = {
            "model": _time(lambda: finder.session.run(None, {finder.input_name: blob}), iters, warmup),
            "e2e": _time(lambda: finder.find(frame), iters, warmup),
            "providers": finder.session.get_providers()[:1],
        }
    return _finish(result)


def bench_ocr(crop_reps: int, threads_list) -> dict:
    import cv2

    from camflow.transforms.plates import OCR_DET_MODEL, OCR_REC_MODEL, PlateReader

    _verified(OCR_DET_MODEL, OCR_REC_MODEL)
    crops = [cv2.imread(str(p)) for p in sorted(PLATES.glob("*.jpg"))]
    crops = [c for c in crops if c is not None]
    if not crops:
        raise Skip(f"no plate crops in {PLATES}")
    result = {"case": "ocr", "model": f"{OCR_DET_MODEL}+{OCR_REC_MODEL}", "unit": "plate crop",
              "input": f"{len(crops)} crops from plates/ x {crop_reps}", "threads": {}}
    for t in threads_list:
        reader = PlateReader(threads=t)
        reader.read(crops[0])  # warm-up
        samples, read = [], 0
        for _ in range(crop_reps):
            for c in crops:
                t0 = time.perf_counter()
                p = reader.read(c)
                samples.append((time.perf_counter() - t0) * 1000.0)
                read += p is not None
        result["threads"][str(t)] = {"e2e": _stats(samples), "read": read,
                                     "providers": ["onnxruntime (rapidocr)"]}
    return _finish(result)


def main(argv: list[str] | None = None) -> int:
    from camflow.models import registry

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    parser.add_argument("--models", nargs="*", default=None,
                        help="detector models (default: every 'objects' model in the manifest)")
    parser.add_argument("--iters", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--crop-reps", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--build", action="store_true", help="build / verify all models first")
    args = parser.parse_args(argv)
    threads = sorted(set([1] + list(args.threads)))  # 1 thread is the baseline
    if args.build:
        from camflow.models.build import build

        build()
    jobs: list[tuple[str, Callable[[], dict]]] = []
    if "detector" in args.cases:
        names = args.models or [n for n, e in sorted(registry.load_manifest().items())
                                if e.role == "objects"]
        for n in names:
            jobs.append((f"detector:{n}", lambda n=n: bench_detector(n, args.iters, args.warmup, threads)))
    if "centerface" in args.cases:
        jobs.append(("centerface", lambda: bench_centerface(args.iters, args.warmup, threads)))
    if "dlib" in args.cases:
        jobs.append(("dlib", lambda: bench_dlib(args.iters, args.warmup)))
    if "clp_det" in args.cases:
        jobs.append(("clp_det", lambda: bench_clp_det(args.iters, args.warmup, threads)))
    if "ocr" in args.cases:
        jobs.append(("ocr", lambda: bench_ocr(args.crop_reps, threads)))

    results, skipped = [], []
    for label, job in jobs:
        try:
            r = job()
        except Skip as exc:
            skipped.append({"case": label, "why": str(exc)})
            print(f"{label}: skipped ({exc})", flush=True)
            continue
        results.append(r)
        for t, row in r["threads"].items():
            parts = [f"{k} {row[k]['median_ms']} ms (p90 {row[k]['p90_ms']})"
                     for k in ("model", "e2e") if k in row]
            print(f"{r['case']:<10} {r['model']:<32} per {r['unit']:<10} threads={t}: "
                  f"{', '.join(parts)}; x{row['speedup_vs_1']} vs 1 thread "
                  f"[{row['providers'][0]}]", flush=True)
    summary = {"bench": "models", "cpu_count": os.cpu_count(), "machine": platform.machine(),
               "processor": platform.processor() or None, "python": platform.python_version(),
               "load_avg": [round(x, 2) for x in os.getloadavg()], "data": str(DATA),
               "baseline_threads": 1, "results": results, "skipped": skipped}
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.insert(0, str(REPO))
    sys.exit(main())
