"""Prometheus metrics of `camflow ingest` and `camflow sink`, scraped over HTTP while the real
commands run against the real broker (and, for ingest, a real video)."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from camflow.config import Config
from camflow.core.kafka import DeliveryTracker, produce_reliably, reliable_producer
from camflow.schemas.codec import AvroCodec

pytestmark = pytest.mark.integration

ALERT = {"alert_id": "m1", "type": "crowd_limit", "severity": "warning", "camera_id": "walkway",
         "time_ms": 1_764_000_060_000, "subject": "person", "score": 1.3, "track_id": None,
         "evidence": '{"persons": 8}', "evidence_jpeg": None, "evidence_ref": None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple, float] | None:
    """``(sample name, (label, value)...) -> value`` from ``/metrics``; None while it does not
    answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    return {(s.name, *sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def camflow(*args: str) -> subprocess.Popen:
    from camflow.jobs.environment import child_env
    return subprocess.Popen([sys.executable, "-m", "camflow.commands", *args], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def write_config(tmp_path, kafka_bootstrap, topics: dict) -> tuple[str, Config]:
    data = {"kafka": {"bootstrap_servers": kafka_bootstrap,
                      "group_id": f"metrics-{uuid.uuid4().hex[:8]}", "topics": topics}}
    path = tmp_path / "camflow.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path), Config.model_validate(data)


def test_ingest_serves_sampler_metrics_while_it_runs(vtest_path, kafka_bootstrap, make_topics,
                                                     unique_topic, tmp_path):
    path, config = write_config(tmp_path, kafka_bootstrap, {"frames": unique_topic("frames")})
    make_topics({config.kafka.topics.frames: 1})
    port = free_port()
    # --realtime: 12 frames at 2 fps take about 6 s, long enough to be scraped meanwhile
    process = camflow("ingest", "--camera", "walkway", "--source", str(vtest_path), "--fps", "2",
                      "--max-frames", "12", "--max-width", "320", "--realtime",
                      "--metrics-port", str(port), "--config", path)
    seen = {}
    while process.poll() is None:
        seen = scrape(port) or seen
        time.sleep(0.3)
    out, err = process.communicate()
    assert process.returncode == 0, err
    assert '"frames": 12' in out
    camera = ("camera", "walkway")
    assert 1 <= seen[("camflow_sampler_frames_sampled_total", camera)] <= 12
    assert seen[("camflow_sampler_frames_published_total", camera)] >= 1
    assert seen[("camflow_sampler_frames_acknowledged_total", camera)] >= 1
    assert seen[("camflow_sampler_publish_latency_seconds_count", camera)] >= 1
    assert seen[("camflow_sampler_producer_restarts_total", camera)] == 0
    # no progress bar without a terminal (the line naming the config read is not one)
    bars = [line for line in err.splitlines() if not line.startswith("camflow: config ")]
    assert not any("ingest" in line or "frame/s" in line for line in bars), bars


def test_sink_serves_consumed_written_rejected_and_batch_metrics(kafka_bootstrap, make_topics,
                                                                 unique_topic, tmp_path):
    names = ("alerts", "aggregates", "analyses", "sightings", "watchlist_audit", "face_embeddings",
             "appearances")
    path, config = write_config(tmp_path, kafka_bootstrap, {n: unique_topic(n) for n in names})
    alerts = config.kafka.topics.alerts
    make_topics({alerts: 1})
    producer, tracker = reliable_producer(config.kafka), DeliveryTracker()
    for _ in range(2):  # the same alert twice (a redelivery): two records, one row
        produce_reliably(producer, alerts, AvroCodec("Alert").encode(ALERT), None, None, tracker)
    produce_reliably(producer, alerts, b"not an alert", None, None, tracker)
    producer.flush(30)
    assert tracker.delivered == 3
    port = free_port()
    process = camflow("sink", "--store", f"duckdb:///{tmp_path}/analyst.duckdb",
                      "--idle-exit", "60", "--metrics-port", str(port), "--config", path)
    topic = ("topic", alerts)
    seen, deadline = {}, time.monotonic() + 60
    try:
        while time.monotonic() < deadline and process.poll() is None:
            seen = scrape(port) or seen
            if (seen.get(("camflow_sink_records_consumed_total", topic)) == 3
                    and ("camflow_sink_consumer_lag", ("partition", "0"), topic) in seen):
                break
            time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGTERM)  # the sink stops cleanly after its batch
        out, err = process.communicate(timeout=60)
    assert seen.get(("camflow_sink_records_consumed_total", topic)) == 3, (seen, err)
    assert seen[("camflow_sink_rows_written_total", ("table", "alerts"))] == 2
    assert seen[("camflow_sink_errors_total", ("kind", "rejected"))] == 1
    assert seen[("camflow_sink_batch_seconds_count",)] >= 1
    assert seen[("camflow_sink_consumer_lag", ("partition", "0"), topic)] >= 0
    assert process.returncode == 0, err


def test_reconnects_of_a_live_source_are_heard():
    from camflow.services.sampler import SourceError, sample_stream
    port = free_port()  # nothing listens there: every open fails
    attempts = []
    with pytest.raises(SourceError):
        list(sample_stream(f"rtsp://127.0.0.1:{port}/cam", fps=1, give_up_after_s=1.2,
                           on_reconnect=lambda: attempts.append(time.monotonic())))
    # a retry after 0.5 s and another after 1 s more, then it gives up (fewer if opens are slow)
    assert 1 <= len(attempts) <= 2
