"""`camflow notify` live: the real broker, real Mosquitto (infra/mosquitto.sh), mosquitto_sub,
and a real HTTP webhook receiver in this process that verifies every signature.

Alerts are produced to the alerts topic with the project's codec (the job's own output is
covered by the lead's job-driven variant). The notifier runs as its own process, so its
restarts are real ones: SIGTERM (graceful) and SIGKILL (no final commit).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from camflow.config import Config
from camflow.core.kafka import DeliveryTracker, produce_reliably, reliable_producer
from camflow.schemas.codec import AvroCodec
from camflow.services import notify as nt

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
SECRET = "live-test-secret-" + uuid.uuid4().hex[:8]
T0 = int(time.time() * 1000) - 600_000
CAMERAS = [{"id": "gate-1", "name": "Gate 1", "location": {"site": "Bai Vong port"}},
           {"id": "lobby", "location": {"site": "HQ"}}]
SITE_SLUG = {"gate-1": "bai-vong-port", "lobby": "hq", "roof": "no-site"}


# --------------------------------------------------------------------------- real parts

@pytest.fixture(scope="module")
def mosquitto() -> tuple[str, int]:
    """Mosquitto on 127.0.0.1:$MQTT_PORT (1883): installed and started by the project's script."""
    out = subprocess.run(["bash", str(REPO / "infra" / "mosquitto.sh")], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, f"infra/mosquitto.sh failed:\n{out.stderr}"
    host_port = out.stdout.strip().splitlines()[-1].removeprefix("mqtt://")
    host, port = host_port.rsplit(":", 1)
    return host, int(port)


class Receiver:
    """A webhook receiver on a fixed port that can go down and come back. Answers 200 and
    records each request with whether its HMAC signature verified."""

    def __init__(self, port: int = 0):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.server = None
        self.port = port
        self.start()
        self.url = f"http://127.0.0.1:{self.port}/camflow"

    def start(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    outer.requests.append({
                        "at": time.time(), "path": self.path, "body": json.loads(body),
                        "alert_id": self.headers.get(nt.ALERT_ID_HEADER),
                        "valid": nt.verify(SECRET, self.headers.get(nt.TIMESTAMP_HEADER), body,
                                           self.headers.get(nt.SIGNATURE_HEADER))})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()  # connections are refused until start()

    def ids(self) -> list[str]:
        with self.lock:
            return [r["alert_id"] for r in self.requests]


class MqttSubscriber:
    """mosquitto_sub on <prefix>/# (QoS 1), one JSON line per message received."""

    def __init__(self, host: str, port: int, prefix: str, out: Path):
        self.host, self.port, self.prefix, self.out = host, port, prefix, out
        self.file = out.open("w")
        self.proc = subprocess.Popen(["mosquitto_sub", "-h", host, "-p", str(port), "-q", "1", "-t",
                                      f"{prefix}/#", "-F", "%j"], stdout=self.file, stderr=subprocess.STDOUT)
        # subscribed once a probe published after the start comes back
        deadline = time.monotonic() + 20
        while not any(m["topic"] == f"{prefix}/probe" for m in self.messages()):
            assert time.monotonic() < deadline, "mosquitto_sub never received the probe"
            subprocess.run(["mosquitto_pub", "-h", host, "-p", str(port), "-q", "1", "-t",
                            f"{prefix}/probe", "-m", "probe"], check=True)
            time.sleep(0.3)

    def messages(self) -> list[dict]:
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.startswith("{")]

    def alerts(self) -> list[tuple[str, dict]]:
        return [(m["topic"], json.loads(m["payload"])) for m in self.messages()
                if not m["topic"].endswith(("/probe", "/status"))]

    def statuses(self) -> list[tuple[str, dict]]:
        return [(m["topic"], json.loads(m["payload"])) for m in self.messages()
                if m["topic"].endswith("/status")]

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.file.close()


class NotifyProcess:
    """`python -m camflow.services.notify --config FILE` (what `camflow notify` runs)."""

    def __init__(self, config_path: Path, logs: Path):
        self.config_path, self.logs = config_path, logs
        self.proc = None
        self.runs = 0

    def start(self):
        self.runs += 1
        self.stdout = self.logs / f"notify-{self.runs}.out"
        self.stderr = self.logs / f"notify-{self.runs}.err"
        env = {**os.environ, "NOTIFY_LIVE_SECRET": SECRET}
        self.proc = subprocess.Popen([sys.executable, "-m", "camflow.services.notify", "--config",
                                      str(self.config_path)], cwd=REPO, env=env,
                                     stdout=self.stdout.open("w"), stderr=self.stderr.open("w"))

    def stop(self, sig=signal.SIGTERM) -> dict | None:
        self.proc.send_signal(sig)
        rc = self.proc.wait(60)
        if sig == signal.SIGTERM:
            assert rc == 0, f"notify exited {rc}:\n{self.stderr.read_text()}"
            return json.loads(self.stdout.read_text().strip().splitlines()[-1])
        return None

    def alive(self) -> str:
        assert self.proc.poll() is None, f"notify died ({self.proc.returncode}):\n{self.stderr.read_text()}"
        return ""

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_until(check, timeout: float, what: str, notifier: NotifyProcess | None = None):
    deadline = time.monotonic() + timeout
    while not check():
        if notifier is not None:
            notifier.alive()
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.2)


