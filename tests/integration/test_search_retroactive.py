"""Retroactive search end to end: a person who is on no watchlist walks past a camera while the
real job runs; the sink keeps their face; the person is enrolled afterwards (another photo) and
`camflow search` finds the earlier sighting at the right camera, and nobody else."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from camflow import commands as cli
from camflow.core.kafka import read_topic
from camflow.schemas.codec import AvroCodec
from camflow.services.sink import run_sink
from camflow.services.store import AnalystStore
from camflow.services.enrolment import Watchlist

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces"
OBAMA_SEEN, OBAMA_ENROLLED = "tests__test_images__obama2.jpg", "tests__test_images__obama.jpg"
BIDEN_SEEN, BIDEN_ENROLLED = "tests__test_images__biden.jpg", "examples__knn_examples__train__biden__biden2.jpg"


def wait_for_faces(config, cameras: set[str], timeout_s=120.0) -> list[dict]:
    codec, deadline, faces = AvroCodec("FaceEmbedding"), time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        faces = [codec.decode(m.value()) for m in
                 read_topic(config.kafka, config.kafka.topics.face_embeddings, idle_timeout_s=1.0)]
        if cameras <= {f["camera_id"] for f in faces}:
            return faces
        time.sleep(2)
    return faces


@pytest.fixture
def live_job(live_config, built_models, tmp_path):
    for name in (OBAMA_SEEN, OBAMA_ENROLLED, BIDEN_SEEN, BIDEN_ENROLLED):
        if not (FACES / name).is_file():
            pytest.skip(f"shared face photo {name} not present in {FACES}")
    from camflow.jobs.camera_job import start
    config = live_config("search", ["port-gate", "night-market"], {
        "window_ms": 5000, "idleness_ms": 1000, "checkpoint_interval_ms": 2000,
        "detector": {"threads": 2}, "tracking": {"min_hits": 2},
        "recognition": {"plates": False, "retry_ms": 0}},
        store={"url": f"duckdb:///{tmp_path / 'store.duckdb'}"})
    config_file = tmp_path / "search.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    client = start(config)
    yield config, str(config_file)
    client.cancel().result()


def search(capsys, config_file, *args) -> tuple[int, list[str], str]:
    capsys.readouterr()
    rc = cli.main(["search", "--config", config_file, *args])
    out = capsys.readouterr()
    return rc, out.out.strip().splitlines(), out.err


def test_person_enrolled_afterwards_is_found_in_the_kept_faces(live_job, publish_still, capsys):
    config, config_file = live_job
    now = int(time.time() * 1000)
    # Nobody is enrolled yet: the job raises nothing but keeps every face it reads.
    publish_still(config, "port-gate", FACES / OBAMA_SEEN, now - 120_000)
    publish_still(config, "night-market", FACES / BIDEN_SEEN, now - 90_000)
    started = time.monotonic()
    faces = wait_for_faces(config, {"port-gate", "night-market"})
    job_s = time.monotonic() - started
    assert {f["camera_id"] for f in faces} == {"port-gate", "night-market"}, faces
    assert all(f["matched_subject"] is None and len(f["embedding"]) == 128 for f in faces)
    assert len({f["face_id"] for f in faces}) == len(faces)

    report = run_sink(config, idle_exit_s=5)
    assert report.written[config.kafka.topics.face_embeddings] >= len(faces)
    store = AnalystStore(config.store.url)
    stored = store.query("SELECT camera_id, COUNT(*), COUNT(matched_subject) FROM face_embeddings "
                         "GROUP BY camera_id ORDER BY camera_id")
    store.close()
    assert [(c, m) for c, _, m in stored] == [("night-market", 0), ("port-gate", 0)], stored

    # Enrolled afterwards, from other photos of the same people.
    watchlist = Watchlist(config.kafka)
    watchlist.add_face("W-44", "Barack Obama", "wanted", [str(FACES / OBAMA_ENROLLED)], added_by="test")
    watchlist.add_face("W-45", "Joe Biden", "suspect", [str(FACES / BIDEN_ENROLLED)], added_by="test")
    watchlist.add_plate("51F-123.45", reason="test", added_by="test")

    started = time.monotonic()
    rc, lines, err = search(capsys, config_file, "--subject", "W-44", "--since", "24h")
    search_s = time.monotonic() - started
    assert rc == 0, err
    first_search = lines
    summary = json.loads(lines[-1])
    assert summary["subject"] == "W-44" and summary["matches"] >= 1 and summary["cameras"] == 1
    assert summary["searched"] == sum(n for _, n, _ in stored)
    assert lines[:-1] and all("port-gate" in line and "night-market" not in line
                              for line in lines[:-1]), lines
    # no progress bar without a terminal: stderr says only which config and store were read
    assert [line for line in err.splitlines() if not line.startswith("camflow: config ")] == []

    rc, lines, err = search(capsys, config_file, "--subject", "W-45", "--since", "7d")
    summary = json.loads(lines[-1])
    assert rc == 0 and summary["matches"] >= 1 and summary["cameras"] == 1
    assert all("night-market" in line for line in lines[:-1]), lines

    # A window that ends before the sighting finds nothing; wrong input is refused clearly.
    rc, lines, _ = search(capsys, config_file, "--subject", "W-44", "--since", "90s")
    assert rc == 0 and json.loads(lines[-1])["searched"] == 0
    rc, _, err = search(capsys, config_file, "--subject", "W-404")
    assert rc == 2 and "no face subject 'W-404'" in err
    rc, _, err = search(capsys, config_file, "--subject", "51F12345")
    assert rc == 2 and "is a plate" in err
    rc, _, err = search(capsys, config_file, "--subject", "W-44", "--since", "yesterday")
    assert rc == 2 and "--since" in err

    # Now that W-44 is enrolled, the job marks the faces it matches (kept past the retention).
    publish_still(config, "port-gate", FACES / "tests__test_images__obama3.jpg", now - 30_000,
                 first_sequence=100)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        matched = [f for f in wait_for_faces(config, {"port-gate"}, timeout_s=5)
                   if f["matched_subject"] is not None]
        if matched:
            break
        time.sleep(2)
    assert matched and {f["matched_subject"] for f in matched} == {"W-44"}
    assert all(f["sequence"] >= 100 for f in matched)
    with capsys.disabled():
        print(f"\ntimings: job to faces {job_s:.1f}s, search {search_s:.1f}s; W-44 search:\n" +
              "\n".join(first_search))
