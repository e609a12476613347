"""The sampler's overload policies (camflow/core/overload.py): what waits, what is dropped, what goes."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camflow.core.overload import SendBacklog


def test_keep_all_hands_on_up_to_the_limit_and_keeps_the_rest_waiting_in_order():
    backlog = SendBacklog("keep-all", max_in_flight=3)
    for seq in range(5):
        assert backlog.offer(seq, f"frame-{seq}") == []
    assert [i for i, _ in backlog.take(in_flight=1)] == [0, 1]
    assert backlog.take(in_flight=3) == []  # at the limit: nothing more goes
    assert [i for i, _ in backlog.take(in_flight=0)] == [2, 3, 4]
    assert backlog.dropped == 0 and backlog.blocks


def test_latest_only_drops_older_unsent_frames_and_sends_the_newest():
    backlog = SendBacklog("latest-only", max_in_flight=2)
    assert backlog.offer(1, "a") == []
    assert backlog.take(in_flight=2) == []  # broker behind: frame 1 waits
    assert backlog.offer(2, "b") == [1]
    assert backlog.offer(3, "c") == [2]
    assert backlog.dropped == 2 and not backlog.blocks
    assert backlog.take(in_flight=1) == [(3, "c")]


def test_latest_only_drops_nothing_while_the_broker_keeps_up():
    backlog = SendBacklog("latest-only", max_in_flight=2)
    for seq in range(100):
        backlog.offer(seq, seq)
        assert [i for i, _ in backlog.take(in_flight=0)] == [seq]
    assert backlog.dropped == 0


@pytest.mark.parametrize("policy,limit", [("drop-all", 5), ("keep-all", 0), ("latest-only", -1)])
def test_bad_settings_are_refused_with_a_clear_error(policy, limit):
    with pytest.raises(ValueError, match="policy|max_in_flight"):
        SendBacklog(policy, max_in_flight=limit)


@given(policy=st.sampled_from(["keep-all", "latest-only"]), limit=st.integers(1, 8),
       steps=st.lists(st.integers(0, 10), max_size=60))
def test_every_frame_is_sent_once_or_counted_as_dropped_and_the_newest_is_never_dropped(
        policy, limit, steps):
    """Offer frames while the broker acknowledges a varying number of them; at the end every
    frame was sent exactly once or dropped (keep-all: never), in sampling order."""
    backlog = SendBacklog(policy, max_in_flight=limit)
    sent, dropped, in_flight = [], [], 0
    for seq, acks in enumerate(steps):
        dropped += backlog.offer(seq, None)
        in_flight = max(0, in_flight - acks)
        ready = [i for i, _ in backlog.take(in_flight)]
        in_flight += len(ready)
        assert in_flight <= limit
        sent += ready
    while backlog.waiting:
        sent += [i for i, _ in backlog.take(0)]
    assert sorted(sent + dropped) == list(range(len(steps)))
    assert sent == sorted(sent)
    assert backlog.dropped == len(dropped)
    if policy == "keep-all":
        assert dropped == []
    elif steps:
        assert sent[-1] == len(steps) - 1
