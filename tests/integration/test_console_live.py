"""The console end to end: the real job (mini-cluster, real face models) raises a watchlist
alert while an operator watches the console in headless Chromium; the alert must appear live
(server-sent events, no reload), be acknowledged with the operator's name in the store, show
its evidence image, its reason as a sentence and its time in the deployment's zone, and a
viewer must not be able to act on it. The report over the same store must render its plots.

Processes: the job in this process (as camflow job run does), `camflow sink` and
`camflow console` as child processes on the same broker and a PostgreSQL schema of their own.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from camflow.services.console.auth import hash_password
from camflow.services.store import AnalystStore
from camflow.services.enrolment import Watchlist
from tests.integration.browser import broken_images, browser, screenshot  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces"
PG_URL = os.environ.get("CAMFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/camflow")
USERS = {"alice": ("operator", "alice-operator-pw"), "victor": ("viewer", "victor-viewer-pw")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pg_store():
    psycopg = pytest.importorskip("psycopg")
    schema = f"t_console_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL not reachable at {PG_URL} (make test runs infra/postgres.sh): {exc}")
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def deployment(live_config, built_models, pg_store, tmp_path):
    """The job running, plus the sink and the console as processes; yields (config, url)."""
    if not FACES.is_dir():
        pytest.skip(f"shared face photos not present at {FACES}")
    from camflow.jobs.environment import child_env
    from camflow.jobs.camera_job import start
    port = free_port()
    config = live_config("console", ["port-gate", "night-market"], {
        "window_ms": 5000, "idleness_ms": 1000, "checkpoint_interval_ms": 2000,
        "detector": {"threads": 2}, "tracking": {"min_hits": 2},
        "recognition": {"plates": False, "retry_ms": 0},
        "watchlist": {"confirm_window_ms": 10000, "cooldown_ms": 60000}},
        store={"url": pg_store}, time_zone="Asia/Ho_Chi_Minh",
        evidence={"url": f"file://{tmp_path}/evidence"},
        console={"port": port, "users": [{"name": n, "role": r, "password_hash": hash_password(p)}
                                          for n, (r, p) in USERS.items()]})
    raw = config.model_dump(mode="json")
    raw["cameras"][0]["location"] = {"site": "Bai Vong port gate", "lat": 10.157, "lon": 104.038}
    raw["cameras"][1]["location"] = {"site": "Duong Dong night market", "lat": 10.2167, "lon": 103.9594}
    path = tmp_path / "console.yaml"
    path.write_text(yaml.safe_dump(raw))
    env = {**child_env(), "CAMFLOW_CONSOLE_SECRET": uuid.uuid4().hex}
    cli = [sys.executable, "-m", "camflow.commands"]
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("sink", "console")}
    children = [subprocess.Popen(cli + ["sink", "--config", str(path)], env=env,
                                 stdout=logs["sink"], stderr=subprocess.STDOUT),
                subprocess.Popen(cli + ["console", "--config", str(path)], env=env,
                                 stdout=logs["console"], stderr=subprocess.STDOUT)]
    client = start(config)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                    if b'"feed_connected":true' in r.read():
                        break
            except OSError:
                pass
            assert children[1].poll() is None, (tmp_path / "console.log").read_text()
            assert time.monotonic() < deadline, "console did not come up in 60 s"
            time.sleep(0.5)
        yield config, url, path
    finally:
        client.cancel().result()
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        for log in logs.values():
            log.close()
        for name in logs:
            print(f"--- {name} log ---\n{(tmp_path / f'{name}.log').read_text()[-3000:]}")


def log_in(context, url, name):
    page = context.new_page()
    page.goto(url + "/")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", USERS[name][1])
    page.click("button[type=submit]")
    page.wait_for_selector("#alerts")
    return page


def wait_until(check, timeout_s, message):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, message
        time.sleep(1)


def test_alert_from_the_job_appears_live_and_is_acknowledged(deployment, publish_still, browser,  # noqa: F811
                                                             tmp_path):
    config, url, config_path = deployment
    operator = browser.new_context(viewport={"width": 1280, "height": 720})
    page = log_in(operator, url, "alice")
    page.wait_for_selector("#live.on", timeout=20_000)  # the event stream is open
    assert page.locator("#alerts tbody tr").count() == 0

    # The job sees a wanted person: enrolled while it runs, then in front of the port gate.
    now = int(time.time() * 1000)
    Watchlist(config.kafka).add_face("W-7", "Barack Obama", "wanted",
                                     [str(FACES / "tests__test_images__obama.jpg")], added_by="test")
    time.sleep(3)  # the broadcast reaches the job
    publish_still(config, "port-gate", FACES / "tests__test_images__obama2.jpg", now - 20_000)

    # It appears without a reload: only the event stream can have put it there.
    row = page.locator("#alerts tbody tr[data-type=watchlist_face]").first
    row.wait_for(timeout=120_000)
    assert "new" in row.get_attribute("class")
    alert_id = row.get_attribute("data-alert-id")
    assert "W-7" in row.inner_text() and "port-gate" in row.inner_text()
    shot = screenshot(page, "console-alert.png")

    row.locator("button[data-action=acknowledge]").click()
    page.wait_for_function(
        "id => document.getElementById('alert-' + id).querySelector('.status').textContent"
        ".startsWith('acknowledged by alice')", arg=alert_id)
    store = AnalystStore(config.store.url)
    try:
        assert store.query("SELECT action, actor FROM alert_actions WHERE alert_id = %s",
                           (alert_id,)) == [("acknowledge", "alice")]
    finally:
        store.close()

    # Later the same person passes the night market: a second alert, live as well.
    publish_still(config, "night-market", FACES / "tests__test_images__obama3.jpg", now - 10_000,
                  first_sequence=100)
    page.wait_for_selector("#alerts tbody tr[data-type=watchlist_face][data-alert-id]:not("
                           f"#alert-{alert_id}) >> text=night-market", timeout=120_000)

    # The detail page shows the evidence crop the job attached.
    page.goto(f"{url}/alerts/{alert_id}")
    page.wait_for_selector("#evidence")
    page.wait_for_function("() => document.getElementById('evidence').complete")
    assert broken_images(page) == []
    assert page.evaluate("() => document.getElementById('evidence').naturalWidth") > 16
    assert "acknowledge by alice" in page.inner_text("#actions")
    assert page.inner_text("#why").startswith("Face matches watchlist entry W-7, Barack Obama, wanted")
    assert page.inner_text("#alert-time").endswith(" +07")  # Asia/Ho_Chi_Minh
    # ...and the snapshot the job wrote to the evidence store (the frame, the face boxed).
    page.wait_for_function("() => document.getElementById('snapshot').complete")
    assert page.evaluate("() => document.getElementById('snapshot').naturalWidth") > 16
    assert broken_images(page) == []
    screenshot(page, "console-alert-detail.png")

    # The sink has written the frames and the sighting: camera online, subject's timeline.
    def camera_online():
        page.goto(f"{url}/cameras")
        return page.get_attribute("tr[data-camera=port-gate]", "data-status") == "online"
    wait_until(camera_online, 60, "port-gate never shown online")
    screenshot(page, "console-cameras.png")

    def subject_seen():
        page.goto(f"{url}/subjects/W-7")
        return page.locator("#timeline li").count() >= 2
    wait_until(subject_seen, 60, "W-7 not seen at both cameras on the subject page")
    timeline = page.inner_text("#timeline")
    assert timeline.index("port-gate") < timeline.index("night-market")  # in time order
    page.wait_for_load_state("load")
    assert broken_images(page) == []
    screenshot(page, "console-subject.png")

    # A viewer sees the acknowledgement but may not act.
    viewer = browser.new_context(viewport={"width": 1280, "height": 720})
    seen = log_in(viewer, url, "victor")
    seen.wait_for_selector(f"#alert-{alert_id}")
    assert seen.locator("button[data-action]").count() == 0
    assert "acknowledged by alice" in seen.inner_text(f"#alert-{alert_id} .status")
    refused = seen.request.post(f"{url}/api/alerts/{alert_id}/actions",
                                data={"action": "dismiss"}, headers={"Content-Type": "application/json"})
    assert refused.status == 403
    store = AnalystStore(config.store.url)
    try:
        assert store.query("SELECT COUNT(*) FROM alert_actions") == [(1,)]
    finally:
        store.close()

    # The analyst's report over the same store renders its plots.
    out = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "camflow.commands", "report", "--config", str(config_path),
                           "--since", "2h", "--out", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    report = operator.new_page()
    report.goto(out.as_uri())
    report.wait_for_load_state("load")
    assert report.locator("img.plot").count() >= 3  # alerts over time, per camera, the path
    assert report.locator("#evidence img").count() >= 1
    assert broken_images(report) == []
    screenshot(report, "report-live.png")
    print(f"screenshot: {shot}")
