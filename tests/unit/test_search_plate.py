"""`camflow search --plate`: a plate's path across cameras from the fused per-track reads in
the analyst store (a real DuckDB store), exact and fuzzy, audited."""
import json
import time

import pytest

from camflow.commands import main as camflow_main
from camflow.services.search import SearchError, plate_path
from camflow.services.store import AnalystStore

MIN = 60_000


@pytest.fixture
def now_ms():
    """Now, when the test runs: `--since` counts back from the real clock."""
    return int(time.time() * 1000)


@pytest.fixture
def store_url(tmp_path, now_ms):

    url = f"duckdb:///{tmp_path}/plates.duckdb"
    store = AnalystStore(url)
    # A vehicle leaves the port, is misread once (8 -> B) at the airport gate, arrives at the
    # market; another vehicle passes the port; a third read is too old for --since 1h.
    for camera, track, first, text, display, reads in [
            ("port-gate", 4, now_ms - 50 * MIN, "51F59881", "51F-598.81", 6),
            ("airport-gate", 9, now_ms - 30 * MIN, "51F5988B", "51F-598.8B", 3),
            ("market-2", 2, now_ms - 10 * MIN, "51F59881", "51F-598.81", 5),
            ("port-gate", 7, now_ms - 40 * MIN, "51F82606", "51F-826.06", 4),
            ("market-2", 1, now_ms - 3 * 60 * MIN, "51F59881", "51F-598.81", 2)]:
        store.upsert_vehicle_plate(camera, track, first, first + 20_000, text, display, reads, 0.9, 1)
    store.commit()
    store.close()
    return url


def test_exact_plate_path_in_time_order(store_url, now_ms):
    store = AnalystStore(store_url)
    try:
        path = plate_path(store, "51F-598.81", now_ms - 60 * MIN)
    finally:
        store.close()
    assert [(p.camera_id, p.track_id) for p in path] == [("port-gate", 4), ("market-2", 2)]
    assert all(p.distance == 0 for p in path)


def test_fuzzy_also_finds_the_misread_passage_and_not_other_plates(store_url, now_ms):
    store = AnalystStore(store_url)
    try:
        path = plate_path(store, "51F59881", now_ms - 60 * MIN, fuzzy=True)
        with pytest.raises(SearchError, match="too short"):
            plate_path(store, "51", 0)
    finally:
        store.close()
    assert [p.camera_id for p in path] == ["port-gate", "airport-gate", "market-2"]
    assert path[1].plate == "51F5988B" and 0 < path[1].distance <= 1


def test_the_cli_prints_the_path_and_audits_the_search(store_url, tmp_path, capsys):
    config = tmp_path / "camflow.yaml"
    config.write_text("time_zone: Asia/Ho_Chi_Minh\ncameras:\n"
                      "  - {id: port-gate, location: {site: Bai Vong port}}\n")
    assert camflow_main(["search", "--plate", "51F-598.81", "--fuzzy", "--since", "1h",
                         "--store", store_url, "--config", str(config)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert summary["passages"] == 3 and summary["cameras"] == 3
    assert "Bai Vong port" in out[0] and "51F-598.81" in out[0]
    store = AnalystStore(store_url)
    try:
        audit = store.access_log()
    finally:
        store.close()
    assert [(row[2], row[3]) for row in audit][-1] == ("plate_search", "51F-598.81")
    assert camflow_main(["search", "--config", str(config), "--store", store_url]) == 2
