"""``camflow notify``: alerts -> MQTT and webhooks, routed by rules, each at most once per target.

A service beside the sink. It reads the ``alerts`` topic with ``assign()`` (no group join: the
dev broker delays joins) from the offsets committed under ``<group_id>-notify``, routes each
alert by the config's ``notify.routes`` (type, severity, camera, site -> target names) and hands
it to one worker thread per target, so a slow or unreachable target holds up only itself:

- MQTT (paho-mqtt): ``<prefix>/<site>/<camera>/<type>``, QoS 1, a JSON payload with the
  evidence URL; and for the liveness alerts (``camera_offline`` / ``camera_recovered``) a
  retained ``<prefix>/<camera>/status`` = ``offline`` / ``online`` (newest event time wins).
- Webhooks: HTTP POST of the same JSON, signed with HMAC-SHA256 over ``"<timestamp>.<body>"``
  (headers ``X-Camflow-Timestamp`` and ``X-Camflow-Signature: sha256=<hex>``), a timeout,
  retries with exponential backoff, then a record on the ``notify-failures`` topic.

At most once per target across restarts: a delivery is written to a SQLite file
(``notify.state_dir``) as ``sending`` before it starts and ``delivered`` / ``failed`` once it
ends, and the Kafka offset of an alert is committed only after every one of its deliveries
ended. After a restart, alerts above the committed offset (and replays of an alert, which carry
the same ``alert_id``) find their deliveries in that file and are not sent again. A delivery
still ``sending`` when the process died (killed mid-send) has an unknown outcome: it is not
sent again but reported as a ``notify-failures`` record with reason ``interrupted``. A
delivery that was given up (after its retries) is reported the same way, never dropped.

This module imports only the standard library and pydantic at import time, because
``camflow.config`` composes ``NotifyConfig`` into the top-level ``Config``; the Kafka,
MQTT and HTTP clients are imported when the service starts.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import queue
import re
import signal
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

# The config models live with the deployment's config; re-exported for receivers and tests.
from camflow.config.notify import (SEVERITIES, TARGET_NAME, Backoff, Match, MqttTarget,  # noqa: F401
                                   NotifyConfig, Route, WebhookTarget, _secret)

if TYPE_CHECKING:  # the config module imports this one (NotifyConfig): no import cycle at run time
    from camflow.config import Camera, Config

# Liveness alert types -> the camera status they announce (retained MQTT status topic).
LIVENESS = {"camera_offline": "offline", "camera_recovered": "online"}
SIGNATURE_HEADER = "X-Camflow-Signature"
TIMESTAMP_HEADER = "X-Camflow-Timestamp"
ALERT_ID_HEADER = "X-Camflow-Alert-Id"
DELIVERY_HEADER = "X-Camflow-Delivery"


def slug(text: str | None, default: str = "no-site") -> str:
    """One MQTT topic level from a free-text name: lower case, runs of other characters -> '-'."""
    value = re.sub(r"[^a-z0-9_.-]+", "-", (text or "").lower()).strip("-")
    return value or default


def alert_topic(prefix: str, site: str | None, camera_id: str, alert_type: str) -> str:
    return f"{prefix}/{slug(site)}/{slug(camera_id, 'unknown')}/{slug(alert_type, 'alert')}"


def status_topic(prefix: str, camera_id: str) -> str:
    return f"{prefix}/{slug(camera_id, 'unknown')}/status"


def iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def evidence_url(alert: dict, evidence_base_url: str | None) -> str | None:
    """Where the alert's evidence image is: its evidence_ref when that is a web URL, else the
    console's image of it (inline JPEG or a stored reference) when a console URL is configured,
    else the evidence_ref as it is (e.g. s3://...), else None."""
    ref = alert.get("evidence_ref")
    if ref and ref.startswith(("http://", "https://")):
        return ref
    if evidence_base_url and (alert.get("evidence_jpeg") or ref):
        return f"{evidence_base_url.rstrip('/')}/api/alerts/{alert['alert_id']}/evidence.jpg"
    return ref or None


def alert_payload(alert: dict, camera: "Camera | None", deployment: str,
                  evidence_base_url: str | None) -> dict:
    """The JSON body sent to every target: the alert without its image bytes, plus the camera's
    name and site, an ISO time and the evidence URL."""
    evidence: Any = alert.get("evidence")
    if isinstance(evidence, str):
        try:
            evidence = json.loads(evidence)
        except ValueError:
            pass  # free text stays text
    site = camera.location.site if camera is not None and camera.location is not None else None
    return {
        "alert_id": alert["alert_id"],
        "type": alert["type"],
        "severity": alert["severity"],
        "camera_id": alert["camera_id"],
        "camera_name": (camera.name or None) if camera is not None else None,
        "site": site,
        "deployment": deployment,
        "time_ms": int(alert["time_ms"]),
        "time": iso_ms(int(alert["time_ms"])),
        "subject": alert.get("subject"),
        "score": alert.get("score"),
        "track_id": alert.get("track_id"),
        "evidence": evidence,
        "evidence_url": evidence_url(alert, evidence_base_url),
        "has_evidence_image": bool(alert.get("evidence_jpeg") or alert.get("evidence_ref")),
    }


def encode_payload(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``b"<timestamp>." + body`` (the timestamp is signed too,
    so a captured request cannot be replayed later with a new timestamp)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, str(int(timestamp)).encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, timestamp: str | int | None, body: bytes, signature: str | None,
           tolerance_s: float = 300, now: float | None = None) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    if not signature or timestamp is None:
        return False
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


# --------------------------------------------------------------------------- delivery log (SQLite)

class DeliveryLog:
    """What was sent to whom, kept on disk so that a restart never sends anything twice.

    deliveries(alert_id, target, kind) -> state: sending | delivered | failed | interrupted.
    camera_status(target, camera_id) -> the newest liveness event published (retained)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("""CREATE TABLE IF NOT EXISTS deliveries (
            alert_id TEXT NOT NULL, target TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,
            updated_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, detail TEXT,
            payload TEXT, PRIMARY KEY (alert_id, target, kind))""")
        self._db.execute("""CREATE TABLE IF NOT EXISTS camera_status (
            target TEXT NOT NULL, camera_id TEXT NOT NULL, time_ms INTEGER NOT NULL,
            status TEXT NOT NULL, alert_id TEXT NOT NULL, PRIMARY KEY (target, camera_id))""")

    def state(self, alert_id: str, target: str, kind: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT state FROM deliveries WHERE alert_id=? AND target=? AND kind=?",
                                   (alert_id, target, kind)).fetchone()
        return row[0] if row else None

    def begin(self, alert_id: str, target: str, kind: str, payload: dict) -> bool:
        """Claims a delivery (state ``sending``); False when it was claimed before (sent,
        given up or interrupted): then it must not be sent."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO deliveries (alert_id, target, kind, state, updated_ms, payload) "
                "VALUES (?, ?, ?, 'sending', ?, ?)",
                (alert_id, target, kind, _now_ms(), json.dumps(payload)))
        return cur.rowcount == 1

    def finish(self, alert_id: str, target: str, kind: str, state: str, attempts: int,
               detail: str | None = None) -> None:
        with self._lock:
            self._db.execute("UPDATE deliveries SET state=?, updated_ms=?, attempts=?, detail=?, payload=NULL "
                             "WHERE alert_id=? AND target=? AND kind=?",
                             (state, _now_ms(), attempts, detail, alert_id, target, kind))

    def release(self, alert_id: str, target: str, kind: str) -> None:
        """Forget a claim whose delivery certainly did not happen (stopped before it was sent):
        the alert's offset is not committed, so it is read and sent after the restart."""
        with self._lock:
            self._db.execute("DELETE FROM deliveries WHERE alert_id=? AND target=? AND kind=? AND state='sending'",
                             (alert_id, target, kind))

    def unfinished(self) -> list[tuple[str, str, str, dict]]:
        """Deliveries left ``sending`` by a process that died during them."""
        with self._lock:
            rows = self._db.execute("SELECT alert_id, target, kind, payload FROM deliveries "
                                    "WHERE state='sending'").fetchall()
        return [(a, t, k, json.loads(p) if p else {}) for a, t, k, p in rows]

    def claim_status(self, target: str, camera_id: str, time_ms: int, status: str, alert_id: str) -> bool:
        """True (and remembered) when this liveness event is the newest seen for the camera."""
        with self._lock:
            row = self._db.execute("SELECT time_ms FROM camera_status WHERE target=? AND camera_id=?",
                                   (target, camera_id)).fetchone()
            if row is not None and row[0] > time_ms:
                return False
            self._db.execute("INSERT OR REPLACE INTO camera_status VALUES (?, ?, ?, ?, ?)",
                             (target, camera_id, time_ms, status, alert_id))
        return True

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state").fetchall())

    def prune(self, older_than_ms: int) -> int:
        with self._lock:
            cur = self._db.execute("DELETE FROM deliveries WHERE updated_ms < ? AND state != 'sending'",
                                   (older_than_ms,))
        return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- offsets

