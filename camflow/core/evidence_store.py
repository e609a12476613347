"""The evidence store: each alert's snapshot (JPEG) and clip (H.264 MP4), named by alert id.

It is the frame store's backends (``file://`` or ``s3://``, camflow/core/frame_store.py) at its
own URL, with its own retention (``evidence.retention_days``). Objects are keyed
``<camera>/<alert_id>.jpg`` and ``<camera>/<alert_id>.mp4``: an alert id is a hash of what the
alert is about, so the replay of an alert after a restart rewrites the same object instead of
adding one (writes are idempotent by alert id).

Writers: the job's operators (snapshots, when they raise an alert) and the sink (clips, once
the frames after the alert are in the frame store). Readers: the console and the report (which
serve them to browsers), and ``camflow notify`` (which links them).
"""
from __future__ import annotations

import json
import logging
import time

from camflow.core.frame_store import FileFrameStore, configured_store, frame_key, open_frame_store
from camflow.transforms.evidence import alert_marks, snapshot_jpeg, window_marks
from camflow.transforms.frames import BadFrame, decode_jpeg

log = logging.getLogger(__name__)
SNAPSHOT, CLIP = "jpg", "mp4"
CONTENT_TYPES = {SNAPSHOT: "image/jpeg", CLIP: "video/mp4"}
# Nothing written here comes near this; a read is always bounded.
MAX_OBJECT_BYTES = 64 * 1024 * 1024


def evidence_key(camera_id: str, alert_id: str, kind: str) -> str:
    """``<camera>/<alert_id>.<kind>``, the camera part made safe as in the frame store."""
    if kind not in CONTENT_TYPES:
        raise ValueError(f"evidence kind must be one of {sorted(CONTENT_TYPES)}, got {kind!r}")
    if not alert_id or not all(c.isalnum() or c in "-_" for c in alert_id):
        raise ValueError(f"alert id {alert_id!r} cannot name an evidence object")
    folder = frame_key(camera_id, 0, 0).split("/", 1)[0]
    return f"{folder}/{alert_id}.{kind}"


class EvidenceStore:
    """``put(alert, kind, data) -> ref``, ``get(ref) -> bytes | None``, ``prune(days)``."""

    def __init__(self, url: str, endpoint_url: str | None = None):
        self.backend = open_frame_store(url, endpoint_url)
        self.backend.max_bytes = MAX_OBJECT_BYTES

    @property
    def url(self) -> str:
        return self.backend.url

    def put(self, alert: dict, kind: str, data: bytes) -> str:
        """Writes (or rewrites) ``alert``'s snapshot or clip; returns its reference."""
        key = evidence_key(alert["camera_id"], alert["alert_id"], kind)
        return self.backend.put_object(key, data, CONTENT_TYPES[kind])

    def get(self, ref: str) -> bytes | None:
        """The object's bytes, None when it is gone (expired). A reference outside this store
        raises ``FrameRefError`` (a hostile record cannot make a reader open other files)."""
        return self.backend.get(ref)

    def prune(self, older_than_days: float, now_s: float | None = None) -> int:
        """File stores: deletes snapshots and clips written more than ``older_than_days`` ago
        (an S3 store's lifecycle rule does this there); returns how many."""
        if not isinstance(self.backend, FileFrameStore) or not self.backend.root.is_dir():
            return 0
        cutoff = (time.time() if now_s is None else now_s) - older_than_days * 86_400
        removed = 0
        for kind in CONTENT_TYPES:
            for path in self.backend.root.glob(f"*/*.{kind}"):
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink(missing_ok=True)
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed


def with_frame_ms(evidence, frame_ms: int) -> str:
    """``evidence`` (the alert's JSON text) with ``frame_ms`` added, in ``alert_record``'s form."""
    try:
        facts = json.loads(evidence) if evidence else {}
    except ValueError:
        facts = {"text": evidence}
    if not isinstance(facts, dict):
        facts = {"value": facts}
    facts["frame_ms"] = int(frame_ms)
    return json.dumps(facts, sort_keys=True, separators=(",", ":"))


def configured_evidence(config) -> EvidenceStore | None:
    """The deployment's evidence store (``evidence`` in the config), or None: no snapshots."""
    if config.evidence is None:
        return None
    return EvidenceStore(config.evidence.url, config.evidence.endpoint_url)



class AlertSnapshots:
    """Sets ``evidence_ref`` on the alerts an operator raises: draws the alert on its frame
    (``transforms/evidence.py``) and writes the JPEG here, named by alert id.

    A snapshot that cannot be written (store unreachable, frame expired) is logged and the
    alert goes out without it: an alert must never wait on, or be lost for, its picture. A
    replay after a restart rewrites the same object (same alert id), so nothing piles up.
    """

    def __init__(self, config, store: EvidenceStore | None = None):
        self.settings = config.evidence
        self.store = store if store is not None else configured_evidence(config)
        self.limits = config.job.limits
        self.frames = configured_store(config)  # where window alerts' frames are read back
        self.written = 0
        self.failed = 0

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def write(self, alert: dict, image, marks) -> None:
        """Draw ``marks`` on ``image`` and store it as ``alert``'s snapshot."""
        try:
            jpeg = snapshot_jpeg(image, marks, self.settings.max_snapshot_bytes,
                                 self.settings.max_snapshot_width)
            alert["evidence_ref"] = self.store.put(alert, SNAPSHOT, jpeg)
            self.written += 1
        except Exception as exc:  # noqa: BLE001 -- the alert goes out without its picture
            self.failed += 1
            log.warning("no snapshot for alert %s (%s): %s", alert.get("alert_id"),
                        alert.get("type"), exc)

    def frame_alerts(self, alerts: list[dict], image, detections, scene=None) -> list[dict]:
        """Alerts raised on a decoded frame (scene rules): each with its subject boxed and
        its zone or line (from the camera's ``scene``) outlined."""
        if not self.enabled or not alerts:
            return alerts
        zones = {z.id: z.polygon for z in scene.zones} if scene is not None else None
        lines = {ln.id: ln.points for ln in scene.lines} if scene is not None else None
        for alert in alerts:
            if alert.get("type") == "camera_offline":
                continue  # a silent camera has no frame to show
            self.write(alert, image, alert_marks(alert, detections, zones, lines))
        return alerts

    def window_alerts(self, alerts: list[dict], window: dict) -> list[dict]:
        """Alerts about a window: drawn on its busiest frame, read back from the frame store
        (without a frame store there is no frame left to show)."""
        frame = window.get("busiest_frame")
        if not (self.enabled and alerts and frame and self.frames is not None):
            return alerts
        try:
            jpeg = self.frames.get(frame["jpeg_ref"])
            image = decode_jpeg(jpeg, self.limits) if jpeg else None
        except (BadFrame, ValueError, OSError) as exc:
            log.warning("window alerts of %s: busiest frame unreadable: %s", window.get("camera_id"), exc)
            image = None
        if image is None:
            self.failed += len(alerts)
            return alerts
        for alert in alerts:
            self.write(alert, image, window_marks(alert, frame))
            if alert.get("evidence_ref"):
                # When the picture was taken: the moment a clip of this alert is cut around
                # (its time_ms is the window's end, possibly after the last frame).
                alert["evidence"] = with_frame_ms(alert.get("evidence"), frame["capture_ms"])
        return alerts
