"""The base of every camflow config model."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Every config model rejects unknown keys: a typo is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")
