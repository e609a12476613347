"""Console logins: scrypt password hashes (stdlib ``hashlib.scrypt``) and roles.

A hash reads ``scrypt$N$r$p$salt$hash`` (base64 salt and hash); ``camflow console
hash-password`` makes one. Operators acknowledge and dismiss alerts; viewers only look.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os

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
