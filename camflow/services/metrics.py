"""Prometheus metrics of the processes outside Flink: the sampler (``camflow ingest``) and the
analyst-store sink (``camflow sink``), served over HTTP with ``--metrics-port``.

The job's own metrics live in Flink (``camflow.jobs.metrics``); Flink exports them with its
reporters (its REST API, or ``metrics.reporter.prom.*`` in ``job.flink_options``).
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# --- sampler (labels: camera)
FRAMES_SAMPLED = Counter("camflow_sampler_frames_sampled", "Frames taken from the source", ["camera"])
FRAMES_PUBLISHED = Counter("camflow_sampler_frames_published",
                           "Frames handed to the Kafka producer", ["camera"])
FRAMES_ACKNOWLEDGED = Counter("camflow_sampler_frames_acknowledged",
                              "Frames the broker acknowledged (acks=all)", ["camera"])
FRAMES_DROPPED = Counter("camflow_sampler_frames_dropped",
                         "Frames sampled but never published or acknowledged", ["camera", "reason"])
RECONNECTS = Counter("camflow_sampler_reconnects", "Times a live source was reopened", ["camera"])
PRODUCER_RESTARTS = Counter("camflow_sampler_producer_restarts",
                            "Producers replaced after acknowledgements stalled", ["camera"])
UNACKNOWLEDGED = Gauge("camflow_sampler_unacknowledged_frames",
                       "Frames sent and not yet acknowledged", ["camera"])
PUBLISH_LATENCY = Histogram("camflow_sampler_publish_latency_seconds",
                            "Time from handing a frame to the producer to its acknowledgement",
                            ["camera"], buckets=LATENCY_BUCKETS)

# --- sink
RECORDS_CONSUMED = Counter("camflow_sink_records_consumed", "Records read from Kafka", ["topic"])
ROWS_WRITTEN = Counter("camflow_sink_rows_written", "Records upserted into the store", ["table"])
SINK_ERRORS = Counter("camflow_sink_errors",
                      "Records rejected (kept in sink_rejects) and failed batches", ["kind"])
BATCH_LATENCY = Histogram("camflow_sink_batch_seconds",
                          "Time to write and commit one batch (store, then Kafka offsets)",
                          buckets=LATENCY_BUCKETS)
CONSUMER_LAG = Gauge("camflow_sink_consumer_lag",
                     "Records behind the broker's end offset (as the broker reports it)",
                     ["topic", "partition"])


def serve(port: int | None, address: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` on ``port`` in a background thread (nothing when ``port`` is None)."""
    if port is not None:
        start_http_server(port, addr=address)


class SamplerMetrics:
    """One camera's sampler metrics."""

    def __init__(self, camera_id: str):
        self.sampled = FRAMES_SAMPLED.labels(camera_id)
        self.published = FRAMES_PUBLISHED.labels(camera_id)
        self.acknowledged = FRAMES_ACKNOWLEDGED.labels(camera_id)
        self.reconnects = RECONNECTS.labels(camera_id)
        self.producer_restarts = PRODUCER_RESTARTS.labels(camera_id)
        self.unacknowledged = UNACKNOWLEDGED.labels(camera_id)
        self.latency = PUBLISH_LATENCY.labels(camera_id)
        self.camera_id = camera_id

    def dropped(self, reason: str, n: int = 1) -> None:
        FRAMES_DROPPED.labels(self.camera_id, reason).inc(n)

    def acked(self, latency_s: float) -> None:
        self.acknowledged.inc()
        self.latency.observe(latency_s)

# --- notify (`camflow notify`; labels: target = a name in notify.targets, "*" for all)
NOTIFY_READ = Counter("camflow_notify_alerts_read", "Alert records read from Kafka")
NOTIFY_UNROUTED = Counter("camflow_notify_alerts_unrouted", "Alerts that matched no notify route")
NOTIFY_DELIVERED = Counter("camflow_notify_delivered",
                           "Deliveries the target acknowledged (kind: alert, or status = retained "
                           "camera status)", ["target", "kind"])
NOTIFY_FAILED = Counter("camflow_notify_failed",
                        "Deliveries given up or interrupted, each a notify-failures record",
                        ["target", "reason"])
NOTIFY_RETRIES = Counter("camflow_notify_retries", "Webhook attempts after the first", ["target"])
NOTIFY_SKIPPED = Counter("camflow_notify_skipped",
                         "Deliveries not made: already_sent (restart or replay), stale_status, "
                         "too_old", ["target", "reason"])
NOTIFY_LATENCY = Histogram("camflow_notify_delivery_seconds",
                           "Time from reading an alert to the target's acknowledgement, retries "
                           "included", ["target"], buckets=LATENCY_BUCKETS)
NOTIFY_QUEUED = Gauge("camflow_notify_queued", "Deliveries waiting for their target", ["target"])
NOTIFY_TARGET_UP = Gauge("camflow_notify_target_up",
                         "1 when the target's connection is up (MQTT) or its last attempt "
                         "succeeded (webhook), else 0", ["target"])
