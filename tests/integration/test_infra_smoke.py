"""Infra smoke test: Tansu + confluent-kafka + PyFlink KafkaSource/KafkaSink, end to end.

1. produce a few byte values to a 2-partition topic (confluent-kafka);
2. run tests/integration/infra_smoke_job.py on the EMBEDDED mini-cluster: KafkaSource
   (ByteArraySchema, explicit stopping offsets) -> Python map -> KafkaSink
   (ByteArraySchema, AT_LEAST_ONCE);
3. read the output topic and compare.
The same job on a standalone JM + 2 TMs cluster runs when CAMFLOW_TEST_FLINK_CLUSTER=1.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

JOB = pathlib.Path(__file__).with_name("infra_smoke_job.py")
sys.path.insert(0, str(JOB.parent))
from infra_smoke_job import smoke_transform  # noqa: E402


def _produce(bootstrap: str, topic: str, values_by_partition: dict[int, list[bytes]]) -> dict[int, int]:
    """Produce values; return the stop offset (next offset) of each partition."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    delivered: dict[int, list[int]] = {}

    def on_delivery(err, msg):
        assert err is None, err
        delivered.setdefault(msg.partition(), []).append(msg.offset())

    for part, values in values_by_partition.items():
        for v in values:
            p.produce(topic, value=v, partition=part, on_delivery=on_delivery)
    assert p.flush(15) == 0
    # stop offsets from delivery reports, not from the broker's (wrong) end offsets
    return {part: max(offs) + 1 for part, offs in delivered.items()}


def _job_env() -> dict[str, str]:
    from camflow.jobs.environment import child_env
    env = child_env()
    env.setdefault("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")
    return env


def test_embedded_kafka_roundtrip(kafka_bootstrap, unique_topic, make_topics, topic_reader):
    pytest.importorskip("pyflink", reason="needs the .venv (bash infra/setup_env.sh)")
    src, dst = unique_topic("in"), unique_topic("out")
    make_topics({src: 2, dst: 1})
    values = {0: [b"a0", b"b0", b"c0"], 1: [b"a1", b"\x00\xffbin"]}
    stop = _produce(kafka_bootstrap, src, values)

    cmd = [sys.executable, str(JOB), "--bootstrap", kafka_bootstrap, "--in-topic", src,
           "--out-topic", dst, "--stop", ",".join(f"{p}:{o}" for p, o in stop.items())]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=_job_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    expected = sorted(smoke_transform(v) for vs in values.values() for v in vs)
    got = topic_reader(dst, partitions=1, expect=len(expected), timeout=30)
    assert sorted(m.value() for m in got) == expected
    assert all(m.key() is None for m in got)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CAMFLOW_TEST_FLINK_CLUSTER") != "1",
                    reason="standalone-cluster check is opt-in: CAMFLOW_TEST_FLINK_CLUSTER=1")
def test_standalone_cluster_kafka_roundtrip(kafka_bootstrap, unique_topic, make_topics, topic_reader,
                                            tmp_path, monkeypatch):
    pytest.importorskip("pyflink", reason="needs the .venv (bash infra/setup_env.sh)")
    from camflow.infra import flink

    monkeypatch.setenv("CAMFLOW_VAR", str(tmp_path / "var"))
    src, dst = unique_topic("in"), unique_topic("out")
    make_topics({src: 2, dst: 1})
    values = {0: [b"x", b"y"], 1: [b"z"]}
    stop = _produce(kafka_bootstrap, src, values)
    rest_port = int(os.environ.get("CAMFLOW_TEST_FLINK_REST_PORT", "8091"))
    try:
        ov = flink.start_cluster(taskmanagers=2, slots=1, rest_port=rest_port, tm_process_mb=1536)
        assert ov["taskmanagers"] == 2
        cp = flink.submit(JOB, ["--bootstrap", kafka_bootstrap, "--in-topic", src, "--out-topic", dst,
                                "--stop", ",".join(f"{p}:{o}" for p, o in stop.items()),
                                "--parallelism", "2"], timeout=300)
        assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-5000:]
    finally:
        flink.stop_cluster()
    expected = sorted(smoke_transform(v) for vs in values.values() for v in vs)
    got = topic_reader(dst, partitions=1, expect=len(expected), timeout=30)
    assert sorted(m.value() for m in got) == expected
