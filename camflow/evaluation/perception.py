"""Accuracy of the face and plate stages on labelled real images (``camflow eval faces|plates``).

faces: ``labels.csv`` with ``file, person_id, multi_face, ...``; only ``multi_face == 0`` rows.
    Each photo: faces found on the whole photo (CenterFace, dlib HOG as a fall-back), the
    largest kept and embedded.  All same/different pairs are scored by cosine similarity; a photo
    where no face is found gets a zero embedding (its pairs score 0: rejected).
    Identification: the first photo of each person enrolled in a FAISS ``IndexFlatIP``, every
    other photo of an enrolled person queried, top-1 must be the right person.
plates: ``labels.csv`` with at least ``file, plate_text`` (``[0-9A-Z]``, no separators); other
    columns are ignored.  Each image is read as a tight crop first; when nothing parses as a
    plate, plates are searched in it: vehicle crops (the COCO detector restricted to car,
    motorcycle, bus and truck), the plate detector and OCR text boxes on the whole image.  A
    label counts as read when any plate read from its image equals it.
"""
from __future__ import annotations

import csv
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np


def _read_rows(labels_csv: str | Path) -> list[dict[str, str]]:
    with open(labels_csv, newline="", encoding="utf-8") as f:
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(f)]


def _imread(path: Path) -> np.ndarray | None:
    data = np.fromfile(str(path), np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None


# ---------------------------------------------------------------- faces
def roc_metrics(genuine: np.ndarray, impostor: np.ndarray) -> dict[str, float]:
    """TAR at FAR 1e-3 / 1e-2 (accept when score >= threshold), EER, threshold at FAR 1e-3."""
    genuine = np.asarray(genuine, np.float64)
    impostor = np.asarray(impostor, np.float64)
    cands = np.unique(np.concatenate([genuine, np.nextafter(impostor, np.inf), [np.inf]]))
    g = np.sort(genuine)
    i = np.sort(impostor)
    tar = 1.0 - np.searchsorted(g, cands, side="left") / max(len(g), 1)
    far = 1.0 - np.searchsorted(i, cands, side="left") / max(len(i), 1)
    out: dict[str, float] = {}
    for name, target in (("1e-3", 1e-3), ("1e-2", 1e-2)):
        ok = far <= target + 1e-12
        best = int(np.argmax(np.where(ok, tar, -1.0)))  # first (lowest threshold) max
        out[f"tar_at_far_{name}"] = float(tar[best])
        if name == "1e-3":
            t = cands[best]
            if not np.isfinite(t):
                t = float(i.max()) if len(i) else 1.0
            out["threshold_at_far_1e-3"] = float(t)
    frr = 1.0 - tar
    k = int(np.argmin(np.abs(far - frr)))
    out["eer"] = float((far[k] + frr[k]) / 2)
    return out


def eval_faces(images_dir: str | Path, labels_csv: str | Path, detector: str = "centerface") -> dict:
    """Verification (all pairs) and identification (FAISS) accuracy on single-face photos."""
    import faiss

    from camflow.core import perception
    from camflow.transforms.faces import largest

    images_dir = Path(images_dir)
    rows = [r for r in _read_rows(labels_csv) if r.get("multi_face", "0") in ("0", "", "false", "False")]
    embedder = perception.face_embedder()
    det = perception.face_detector(max_side=1024) if detector == "centerface" else None
    embs, people, no_face, ms = [], [], 0, []
    for r in rows:
        image = _imread(images_dir / r["file"])
        people.append(r["person_id"])
        if image is None:
            no_face += 1
            embs.append(np.zeros(128, np.float32))
            continue
        t0 = time.perf_counter()
        face, dlib_box = (largest(det.detect(image)), False) if det is not None else (None, True)
        if face is None or not len(face):
            face, dlib_box = largest(embedder.hog_faces(image, upsample=1)), True
        if not len(face):
            no_face += 1
            embs.append(np.zeros(128, np.float32))
            continue
        embs.append(embedder.embed(image, face, box_is_dlib=dlib_box).data["embedding"][0])
        ms.append((time.perf_counter() - t0) * 1000)
    emb = np.stack(embs).astype(np.float32) if embs else np.zeros((0, 128), np.float32)
    sims = emb @ emb.T
    genuine, impostor = [], []
    n = len(rows)
    for a in range(n):
        for b in range(a + 1, n):
            (genuine if people[a] == people[b] else impostor).append(sims[a, b])
    result: dict = {"images": n, "no_face": no_face, "pairs": len(genuine) + len(impostor),
                    "genuine_pairs": len(genuine), "impostor_pairs": len(impostor)}
    result.update(roc_metrics(np.array(genuine), np.array(impostor)))
    # identification
    first: dict[str, int] = {}
    for k, p in enumerate(people):
        first.setdefault(p, k)
    enrolled = sorted(first.values())
    index = faiss.IndexFlatIP(128)
    if enrolled:
        index.add(emb[enrolled])
    queries = [k for k, p in enumerate(people) if first[p] != k]
    correct = 0
    if queries and enrolled:
        _, ids = index.search(emb[queries], 1)
        correct = sum(people[enrolled[int(ids[j, 0])]] == people[q] for j, q in enumerate(queries))
    result["identification_queries"] = len(queries)
    result["identification_top1"] = correct / len(queries) if queries else 0.0
    result["ms_per_face"] = float(np.mean(ms)) if ms else 0.0
    return result


# ---------------------------------------------------------------- plates
def _char_accuracy(pred: str, truth: str) -> float:
    """1 - normalised Levenshtein distance."""
    if not truth:
        return 1.0 if not pred else 0.0
    prev = list(range(len(pred) + 1))
    for i, tc in enumerate(truth, 1):
        cur = [i]
        for j, pc in enumerate(pred, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (tc != pc)))
        prev = cur
    return max(0.0, 1.0 - prev[-1] / len(truth))


