"""Issue 16: console logins are rate-limited, sessions end at logout and on a password change
(a copied cookie stops working), and the cookie is Secure where the console is reachable."""
from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from camflow.config import Config
from camflow.services.console.app import create_app
from camflow.services.console.auth import LoginThrottle, SessionRegistry, hash_password
from camflow.services.console.feed import AlertFeed

ALICE = hash_password("operator-pass")


def make_config(tmp_path, host: str = "127.0.0.1") -> Config:
    return Config.model_validate({
        "store": {"url": f"duckdb:///{tmp_path}/store.duckdb"},
        "console": {"host": host,
                    "users": [{"name": "alice", "role": "operator", "password_hash": ALICE},
                              {"name": "victor", "role": "viewer",
                               "password_hash": hash_password("viewer-pass")}]}})


def client_for(config: Config, base_url: str = "http://127.0.0.1") -> TestClient:
    app = create_app(config, feed=AlertFeed(config.kafka, "unused"), secret="test-secret")
    return TestClient(app, base_url=base_url)


def login(client, name, password):
    return client.post("/login", data={"username": name, "password": password, "next": "/"},
                       follow_redirects=False)


def test_repeated_failed_logins_are_refused_for_a_while(tmp_path):
    client = client_for(make_config(tmp_path))
    for _ in range(5):
        assert login(client, "alice", "guess").status_code == 200
    refused = login(client, "alice", "operator-pass")  # even the right password, for now
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "Too many failed logins" in refused.text
    assert client.get("/api/alerts").status_code == 401
    # another user from the same address is not locked out by alice's failures
    assert login(client, "victor", "viewer-pass").status_code == 303


def test_throttle_window_success_and_per_client_limit():
    now = [1000.0]
    throttle = LoginThrottle(per_user=3, per_client=5, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        throttle.failed("alice", "10.0.0.1")
    assert throttle.retry_after("alice", "10.0.0.2") == pytest.approx(60)
    now[0] += 61
    assert throttle.retry_after("alice", "10.0.0.2") == 0
    throttle.failed("alice", "10.0.0.1")
    throttle.succeeded("alice")
    assert throttle.retry_after("alice", "10.0.0.3") == 0
    for name in ("a", "b", "c", "d", "e"):  # password spraying from one address
        throttle.failed(name, "10.0.0.9")
    assert throttle.retry_after("f", "10.0.0.9") > 0
    assert throttle.retry_after("f", "10.0.0.8") == 0


def test_a_copied_session_cookie_is_dead_after_logout(tmp_path):
    client = client_for(make_config(tmp_path))
    assert login(client, "alice", "operator-pass").status_code == 303
    stolen = dict(client.cookies)
    assert client.get("/api/alerts").status_code == 200
    client.post("/logout", follow_redirects=False)
    client.cookies.clear()
    for name, value in stolen.items():
        client.cookies.set(name, value)
    assert client.get("/api/alerts").status_code == 401


def test_a_password_change_ends_existing_sessions(tmp_path):
    config = make_config(tmp_path)
    client = client_for(config)
    assert login(client, "alice", "operator-pass").status_code == 303
    assert client.get("/api/alerts").status_code == 200
    config.console.users[0].password_hash = hash_password("new-pass")
    assert client.get("/api/alerts").status_code == 401
    assert login(client, "alice", "new-pass").status_code == 303
    assert client.get("/api/alerts").status_code == 200


def test_the_cookie_holds_no_user_name_and_is_secure_off_loopback(tmp_path):
    local = login(client_for(make_config(tmp_path)), "alice", "operator-pass")
    assert "secure" not in local.headers["set-cookie"].lower()  # plain-HTTP dev console
    exposed = client_for(make_config(tmp_path, host="0.0.0.0"), base_url="https://console.example")
    response = login(exposed, "alice", "operator-pass")
    cookie = response.headers["set-cookie"].lower()
    assert response.status_code == 303 and "secure" in cookie and "samesite=strict" in cookie
    assert exposed.get("/api/alerts").status_code == 200


def test_session_registry_expiry_and_removed_users():
    from camflow.config.console import ConsoleUser

    now = [0.0]
    alice = ConsoleUser(name="alice", role="operator", password_hash=ALICE)
    sessions = SessionRegistry(max_age_s=100, clock=lambda: now[0])
    sid = sessions.create(alice)
    assert sessions.user(sid, [alice]) is alice
    assert sessions.user(sid, []) is None  # removed from the configuration: gone for good
    assert sessions.user(sid, [alice]) is None
    sid = sessions.create(alice)
    now[0] = 101
    assert sessions.user(sid, [alice]) is None
    sid = sessions.create(alice)
    assert sessions.revoke_user("alice") == 1 and sessions.user(sid, [alice]) is None
    assert sessions.user(None, [alice]) is None and sessions.user("forged", [alice]) is None
