"""The analysts' example queries (infra/sql/examples.sql) run on the store, and 'busiest
cameras per hour' counts honestly on a store whose answer is known: one window length per
camera (its tumbling windows; the longer, overlapping sliding windows never count), distinct
people per window never added up across windows, and the peak at once."""
from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from camflow.services.store import AnalystStore

REPO = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("CAMFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/camflow")
HOUR = 3_600_000
T0 = 1_764_000_000_000 // HOUR * HOUR  # an hour boundary

# walkway: 10 s tumbling windows (and 30 s sliding ones), six in the first hour, one after.
PEOPLE = [5, 7, 6, 4, 8, 3]          # distinct person tracks per 10 s window
AT_ONCE = [3, 4, 4, 2, 5, 2]         # most persons in one frame
MOTORCYCLES = [1, 0, 2, 0, 0, 1]
CARS = [0, 1, 0, 0, 1, 0]


def statements() -> dict[str, str]:
    """Each example by the first line of its comment."""
    text = (REPO / "infra" / "sql" / "examples.sql").read_text()
    found = {}
    for chunk in re.split(r";\s*\n", text):
        lines = chunk.strip().splitlines()
        first_code = next((i for i, line in enumerate(lines)
                           if line.strip() and not line.startswith("--")), len(lines))
        block = first_code  # the comment block just above the query: its first line names it
        while block > 0 and lines[block - 1].startswith("--"):
            block -= 1
        title = lines[block][3:].strip() if block < first_code else None
        body = "\n".join(line for line in lines if not line.startswith("--")).strip()
        if title and body:
            found[title] = body
    return found


def window(camera, start, length, people, at_once, motorcycles=0, cars=0):
    return {"camera_id": camera, "window_start_ms": start, "window_end_ms": start + length,
            "frames": 40, "unique_tracks": people + motorcycles + cars, "anomaly_score": None,
            "counts_by_class": {"person": at_once, "motorcycle": min(motorcycles, 1), "car": min(cars, 1)},
            "mean_by_class": {"person": at_once / 2},
            "unique_tracks_by_class": {"person": people, "motorcycle": motorcycles, "car": cars}}


def fill(store: AnalystStore) -> None:
    for i, people in enumerate(PEOPLE):
        store.upsert_aggregate(window("walkway", T0 + i * 10_000, 10_000, people, AT_ONCE[i],
                                      MOTORCYCLES[i], CARS[i]))
    for i in range(-2, len(PEOPLE)):  # sliding 30 s windows every 10 s: bigger numbers, overlapping
        store.upsert_aggregate(window("walkway", T0 + i * 10_000, 30_000, 15, 9, 3, 2))
    store.upsert_aggregate(window("walkway", T0 + HOUR + 20_000, 10_000, 2, 1))
    for i in range(3):  # another camera with 1-minute windows only
        store.upsert_aggregate(window("gate", T0 + i * 60_000, 60_000, 10 + i, 4 + i))
    store.commit()


@pytest.fixture(params=["duckdb", "postgresql"])
def store(request, tmp_path):
    if request.param == "duckdb":
        store = AnalystStore(f"duckdb:///{tmp_path}/examples.duckdb")
    else:
        try:
            store = AnalystStore(PG_URL)
        except Exception as exc:  # noqa: BLE001 -- make test starts it (infra/postgres.sh)
            pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc}")
        for table in ("aggregate_counts", "aggregates", "line_crossings"):
            store.execute(f"DELETE FROM {table} WHERE camera_id IN ('walkway', 'gate')")
        store.commit()
    fill(store)
    yield store
    store.close()


def test_busiest_cameras_per_hour_counts_honestly(store):
    rows = store.query(statements()["Busiest cameras per hour, counted honestly."])
    got = {(camera, hour.replace(tzinfo=None) if isinstance(hour, datetime) else hour):
           tuple(int(v) for v in rest) for camera, hour, *rest in rows
           if camera in ("walkway", "gate")}
    first = datetime.fromtimestamp(T0 / 1000, timezone.utc).replace(tzinfo=None)
    second = datetime.fromtimestamp((T0 + HOUR) / 1000, timezone.utc).replace(tzinfo=None)
    # window_s, windows, most people in a window, most vehicles in a window, most at once
    assert got[("walkway", first)] == (10, 6, max(PEOPLE), 2, max(AT_ONCE))
    assert got[("walkway", second)] == (10, 1, 2, 0, 1)
    assert got[("gate", first)] == (60, 3, 12, 0, 6)
    # what the old query answered: every distinct track of every window, sliding ones too
    summed = store.query("SELECT SUM(unique_tracks) FROM aggregate_counts "
                         "WHERE camera_id = 'walkway' AND class_name = 'person' "
                         f"AND window_start_ms < {T0 + HOUR}")[0][0]
    assert summed > 4 * max(PEOPLE)


def test_every_example_runs(store):
    for title, sql in statements().items():
        store.query(sql)  # raises on a query the store cannot run
        store.commit() if store.kind == "duckdb" else store.conn.rollback()
