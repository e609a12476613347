"""``camflow search``: retroactive search of a watchlist subject over the faces in the store.

When a person is enrolled after they walked past the cameras, the job never alerted on them;
the faces it read are still in the analyst store (``face_embeddings``, unmatched ones for
``store.embedding_retention_days``). This scores every face captured since a given time
against the subject's enrolled embeddings (exact inner product, FAISS ``IndexFlatIP``) and
lists those at or above the face threshold, grouped by camera and track in time order.
"""
from __future__ import annotations

import getpass
import json

import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from camflow.config import Config

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([wdhms])\s*$")
_UNIT_MS = {"w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1_000}


class SearchError(ValueError):
    """A search that cannot run (unknown subject, a plate subject, a bad --since)."""


def parse_since(text: str) -> int:
    """A look-back like ``7d``, ``24h``, ``90m`` (also ``2w``, ``30s``, ``1.5d``) in ms."""
    match = _SINCE.match(text or "")
    if not match:
        raise SearchError(f"--since {text!r}: expected a number and a unit, e.g. 7d, 24h or 90m")
    value = float(match.group(1))
    if value <= 0:
        raise SearchError(f"--since {text!r}: must be more than zero")
    return int(value * _UNIT_MS[match.group(2)])


@dataclass
class FaceMatch:
    face_id: str
    camera_id: str
    time_ms: int
    track_id: int | None
    similarity: float
    matched_subject: str | None  # what the job matched at the time, if anything


@dataclass
class SearchResult:
    subject: str
    searched: int = 0
    matches: list[FaceMatch] = field(default_factory=list)

    def groups(self) -> list[list[FaceMatch]]:
        """Matches per (camera, track), each in time order, groups by their first time.
        A face without a track is a group of its own."""
        by_key: dict[tuple, list[FaceMatch]] = {}
        for m in sorted(self.matches, key=lambda m: (m.time_ms, m.face_id)):
            key = (m.camera_id, m.track_id if m.track_id is not None else m.face_id)
            by_key.setdefault(key, []).append(m)
        return sorted(by_key.values(), key=lambda g: (g[0].time_ms, g[0].camera_id))

    def summary(self) -> dict:
        return {"subject": self.subject, "searched": self.searched, "matches": len(self.matches),
                "cameras": len({m.camera_id for m in self.matches})}


def subject_embeddings(config: Config, subject_id: str) -> np.ndarray:
    """The subject's enrolled face embeddings from the watchlist topic, float32 [K, 128]."""
    from camflow.transforms.watchlist import validate_embeddings

    from camflow.services.enrolment import Watchlist
    entries = Watchlist(config.kafka).entries()
    entry = entries.get(f"face:{subject_id}")
    if entry is None:
        if f"plate:{subject_id}" in entries:
            raise SearchError(f"{subject_id!r} is a plate on the watchlist; search works on "
                              "faces (plates are matched live only)")
        raise SearchError(f"no face subject {subject_id!r} on the watchlist "
                          "(see `camflow watchlist list`)")
    if not entry["embeddings"]:
        raise SearchError(f"face subject {subject_id!r} has no enrolled embeddings")
    return validate_embeddings(entry["embeddings"])


def search_store(store, subject_id: str, embeddings: np.ndarray, since_ms: int,
                 threshold: float, progress: bool = False) -> SearchResult:
    """Score every face of ``store`` captured at or after ``since_ms`` against ``embeddings``
    (a face's score: its best inner product with any enrolled photo)."""
    import faiss
    from tqdm import tqdm

    from camflow.transforms.watchlist import DIM

    index = faiss.IndexFlatIP(DIM)
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    result = SearchResult(subject_id)
    total = store.count_face_embeddings(since_ms)
    with tqdm(total=total, unit="face", desc=f"search {subject_id}", file=sys.stderr,
              disable=not progress) as bar:
        for rows in store.face_embeddings_since(since_ms):
            vectors = np.frombuffer(b"".join(bytes(r[5]) for r in rows), dtype="<f4")
            vectors = np.ascontiguousarray(vectors.reshape(len(rows), DIM), dtype=np.float32)
            sims, _ = index.search(vectors, 1)
            for row, sim in zip(rows, sims[:, 0].tolist()):
                if sim >= threshold:
                    face_id, camera_id, time_ms, track_id, matched, _ = row
                    result.matches.append(FaceMatch(face_id, camera_id, int(time_ms),
                                                    None if track_id is None else int(track_id),
                                                    float(sim), matched))
            result.searched += len(rows)
            bar.update(len(rows))
    return result


def search(config: Config, subject_id: str, since_ms: int, threshold: float | None = None,
           store_url: str | None = None, progress: bool = False, now_ms: int | None = None,
           actor: str | None = None) -> SearchResult:
    from camflow.services.store import AnalystStore
    embeddings = subject_embeddings(config, subject_id)
    threshold = config.job.watchlist.face_threshold if threshold is None else threshold
    now_ms = int(datetime.now(timezone.utc).timestamp() * 1000) if now_ms is None else now_ms
    store = AnalystStore.of(config.store, store_url)
    try:
        # Searching the store for a person is itself recorded: who, whom, how far back.
        store.audit_access(actor or getpass.getuser(), "face_search", subject_id,
                           json.dumps({"since_ms": since_ms, "threshold": threshold}))
        return search_store(store, subject_id, embeddings, now_ms - since_ms, threshold, progress)
    finally:
        store.close()


def format_lines(result: SearchResult, sites: dict[str, str] | None = None) -> list[str]:
    """One line per matching face: time, camera (site), track, similarity; grouped by camera
    and track, groups in time order."""
    sites = sites or {}
    lines = []
    for group in result.groups():
        for m in group:
            when = datetime.fromtimestamp(m.time_ms / 1000, timezone.utc)
            track = "-" if m.track_id is None else str(m.track_id)
            note = f"  (matched {m.matched_subject} live)" if m.matched_subject else ""
            lines.append(f"{when:%Y-%m-%d %H:%M:%S}  {m.camera_id:<28} "
                         f"{sites.get(m.camera_id, '') or '':<32} track {track:<6} "
                         f"similarity {m.similarity:.3f}{note}")
    return lines


# ------------------------------------------------------------------ plates

@dataclass
class PlatePassage:
    """One vehicle track whose fused plate read matched: where and when it was seen."""

    first_ms: int
    last_ms: int
    camera_id: str
    track_id: int
    plate: str
    display: str | None
    reads: int
    distance: float  # weighted edit distance to the query (0: the same plate)


def plate_path(store, plate: str, since_ms: int, fuzzy: bool = False,
               max_distance: float = 1.0) -> list[PlatePassage]:
    """Every vehicle track whose fused read is ``plate`` (normalised: ``51F-598.81`` is
    ``51F59881``), across cameras in time order: the vehicle's path. ``fuzzy`` also takes reads
    within ``max_distance`` (one wrong character, or two OCR confusions such as 8/B): a
    camera that misread one character still shows where the vehicle went."""
    from camflow.transforms.plate_text import normalise_text, plate_distance
    query = normalise_text(plate)
    if len(query) < 4:
        raise SearchError(f"--plate {plate!r}: too short to be a plate")
    rows = store.vehicle_plates_since(since_ms, None if fuzzy else query)
    passages = []
    for first_ms, last_ms, camera_id, track_id, text, display, reads, _ in rows:
        distance = 0.0 if text == query else plate_distance(query, text)
        if distance <= (max_distance if fuzzy else 0.0):
            passages.append(PlatePassage(int(first_ms), int(last_ms), camera_id, int(track_id),
                                         text, display, int(reads), distance))
    return sorted(passages, key=lambda p: (p.first_ms, p.camera_id))


def path_rows(plate: str, passages: list[PlatePassage]) -> list[tuple]:
    """A plate's passages as the path figure takes sightings: (label, kind, camera, ms, score)."""
    return [(plate, "plate", p.camera_id, p.first_ms, 1.0) for p in passages]


def format_plate_lines(passages: list[PlatePassage], sites: dict[str, str], zone) -> list[str]:
    lines = []
    for p in passages:
        first = datetime.fromtimestamp(p.first_ms / 1000, zone)
        last = datetime.fromtimestamp(p.last_ms / 1000, zone)
        lines.append(f"{first:%Y-%m-%d %H:%M:%S}-{last:%H:%M:%S}  {p.camera_id:<24} "
                     f"{sites.get(p.camera_id) or '':<28} {p.display or p.plate:<12} "
                     f"track {p.track_id:<5} reads {p.reads:<3}"
                     + (f" distance {p.distance:g}" if p.distance else ""))
    return lines