def alert(alert_id: str, type_: str, severity: str, camera: str, offset_s: float, **more) -> dict:
    return {"alert_id": alert_id, "type": type_, "severity": severity, "camera_id": camera,
            "time_ms": T0 + int(offset_s * 1000), "subject": "person", "score": 1.0, "track_id": None,
            "evidence": json.dumps({"rule": type_}), "evidence_jpeg": None, "evidence_ref": None, **more}


class Alerts:
    """Produces Alert records (the project's Avro codec), keyed by alert_id."""

    def __init__(self, config: Config):
        self.topic = config.kafka.topics.alerts
        self.codec = AvroCodec("Alert")
        self.producer = reliable_producer(config.kafka)

    def send(self, alerts: list[dict]) -> None:
        tracker = DeliveryTracker()
        for a in alerts:
            produce_reliably(self.producer, self.topic, self.codec.encode(a), a["alert_id"].encode(),
                             None, tracker)
        self.producer.flush(30)
        assert tracker.delivered == len(alerts) and not tracker.failed


# --------------------------------------------------------------------------- setup

@pytest.fixture
def deployment(kafka_bootstrap, make_topics, mosquitto, tmp_path):
    host, port = mosquitto
    suffix = uuid.uuid4().hex[:8]
    prefix = f"camflow-test-{suffix}"
    receiver = Receiver()
    raw = {
        "deployment": f"notify-{suffix}",
        "cameras": CAMERAS,
        "kafka": {"bootstrap_servers": kafka_bootstrap, "group_id": f"notify-{suffix}",
                  "topics": {"alerts": f"alerts-{suffix}", "partitions": 2}},
        "notify": {
            "state_dir": str(tmp_path / "state"),
            "failures_topic": f"notify-failures-{suffix}",
            "evidence_base_url": "https://console.example",
            "targets": {
                "home": {"kind": "mqtt", "host": host, "port": port, "topic_prefix": prefix,
                         "timeout_s": 30},
                "ops": {"kind": "webhook", "url": receiver.url, "secret_env": "NOTIFY_LIVE_SECRET",
                        "timeout_s": 5, "retries": 8,
                        # 0.5 + 1 + 2 + 3 x 5 s: rides out a receiver that is down for 10 s
                        "backoff": {"initial_s": 0.5, "multiplier": 2, "max_s": 3, "jitter": 0.1}},
            },
            "routes": [
                {"targets": ["home"]},
                {"match": {"min_severity": "warning"}, "targets": ["ops"]},
                {"match": {"types": ["intrusion"], "sites": ["Bai Vong port"]}, "targets": ["ops", "home"]},
            ],
        },
    }
    config_path = tmp_path / "deploy.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    config, notify = nt.load_notify_config(config_path)
    make_topics({config.kafka.topics.alerts: 2})
    notifier = NotifyProcess(config_path, tmp_path)
    sub = MqttSubscriber(host, port, prefix, tmp_path / "mosquitto_sub.jsonl")
    yield {"config": config, "notify": notify, "receiver": receiver, "sub": sub, "notifier": notifier,
           "prefix": prefix, "mqtt": (host, port)}
    notifier.kill()
    sub.close()
    receiver.stop()
    subprocess.run(["mosquitto_pub", "-h", host, "-p", str(port), "-r", "-n", "-t",
                    f"{prefix}/gate-1/status"], check=False)  # leave no retained message behind


def expected_targets(a: dict) -> set[str]:
    """What the routes in ``deployment`` say, written out by hand."""
    targets = {"home"}
    if a["severity"] in ("warning", "critical") or (a["type"] == "intrusion" and a["camera_id"] == "gate-1"):
        targets.add("ops")
    return targets


# --------------------------------------------------------------------------- the test

