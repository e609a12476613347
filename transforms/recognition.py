"""Recognition once per track: faces and plates are read for new or not yet recognised tracks,
a few times each, not on every frame (recognition costs 5-10x the detector).

State (per camera, plain dicts so it checkpoints): for each track id, how often faces/plates were
looked for, when last, and how many good readings were collected. A track is finished once it
has ``readings_per_track`` good readings; it is tried at most ``max_attempts`` times, at least
``retry_ms`` apart in event time. Objects not yet confirmed by the tracker (id -1) may be
someone passing through quickly: they are tried too, but as a group, at most once per
``retry_ms`` per camera (they have no identity to count attempts against).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .detections import MOTOR_VEHICLE_CLASSES, Detections, FrameAnalysis
from .plate_vote import PlateVote



class RecognitionPolicy(BaseModel):
    """Faces and plates are read once per track (a few good readings), not on every frame."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    faces: bool = Field(True, description="look for faces on person tracks")
    plates: bool = Field(True, description="read plates on vehicle tracks")
    max_attempts: int = Field(6, ge=1, description="tries per track before giving up")
    retry_ms: int = Field(400, ge=0, description="event time between tries on one track")
    readings_per_track: int = Field(3, ge=1, description="good readings that finish a track")
    min_person_height_px: int = Field(96, ge=8, description=(
        "faces are looked for only on people at least this tall: a shorter person's face is a "
        "few pixels (6-11 px on vtest.avi's 60-150 px people), too small to recognise"))
    min_face_px: int = Field(24, ge=8, description=(
        "faces smaller than this (box height) are not embedded: the embedding would be noise "
        "and costs ~80 ms per face"))
    min_vehicle_width_px: int = Field(96, ge=8, description=(
        "plates are looked for only on vehicles at least this wide: a plate is a fifth to a "
        "third of a vehicle's width and unreadable below ~20 px (vtest.avi's 81 px van cost "
        "~25 % of the job's time in fruitless OCR before this was raised from 48)"))
    forget_after_ms: int = Field(60_000, ge=0, description=(
        "a track unseen this long is dropped from the recognition state (keeps it bounded)"))


def _empty_state() -> dict[str, Any]:
    return {"faces": {}, "plates": {}}


def due_rows(book: dict[str, dict], detections: Detections, candidates: np.ndarray,
             policy: RecognitionPolicy, now_ms: int) -> np.ndarray:
    """Rows among ``candidates`` whose track still needs (and may now get) an attempt."""
    rows = []
    untracked = book.get("untracked")
    untracked_due = untracked is None or now_ms - untracked["last_ms"] >= policy.retry_ms
    for i in np.flatnonzero(candidates):
        track = int(detections.tracker_id[i])
        if track < 0:
            if untracked_due:
                rows.append(i)
            continue
        entry = book.get(str(track))
        if entry is not None and (entry["readings"] >= policy.readings_per_track
                                  or entry["attempts"] >= policy.max_attempts
                                  or now_ms - entry["last_ms"] < policy.retry_ms):
            continue
        rows.append(i)
    return np.asarray(rows, np.int64)


def _note(book: dict[str, dict], track_ids: np.ndarray, found: set[int], now_ms: int) -> None:
    if any(t < 0 for t in track_ids):
        book["untracked"] = {"attempts": 0, "readings": 0, "last_ms": now_ms}
    for track in (int(t) for t in track_ids if t >= 0):
        entry = book.setdefault(str(track), {"attempts": 0, "readings": 0, "last_ms": now_ms})
        entry["attempts"] += 1
        entry["last_ms"] = now_ms
        entry["readings"] += track in found


def _forget(book: dict[str, dict], now_ms: int, policy: RecognitionPolicy) -> dict[str, dict]:
    return {k: v for k, v in book.items() if now_ms - v["last_ms"] <= policy.forget_after_ms}