class OffsetTracker:
    """Which offsets may be committed: per partition, the lowest offset whose deliveries have
    not all ended, or the offset after the last record read when none are pending."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], dict[int, int]] = {}
        self._next: dict[tuple[str, int], int] = {}

    def add(self, tp: tuple[str, int], offset: int, deliveries: int) -> None:
        with self._lock:
            self._next[tp] = max(self._next.get(tp, 0), offset + 1)
            if deliveries > 0:
                self._pending.setdefault(tp, {})[offset] = deliveries

    def done(self, tp: tuple[str, int], offset: int) -> None:
        with self._lock:
            pending = self._pending.get(tp, {})
            if offset in pending:
                pending[offset] -= 1
                if pending[offset] <= 0:
                    del pending[offset]

    def in_flight(self) -> int:
        with self._lock:
            return sum(len(p) for p in self._pending.values())

    def committable(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return {tp: (min(self._pending[tp]) if self._pending.get(tp) else nxt)
                    for tp, nxt in self._next.items()}


# --------------------------------------------------------------------------- senders

class DeliveryFailed(Exception):
    """Given up: ``reason`` is a stable code for the notify-failures record."""

    def __init__(self, reason: str, detail: str, attempts: int):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.attempts = reason, detail, attempts


class Abandoned(Exception):
    """Stopped before the delivery ended. ``sent``: it may have reached the target."""

    def __init__(self, sent: bool, attempts: int):
        super().__init__("stopped")
        self.sent, self.attempts = sent, attempts


RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}


def retry_after_s(value: str | None) -> float | None:
    """A Retry-After header in seconds (the delta form only)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class WebhookSender:
    """POSTs signed JSON; retries network errors, timeouts, 408/425/429 and 5xx with backoff."""

    def __init__(self, name: str, target: WebhookTarget, stop: threading.Event,
                 on_attempt: Callable[[bool], None] = lambda ok: None,
                 on_retry: Callable[[], None] = lambda: None,
                 user_agent: str = "camflow-notify"):
        import requests

        self.name, self.target, self.stop = name, target, stop
        self.secret = target.secret(name)
        self.session = requests.Session()
        self.on_attempt, self.on_retry = on_attempt, on_retry
        self.user_agent = user_agent

    def headers(self, alert_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        ts = int(time.time()) if timestamp is None else timestamp
        return {**self.target.headers, "Content-Type": "application/json", "User-Agent": self.user_agent,
                TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(self.secret, ts, body),
                ALERT_ID_HEADER: alert_id, DELIVERY_HEADER: f"{alert_id}:{self.name}"}

    def send(self, alert_id: str, body: bytes) -> int:
        """Returns the attempts it took; raises DeliveryFailed or Abandoned."""
        import requests

        attempt = 0
        sent_maybe = False  # an attempt that timed out after sending may have arrived
        while True:
            attempt += 1
            retry_wait: float | None = None
            try:
                response = self.session.post(self.target.url, data=body,
                                             headers=self.headers(alert_id, body),
                                             timeout=self.target.timeout_s,
                                             verify=self.target.verify_tls, allow_redirects=False)
            except requests.exceptions.ConnectionError as exc:
                reason, detail = "unreachable", f"{type(exc).__name__}: {exc}"
                if isinstance(exc, requests.exceptions.ConnectTimeout):
                    reason = "timeout"
            except requests.exceptions.Timeout as exc:
                sent_maybe = True
                reason, detail = "timeout", f"no response within {self.target.timeout_s} s: {exc}"
            except requests.exceptions.RequestException as exc:
                self.on_attempt(False)
                raise DeliveryFailed("request_error", f"{type(exc).__name__}: {exc}", attempt) from exc
            else:
                response.close()
                if 200 <= response.status_code < 300:
                    self.on_attempt(True)
                    return attempt
                detail = f"HTTP {response.status_code} {response.reason or ''}".strip()
                if response.status_code not in RETRY_STATUSES:
                    self.on_attempt(False)
                    raise DeliveryFailed("rejected", detail, attempt)
                reason = "http_status"
                retry_wait = retry_after_s(response.headers.get("Retry-After"))
            self.on_attempt(False)
            if attempt > self.target.retries:
                raise DeliveryFailed(reason, f"{detail} (after {attempt} attempts)", attempt)
            wait = self.target.backoff.delay(attempt)
            if retry_wait is not None:
                wait = min(self.target.backoff.max_s, max(wait, retry_wait))
            if self.stop.wait(wait):
                raise Abandoned(sent=sent_maybe, attempts=attempt)
            self.on_retry()

    def close(self) -> None:
        self.session.close()


class MqttSender:
    """One MQTT connection (paho-mqtt, reconnecting in its own thread); ``publish`` waits for
    the broker's acknowledgement (QoS 1/2). Messages published while disconnected are kept by
    paho and sent on reconnection."""

    def __init__(self, name: str, target: MqttTarget, client_id: str, stop: threading.Event,
                 on_state: Callable[[bool], None] = lambda up: None):
        import paho.mqtt.client as mqtt

        self.name, self.target, self.stop, self.on_state = name, target, stop, on_state
        self._acked: set[int] = set()
        self._cond = threading.Condition()
        self.connected = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if target.username:
            client.username_pw_set(target.username, target.password(name))
        if target.tls:
            client.tls_set(ca_certs=str(target.ca_file) if target.ca_file else None)
        client.max_inflight_messages_set(100)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self.client = client
        client.connect_async(target.host, target.port, keepalive=target.keepalive_s)
        client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if not reason_code.is_failure:
            self.connected.set()
            self.on_state(True)
        else:
            print(f"camflow notify: {self.name}: MQTT connection refused: {reason_code}", file=sys.stderr)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self.connected.clear()
        self.on_state(False)

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Returns once the broker acknowledged; raises DeliveryFailed or Abandoned."""
        deadline = time.monotonic() + self.target.timeout_s
        # wait for a connection first, so that a delivery that never started is certainly unsent
        while not self.connected.wait(0.2):
            if self.stop.is_set():
                raise Abandoned(sent=False, attempts=0)
            if time.monotonic() > deadline:
                raise DeliveryFailed("not_connected", f"no connection to {self.target.host}:{self.target.port} "
                                     f"within {self.target.timeout_s} s", 0)
        info = self.client.publish(topic, payload, qos=self.target.qos, retain=retain)
        if info.rc not in (0, 4):  # MQTT_ERR_SUCCESS, MQTT_ERR_NO_CONN (queued: sent on reconnection)
            raise DeliveryFailed("publish_error", f"paho rc {info.rc}", 1)
        with self._cond:
            while info.mid not in self._acked:
                if self.stop.is_set():
                    raise Abandoned(sent=True, attempts=1)
                if time.monotonic() > deadline:
                    raise DeliveryFailed("not_acknowledged", f"no acknowledgement from {self.target.host}:"
                                         f"{self.target.port} within {self.target.timeout_s} s", 1)
                self._cond.wait(0.2)
            self._acked.discard(info.mid)

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


# --------------------------------------------------------------------------- the service

@dataclass
class Job:
    tp: tuple[str, int]
    offset: int
    alert: dict
    payload: dict
    body: bytes
    site: str | None
    kind: str  # "alert" or "status"
    read_at: float


@dataclass
class NotifyReport:
    read: int = 0
    delivered: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # already delivered before (restart/replay)
    unrouted: int = 0
    rejected: int = 0  # undecodable records
    interrupted: int = 0  # deliveries found unfinished at start
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"read": self.read, "delivered": self.delivered, "failed": self.failed,
                "skipped": self.skipped, "unrouted": self.unrouted, "rejected": self.rejected,
                "interrupted": self.interrupted, "seconds": round(self.seconds, 2)}


class Notifier:
    """The delivery side: per-target worker threads, the delivery log, failure records."""

    def __init__(self, config: "Config", notify: NotifyConfig, log: DeliveryLog, tracker: OffsetTracker,
                 report: NotifyReport, fail: Callable[[dict], None]):
        from camflow.services import metrics

        self.config, self.notify, self.log, self.tracker = config, notify, log, tracker
        self.report, self.fail, self.metrics = report, fail, metrics
        self.stop = threading.Event()
        self.crashed = threading.Event()
        self._lock = threading.Lock()
        self.queues: dict[str, queue.Queue] = {}
        self.senders: dict[str, Any] = {}
        self.threads: list[threading.Thread] = []
        for name, target in notify.targets.items():
            up = metrics.NOTIFY_TARGET_UP.labels(name)
            up.set(0)
            metrics.NOTIFY_QUEUED.labels(name).set(0)
            metrics.NOTIFY_DELIVERED.labels(name, "alert")  # every target's series exist from the start
            metrics.NOTIFY_LATENCY.labels(name)
            if isinstance(target, MqttTarget):
                client_id = target.client_id or f"camflow-notify-{config.deployment}-{name}"
                self.senders[name] = MqttSender(name, target, client_id, self.stop, on_state=up.set)
            else:
                self.senders[name] = WebhookSender(
                    name, target, self.stop, on_attempt=up.set,
                    on_retry=metrics.NOTIFY_RETRIES.labels(name).inc)
            self.queues[name] = queue.Queue()
            thread = threading.Thread(target=self._work, args=(name,), name=f"notify-{name}", daemon=True)
            self.threads.append(thread)
        for thread in self.threads:
            thread.start()

    def _count(self, table: dict[str, int], name: str) -> None:
        with self._lock:
            table[name] = table.get(name, 0) + 1

    def jobs_for(self, tp: tuple[str, int], offset: int, alert: dict) -> list[tuple[str, Job]]:
        """(target name, job) for each delivery an alert needs."""
        camera = self.config.camera(alert["camera_id"])
        site = camera.location.site if camera is not None and camera.location is not None else None
        payload = alert_payload(alert, camera, self.config.deployment, self.notify.evidence_base_url)
        body = encode_payload(payload)
        now = time.monotonic()
        jobs = [(name, Job(tp, offset, alert, payload, body, site, "alert", now))
                for name in self.notify.route(alert, site)]
        if alert["type"] in LIVENESS:
            jobs += [(name, Job(tp, offset, alert, payload, body, site, "status", now))
                     for name, target in self.notify.targets.items()
                     if isinstance(target, MqttTarget) and target.camera_status]
        return jobs

    def submit(self, name: str, job: Job) -> None:
        self.queues[name].put(job)
        self.metrics.NOTIFY_QUEUED.labels(name).inc()

    def _work(self, name: str) -> None:
        q = self.queues[name]
        while True:
            job = q.get()
            if job is None:
                return
            self.metrics.NOTIFY_QUEUED.labels(name).dec()
            if self.stop.is_set():
                continue  # not started: the offset stays uncommitted, it is read again after a restart
            try:
                self._deliver(name, job)
            except Exception as exc:  # a bug must not silently stop a target's deliveries
                print(f"camflow notify: {name}: {job.alert.get('alert_id')}: unexpected error {exc!r}",
                      file=sys.stderr)
                self.crashed.set()
                raise

    def _deliver(self, name: str, job: Job) -> None:
        alert_id = job.alert["alert_id"]
        if not self.log.begin(alert_id, name, job.kind, job.payload):
            self.metrics.NOTIFY_SKIPPED.labels(name, "already_sent").inc()
            self._count(self.report.skipped, name)
            self.tracker.done(job.tp, job.offset)
            return
        sender = self.senders[name]
        try:
            if job.kind == "status":
                status = LIVENESS[job.alert["type"]]
                if not self.log.claim_status(name, job.alert["camera_id"], int(job.alert["time_ms"]),
                                             status, alert_id):
                    self.log.finish(alert_id, name, job.kind, "delivered", 0, "older than the status shown")
                    self.metrics.NOTIFY_SKIPPED.labels(name, "stale_status").inc()
                    self.tracker.done(job.tp, job.offset)
                    return
                body = encode_payload({"camera_id": job.alert["camera_id"], "status": status,
                                       "since_ms": int(job.alert["time_ms"]),
                                       "since": iso_ms(int(job.alert["time_ms"])), "alert_id": alert_id,
                                       "site": job.site})
                sender.publish(status_topic(sender.target.topic_prefix, job.alert["camera_id"]),
                               body, retain=True)
                attempts = 1
            elif isinstance(sender, MqttSender):
                sender.publish(alert_topic(sender.target.topic_prefix, job.site, job.alert["camera_id"],
                                           job.alert["type"]), job.body)
                attempts = 1
            else:
                attempts = sender.send(alert_id, job.body)
        except Abandoned as stopped:
            # Stopped mid-delivery; the offset is not marked done, so it is not committed. Not
            # sent: the claim is forgotten and the alert is delivered after the restart. Maybe
            # sent: the claim stays ``sending``; the next start reports it as interrupted.
            if not stopped.sent:
                self.log.release(alert_id, name, job.kind)
            return
        except DeliveryFailed as failed:
            self.fail({"alert_id": alert_id, "target": name, "kind": job.kind, "reason": failed.reason,
                       "detail": failed.detail, "attempts": failed.attempts, "payload": job.payload})
            self.log.finish(alert_id, name, job.kind, "failed", failed.attempts,
                            f"{failed.reason}: {failed.detail}")
            self.metrics.NOTIFY_FAILED.labels(name, failed.reason).inc()
            self._count(self.report.failed, name)
            print(f"camflow notify: {name}: {alert_id} ({job.kind}) given up: {failed}", file=sys.stderr)
        else:
            self.log.finish(alert_id, name, job.kind, "delivered", attempts)
            self.metrics.NOTIFY_DELIVERED.labels(name, job.kind).inc()
            self.metrics.NOTIFY_LATENCY.labels(name).observe(time.monotonic() - job.read_at)
            self._count(self.report.delivered, name)
        self.tracker.done(job.tp, job.offset)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop: each worker ends the delivery in hand (no further retries) and starts no other."""
        self.stop.set()
        for q in self.queues.values():
            q.put(None)
        deadline = time.monotonic() + timeout_s
        for thread in self.threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        for sender in self.senders.values():
            try:
                sender.close()
            except Exception:
                pass


class FailureRecords:
    """Writes notify-failures records (JSON, keyed by alert_id) and waits for the broker's ack."""

    def __init__(self, config: "Config", topic: str):
        from camflow.core.kafka import reliable_producer

        self.topic = topic
        self.deployment = config.deployment
        self.producer = reliable_producer(config.kafka)
        self._lock = threading.Lock()

    def __call__(self, record: dict) -> None:
        value = json.dumps({**record, "deployment": self.deployment, "failed_at_ms": _now_ms()},
                           sort_keys=True).encode()
        key = (record.get("alert_id") or "").encode() or None
        errors: list = []
        with self._lock:
            while True:
                errors.clear()
                self.producer.produce(self.topic, value=value, key=key,
                                      on_delivery=lambda err, msg: errors.append(err))
                while not errors:
                    self.producer.poll(0.5)
                if errors[0] is None:
                    return
                print(f"camflow notify: {self.topic}: {errors[0]}; retrying", file=sys.stderr)
                time.sleep(1.0)

    def close(self) -> None:
        self.producer.flush(30)


def delivery_log_path(config: "Config", notify: NotifyConfig) -> Path:
    return Path(notify.state_dir) / f"{config.deployment}.sqlite"


def _wait_for_partitions(kafka, topic: str, stopping: list, wait_s: float | None) -> int | None:
    from confluent_kafka import KafkaException

    from camflow.core.kafka import partition_count

    started, told = time.monotonic(), False
    while not stopping:
        try:
            return partition_count(kafka, topic)
        except KafkaException as exc:
            if wait_s is not None and time.monotonic() - started > wait_s:
                raise
            if not told:
                print(f"camflow notify: waiting for topic {topic!r} ({exc})", file=sys.stderr)
                told = True
            time.sleep(2.0)
    return None


def run_notify(config: "Config", notify: NotifyConfig | None = None, idle_exit_s: float | None = None,
               max_seconds: float | None = None, batch_size: int = 200,
               state_dir: Path | None = None, stop_event: threading.Event | None = None) -> NotifyReport:
    """Consume ``alerts`` and deliver them until stopped (SIGTERM or ``stop_event``), idle for
    ``idle_exit_s`` (nothing read and nothing in flight) or ``max_seconds`` passed."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

    from camflow.core.kafka import ensure_topic
    from camflow.schemas.codec import AvroCodec, SchemaError
    from camflow.services import metrics

    notify = notify if notify is not None else getattr(config, "notify", None) or NotifyConfig()
    if state_dir is not None:
        notify = notify.model_copy(update={"state_dir": Path(state_dir)})
    kafka = config.kafka
    topic = kafka.topics.alerts
    report = NotifyReport()
    started = time.monotonic()
    stopping: list = []
    previous_handlers = {}
    if threading.current_thread() is threading.main_thread():
        # SIGTERM / Ctrl-C: each worker ends the delivery in hand, then offsets are committed
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous_handlers[signum] = signal.signal(signum, lambda *_: stopping.append(True))
    if not notify.targets:
        print("camflow notify: no targets in notify.targets: nothing to deliver to", file=sys.stderr)
    ensure_topic(kafka, notify.failures_topic, kafka.topics.partitions)
    fail = FailureRecords(config, notify.failures_topic)
    log = DeliveryLog(delivery_log_path(config, notify))
    log.prune(_now_ms() - int(notify.remember_days * 86_400_000))
    for alert_id, target, kind, payload in log.unfinished():
        # the process died during this delivery: it may have arrived, so it is not sent again
        fail({"alert_id": alert_id, "target": target, "kind": kind, "reason": "interrupted",
              "detail": "the notifier stopped during this delivery; it may or may not have arrived",
              "attempts": 1, "payload": payload})
        log.finish(alert_id, target, kind, "interrupted", 1, "stopped during the delivery")
        metrics.NOTIFY_FAILED.labels(target, "interrupted").inc()
        report.interrupted += 1
    tracker = OffsetTracker()
    codec = AvroCodec("Alert", kafka.registry_conf(), subject=f"{topic}-value")
    consumer = Consumer({**kafka.client_conf(), "group.id": f"{kafka.group_id}-notify",
                         "enable.auto.commit": False, "enable.partition.eof": False,
                         "auto.offset.reset": "earliest"})
    notifier = None
    try:
        partitions = _wait_for_partitions(kafka, topic, stopping, idle_exit_s)
        if partitions is None:
            return report
        committed = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        consumer.assign([TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                         for tp in committed])
        last_committed = {(topic, tp.partition): tp.offset for tp in committed if tp.offset >= 0}
        notifier = Notifier(config, notify, log, tracker, report, fail)
        last_activity = time.monotonic()
        last_commit = last_error_report = 0.0

        def commit(force: bool = False) -> None:
            nonlocal last_commit
            if not force and time.monotonic() - last_commit < 0.5:
                return
            last_commit = time.monotonic()
            offsets = {tp: o for tp, o in tracker.committable().items() if last_committed.get(tp) != o}
            if offsets:
                try:
                    consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                    asynchronous=False)
                except KafkaException as exc:  # e.g. the broker restarting: try again later
                    print(f"camflow notify: offset commit failed ({exc}); will retry", file=sys.stderr)
                    return
                last_committed.update(offsets)

        while not stopping and not (stop_event is not None and stop_event.is_set()):
            if notifier.crashed.is_set():
                raise RuntimeError("camflow notify: a delivery worker failed (see above)")
            now = time.monotonic()
            if max_seconds is not None and now - started > max_seconds:
                break
            in_flight = tracker.in_flight()
            if in_flight:
                last_activity = now
            if idle_exit_s is not None and now - last_activity > idle_exit_s:
                break
            room = notify.max_in_flight - in_flight
            if room <= 0:
                commit()
                time.sleep(0.05)
                continue
            messages = consumer.consume(min(batch_size, room), timeout=0.5)
            for msg in messages:
                if msg.error():
                    error = msg.error()
                    if error.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                        continue
                    if error.fatal():
                        raise KafkaException(error)
                    # transient (a broker restarting...): the client reconnects by itself
                    if time.monotonic() - last_error_report > 30:
                        print(f"camflow notify: {topic}: {error}", file=sys.stderr)
                        last_error_report = time.monotonic()
                    continue
                last_activity = time.monotonic()
                report.read += 1
                metrics.NOTIFY_READ.inc()
                tp = (msg.topic(), msg.partition())
                try:
                    alert = codec.decode(msg.value())
                except SchemaError as exc:
                    report.rejected += 1
                    metrics.NOTIFY_FAILED.labels("*", "undecodable").inc()
                    fail({"alert_id": None, "target": "*", "kind": "decode", "reason": "undecodable",
                          "detail": str(exc), "attempts": 0,
                          "payload": {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()}})
                    tracker.add(tp, msg.offset(), 0)
                    continue
                if (notify.max_alert_age_s is not None
                        and _now_ms() - int(alert["time_ms"]) > notify.max_alert_age_s * 1000):
                    metrics.NOTIFY_SKIPPED.labels("*", "too_old").inc()
                    tracker.add(tp, msg.offset(), 0)
                    continue
                jobs = notifier.jobs_for(tp, msg.offset(), alert)
                if not any(job.kind == "alert" for _, job in jobs):
                    report.unrouted += 1
                    metrics.NOTIFY_UNROUTED.inc()
                tracker.add(tp, msg.offset(), len(jobs))
                for name, job in jobs:
                    notifier.submit(name, job)
            commit(force=bool(messages) and tracker.in_flight() == 0)
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
        if notifier is not None:
            notifier.close()
            try:
                offsets = tracker.committable()
                todo = [TopicPartition(t, p, o) for (t, p), o in offsets.items()
                        if last_committed.get((t, p)) != o]
                if todo:
                    consumer.commit(offsets=todo, asynchronous=False)
            except KafkaException as exc:
                print(f"camflow notify: final offset commit failed ({exc}); the delivery log "
                      "keeps the next start from sending anything twice", file=sys.stderr)
        consumer.close()
        fail.close()
        log.close()
        report.seconds = time.monotonic() - started
    return report


# --------------------------------------------------------------------------- command line

def load_notify_config(path: str | Path | None) -> tuple["Config", NotifyConfig]:
    """The deployment config and its ``notify:`` section."""
    from camflow.config import load_config

    config = load_config(path)
    return config, config.notify


def add_arguments(parser) -> None:
    """The options of ``camflow notify``."""
    parser.add_argument("--config", help="deployment YAML with a notify: section")
    parser.add_argument("--state-dir", type=Path, help="directory of the delivery log (default: notify.state_dir)")
    parser.add_argument("--idle-exit", type=float, help="stop after this many seconds with nothing to do")
    parser.add_argument("--max-seconds", type=float, help="stop after this many seconds")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    parser.add_argument("--check", action="store_true",
                        help="validate the notify config and its secrets, print the targets, and exit")


def run(args) -> int:
    """``camflow notify``: prints a JSON summary when it stops; 2 for a bad config."""
    from camflow.config import ConfigError

    try:
        config, notify = load_notify_config(args.config)
        for name, target in notify.targets.items():  # secrets must be there before anything starts
            if isinstance(target, WebhookTarget):
                target.secret(name)
            else:
                target.password(name)
    except (ConfigError, RuntimeError) as exc:
        print(f"camflow notify: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "check", False):
        print(json.dumps({"targets": {n: t.kind for n, t in notify.targets.items()},
                          "routes": len(notify.routes),
                          "delivery_log": str(delivery_log_path(config, notify))}))
        return 0
    if getattr(args, "metrics_port", None) is not None:
        from camflow.services.metrics import serve
        serve(args.metrics_port)
        print(f"camflow notify: metrics on http://0.0.0.0:{args.metrics_port}/metrics", file=sys.stderr)
    report = run_notify(config, notify, idle_exit_s=args.idle_exit, max_seconds=args.max_seconds,
                        state_dir=args.state_dir)
    print(json.dumps(report.as_dict()))
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="camflow notify", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
