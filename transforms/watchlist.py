"""Suspect watchlist: the pure core of face and plate matching (no Flink, no Kafka).

The pieces and where they live in the job:

* ``WatchlistState``: the serialisable truth, folded from the compacted ``watchlist`` topic
  (records ``schemas/watchlist_entry.avsc``, keyed ``kind:id``; a removal is a tombstone).
  Plain dicts and lists only, so it pickles into Flink broadcast state.  ``apply`` returns a
  new state and never mutates the old one.
* ``FaceIndex``: FAISS inner-product search over the enrolled face embeddings.  It is
  DERIVED from the state (``FaceIndex.build(state)`` on restore) and never checkpointed;
  live changes go in incrementally with ``update_entry``.
* ``PlateWatchlist``: exact and fuzzy (one edit, OCR confusions cheap) plate matching, also
  derived from the state.
* ``FaceMatchDecider`` / ``PlateMatchDecider``: per-camera keyed state (a plain dict) that
  turns raw matches into confirmed sightings and at most one alert per (subject, camera) per
  cooldown.  Alerts follow ``schemas/alert.avsc``, sightings ``schemas/sighting.avsc``.
* ``evidence_crop``: a size-capped JPEG of the matched face or vehicle for the alert.

Alert and sighting ids are hashes of what they are about (never of processing time), so a
replay after failover re-emits the same ids and the upserting sinks keep one copy.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .alerts import CRITICAL, WARNING, alert_id, alert_record, time_bucket
from .plate_text import canonical_map, normalise_text, plate_distance

DIM = 128
KINDS = ("face", "plate")
CATEGORIES = ("wanted", "suspect", "missing")
CATEGORY_SEVERITY = {"wanted": CRITICAL, "suspect": WARNING, "missing": WARNING}

# Index choice: exact flat search below this many vectors, an approximate index above it.
IVF_THRESHOLD = 100_000


# ------------------------------------------------------------------ errors
class MatchingConfig(BaseModel):
    """When a face or plate read becomes an alert (the deciders below)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="match faces and plates against the watchlist")
    face_threshold: float = Field(0.91, gt=0, le=1, description=(
        "cosine similarity of L2-normalised dlib embeddings; calibrate with `camflow eval faces` "
        "(threshold_at_far_1e-3 was 0.903 on the development faces)"))
    face_confirmations: int = Field(2, ge=1, description="matching faces needed in one track")
    plate_confirmations: int = Field(1, ge=1, description="matching plate reads needed in one track")
    confirm_window_ms: int = Field(5_000, gt=0, description="the confirmations fall within this")
    cooldown_ms: int = Field(600_000, gt=0, description="one alert per subject and camera per cooldown")
    evidence_max_bytes: int = Field(64_000, ge=0, description="inline evidence JPEG cap; 0 = none")


class WatchlistError(ValueError):
    """Refused input; ``reason`` is a stable machine-readable code."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class InvalidEmbedding(WatchlistError):
    """reason: ``bad_shape``, ``non_finite`` or ``zero_norm``."""


class InvalidEntry(WatchlistError):
    """reason: ``bad_entry``, ``bad_kind``, ``bad_category``, ``no_embeddings``, ``bad_plate``,
    or an ``InvalidEmbedding`` reason for a bad enrolment embedding."""


class EvidenceError(WatchlistError):
    """reason: ``empty_crop`` or ``too_large``."""


# ------------------------------------------------------------------ embeddings
_MIN_NORM = 1e-6


def _as_array(x: Any) -> np.ndarray:
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:  # ragged rows, strings, nested objects
        raise InvalidEmbedding("bad_shape", f"embeddings are not a numeric matrix: {exc}") from exc


def embedding_problems(x: Any, dim: int = DIM) -> np.ndarray:
    """Per-row reason code ('' when usable) for an [M, dim] array; never raises on values."""
    arr = _as_array(x)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InvalidEmbedding("bad_shape", f"expected [M, {dim}] embeddings, got {arr.shape}")
    out = np.full(len(arr), "", dtype=object)
    finite = np.isfinite(arr).all(axis=1)
    out[~finite] = "non_finite"
    norms = np.linalg.norm(np.where(np.isfinite(arr), arr, 0.0), axis=1)
    out[finite & (norms < _MIN_NORM)] = "zero_norm"
    return out


def validate_embeddings(x: Any, dim: int = DIM) -> np.ndarray:
    """``x`` as float32 [M, dim], each row L2-normalised; a 1-D vector counts as one row.

    Raises ``InvalidEmbedding`` (reason ``bad_shape`` / ``non_finite`` / ``zero_norm``, with
    the first offending row) rather than letting NaN or a zero vector reach FAISS, where
    they would silently match nothing or everything.
    """
    arr = _as_array(x)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    problems = embedding_problems(arr, dim)
    bad = np.flatnonzero(problems != "")
    if len(bad):
        i = int(bad[0])
        raise InvalidEmbedding(problems[i], f"row {i} of {len(arr)}: {problems[i].replace('_', ' ')} "
                               "embedding (NaN/inf or all zeros; check the face crop and model)")
    arr = arr / np.linalg.norm(arr, axis=1, keepdims=True)
    return np.ascontiguousarray(arr, dtype=np.float32)


# ------------------------------------------------------------------ state
def entry_key(kind: str, subject_id: str) -> str:
    """Key of an entry in the state and on the compacted topic: ``kind:id``."""
    return f"{kind}:{subject_id}"


def normalise_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A validated plain-dict copy of a watchlist entry (WatchlistEntry record or similar).

    Faces: ``embeddings`` L2-normalised lists of 128 floats (at least one).  Plates: ``plate``
    normalised ``[0-9A-Z]`` text (``embeddings`` holding a string is accepted as an alias).
    """
    if not isinstance(entry, Mapping):
        raise InvalidEntry("bad_entry", f"an entry must be a mapping, got {type(entry).__name__}")
    subject_id = entry.get("id")
    if not isinstance(subject_id, str) or not subject_id:
        raise InvalidEntry("bad_entry", "an entry needs a non-empty string 'id'")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise InvalidEntry("bad_kind", f"{subject_id}: kind must be one of {KINDS}, got {kind!r}")
    category = entry.get("category", "wanted" if kind == "plate" else None)
    if category not in CATEGORIES:
        raise InvalidEntry("bad_category", f"{subject_id}: category must be one of {CATEGORIES}, "
                           f"got {category!r}")
    out: dict[str, Any] = {
        "id": subject_id,
        "kind": kind,
        "name": entry.get("name"),
        "category": category,
        "added_by": entry.get("added_by") or "",
        "time_ms": int(entry.get("time_ms") or 0),
        "reason": entry.get("reason"),
    }
    if kind == "face":
        raw = entry.get("embeddings")
        if raw is None or isinstance(raw, (str, bytes)) or len(raw) == 0:
            raise InvalidEntry("no_embeddings", f"{subject_id}: a face entry needs at least one embedding")
        try:
            vecs = validate_embeddings(np.asarray(raw, dtype=np.float64).reshape(len(raw), -1))
        except InvalidEmbedding as e:
            raise InvalidEntry(e.reason, f"{subject_id}: {e.message}") from None
        except ValueError as e:  # ragged lists
            raise InvalidEntry("bad_shape", f"{subject_id}: {e}") from None
        out["embeddings"] = vecs.astype(np.float64).tolist()
        out["plate"] = None
        out["plate_display"] = None
    else:
        raw = entry.get("plate")
        if not raw and isinstance(entry.get("embeddings"), str):
            raw = entry["embeddings"]
        text = normalise_text(raw or "")
        if not text:
            raise InvalidEntry("bad_plate", f"{subject_id}: a plate entry needs plate text [0-9A-Z]")
        out["embeddings"] = []
        out["plate"] = text
        out["plate_display"] = entry.get("plate_display") or text
    return out


