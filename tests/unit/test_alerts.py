import json
import re
from pathlib import Path

import pytest

from camflow.transforms.alerts import CrowdLimitRule, alert_id, time_bucket

T0 = 1_700_000_040_000  # a multiple of 60 s
ALERT_SCHEMA = Path(__file__).parents[2] / "schemas" / "alert.avsc"


def window(persons, camera_id="cam-1", start=T0, end=T0 + 60_000, cars=0):
    counts = {"person": persons, **({"car": cars} if cars else {})}
    return {
        "camera_id": camera_id,
        "window_start_ms": start,
        "window_end_ms": end,
        "frames": 600,
        "counts_by_class": counts,
        "mean_by_class": {k: v / 2 for k, v in counts.items()},
        "unique_tracks": persons + cars,
        "unique_tracks_by_class": counts,
    }


def test_alert_id_is_deterministic_hex():
    first = alert_id("crowd_limit", "cam-1", "person", T0)
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert alert_id("crowd_limit", "cam-1", "person", T0) == first
    # Pinned: ids must not change between releases, or replays after an upgrade would
    # duplicate alerts already in the store.
    assert first == alert_id("crowd_limit", "cam-1", "person", float(T0))
    assert alert_id("crowd_limit", "cam-1", "person", 0) == "2274067c6ca200f9965afed5f077475e"


def test_alert_id_changes_with_every_field():
    base = ("crowd_limit", "cam-1", "person", T0)
    ids = {alert_id(*base)}
    for index, other in enumerate(("loitering", "cam-2", "car", T0 + 1)):
        changed = list(base)
        changed[index] = other
        ids.add(alert_id(*changed))
    assert len(ids) == 5


def test_alert_id_fields_cannot_bleed_into_each_other():
    assert alert_id("a|b", "c", "s", 0) != alert_id("a", "b|c", "s", 0)
    assert alert_id("ab", "c", "s", 0) != alert_id("a", "bc", "s", 0)


def test_time_bucket():
    assert time_bucket(T0 + 123_456, 300_000) == T0 + 123_456 - (T0 + 123_456) % 300_000
    assert time_bucket(299_999, 300_000) == 0
    assert time_bucket(300_000, 300_000) == 300_000
    with pytest.raises(ValueError):
        time_bucket(1, 0)


def test_no_alert_at_or_below_the_limit_or_without_a_limit():
    rule = CrowdLimitRule({"cam-1": 10})
    assert rule.evaluate(window(10)) == []
    assert rule.evaluate(window(3)) == []
    assert rule.evaluate(window(50, camera_id="cam-unconfigured")) == []
    assert rule.evaluate({**window(0), "counts_by_class": {"car": 40}}) == []


def test_crowd_alert_exact_record():
    rule = CrowdLimitRule({"cam-1": 10})
    [alert] = rule.evaluate(window(12, cars=3))
    evidence = json.loads(alert.pop("evidence"))
    assert alert == {
        "alert_id": alert_id("crowd_limit", "cam-1", "person", T0 + 60_000),
        "type": "crowd_limit",
        "severity": "warning",
        "camera_id": "cam-1",
        "time_ms": T0 + 60_000,
        "subject": "person",
        "score": 1.2,
        "track_id": None,
        "evidence_jpeg": None,
        "evidence_ref": None,
    }
    assert evidence == {
        "window_start_ms": T0,
        "window_end_ms": T0 + 60_000,
        "frames": 600,
        "crowd_limit": 10,
        "max_persons_in_frame": 12,
        "counts_by_class": {"person": 12, "car": 3},
        "mean_by_class": {"person": 6.0, "car": 1.5},
    }


@pytest.mark.parametrize(
    "persons, severity", [(11, "info"), (12, "warning"), (14, "warning"), (15, "critical"),
                          (100, "critical")]
)
def test_severity_grows_with_the_overshoot(persons, severity):
    [alert] = CrowdLimitRule({"cam-1": 10}).evaluate(window(persons))
    assert alert["severity"] == severity
    assert alert["score"] == persons / 10


def test_replayed_window_gives_the_identical_alert():
    rule = CrowdLimitRule({"cam-1": 10})
    assert rule.evaluate(window(13)) == CrowdLimitRule({"cam-1": 10}).evaluate(window(13))


def test_sliding_windows_in_one_dedupe_bucket_share_an_alert_id():
    rule = CrowdLimitRule({"cam-1": 10}, dedupe_bucket_ms=300_000)
    bucket_start = time_bucket(T0, 300_000)
    ends = [bucket_start + 60_000, bucket_start + 120_000, bucket_start + 300_000]
    ids = [rule.evaluate(window(20, start=e - 60_000, end=e))[0]["alert_id"] for e in ends]
    assert ids[0] == ids[1] != ids[2]
    # Each alert still reports its own window end as its time.
    assert rule.evaluate(window(20, end=ends[1]))[0]["time_ms"] == ends[1]


def test_default_limit_covers_cameras_without_their_own():
    rule = CrowdLimitRule({"cam-1": 10}, default_limit=4)
    [alert] = rule.evaluate(window(5, camera_id="cam-2"))
    assert alert["score"] == 1.25
    assert rule.evaluate(window(5)) == []  # cam-1's own limit wins


def test_alert_satisfies_the_avro_contract():
    fastavro = pytest.importorskip("fastavro")
    schema = fastavro.parse_schema(json.loads(ALERT_SCHEMA.read_text()))
    [alert] = CrowdLimitRule({"cam-1": 10}).evaluate(window(30))
    assert fastavro.validation.validate(alert, schema, raise_errors=True)
    assert set(alert) <= {f["name"] for f in schema["fields"]}


def test_rule_configuration_is_validated():
    with pytest.raises(ValueError):
        CrowdLimitRule({"cam-1": 0})
    with pytest.raises(ValueError):
        CrowdLimitRule({"cam-1": 5}, warning_ratio=2.0, critical_ratio=1.5)
    with pytest.raises(ValueError):
        CrowdLimitRule({"cam-1": 5}, dedupe_bucket_ms=0)
    with pytest.raises(ValueError):
        CrowdLimitRule({}, default_limit=0)
