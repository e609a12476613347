"""Alert rules over window results, and the deterministic alert id they share.

An alert's id is a hash of what the alert is about (type, camera, subject, time bucket), never
of when or where it was computed: after a failover Flink replays from the last checkpoint and
rules fire again, and the sink upserts by id, so a replayed alert overwrites itself instead of
paging someone twice.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

INFO = "info"
WARNING = "warning"
CRITICAL = "critical"
SEVERITIES = (INFO, WARNING, CRITICAL)


def alert_id(alert_type: str, camera_id: str, subject: str, time_bucket_ms: int) -> str:
    """32 hex characters (128 bits of BLAKE2b) identifying one alert.

    The fields are hashed as a JSON list so no choice of separator can make two different
    tuples collide (("a|b", "c") vs ("a", "b|c")).
    """
    key = json.dumps([alert_type, camera_id, subject, int(time_bucket_ms)], ensure_ascii=False)
    return hashlib.blake2b(key.encode("utf-8"), digest_size=16).hexdigest()


def time_bucket(time_ms: int, bucket_ms: int) -> int:
    """Start of the ``bucket_ms``-long bucket holding ``time_ms`` (epoch aligned)."""
    if bucket_ms <= 0:
        raise ValueError(f"bucket_ms must be positive, got {bucket_ms}")
    return int(time_ms) - int(time_ms) % int(bucket_ms)


def alert_record(alert_type: str, severity: str, camera_id: str, time_ms: int, subject: str,
                 score: float, *, id_key: str | None = None, bucket_ms: int,
                 track_id: int | None = None, evidence: Mapping[str, Any] | str,
                 evidence_jpeg: bytes | None = None) -> dict[str, Any]:
    """The one builder of ``Alert`` records (schemas/alert.avsc), for every rule.

    ``id_key`` is what the alert is about inside its camera and time bucket (default: the
    subject); the id hashes it with the type, camera and ``bucket_ms``, so a replay rebuilds
    the same id. ``evidence`` is serialised with sorted keys: the same facts always give the
    same string.
    """
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    if not isinstance(evidence, str):
        evidence = json.dumps(evidence, sort_keys=True, separators=(",", ":"))
    return {
        "alert_id": alert_id(alert_type, camera_id, subject if id_key is None else id_key, bucket_ms),
        "type": alert_type,
        "severity": severity,
        "camera_id": camera_id,
        "time_ms": int(time_ms),
        "subject": subject,
        "score": float(score),
        "track_id": None if track_id is None else int(track_id),
        "evidence": evidence,
        "evidence_jpeg": evidence_jpeg,
        "evidence_ref": None,
    }


class CrowdLimitRule:
    """Alert when more people than a camera's ``crowd_limit`` appear in a single frame.

    Input: an ``Aggregate`` dict from ``aggregate.WindowCounts.result``; ``counts_by_class``
    holds the most objects of each class seen in one frame of the window. ``crowd_limits``
    maps camera id to limit; cameras not in it use ``default_limit``, and never alert when
    that is None.

    score = persons / limit, so any alert has score > 1. Severity grows with the overshoot:
    critical from ``critical_ratio``, warning from ``warning_ratio``, info below that.

    ``dedupe_bucket_ms``: the alert's time bucket. None uses the window end, one alert per
    window, right for tumbling windows. With sliding windows, several overlapping windows see
    the same crowd; a bucket (e.g. 5 minutes) gives all of them the same alert id, so the
    upserting sink keeps one alert per bucket.
    """

    alert_type = "crowd_limit"
    subject = "person"

    def __init__(
        self,
        crowd_limits: Mapping[str, int],
        default_limit: int | None = None,
        warning_ratio: float = 1.2,
        critical_ratio: float = 1.5,
        dedupe_bucket_ms: int | None = None,
    ) -> None:
        for camera_id, limit in crowd_limits.items():
            if limit <= 0:
                raise ValueError(f"crowd_limit for {camera_id!r} must be positive, got {limit}")
        if default_limit is not None and default_limit <= 0:
            raise ValueError(f"default_limit must be positive, got {default_limit}")
        if not 1.0 <= warning_ratio <= critical_ratio:
            raise ValueError("need 1 <= warning_ratio <= critical_ratio")
        if dedupe_bucket_ms is not None and dedupe_bucket_ms <= 0:
            raise ValueError("dedupe_bucket_ms must be positive")
        self.crowd_limits = dict(crowd_limits)
        self.default_limit = default_limit
        self.warning_ratio = warning_ratio
        self.critical_ratio = critical_ratio
        self.dedupe_bucket_ms = dedupe_bucket_ms

    def severity(self, score: float) -> str:
        if score >= self.critical_ratio:
            return CRITICAL
        if score >= self.warning_ratio:
            return WARNING
        return INFO

    def evaluate(self, window: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Zero or one alert for one window result."""
        camera_id = window["camera_id"]
        limit = self.crowd_limits.get(camera_id, self.default_limit)
        if limit is None:
            return []
        persons = int(window.get("counts_by_class", {}).get(self.subject, 0))
        if persons <= limit:
            return []
        window_end_ms = int(window["window_end_ms"])
        bucket = (
            window_end_ms
            if self.dedupe_bucket_ms is None
            else time_bucket(window_end_ms, self.dedupe_bucket_ms)
        )
        score = persons / limit
        evidence = {
            "window_start_ms": int(window["window_start_ms"]),
            "window_end_ms": window_end_ms,
            "frames": int(window.get("frames", 0)),
            "crowd_limit": limit,
            "max_persons_in_frame": persons,
            "counts_by_class": dict(window.get("counts_by_class", {})),
            "mean_by_class": dict(window.get("mean_by_class", {})),
        }
        # A window alert is about a count, not one track.
        return [alert_record(self.alert_type, self.severity(score), camera_id, window_end_ms,
                             self.subject, score, bucket_ms=bucket, evidence=evidence)]
