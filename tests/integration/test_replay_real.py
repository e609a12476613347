"""camflow replay on real footage (vtest.avi) with the demo scene: the walkway camera's
counting line, restricted lawn, loitering corner and crowd limit produce their alerts."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from camflow.core.evidence_store import EvidenceStore
from camflow.core.frame_store import file_url_path
from camflow.services.store import AnalystStore
from tests.integration.test_notify_live import (MqttSubscriber, NotifyProcess, Receiver,  # noqa: F401
                                                mosquitto, wait_until)

from camflow.commands import main as camflow_main
from camflow.config import load_config
from camflow.commands.replay import replay

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def walkway_replay(vtest_path, kafka_bootstrap, built_models, repo_root, tmp_path_factory):
    config = load_config(repo_root / "infra/config/demo.yaml")
    stores = tmp_path_factory.mktemp("stores")
    config = config.model_copy(update={
        "kafka": config.kafka.model_copy(update={"bootstrap_servers": kafka_bootstrap}),
        "frame_store": config.frame_store.model_copy(update={"url": (stores / "frames").as_uri()}),
        "evidence": config.evidence.model_copy(update={"url": (stores / "evidence").as_uri()})})
    alerts = []
    store_url = f"duckdb:///{stores}/analyst.duckdb"
    summary = replay(config, str(vtest_path), "walkway", print_alert=alerts.append,
                     store_url=store_url)
    return summary, alerts, config.model_copy(update={"store": config.store.model_copy(
        update={"url": store_url})})


def test_replay_raises_the_expected_kinds_of_alerts(walkway_replay):
    summary, alerts, _ = walkway_replay
    assert summary["frames"] == 318  # 79.5 s at 4 fps
    kinds = summary["alerts_by_type"]
    # pedestrians cross the lawn, 7-8 people are in view at the busiest moments (limit 6),
    # and people linger at the road corner
    assert kinds.get("intrusion", 0) >= 1 and kinds.get("crowd_limit", 0) >= 1
    assert kinds.get("loitering", 0) >= 1
    assert set(kinds) <= {"intrusion", "crowd_limit", "loitering", "zone_crowd", "running",
                          "fall", "crowd_dispersal", "wrong_way"}
    intrusions = [a for a in alerts if a["type"] == "intrusion"]
    assert all(json.loads(a["evidence"])["zone_id"] == "lawn" for a in intrusions)
    assert len({a["alert_id"] for a in alerts}) == len(alerts)


def test_replay_counts_line_crossings_both_ways(walkway_replay):
    summary, _, _ = walkway_replay
    crossings = summary["line_crossings"]
    people_a_to_b = crossings.get("walkway-middle:a_to_b:person", 0)
    people_b_to_a = crossings.get("walkway-middle:b_to_a:person", 0)
    # people walk along the path in both directions through the middle of the view
    assert people_a_to_b >= 2 and people_b_to_a >= 2, crossings


def subject_box_pixels(jpeg: bytes) -> int:
    """Pixels of the snapshot's subject colour (transforms/evidence.py): a box drawn on the
    walkway (a scene with next to no pure red in it)."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    b, g, r = (image[..., i].astype(int) for i in range(3))
    return int(((r > 170) & (g < 90) & (b < 90)).sum())


def test_every_alert_has_a_snapshot_showing_its_subject(walkway_replay, vtest_path):
    _, alerts, config = walkway_replay
    store = EvidenceStore(config.evidence.url)
    cap = cv2.VideoCapture(str(vtest_path))
    ok, plain = cap.read()
    cap.release()
    background = subject_box_pixels(cv2.imencode(".jpg", cv2.resize(plain, (768, 576)))[1].tobytes())
    assert alerts
    for alert in alerts:
        assert alert["evidence_ref"], alert
        jpeg = store.get(alert["evidence_ref"])
        assert jpeg and jpeg[:2] == b"\xff\xd8", alert["evidence_ref"]
        # A box's border (2 px wide around a person ~40x100 px) is a few hundred pixels.
        assert subject_box_pixels(jpeg) > background + 150, (alert["type"], alert["evidence_ref"])


