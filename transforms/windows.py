"""Event-time windows kept as explicit per-camera state (pure Python, no Flink).

The job's ``CountPerWindow`` operator keeps, per camera, the windows that are still open
(window start -> accumulator) and asks this module three things: which windows a frame
belongs to, which open windows the watermark has closed, and whether a frame is too late for
every window it belongs to. Same semantics as Flink's event-time windows:

- a window ``[start, start + size)`` closes once the watermark reaches ``start + size - 1``;
- it stays updatable for ``allowed_lateness_ms`` after that: a frame arriving then updates it
  and its aggregate is emitted again (consumers upsert by camera and window);
- a frame whose every window is past its lateness is late: it goes to the dead letters.

Why explicit state instead of Flink's window operator: a window must be emitted even when its
own timer is not there after a restore. The operator emits every closed window of a camera on
any element or timer of that camera (see ``WindowBook.due``), so a window only needs its state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

# Flink's watermark before any has arrived (Long.MIN_VALUE).
NO_WATERMARK = -(2 ** 63)


@dataclass(frozen=True)
class WindowSpec:
    """Tumbling (``slide_ms == size_ms``) or sliding event-time windows."""

    size_ms: int
    slide_ms: int
    allowed_lateness_ms: int = 0

    def __post_init__(self):
        if self.size_ms <= 0 or self.slide_ms <= 0 or self.allowed_lateness_ms < 0:
            raise ValueError(f"bad window spec {self}")

    def starts(self, timestamp_ms: int) -> list[int]:
        """Starts of the windows that hold ``timestamp_ms``, oldest first (windows are aligned
        to the epoch, as Flink's are)."""
        last = timestamp_ms - timestamp_ms % self.slide_ms  # Python's % floors: fine below 0
        return list(range(last, timestamp_ms - self.size_ms, -self.slide_ms))[::-1]

    def fires_at(self, start: int) -> int:
        """The watermark at which the window closes (its last millisecond)."""
        return start + self.size_ms - 1

    def closed(self, start: int, watermark: int) -> bool:
        return self.fires_at(start) <= watermark

    def expired(self, start: int, watermark: int) -> bool:
        """Past its allowed lateness: its state can go, frames for it are late."""
        return self.fires_at(start) + self.allowed_lateness_ms <= watermark


@dataclass
class OpenWindow:
    """One camera's window still in state: its accumulator and whether it was emitted."""

    accumulator: dict[str, Any]
    emitted: bool = False


class WindowBook:
    """The window logic over a camera's open windows (``dict`` start -> ``OpenWindow``).

    ``add`` and ``due`` return what to emit and change ``book`` in place; the operator copies
    ``book`` from and to its Flink state. ``create``/``add`` are the accumulator's functions
    (``transforms.aggregate.WindowCounts``)."""

    def __init__(self, spec: WindowSpec, create: Callable[[], dict], add: Callable[[dict, dict], dict]):
        self.spec, self.create, self.add_to = spec, create, add

    def add(self, book: dict[int, OpenWindow], timestamp_ms: int, element: dict,
            watermark: int) -> tuple[list[tuple[int, dict]], list[int]]:
        """Adds ``element`` to its windows. Returns (windows to emit again: late updates of
        already emitted windows; the windows it went into -- none: late for every window)."""
        live = [s for s in self.spec.starts(timestamp_ms) if not self.spec.expired(s, watermark)]
        updates = []
        for start in live:
            window = book.get(start) or OpenWindow(self.create())
            window.accumulator = self.add_to(window.accumulator, element)
            book[start] = window
            if window.emitted:
                updates.append((start, window.accumulator))
        return updates, live

    def due(self, book: dict[int, OpenWindow], watermark: int) -> list[tuple[int, dict]]:
        """Closed windows not yet emitted (oldest first); forgets expired ones."""
        out = []
        for start in sorted(book):
            window = book[start]
            if self.spec.closed(start, watermark) and not window.emitted:
                out.append((start, window.accumulator))
                window.emitted = True
            if self.spec.expired(start, watermark):
                del book[start]
        return out

    def timers(self, starts: Iterable[int]) -> set[int]:
        """Event-time timers for these windows: their close, and their expiry if later."""
        return {t for s in starts
                for t in (self.spec.fires_at(s), self.spec.fires_at(s) + self.spec.allowed_lateness_ms)}
