"""`camflow notify` without Kafka or MQTT: config, routing, payload, signing, backoff, the
delivery log, offsets, and the webhook sender against a real HTTP server in this process."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from camflow.config import Config
from camflow.services import notify as nt

SECRET = "s3cret-for-tests"


def notify_config(**more) -> nt.NotifyConfig:
    raw = {
        "targets": {
            "home": {"kind": "mqtt", "topic_prefix": "camflow"},
            "ops": {"kind": "webhook", "url": "http://127.0.0.1:9/hook", "secret_env": "NOTIFY_TEST_SECRET"},
            "pager": {"kind": "webhook", "url": "https://pager.example/x", "secret_file": "/dev/null"},
        },
        "routes": [
            {"targets": ["home"]},
            {"match": {"min_severity": "warning"}, "targets": ["ops"]},
            {"match": {"types": ["watchlist_face", "intrusion"], "sites": ["Bai Vong port"],
                       "min_severity": "critical"}, "targets": ["pager", "ops"]},
        ],
        **more,
    }
    return nt.NotifyConfig.model_validate(raw)


def alert(**fields) -> dict:
    base = {"alert_id": "a1", "type": "crowd_limit", "severity": "info", "camera_id": "gate-1",
            "time_ms": 1_700_000_000_123, "subject": "person", "score": 1.5, "track_id": None,
            "evidence": None, "evidence_jpeg": None, "evidence_ref": None}
    return {**base, **fields}


# --------------------------------------------------------------------------- config

def test_config_defaults_and_example_validate():
    assert nt.NotifyConfig().targets == {} and nt.NotifyConfig().routes == []
    cfg = notify_config()
    assert isinstance(cfg.targets["home"], nt.MqttTarget) and cfg.targets["home"].qos == 1
    assert isinstance(cfg.targets["ops"], nt.WebhookTarget) and cfg.targets["ops"].retries == 6
    # every field of every model has a one-line description
    for model in (nt.NotifyConfig, nt.MqttTarget, nt.WebhookTarget, nt.Match, nt.Route, nt.Backoff):
        for name, f in model.model_fields.items():
            assert f.description and "\n" not in f.description, f"{model.__name__}.{name}"


@pytest.mark.parametrize("change, message", [
    ({"routes": [{"targets": ["nobody"]}]}, "does not define"),
    ({"routes": [{"targets": []}]}, "at least 1"),
    ({"unknown": 1}, "Extra inputs"),
    ({"targets": {"Bad Name": {"kind": "mqtt"}}}, "target name"),
    ({"targets": {"x": {"kind": "smtp"}}}, "kind"),
    ({"targets": {"x": {"kind": "mqtt", "topic_prefix": "a/#"}}}, "topic prefix"),
    ({"targets": {"x": {"kind": "mqtt", "port": 0}}}, "greater than or equal"),
    ({"targets": {"x": {"kind": "webhook", "url": "ftp://h/x", "secret_env": "E"}}}, "http"),
    ({"targets": {"x": {"kind": "webhook", "url": "http://h/x"}}}, "exactly one of secret_env"),
    ({"targets": {"x": {"kind": "webhook", "url": "http://h/x", "secret_env": "E", "secret_file": "/f"}}},
     "exactly one of secret_env"),
    ({"targets": {"x": {"kind": "webhook", "url": "http://h/x", "secret_env": "E", "retries": -1}}},
     "greater than or equal"),
    ({"targets": {"x": {"kind": "webhook", "url": "http://h/x", "secret_env": "E",
                        "backoff": {"initial_s": 0}}}}, "greater than 0"),
    ({"targets": {"x": {"kind": "webhook", "url": "http://h/x", "secret_env": "E", "password_env": "P"}}},
     "Extra inputs"),
    ({"routes": [{"match": {"min_severity": "urgent"}, "targets": []}]}, "min_severity"),
])
def test_config_errors_name_the_problem(change, message):
    raw = {"targets": {"home": {"kind": "mqtt"}}, "routes": [{"targets": ["home"]}], **change}
    with pytest.raises(ValidationError) as err:
        nt.NotifyConfig.model_validate(raw)
    assert message in str(err.value)


def test_secrets_come_from_env_or_file(tmp_path, monkeypatch):
    cfg = notify_config()
    monkeypatch.delenv("NOTIFY_TEST_SECRET", raising=False)
    with pytest.raises(RuntimeError, match="NOTIFY_TEST_SECRET is not set"):
        cfg.targets["ops"].secret("ops")
    monkeypatch.setenv("NOTIFY_TEST_SECRET", SECRET)
    assert cfg.targets["ops"].secret("ops") == SECRET
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    target = nt.WebhookTarget(kind="webhook", url="http://h/x", secret_file=path)
    assert target.secret("x") == SECRET
    path.write_text("")
    with pytest.raises(RuntimeError, match="empty"):
        target.secret("x")
    mqtt = nt.MqttTarget(kind="mqtt", username="u", password_file=tmp_path / "missing")
    with pytest.raises(RuntimeError, match="cannot read"):
        mqtt.password("m")
    assert nt.MqttTarget(kind="mqtt").password("m") is None


def test_load_notify_config_reads_the_notify_section(tmp_path):
    path = tmp_path / "deploy.yaml"
    path.write_text(
        "deployment: island\n"
        "cameras: [{id: gate-1, location: {site: Bai Vong port}}]\n"
        "notify:\n"
        "  targets: {home: {kind: mqtt, topic_prefix: island}}\n"
        "  routes: [{targets: [home]}]\n")
    config, cfg = nt.load_notify_config(path)
    assert config.deployment == "island" and config.camera("gate-1").location.site == "Bai Vong port"
    assert cfg.targets["home"].topic_prefix == "island"
    path.write_text("notify:\n  routes: [{targets: [nobody]}]\n")
    from camflow.config import ConfigError
    with pytest.raises(ConfigError, match="notify"):
        nt.load_notify_config(path)


# --------------------------------------------------------------------------- routing

@pytest.mark.parametrize("fields, site, expected", [
    ({}, None, ["home"]),
    ({"severity": "warning"}, None, ["home", "ops"]),
    ({"severity": "critical", "type": "intrusion"}, "Bai Vong port", ["home", "ops", "pager"]),
    ({"severity": "critical", "type": "intrusion"}, "Airport", ["home", "ops"]),
    ({"severity": "critical", "type": "crowd_limit"}, "Bai Vong port", ["home", "ops"]),
    ({"severity": "warning", "type": "watchlist_face"}, "Bai Vong port", ["home", "ops"]),
    ({"severity": "emergency"}, None, ["home", "ops"]),  # unknown severities are never filtered out
])
def test_routes_union_in_config_order_each_target_once(fields, site, expected):
    assert notify_config().route(alert(**fields), site) == expected


def test_match_by_camera_and_nothing_matches():
    m = nt.Match(cameras=["gate-1", "gate-2"], types=["intrusion"])
    assert m.matches(alert(type="intrusion"), None)
    assert not m.matches(alert(type="intrusion", camera_id="lobby"), None)
    assert not m.matches(alert(type="loitering"), None)
    assert nt.NotifyConfig().route(alert(), None) == []


# --------------------------------------------------------------------------- payload and topics

def test_payload_is_json_without_image_bytes_and_with_camera_and_site():
    config = Config.model_validate({"deployment": "island", "cameras": [
        {"id": "gate-1", "name": "Gate 1", "location": {"site": "Bai Vong port, arrivals"}}]})
    a = alert(evidence=json.dumps({"count": 12, "limit": 10}), evidence_jpeg=b"\xff\xd8jpeg",
              track_id=7, severity="warning")
    payload = nt.alert_payload(a, config.camera("gate-1"), "island", "https://console.example/")
    assert payload["evidence"] == {"count": 12, "limit": 10}
    assert payload["evidence_url"] == "https://console.example/api/alerts/a1/evidence.jpg"
    assert payload["has_evidence_image"] is True
    assert payload["camera_name"] == "Gate 1" and payload["site"] == "Bai Vong port, arrivals"
    assert payload["time"] == "2023-11-14T22:13:20.123Z" and payload["time_ms"] == 1_700_000_000_123
    assert payload["deployment"] == "island" and payload["track_id"] == 7
    assert "evidence_jpeg" not in payload
    body = nt.encode_payload(payload)
    assert json.loads(body) == payload
    unknown = nt.alert_payload(alert(evidence="free text"), None, "island", None)
    assert unknown["site"] is None and unknown["camera_name"] is None and unknown["evidence"] == "free text"


@pytest.mark.parametrize("fields, base, expected", [
    ({"evidence_ref": "https://evidence.example/a1.jpg"}, "https://c", "https://evidence.example/a1.jpg"),
    ({"evidence_ref": "s3://bucket/a1.jpg"}, "https://c", "https://c/api/alerts/a1/evidence.jpg"),
    ({"evidence_ref": "s3://bucket/a1.jpg"}, None, "s3://bucket/a1.jpg"),
    ({"evidence_jpeg": b"x"}, None, None),
    ({}, "https://c", None),
])
def test_evidence_url(fields, base, expected):
    assert nt.evidence_url(alert(**fields), base) == expected


def test_topics_are_slugged_levels():
    assert nt.alert_topic("camflow", "Bai Vong port, arrivals", "gate-1", "crowd_limit") == \
        "camflow/bai-vong-port-arrivals/gate-1/crowd_limit"
    assert nt.alert_topic("x/y", None, "cam.2", "a+b#c") == "x/y/no-site/cam.2/a-b-c"
    assert nt.status_topic("camflow", "gate-1") == "camflow/gate-1/status"
    for level in nt.alert_topic("p", "a/b+#", "c", "t").split("/")[1:]:
        assert level and not set(level) & set("/+#")


# --------------------------------------------------------------------------- signing

def test_signature_is_hmac_sha256_of_timestamp_and_body():
    body = b'{"alert_id":"a1"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert nt.sign(SECRET, 1_700_000_000, body) == "sha256=" + expected
    sig = nt.sign(SECRET, 1_700_000_000, body)
    assert nt.verify(SECRET, "1700000000", body, sig, now=1_700_000_100)
    assert not nt.verify(SECRET, "1700000000", body + b" ", sig, now=1_700_000_100)  # body changed
    assert not nt.verify("other", "1700000000", body, sig, now=1_700_000_100)  # wrong secret
    assert not nt.verify(SECRET, "1700000001", body, sig, now=1_700_000_100)  # timestamp changed
    assert not nt.verify(SECRET, "1700000000", body, sig, now=1_700_000_000 + 3600)  # too old: replay
    assert not nt.verify(SECRET, None, body, sig) and not nt.verify(SECRET, "x", body, sig)
    assert not nt.verify(SECRET, "1700000000", body, None, now=1_700_000_000)


# --------------------------------------------------------------------------- backoff

def test_backoff_grows_caps_and_jitters():
    b = nt.Backoff(initial_s=0.5, multiplier=2, max_s=5, jitter=0)
    assert [b.delay(r) for r in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]
    assert b.total(4) == 7.5
    default = nt.WebhookTarget(kind="webhook", url="http://h", secret_env="E")
    # the defaults ride out a receiver that is down for well over 10 s
    assert default.backoff.total(default.retries) > 20
    j = nt.Backoff(initial_s=1, multiplier=2, max_s=100, jitter=0.1)
    assert j.delay(3, rand=lambda: 0.0) == pytest.approx(3.6)
    assert j.delay(3, rand=lambda: 1.0) == pytest.approx(4.4)
    assert nt.Backoff(initial_s=10, max_s=10, jitter=0.5).delay(1, rand=lambda: 1.0) == 10
    assert nt.retry_after_s("3") == 3 and nt.retry_after_s("Wed, 21 Oct 2015") is None
    assert nt.retry_after_s(None) is None


# --------------------------------------------------------------------------- offsets and the delivery log

def test_offsets_commit_up_to_the_first_unfinished_alert():
    t = nt.OffsetTracker()
    tp = ("alerts", 0)
    t.add(tp, 10, 2)
    t.add(tp, 11, 0)  # unrouted: nothing to wait for
    t.add(tp, 12, 1)
    assert t.committable() == {tp: 10} and t.in_flight() == 2
    t.done(tp, 12)
    assert t.committable() == {tp: 10}
    t.done(tp, 10)
    assert t.committable() == {tp: 10}  # one of its two deliveries still open
    t.done(tp, 10)
    assert t.committable() == {tp: 13} and t.in_flight() == 0
    t.add(("alerts", 1), 0, 0)
    assert t.committable() == {tp: 13, ("alerts", 1): 1}


def test_delivery_log_survives_reopen_and_claims_once(tmp_path):
    path = tmp_path / "state" / "d.sqlite"
    log = nt.DeliveryLog(path)
    assert log.begin("a1", "ops", "alert", {"alert_id": "a1"})
    assert not log.begin("a1", "ops", "alert", {"alert_id": "a1"})  # a replay of the same alert
    assert log.begin("a1", "home", "alert", {}) and log.begin("a1", "home", "status", {})
    log.finish("a1", "ops", "alert", "delivered", 3)
    log.release("a1", "home", "status")  # stopped before it was sent
    assert log.begin("a2", "ops", "alert", {"alert_id": "a2"})  # the process dies during a2
    log.close()

    log = nt.DeliveryLog(path)
    assert log.state("a1", "ops", "alert") == "delivered"
    assert not log.begin("a1", "ops", "alert", {})
    assert log.begin("a1", "home", "status", {})  # released claims may be taken again
    unfinished = {(a, t, k): p for a, t, k, p in log.unfinished()}
    assert unfinished[("a2", "ops", "alert")] == {"alert_id": "a2"}
    assert log.counts() == {"delivered": 1, "sending": 3}
    assert log.prune(nt._now_ms() + 1) == 1  # only finished deliveries are forgotten
    log.close()


def test_camera_status_only_moves_forward(tmp_path):
    log = nt.DeliveryLog(tmp_path / "d.sqlite")
    assert log.claim_status("home", "gate-1", 2000, "offline", "a")
    assert not log.claim_status("home", "gate-1", 1000, "online", "b")  # an older event, replayed
    assert log.claim_status("home", "gate-1", 3000, "online", "c")
    assert log.claim_status("other", "gate-1", 1000, "online", "b")
    log.close()


# --------------------------------------------------------------------------- webhook sender, real HTTP server

class Receiver:
    """A real HTTP server: answers the status codes in ``script`` in turn (then 200) and
    records every request with whether its signature verified."""

    def __init__(self, script: list[int] | None = None, retry_after: str | None = None):
        self.script = list(script or [])
        self.retry_after = retry_after
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append({
                    "at": time.monotonic(), "body": body, "headers": dict(self.headers),
                    "valid": nt.verify(SECRET, self.headers.get(nt.TIMESTAMP_HEADER), body,
                                       self.headers.get(nt.SIGNATURE_HEADER))})
                code = outer.script.pop(0) if outer.script else 200
                self.send_response(code)
                if outer.retry_after and code in (429, 503):
                    self.send_header("Retry-After", outer.retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(script=None, retry_after=None):
        made.append(Receiver(script, retry_after))
        return made[-1]

    yield make
    for r in made:
        r.close()


def sender_for(url: str, retries: int = 3, stop: threading.Event | None = None, **backoff):
    target = nt.WebhookTarget(kind="webhook", url=url, secret_env="NOTIFY_TEST_SECRET", retries=retries,
                              timeout_s=2, headers={"X-Team": "ops"},
                              backoff={"initial_s": 0.05, "max_s": 0.2, "jitter": 0, **backoff})
    attempts: list[bool] = []
    return nt.WebhookSender("ops", target, stop or threading.Event(), on_attempt=attempts.append), attempts


def test_webhook_retries_server_errors_and_signs_every_attempt(receiver, monkeypatch):
    monkeypatch.setenv("NOTIFY_TEST_SECRET", SECRET)
    r = receiver([503, 500])
    sender, attempts = sender_for(r.url)
    body = nt.encode_payload(nt.alert_payload(alert(), None, "island", None))
    assert sender.send("a1", body) == 3
    assert attempts == [False, False, True]
    assert [q["valid"] for q in r.requests] == [True, True, True]
    assert all(q["body"] == body for q in r.requests)
    h = r.requests[0]["headers"]
    assert h[nt.ALERT_ID_HEADER] == "a1" and h[nt.DELIVERY_HEADER] == "a1:ops"
    assert h["Content-Type"] == "application/json" and h["X-Team"] == "ops"
    gaps = [b["at"] - a["at"] for a, b in zip(r.requests, r.requests[1:])]
    assert gaps[0] >= 0.04 and gaps[1] >= 0.09  # 0.05 s, then 0.1 s


def test_webhook_client_errors_are_not_retried(receiver, monkeypatch):
    monkeypatch.setenv("NOTIFY_TEST_SECRET", SECRET)
    r = receiver([400])
    sender, _ = sender_for(r.url)
    with pytest.raises(nt.DeliveryFailed) as failed:
        sender.send("a1", b"{}")
    assert failed.value.reason == "rejected" and failed.value.attempts == 1 and "400" in failed.value.detail
    assert len(r.requests) == 1


def test_webhook_gives_up_after_its_retries(receiver, monkeypatch):
    monkeypatch.setenv("NOTIFY_TEST_SECRET", SECRET)
    r = receiver([503] * 10)
    sender, _ = sender_for(r.url, retries=2)
    with pytest.raises(nt.DeliveryFailed) as failed:
        sender.send("a1", b"{}")
    assert failed.value.reason == "http_status" and failed.value.attempts == 3 and len(r.requests) == 3

    r.close()  # nothing listens there now
    sender, _ = sender_for(r.url, retries=1)
    with pytest.raises(nt.DeliveryFailed) as failed:
        sender.send("a1", b"{}")
    assert failed.value.reason == "unreachable" and failed.value.attempts == 2


def test_webhook_honours_retry_after_up_to_the_cap(receiver, monkeypatch):
    monkeypatch.setenv("NOTIFY_TEST_SECRET", SECRET)
    r = receiver([429], retry_after="0.3")
    sender, _ = sender_for(r.url, max_s=0.5)
    assert sender.send("a1", b"{}") == 2
    assert r.requests[1]["at"] - r.requests[0]["at"] >= 0.28


def test_webhook_stops_waiting_when_told_to_stop(receiver, monkeypatch):
    monkeypatch.setenv("NOTIFY_TEST_SECRET", SECRET)
    r = receiver([503] * 10)
    stop = threading.Event()
    sender, _ = sender_for(r.url, retries=50, stop=stop, initial_s=5, max_s=5)
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(nt.Abandoned) as abandoned:
        sender.send("a1", b"{}")
    assert time.monotonic() - started < 3
    assert abandoned.value.sent is False  # every attempt got an answer: it certainly was not taken


# --------------------------------------------------------------------------- MQTT sender, no broker there

def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mqtt_gives_up_when_no_broker_answers_and_stops_when_told():
    target = nt.MqttTarget(kind="mqtt", port=free_port(), timeout_s=0.5)
    stop = threading.Event()
    states: list[bool] = []
    sender = nt.MqttSender("home", target, "camflow-notify-test", stop, on_state=states.append)
    try:
        with pytest.raises(nt.DeliveryFailed) as failed:
            sender.publish("camflow/x/y/z", b"{}")
        assert failed.value.reason == "not_connected" and failed.value.attempts == 0
        stop.set()
        with pytest.raises(nt.Abandoned) as abandoned:
            sender.publish("camflow/x/y/z", b"{}")
        assert abandoned.value.sent is False  # never connected: certainly not sent
        assert True not in states
    finally:
        sender.close()