def fuse_per_track(votes: dict[str, dict], plates: Detections, now_ms: int) -> dict[str, dict]:
    """Each read of a vehicle track joins the track's vote; the frame's plates then carry the
    track's fused read (``plate_text``, ``plate_display``: what the watchlist matches), with the
    frame's own read kept as ``plate_read``, the number of reads fused as ``plate_reads`` and
    the time of the track's first read as ``plate_first_ms`` (one plate row per track in the
    store is keyed by it). ``votes``: track -> {"first_ms", "reads"} (plain data)."""
    if not len(plates):
        return votes
    texts = plates.data["plate_text"]
    plates.data["plate_read"] = np.array(list(texts), dtype=object)
    fused_text = list(texts)
    fused_display = list(plates.data.get("plate_display", texts))
    reads, first = np.ones(len(plates), np.int32), np.full(len(plates), now_ms, np.int64)
    confs = plates.data.get("char_conf", [""] * len(plates))
    for i, track in enumerate(int(t) for t in plates.tracker_id):
        if track < 0:
            continue
        entry = votes.get(str(track)) or {"first_ms": int(now_ms), "reads": []}
        vote = PlateVote(entry["reads"])
        vote.add((str(texts[i]), str(confs[i]), float(plates.confidence[i])))
        fused = vote.result()
        votes[str(track)] = {"first_ms": entry["first_ms"], "reads": vote.state}
        if fused is not None:
            fused_text[i], fused_display[i] = fused.text, fused.display
        reads[i], first[i] = len(vote), entry["first_ms"]
    plates.data["plate_text"] = np.array(fused_text, dtype=object)
    plates.data["plate_display"] = np.array(fused_display, dtype=object)
    plates.data["plate_reads"], plates.data["plate_first_ms"] = reads, first
    return votes


def owner_rows(inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """For each inner box (a face, a plate) the row of the outer box (person, vehicle) that
    contains most of it, or -1."""
    if len(inner) == 0 or len(outer) == 0:
        return np.full(len(inner), -1, np.int64)
    x1 = np.maximum(inner[:, None, 0], outer[None, :, 0])
    y1 = np.maximum(inner[:, None, 1], outer[None, :, 1])
    x2 = np.minimum(inner[:, None, 2], outer[None, :, 2])
    y2 = np.minimum(inner[:, None, 3], outer[None, :, 3])
    overlap = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = np.clip((inner[:, 2] - inner[:, 0]) * (inner[:, 3] - inner[:, 1]), 1e-6, None)
    share = overlap / area[:, None]
    best = share.argmax(1)
    return np.where(share[np.arange(len(inner)), best] >= 0.5, best, -1)


class TrackRecognition:
    """Faces (detector + embedder) on person tracks and plates on vehicle tracks, per policy.

    ``find_faces(image, persons) -> Detections`` with ``data["embedding"]``;
    ``read_plates(image, vehicles) -> Detections`` with ``data["plate_text"]`` and
    ``data["vehicle_index"]``. Either may be None (that recognition is off).
    """

    def __init__(self, find_faces: Callable | None, read_plates: Callable | None,
                 policy: RecognitionPolicy = RecognitionPolicy()):
        self.find_faces = find_faces
        self.read_plates = read_plates
        self.policy = policy

    def __call__(self, state: dict | None, analysis: FrameAnalysis,
                 policy: RecognitionPolicy | None = None) -> dict:
        """Adds ``analysis.faces`` / ``analysis.plates`` (tracker_id = the owner's track);
        returns the new state. ``analysis.image`` must be decoded. ``policy``: this camera's
        (default: the one given at construction)."""
        state = state or _empty_state()
        policy = policy or self.policy
        now, det = analysis.capture_ms, analysis.detections
        names = det.class_name
        height = det.xyxy[:, 3] - det.xyxy[:, 1]
        width = det.xyxy[:, 2] - det.xyxy[:, 0]
        faces_book = _forget(state["faces"], now, policy)
        plates_book = _forget(state["plates"], now, policy)
        votes = dict(state.get("plate_votes") or {})  # older states have none
        if self.find_faces is not None and policy.faces:
            rows = due_rows(faces_book, det, (names == "person") & (height >= policy.min_person_height_px),
                            policy, now)
            if len(rows):
                persons = det[rows]
                faces = self.find_faces(analysis.image, persons)
                owner = owner_rows(faces.xyxy, persons.xyxy)
                faces.tracker_id = np.where(owner >= 0, persons.tracker_id[owner], -1)
                analysis.faces = faces
                _note(faces_book, persons.tracker_id, set(faces.tracker_id.tolist()), now)
        if self.read_plates is not None and policy.plates:
            vehicles_mask = np.isin(names, list(MOTOR_VEHICLE_CLASSES)) & (width >= policy.min_vehicle_width_px)
            rows = due_rows(plates_book, det, vehicles_mask, policy, now)
            if len(rows):
                vehicles = det[rows]
                plates = self.read_plates(analysis.image, vehicles)
                owner = plates.data.get("vehicle_index", np.full(len(plates), -1))
                plates.tracker_id = np.where(owner >= 0, vehicles.tracker_id[owner], -1)
                votes = fuse_per_track(votes, plates, now)
                analysis.plates = plates
                _note(plates_book, vehicles.tracker_id, set(plates.tracker_id.tolist()), now)
        return {"faces": faces_book, "plates": plates_book,
                "plate_votes": {t: v for t, v in votes.items() if t in plates_book}}
