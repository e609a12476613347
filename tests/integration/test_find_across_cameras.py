"""Finding people and vehicles across cameras without a face, end to end: broker, the real job
on the mini-cluster, the sink, the analyst store, and the ``camflow find | similar | search
--plate`` commands.

Two cameras see the same real footage (``vtest.avi``, 30 s at 4 frames/s) five minutes apart,
as if the same people walked past a second site later, and then the same car with a real
Vietnamese plate (``test_watchlist_plate_live.car_with_plate``). The job numbers the tracks of
identical frames identically, so each track at the first camera has one expected twin at the
second: ``similar`` must rank it first, ``find`` with its colours must list it, and the plate's
path must hold both cameras.
"""
from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
import yaml

from tests.integration.job_setup import decoded, publish_frames
from tests.integration.test_watchlist_plate_live import LISTED, VIDEO, car_with_plate

from camflow import commands as cli
from camflow.services.sink import run_sink

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FIRST, SECOND = "night-market", "an-thoi-port"
SECONDS, FPS, APART_MS = 30, 4, 300_000


def wait_for_analyses(config, expected: int, timeout_s: float = 300.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        seen = len(decoded(config, config.kafka.topics.analyses, "FrameAnalysis"))
        if seen >= expected or time.monotonic() > deadline:
            return seen
        time.sleep(3)


@pytest.fixture(scope="module")
def two_cameras(kafka_bootstrap, vtest_path, built_models, tmp_path_factory):
    if not VIDEO.is_file():
        pytest.skip(f"{VIDEO} not present")
    from camflow.config import Config
    from camflow.core.kafka import ensure_topic
    from camflow.jobs.camera_job import start
    from camflow.services.sampler import sample_file
    from tests.conftest import JOB_TOPICS

    tmp = tmp_path_factory.mktemp("find")
    suffix = f"{int(time.time())}"
    config = Config.model_validate({
        "deployment": "find-test",
        "cameras": [{"id": FIRST, "name": "A", "location": {"site": "Night market"}},
                    {"id": SECOND, "name": "B", "location": {"site": "An Thoi port"}}],
        "kafka": {"bootstrap_servers": kafka_bootstrap, "group_id": f"find-{suffix}",
                  "topics": {n: f"{n}-find-{suffix}" for n in JOB_TOPICS}},
        "store": {"url": f"duckdb:///{tmp / 'store.duckdb'}"},
        "job": {"window_ms": 5000, "idleness_ms": 1000, "checkpoint_interval_ms": 2000,
                "detector": {"threads": 2}, "tracking": {"min_hits": 2},
                "recognition": {"faces": False, "plates": True, "retry_ms": 0},
                "watchlist": {"enabled": False}}})
    for name in JOB_TOPICS:
        ensure_topic(config.kafka, getattr(config.kafka.topics, name), 1)
    config_file = tmp / "find.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))

    video = [f for f in sample_file(str(vtest_path), FPS, start_ms=0)][:SECONDS * FPS]
    car = car_with_plate(LISTED[0])
    t0 = int(time.time() * 1000) - 2 * APART_MS  # in the past: nothing is "future" to the job
    client = start(config)
    try:
        published = 0
        for camera, start_ms in ((FIRST, t0), (SECOND, t0 + APART_MS)):
            frames = [SimpleNamespace(image=f.image, sequence=i, capture_ms=start_ms + f.capture_ms)
                      for i, f in enumerate(video)]
            last = frames[-1].capture_ms
            frames += [SimpleNamespace(image=car, sequence=len(video) + i,
                                       capture_ms=last + 20_000 + i * 500) for i in range(6)]
            publish_frames(config, frames, camera_id=camera, max_width=960)
            published += len(frames)
        analysed = wait_for_analyses(config, published)
        assert analysed >= published, f"the job analysed {analysed} of {published} frames"
    finally:
        client.cancel().result()
    report = run_sink(config, idle_exit_s=10, max_seconds=180,
                      topics=("analyses", "appearances", "alerts"))
    assert report.written[config.kafka.topics.appearances] > 0
    return config, str(config_file)


def run_cli(capsys, *args) -> tuple[int, dict, list[str]]:
    capsys.readouterr()
    rc = cli.main(list(args))
    lines = capsys.readouterr().out.strip().splitlines()
    return rc, (json.loads(lines[-1]) if rc == 0 else {}), lines


def test_similar_finds_the_same_person_at_the_other_camera(two_cameras, capsys, tmp_path):
    config, config_file = two_cameras
    rc, found, _ = run_cli(capsys, "find", "--config", config_file, "--class", "person",
                           "--camera", FIRST, "--limit", "5")
    assert rc == 0 and found["tracks"] >= 3, found
    for query in found["matches"][:3]:
        rc, similar, _ = run_cli(capsys, "similar", "--config", config_file, "--track",
                                 f"{FIRST}:{query['track_id']}", "--camera", SECOND,
                                 "--crops", str(tmp_path / "crops"))
        assert rc == 0
        best = similar["matches"][0]
        assert (best["camera_id"], best["track_id"]) == (SECOND, query["track_id"]), similar
        assert best["score"] > 0.99 and best["site"] == "An Thoi port"
        assert similar["crops"] == len(similar["matches"]) + 1  # the query's crop too
    # The colours of a track find its twin.
    query = found["matches"][0]
    colours = [f"--{part}={name}" for part, name in query["colours"].items()]
    rc, by_colour, _ = run_cli(capsys, "find", "--config", config_file, "--class", "person",
                               "--site", "An Thoi", *colours, "--limit", "100")
    assert rc == 0
    assert query["track_id"] in {m["track_id"] for m in by_colour["matches"]}
    assert {m["camera_id"] for m in by_colour["matches"]} == {SECOND}


def test_a_plate_read_on_two_cameras_gives_its_path(two_cameras, capsys):
    config, config_file = two_cameras
    rc, path, lines = run_cli(capsys, "search", "--config", config_file, "--plate", LISTED[1])
    assert rc == 0, lines
    assert path["cameras"] == 2 and path["passages"] >= 2, lines


def test_searches_are_audited(two_cameras, capsys):
    config, config_file = two_cameras
    from camflow.services.store import AnalystStore
    assert run_cli(capsys, "find", "--config", config_file, "--upper", "red")[0] == 0
    assert run_cli(capsys, "similar", "--config", config_file, "--track", f"{FIRST}:1")[0] in (0, 2)
    store = AnalystStore.of(config.store)
    try:
        actions = {row[2] for row in store.access_log()}
    finally:
        store.close()
    assert {"appearance_find", "appearance_similar"} <= actions
