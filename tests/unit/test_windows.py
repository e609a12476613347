"""The per-camera window logic the job's CountPerWindow operator keeps as explicit state."""
import pickle

import pytest
from hypothesis import given, strategies as st

from camflow.transforms.aggregate import WindowCounts
from camflow.transforms.windows import NO_WATERMARK, WindowBook, WindowSpec


def frame(capture_ms: int, people: int = 1) -> dict:
    return {"camera_id": "cam", "capture_ms": capture_ms, "sequence": capture_ms,
            "counts_by_class": {"person": people}, "track_ids_by_class": {}, "line_crossings": {}}


def book_for(size=5000, slide=None, lateness=0) -> WindowBook:
    return WindowBook(WindowSpec(size, slide or size, lateness), WindowCounts.create, WindowCounts.add)


def test_a_window_closes_when_the_watermark_reaches_its_last_millisecond():
    windows, book = book_for(), {}
    for t in (1000, 2000, 4999):
        windows.add(book, t, frame(t), NO_WATERMARK)
    assert windows.due(book, 4998) == []
    [(start, acc)] = windows.due(book, 4999)
    assert start == 0 and acc["frames"] == 3
    assert book == {}  # no lateness: its state goes with it
    assert windows.due(book, 10_000) == []  # emitted once


def test_closed_windows_come_out_oldest_first_on_any_later_call():
    windows, book = book_for(), {}
    for t in (100, 5100, 10_100, 15_100):
        windows.add(book, t, frame(t), NO_WATERMARK)
    assert [s for s, _ in windows.due(book, 12_000)] == [0, 5000]
    assert sorted(book) == [10_000, 15_000]


def test_a_restored_book_emits_its_closed_windows_without_their_timers():
    """The reason for explicit state: after a restore a window must come out even if its own
    timer is gone; the next element or timer of the camera finds it closed."""
    windows, book = book_for(), {}
    for t in range(0, 15_000, 500):
        windows.add(book, t, frame(t), NO_WATERMARK)
    restored = pickle.loads(pickle.dumps(book))  # what a checkpoint keeps
    windows.add(restored, 40_000, frame(40_000), NO_WATERMARK)
    emitted = windows.due(restored, 39_000)  # a later element, watermark past them all
    assert [(s, acc["frames"]) for s, acc in emitted] == [(0, 10), (5000, 10), (10_000, 10)]


def test_a_frame_late_for_every_window_is_reported_and_not_counted():
    windows, book = book_for(), {}
    windows.add(book, 1000, frame(1000), NO_WATERMARK)
    windows.due(book, 6000)
    updates, live = windows.add(book, 2000, frame(2000), 6000)
    assert live == [] and updates == [] and book == {}


def test_allowed_lateness_updates_an_emitted_window_then_forgets_it():
    windows, book = book_for(lateness=3000), {}
    windows.add(book, 1000, frame(1000), NO_WATERMARK)
    [(_, first)] = windows.due(book, 5000)
    assert first["frames"] == 1 and 0 in book
    updates, live = windows.add(book, 2000, frame(2000, people=3), 6000)
    assert live == [0] and [(s, acc["frames"]) for s, acc in updates] == [(0, 2)]
    assert windows.due(book, 7000) == []  # already emitted; kept until its lateness ends
    assert 0 in book
    windows.due(book, 7999)
    assert book == {}
    _, live = windows.add(book, 2500, frame(2500), 8000)
    assert live == []


def test_sliding_windows_count_a_frame_in_each_window_that_holds_it():
    windows, book = book_for(size=300_000, slide=60_000), {}
    windows.add(book, 125_000, frame(125_000), NO_WATERMARK)
    assert sorted(book) == [-120_000, -60_000, 0, 60_000, 120_000]
    assert windows.timers([0]) == {299_999}


def test_timers_cover_close_and_expiry():
    assert book_for(lateness=2000).timers([5000]) == {9999, 11_999}


@given(st.lists(st.integers(0, 60_000), min_size=1, max_size=60), st.integers(1, 4))
def test_every_frame_lands_in_exactly_the_windows_that_emit_it(times, slides_per_window):
    """Whatever the order of frames and calls, each emitted window counts exactly the frames
    whose capture time falls in it, and every window is emitted once."""
    slide = 5000
    windows, book = book_for(size=slide * slides_per_window, slide=slide), {}
    for t in times:
        windows.add(book, t, frame(t), NO_WATERMARK)
    emitted = windows.due(book, 2 ** 62)
    starts = [s for s, _ in emitted]
    assert len(starts) == len(set(starts))
    for start, acc in emitted:
        assert acc["frames"] == sum(start <= t < start + slide * slides_per_window for t in times)
    assert sum(acc["frames"] for _, acc in emitted) == len(times) * slides_per_window


def test_bad_specs_are_refused():
    with pytest.raises(ValueError):
        WindowSpec(0, 1000)
    with pytest.raises(ValueError):
        WindowSpec(1000, 1000, -1)
