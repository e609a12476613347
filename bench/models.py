"""Latency of every default model, with 1 and 2 ONNX Runtime intra-op threads where it applies.

    python -m bench.models [--cases detector centerface dlib clp_det ocr plates] [--iters 15] [--warmup 3]
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
  ``session.run`` at longer side 1024, "e2e" = ``PlateFinder.find`` (its default sizes, NMS).
* ``ocr``: ``PlateReader.read`` (PP-OCRv6 recogniser on the split lines, text detector as the
  fall-back) per plate crop, every crop in plates/ read ``--crop-reps`` times; median / p90.
* ``plates``: today's plate path against the one it replaced, in the same run, 1 thread each,
  alternating image by image: the baseline is ``transforms/plates.py`` as of commit
  ``PLATES_BASELINE`` (read from git, rapidocr det + rec; ``$CAMFLOW_PLATES_BASELINE`` names
  another commit). Per plate crop (plates/, ``--crop-reps`` times) and per whole 1-2 MP scene
  (scenes/ images of at least 1 MP, larger ones scaled to 1600 px on the longer side), both
  through ``read_plates_in_image`` without a vehicle detector; ``ratio`` = baseline median /
  new median. ``--plates-eval`` adds ``camflow eval plates`` (exact, plate_recall, ms) of both
  paths on scenes/ and plates/ (slow: the baseline takes ~3 s per scene).

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
SCENES = DATA / "scenes"
CASES = ("detector", "centerface", "dlib", "clp_det", "ocr", "plates")
# The plate path before issue 13 (rapidocr det + rec, clp-det at 640 + 1024): the baseline.
PLATES_BASELINE = os.environ.get("CAMFLOW_PLATES_BASELINE", "30e59e5")


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

    from camflow.models import registry
    from camflow.transforms.plates import PLATE_MODEL, PlateFinder

    _verified(PLATE_MODEL)
    frame = _video_frame(CARS, 0)
    h, w = frame.shape[:2]
    result = {"case": "clp_det", "model": PLATE_MODEL, "unit": "frame",
              "input": f"car-detection.mp4[0] {w}x{h}", "threads": {}}
    scale = 1024 / max(h, w)
    big = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
    blob = (big.astype(np.float32) - PlateFinder.MEAN).transpose(2, 0, 1)[None]
    for t in threads_list:
        finder = PlateFinder(registry.model_path(PLATE_MODEL), threads=t)
        result["input"] = f"car-detection.mp4[0] {w}x{h}, sides {'+'.join(map(str, finder.sizes))}"
        result["threads"][str(t)] = {
            "model": _time(lambda: finder.session.run(None, {finder.input_name: blob}), iters, warmup),
            "e2e": _time(lambda: finder.find(frame), iters, warmup),
            "providers": finder.session.get_providers()[:1],
        }
    return _finish(result)


def bench_ocr(crop_reps: int, threads_list) -> dict:
    import cv2

    from camflow.models import registry
    from camflow.transforms.plates import (OCR_DET_MODEL, OCR_REC_MODEL, PlateReader, TextDetector,
                                           TextRecogniser)

    _verified(OCR_DET_MODEL, OCR_REC_MODEL)
    crops = [cv2.imread(str(p)) for p in sorted(PLATES.glob("*.jpg"))]
    crops = [c for c in crops if c is not None]
    if not crops:
        raise Skip(f"no plate crops in {PLATES}")
    result = {"case": "ocr", "model": f"{OCR_DET_MODEL}+{OCR_REC_MODEL}", "unit": "plate crop",
              "input": f"{len(crops)} crops from plates/ x {crop_reps}", "threads": {}}
    for t in threads_list:
        reader = PlateReader(TextRecogniser(registry.model_path(OCR_REC_MODEL), threads=t),
                             TextDetector(registry.model_path(OCR_DET_MODEL), threads=t))
        reader.read(crops[0])  # warm-up
        samples, read = [], 0
        for _ in range(crop_reps):
            for c in crops:
                t0 = time.perf_counter()
                p = reader.read(c)
                samples.append((time.perf_counter() - t0) * 1000.0)
                read += p is not None
        result["threads"][str(t)] = {"e2e": _stats(samples), "read": read,
                                     "providers": ["onnxruntime"]}
    return _finish(result)


def baseline_plates():
    """``transforms/plates.py`` as of ``PLATES_BASELINE``, loaded from git as
    ``camflow.transforms._plates_baseline`` (its two helpers from ``faces`` mapped to where
    they live now), its shared recogniser on 1 ONNX thread."""
    import importlib.util
    import subprocess

    try:
        src = subprocess.run(["git", "show", f"{PLATES_BASELINE}:transforms/plates.py"], cwd=REPO,
                             check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise Skip(f"baseline plates.py ({PLATES_BASELINE}) not readable from git: {exc}")
    src = (src.replace("from .faces import _ort_session", "from .onnx_runtime import open_session as _ort_session")
              .replace("from .faces import _nms", "from .boxes import nms as _nms"))
    import camflow.transforms as pkg

    name = "camflow.transforms._plates_baseline"
    spec = importlib.util.spec_from_loader(name, loader=None, origin=f"git:{PLATES_BASELINE}")
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = pkg.__name__
    sys.modules[name] = mod
    exec(compile(src, f"<{PLATES_BASELINE}:transforms/plates.py>", "exec"), mod.__dict__)
    mod._default["r"] = mod.PlateRecogniser(mod.PlateFinder(threads=1), mod.PlateReader(threads=1))
    return mod  # (the baseline looked its models up itself, through camflow.models.registry)


class _BaselineSearch:
    """The baseline through ``eval_plates``' interface (``search_image``)."""

    def __init__(self, mod):
        self.mod = mod

    def search_image(self, image, vehicle_detector=None):
        reads = self.mod.read_plates_in_image(image, vehicle_detector=vehicle_detector)
        return reads, [p.box for p in reads if p.box is not None]


