"""Console logins and roles, through the app's HTTP interface (Starlette's test client) over a
DuckDB store; the live feed is filled directly (the Kafka path is tested end to end in
tests/integration/test_console_live.py)."""
from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from camflow.config import Config, ConfigError, load_config
from camflow.services.console.app import create_app
from camflow.services.console.auth import authenticate, hash_password, verify_password
from camflow.services.console.feed import AlertFeed
from camflow.services.store import AnalystStore

OPERATOR_HASH = hash_password("operator-pass")
VIEWER_HASH = hash_password("viewer-pass")


def test_password_hashes_verify_and_are_salted():
    assert verify_password("operator-pass", OPERATOR_HASH)
    assert not verify_password("operator-pasS", OPERATOR_HASH)
    assert hash_password("operator-pass") != OPERATOR_HASH
    assert not verify_password("x", "not-a-hash")


def test_config_refuses_a_plain_password(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("console:\n  users:\n    - {name: a, role: operator, password_hash: hunter22}\n")
    with pytest.raises(ConfigError, match="console.users.0.password_hash"):
        load_config(path)


@pytest.fixture
def console(tmp_path):
    url = f"duckdb:///{tmp_path}/store.duckdb"
    config = Config.model_validate({
        "cameras": [{"id": "gate", "location": {"site": "Port gate", "lat": 10.1, "lon": 104.0}}],
        "store": {"url": url},
        "console": {"users": [{"name": "alice", "role": "operator", "password_hash": OPERATOR_HASH},
                              {"name": "victor", "role": "viewer", "password_hash": VIEWER_HASH}]}})
    assert authenticate(config.console.users, "alice", "operator-pass").role == "operator"
    assert authenticate(config.console.users, "nobody", "operator-pass") is None
    feed = AlertFeed(config.kafka, "unused")  # not started: alerts are added by the test
    feed.add_alert({"alert_id": "a1", "type": "watchlist_face", "severity": "critical",
                    "camera_id": "gate", "time_ms": 1_790_000_000_000, "subject": "W-7",
                    "score": 0.95, "track_id": 3, "evidence": "{}", "evidence_jpeg": b"\xff\xd8jpeg"})
    app = create_app(config, feed=feed, secret="test-secret")
    return TestClient(app, base_url="http://127.0.0.1"), url, feed


def login(client, name, password):
    return client.post("/login", data={"username": name, "password": password, "next": "/"},
                       follow_redirects=False)


def test_pages_need_a_login(console):
    client, _, _ = console
    assert client.get("/", follow_redirects=False).status_code == 303
    assert client.get("/api/alerts").status_code == 401
    assert client.get("/api/alerts/a1/evidence.jpg").status_code == 401
    page = login(client, "alice", "wrong")
    assert page.status_code == 200 and "wrong password" in page.text


def test_operator_acknowledges_and_the_store_keeps_who(console):
    client, url, feed = console
    assert login(client, "alice", "operator-pass").status_code == 303
    alerts = client.get("/api/alerts").json()["alerts"]
    assert [a["alert_id"] for a in alerts] == ["a1"] and alerts[0]["has_evidence"]
    assert client.get("/api/alerts/a1/evidence.jpg").content == b"\xff\xd8jpeg"
    done = client.post("/api/alerts/a1/actions", json={"action": "acknowledge"})
    assert done.status_code == 200 and done.json()["actor"] == "alice"
    assert client.post("/api/alerts/a1/actions", json={"action": "delete"}).status_code == 422
    assert client.post("/api/alerts/zz/actions", json={"action": "dismiss"}).status_code == 404
    assert feed.since(0)[-1][1] == "action"  # open pages hear of it
    store = AnalystStore(url)
    try:
        assert store.query("SELECT alert_id, action, actor FROM alert_actions") == [
            ("a1", "acknowledge", "alice")]
        store.upsert_alert(feed.get("a1"))  # what the sink writes; the view joins the two
        assert store.query("SELECT type, action, actor FROM alert_status") == [
            ("watchlist_face", "acknowledge", "alice")]
    finally:
        store.close()


def test_viewer_sees_but_cannot_act(console):
    client, url, _ = console
    assert login(client, "victor", "viewer-pass").status_code == 303
    assert client.get("/api/alerts").json()["role"] == "viewer"
    assert client.post("/api/alerts/a1/actions", json={"action": "dismiss"}).status_code == 403
    assert "Acknowledge" not in client.get("/alerts/a1").text
    store = AnalystStore(url)
    try:
        assert store.query("SELECT COUNT(*) FROM alert_actions") == [(0,)]
    finally:
        store.close()


def test_cameras_without_frames_are_offline(console):
    client, _, _ = console
    login(client, "victor", "viewer-pass")
    cameras = client.get("/api/cameras").json()["cameras"]
    assert cameras == [{**cameras[0], "camera_id": "gate", "status": "offline", "reason": "never seen"}]


def test_cli_hashes_a_password_from_stdin(monkeypatch, capsys):
    import io

    from camflow.commands import main
    monkeypatch.setattr("sys.stdin", io.StringIO("long enough password\n"))
    assert main(["console", "hash-password"]) == 0
    encoded = capsys.readouterr().out.strip()
    assert verify_password("long enough password", encoded)
    Config.model_validate({"console": {"users": [{"name": "a", "role": "viewer", "password_hash": encoded}]}})
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["console", "hash-password"]) == 2


