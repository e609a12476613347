"""`camflow status` arithmetic and table, on reports shaped like the real ones."""
from camflow.services.status import checkpoint_text, duration, format_status, lags


def test_lag_is_end_minus_committed_per_partition():
    result = lags({0: 10, 1: 5}, {0: 7, 1: 5})
    assert result["lag"] == 3 and result["committed"] == 12 and result["has_committed"]
    assert result["partitions"] == {"0": {"committed": 7, "lag": 3}, "1": {"committed": 5, "lag": 0}}


def test_a_group_without_commits_lags_by_everything():
    result = lags({0: 4}, {0: None})
    assert result["lag"] == 4 and not result["has_committed"]


def test_an_end_offset_below_the_committed_one_is_not_a_lag():
    # Tansu reports end offset 1 after one batch of 6 records that the group has read
    result = lags({0: 1}, {0: 6})
    assert result["lag"] is None and result["partitions"]["0"]["lag"] is None


def report(lag):
    return {"time_ms": 1_000_000, "kafka": {"bootstrap_servers": "b:9092", "exact": False, "topics": [
        {"topic": "frames", "kind": "frames", "exists": True, "partitions": 1, "end": {"0": 1},
         "groups": [{"group": "g-job-frames", "committed": 6, "has_committed": True, "lag": lag,
                     "partitions": {"0": {"committed": 6, "lag": lag}}}]},
        {"topic": "dead-letters", "kind": "dead_letters", "exists": True, "partitions": 1,
         "end": {"0": 2}, "groups": []},
        {"topic": "sightings", "kind": "sightings", "exists": False}]},
        "flink": {"url": "http://f:8081", "reachable": True, "jobs": [
            {"id": "a" * 32, "name": "camflow-x", "state": "RUNNING", "started_ms": 0,
             "duration_ms": 3_723_000, "restarts": 2,
             "checkpoints": {"completed": 5, "failed": 0, "in_progress": 0, "last_failed_ms": None,
                             "last": {"id": 5, "time_ms": 990_000, "duration_ms": 40,
                                      "size_bytes": 2_500_000}}}]}}


def test_table_marks_wrong_end_offsets_and_shows_job_health():
    lines = format_status(report(None))
    frames = next(line for line in lines if line.startswith("frames"))
    assert frames.split()[-1] == "?" and "g-job-frames" in frames
    assert any("--exact" in line for line in lines)
    assert next(line for line in lines if line.startswith("sightings")).split()[-1] == "missing"
    job = next(line for line in lines if line.startswith("a" * 32))
    assert "RUNNING" in job and "1h02m" in job and "#5 10s ago, 40 ms, 2.5 MB" in job
    assert not any("--exact" in line for line in format_status(report(0)))


def test_unreachable_flink_is_said_so():
    r = report(0)
    r["flink"] = {"url": "http://f:8081", "reachable": False, "error": "refused", "jobs": []}
    assert format_status(r)[-1] == "Flink http://f:8081: not reachable (refused)"
    assert duration(None) == "-" and checkpoint_text(None, 0) == "-"
