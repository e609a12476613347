"""Watchlist management: enrol people (photos) and vehicles (plates), remove, list, export.

The watchlist lives in Kafka: the compacted topic ``watchlist`` holds the current entry per
``kind:id``, and ``watchlist-audit`` keeps every change with who made it and when. A removal is
a record with ``removed=true`` and no embeddings (not a bare tombstone, which the job's byte
deserializer cannot carry): compaction then drops the removed person's embeddings. The job broadcasts ``watchlist`` to every parallel instance, so changes
apply live, without a restart.

The audit topic records who changed what and when, never the face embeddings (biometric data
that must leave with a removal): its records are the entry with ``embeddings`` emptied, kept
``AUDIT_RETENTION_MS`` (a year) rather than forever.

Times: a removal is stamped no earlier than the entry it removes (``time_ms + 1`` when this
host's clock is behind the one that enrolled), so the job's time-ordered watchlist state
cannot keep a removed subject because of clock skew between operators' machines.
"""
from __future__ import annotations

import getpass
import json
import time
import uuid
from pathlib import Path

import cv2
import numpy as np

from camflow.schemas.codec import AvroCodec

from camflow.config import Kafka
from camflow.core.kafka import (DeliveryTracker, ensure_topic, produce_reliably, read_topic,
                    reliable_producer)

CATEGORIES = ("wanted", "suspect", "missing")
# watchlist-audit keeps who/when/what (no embeddings) for a year; set per deployment with
# Watchlist(audit_retention_ms=...) and by the topic's own retention.ms.
AUDIT_RETENTION_MS = 365 * 24 * 3600 * 1000


def audit_record(entry: dict) -> dict:
    """The watchlist-audit copy of a change: the entry without its face embeddings."""
    return {**entry, "embeddings": []}


class EnrolmentError(ValueError):
    """An enrolment photo that cannot be used, with the reason in words."""


def face_embedding(image_path: str | Path) -> list[float]:
    """The one face in a photo as an L2-normalised 128-D embedding; refuses 0 or >1 faces."""
    from camflow.core import perception

    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise EnrolmentError(f"{image_path}: not a readable image")
    faces = perception.face_detector(max_side=1024).detect(image)
    if len(faces) == 0:
        raise EnrolmentError(f"{image_path}: no face found; use a frontal photo where the face "
                             "is at least ~40 px wide")
    if len(faces) > 1:
        raise EnrolmentError(f"{image_path}: {len(faces)} faces found; crop the photo to the one "
                             "person to enrol")
    embedding = perception.face_embedder().embed(image, faces).data["embedding"][0]
    if not np.all(np.isfinite(embedding)):
        raise EnrolmentError(f"{image_path}: the face embedding is not finite")
    return [float(v) for v in embedding]


def who_changes(kafka: Kafka, on_behalf_of: str | None = None) -> str:
    """Who makes a watchlist change: the identity the broker authenticates (the SASL user), else
    the OS user; ``--by`` cannot replace it, only add whom it was done for."""
    identity = kafka.security.username or getpass.getuser()
    if not on_behalf_of or on_behalf_of == identity:
        return identity
    return f"{identity} (for {on_behalf_of})"


