"""What a sampler does with new frames when the broker cannot keep up (pure: no Kafka here).

Each camera names its policy (``cameras[].sampler_policy``, ``camflow ingest --policy``):

* ``keep-all`` (default): every sampled frame is delivered. Once ``max_in_flight`` frames are
  unacknowledged, the sampler waits for acknowledgements before it samples on (a file replays
  slower, a live stream is sampled less often meanwhile); nothing sampled is ever dropped.
* ``latest-only``: the sampler never waits. Once ``max_in_flight`` frames are unacknowledged,
  new frames wait here, and a newer frame replaces the one waiting: the older unsent frame is
  dropped and counted. When the broker catches up, the newest frame goes first, so analysts see
  the scene as it is now rather than a backlog of what it was.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Hashable

from camflow.config.cameras import Camera

POLICIES = ("keep-all", "latest-only")
# The camera's setting owns the default: a sampler without a camera config uses the same.
DEFAULT_MAX_IN_FLIGHT = Camera.model_fields["sampler_max_in_flight"].default


@dataclass
class SendBacklog:
    """Frames sampled but not yet handed to the producer, under one overload policy."""

    policy: str = "keep-all"
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    waiting: deque = field(default_factory=deque)
    dropped: int = 0

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"sampler policy must be one of {', '.join(POLICIES)}, not {self.policy!r}")
        if int(self.max_in_flight) < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {self.max_in_flight!r}")

    @property
    def blocks(self) -> bool:
        """True when the sampler must wait until everything waiting here is handed on."""
        return self.policy == "keep-all"

    def offer(self, ident: Hashable, record: Any) -> list[Hashable]:
        """Queue a new frame; returns the idents of the older frames it displaced (latest-only)."""
        self.waiting.append((ident, record))
        displaced: list[Hashable] = []
        if self.policy == "latest-only":
            while len(self.waiting) > 1:
                displaced.append(self.waiting.popleft()[0])
            self.dropped += len(displaced)
        return displaced

    def take(self, in_flight: int) -> list[tuple[Hashable, Any]]:
        """The frames that may go to the producer now, oldest first, given how many are
        unacknowledged."""
        ready = []
        while self.waiting and in_flight + len(ready) < self.max_in_flight:
            ready.append(self.waiting.popleft())
        return ready
