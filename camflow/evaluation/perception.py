"""Accuracy of the face and plate stages on labelled real images (``camflow eval faces|plates``).

faces: ``labels.csv`` with ``file, person_id, multi_face, ...``; only ``multi_face == 0`` rows.
    Each photo: faces found on the whole photo (CenterFace, dlib HOG as a fall-back), the
    largest kept and embedded.  All same/different pairs are scored by cosine similarity; a photo
    where no face is found gets a zero embedding (its pairs score 0: rejected).
    Identification: the first photo of each person enrolled in a FAISS ``IndexFlatIP``, every
    other photo of an enrolled person queried, top-1 must be the right person.
plates: ``labels.csv`` with at least ``file, plate_text`` (``[0-9A-Z]``, no separators) and
    optionally ``plate_box``; other columns are ignored.  Each image is read as a tight crop
    first; when that is no confident plate reading, plates are searched in it (clp-det, text
    lines, small vehicles zoomed).  A label counts as read when any plate read from its image
    equals it, and as found when a reading's box overlaps its box (IoU >= 0.5).
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
    """The COCO object detector restricted to vehicles: a callable BGR image -> ``Detections``."""
    from camflow.core.perception import vehicle_detector as _vehicle_detector

    return _vehicle_detector(model, threads=threads)


def plate_recogniser(threads: int = 1):
    """The plate recogniser on the verified model files (``core.perception``)."""
    from camflow.core.perception import plate_recogniser as _plate_recogniser

    return _plate_recogniser(threads)


def _box_iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _xyxy(quad) -> list[float]:
    q = np.asarray(quad, np.float32).reshape(-1, 2)
    return [float(v) for v in (*q.min(0), *q.max(0))]


def _parse_box(text: str) -> list[float] | None:
    try:
        box = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        return None
    return box if len(box) == 4 and box[2] > box[0] and box[3] > box[1] else None


def eval_plates(images_dir: str | Path, labels_csv: str | Path, vehicles=None, threads: int = 1,
                recogniser=None, iou: float = 0.5) -> dict:
    """Plate finding and reading on labelled still images (tight crops or whole scenes).

    Labels: ``file``, ``plate_text`` (``[0-9A-Z]``), optionally ``plate_box`` (``x1 y1 x2 y2``
    pixels); other columns are ignored. Each image is read by ``PlateRecogniser.search_image``
    (as a crop first, else searched: clp-det, text lines, and the vehicles too small for the
    whole-image pass, found by ``vehicles``: a callable image -> vehicle ``Detections``,
    default ``vehicle_detector()``, ``False`` for none).

    * ``exact``: labels read exactly by any reading of their image; ``char_accuracy``: best
      1 - normalised edit distance;
    * ``plate_recall`` (labels with a box): a reading's box overlaps the label's at IoU >=
      ``iou``; ``candidate_recall``: a plate candidate that was read (parsed or not) did;
    * ``ms_per_image``, ``ms_per_plate`` (total time / labels), on ``threads`` ONNX threads;
    * ``misses``: each label not read exactly, with ``kind`` ``not_found`` (no reading at its
      place; ``candidate_iou`` tells a finder miss from a candidate that did not read as a
      plate) or ``misread`` (a reading at its place, wrong text), and what was read.
    """
    from camflow.transforms.plates import normalise_text

    if vehicles is None:
        vehicles = vehicle_detector(threads=threads)
    elif vehicles is False:
        vehicles = None
    recogniser = recogniser or plate_recogniser(threads)

    images_dir = Path(images_dir)
    labels: dict[str, list[tuple[str, list[float] | None]]] = defaultdict(list)
    for r in _read_rows(labels_csv):
        if r.get("file"):
            labels[r["file"]].append((normalise_text(r.get("plate_text", "")),
                                      _parse_box(r.get("plate_box", ""))))
    n = exact = boxed = found = cand_found = 0
    char_acc = 0.0
    ms = []
    misses = []
    for fname, truths in labels.items():
        image = _imread(images_dir / fname)
        t0 = time.perf_counter()
        reads, cands = recogniser.search_image(image, vehicles) if image is not None else ([], [])
        ms.append((time.perf_counter() - t0) * 1000)
        texts = [p.text for p in reads]
        for truth, box in truths:
            n += 1
            here = reads
            cand_iou = None
            if box is not None:
                boxed += 1
                here = [p for p in reads if p.box is not None and _box_iou(box, _xyxy(p.box)) >= iou]
                cand_iou = max((_box_iou(box, _xyxy(q)) for q in cands), default=0.0)
                found += bool(here)
                cand_found += cand_iou >= iou or bool(here)
            if truth in texts:
                exact += 1
                char_acc += 1.0
                continue
            char_acc += max((_char_accuracy(t, truth) for t in texts), default=0.0)
            miss = {"file": fname, "truth": truth, "kind": "misread" if here else "not_found",
                    "read_here": [p.text for p in here], "read": texts}
            if cand_iou is not None:
                miss["candidate_iou"] = round(cand_iou, 2)
            misses.append(miss)
    out = {
        "plates": n,
        "exact": exact / n if n else 0.0,
        "char_accuracy": char_acc / n if n else 0.0,
        "ms_per_plate": float(np.sum(ms) / n) if n else 0.0,
        "ms_per_image": float(np.mean(ms)) if ms else 0.0,
        "images": len(labels),
        "threads": threads,
    }
    if boxed:
        out["plates_with_box"] = boxed
        out["plate_recall"] = found / boxed
        out["candidate_recall"] = cand_found / boxed
    out["not_found"] = sum(m["kind"] == "not_found" for m in misses)
    out["misread"] = sum(m["kind"] == "misread" for m in misses)
    out["misses"] = misses
    return out