def test_each_alert_once_per_target_through_outage_and_restarts(deployment, topic_reader):
    config, receiver, sub, notifier = (deployment[k] for k in ("config", "receiver", "sub", "notifier"))
    prefix = deployment["prefix"]
    alerts = Alerts(config)
    sent: dict[str, dict] = {}

    def produce(batch: list[dict]) -> None:
        alerts.send(batch)
        for a in batch:
            sent[a["alert_id"]] = a

    def delivered(ids, target) -> bool:
        want = {i for i in ids if target in expected_targets(sent[i])}
        got = ({p["alert_id"] for _, p in sub.alerts()} if target == "home" else set(receiver.ids()))
        return want <= got

    # 1. notify running; a first batch -------------------------------------------------------
    notifier.start()
    batch_a = [alert("a-crowd", "crowd_limit", "info", "gate-1", 1),
               alert("a-intrusion", "intrusion", "info", "gate-1", 2),  # ops by the site route
               alert("a-loiter", "loitering", "warning", "lobby", 3,
                     evidence_ref="https://evidence.example/a-loiter.jpg"),
               alert("a-face", "watchlist_face", "critical", "lobby", 4, evidence_jpeg=b"\xff\xd8x"),
               alert("a-roof", "crowd_limit", "info", "roof", 5),  # a camera not in the config
               alert("a-offline", "camera_offline", "warning", "gate-1", 60)]
    produce(batch_a)
    ids_a = [a["alert_id"] for a in batch_a]
    wait_until(lambda: delivered(ids_a, "home") and delivered(ids_a, "ops"), 90,
               "first batch to MQTT and the webhook", notifier)

    # 2. the webhook receiver is down for 10 s -----------------------------------------------
    receiver.stop()
    down_at = time.monotonic()
    batch_b = [alert(f"b-{i}", "intrusion", "critical", "lobby", 100 + i) for i in range(4)]
    produce(batch_b)
    ids_b = [a["alert_id"] for a in batch_b]
    # MQTT is not held up by the unreachable webhook
    wait_until(lambda: delivered(ids_b, "home"), 30, "MQTT while the webhook is down", notifier)
    assert not set(ids_b) & set(receiver.ids())
    time.sleep(max(0.0, 10 - (time.monotonic() - down_at)))
    receiver.start()
    wait_until(lambda: delivered(ids_b, "ops"), 60, "the webhook after it came back", notifier)

    # 3. graceful restart, then replays of delivered alerts and new ones ----------------------
    time.sleep(1.5)  # offsets committed after delivery
    summary = notifier.stop(signal.SIGTERM)
    assert summary["failed"] == {} and summary["interrupted"] == 0, summary
    notifier.start()
    batch_c = [alert("c-recovered", "camera_recovered", "info", "gate-1", 200),
               alert("c-crowd", "crowd_limit", "warning", "gate-1", 201)]
    produce([*batch_a[:3], batch_a[5], *batch_c])  # a replay emits the same alert_ids
    ids_c = [a["alert_id"] for a in batch_c]
    wait_until(lambda: delivered(ids_c, "home") and delivered(ids_c, "ops"), 60,
               "new alerts after the restart", notifier)

    # 4. killed (no final commit), restarted; more replays and new alerts --------------------
    time.sleep(1.5)
    notifier.stop(signal.SIGKILL)
    notifier.start()
    batch_d = [alert("d-intrusion", "intrusion", "critical", "gate-1", 300)]
    produce([*batch_b[:2], *batch_d])
    wait_until(lambda: delivered(["d-intrusion"], "home") and delivered(["d-intrusion"], "ops"), 60,
               "new alerts after the kill", notifier)
    time.sleep(3)  # anything sent twice would have arrived by now
    summary = notifier.stop(signal.SIGTERM)
    assert summary["failed"] == {} and summary["interrupted"] == 0, summary

    # --- exactly once per target ---
    mqtt = sub.alerts()
    mqtt_ids = [p["alert_id"] for _, p in mqtt]
    hook_ids = receiver.ids()
    for alert_id, a in sent.items():
        want = expected_targets(a)
        assert mqtt_ids.count(alert_id) == ("home" in want), (alert_id, mqtt_ids)
        assert hook_ids.count(alert_id) == ("ops" in want), (alert_id, hook_ids)
    assert len(mqtt) == len(sent) and len(hook_ids) == sum("ops" in expected_targets(a) for a in sent.values())
    assert all(r["valid"] for r in receiver.requests), "a webhook signature did not verify"

    # --- topics and payloads ---
    for topic, payload in mqtt:
        a = sent[payload["alert_id"]]
        assert topic == f"{prefix}/{SITE_SLUG[a['camera_id']]}/{a['camera_id']}/{a['type']}"
        assert payload["severity"] == a["severity"] and payload["time_ms"] == a["time_ms"]
    by_id = {p["alert_id"]: p for _, p in mqtt}
    assert by_id["a-loiter"]["evidence_url"] == "https://evidence.example/a-loiter.jpg"
    assert by_id["a-face"]["evidence_url"] == "https://console.example/api/alerts/a-face/evidence.jpg"
    assert by_id["a-crowd"]["site"] == "Bai Vong port" and by_id["a-crowd"]["camera_name"] == "Gate 1"
    assert by_id["a-crowd"]["evidence"] == {"rule": "crowd_limit"}
    assert all(r["body"] == by_id[r["alert_id"]] for r in receiver.requests)

    # --- camera status: offline then online, once each; the retained one is the newest ---
    statuses = [(t, p["status"], p["alert_id"]) for t, p in sub.statuses()]
    assert statuses == [(f"{prefix}/gate-1/status", "offline", "a-offline"),
                        (f"{prefix}/gate-1/status", "online", "c-recovered")], statuses
    host, port = deployment["mqtt"]
    retained = subprocess.run(["mosquitto_sub", "-h", host, "-p", str(port), "-t", f"{prefix}/gate-1/status",
                               "-C", "1", "-W", "10", "-F", "%r %p"], capture_output=True, text=True)
    flag, payload = retained.stdout.strip().split(" ", 1)
    assert flag == "1" and json.loads(payload)["status"] == "online"

    # --- nothing failed ---
    assert topic_reader(deployment["notify"].failures_topic, partitions=2, timeout=3) == []


