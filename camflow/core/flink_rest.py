"""A client of a Flink cluster's REST API: what every tool that talks to a running job needs
(``camflow status``, ``camflow job savepoint``, the chaos and bench harnesses).

Only the JobManager's REST address is needed, no Flink distribution on the caller's machine.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

ENDED = ("CANCELED", "FAILED", "FINISHED")


class FlinkRestError(RuntimeError):
    pass


class FlinkRest:
    """``FlinkRest("http://jobmanager:8081")``: JSON in, JSON out."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def get(self, path: str, timeout: float | None = None):
        with urllib.request.urlopen(self.url + path, timeout=timeout or self.timeout) as r:
            return json.loads(r.read().decode())

    def send(self, method: str, path: str, body: dict | None = None,
             timeout: float | None = None) -> dict:
        request = urllib.request.Request(self.url + path,
                                         data=None if body is None else json.dumps(body).encode(),
                                         method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as r:
                return json.loads(r.read().decode() or "{}")
        except urllib.error.HTTPError as exc:  # Flink explains in the body: {"errors": [...]}
            raise FlinkRestError(f"Flink REST {method} {path}: {exc.code} "
                                 f"{exc.read().decode()[:2000]}") from None

    def overview(self) -> dict | None:
        """``/overview`` (taskmanagers, slots-total, ...), or None when nothing answers."""
        try:
            return self.get("/overview", timeout=2.0)
        except Exception:
            return None

    def live_jobs(self, name: str | None = None) -> list[dict]:
        """Jobs that have not ended (``jid``, ``name``, ``state``), optionally only ``name``."""
        jobs = self.get("/jobs/overview")["jobs"]
        return [j for j in jobs if j["state"] not in ENDED and (name is None or j["name"] == name)]

    def cancel(self, job_id: str) -> None:
        """Cancel a job now (``PATCH /jobs/<id>``; the ``flink cancel`` CLI first starts a JVM,
        seconds during which more checkpoints may complete)."""
        self.send("PATCH", f"/jobs/{job_id}?mode=cancel")

    def savepoint(self, job_id: str, target_dir: str, stop: bool = False,
                  timeout: float = 300.0) -> str:
        """Trigger a savepoint of ``job_id`` into ``target_dir`` (``stop``: stop-with-savepoint,
        the job ends once it is written, without draining its windows); wait for it and return
        its path."""
        if stop:
            trigger = self.send("POST", f"/jobs/{job_id}/stop",
                                {"targetDirectory": target_dir, "drain": False})
        else:
            trigger = self.send("POST", f"/jobs/{job_id}/savepoints",
                                {"target-directory": target_dir, "cancel-job": False})
        request_id = trigger["request-id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.get(f"/jobs/{job_id}/savepoints/{request_id}")
            if result["status"]["id"] == "COMPLETED":
                operation = result.get("operation") or {}
                if "location" in operation:
                    return operation["location"]
                cause = operation.get("failure-cause") or operation
                detail = cause.get("stack-trace", cause) if isinstance(cause, dict) else cause
                raise FlinkRestError(f"savepoint of job {job_id} failed: {detail}"[:4000])
            time.sleep(0.5)
        raise TimeoutError(f"savepoint of job {job_id} not complete after {timeout:.0f}s")
