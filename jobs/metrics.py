"""Flink metrics of the job's operators: counters, gauges and model latencies.

An operator makes one ``OperatorMetrics`` in ``open()`` and only increments; metrics are
registered on first use, so a dead-letter reason or alert type gets its counter when it first
happens. Flink shows them per operator and subtask (web UI, REST
``/jobs/<job>/vertices/<vertex>/metrics``, any configured reporter, e.g. Prometheus).

PyFlink has counters, gauges, meters and distributions but no histograms: a model latency is a
distribution (Flink reports its count, sum, min and max in milliseconds) plus gauges with the
median, 95th and 99th percentile of the last ``LATENCY_WINDOW`` calls. PyFlink copies gauge
values and reports counters at the end of each bundle (``job.python_bundle_ms``).
With ``python.metric.enabled: false`` every call here does nothing.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Callable

import numpy as np

from camflow.transforms.motion import REUSED

LATENCY_WINDOW = 512  # model calls the latency percentiles look back over
PERCENTILES = (50, 95, 99)


class OperatorMetrics:
    """The metrics of one operator instance, under its Flink metric group."""

    def __init__(self, runtime_context):
        self.group = runtime_context.get_metrics_group()  # None with python.metric.enabled=false
        self._counters: dict[tuple, object] = {}
        self._latencies: dict[str, tuple[object, deque]] = {}

    def declare(self, *names: str) -> "OperatorMetrics":
        """Counters that show (at 0) before anything happened, for dashboards."""
        for name in names:
            self.inc(name, 0)
        return self

    def inc(self, name: str, n: int = 1, **labels: str) -> None:
        """Counter ``name`` (+ ``n``); each label is a key/value metric group, e.g.
        ``inc("dead_letters", reason="corrupt_jpeg")`` -> ``reason.corrupt_jpeg.dead_letters``."""
        if self.group is None:
            return
        key = (name, *sorted(labels.items()))
        counter = self._counters.get(key)
        if counter is None:
            group = self.group
            for label, value in sorted(labels.items()):
                group = group.add_group(label, str(value))
            counter = self._counters[key] = group.counter(name)
        if n:
            counter.inc(int(n))

    def gauge(self, name: str, read: Callable[[], int]) -> None:
        """Gauge ``name``: ``read()`` is called at the end of each bundle (an int)."""
        if self.group is not None:
            self.group.gauge(name, lambda: int(read()))

    def observe_ms(self, name: str, ms: float) -> None:
        """One latency of ``name`` (a model): ``<name>_ms`` distribution and
        ``<name>_ms_p50/p95/p99`` gauges over the last ``LATENCY_WINDOW`` calls."""
        if self.group is None:
            return
        found = self._latencies.get(name)
        if found is None:
            recent: deque = deque(maxlen=LATENCY_WINDOW)
            found = self._latencies[name] = (self.group.distribution(f"{name}_ms"), recent)
            for q in PERCENTILES:
                self.group.gauge(f"{name}_ms_p{q}", _percentile(recent, q))
        distribution, recent = found
        distribution.update(int(round(ms)))
        recent.append(ms)

    def timed(self, name: str, call: Callable | None) -> Callable | None:
        """``call`` wrapped so that each call's wall time is observed as ``name``."""
        if call is None or self.group is None:
            return call

        def timed_call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.observe_ms(name, (time.perf_counter() - started) * 1000.0)
        return timed_call


def _percentile(recent: deque, q: int) -> Callable[[], int]:
    return lambda: int(round(float(np.percentile(recent, q)))) if recent else 0


class TimedModel:
    """A model object whose ``__call__`` is timed; everything else (``name``, ``version``,
    other methods) is the model's own."""

    def __init__(self, model, metrics: OperatorMetrics, name: str):
        self._model, self._call = model, metrics.timed(name, model.__call__)

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, attribute):
        return getattr(self._model, attribute)


ANALYSE_COUNTERS = ("frames_analysed", "detections", "tracked_detections", "faces_read",
                    "plates_read", "detector_skipped")


def analyse_metrics(runtime_context, operator) -> OperatorMetrics:
    """Metrics of ``AnalyseFrames``: its detector, the face/plate readers and the fall rule's
    pose check timed in place (``detector_ms``, ``faces_ms``, ``plates_ms``, ``pose_ms``)."""
    metrics = OperatorMetrics(runtime_context).declare(*ANALYSE_COUNTERS)
    if metrics.group is None:
        return metrics
    operator.detector = TimedModel(operator.detector, metrics, "detector")
    recognition = operator.recognition
    if recognition is not None:
        recognition.find_faces = metrics.timed("faces", recognition.find_faces)
        recognition.read_plates = metrics.timed("plates", recognition.read_plates)
    if getattr(operator, "person_down", None) is not None:
        operator.person_down = metrics.timed("pose", operator.person_down)
    return metrics


def count_analysis(metrics: OperatorMetrics, analysis) -> None:
    """Per analysed frame: frames, detections, tracked detections, faces and plates read."""
    metrics.inc("frames_analysed")
    key, reused = REUSED
    if analysis.model_versions.get(key) == reused:  # still frame: no detector run
        metrics.inc("detector_skipped")
    detections = analysis.detections
    metrics.inc("detections", len(detections))
    if detections.tracker_id is not None:
        metrics.inc("tracked_detections", int((detections.tracker_id >= 0).sum()))
    metrics.inc("faces_read", len(analysis.faces))
    metrics.inc("plates_read", len(analysis.plates))
