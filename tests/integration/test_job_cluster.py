"""The same job on a real standalone Flink cluster: a JobManager and 2 TaskManagers on this
machine, submitted with ``camflow job submit`` (``bin/flink run -py``) at parallelism 2."""
from __future__ import annotations

import time

import pytest
import yaml

from camflow.commands import main as camflow_main
from camflow.config import Config
from camflow.core.kafka import read_topic
from camflow.schemas.codec import AvroCodec

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FRAMES = 20


@pytest.fixture(scope="module")
def flink_cluster():
    from camflow.infra import flink
    started = time.monotonic()
    overview = flink.start_cluster(taskmanagers=2, slots=1)
    overview["startup_s"] = time.monotonic() - started
    yield overview
    flink.stop_cluster()


def test_job_runs_on_the_standalone_cluster_with_parallelism_2(
        tmp_path, flink_cluster, kafka_bootstrap, vtest_path, built_models, capsys):
    from camflow.infra.broker import ensure_topics
    from camflow.services.sampler import ingest

    assert flink_cluster["taskmanagers"] == 2
    suffix = f"cluster-{int(time.time() * 1000)}"
    raw = {"deployment": "cluster-test",
           "cameras": [{"id": "walkway", "crowd_limit": 2}, {"id": "walkway-2"}],
           "kafka": {"bootstrap_servers": kafka_bootstrap, "group_id": suffix,
                     "topics": {"frames": f"frames-{suffix}", "analyses": f"analyses-{suffix}",
                                "alerts": f"alerts-{suffix}", "aggregates": f"aggregates-{suffix}",
                                "dead_letters": f"dead-letters-{suffix}", "partitions": 2}},
           "job": {"parallelism": 2, "window_ms": 2000, "out_of_orderness_ms": 500,
                   "idleness_ms": 1000, "checkpoint_interval_ms": 2000}}
    config = Config.model_validate(raw)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(raw))
    t = config.kafka.topics
    ensure_topics(kafka_bootstrap, {n: 2 for n in (t.frames, t.analyses, t.alerts, t.aggregates, t.dead_letters)})
    start_ms = int(time.time() * 1000)
    for camera in ("walkway", "walkway-2"):
        ingest(config.kafka, camera, str(vtest_path), fps=5, max_frames=FRAMES // 2, start_ms=start_ms)

    assert camflow_main(["job", "submit", "--config", str(path), "--bounded"]) == 0, capsys.readouterr()

    analyses = [AvroCodec("FrameAnalysis").decode(m.value()) for m in read_topic(config.kafka, t.analyses)]
    assert sorted((a["camera_id"], a["sequence"]) for a in analyses) == sorted(
        {(a["camera_id"], a["sequence"]) for a in analyses})
    assert len(analyses) == FRAMES
    assert {a["camera_id"] for a in analyses} == {"walkway", "walkway-2"}
    assert sum(len(a["detections"]) for a in analyses) > FRAMES
    aggregates = list(read_topic(config.kafka, t.aggregates))
    assert aggregates
