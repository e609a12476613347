"""Issue 16: the watchlist. A removal removes the entry it follows even when the add was
stamped by a clock running ahead (the subject kept raising alerts), and the audit topic gets
who/when/what without the face embeddings, kept for a bounded time."""
from __future__ import annotations

import numpy as np
import pytest

from camflow.schemas.codec import AvroCodec
from camflow.transforms.watchlist import WatchlistState, entry_key


def face(sid: str, t: int, removed: bool = False) -> dict:
    rng = np.random.default_rng(1)
    vector = rng.normal(size=128)
    return {"id": sid, "kind": "face", "name": f"Person {sid}", "category": "wanted",
            "embeddings": [] if removed else [list(vector / np.linalg.norm(vector))],
            "plate": None, "plate_display": None, "reason": "case 42", "added_by": "officer",
            "time_ms": t, "removed": removed}


def test_a_removal_stamped_before_a_skewed_add_still_removes_it():
    added = WatchlistState().apply(face("W-9", t=1_000_000))  # enrolled on a clock 1000 s fast
    assert len(added.of_kind("face")) == 1
    removed = added.apply(face("W-9", t=10_000, removed=True))  # removed on a correct clock
    assert removed.get("face", "W-9") is None
    assert len(removed.of_kind("face")) == 0
    # the removed add, replayed (at-least-once delivery), does not bring the subject back
    assert removed.apply(face("W-9", t=1_000_000)).get("face", "W-9") is None
    # a genuine re-enrolment afterwards does
    assert removed.apply(face("W-9", t=1_000_002)).get("face", "W-9") is not None
    assert removed.tombstones[entry_key("face", "W-9")] == 1_000_001


def test_an_in_order_removal_keeps_its_own_time():
    state = WatchlistState().apply(face("W-1", t=10)).apply(face("W-1", t=30, removed=True))
    assert state.tombstones[entry_key("face", "W-1")] == 30


def test_enrolment_stamps_a_removal_after_the_entry_it_removes():
    from camflow.services.enrolment import removal_of

    current = face("W-9", t=5_000)
    removal = removal_of(current, "auditor", now_ms=1_000)  # this host's clock is behind
    assert removal["removed"] and removal["embeddings"] == [] and removal["added_by"] == "auditor"
    assert removal["time_ms"] == 5_001
    assert removal_of(current, "auditor", now_ms=9_000)["time_ms"] == 9_000


def test_the_audit_topic_gets_no_embeddings_and_a_bounded_retention(monkeypatch):
    from camflow.config import Kafka
    from camflow.services import enrolment

    topics, sent = {}, []

    class Producer:  # a transactional producer's calls, recorded
        def __init__(self):
            self.calls = []

        def __getattr__(self, name):
            return lambda *args: self.calls.append(name)

    def produce_reliably(producer, topic, value, key, timestamp, tracker):
        sent.append((topic, value))
        tracker.delivered += 1

    monkeypatch.setattr(enrolment, "ensure_topic",
                        lambda kafka, topic, partitions, config: topics.update({topic: config}))
    producer = Producer()
    monkeypatch.setattr(enrolment, "reliable_producer", lambda kafka, **conf: producer)
    monkeypatch.setattr(enrolment, "produce_reliably", produce_reliably)
    kafka = Kafka()
    watchlist = enrolment.Watchlist(kafka)
    retention = int(topics[kafka.topics.watchlist_audit]["retention.ms"])
    assert 0 < retention <= 400 * 86_400_000  # not kept forever (-1)
    watchlist._publish(face("W-3", t=123))
    # the change and its audit record are one transaction
    assert producer.calls == ["init_transactions", "begin_transaction", "commit_transaction"]
    codec = AvroCodec("WatchlistEntry")
    by_topic = {topic: codec.decode(value) for topic, value in sent}
    assert len(by_topic[kafka.topics.watchlist]["embeddings"]) == 1  # the job needs them
    audit = by_topic[kafka.topics.watchlist_audit]
    assert audit["embeddings"] == []
    assert (audit["id"], audit["added_by"], audit["time_ms"]) == ("W-3", "officer", 123)


@pytest.mark.parametrize("retention", [86_400_000, 30 * 86_400_000])
def test_audit_retention_is_configurable(monkeypatch, retention):
    from camflow.config import Kafka
    from camflow.services import enrolment

    topics = {}
    monkeypatch.setattr(enrolment, "ensure_topic",
                        lambda kafka, topic, partitions, config: topics.update({topic: config}))
    enrolment.Watchlist(Kafka(), audit_retention_ms=retention)
    assert topics["watchlist-audit"]["retention.ms"] == str(retention)
