"""``camflow console``: logins, sessions, the live feed."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from camflow.config.base import Strict


PASSWORD_HASH = re.compile(r"^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$")


class ConsoleUser(Strict):
    """An operator console login; ``password_hash`` from ``camflow console hash-password``."""

    name: str = Field(min_length=1, max_length=64)
    role: Literal["operator", "viewer"] = Field(description="operator: acknowledge/dismiss; viewer: read only")
    password_hash: str = Field(description="scrypt$N$r$p$salt$hash (never the password itself)")

    @field_validator("password_hash")
    @classmethod
    def _hash_format(cls, value: str) -> str:
        if not PASSWORD_HASH.match(value):
            raise ValueError("must be a hash from `camflow console hash-password` "
                             "(scrypt$N$r$p$salt$hash), never a plain password")
        return value


class Console(Strict):
    """``camflow console``: live alerts, acknowledgements, camera status, subjects."""

    host: str = Field("127.0.0.1", description="bind address; expose it only behind TLS")
    port: int = Field(8090, ge=1, le=65535, description="TCP port")
    users: list[ConsoleUser] = Field(default_factory=list, description="who may log in, with which role")
    secret_env: str | None = Field("CAMFLOW_CONSOLE_SECRET", description=(
        "environment variable holding the session-signing secret"))
    secret_file: Path | None = Field(None, description="...or a file holding it")
    session_max_age_s: int = Field(8 * 3600, ge=60, description="a login lasts this long")
    offline_after_s: float = Field(60, gt=0, description="a camera without frames this long is offline")
    recent_alerts: int = Field(200, ge=1, le=10_000, description="alerts the live feed keeps in memory")
    lookback_hours: float = Field(24, gt=0, description="the live feed starts this far back in the topic")

    @model_validator(mode="after")
    def _unique_users(self) -> "Console":
        names = [u.name for u in self.users]
        if len(names) != len(set(names)):
            raise ValueError("console user names must be unique")
        return self

    def secret(self) -> str | None:
        if self.secret_file:
            return self.secret_file.read_text().strip() or None
        if self.secret_env:
            return os.environ.get(self.secret_env) or None
        return None