def vehicle_detector(model: str = "centernet-coco", threads: int = 1):
    """The COCO object detector restricted to plate-carrying vehicles (car, motorcycle, bus,
    truck): a callable BGR image -> ``Detections``."""
    from camflow.transforms.detect import ObjectDetector
    from camflow.transforms.plates import PLATE_VEHICLE_CLASSES

    return ObjectDetector.from_manifest(model, threads=threads, classes=list(PLATE_VEHICLE_CLASSES))


def eval_plates(images_dir: str | Path, labels_csv: str | Path, vehicles=None) -> dict:
    """Exact-match and character accuracy of plate reading; uses only ``file`` and ``plate_text``.

    ``vehicles``: callable image -> vehicle ``Detections`` used on whole-scene images
    (default: ``vehicle_detector()``; ``False``: no vehicle search).
    """
    from camflow.transforms.plates import normalise_text, read_plates_in_image

    if vehicles is None:
        vehicles = vehicle_detector()
    elif vehicles is False:
        vehicles = None

    images_dir = Path(images_dir)
    labels: dict[str, list[str]] = defaultdict(list)
    for r in _read_rows(labels_csv):
        if r.get("file"):
            labels[r["file"]].append(normalise_text(r.get("plate_text", "")))
    n = exact = 0
    char_acc = 0.0
    ms = []
    misses = []
    for fname, truths in labels.items():
        image = _imread(images_dir / fname)
        t0 = time.perf_counter()
        reads = read_plates_in_image(image, vehicle_detector=vehicles) if image is not None else []
        ms.append((time.perf_counter() - t0) * 1000)
        texts = [p.text for p in reads]
        for truth in truths:
            n += 1
            if truth in texts:
                exact += 1
                char_acc += 1.0
            else:
                char_acc += max((_char_accuracy(t, truth) for t in texts), default=0.0)
                misses.append({"file": fname, "truth": truth, "read": texts})
    return {
        "plates": n,
        "exact": exact / n if n else 0.0,
        "char_accuracy": char_acc / n if n else 0.0,
        "ms_per_plate": float(np.sum(ms) / n) if n else 0.0,
        "images": len(labels),
        "misses": misses,
    }
