"""``camflow report``: store -> figures -> one self-contained HTML file.

The store is filled through its own upserts (the sink's path) with a day of Phu Quoc-like
traffic: windows every 10 minutes at five camera sites, alerts of several types, a watchlist
subject seen at three sites, and evidence crops.
"""
from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from camflow.config import load_config
from camflow.services.report import bucket_ms, build_report, load, render, tumbling_only
from camflow.services.store import AnalystStore

REPO = Path(__file__).resolve().parents[2]
CAMERAS = ["pq-port-baivong-arrivals", "pq-airport-arrivals-1", "pq-nightmarket-centre",
           "pq-square-hcm", "pq-gw-duongdong-north"]
HOUR = 3_600_000
NOW = 1_790_000_000_000  # a fixed instant, so the data and the assertions are reproducible


def evidence_jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = np.full((96, 96, 3), rng.integers(60, 200, 3), np.uint8)
    cv2.circle(image, (48, 44), 26, (170, 200, 230), -1)
    ok, jpeg = cv2.imencode(".jpg", image)
    assert ok
    return jpeg.tobytes()


def fill_store(store: AnalystStore, now_ms: int = NOW) -> dict:
    """A day of windows (1 h tumbling + 3 h sliding), alerts, sightings and evidence."""
    start = now_ms - 24 * HOUR
    step = HOUR
    expected = {"alerts": 0, "evidence": 0}
    for ci, camera in enumerate(CAMERAS):
        for w in range(start, now_ms, step):
            hour = (w // HOUR + 7) % 24  # local hour in Phu Quoc: busy evenings
            people = int(5 + 20 * np.exp(-((hour - 19) ** 2) / 8) * (ci + 1) / 3)
            for length in (step, 3 * step):  # the sliding windows must not double the counts
                store.upsert_aggregate({
                    "camera_id": camera, "window_start_ms": w, "window_end_ms": w + length,
                    "frames": 600, "unique_tracks": people + 3,
                    "anomaly_score": (4.5 if (camera, hour) == ("pq-nightmarket-centre", 21)
                                      else 0.1 * ci) if length == step else None,
                    "counts_by_class": {"person": people, "motorcycle": 3 + ci},
                    "mean_by_class": {"person": people / 2, "motorcycle": 1.0},
                    "unique_tracks_by_class": {"person": people, "motorcycle": 3 + ci}})
    kinds = ["crowd_limit", "loitering", "wrong_way", "camera_offline"]
    for i in range(40):
        camera = CAMERAS[i % len(CAMERAS)]
        store.upsert_alert({"alert_id": f"a-{i}", "type": kinds[i % len(kinds)], "severity": "warning",
                            "camera_id": camera, "time_ms": start + i * 35 * 60_000, "score": 1.5,
                            "subject": "person", "evidence": "{}"})
        expected["alerts"] += 1
    path = ["pq-port-baivong-arrivals", "pq-square-hcm", "pq-nightmarket-centre"]
    for i, camera in enumerate(path):
        t = now_ms - 5 * HOUR + i * 40 * 60_000
        store.upsert_alert({"alert_id": f"w-{i}", "type": "watchlist_face", "severity": "critical",
                            "camera_id": camera, "time_ms": t, "score": 0.95, "subject": "W-7",
                            "evidence_jpeg": evidence_jpeg(i)})
        store.upsert_sighting({"sighting_id": f"s-{i}", "subject_id": "W-7", "kind": "face",
                               "camera_id": camera, "time_ms": t, "score": 0.95, "track_id": i,
                               "alert_id": f"w-{i}"})
        expected["alerts"] += 1
        expected["evidence"] += 1
    # Before the range: must not show.
    store.upsert_alert({"alert_id": "old", "type": "intrusion", "severity": "warning",
                        "camera_id": CAMERAS[0], "time_ms": start - HOUR, "score": 1.0,
                        "evidence_jpeg": evidence_jpeg(99)})
    store.commit()
    return expected


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


@pytest.fixture
def phu_quoc():
    return load_config(REPO / "infra" / "config" / "phu-quoc.example.yaml")


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    url = f"duckdb:///{tmp_path_factory.mktemp('report')}/analyst.duckdb"
    store = AnalystStore(url)
    expected = fill_store(store)
    store.close()
    return url, expected


def test_report_embeds_every_plot_and_thumbnail_as_data_uris(filled, phu_quoc):
    url, expected = filled
    html = build_report(phu_quoc, NOW - 24 * HOUR, NOW, store_url=url, tz_name="Asia/Ho_Chi_Minh")
    parser = Images()
    parser.feed(html)
    plots = [s for s in parser.sources if s.startswith("data:image/png;base64,")]
    thumbs = [s for s in parser.sources if s.startswith("data:image/jpeg;base64,")]
    # alerts over time, per camera, heatmaps, anomalies, one path
    assert len(plots) == 5 and len(thumbs) == expected["evidence"]
    assert len(parser.sources) == len(plots) + len(thumbs)  # nothing fetched from anywhere
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    for src in plots:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"<b>{expected['alerts']}</b>alerts" in html
    assert "W-7" in html and "pq-nightmarket-centre" in html


def test_sliding_windows_are_not_counted_twice(filled):
    store = AnalystStore(filled[0])
    data = load(store, NOW - 24 * HOUR, NOW)
    store.close()
    assert len(tumbling_only(data.counts)) * 2 == len(data.counts)
    assert {w[2] - w[1] for w in tumbling_only(data.windows)} == {HOUR}
    assert data.evidence and all(e[0] != "old" for e in data.evidence)


def test_empty_store_gives_a_report_that_says_so(tmp_path, phu_quoc):
    store = AnalystStore(f"duckdb:///{tmp_path}/empty.duckdb")
    html = render(load(store, NOW - HOUR, NOW), phu_quoc)
    store.close()
    assert "No alerts in this period." in html and "<img" not in html


def test_subject_path_without_site_coordinates_is_a_timeline(filled):
    from camflow.config import Config
    store = AnalystStore(filled[0])
    html = render(load(store, NOW - 24 * HOUR, NOW), Config())  # no cameras configured
    store.close()
    assert "W-7" in html and "sightings at 3 cameras" in html


@pytest.mark.parametrize("span_h, minutes", [(1, 5), (24, 30), (24 * 7, 360)])
def test_bucket_keeps_bars_readable(span_h, minutes):
    assert bucket_ms(span_h * HOUR) == minutes * 60_000


def test_cli_writes_the_report_and_refuses_bad_options(tmp_path, filled, capsys):
    from camflow.commands import main
    out = tmp_path / "out" / "report.html"
    assert main(["report", "--store", filled[0], "--since", "bogus", "--out", str(out)]) == 2
    assert "--since 'bogus'" in capsys.readouterr().err
    assert main(["report", "--store", filled[0], "--tz", "Mars/Base", "--out", str(out)]) == 2
    assert "unknown time zone" in capsys.readouterr().err
    assert main(["report", "--store", filled[0], "--since", "7d", "--out", str(out)]) == 0
    assert out.read_text().startswith("<!doctype html>")


def test_top_alerts_carry_their_reason_local_time_and_a_scaled_snapshot(tmp_path):
    """The most severe alerts first, each with its sentence, its time in the deployment's zone
    and its snapshot from the evidence store, scaled down and size-capped; a snapshot that
    expired or a reference outside the store leaves that row without a picture."""
    from camflow.config import Config
    from camflow.core.evidence_store import EvidenceStore
    evidence_url = f"file://{tmp_path}/evidence"
    evidence = EvidenceStore(evidence_url)
    config = Config.model_validate({"time_zone": "Asia/Ho_Chi_Minh", "evidence": {"url": evidence_url}})
    url = f"duckdb:///{tmp_path}/analyst.duckdb"
    store = AnalystStore(url)
    noise = np.random.default_rng(3).integers(0, 255, (1080, 1920, 3), np.uint8)  # compresses badly
    alerts = [
        {"alert_id": "crowd", "type": "crowd_limit", "severity": "critical", "camera_id": CAMERAS[0],
         "time_ms": NOW - HOUR, "score": 2.0, "subject": "person",
         "evidence": '{"crowd_limit": 6, "frames": 35, "max_persons_in_frame": 12}'},
        {"alert_id": "expired", "type": "intrusion", "severity": "critical", "camera_id": CAMERAS[1],
         "time_ms": NOW - 2 * HOUR, "score": 1.0, "subject": "person", "evidence": "{}"},
        {"alert_id": "forged", "type": "running", "severity": "warning", "camera_id": CAMERAS[1],
         "time_ms": NOW - 3 * HOUR, "score": 1.5, "subject": "person", "evidence": "{}",
         "evidence_ref": "file:///etc/hostname"},
        {"alert_id": "info", "type": "camera_recovered", "severity": "info", "camera_id": CAMERAS[2],
         "time_ms": NOW - 4 * HOUR, "score": 0.0, "subject": "camera",
         "evidence": '{"silent_ms": 300000}'},
    ]
    alerts[0]["evidence_ref"] = evidence.put(alerts[0], "jpg", cv2.imencode(".jpg", noise)[1].tobytes())
    alerts[1]["evidence_ref"] = evidence.put(alerts[1], "jpg", evidence_jpeg(1))
    Path(alerts[1]["evidence_ref"].removeprefix("file://")).unlink()
    for alert in alerts:
        store.upsert_alert(alert)
    store.commit()
    store.close()
    html = build_report(config, NOW - 24 * HOUR, NOW, store_url=url)
    rows = re.findall(r'<tr id="top-([a-z]+)">(.*?)</tr>', html, re.S)
    assert [r[0] for r in rows] == ["crowd", "expired", "forged", "info"]
    crowd = rows[0][1]
    assert "12 people in view at once, limit 6 (window of 35 frames)" in crowd
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+07", crowd)
    snapshot = re.search(r'src="data:image/jpeg;base64,([^"]+)"', crowd).group(1)
    jpeg = base64.b64decode(snapshot)
    assert len(jpeg) <= 60_000
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (270, 480)
    assert all("<img" not in r[1] for r in rows[1:])
    assert "Frames again after 5 min of silence" in rows[3][1]


def test_a_plate_path_is_drawn_on_the_sites_map_and_audited(filled, phu_quoc):
    url, _ = filled
    store = AnalystStore(url)
    for camera, track, first in (("pq-port-baivong-arrivals", 4, NOW - 5 * HOUR),
                                 ("pq-gw-duongdong-north", 8, NOW - 4 * HOUR),
                                 ("pq-nightmarket-centre", 2, NOW - 2 * HOUR)):
        store.upsert_vehicle_plate(camera, track, first, first + 60_000, "51F59881", "51F-598.81",
                                   4, 0.9, 1)
    store.commit()
    store.close()
    html = build_report(phu_quoc, NOW - 24 * HOUR, NOW, store_url=url, plates=["51F-598.81", "30A12345"])
    assert "51F-598.81 <small>(3 passages at 3 cameras)</small>" in html
    assert "No vehicle track read 30A12345 in this period." in html
    parser = Images()
    parser.feed(html)
    assert len([s for s in parser.sources if s.startswith("data:image/png;base64,")]) == 6
    store = AnalystStore(url)
    searched = [(row[2], row[3], row[4]) for row in store.access_log()]
    store.close()
    assert ("plate_search", "51F-598.81", "report") in searched
