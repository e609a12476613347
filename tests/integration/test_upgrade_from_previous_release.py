"""State taken by the previous release restores into this one.

The previous release's code is taken from git (``PREVIOUS_RELEASE``), laid out as the package it
installed as, and runs the job on the embedded mini-cluster with retained checkpoints; it is
killed after its state is checkpointed. This release's job then restores from that checkpoint
(``--from-checkpoint latest``; a retained checkpoint restores like a savepoint: state found by
operator uid and state name) and carries on: every frame is analysed once, and the tumbling
window that spans the upgrade counts the frames of both sides.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections import Counter
from io import BytesIO
from pathlib import Path

import pytest
import yaml

from tests.integration.job_setup import decoded, publish_frames

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long]
REPO = Path(__file__).resolve().parents[2]
# The last commit before the house reorganisation (issue 12): flat camflow/, package_dir mapping.
PREVIOUS_RELEASE = "098688bc45f4d0ecc5b3b2e857e12238a76283cb"
FPS, BATCH, WINDOW_MS = 4.0, 16, 5000


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory) -> Path:
    """A folder holding the previous release's ``camflow`` package (a real copy, as a wheel
    would install it), to put first on PYTHONPATH."""
    archive = subprocess.run(["git", "archive", "--format=tar", PREVIOUS_RELEASE], cwd=REPO,
                             capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"the previous release {PREVIOUS_RELEASE[:10]} is not in this clone's "
                    f"history: {archive.stderr.decode()[:200]}")
    tree = tmp_path_factory.mktemp("previous-tree")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    package = tmp_path_factory.mktemp("previous-package")
    shutil.copytree(tree / "camflow", package / "camflow")
    for folder in ("jobs", "transforms", "schemas", "models", "infra"):
        shutil.copytree(tree / folder, package / "camflow" / folder)
    return package


def _job(args: list[str], log: Path, pythonpath: Path | None = None) -> subprocess.Popen:
    from camflow.jobs.environment import child_env
    env = child_env()
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    with open(log, "w") as out:
        # cwd outside the repository: `python -m` must not find this release's camflow there
        return subprocess.Popen([sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT,
                                cwd=log.parent, env=env, start_new_session=True)


def _wait(condition, what: str, job: subprocess.Popen, log: Path, timeout_s: float = 180.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if job.poll() is not None:
            raise AssertionError(f"the job ended before {what}:\n{log.read_text()[-4000:]}")
        time.sleep(2)
    raise AssertionError(f"not {what} after {timeout_s:.0f}s:\n{log.read_text()[-4000:]}")


def _stop(job: subprocess.Popen) -> None:
    if job.poll() is None:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)


def test_a_checkpoint_of_the_previous_release_restores(previous_release, live_config, built_models,
                                                        vtest_path, tmp_path):
    from camflow.services.sampler import sample_file
    config = live_config(f"previous-{uuid.uuid4().hex[:6]}", ["walkway"], {
        "parallelism": 1, "checkpoint_interval_ms": 2000,
        "checkpoint_dir": (tmp_path / "checkpoints").as_uri(), "window_ms": WINDOW_MS,
        "sliding_window_ms": 0, "out_of_orderness_ms": 1000, "idleness_ms": 1000,
        "detector": {"threads": 1}, "recognition": {"faces": False, "plates": False}})
    config_path = tmp_path / "previous.yaml"
    # only what is set: the previous release knows none of the settings added since (nor the
    # appearances topic: both releases write it under its default name)
    raw = config.model_dump(mode="json", exclude_unset=True)
    raw["kafka"]["topics"].pop("appearances", None)
    config_path.write_text(yaml.safe_dump(raw))
    start_ms = (int(time.time() * 1000) - 60_000) // WINDOW_MS * WINDOW_MS
    frames = list(sample_file(str(vtest_path), FPS, start_ms=start_ms, max_frames=2 * BATCH))
    analysed = lambda: len(decoded(config, config.kafka.topics.analyses, "FrameAnalysis"))
    # Flink retains the latest completed checkpoint only: its number says how many there were.
    checkpoints = lambda: max((int(p.parent.name.removeprefix("chk-")) for p in
                               (tmp_path / "checkpoints").glob("*/chk-*/_metadata")), default=0)

    sent = publish_frames(config, frames[:BATCH])
    log = tmp_path / "previous.log"
    previous = _job(["camflow.cli", "job", "run", "--config", str(config_path)], log,
                    pythonpath=previous_release)
    try:
        _wait(lambda: analysed() >= BATCH, f"{BATCH} frames analysed", previous, log)
        seen = checkpoints()
        _wait(lambda: checkpoints() > seen, "checkpointed after them", previous, log)
    finally:
        _stop(previous)
    sent |= publish_frames(config, frames[BATCH:])

    log = tmp_path / "current.log"
    current = _job(["camflow.commands", "job", "run", "--config", str(config_path),
                    "--from-checkpoint", "latest"], log)
    try:
        _wait(lambda: analysed() >= 2 * BATCH, f"{2 * BATCH} frames analysed", current, log)
        time.sleep(4)  # the window the last frames closed reaches its topic
    finally:
        _stop(current)
    assert "Failed to rollback" not in log.read_text() and "Cannot map" not in log.read_text()

    analyses = Counter((a["camera_id"], a["sequence"])
                       for a in decoded(config, config.kafka.topics.analyses, "FrameAnalysis"))
    assert set(analyses) == sent
    # Frames after the last checkpoint of the previous release are analysed again (at least
    # once); none is lost, and the window state came through: the window that spans the
    # upgrade counts every frame sent into it, each once.
    aggregates = decoded(config, config.kafka.topics.aggregates, "Aggregate")
    expected = Counter(f.capture_ms // WINDOW_MS * WINDOW_MS for f in frames)
    spanning = frames[BATCH - 1].capture_ms // WINDOW_MS * WINDOW_MS
    latest = {a["window_start_ms"]: a["frames"] for a in aggregates}
    assert latest.get(spanning) == expected[spanning], (latest, expected)