def _scenes_1_2mp() -> list[tuple[str, np.ndarray]]:
    import cv2

    out = []
    for path in sorted(SCENES.glob("*.jpg")):
        img = cv2.imread(str(path))
        if img is None or img.shape[0] * img.shape[1] < 1_000_000:
            continue
        scale = 1600 / max(img.shape[:2])
        if img.shape[0] * img.shape[1] > 2_000_000:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        out.append((path.name, img))
    return out


def bench_plates(crop_reps: int, scene_reps: int, with_eval: bool) -> dict:
    import cv2

    from camflow.evaluation.perception import plate_recogniser
    from camflow.transforms import plates as new

    _verified(*new.PLATE_MODELS.values())
    old = baseline_plates()
    rec = plate_recogniser(threads=1)
    crops = [(p.name, cv2.imread(str(p))) for p in sorted(PLATES.glob("*.jpg"))]
    crops = [(n, c) for n, c in crops if c is not None]
    scenes = _scenes_1_2mp()
    if not crops or not scenes:
        raise Skip(f"no plate crops in {PLATES} or no 1-2 MP scenes in {SCENES}")
    paths = {"baseline": lambda im: old.read_plates_in_image(im), "new": rec.read_image}
    for f in paths.values():  # warm-up: sessions, priors, first allocations
        f(crops[0][1])
        f(scenes[0][1])
    result = {"case": "plates", "model": f"{PLATES_BASELINE} vs working tree", "unit": "image",
              "input": (f"{len(crops)} crops x {crop_reps}; {len(scenes)} scenes "
                        f"({', '.join(f'{n} {im.shape[1]}x{im.shape[0]}' for n, im in scenes)}) x {scene_reps}"),
              "threads": {}}
    row: dict = {"providers": ["onnxruntime, 1 thread, paths alternating"]}
    for unit, items, reps in (("crop", crops, crop_reps), ("scene", scenes, scene_reps)):
        samples: dict[str, list[float]] = {k: [] for k in paths}
        texts: dict[str, list[list[str]]] = {k: [] for k in paths}
        for _ in range(reps):
            for _, im in items:
                for k, f in paths.items():
                    t0 = time.perf_counter()
                    reads = f(im)
                    samples[k].append((time.perf_counter() - t0) * 1000.0)
                    texts[k].append([p.text for p in reads])
        for k in paths:
            row[f"{k}_{unit}"] = _stats(samples[k])
        row[f"ratio_{unit}"] = round(row[f"baseline_{unit}"]["median_ms"] / row[f"new_{unit}"]["median_ms"], 2)
        row[f"ratio_{unit}_mean"] = round(statistics.mean(samples["baseline"]) / statistics.mean(samples["new"]), 2)
    row["e2e"] = row["new_scene"]
    if with_eval:
        from camflow.evaluation.perception import eval_plates, vehicle_detector

        vehicles = vehicle_detector(threads=1)
        for k, searcher in (("baseline", _BaselineSearch(old)), ("new", rec)):
            for name, folder in (("scenes", SCENES), ("crops", PLATES)):
                r = eval_plates(folder, folder / "labels.csv", vehicles=vehicles, recogniser=searcher)
                row[f"eval_{k}_{name}"] = {m: (round(v, 3) if isinstance(v, float) else v)
                                           for m, v in r.items() if m != "misses"}
                row[f"eval_{k}_{name}"]["misses"] = [(m["file"], m["truth"], m["kind"], m["read_here"])
                                                     for m in r["misses"]]
    result["threads"]["1"] = row
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
    parser.add_argument("--scene-reps", type=int, default=2)
    parser.add_argument("--plates-eval", action="store_true",
                        help="plates case: also camflow eval plates of both paths (slow)")
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
    if "plates" in args.cases:
        jobs.append(("plates", lambda: bench_plates(args.crop_reps, args.scene_reps, args.plates_eval)))

    results, skipped = [], []
    for label, job in jobs:
        try:
            r = job()
        except Skip as exc:
            skipped.append({"case": label, "why": str(exc)})
            print(f"{label}: skipped ({exc})", flush=True)
            continue
        results.append(r)
        if r["case"] == "plates":
            row = r["threads"]["1"]
            for unit in ("crop", "scene"):
                print(f"plates     per {unit:<6} baseline {row[f'baseline_{unit}']['median_ms']} ms, "
                      f"new {row[f'new_{unit}']['median_ms']} ms (medians, 1 thread): "
                      f"x{row[f'ratio_{unit}']} (means: x{row[f'ratio_{unit}_mean']})", flush=True)
            for key in sorted(k for k in row if k.startswith("eval_")):
                e = row[key]
                print(f"{key:<22} exact {e['exact']} plate_recall {e.get('plate_recall', '-')} "
                      f"ms/image {e['ms_per_image']:.0f} ms/plate {e['ms_per_plate']:.0f} "
                      f"misses {e['misses']}", flush=True)
            continue
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
