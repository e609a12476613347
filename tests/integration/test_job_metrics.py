"""The job's own metrics, read the way an operator reads them: from Flink's REST API of the
running job (the embedded mini-cluster serves it on ``rest.port``), and ``camflow status``
against the same broker and REST API."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import cv2
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rest(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return json.loads(response.read())


def job_metrics(port: int, job_id: str) -> dict[str, str]:
    """Every user metric of every vertex, ``operator.metric`` -> value (subtask 0: the job
    runs with parallelism 1 here)."""
    found = {}
    for vertex in rest(port, f"/jobs/{job_id}")["vertices"]:
        path = f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"
        names = [m["id"] for m in rest(port, path) if m["id"].startswith("0.")]
        for chunk in range(0, len(names), 40):
            query = ",".join(names[chunk:chunk + 40])
            found.update({m["id"][2:]: m["value"] for m in rest(port, f"{path}?get={query}")})
    return found


@pytest.fixture
def metered_job(live_config, built_models, vtest_path):
    from camflow.jobs.camera_job import start
    port = free_port()
    config = live_config("metered", ["walkway"], {
        "window_ms": 5000, "idleness_ms": 1000, "checkpoint_interval_ms": 1000,
        "detector": {"threads": 2}, "recognition": {"faces": False, "plates": False},
        "flink_options": {"rest.port": str(port)}})
    config.job.rest_url = f"http://127.0.0.1:{port}"
    client = start(config, job_name="camflow-metered")
    yield config, port, str(client.get_job_id())
    client.cancel().result()


def test_operator_metrics_count_frames_detections_and_dead_letters(metered_job, vtest_path,
                                                                   publish_still, tmp_path):
    from camflow.core.kafka import reliable_producer
    config, port, job_id = metered_job
    capture = cv2.VideoCapture(str(vtest_path))
    ok, image = capture.read()
    capture.release()
    assert ok
    publish_still(config, "walkway", image, int(time.time() * 1000) - 60_000, frames=8)
    producer = reliable_producer(config.kafka)
    producer.produce(config.kafka.topics.frames, value=b"not avro", key=b"walkway")
    producer.flush(30)

    deadline, metrics = time.monotonic() + 180, {}
    while time.monotonic() < deadline:
        try:
            metrics = job_metrics(port, job_id)
        except OSError:
            pass  # the REST endpoint is still starting
        if (metrics.get("admit.frames_in") == "9" and metrics.get("analyse.frames_analysed") == "8"
                and metrics.get("encode-dead-letters.records_out") == "1"):
            break
        time.sleep(2)
    assert metrics.get("admit.frames_in") == "9", metrics
    assert metrics["analyse.frames_analysed"] == "8"
    assert metrics["admit.reason.unknown_encoding.frames_rejected"] == "1"
    assert metrics["encode-dead-letters.reason.unknown_encoding.dead_letters"] == "1"
    detections = int(metrics["analyse.detections"])
    assert detections >= 8 * 3  # vtest's first frame shows several pedestrians
    assert int(metrics["analyse.tracked_detections"]) <= detections
    # the same still frame 8 times: the motion gate runs the detector once and reuses it 7 times
    assert metrics["analyse.detector_skipped"] == "7"
    assert "count=1," in metrics["analyse.detector_ms"]  # DistributionResult{sum=.., count=1, ..}
    assert int(metrics["analyse.detector_ms_p95"]) >= int(metrics["analyse.detector_ms_p50"]) > 0
    assert metrics["encode-analyses.records_out"] == "8"

    # `camflow status` against the same broker and REST API, while the job runs.
    import yaml
    path = tmp_path / "camflow.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    frames, analyses = config.kafka.topics.frames, config.kafka.topics.analyses
    job_group = f"{config.kafka.group_id}-job-{frames}"
    deadline = time.monotonic() + 60
    while True:  # the job's source commits its offsets when a checkpoint completes
        report = camflow_status("--config", str(path), "--json", "--exact")
        topics = {row["topic"]: row for row in report["kafka"]["topics"]}
        group = topics[frames]["groups"][0]
        if group["lag"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert topics[frames]["end"] == {"0": 9}  # 8 frames and the unreadable record
    assert group == {"group": job_group, "committed": 9, "has_committed": True, "lag": 0,
                     "partitions": {"0": {"committed": 9, "lag": 0}}}
    assert topics[analyses]["end"] == {"0": 8}
    sink = topics[analyses]["groups"][0]
    assert sink["group"] == f"{config.kafka.group_id}-sink" and not sink["has_committed"]
    assert sink["lag"] == 8  # no sink ran: everything is still to be written to the store
    assert report["flink"]["reachable"]
    job = next(j for j in report["flink"]["jobs"] if j["id"] == job_id)
    assert job["name"] == "camflow-metered" and job["state"] == "RUNNING"
    assert job["restarts"] == 0 and job["checkpoints"]["completed"] >= 1
    text = subprocess.run([sys.executable, "-m", "camflow.commands", "status", "--config", str(path)],
                          capture_output=True, text=True, env=child_env(), timeout=120).stdout
    assert job_id in text and "RUNNING" in text and job_group in text


def child_env():
    from camflow.jobs.environment import child_env as env
    return env()


def camflow_status(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "camflow.commands", "status", *args],
                          capture_output=True, text=True, env=child_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