@dataclass(frozen=True)
class WatchlistState:
    """The current watchlist: ``entries`` key ``kind:id`` -> normalised entry dict.

    ``tombstones`` key -> time_ms of the removal, so that a stale (older) add replayed after a
    removal does not resurrect the entry; ``version`` counts effective changes.
    Entry dict: {id, kind: 'face'|'plate', name, category: 'wanted'|'suspect'|'missing',
    embeddings: [[128 floats], ...] (faces) or [] (plates), plate: text or None,
    plate_display, added_by, time_ms, reason}.

    Ordering: a change older than what the state holds for that key (entry or tombstone
    time_ms) is ignored; equal times apply (so replaying the same record is idempotent).
    Except a removal record (``removed=True``): it removes the entry it follows whatever the
    clocks say. Changes to one key arrive in the order of its partition, which is the order
    they were made; an add stamped by a host whose clock runs ahead must not outlive its
    removal (the subject would keep raising alerts). Its tombstone is stamped after the entry
    it removed, so a replay of that add does not bring it back.
    """

    entries: dict[str, dict] = field(default_factory=dict)
    tombstones: dict[str, int] = field(default_factory=dict)
    version: int = 0

    # -- reading
    def get(self, kind: str, subject_id: str) -> dict | None:
        return self.entries.get(entry_key(kind, subject_id))

    def of_kind(self, kind: str) -> dict[str, dict]:
        """subject id -> entry for one kind."""
        return {e["id"]: e for e in self.entries.values() if e["kind"] == kind}

    def __len__(self) -> int:
        return len(self.entries)

    def _last_time(self, key: str) -> int | None:
        times = [t for t in (self.entries.get(key, {}).get("time_ms"), self.tombstones.get(key))
                 if t is not None]
        return max(times) if times else None

    # -- changing (pure: a new state is returned)
    def apply(self, update: Mapping[str, Any] | None, key: str | None = None,
              time_ms: int | None = None) -> "WatchlistState":
        """The state after one change.

        ``update``: an entry (upsert), or an entry with ``removed=True`` (removal, as on the
        audit topic); ``None`` is a compacted-topic tombstone for ``key`` (``kind:id``), with
        ``time_ms`` the record timestamp when known.  Invalid entries raise ``InvalidEntry``.
        """
        if update is None:
            if key is None:
                raise InvalidEntry("bad_entry", "a tombstone needs the record key 'kind:id'")
            return self.remove(key, time_ms)
        if update.get("removed"):
            k = entry_key(update.get("kind", ""), update.get("id", ""))
            t = update.get("time_ms")
            t = int(t) if t is not None else time_ms
            current = self.entries.get(k)
            if current is not None and t is not None and t <= current["time_ms"]:
                t = current["time_ms"] + 1  # removes what it follows, clock skew or not
            return self.remove(k, t)
        entry = normalise_entry(update)
        k = entry_key(entry["kind"], entry["id"])
        if key is not None and key != k:
            raise InvalidEntry("bad_entry", f"record key {key!r} does not match entry {k!r}")
        last = self._last_time(k)
        if last is not None and entry["time_ms"] < last:
            return self  # stale: an older change replayed after a newer one
        entries = dict(self.entries)
        entries[k] = entry
        tombstones = self.tombstones
        if k in tombstones:
            tombstones = {t: v for t, v in tombstones.items() if t != k}
        return WatchlistState(entries, tombstones, self.version + 1)

    def remove(self, key: str, time_ms: int | None = None) -> "WatchlistState":
        """The state without ``key`` (``kind:id``), remembering the removal time."""
        current = self.entries.get(key)
        if time_ms is not None:
            last = self._last_time(key)
            if last is not None and int(time_ms) < last:
                return self  # stale removal: the entry was re-added later
        stamp = int(time_ms) if time_ms is not None else (
            current["time_ms"] if current else self.tombstones.get(key, 0))
        if current is None and self.tombstones.get(key) == stamp:
            return self
        entries = {k: v for k, v in self.entries.items() if k != key}
        tombstones = dict(self.tombstones)
        tombstones[key] = stamp
        return WatchlistState(entries, tombstones, self.version + 1)

    def apply_all(self, updates: Iterable[Mapping[str, Any] | tuple[str, None]]) -> "WatchlistState":
        """Fold several changes; a ``(key, None)`` pair is a tombstone."""
        state = self
        for u in updates:
            if isinstance(u, tuple):
                state = state.apply(None, key=u[0])
            else:
                state = state.apply(u)
        return state

    # -- serialising
    def to_dict(self) -> dict:
        return {"entries": self.entries, "tombstones": self.tombstones, "version": self.version}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "WatchlistState":
        if not data:
            return cls()
        return cls(dict(data.get("entries", {})), dict(data.get("tombstones", {})),
                   int(data.get("version", 0)))


