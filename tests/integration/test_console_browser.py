"""The console as an operator sees it, in headless Chromium: `camflow console` (a child process)
over a store holding alerts as the sink writes them, their snapshots in a file evidence store
(written with ``EvidenceStore.put``, as the job does) and its live feed on the real broker.

The alert list shows each alert's thumbnail and reason; an alert's page shows its snapshot
(decoded by the browser), the reason as a sentence over the folded raw evidence, times in the
deployment's time zone (Asia/Ho_Chi_Minh: +07); a watchlist crop still shows; an alert without
a picture says so, and one whose snapshot has expired says that instead of a broken image.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest
import yaml

from camflow.core.evidence_store import EvidenceStore
from camflow.services.console.auth import hash_password
from camflow.services.store import AnalystStore
from tests.integration.browser import broken_images, browser, screenshot  # noqa: F401

pytestmark = [pytest.mark.integration]
PASSWORD = "alice-operator-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def picture(width: int, height: int, colour) -> bytes:
    """A frame with a red box on it, as a snapshot looks."""
    image = np.full((height, width, 3), colour, np.uint8)
    cv2.rectangle(image, (width // 3, height // 4), (width // 2, height - 20), (0, 0, 255), 3)
    return cv2.imencode(".jpg", image)[1].tobytes()


def real_clip() -> bytes:
    """An H.264 clip made by the sink's encoder from 6 frames of vtest.avi (a blank frame
    when the shared footage is absent: what is tested is that the browser plays H.264)."""
    from pathlib import Path

    from camflow.services.clips import encode_clip
    video = Path(__file__).resolve().parents[3] / "shared" / "data" / "video" / "vtest.avi"
    cap = cv2.VideoCapture(str(video))
    frames = []
    for i in range(6):
        ok, image = cap.read()
        image = image if ok else np.full((360, 640, 3), 90, np.uint8)
        frames.append((i * 1000, cv2.imencode(".jpg", image)[1].tobytes()))
    cap.release()
    return encode_clip(frames, fps=5).data


def alert(alert_id: str, alert_type: str, time_ms: int, evidence: str, **more) -> dict:
    return {"alert_id": alert_id, "type": alert_type, "severity": "warning", "camera_id": "port-gate",
            "time_ms": time_ms, "subject": "person", "score": 1.33, "track_id": None,
            "evidence": evidence, "evidence_jpeg": None, "evidence_ref": None, **more}


@pytest.fixture
def console(kafka_bootstrap, make_topics, tmp_path):
    """`camflow console` on a DuckDB store with four alerts; yields (url, alerts by name)."""
    now = int(time.time() * 1000)
    evidence_url = f"file://{tmp_path}/evidence"
    evidence = EvidenceStore(evidence_url)
    crowd = alert("crowd1", "crowd_limit", now - 60_000,
                  '{"crowd_limit": 6, "frames": 35, "max_persons_in_frame": 8}')
    crowd["evidence_ref"] = evidence.put(crowd, "jpg", picture(1280, 720, (60, 110, 150)))
    expired = alert("gone1", "loitering", now - 120_000,
                    '{"dwell_ms": 360000, "max_dwell_ms": 300000, "zone_id": "bench"}', track_id=4)
    expired["evidence_ref"] = evidence.put(expired, "jpg", picture(640, 360, (90, 90, 90)))
    (tmp_path / "evidence" / "port-gate" / "gone1.jpg").unlink()  # past its retention
    face = alert("face1", "watchlist_face", now - 180_000,
                 '{"name": "Barack Obama", "category": "wanted", "similarity": 0.95, '
                 '"threshold": 0.91, "confirmations": 2}', subject="W-7", severity="critical",
                 evidence_jpeg=picture(160, 200, (120, 160, 200)))
    plain = alert("offline1", "camera_offline", now - 240_000,
                  '{"silent_ms": 150000, "offline_after_ms": 120000}', subject="camera")
    store_url = f"duckdb:///{tmp_path}/analyst.duckdb"
    store = AnalystStore(store_url)
    for a in (crowd, expired, face, plain):
        store.upsert_alert(a)
    # The crowd alert's clip, as the sink cuts it: real frames of vtest.avi, 1 s apart.
    store.set_clip_ref("crowd1", evidence.put(crowd, "mp4", real_clip()))
    store.commit()
    store.close()  # DuckDB: one process holds the file, the console from now on

    topic = f"alerts-{uuid.uuid4().hex[:8]}"
    make_topics({topic: 1})
    port = free_port()
    config = {"deployment": "island", "time_zone": "Asia/Ho_Chi_Minh",
              "cameras": [{"id": "port-gate", "location": {"site": "Bai Vong port gate"}}],
              "kafka": {"bootstrap_servers": kafka_bootstrap, "topics": {"alerts": topic}},
              "store": {"url": store_url}, "evidence": {"url": evidence_url},
              "console": {"port": port, "users": [{"name": "alice", "role": "operator",
                                                   "password_hash": hash_password(PASSWORD)}]}}
    path = tmp_path / "console.yaml"
    path.write_text(yaml.safe_dump(config))
    log = open(tmp_path / "console.log", "w")
    child = subprocess.Popen([sys.executable, "-m", "camflow.commands", "console", "--config", str(path)],
                             env={**os.environ, "CAMFLOW_CONSOLE_SECRET": uuid.uuid4().hex},
                             stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                    if b'"feed_connected":true' in r.read():
                        break
            except OSError:
                pass
            assert child.poll() is None, (tmp_path / "console.log").read_text()
            assert time.monotonic() < deadline, "console did not come up in 60 s"
            time.sleep(0.5)
        yield url, {"crowd": crowd, "face": face, "plain": plain, "expired": expired}
    finally:
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
        log.close()
        print(f"--- console log ---\n{(tmp_path / 'console.log').read_text()[-3000:]}")


def loaded(page, selector: str) -> int:
    """The natural width of the image at ``selector`` once the browser has it (0: broken)."""
    page.wait_for_function("s => document.querySelector(s) && document.querySelector(s).complete",
                           arg=selector)
    return page.evaluate("s => document.querySelector(s).naturalWidth", selector)


def test_operator_sees_snapshots_reasons_and_local_times(console, browser):  # noqa: F811
    url, alerts = console
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(url + "/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")

    # The list: a thumbnail where the alert has a picture, its reason, local times.
    page.wait_for_selector("#alert-crowd1")
    assert loaded(page, "#alert-crowd1 img.thumb") > 0
    assert page.evaluate("() => document.querySelector('#alert-crowd1 img.thumb').width") == 96
    assert loaded(page, "#alert-face1 img.thumb") > 0  # the crop of a watchlist alert
    assert page.locator("#alert-offline1 img").count() == 0
    row = page.inner_text("#alert-crowd1")
    assert "8 people in view at once, limit 6 (window of 35 frames)" in row and "+07" in row
    assert "Asia/Ho_Chi_Minh" in page.inner_text("#alerts thead")
    page.wait_for_function("() => !document.querySelector('#alert-gone1 img')")  # expired: none
    assert broken_images(page) == []
    screenshot(page, "console-list-thumbnails.png")

    # The alert: its snapshot, the reason on top, raw evidence folded, the time in +07.
    page.click("#alert-crowd1 td:nth-child(3) a")
    page.wait_for_selector("#snapshot")
    assert loaded(page, "#snapshot") == 1280
    assert page.inner_text("#why") == "8 people in view at once, limit 6 (window of 35 frames)"
    assert not page.evaluate("() => document.getElementById('raw-evidence').open")
    page.click("#raw-evidence summary")  # unfolds the raw evidence
    assert '"max_persons_in_frame": 8' in page.inner_text("#raw-evidence pre")
    local = datetime.fromtimestamp(alerts["crowd"]["time_ms"] / 1000, ZoneInfo("Asia/Ho_Chi_Minh"))
    assert page.inner_text("#alert-time") == local.strftime("%Y-%m-%d %H:%M:%S +07")
    assert "sends no image" not in page.inner_text("main")
    assert broken_images(page) == []
    # Its clip: the browser decodes the H.264 (a first frame with a size, a duration of ~6 s).
    page.wait_for_function("() => { const v = document.getElementById('clip'); "
                           "return v && (v.error || v.readyState >= 1); }")
    clip = page.evaluate("() => { const v = document.getElementById('clip'); return "
                         "{error: v.error && v.error.code, width: v.videoWidth, duration: v.duration}; }")
    assert clip["error"] is None and clip["width"] > 0 and 5 <= clip["duration"] <= 7, clip
    screenshot(page, "console-alert-snapshot.png")

    # A watchlist alert keeps its crop; a liveness alert has no picture and says so.
    page.goto(f"{url}/alerts/face1")
    assert loaded(page, "#evidence") == 160
    assert page.inner_text("#why").startswith("Face matches watchlist entry W-7, Barack Obama, wanted")
    page.goto(f"{url}/alerts/offline1")
    assert "This rule sends no image." in page.inner_text("main")
    assert page.inner_text("#why") == "No frame for 2 min 30 s (offline after 2 min)"

    # A snapshot past the evidence store's retention: a note, not a broken image.
    page.goto(f"{url}/alerts/gone1")
    page.wait_for_selector("p.gone")
    assert "No longer in the evidence store." in page.inner_text("main")
    assert broken_images(page) == []
    context.close()