def test_intrusion_and_crowd_alerts_have_a_clip_of_the_moment(walkway_replay):
    summary, alerts, config = walkway_replay
    store, evidence = AnalystStore(config.store.url), EvidenceStore(config.evidence.url)
    try:
        stored = {a["alert_id"]: store.alert(a["alert_id"]) for a in alerts}
    finally:
        store.close()
    assert summary["clips"] >= 2 and all(stored.values())
    for alert in alerts:
        if alert["type"] not in ("intrusion", "crowd_limit"):
            continue
        ref = stored[alert["alert_id"]]["clip_ref"]
        assert ref, alert
        path = Path(file_url_path(ref))
        assert evidence.get(ref)[4:8] == b"ftyp"  # an MP4, read back through the store
        cap = cv2.VideoCapture(str(path))
        frames = 0
        while cap.read()[0]:
            frames += 1
        cap.release()
        # 5 s before to 5 s after at the clip's 5 fps (vtest is sampled at 4 fps): ~50 frames;
        # an alert near the start or end of the footage has fewer frames before or after it.
        assert frames >= 30, (alert["type"], frames)


def test_notify_delivers_the_jobs_alerts_once_with_their_snapshot_links(walkway_replay, mosquitto,
                                                                         tmp_path, repo_root):
    """Broker -> job -> `camflow notify` -> Mosquitto and a webhook: each of the job's alerts
    reaches both once, signed, with the console link of its snapshot; a restarted notifier
    sends nothing again."""
    summary, alerts, config = walkway_replay
    host, port = mosquitto
    suffix = uuid.uuid4().hex[:8]
    prefix, receiver = f"camflow-job-{suffix}", Receiver()
    raw = {"deployment": f"notify-job-{suffix}",
           # The demo's cameras as written (a dump of the loaded model would state every zone
           # parameter, and a zone rejects parameters its kind does not read).
           "cameras": yaml.safe_load((repo_root / "infra/config/demo.yaml").read_text())["cameras"],
           "kafka": {"bootstrap_servers": config.kafka.bootstrap_servers, "group_id": f"notify-{suffix}",
                     "topics": {"alerts": summary["alerts_topic"]}},
           "notify": {"state_dir": str(tmp_path / "state"), "failures_topic": f"notify-failures-{suffix}",
                      "evidence_base_url": "https://console.example",
                      "targets": {"home": {"kind": "mqtt", "host": host, "port": port,
                                           "topic_prefix": prefix, "timeout_s": 30},
                                  "ops": {"kind": "webhook", "url": receiver.url,
                                          "secret_env": "NOTIFY_LIVE_SECRET", "timeout_s": 5}},
                      "routes": [{"targets": ["home", "ops"]}]}}
    config_path = tmp_path / "notify.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    sub = MqttSubscriber(host, port, prefix, tmp_path / "mosquitto_sub.jsonl")
    notifier = NotifyProcess(config_path, tmp_path)
    try:
        notifier.start()
        ids = {a["alert_id"] for a in alerts}
        wait_until(lambda: len(sub.alerts()) >= len(ids) and len(receiver.ids()) >= len(ids), 90,
                   "every alert of the job on MQTT and the webhook", notifier)
        assert sum(notifier.stop()["delivered"].values()) >= 2 * len(ids)
        notifier.start()  # a restart: everything was delivered and committed
        time.sleep(8)
        notifier.stop()
        mqtt = sub.alerts()
        assert sorted(p["alert_id"] for _, p in mqtt) == sorted(ids)
        assert sorted(receiver.ids()) == sorted(ids)
        assert all(r["valid"] for r in receiver.requests)
        by_id = {a["alert_id"]: a for a in alerts}
        for topic, payload in mqtt:
            alert = by_id[payload["alert_id"]]
            assert topic == f"{prefix}/demo-walkway/walkway/{alert['type']}"
            assert payload["evidence_url"] == \
                f"https://console.example/api/alerts/{alert['alert_id']}/evidence.jpg"
    finally:
        notifier.kill()
        sub.close()
        receiver.stop()


def test_zones_draw_renders_the_scene(tmp_path, vtest_path, repo_root):
    out = tmp_path / "walkway.png"
    assert camflow_main(["zones", "draw", "--camera", "walkway", "--image", str(vtest_path),
                         "--config", str(repo_root / "infra/config/demo.yaml"), "--out", str(out)]) == 0
    import cv2
    drawn = cv2.imread(str(out))
    assert drawn.shape == (576, 768, 3)
    assert camflow_main(["zones", "draw", "--camera", "nowhere", "--image", str(vtest_path),
                         "--config", str(repo_root / "infra/config/demo.yaml")]) == 2
