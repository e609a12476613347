"""jobs/metrics.py on PyFlink's own metric group (Python side: Beam metrics in a container),
and with metrics disabled. What Flink shows over REST is tested in
tests/integration/test_job_metrics.py."""
from types import SimpleNamespace

import pytest

pytest.importorskip("pyflink")
from apache_beam.metrics.execution import MetricsContainer  # noqa: E402
from apache_beam.runners.worker import statesampler  # noqa: E402
from apache_beam.utils.counters import CounterFactory  # noqa: E402
from pyflink.fn_execution.metrics.process.metric_impl import GenericMetricGroup  # noqa: E402

from camflow.jobs.metrics import OperatorMetrics, TimedModel  # noqa: E402


@pytest.fixture
def container():
    """Beam's metrics container of a running step, as in PyFlink's Python worker."""
    container = MetricsContainer("analyse")
    sampler = statesampler.StateSampler("", CounterFactory())
    statesampler.set_current_tracker(sampler)
    sampler.start()
    with sampler.scoped_state("analyse", "process", metrics_container=container):
        yield container
    sampler.stop()
    statesampler.set_current_tracker(None)


def counters(container) -> dict[str, int]:
    return {f"{json_names(k.metric.namespace)}{k.metric.name}": v
            for k, v in container.get_cumulative().counters.items()}


def json_names(namespace: str) -> str:
    import json
    names = json.loads(namespace)
    return "".join(f"{n}." for n in names[:len(names) // 2])


def test_counters_with_labels_and_declared_zeroes(container):
    group = GenericMetricGroup(None, None)
    metrics = OperatorMetrics(SimpleNamespace(get_metrics_group=lambda: group)).declare("frames_in")
    metrics.inc("frames_in", 3)
    metrics.inc("frames_rejected", reason="corrupt_jpeg")
    metrics.inc("frames_rejected", reason="corrupt_jpeg")
    metrics.inc("frames_rejected", reason="unknown_camera")
    assert counters(container) == {"frames_in": 3, "reason.corrupt_jpeg.frames_rejected": 2,
                                   "reason.unknown_camera.frames_rejected": 1}


def test_latency_distribution_and_percentile_gauges(container):
    group = GenericMetricGroup(None, None)
    metrics = OperatorMetrics(SimpleNamespace(get_metrics_group=lambda: group))
    for ms in range(1, 101):
        metrics.observe_ms("detector", ms)
    distributions = container.get_cumulative().distributions
    (data,) = distributions.values()
    assert (data.count, data.sum, data.min, data.max) == (100, 5050, 1, 100)
    gauges = {name: read() for name, read in group._flink_gauge.items()}
    assert gauges == {"detector_ms_p50": 50, "detector_ms_p95": 95, "detector_ms_p99": 99}


def test_timed_model_keeps_its_attributes_and_is_timed(container):
    group = GenericMetricGroup(None, None)
    metrics = OperatorMetrics(SimpleNamespace(get_metrics_group=lambda: group))

    class Model:
        name, version = "centernet", "v1"

        def __call__(self, image):
            return image * 2
    timed = TimedModel(Model(), metrics, "detector")
    assert timed(21) == 42 and timed.name == "centernet" and timed.version == "v1"
    (data,) = container.get_cumulative().distributions.values()
    assert data.count == 1


def test_disabled_metrics_do_nothing():
    metrics = OperatorMetrics(SimpleNamespace(get_metrics_group=lambda: None)).declare("x")
    metrics.inc("frames_in")
    metrics.observe_ms("detector", 5)
    metrics.gauge("size", lambda: 1)
    call = object()
    assert metrics.timed("faces", call) is call
