"""Upgrades: stop the job with a savepoint, submit it again from the savepoint, lose nothing.

On the local standalone cluster (held under /tmp/camflow-flink-cluster.lock, one per machine):
the job analyses a first batch of real frames; ``camflow job savepoint --stop`` stops it with a
savepoint; more frames arrive while it is down; ``camflow job submit --from-savepoint`` resumes
it. Every frame is analysed exactly once (the analyses topic holds each camera + sequence once,
and so does the analyst store), the tumbling window that spans the upgrade counts the frames of
both batches (its state came through the savepoint), and no alert is emitted twice.
"""
from __future__ import annotations

import fcntl
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.integration.job_setup import decoded, publish_frames

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long]
REPO = Path(__file__).resolve().parents[2]
FPS, BATCH = 4.0, 24  # two batches of 6 s of capture time each
WINDOW_MS = 5000


@pytest.fixture
def flink_cluster():
    """The machine's one standalone cluster, ours while the lock is held (started if down)."""
    from camflow.infra import flink
    with open("/tmp/camflow-flink-cluster.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started_here = flink.cluster_status() is None
        if started_here:
            flink.start_cluster(taskmanagers=1, slots=1)
        try:
            yield flink
        finally:
            if started_here:
                flink.stop_cluster()


def _wait_analysed(config, count: int, timeout_s: float = 150.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(decoded(config, config.kafka.topics.analyses, "FrameAnalysis")) >= count:
            return
        time.sleep(2)
    raise TimeoutError(f"fewer than {count} frames analysed after {timeout_s:.0f}s")


def _camflow(*args) -> subprocess.CompletedProcess:
    from camflow.jobs.environment import child_env
    return subprocess.run([sys.executable, "-m", "camflow.commands", *args], capture_output=True,
                          text=True, cwd=REPO, env=child_env(), timeout=300)


def test_stop_with_savepoint_and_resubmit_analyses_every_frame_once(
        flink_cluster, live_config, built_models, vtest_path, tmp_path):
    from bench.chaos import job_state, wait_running
    from camflow.services.sampler import sample_file
    from camflow.services.store import AnalystStore
    flink = flink_cluster
    config = live_config(f"upgrade-{uuid.uuid4().hex[:6]}", ["walkway"], {
        "parallelism": 1, "checkpoint_interval_ms": 2000,
        "checkpoint_dir": (tmp_path / "checkpoints").as_uri(), "window_ms": WINDOW_MS,
        "sliding_window_ms": 0, "out_of_orderness_ms": 1000, "default_crowd_limit": 1,
        "detector": {"threads": 1}, "recognition": {"faces": False, "plates": False}},
        store={"url": f"duckdb:///{tmp_path}/store.duckdb"})
    config_path = tmp_path / "upgrade.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    start_ms = (int(time.time() * 1000) - 60_000) // WINDOW_MS * WINDOW_MS
    frames = list(sample_file(str(vtest_path), FPS, start_ms=start_ms, max_frames=2 * BATCH))

    sent = publish_frames(config, frames[:BATCH])
    submitted = _camflow("job", "submit", "--config", str(config_path))
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    wait_running(flink)
    _wait_analysed(config, BATCH)

    stopped = _camflow("job", "savepoint", "--config", str(config_path), "--stop")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    savepoint = stopped.stdout.strip().splitlines()[-1]
    assert (Path(savepoint.removeprefix("file:")) / "_metadata").is_file(), savepoint
    assert job_state(flink)[0] is None  # the job ended with its savepoint

    sent |= publish_frames(config, frames[BATCH:])  # arrives while the job is down
    resumed = _camflow("job", "submit", "--config", str(config_path), "--from-savepoint", savepoint)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    jid = wait_running(flink)
    try:
        _wait_analysed(config, 2 * BATCH)
        time.sleep(3)  # the windows the last frames closed reach their topics
    finally:
        flink._run(["bash", str(flink.flink_home() / "bin" / "flink"), "cancel", "-m",
                    f"localhost:{flink._rest_port()}", jid], check=False)
    sink = _camflow("sink", "--config", str(config_path), "--idle-exit", "8")
    assert sink.returncode == 0, sink.stderr[-3000:]

    # Every frame analysed exactly once: in the job's output and in the store.
    analyses = Counter((a["camera_id"], a["sequence"])
                       for a in decoded(config, config.kafka.topics.analyses, "FrameAnalysis"))
    assert set(analyses) == sent and max(analyses.values()) == 1, analyses.most_common(3)
    store = AnalystStore(config.store.url)
    try:
        stored = store.query("SELECT camera_id, sequence, deliveries FROM frame_analyses")
    finally:
        store.close()
    assert {(c, int(s)) for c, s, _ in stored} == sent and {d for *_, d in stored} == {1}
    # Windows: each closed window once, counting every frame sent into it, including the one
    # that spans the stop (half its frames were counted before the savepoint, half after).
    aggregates = decoded(config, config.kafka.topics.aggregates, "Aggregate")
    per_window = Counter(a["window_start_ms"] for a in aggregates)
    assert per_window and max(per_window.values()) == 1, per_window
    expected = Counter(f.capture_ms // WINDOW_MS * WINDOW_MS for f in frames)
    assert {a["window_start_ms"]: a["frames"] for a in aggregates} == \
        {w: expected[w] for w in per_window}
    spanning = start_ms + WINDOW_MS  # [5 s, 10 s): batch 1 ends at ~6 s
    assert frames[BATCH - 1].capture_ms // WINDOW_MS * WINDOW_MS == spanning
    assert spanning in per_window, per_window
    # No alert twice (alert ids are deterministic: a re-emitted alert would repeat its id).
    alert_ids = Counter(a["alert_id"] for a in decoded(config, config.kafka.topics.alerts, "Alert"))
    assert alert_ids and max(alert_ids.values()) == 1, alert_ids.most_common(3)
