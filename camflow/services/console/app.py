"""The console's web app: pages, JSON API and the server-sent event stream of live alerts.

Alerts come live from the ``alerts`` topic (``feed.AlertFeed``) and, for history, from the
analyst store the sink fills; acknowledgements and dismissals go to the store's
``alert_actions`` (who, when). Every page needs a login; only operators may act.

Pictures: an alert's snapshot and clip live in the evidence store (``evidence`` in the config),
named by the alert's ``evidence_ref`` / ``clip_ref``. Those references are never handed to
browsers: the console reads the object itself, for a logged-in user, and writes each view to
the store's access log (as it does for the inline crops of watchlist alerts). Every time shown
is in the deployment's ``time_zone``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.middleware.sessions import SessionMiddleware

from camflow.config import Config
from camflow.core.evidence_store import configured_evidence
from camflow.core.frame_store import FrameRefError
from camflow.services.store import ALERT_ACTIONS, AnalystStore
from camflow.transforms.alert_text import local_time, why

from .auth import LoginThrottle, SessionRegistry, authenticate
from .feed import AlertFeed

HERE = Path(__file__).resolve().parent
log = logging.getLogger("camflow.services.console")
LIVENESS = ("camera_offline", "camera_recovered")


PRIVATE_CACHE = {"Cache-Control": "private, max-age=3600"}
THUMBNAIL_WIDTHS = (48, 640)  # the range of ?w= a list thumbnail may ask for
THUMBNAIL_MAX_BYTES = 64_000


def iso(ms: int | None, zone: str | None = None) -> str:
    """``2026-12-01 21:04:05 +07``: a time as people read it, in ``zone`` (None: UTC)."""
    return local_time(ms, zone)


class SharedStore:
    """One store connection for the app, used under a lock (DuckDB and psycopg connections are
    not for concurrent use); reconnects after an error."""

    def __init__(self, url: str, password: str | None = None):
        self.url, self.password = url, password
        self._store: AnalystStore | None = None
        self._lock = threading.Lock()

    def run(self, fn):
        with self._lock:
            try:
                if self._store is None:
                    self._store = AnalystStore(self.url, self.password)
                result = fn(self._store)
                self._store.commit()  # ends the read transaction too: the next read sees new rows
                return result
            except Exception:
                if self._store is not None:
                    try:
                        self._store.close()
                    except Exception:  # noqa: BLE001
                        pass
                    self._store = None
                raise

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def public_alert(alert: dict, actions: list[dict] | None = None, source: str = "",
                 zone: str | None = None) -> dict:
    """An alert as the browser gets it: no image bytes and no store references (pictures are
    fetched through the console's URLs), times in ``zone``, the rule's reason as a sentence."""
    return {
        "alert_id": alert["alert_id"], "type": alert["type"], "severity": alert["severity"],
        "camera_id": alert["camera_id"], "time_ms": alert["time_ms"],
        "time": iso(alert["time_ms"], zone),
        "subject": alert.get("subject"), "score": alert.get("score"),
        "track_id": alert.get("track_id"), "evidence": alert.get("evidence"), "why": why(alert),
        # the inline crop (watchlist alerts); the snapshot and the clip in the evidence store
        "has_evidence": bool(alert.get("evidence_jpeg") or alert.get("has_evidence_jpeg")),
        "has_snapshot": bool(alert.get("evidence_ref")),
        "has_clip": bool(alert.get("clip_ref")),
        "actions": [{**a, "time": iso(a["time_ms"], zone)} for a in (actions or [])],
        "source": source,
    }


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of a single ``Range: bytes=...`` request (a video element seeking),
    None for none or one this does not serve (then the whole object); ``(size, size)`` when it
    starts past the end (416)."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if not first:  # bytes=-N: the last N bytes
            return max(0, size - int(last)), size - 1
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    return (size, size) if start >= size else (start, end) if start <= end else None


ALERT_COLUMNS = AnalystStore.ALERT_COLUMNS


class ActionBody(BaseModel):
    action: str = Field(description="acknowledge | dismiss")
    note: str | None = Field(None, max_length=500)


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def secure_cookie(console) -> bool:
    """Whether the session cookie is ``Secure`` (sent over HTTPS only): ``console.secure_cookie``
    when the configuration has it, else always except on a loopback bind address (a developer's
    plain-HTTP console; a console reachable from elsewhere must be behind TLS)."""
    configured = getattr(console, "secure_cookie", None)
    if configured is not None:
        return bool(configured)
    return console.host not in LOOPBACK_HOSTS and not console.host.startswith("127.")


def create_app(config: Config, store_url: str | None = None, feed: AlertFeed | None = None,
               secret: str | None = None) -> FastAPI:
    console = config.console
    store = SharedStore(store_url or config.store.url, config.store.password())
    feed = feed or AlertFeed(config.kafka, config.kafka.topics.alerts, console.recent_alerts,
                             int(console.lookback_hours * 3_600_000))
    sites = {c.id: c for c in config.cameras}
    zone = config.time_zone
    evidence_store = configured_evidence(config)  # None: alerts have no snapshot or clip
    if not console.users:
        log.warning("console.users is empty: nobody can log in (see `camflow console hash-password`)")
    secret = secret or console.secret()
    if not secret:
        log.warning("no session secret in %s: using a random one", console.secret_file or
                    console.secret_env)
        secret = secrets.token_urlsafe(32)

    @asynccontextmanager
    async def lifespan(_app):
        if not feed._thread.is_alive():
            feed.start()
        yield
        feed.stop()
        store.close()

    app = FastAPI(title="camflow console", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    # The cookie holds only a session id (SessionRegistry): logout, a password change or a
    # removed user end the session on the server, not just in the browser.
    app.add_middleware(SessionMiddleware, secret_key=secret, session_cookie="camflow_console",
                       max_age=console.session_max_age_s, same_site="strict",
                       https_only=secure_cookie(console))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    app.state.feed, app.state.store = feed, store
    sessions = SessionRegistry(console.session_max_age_s)
    throttle = LoginThrottle()
    app.state.sessions, app.state.login_throttle = sessions, throttle

    # -- who is asking --------------------------------------------------------------------
    def session_user(request: Request):
        # re-read from the config: a removed user, a changed role or password applies at once
        return sessions.user(request.session.get("sid"), console.users)

    def page_user(request: Request):
        user = session_user(request)
        if user is None:
            raise HTTPException(303, headers={"Location": f"/login?next={request.url.path}"})
        return user

    def api_user(request: Request):
        user = session_user(request)
        if user is None:
            raise HTTPException(401, "log in first")
        return user

    def render(request: Request, name: str, user, status_code: int = 200, **context):
        return templates.TemplateResponse(request, name, {"user": user, "deployment": config.deployment,
                                                          "time_zone": zone, **context},
                                          status_code=status_code)

    # -- login ----------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/"):
        return render(request, "login.html", None, next=next, error=None)

    @app.post("/login")
    async def login(request: Request):
        form = await request.form()
        name, password = str(form.get("username", "")), str(form.get("password", ""))
        target = str(form.get("next") or "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"  # never redirect off-site
        client = request.client.host if request.client else None
        wait = throttle.retry_after(name, client)
        if wait > 0:  # refused before any password is checked (scrypt costs CPU and memory)
            log.warning("console: login for %r from %s refused: too many failures", name[:64],
                        client)
            response = render(request, "login.html", None, status_code=429, next=target,
                              error=f"Too many failed logins; try again in {int(wait) + 1} s.")
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        user = await asyncio.to_thread(authenticate, console.users, name, password)
        if user is None:
            throttle.failed(name, client)
            log.info("console: failed login for %r from %s", name[:64], client)
            return render(request, "login.html", None, next=target,
                          error="Unknown user or wrong password.")
        throttle.succeeded(name)
        sessions.revoke(request.session.get("sid"))  # never keep a session id across a login
        request.session.clear()
        request.session["sid"] = sessions.create(user)
        return RedirectResponse(target, status_code=303)

    @app.post("/logout")
    def logout(request: Request):
        sessions.revoke(request.session.get("sid"))
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # -- pages ----------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def alerts_page(request: Request, user=Depends(page_user)):
        return render(request, "alerts.html", user)

    @app.get("/alerts/{alert_id}", response_class=HTMLResponse)
    def alert_page(alert_id: str, request: Request, user=Depends(page_user)):
        alert = find_alert(alert_id)
        if alert is None:
            raise HTTPException(404, f"no alert {alert_id}")
        try:
            evidence = json.dumps(json.loads(alert["evidence"]), indent=2) if alert["evidence"] else ""
        except ValueError:
            evidence = alert["evidence"]
        camera = sites.get(alert["camera_id"])
        return render(request, "alert.html", user, alert=alert, evidence=evidence, camera=camera)

    @app.get("/cameras", response_class=HTMLResponse)
    def cameras_page(request: Request, user=Depends(page_user)):
        return render(request, "cameras.html", user, cameras=camera_status())

    def camera_site(camera_id: str) -> str:
        camera = sites.get(camera_id)
        return camera.location.site if camera and camera.location else ""

    @app.get("/subjects/{subject_id}", response_class=HTMLResponse)
    def subject_page(subject_id: str, request: Request, user=Depends(page_user)):
        store.run(lambda s: s.audit_access(user.name, "subject_view", subject_id, "console"))
        rows = store.run(lambda s: s.sightings_of(subject_id))
        sightings = [{"camera_id": r[2], "kind": r[1], "time": iso(r[3], zone), "score": r[4],
                      "track_id": r[5], "alert_id": r[6],
                      "site": camera_site(r[2])} for r in rows]
        return render(request, "subject.html", user, subject=subject_id, sightings=sightings,
                      cameras=len({r[2] for r in rows}))

    def plate_passages(plate: str, fuzzy: bool):
        """A plate's path (every vehicle track that read it) within the plates' retention."""
        import time as _time

        from camflow.services.search import SearchError, plate_path
        since_ms = int(_time.time() * 1000) - int(config.store.retention.vehicle_plates_days * 86_400_000)
        try:
            return store.run(lambda s: plate_path(s, plate, since_ms, fuzzy))
        except SearchError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.get("/plates/{plate}", response_class=HTMLResponse)
    def plate_page(plate: str, request: Request, fuzzy: bool = False, user=Depends(page_user)):
        # Where a vehicle went is personal data: each view is logged, like a subject's.
        store.run(lambda s: s.audit_access(user.name, "plate_view", plate,
                                           "console fuzzy" if fuzzy else "console"))
        passages = [{"camera_id": p.camera_id, "time": iso(p.first_ms, zone),
                     "until": iso(p.last_ms, zone), "track_id": p.track_id,
                     "plate": p.display or p.plate, "reads": p.reads, "distance": p.distance,
                     "site": camera_site(p.camera_id)}
                    for p in plate_passages(plate, fuzzy)]
        return render(request, "plate.html", user, plate=plate, fuzzy=fuzzy, passages=passages,
                      cameras=len({p["camera_id"] for p in passages}))

    # -- API ------------------------------------------------------------------------------
    def find_alert(alert_id: str) -> dict | None:
        def read(s: AnalystStore):
            return s.alert(alert_id), s.alert_actions([alert_id]).get(alert_id, [])
        stored, actions = store.run(read)
        live = feed.get(alert_id)
        if stored is None and live is None:
            return None
        return public_alert(stored or live, actions, "store" if stored else "live", zone)

    @app.get("/api/alerts")
    def list_alerts(user=Depends(api_user), limit: int = 100):
        limit = max(1, min(limit, 1000))
        seq = feed.seq  # read before the lists: the stream resumes after it, nothing is missed
        since = int(time.time() * 1000) - int(console.lookback_hours * 3_600_000)
        stored = store.run(lambda s: s.alerts_since(since, limit))
        merged = {a["alert_id"]: (a, "live") for a in feed.recent()}
        merged.update({a["alert_id"]: (a, "store") for a in stored})
        newest = sorted(merged.values(), key=lambda x: -x[0]["time_ms"])[:limit]
        actions = store.run(lambda s: s.alert_actions([a["alert_id"] for a, _ in newest]))
        return {"seq": seq, "feed": {"connected": feed.connected, "error": feed.error},
                "role": user.role,
                "alerts": [public_alert(a, actions.get(a["alert_id"]), src, zone)
                           for a, src in newest]}

    @app.get("/api/alerts/stream")
    async def stream(request: Request, user=Depends(api_user), after: int | None = None):
        last_id = request.headers.get("last-event-id")
        position = int(last_id) if last_id and last_id.isdigit() else (after if after is not None else feed.seq)

        async def events():
            nonlocal position
            yield "retry: 2000\n\n"
            quiet_since = time.monotonic()
            while not await request.is_disconnected():
                batch = feed.since(position)
                for seq, kind, payload in batch:
                    data = public_alert(payload, [], "live", zone) if kind == "alert" else \
                        {**payload, "time": iso(payload.get("time_ms"), zone)}
                    yield f"id: {seq}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"
                    position = seq
                if batch:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > 15:
                    yield ": keep-alive\n\n"  # proxies close silent connections
                    quiet_since = time.monotonic()
                await asyncio.sleep(0.3)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/api/alerts/{alert_id}")
    def get_alert(alert_id: str, user=Depends(api_user)):
        alert = find_alert(alert_id)
        if alert is None:
            raise HTTPException(404, f"no alert {alert_id}")
        return alert

    @app.post("/api/alerts/{alert_id}/actions")
    def act(alert_id: str, body: ActionBody, request: Request, user=Depends(api_user)):
        if user.role != "operator":
            raise HTTPException(403, "viewers cannot acknowledge or dismiss alerts")
        if body.action not in ALERT_ACTIONS:
            raise HTTPException(422, f"action must be one of {', '.join(ALERT_ACTIONS)}")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(415, "send JSON")  # a cross-site form cannot
        if find_alert(alert_id) is None:
            raise HTTPException(404, f"no alert {alert_id}")
        when = store.run(lambda s: s.record_alert_action(alert_id, body.action, user.name, body.note))
        action = {"action": body.action, "actor": user.name, "time_ms": when, "note": body.note}
        feed.add_action(alert_id, action)
        log.info("console: %s %s alert %s", user.name, body.action, alert_id)
        return {**action, "alert_id": alert_id, "time": iso(when, zone)}

    @app.get("/api/alerts/{alert_id}/evidence.jpg")
    def evidence(alert_id: str, user=Depends(api_user)):
        """The inline crop of a watchlist alert; else its snapshot (the one image URL that
        `camflow notify` links for any alert)."""
        live = feed.get(alert_id)
        jpeg = (live or {}).get("evidence_jpeg") or store.run(lambda s: s.alert_evidence(alert_id))
        if not jpeg:
            return snapshot(alert_id, user)  # 404 when it has none either
        store.run(lambda s: s.audit_access(user.name, "evidence_view", alert_id, "console"))
        return Response(jpeg, media_type="image/jpeg", headers=PRIVATE_CACHE)

    def media_ref(alert_id: str, column: str) -> str | None:
        """The alert's ``evidence_ref`` or ``clip_ref``: from the live record, else the store
        (where the sink adds the clip once it is made)."""
        ref = (feed.get(alert_id) or {}).get(column)
        return ref or (store.run(lambda s: s.alert(alert_id)) or {}).get(column)

    def media(alert_id: str, column: str, user, action: str | None) -> bytes:
        """The object the alert's ``column`` names, read from the evidence store; ``action``:
        the access-log entry for this view (None: not logged, see clip())."""
        ref = media_ref(alert_id, column)
        if not ref or evidence_store is None:
            raise HTTPException(404, f"no {'clip' if column == 'clip_ref' else 'snapshot'} for this alert")
        try:
            data = evidence_store.get(ref)
        except FrameRefError as exc:  # outside the evidence store: never read, whatever the record says
            log.warning("console: alert %s: %s", alert_id, exc)
            raise HTTPException(404, "this alert's picture is not in the evidence store") from None
        except Exception:  # noqa: BLE001 - S3 or disk trouble: say so, details to the log
            log.exception("console: evidence store read for alert %s failed", alert_id)
            raise HTTPException(503, "the evidence store is unavailable; try again shortly") from None
        if data is None:
            raise HTTPException(404, "this alert's picture has expired from the evidence store")
        if action:
            store.run(lambda s: s.audit_access(user.name, action, alert_id, "console"))
        return data

    @app.get("/api/alerts/{alert_id}/snapshot.jpg")
    def snapshot(alert_id: str, user=Depends(api_user), w: int | None = None):
        """The frame the alert was raised on, its subject boxed; ``?w=`` scales it down (the
        alert list's thumbnails: a snapshot is up to 1280 px wide)."""
        jpeg = media(alert_id, "evidence_ref", user, "snapshot_view")
        if w is not None:
            from camflow.services.report import scaled_jpeg
            width = max(THUMBNAIL_WIDTHS[0], min(w, THUMBNAIL_WIDTHS[1]))
            jpeg = scaled_jpeg(jpeg, width, THUMBNAIL_MAX_BYTES) or jpeg  # undecodable: as stored
        return Response(jpeg, media_type="image/jpeg", headers=PRIVATE_CACHE)

    @app.get("/api/alerts/{alert_id}/clip.mp4")
    def clip(alert_id: str, request: Request, user=Depends(api_user)):
        """The clip around the alert. Byte ranges are served, so the video element can seek;
        only the request that starts playing (no range, or from byte 0) is logged, not every
        seek."""
        wanted = request.headers.get("range")
        starts = not wanted or wanted.replace(" ", "").startswith("bytes=0-")
        data = media(alert_id, "clip_ref", user, "clip_view" if starts else None)
        headers = {**PRIVATE_CACHE, "Accept-Ranges": "bytes"}
        span = byte_range(wanted, len(data))
        if span is None:
            return Response(data, media_type="video/mp4", headers=headers)
        first, last = span
        if first >= len(data):
            return Response(status_code=416, headers={"Content-Range": f"bytes */{len(data)}"})
        return Response(data[first:last + 1], status_code=206, media_type="video/mp4",
                        headers={**headers, "Content-Range": f"bytes {first}-{last}/{len(data)}"})

    def camera_status() -> list[dict]:
        now_ms = int(time.time() * 1000)

        def read(s: AnalystStore):
            return {camera_id: s.camera_activity(camera_id, now_ms - 60_000, LIVENESS)
                    for camera_id in dict.fromkeys([*sites, *s.cameras_seen()])}

        rows = []
        for camera_id, (last, (recent_frames, _), liveness) in store.run(read).items():
            camera = sites.get(camera_id)
            seen_ms = last[2] if last else None
            silent = seen_ms is None or now_ms - seen_ms > console.offline_after_s * 1000
            flagged = liveness is not None and liveness[0] == "camera_offline" and (
                last is None or liveness[1] >= last[1])
            rows.append({
                "camera_id": camera_id, "name": camera.name if camera else "",
                "site": camera.location.site if camera and camera.location else "",
                "status": "offline" if silent or flagged else "online",
                "reason": ("camera_offline alert" if flagged else
                           "never seen" if seen_ms is None else
                           f"silent {int((now_ms - seen_ms) / 1000)} s" if silent else ""),
                "last_frame": iso(last[1], zone) if last else "", "last_frame_ms": last[1] if last else None,
                "fps": round(recent_frames / 60.0, 2),
                "configured_fps": camera.fps if camera else None,
            })
        return rows

    @app.get("/api/cameras")
    def cameras(user=Depends(api_user)):
        return {"cameras": camera_status()}

    def path_png(label: str, rows: list[tuple]) -> Response:
        """A path over the camera sites (sightings-shaped rows) as a PNG response."""
        import base64
        from zoneinfo import ZoneInfo

        from camflow.services.report import figure_subject_path, sites as report_sites
        uri = figure_subject_path(label, rows, report_sites(config), ZoneInfo(zone))
        return Response(base64.b64decode(uri.split(",", 1)[1]), media_type="image/png")

    @app.get("/api/subjects/{subject_id}/path.png")
    def subject_path(subject_id: str, user=Depends(api_user)):
        rows = [r[:5] for r in store.run(lambda s: s.sightings_of(subject_id))]
        if not rows:
            raise HTTPException(404, f"no sightings of {subject_id}")
        return path_png(subject_id, rows)

    @app.get("/api/plates/{plate}/path.png")
    def plate_path_png(plate: str, fuzzy: bool = False, user=Depends(api_user)):
        from camflow.services.search import path_rows
        rows = path_rows(plate, plate_passages(plate, fuzzy))
        if not rows:
            raise HTTPException(404, f"no vehicle track read {plate}")
        return path_png(plate, rows)

    @app.get("/healthz")
    def health():
        return JSONResponse({"ok": True, "feed_connected": feed.connected})

    @app.exception_handler(HTTPException)
    async def http_errors(request: Request, exc: HTTPException):
        if exc.status_code == 303:
            return RedirectResponse(exc.headers["Location"], status_code=303)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        return render(request, "error.html", session_user(request), status_code=exc.status_code,
                      status=exc.status_code, detail=exc.detail)

    @app.exception_handler(Exception)
    async def store_errors(request: Request, exc: Exception):
        # A store or broker outage must not look like a crash; details go to the log only
        # (messages can name hosts and users).
        log.exception("console: %s %s failed", request.method, request.url.path)
        detail = "the analyst store is unavailable; try again shortly"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": detail}, status_code=503)
        return render(request, "error.html", session_user(request), status_code=503, status=503,
                      detail=detail)

    return app


def serve(config: Config, store_url: str | None = None, host: str | None = None,
          port: int | None = None) -> int:
    import uvicorn
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(config, store_url)
    uvicorn.run(app, host=host or config.console.host, port=port or config.console.port,
                log_level="info", access_log=False)
    return 0