def test_store_outage_is_a_clear_503(tmp_path):
    config = Config.model_validate({
        "store": {"url": "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"},
        "console": {"users": [{"name": "alice", "role": "operator", "password_hash": OPERATOR_HASH}]}})
    client = TestClient(create_app(config, feed=AlertFeed(config.kafka, "unused"), secret="s"),
                        base_url="http://127.0.0.1", raise_server_exceptions=False)
    login(client, "alice", "operator-pass")
    answer = client.get("/api/alerts")
    assert answer.status_code == 503 and "unavailable" in answer.json()["detail"]
    assert client.get("/cameras").status_code == 503


def snapshot_jpeg(width: int = 640, height: int = 360) -> bytes:
    import cv2
    import numpy as np
    image = np.full((height, width, 3), (40, 90, 160), np.uint8)
    cv2.rectangle(image, (200, 100), (300, 300), (0, 0, 255), 3)
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_snapshot_and_clip_come_from_the_evidence_store_and_each_view_is_logged(tmp_path):
    """What the alert page shows: the snapshot and the clip (read by the console from the
    evidence store, never by the browser from the store's URLs), the reason as a sentence and
    local times; a reference outside the evidence store is refused."""
    import time
    from datetime import datetime
    from zoneinfo import ZoneInfo

    import cv2
    import numpy as np

    from camflow.core.evidence_store import EvidenceStore
    now_ms = int(time.time() * 1000) - 60_000
    local = datetime.fromtimestamp(now_ms / 1000, ZoneInfo("Asia/Ho_Chi_Minh"))
    url = f"duckdb:///{tmp_path}/store.duckdb"
    evidence = EvidenceStore(f"file://{tmp_path}/evidence")
    config = Config.model_validate({
        "time_zone": "Asia/Ho_Chi_Minh", "store": {"url": url},
        "evidence": {"url": f"file://{tmp_path}/evidence"},
        "console": {"users": [{"name": "alice", "role": "operator", "password_hash": OPERATOR_HASH}]}})
    crowd = {"alert_id": "c1", "type": "crowd_limit", "severity": "warning", "camera_id": "gate",
             "time_ms": now_ms, "subject": "person", "score": 1.33, "track_id": None,
             "evidence": '{"crowd_limit": 6, "frames": 35, "max_persons_in_frame": 8}',
             "evidence_jpeg": None}
    jpeg, mp4 = snapshot_jpeg(), b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4
    crowd["evidence_ref"] = evidence.put(crowd, "jpg", jpeg)
    forged = {**crowd, "alert_id": "f1", "evidence_ref": "file:///etc/hostname"}
    plain = {**crowd, "alert_id": "p1", "evidence_ref": None}
    store = AnalystStore(url)
    for alert in (crowd, forged, plain):
        store.upsert_alert(alert)
    store.set_clip_ref("c1", evidence.put(crowd, "mp4", mp4))  # as the sink does once it is made
    store.commit()
    store.close()
    client = TestClient(create_app(config, feed=AlertFeed(config.kafka, "unused"), secret="s"),
                        base_url="http://127.0.0.1")
    assert client.get("/api/alerts/c1/snapshot.jpg").status_code == 401
    assert client.get("/api/alerts/c1/clip.mp4").status_code == 401
    login(client, "alice", "operator-pass")

    listed = {a["alert_id"]: a for a in client.get("/api/alerts").json()["alerts"]}
    assert [listed[a]["has_snapshot"] for a in ("c1", "f1", "p1")] == [True, True, False]
    detail = client.get("/api/alerts/c1").json()
    assert detail["has_snapshot"] and detail["has_clip"] and not detail["has_evidence"]
    assert detail["why"] == "8 people in view at once, limit 6 (window of 35 frames)"
    assert detail["time"] == local.strftime("%Y-%m-%d %H:%M:%S +07")
    assert "evidence_ref" not in detail and "clip_ref" not in detail  # store URLs stay inside

    assert client.get("/api/alerts/c1/snapshot.jpg").content == jpeg
    assert client.get("/api/alerts/c1/evidence.jpg").content == jpeg  # what notify links
    thumb = client.get("/api/alerts/c1/snapshot.jpg?w=96").content
    assert cv2.imdecode(np.frombuffer(thumb, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (54, 96)
    whole = client.get("/api/alerts/c1/clip.mp4")
    assert whole.content == mp4 and whole.headers["content-type"] == "video/mp4"
    part = client.get("/api/alerts/c1/clip.mp4", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == mp4[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(mp4)}"
    assert client.get("/api/alerts/c1/clip.mp4", headers={"Range": f"bytes={len(mp4)}-"}).status_code == 416
    assert client.get("/api/alerts/f1/snapshot.jpg").status_code == 404  # outside the store
    assert client.get("/api/alerts/p1/snapshot.jpg").status_code == 404
    assert client.get("/api/alerts/p1/clip.mp4").status_code == 404

    page = client.get("/alerts/c1").text
    assert '<img id="snapshot"' in page and '<video id="clip"' in page
    assert "sends no image" not in page and "+07" in page
    assert '<p id="why" class="why">8 people in view at once, limit 6' in page
    assert '<details id="raw-evidence">' in page
    assert "This rule sends no image." in client.get("/alerts/p1").text

    store = AnalystStore(url)
    try:  # one entry per view; the seeks of a playing clip (ranges after byte 0) are not views
        views = [row[2:4] for row in store.access_log()]
    finally:
        store.close()
    assert views.count(("snapshot_view", "c1")) == 3 and views.count(("clip_view", "c1")) == 1


def test_a_plate_page_shows_its_path_and_each_view_is_logged(console):
    import time as _time
    client, url, _ = console
    store = AnalystStore(url)
    store.create_schema()
    now = int(_time.time() * 1000)
    store.upsert_vehicle_plate("gate", 4, now - 60_000, now - 50_000, "51F59881", "51F-598.81", 3, 0.9, 10)
    store.upsert_vehicle_plate("gate", 9, now - 20_000, now - 15_000, "51F59B81", "51F-59B.81", 2, 0.8, 30)
    store.commit()
    store.close()
    assert login(client, "victor", "viewer-pass").status_code == 303
    page = client.get("/plates/51F59881")
    assert page.status_code == 200
    assert "1 passages at 1 cameras" in page.text and "track 4" in page.text
    near = client.get("/plates/51F-598.81?fuzzy=true")
    assert "2 passages" in near.text and "track 9" in near.text
    plot = client.get("/api/plates/51F59881/path.png")
    assert plot.status_code == 200 and plot.content[:4] == b"\x89PNG"
    assert client.get("/api/plates/30A12345/path.png").status_code == 404
    assert client.get("/plates/5F").status_code == 400
    store = AnalystStore(url)
    views = [row for row in store.access_log() if row[2] == "plate_view"]
    store.close()
    assert [(row[1], row[3]) for row in views][:2] == [("victor", "51F59881"), ("victor", "51F-598.81")]