def test_failures_become_records_and_interrupted_deliveries_are_not_resent(
        kafka_bootstrap, make_topics, topic_reader, tmp_path, monkeypatch):
    """In process: a webhook that rejects (400) and one that cannot be reached end in
    notify-failures records; a delivery that was in progress when the process died is reported
    as interrupted and never sent again; an undecodable record is reported too."""
    from prometheus_client import REGISTRY

    monkeypatch.setenv("NOTIFY_LIVE_SECRET", SECRET)
    suffix = uuid.uuid4().hex[:8]

    class Rejecting(BaseHTTPRequestHandler):
        seen: list[str] = []

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            Rejecting.seen.append(self.headers.get(nt.ALERT_ID_HEADER))
            self.send_response(400 if self.path == "/reject" else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Rejecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    closed = ThreadingHTTPServer(("127.0.0.1", 0), Rejecting)
    dead_url = f"http://127.0.0.1:{closed.server_address[1]}/hook"
    closed.server_close()  # nothing listens there
    try:
        config = Config.model_validate({
            "deployment": f"fail-{suffix}", "cameras": CAMERAS,
            "kafka": {"bootstrap_servers": kafka_bootstrap, "group_id": f"fail-{suffix}",
                      "topics": {"alerts": f"alerts-{suffix}", "partitions": 1}}})
        hook = {"kind": "webhook", "secret_env": "NOTIFY_LIVE_SECRET", "timeout_s": 2, "retries": 1,
                "backoff": {"initial_s": 0.1, "max_s": 0.2}}
        notify = nt.NotifyConfig.model_validate({
            "state_dir": str(tmp_path), "failures_topic": f"notify-failures-{suffix}",
            "targets": {"rejects": {**hook, "url": f"{base}/reject"}, "dead": {**hook, "url": dead_url},
                        "fine": {**hook, "url": f"{base}/ok"}},
            "routes": [{"match": {"types": ["intrusion"]}, "targets": ["rejects", "dead"]},
                       {"match": {"types": ["crowd_limit"]}, "targets": ["fine"]}]})
        make_topics({config.kafka.topics.alerts: 1})
        # a previous run died while sending "i-1" to "fine": its outcome is unknown
        log = nt.DeliveryLog(nt.delivery_log_path(config, notify))
        log.begin("i-1", "fine", "alert", {"alert_id": "i-1"})
        log.close()
        producer = reliable_producer(config.kafka)
        tracker = DeliveryTracker()
        for a in [alert("x-1", "intrusion", "critical", "gate-1", 1), alert("i-1", "crowd_limit", "info", "lobby", 2),
                  alert("ok-1", "crowd_limit", "info", "lobby", 3)]:
            produce_reliably(producer, config.kafka.topics.alerts, AvroCodec("Alert").encode(a), None, None, tracker)
        produce_reliably(producer, config.kafka.topics.alerts, b"not an alert", None, None, tracker)
        producer.flush(30)
        assert tracker.delivered == 4

        before = REGISTRY.get_sample_value("camflow_notify_failed_total", {"target": "dead", "reason": "unreachable"}) or 0
        report = nt.run_notify(config, notify, idle_exit_s=4, max_seconds=120)
    finally:
        server.shutdown()
        server.server_close()

    assert report.read == 4 and report.rejected == 1 and report.interrupted == 1
    assert report.failed == {"rejects": 1, "dead": 1} and report.delivered == {"fine": 1}
    assert Rejecting.seen.count("x-1") == 1 and "i-1" not in Rejecting.seen and Rejecting.seen.count("ok-1") == 1
    records = [json.loads(m.value()) for m in topic_reader(notify.failures_topic, partitions=1, expect=4, timeout=20)]
    reasons = sorted((r["target"], r["reason"]) for r in records)
    assert reasons == [("*", "undecodable"), ("dead", "unreachable"), ("fine", "interrupted"),
                       ("rejects", "rejected")], reasons
    rejected = next(r for r in records if r["reason"] == "rejected")
    assert rejected["alert_id"] == "x-1" and rejected["payload"]["type"] == "intrusion" and rejected["attempts"] == 1
    assert next(r for r in records if r["reason"] == "unreachable")["attempts"] == 2
    assert REGISTRY.get_sample_value("camflow_notify_failed_total",
                                     {"target": "dead", "reason": "unreachable"}) == before + 1
    assert REGISTRY.get_sample_value("camflow_notify_delivered_total", {"target": "fine", "kind": "alert"}) >= 1

    # A second run that reads everything again (the in-memory dev broker forgets committed
    # offsets when it restarts: here, a new group) sends nothing: the delivery log remembers.
    # (Its webhook server is gone, so an attempt would fail and show in the report.)
    forgetful = config.model_copy(update={"kafka": config.kafka.model_copy(update={"group_id": f"fail-{suffix}-2"})})
    again = nt.run_notify(forgetful, notify, idle_exit_s=3, max_seconds=60)
    assert again.read == 4 and again.delivered == {} and again.failed == {} and again.interrupted == 0
    assert again.skipped == {"rejects": 1, "dead": 1, "fine": 2}
    assert Rejecting.seen.count("x-1") == 1 and Rejecting.seen.count("ok-1") == 1


def test_stopped_while_retrying_then_delivered_once_after_the_restart(
        kafka_bootstrap, make_topics, topic_reader, tmp_path, monkeypatch):
    """Stopped (as by SIGTERM) while a webhook is unreachable: the delivery certainly did not
    happen, so it is neither reported nor remembered, and the next run delivers it, once."""
    monkeypatch.setenv("NOTIFY_LIVE_SECRET", SECRET)
    suffix = uuid.uuid4().hex[:8]
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()  # nothing listens on the receiver's port yet
    config = Config.model_validate({
        "deployment": f"stop-{suffix}", "cameras": CAMERAS,
        "kafka": {"bootstrap_servers": kafka_bootstrap, "group_id": f"stop-{suffix}",
                  "topics": {"alerts": f"alerts-{suffix}", "partitions": 1}}})
    notify = nt.NotifyConfig.model_validate({
        "state_dir": str(tmp_path), "failures_topic": f"notify-failures-{suffix}",
        "targets": {"ops": {"kind": "webhook", "url": f"http://127.0.0.1:{port}/camflow",
                            "secret_env": "NOTIFY_LIVE_SECRET", "retries": 50,
                            "backoff": {"initial_s": 0.2, "max_s": 1}}},
        "routes": [{"targets": ["ops"]}]})
    make_topics({config.kafka.topics.alerts: 1})
    Alerts(config).send([alert("s-1", "intrusion", "critical", "gate-1", 1)])

    stop = threading.Event()
    result: list = []
    run = threading.Thread(target=lambda: result.append(nt.run_notify(config, notify, stop_event=stop)))
    run.start()
    time.sleep(4)  # several refused attempts
    stop.set()
    run.join(60)
    assert not run.is_alive() and result[0].read == 1 and result[0].delivered == {} and result[0].failed == {}
    log = nt.DeliveryLog(nt.delivery_log_path(config, notify))
    assert log.state("s-1", "ops", "alert") is None  # not remembered: it was never delivered
    log.close()

    receiver = Receiver(port)
    try:
        report = nt.run_notify(config, notify, idle_exit_s=3, max_seconds=60)
    finally:
        receiver.stop()
    assert report.read == 1 and report.delivered == {"ops": 1} and report.interrupted == 0
    assert receiver.ids() == ["s-1"] and receiver.requests[0]["valid"]
    assert topic_reader(notify.failures_topic, partitions=1, timeout=3) == []
