"""camflow sink: Kafka -> DuckDB and PostgreSQL, idempotent, nothing dropped."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from camflow.config import Config
from camflow.core.kafka import DeliveryTracker, produce_reliably, reliable_producer
from camflow.schemas.codec import AvroCodec
from camflow.services.sink import run_sink
from camflow.services.store import AnalystStore

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("CAMFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/camflow")

T0 = 1_764_000_000_000
ALERT = {"alert_id": "a1", "type": "crowd_limit", "severity": "warning", "camera_id": "walkway",
         "time_ms": T0 + 60_000, "subject": "person", "score": 1.3, "track_id": None,
         "evidence": '{"persons": 8}', "evidence_jpeg": None, "evidence_ref": None}
AGGREGATE = {"camera_id": "walkway", "window_start_ms": T0, "window_end_ms": T0 + 60_000,
             "frames": 60, "counts_by_class": {"person": 8, "car": 1},
             "mean_by_class": {"person": 5.5, "car": 1.0}, "unique_tracks": 14,
             "unique_tracks_by_class": {"person": 13, "car": 1}, "anomaly_score": None}
ANALYSIS = {"camera_id": "walkway", "capture_ms": T0 + 500, "sequence": 5, "width": 768,
            "height": 576, "model_versions": {"centernet-coco": "abc"}, "processed_ms": T0 + 900,
            "detections": [{"class_name": "person", "score": 0.8, "x1": 1, "y1": 2, "x2": 30,
                            "y2": 90, "track_id": 4, "attributes": {}}]}


@pytest.fixture
def loaded_topics(kafka_bootstrap, make_topics):
    suffix = uuid.uuid4().hex[:8]
    config = Config.model_validate({"kafka": {
        "bootstrap_servers": kafka_bootstrap, "group_id": f"sink-{suffix}",
        "topics": {"alerts": f"alerts-{suffix}", "aggregates": f"aggregates-{suffix}",
                   "analyses": f"analyses-{suffix}", "sightings": f"sightings-{suffix}",
                   "watchlist_audit": f"audit-{suffix}", "face_embeddings": f"faces-{suffix}",
                   "appearances": f"appearances-{suffix}"}}})
    t = config.kafka.topics
    make_topics({t.alerts: 1, t.aggregates: 1, t.analyses: 1})
    producer, tracker = reliable_producer(config.kafka), DeliveryTracker()
    for _ in range(2):  # every record twice: a redelivery after a job failover
        produce_reliably(producer, t.alerts, AvroCodec("Alert").encode(ALERT), None, None, tracker)
        produce_reliably(producer, t.aggregates, AvroCodec("Aggregate").encode(AGGREGATE), None, None, tracker)
        produce_reliably(producer, t.analyses, AvroCodec("FrameAnalysis").encode(ANALYSIS), None, None, tracker)
    produce_reliably(producer, t.alerts, b"not an alert", None, None, tracker)
    producer.flush(30)
    assert tracker.delivered == 7
    return config


@pytest.fixture(params=["duckdb", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path}/analyst.duckdb"
    pytest.importorskip("psycopg")
    import psycopg
    try:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            schema = f"t_{uuid.uuid4().hex[:8]}"
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL not reachable at {PG_URL} (make test runs infra/postgres.sh): {exc}")
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


def test_sink_writes_each_record_once_and_keeps_rejects(loaded_topics, store_url):
    report = run_sink(loaded_topics, store_url=store_url, idle_exit_s=4, max_seconds=60)
    assert report.rejected == 1
    assert sum(report.written.values()) == 6
    store = AnalystStore(store_url)
    try:
        assert store.counts() == {"alerts": 1, "aggregates": 1, "frame_analyses": 1, "sightings": 0,
                                  "sink_rejects": 1}
        assert store.query("SELECT deliveries, severity, score FROM alerts") == [(2, "warning", 1.3)]
        assert sorted(store.query("SELECT class_name, max_in_frame, unique_tracks FROM aggregate_counts")) == [
            ("car", 1, 1), ("person", 8, 13)]
        assert store.query("SELECT persons, deliveries FROM frame_analyses") == [(1, 2)]
        assert store.query("SELECT reason, payload FROM sink_rejects")[0][0] == "unknown_encoding"
        # The analysts' example queries run on this store.
        text = "\n".join(line for line in (REPO / "infra/sql/examples.sql").read_text().splitlines()
                         if not line.lstrip().startswith("--"))
        examples = [s for s in text.split(";") if "SELECT" in s]
        results = [store.query(statement) for statement in examples]
        busiest, per_day = results[0], results[1]
        # one camera, its tumbling windows only; the honest counts are tests/unit/test_examples_sql.py's
        assert busiest[0][0] == "walkway"
        assert per_day[0][1:] == ("crowd_limit", "warning", 1)
    finally:
        store.close()
    # A second sink run in the same group finds nothing new: offsets were committed.
    again = run_sink(loaded_topics, store_url=store_url, idle_exit_s=3, max_seconds=30)
    assert sum(again.written.values()) == 0 and again.rejected == 0