# ------------------------------------------------------------------ face index
def choose_index_kind(n: int, ivf_threshold: int = IVF_THRESHOLD, large_kind: str = "ivf") -> str:
    """'flat' (exact) below ``ivf_threshold`` vectors, else ``large_kind`` ('ivf' or 'hnsw')."""
    if large_kind not in ("ivf", "hnsw"):
        raise ValueError(f"large_kind must be 'ivf' or 'hnsw', got {large_kind!r}")
    return "flat" if n < ivf_threshold else large_kind


def ivf_nlist(n: int) -> int:
    """IVF lists: 4 * sqrt(n), and at least ~8 training points per list."""
    return max(1, min(int(4 * math.sqrt(max(n, 1))), max(1, n // 8)))


def _faiss():
    import faiss

    return faiss


def new_faiss_index(kind: str, dim: int = DIM, *, train: np.ndarray | None = None,
                    nlist: int | None = None, hnsw_m: int = 32, ef_construction: int = 80,
                    max_train_per_list: int = 40, seed: int = 0):
    """An empty inner-product FAISS index with int64 ids (trained when it needs training).

    flat: ``IndexIDMap2(IndexFlatIP)``; ivf: ``IVF{nlist},Flat`` trained on at most
    ``max_train_per_list * nlist`` rows of ``train``; hnsw: ``IndexIDMap2(IndexHNSWFlat)``.
    """
    faiss = _faiss()
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if kind == "ivf":
        if train is None or len(train) == 0:
            raise ValueError("an IVF index needs training vectors")
        nlist = nlist or ivf_nlist(len(train))
        index = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        sample = train
        cap = max_train_per_list * nlist
        if len(train) > cap:
            rng = np.random.default_rng(seed)
            sample = train[np.sort(rng.choice(len(train), cap, replace=False))]
        index.cp.niter = 10
        index.cp.seed = seed
        index.cp.max_points_per_centroid = max_train_per_list
        index.cp.min_points_per_centroid = 1  # no warning for small test lists
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        return index
    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = ef_construction
        return faiss.IndexIDMap2(inner)
    raise ValueError(f"unknown index kind {kind!r}")


def set_search_param(index, kind: str, value: int) -> None:
    """nprobe (IVF) or efSearch (HNSW) on a CPU index."""
    if kind == "ivf":
        _faiss().extract_index_ivf(index).nprobe = int(value)
    elif kind == "hnsw":
        _faiss().downcast_index(index.index).hnsw.efSearch = int(value)


def perturbed_queries(vectors: np.ndarray, n: int, noise: float = 1.2, seed: int = 0) -> np.ndarray:
    """Queries near enrolled rows: row + Gaussian noise, normalised (cosine with the row ~0.86
    at noise 0.6, ~0.64 at 1.2).  The default is deliberately harder than a new photo of an
    enrolled face so that tuning also covers look-alikes of strangers."""
    rng = np.random.default_rng(seed)
    rows = vectors[rng.integers(0, len(vectors), n)].astype(np.float32)
    q = rows + rng.standard_normal(rows.shape).astype(np.float32) * (noise / math.sqrt(rows.shape[1]))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def recall_at_1(index, queries: np.ndarray, exact_sims: np.ndarray, tol: float = 1e-5) -> float:
    """Fraction of queries whose approximate top-1 is as similar as the exact top-1 (ties ok)."""
    d, i = index.search(queries, 1)
    return float(np.mean((i[:, 0] >= 0) & (d[:, 0] >= exact_sims - tol)))


# Tuning ladders start at a floor: enrolled-photo queries alone would pick nprobe 1-4, which
# misses look-alikes of strangers (bench/faiss.py: recall@1 on strangers ~0.85 at nprobe 1).
SEARCH_LADDER = {"ivf": (8, 16, 32, 64, 128, 256), "hnsw": (32, 64, 128, 256, 512)}


def tune_search(index, kind: str, vectors: np.ndarray, target_recall: float = 0.99,
                n_queries: int = 200, seed: int = 0) -> tuple[int, float]:
    """Smallest nprobe / efSearch whose recall@1 on perturbed enrolled vectors reaches
    ``target_recall`` (against exact search) on ``perturbed_queries``; (value, recall).
    Leaves it set on ``index``."""
    faiss = _faiss()
    q = perturbed_queries(vectors, min(n_queries, len(vectors)), seed=seed)
    exact, _ = faiss.knn(q, np.ascontiguousarray(vectors, np.float32), 1, faiss.METRIC_INNER_PRODUCT)
    ladder = SEARCH_LADDER[kind]
    if kind == "ivf":
        ladder = [v for v in ladder if v < faiss.extract_index_ivf(index).nlist] + \
            [faiss.extract_index_ivf(index).nlist]
    best = (ladder[-1], 0.0)
    for value in ladder:
        set_search_param(index, kind, value)
        r = recall_at_1(index, q, exact[:, 0])
        best = (value, r)
        if r >= target_recall:
            break
    set_search_param(index, kind, best[0])
    return best


class FaceIndex:
    """Inner-product search over enrolled face embeddings, answering with subject ids.

    Every embedding of every face entry is one FAISS vector with an int64 id; ids map back to
    subject ids here (``subject_vectors``).  Built from a ``WatchlistState`` and kept in step
    with ``update_entry``; never checkpointed (``build`` again after a restore).

    Kinds: 'flat' (exact, ``IndexIDMap2(IndexFlatIP)``) for small lists; at ``ivf_threshold``
    vectors and above, 'ivf' (``IVF{4 sqrt n},Flat``, nprobe tuned to ``target_recall``) or
    'hnsw' (``HNSW32``, efSearch tuned).  Flat and IVF remove vectors for real; HNSW cannot,
    so its removals are masked at search time and ``needs_rebuild`` turns true once more than
    10 % of its vectors are dead.  ``needs_rebuild`` is also true when the size has moved into
    another kind's range or an IVF index has grown past 4x the size it was trained for.

    GPU: with ``use_gpu`` (default: when ``faiss.get_num_gpus() > 0``) flat and IVF searches
    run on a GPU copy (``index_cpu_to_all_gpus``), re-cloned lazily after updates; the CPU
    index stays the master that updates go to.
    """

    def __init__(self, kind: str = "flat", dim: int = DIM, *, index=None,
                 ivf_threshold: int = IVF_THRESHOLD, large_kind: str = "ivf",
                 use_gpu: bool | None = None):
        self.kind = kind
        self.dim = dim
        self.ivf_threshold = ivf_threshold
        self.large_kind = large_kind
        self.index = index if index is not None else new_faiss_index("flat", dim)
        self.search_param: int | None = None
        self.tuned_recall: float | None = None
        self.trained_for = 0
        self.subject_vectors: dict[str, list[int]] = {}
        self._vector_subject: dict[int, str] = {}
        self._next_id = 0
        self._dead = 0  # HNSW: vectors still in the graph but no longer live
        faiss = _faiss()
        self.use_gpu = (faiss.get_num_gpus() > 0) if use_gpu is None else bool(use_gpu)
        self._gpu_index = None
        self._gpu_dirty = True

    # -- building
    @classmethod
    def build(cls, state: WatchlistState | Mapping[str, dict], *, ivf_threshold: int = IVF_THRESHOLD,
              large_kind: str = "ivf", kind: str | None = None, use_gpu: bool | None = None,
              tune: bool = True, target_recall: float = 0.99, search_param: int | None = None,
              seed: int = 0) -> "FaceIndex":
        """The index of every face entry of ``state`` (a ``WatchlistState`` or its ``entries``).

        ``kind`` forces a kind; otherwise ``choose_index_kind`` picks one from the number of
        vectors.  ``search_param`` fixes nprobe/efSearch instead of tuning it.
        """
        entries = state.entries if isinstance(state, WatchlistState) else state
        faces = sorted((e for e in entries.values() if e.get("kind") == "face"), key=lambda e: e["id"])
        subjects: list[str] = []
        rows: list[list[float]] = []
        for e in faces:
            for v in e["embeddings"]:
                subjects.append(e["id"])
                rows.append(v)
        vectors = (np.asarray(rows, np.float32).reshape(-1, DIM) if rows
                   else np.zeros((0, DIM), np.float32))
        kind = kind or choose_index_kind(len(vectors), ivf_threshold, large_kind)
        if kind == "ivf" and len(vectors) == 0:
            kind = "flat"
        index = new_faiss_index(kind, DIM, train=vectors if kind == "ivf" else None, seed=seed)
        self = cls(kind, DIM, index=index, ivf_threshold=ivf_threshold, large_kind=large_kind,
                   use_gpu=use_gpu)
        ids = np.arange(len(vectors), dtype=np.int64)
        if len(vectors):
            index.add_with_ids(vectors, ids)
        self._next_id = len(vectors)
        self.trained_for = len(vectors)
        for vid, subject in zip(ids.tolist(), subjects):
            self.subject_vectors.setdefault(subject, []).append(vid)
            self._vector_subject[vid] = subject
        if kind in ("ivf", "hnsw") and len(vectors):
            if search_param is not None:
                set_search_param(index, kind, search_param)
                self.search_param = search_param
            elif tune:
                self.search_param, self.tuned_recall = tune_search(
                    index, kind, vectors, target_recall, seed=seed)
            else:
                self.search_param = max(1, ivf_nlist(len(vectors)) // 16) if kind == "ivf" else 64
                set_search_param(index, kind, self.search_param)
        return self

    # -- live updates
    @property
    def ntotal(self) -> int:
        """Live vectors (HNSW dead vectors excluded)."""
        return len(self._vector_subject)

    @property
    def needs_rebuild(self) -> bool:
        n = self.ntotal
        if self.kind == "flat":
            return n >= self.ivf_threshold
        if n < self.ivf_threshold // 2:  # hysteresis: do not flap around the threshold
            return True
        if self.kind == "ivf":
            return n > 4 * max(self.trained_for, 1)
        return self._dead > 0.1 * max(self.index.ntotal, 1)

    def remove_subject(self, subject_id: str) -> int:
        """Drop every vector of a subject; the number removed."""
        vids = self.subject_vectors.pop(subject_id, [])
        if not vids:
            return 0
        for vid in vids:
            self._vector_subject.pop(vid, None)
        if self.kind == "hnsw":
            self._dead += len(vids)  # masked at search time
        else:
            self.index.remove_ids(np.asarray(vids, dtype=np.int64))
        self._gpu_dirty = True
        return len(vids)

    def add_subject(self, subject_id: str, embeddings: Any) -> int:
        """Add embeddings for a subject (validated and normalised); the number added."""
        vecs = validate_embeddings(embeddings, self.dim)
        ids = np.arange(self._next_id, self._next_id + len(vecs), dtype=np.int64)
        self._next_id += len(vecs)
        self.index.add_with_ids(vecs, ids)
        self.subject_vectors.setdefault(subject_id, []).extend(ids.tolist())
        for vid in ids.tolist():
            self._vector_subject[vid] = subject_id
        self._gpu_dirty = True
        return len(vecs)

    def update_entry(self, subject_id: str, entry: Mapping[str, Any] | None) -> None:
        """Bring one subject in line with the state: ``entry`` is ``state.get('face', id)``
        after the change (None when removed); its old vectors are replaced."""
        self.remove_subject(subject_id)
        if entry is not None and entry.get("kind", "face") == "face" and entry.get("embeddings"):
            self.add_subject(subject_id, entry["embeddings"])

    # -- searching
    def _searcher(self):
        if not self.use_gpu or self.kind == "hnsw":
            return self.index
        if self._gpu_dirty or self._gpu_index is None:
            faiss = _faiss()
            self._gpu_index = faiss.index_cpu_to_all_gpus(self.index)
            self._gpu_dirty = False
        return self._gpu_index

    def search(self, embeddings: Any, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` distinct subjects per query.

        Returns (subject_ids object [M, k], similarities float32 [M, k]), best first; slots
        without a subject hold None and -inf.  Raises ``InvalidEmbedding`` for bad queries
        (use ``embedding_problems`` first to skip bad rows instead).
        """
        q = validate_embeddings(embeddings, self.dim)
        m = len(q)
        ids_out = np.full((m, k), None, dtype=object)
        sims_out = np.full((m, k), -np.inf, dtype=np.float32)
        if m == 0 or self.ntotal == 0 or k <= 0:
            return ids_out, sims_out
        per_subject = max((len(v) for v in self.subject_vectors.values()), default=1)
        fetch = k * per_subject + (min(self._dead, 256) if self.kind == "hnsw" else 0)
        fetch = int(min(max(fetch, k), self.index.ntotal, 2048))
        d, i = self._searcher().search(q, fetch)
        lookup = self._vector_subject
        for r in range(m):
            seen: set[str] = set()
            col = 0
            for vid, sim in zip(i[r].tolist(), d[r].tolist()):
                subject = lookup.get(vid) if vid >= 0 else None
                if subject is None or subject in seen:
                    continue
                seen.add(subject)
                ids_out[r, col] = subject
                sims_out[r, col] = sim
                col += 1
                if col == k:
                    break
        return ids_out, sims_out


# ------------------------------------------------------------------ plates
# OCR confusions: the one model in plate_text, shared with the plate reader; a substitution
# inside one confusion class is a cheap edit (substitution_cost, plate_distance).
_CANONICAL = canonical_map()


def _deletes(text: str) -> set[str]:
    """The text and its one-deletion variants, in canonical (confusion-free) letters: two
    strings within one real edit plus any number of confusions share a variant."""
    text = text.translate(_CANONICAL)
    return {text} | {text[:i] + text[i + 1:] for i in range(len(text))}


@dataclass
class PlateMatch:
    subject_id: str
    entry: dict
    plate: str          # the watchlisted plate
    read: str           # the plate as read (normalised)
    distance: float     # 0 exact, 0.5 one OCR confusion, 1 one real edit
    exact: bool

    @property
    def score(self) -> float:
        """Match quality in 0..1 (1 exact)."""
        return max(0.0, 1.0 - self.distance / 2.0)


class PlateWatchlist:
    """Plate entries indexed for exact and one-edit fuzzy lookup (symmetric-delete index).

    A read matches an entry when the weighted distance is at most ``max_distance`` (1.0):
    one real substitution, insertion or deletion, or up to two OCR-confusion substitutions
    (cost ``cheap`` = 0.5 each, e.g. 0/D/O, 8/B, 1/I/T, 5/S, 2/Z, 6/G, M/N).
    """

    def __init__(self, max_distance: float = 1.0, cheap: float = 0.5):
        if not 0.0 <= max_distance <= 1.0:
            raise ValueError("max_distance must be in [0, 1] (the index finds one real edit)")
        self.max_distance = max_distance
        self.cheap = cheap
        self.by_plate: dict[str, dict[str, dict]] = {}   # plate -> subject id -> entry
        self._plate_of: dict[str, str] = {}              # subject id -> plate
        self._deletes: dict[str, set[str]] = {}          # delete variant -> plates

    @classmethod
    def build(cls, state: WatchlistState | Mapping[str, dict], **kwargs) -> "PlateWatchlist":
        self = cls(**kwargs)
        entries = state.entries if isinstance(state, WatchlistState) else state
        for e in entries.values():
            if e.get("kind") == "plate":
                self.update_entry(e["id"], e)
        return self

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_plate.values())

    def _remove(self, subject_id: str) -> None:
        plate = self._plate_of.pop(subject_id, None)
        if plate is not None:
            del self.by_plate[plate][subject_id]
            if not self.by_plate[plate]:
                del self.by_plate[plate]
                for d in _deletes(plate):
                    self._deletes[d].discard(plate)
                    if not self._deletes[d]:
                        del self._deletes[d]

    def update_entry(self, subject_id: str, entry: Mapping[str, Any] | None) -> None:
        """Bring one subject in line with the state (``None``: removed)."""
        self._remove(subject_id)
        if entry is None or entry.get("kind") != "plate":
            return
        plate = normalise_text(entry.get("plate") or "")
        if not plate:
            return
        if plate not in self.by_plate:
            for d in _deletes(plate):
                self._deletes.setdefault(d, set()).add(plate)
        self.by_plate.setdefault(plate, {})[subject_id] = dict(entry)
        self._plate_of[subject_id] = plate

    def matches(self, text: str) -> list[PlateMatch]:
        """Every entry within ``max_distance`` of ``text``, best first (then most severe)."""
        read = normalise_text(text or "")
        if not read:
            return []
        candidates: set[str] = set()
        for d in _deletes(read):
            candidates |= self._deletes.get(d, set())
        out = []
        for plate in candidates:
            dist = 0.0 if plate == read else plate_distance(read, plate, self.cheap)
            if dist <= self.max_distance + 1e-9:
                for sid, entry in self.by_plate[plate].items():
                    out.append(PlateMatch(sid, entry, plate, read, dist, dist == 0.0))
        sev = {"wanted": 0, "suspect": 1, "missing": 2}
        out.sort(key=lambda m: (m.distance, sev.get(m.entry.get("category"), 3), m.subject_id))
        return out

    def match(self, text: str) -> PlateMatch | None:
        """The best match of a read, or None."""
        found = self.matches(text)
        return found[0] if found else None


# ------------------------------------------------------------------ deciders
def sighting_id(subject_id: str, kind: str, camera_id: str, track_id: int | None,
                time_bucket_ms: int) -> str:
    """32 hex characters: (subject, kind, camera, track, time bucket), stable across replays."""
    key = json.dumps([subject_id, kind, camera_id, track_id, int(time_bucket_ms)], ensure_ascii=False)
    return hashlib.blake2b(key.encode("utf-8"), digest_size=16).hexdigest()


class _MatchDecider:
    """Confirmation + cooldown logic shared by faces and plates.

    Keyed state (one camera), a plain dict from ``new_state()``::

        {"now": max time_ms seen,
         "pending": {subject_id: {track_key: [[time_ms, score], ...]}},   # within window_ms
         "open": {subject_id: {"alert_id", "opened_ms", "last_ms", "best", "sightings",
                               "track_id"}}}                             # within cooldown_ms

    ``track_key`` is the track id as a string, or '*' when ``same_track`` is False.  The dict
    is modified in place by ``observe*``; store it back into the Flink ValueState.
    """

    kind = ""
    alert_type = ""

    def __init__(self, confirmations: int, config: MatchingConfig, same_track: bool = True,
                 emit_updates: bool = False, sighting_bucket_ms: int = 10_000):
        """``confirmations`` of this kind, the rest from ``config``; ``same_track``: confirm
        within one track only; ``emit_updates``: re-emit the open alert on each confirmation."""
        if sighting_bucket_ms <= 0:
            raise ValueError("sighting_bucket_ms must be positive")
        self.confirmations = confirmations
        self.window_ms = config.confirm_window_ms
        self.cooldown_ms = config.cooldown_ms
        self.same_track = same_track
        self.emit_updates = emit_updates
        self.sighting_bucket_ms = sighting_bucket_ms

    @staticmethod
    def new_state() -> dict:
        return {"now": 0, "pending": {}, "open": {}}

    def expire(self, state: dict, now_ms: int) -> dict:
        """Drop pending matches older than the window and alerts past their cooldown."""
        now = max(int(now_ms), int(state.get("now", 0)))
        state["now"] = now
        pending = state.setdefault("pending", {})
        for subject in list(pending):
            tracks = pending[subject]
            for tk in list(tracks):
                kept = [o for o in tracks[tk] if o[0] > now - self.window_ms]
                if kept:
                    tracks[tk] = kept
                else:
                    del tracks[tk]
            if not tracks:
                del pending[subject]
        opened = state.setdefault("open", {})
        for subject in list(opened):
            if now - opened[subject]["opened_ms"] >= self.cooldown_ms:
                del opened[subject]
        return state

    def forget(self, state: dict, subject_id: str) -> None:
        """Drop everything about a subject (removed from the watchlist)."""
        state.get("pending", {}).pop(subject_id, None)
        state.get("open", {}).pop(subject_id, None)

    def _evidence(self, entry: Mapping[str, Any], details: dict, count: int, first_ms: int,
                  opened: dict) -> str:
        evidence = {
            "name": entry.get("name"),
            "category": entry.get("category"),
            "reason": entry.get("reason"),
            "confirmations": count,
            "required_confirmations": self.confirmations,
            "first_seen_ms": first_ms,
            "last_seen_ms": opened["last_ms"],
            "sightings": opened["sightings"],
            **details,
        }
        return json.dumps(evidence, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def _observe_one(self, state: dict, camera_id: str, time_ms: int, track_id: int,
                     subject_id: str, entry: Mapping[str, Any] | None, score: float,
                     details: dict, plate: str | None = None) -> tuple[list[dict], list[dict]]:
        if entry is None:  # removed from the watchlist (or never on it): no alert
            self.forget(state, subject_id)
            return [], []
        tracked = track_id is not None and track_id >= 0
        tid = int(track_id) if tracked else None
        if self.same_track and not tracked:
            obs = [[time_ms, score]]  # an untracked face cannot be confirmed by another frame
        else:
            tk = str(tid) if self.same_track else "*"
            obs = state["pending"].setdefault(subject_id, {}).setdefault(tk, [])
            for o in obs:
                if o[0] == time_ms:  # the same frame twice (duplicate delivery)
                    o[1] = max(o[1], score)
                    break
            else:
                obs.append([time_ms, score])
            obs[:] = [o for o in obs if o[0] > time_ms - self.window_ms]
        count = len(obs)
        if count < self.confirmations:
            return [], []
        first_ms = min(o[0] for o in obs)
        opened = state["open"].get(subject_id)
        alerts: list[dict] = []
        new = opened is None or time_ms - opened["opened_ms"] >= self.cooldown_ms
        if new:
            bucket = time_bucket(time_ms, self.cooldown_ms)
            opened = {"alert_id": alert_id(self.alert_type, camera_id, subject_id, bucket),
                      "opened_ms": int(time_ms), "last_ms": int(time_ms), "best": float(score),
                      "sightings": 1, "track_id": tid}
            state["open"][subject_id] = opened
        else:
            opened["last_ms"] = max(opened["last_ms"], int(time_ms))
            opened["best"] = max(opened["best"], float(score))
            opened["sightings"] += 1
        if new or self.emit_updates:
            alerts.append(alert_record(
                self.alert_type, CATEGORY_SEVERITY.get(entry.get("category"), WARNING),
                camera_id, opened["opened_ms"], subject_id, opened["best"],
                bucket_ms=time_bucket(opened["opened_ms"], self.cooldown_ms),
                track_id=opened["track_id"],
                evidence=self._evidence(entry, details, count, first_ms, opened)))
        sighting = {
            "sighting_id": sighting_id(subject_id, self.kind, camera_id, tid,
                                       time_bucket(time_ms, self.sighting_bucket_ms)),
            "subject_id": subject_id,
            "kind": self.kind,
            "camera_id": camera_id,
            "time_ms": int(time_ms),
            "score": float(score),
            "track_id": tid,
            "alert_id": opened["alert_id"],
            "plate": plate,
        }
        return alerts, [sighting]


class FaceMatchDecider(_MatchDecider):
    """Face matches -> confirmed sightings and ``watchlist_face`` alerts, for one camera.

    A face counts when its best subject's similarity is >= ``threshold``; the subject is
    confirmed once ``confirmations`` faces of it (distinct frames) fell within ``window_ms``
    in the same track (any track of the camera when ``same_track`` is False).  Every
    confirmed face gives a sighting; the first opens an alert, and later ones within
    ``cooldown_ms`` reuse its id (re-emitting the alert, same id, only with ``emit_updates``).
    The alert id is ``alerts.alert_id('watchlist_face', camera, subject,
    time_bucket(opening time, cooldown_ms))``.

    """

    kind = "face"
    alert_type = "watchlist_face"

    def __init__(self, config: MatchingConfig = MatchingConfig(), **behaviour):
        super().__init__(config.face_confirmations, config, **behaviour)
        self.threshold = config.face_threshold

    def observe(self, state: dict, camera_id: str, time_ms: int, track_ids: Sequence[int],
                subject_ids: Sequence[str | None], similarities: Sequence[float],
                watchlist: WatchlistState) -> tuple[list[dict], list[dict]]:
        """One frame's faces (parallel: track id, best subject, its similarity) ->
        (alerts, sightings).  ``state`` is updated in place."""
        time_ms = int(time_ms)
        self.expire(state, time_ms)
        alerts: list[dict] = []
        sightings: list[dict] = []
        for tid, sid, sim in zip(track_ids, subject_ids, similarities):
            if sid is None or not np.isfinite(sim) or float(sim) < self.threshold:
                continue
            entry = watchlist.get("face", sid)
            a, s = self._observe_one(
                state, camera_id, time_ms, int(tid) if tid is not None else -1, sid, entry,
                float(sim), {"similarity": round(float(sim), 6), "threshold": self.threshold,
                             "window_ms": self.window_ms})
            alerts += a
            sightings += s
        return alerts, sightings

    def matched_subjects(self, subject_ids: Sequence[str | None],
                         similarities: Sequence[float]) -> list[str | None]:
        """Per face: the best subject when its similarity reaches ``threshold``, else None."""
        return [sid if sid is not None and np.isfinite(sim) and float(sim) >= self.threshold
                else None for sid, sim in zip(subject_ids, similarities)]


def usable_face_rows(faces) -> np.ndarray:
    """Indices of the faces whose ``data['embedding']`` is finite and non-zero."""
    emb = faces.data.get("embedding") if len(faces) else None
    if emb is None or len(emb) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(embedding_problems(emb) == "")


def search_faces(faces, index: FaceIndex) -> tuple[np.ndarray, np.ndarray]:
    """Best subject per face row of ``faces`` (object [N], None for unusable embeddings or an
    empty index) and its similarity (float32 [N], -inf where no subject)."""
    sids = np.full(len(faces), None, dtype=object)
    sims = np.full(len(faces), -np.inf, dtype=np.float32)
    ok = usable_face_rows(faces)
    if len(ok) and index.ntotal:
        found, similarity = index.search(np.asarray(faces.data["embedding"])[ok], 1)
        sids[ok], sims[ok] = found[:, 0], similarity[:, 0]
    return sids, sims


# ------------------------------------------------------------------ retroactive search
def face_id(camera_id: str, sequence: int, row: int) -> str:
    """Stable id of one face read: its frame (camera, sequence) and row among the frame's faces."""
    return f"{camera_id}:{int(sequence)}:{int(row)}"


def face_embedding_records(camera_id: str, time_ms: int, sequence: int, faces,
                           matched: Sequence[str | None] | None = None) -> list[dict]:
    """``FaceEmbedding`` records (schemas/face_embedding.avsc) for one frame's faces with a
    usable embedding (NaN / all-zero rows are skipped), L2-normalised; ``matched`` is the
    watchlist subject per face row (None: unmatched)."""
    rows = usable_face_rows(faces)
    if not len(rows):
        return []
    vectors = validate_embeddings(np.asarray(faces.data["embedding"])[rows])
    out = []
    for row, vector in zip(rows.tolist(), vectors):
        track = int(faces.tracker_id[row])
        x1, y1, x2, y2 = (float(v) for v in faces.xyxy[row])
        out.append({"face_id": face_id(camera_id, sequence, row), "camera_id": camera_id,
                    "time_ms": int(time_ms), "sequence": int(sequence),
                    "track_id": track if track >= 0 else None,
                    "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                    "embedding": vector.tolist(),
                    "matched_subject": matched[row] if matched is not None else None})
    return out


def embedding_bytes(vector: Sequence[float]) -> bytes:
    """A 128-D embedding as the store keeps it: float32, little-endian."""
    return np.asarray(vector, dtype="<f4").tobytes()


class PlateMatchDecider(_MatchDecider):
    """Plate reads -> confirmed sightings and ``watchlist_plate`` alerts, for one camera.

    Same confirmation / cooldown rules as faces; one matching read confirms by default.
    The alert score and sighting score are the match quality (1 exact, 0.75 one OCR
    confusion, 0.5 one real edit).
    """

    kind = "plate"
    alert_type = "watchlist_plate"

    def __init__(self, config: MatchingConfig = MatchingConfig(), **behaviour):
        super().__init__(config.plate_confirmations, config, **behaviour)

    def observe(self, state: dict, camera_id: str, time_ms: int, track_ids: Sequence[int],
                plate_texts: Sequence[str], plates: PlateWatchlist) -> tuple[list[dict], list[dict]]:
        """One frame's plate reads (parallel: vehicle track id, normalised text) ->
        (alerts, sightings).  ``state`` is updated in place."""
        time_ms = int(time_ms)
        self.expire(state, time_ms)
        alerts: list[dict] = []
        sightings: list[dict] = []
        for tid, text in zip(track_ids, plate_texts):
            m = plates.match(text) if text else None
            if m is None:
                continue
            a, s = self._observe_one(
                state, camera_id, time_ms, int(tid) if tid is not None else -1, m.subject_id,
                m.entry, m.score,
                {"plate_read": m.read, "plate_listed": m.plate, "distance": m.distance,
                 "exact": m.exact, "max_distance": plates.max_distance,
                 "window_ms": self.window_ms},
                plate=m.read)
            alerts += a
            sightings += s
        return alerts, sightings


# ------------------------------------------------------------------ evidence
def evidence_crop(image_bgr: np.ndarray, box: Sequence[float], max_bytes: int = 64_000,
                  pad: float = 0.25, max_side: int = 512,
                  qualities: Sequence[int] = (90, 80, 70, 60, 50, 40, 30)) -> bytes:
    """JPEG of ``box`` (x1, y1, x2, y2 pixels) grown by ``pad`` of its size on each side,
    clipped to the image, at most ``max_side`` px on its longer side and ``max_bytes`` long:
    quality steps down, then the crop shrinks by 3/4 until it fits.

    Raises ``EvidenceError``: ``empty_crop`` (box outside the image / empty image) or
    ``too_large`` (even a 16 px crop at the lowest quality exceeds the cap).
    """
    if image_bgr is None or getattr(image_bgr, "size", 0) == 0:
        raise EvidenceError("empty_crop", "no image")
    h, w = image_bgr.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise EvidenceError("empty_crop", f"box {box} is not finite")
    bw, bh = max(0.0, x2 - x1), max(0.0, y2 - y1)
    cx1, cy1 = int(max(0, math.floor(x1 - pad * bw))), int(max(0, math.floor(y1 - pad * bh)))
    cx2, cy2 = int(min(w, math.ceil(x2 + pad * bw))), int(min(h, math.ceil(y2 + pad * bh)))
    if cx2 - cx1 < 1 or cy2 - cy1 < 1:
        raise EvidenceError("empty_crop", f"box {box} leaves nothing of a {w}x{h} image")
    crop = image_bgr[cy1:cy2, cx1:cx2]
    if crop.ndim == 2:
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    longer = max(crop.shape[:2])
    if longer > max_side:
        s = max_side / longer
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))),
                          interpolation=cv2.INTER_AREA)
    while True:
        for q in qualities:
            ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, int(q)])
            if ok and len(buf) <= max_bytes:
                return buf.tobytes()
        if max(crop.shape[:2]) <= 16:
            raise EvidenceError("too_large", f"cannot fit a JPEG crop into {max_bytes} bytes")
        crop = cv2.resize(crop, (max(1, crop.shape[1] * 3 // 4), max(1, crop.shape[0] * 3 // 4)),
                          interpolation=cv2.INTER_AREA)
