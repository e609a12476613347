"""Every kind of personal data in the analyst store expires (``store.retention``), and searches
and evidence views are recorded (``access_audit``)."""
from __future__ import annotations

import time

import numpy as np

from camflow.config import Config
from camflow.services.store import AnalystStore

DAY = 86_400_000
NOW = 1_764_000_000_000


def alert(alert_id: str, time_ms: int, jpeg: bytes | None = None) -> dict:
    return {"alert_id": alert_id, "type": "watchlist_face", "severity": "critical",
            "camera_id": "quay", "time_ms": time_ms, "subject": "W-1", "score": 0.95,
            "track_id": 3, "evidence": "{}", "evidence_jpeg": jpeg, "evidence_ref": None}


def test_each_kind_of_personal_data_is_deleted_after_its_retention():
    store = AnalystStore("duckdb:///:memory:")
    retention = Config.model_validate({"store": {"retention": {
        "alerts_days": 100, "evidence_days": 10, "sightings_days": 50,
        "frame_analyses_days": 5, "matched_embeddings_days": 60}}}).store.retention
    store.upsert_alert(alert("old", NOW - 200 * DAY, b"\xff\xd8old"))
    store.upsert_alert(alert("middle", NOW - 20 * DAY, b"\xff\xd8mid"))
    store.upsert_alert(alert("new", NOW - 1 * DAY, b"\xff\xd8new"))
    for sid, t in (("s-old", NOW - 51 * DAY), ("s-new", NOW - 49 * DAY)):
        store.upsert_sighting({"sighting_id": sid, "subject_id": "W-1", "kind": "face",
                               "camera_id": "quay", "time_ms": t, "score": 0.9, "track_id": 3,
                               "alert_id": "new", "plate": None})
    for seq, t in ((1, NOW - 6 * DAY), (2, NOW - 4 * DAY)):
        store.upsert_analysis({"camera_id": "quay", "sequence": seq, "capture_ms": t,
                               "processed_ms": t, "detections": [], "model_versions": {},
                               "width": 1, "height": 1, "sampler_id": "t", "jpeg_ref": None,
                               "crossings": []})
    embedding = np.ones(128, np.float32) / np.sqrt(128)
    for face_id, t, matched in (("m-old", NOW - 61 * DAY, "W-1"), ("m-new", NOW - 59 * DAY, "W-1"),
                                ("u-old", NOW - 8 * DAY, None)):
        store.upsert_face_embedding({"face_id": face_id, "camera_id": "quay", "time_ms": t,
                                     "sequence": 1, "track_id": 3, "x1": 0, "y1": 0, "x2": 1,
                                     "y2": 1, "embedding": embedding.tolist(),
                                     "matched_subject": matched})
    store.reject("alerts", 0, 7, "store_refused", b"raw")
    store.commit()

    deleted = store.delete_expired(retention, unmatched_embeddings_days=7, now_ms=NOW)

    assert {r[0] for r in store.query("SELECT alert_id FROM alerts")} == {"middle", "new"}
    assert {r[0] for r in store.query("SELECT alert_id FROM alert_evidence")} == {"new"}
    assert {r[0] for r in store.query("SELECT sighting_id FROM sightings")} == {"s-new"}
    assert {r[0] for r in store.query("SELECT sequence FROM frame_analyses")} == {2}
    assert {r[0] for r in store.query("SELECT face_id FROM face_embeddings")} == {"m-new"}
    assert store.query("SELECT COUNT(*) FROM sink_rejects")[0][0] == 1  # kept 7 days
    assert deleted["alerts"] == 1 and deleted["evidence"] == 2 and deleted["matched_embeddings"] == 1
    # a rejected record is stamped when it is rejected (the clock), and kept 7 days from then
    later = int(time.time() * 1000) + 8 * DAY
    assert store.delete_expired(retention, 7, now_ms=later)["sink_rejects"] == 1


def test_searches_and_views_are_recorded():
    store = AnalystStore("duckdb:///:memory:")
    store.audit_access("operator-1", "evidence_view", "alert-9", "console")
    store.audit_access("analyst-2", "face_search", "W-1", '{"since_ms": 604800000}')
    log = store.access_log()
    assert [(actor, action, target) for _, actor, action, target, _ in log] == [
        ("operator-1", "evidence_view", "alert-9"), ("analyst-2", "face_search", "W-1")]