class Watchlist:
    def __init__(self, kafka: Kafka, partitions: int = 1,
                 audit_retention_ms: int = AUDIT_RETENTION_MS):
        self.kafka = kafka
        self.topic = kafka.topics.watchlist
        self.audit_topic = kafka.topics.watchlist_audit
        ensure_topic(kafka, self.topic, partitions, {"cleanup.policy": "compact"})
        ensure_topic(kafka, self.audit_topic, partitions,
                     {"retention.ms": str(int(audit_retention_ms))})
        self.codec = AvroCodec("WatchlistEntry", kafka.registry_conf(), subject=f"{self.topic}-value")

    def _publish(self, entry: dict) -> dict:
        key = f"{entry['kind']}:{entry['id']}".encode()
        # The audit record and the change are one Kafka transaction: a consumer reading
        # committed records sees both or neither (the dev broker does not enforce it).
        producer = reliable_producer(self.kafka, **{
            "transactional.id": f"{self.kafka.group_id}-watchlist-{uuid.uuid4().hex[:12]}",
            "transaction.timeout.ms": 300_000})
        tracker = DeliveryTracker()
        value = self.codec.encode(entry)
        audit = self.codec.encode(audit_record(entry))
        producer.init_transactions(30)
        producer.begin_transaction()
        try:
            produce_reliably(producer, self.audit_topic, audit, key, entry["time_ms"], tracker)
            produce_reliably(producer, self.topic, value, key, entry["time_ms"], tracker)
            producer.commit_transaction(60)
        except Exception:
            producer.abort_transaction(30)
            raise
        if tracker.failed or tracker.delivered != 2:
            raise RuntimeError(f"watchlist change not acknowledged by the broker: {tracker.failed}")
        return entry

    def add_face(self, subject_id: str, name: str, category: str, images: list[str],
                 reason: str | None = None, added_by: str | None = None) -> dict:
        if category not in CATEGORIES:
            raise ValueError(f"category must be one of {CATEGORIES}")
        embeddings = [face_embedding(path) for path in images]
        return self._publish({"id": subject_id, "kind": "face", "name": name, "category": category,
                              "embeddings": embeddings, "plate": None, "plate_display": None,
                              "reason": reason, "added_by": who_changes(self.kafka, added_by),
                              "time_ms": int(time.time() * 1000), "removed": False})

    def add_plate(self, plate: str, reason: str | None = None, category: str = "wanted",
                  name: str | None = None, added_by: str | None = None) -> dict:
        from camflow.transforms.plates import parse_plate
        parsed = parse_plate(plate)
        text = parsed.text if parsed is not None else "".join(c for c in plate.upper() if c.isalnum())
        if not text:
            raise ValueError(f"{plate!r} holds no plate characters")
        return self._publish({"id": text, "kind": "plate", "name": name, "category": category,
                              "embeddings": [], "plate": text,
                              "plate_display": parsed.display if parsed is not None else plate,
                              "reason": reason, "added_by": who_changes(self.kafka, added_by),
                              "time_ms": int(time.time() * 1000), "removed": False})

    def remove(self, subject_id: str, kind: str = "face", added_by: str | None = None) -> dict:
        if kind == "plate":  # accept the printed form too: "51F-598.81" -> "51F59881"
            from camflow.transforms.plates import parse_plate
            parsed = parse_plate(subject_id)
            subject_id = parsed.text if parsed is not None else subject_id
        current = self.entries().get(f"{kind}:{subject_id}")
        if current is None:
            raise KeyError(f"no {kind} entry {subject_id!r} on the watchlist")
        return self._publish(removal_of(current, who_changes(self.kafka, added_by), int(time.time() * 1000)))

    def entries(self) -> dict[str, dict]:
        """The current watchlist, folded from the compacted topic (latest record per key)."""
        state: dict[str, dict] = {}
        for msg in read_topic(self.kafka, self.topic, idle_timeout_s=2.0):
            key = msg.key().decode()
            entry = self.codec.decode(msg.value()) if msg.value() is not None else None
            if entry is None or entry["removed"]:
                state.pop(key, None)
            else:
                state[key] = entry
        return state

    def audit(self) -> list[dict]:
        return [self.codec.decode(m.value()) for m in read_topic(self.kafka, self.audit_topic,
                                                                 idle_timeout_s=2.0)]


def removal_of(current: dict, who: str, now_ms: int) -> dict:
    """The removal record of ``current``: no embeddings, stamped after the entry it removes
    even when this host's clock is behind the enrolling one's."""
    return {**current, "embeddings": [], "added_by": who,
            "time_ms": max(int(now_ms), int(current.get("time_ms") or 0) + 1), "removed": True}


def export_rows(entries: dict[str, dict]) -> list[str]:
    """JSON lines without the embeddings (personal data stays in Kafka and the job)."""
    return [json.dumps({k: v for k, v in e.items() if k != "embeddings"} |
                       {"photos": len(e["embeddings"])}, ensure_ascii=False)
            for e in sorted(entries.values(), key=lambda e: (e["kind"], e["id"]))]
