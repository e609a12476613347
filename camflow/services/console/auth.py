"""Console logins: scrypt password hashes (stdlib ``hashlib.scrypt``), roles, the login rate
limit (``LoginThrottle``) and server-side sessions (``SessionRegistry``).

A hash reads ``scrypt$N$r$p$salt$hash`` (base64 salt and hash); ``camflow console
hash-password`` makes one. Operators acknowledge and dismiss alerts; viewers only look.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time

from camflow.config import ConsoleUser

N, R, P = 2 ** 14, 8, 1  # ~16 MiB and a few tens of ms per check: fine for a login form
ROLES = ("operator", "viewer")


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=N, r=R, p=P, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"scrypt${N}${R}${P}${b64(salt)}${b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n),
                                r=int(r), p=int(p), dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# Checked when the user name is unknown, so that a wrong name costs as long as a wrong password.
_DUMMY = hash_password("not a password", salt=b"camflow-dummy-salt")


def authenticate(users: list[ConsoleUser], name: str, password: str) -> ConsoleUser | None:
    user = next((u for u in users if u.name == name), None)
    ok = verify_password(password, user.password_hash if user else _DUMMY)
    return user if ok and user is not None else None


# -- login rate limit -------------------------------------------------------------------------
class LoginThrottle:
    """Failed logins counted per user name and per client address over a sliding window; once
    a key reaches its limit, logins for it are refused (HTTP 429) without checking a password
    until its oldest failure leaves the window. A success clears the user name's count.

    Per name, it stops guessing one password; per address, spraying one password over many
    names. In memory, bounded (``max_keys``, oldest dropped first); thread-safe."""

    def __init__(self, per_user: int = 5, per_client: int = 50, window_s: float = 900.0,
                 max_keys: int = 10_000, clock=None):
        self.per_user, self.per_client, self.window_s = per_user, per_client, window_s
        self.max_keys = max_keys
        self._clock = clock or time.monotonic
        self._failures: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> list[float]:
        times = [t for t in self._failures.get(key, ()) if now - t < self.window_s]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def retry_after(self, name: str, client: str | None) -> float:
        """Seconds until a login for ``name`` from ``client`` is accepted again (0: now)."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key, limit in ((("user", name), self.per_user), (("client", client or "?"),
                                                                  self.per_client)):
                times = self._recent(key, now)
                if len(times) >= limit:
                    wait = max(wait, times[-limit] + self.window_s - now)
        return wait

    def failed(self, name: str, client: str | None) -> None:
        now = self._clock()
        with self._lock:
            for key in (("user", name), ("client", client or "?")):
                self._failures.setdefault(key, []).append(now)
                self._failures[key] = self._failures[key][-max(self.per_user, self.per_client):]
            while len(self._failures) > self.max_keys:
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(("user", name), None)


# -- sessions ---------------------------------------------------------------------------------
def password_fingerprint(user: ConsoleUser) -> str:
    """Changes whenever the user's password hash changes (a new password, a new salt)."""
    return hashlib.sha256(user.password_hash.encode("utf-8")).hexdigest()[:32]


class SessionRegistry:
    """Server-side sessions: the cookie carries only a random session id, so a session ends
    for good at logout (its id is forgotten), when the user's password hash changes or the
    user is removed from the configuration, ``max_age_s`` after login, and when the console
    restarts. A signed cookie alone could do none of that: a copy of it stays valid until it
    expires. In memory, bounded (``max_sessions``, oldest dropped first); thread-safe."""

    def __init__(self, max_age_s: float, max_sessions: int = 10_000, clock=None):
        self.max_age_s, self.max_sessions = max_age_s, max_sessions
        self._clock = clock or time.time
        self._sessions: dict[str, tuple[str, str, float]] = {}  # sid -> (name, fingerprint, since)
        self._lock = threading.Lock()

    def create(self, user: ConsoleUser) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[sid] = (user.name, password_fingerprint(user), self._clock())
            while len(self._sessions) > self.max_sessions:
                self._sessions.pop(next(iter(self._sessions)))
        return sid

    def user(self, sid: str | None, users: list[ConsoleUser]) -> ConsoleUser | None:
        """The session's user, re-read from ``users`` (a changed role applies at once), or None
        (unknown, expired, logged out, password changed, user removed)."""
        if not sid or not isinstance(sid, str):
            return None
        with self._lock:
            found = self._sessions.get(sid)
            if found is None:
                return None
            name, fingerprint, since = found
            user = next((u for u in users if u.name == name), None)
            if (user is None or self._clock() - since > self.max_age_s
                    or not hmac.compare_digest(fingerprint, password_fingerprint(user))):
                del self._sessions[sid]
                return None
        return user

    def revoke(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def revoke_user(self, name: str) -> int:
        """Ends every session of ``name``; returns how many."""
        with self._lock:
            gone = [sid for sid, (n, _, _) in self._sessions.items() if n == name]
            for sid in gone:
                del self._sessions[sid]
        return len(gone)

    def __len__(self) -> int:
        return len(self._sessions)
