"""Retroactive search: --since parsing, FaceEmbedding records, the store's retention and the
scoring over a DuckDB store (no Kafka: the subject's embeddings are given)."""
import numpy as np
import pytest

from camflow.schemas.codec import AvroCodec
from camflow.services.search import SearchError, format_lines, parse_since, search_store
from camflow.config.store import Retention
from camflow.services.store import AnalystStore
from camflow.transforms.detections import Detections
from camflow.transforms.watchlist import (FaceIndex, FaceMatchDecider, MatchingConfig, WatchlistState,
                                          face_embedding_records, search_faces)

DAY = 86_400_000
NOW = 1_764_000_000_000


def unit(rng, n=1, dim=128):
    v = rng.standard_normal((n, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def near(v, rng, noise=0.05):
    w = v + rng.standard_normal(v.shape) * noise / np.sqrt(v.shape[-1])
    return w / np.linalg.norm(w, axis=-1, keepdims=True)


@pytest.mark.parametrize("text,ms", [("7d", 7 * DAY), ("24h", DAY), ("90m", 90 * 60_000),
                                     ("2w", 14 * DAY), ("30s", 30_000), ("1.5d", 36 * 3_600_000),
                                     (" 12h ", 12 * 3_600_000)])
def test_parse_since(text, ms):
    assert parse_since(text) == ms


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "-1d", "0h", "7 days", "1d2h", None])
def test_bad_since_is_refused(text):
    with pytest.raises(SearchError, match="--since"):
        parse_since(text)


def record(face_id, time_ms, emb, camera="port-gate", track=1, matched=None, sequence=1):
    return {"face_id": face_id, "camera_id": camera, "time_ms": time_ms, "sequence": sequence,
            "track_id": track, "x1": 1.0, "y1": 2.0, "x2": 30.0, "y2": 40.0,
            "embedding": [float(x) for x in emb], "matched_subject": matched}


def test_retention_deletes_old_unmatched_faces_only(rng=np.random.default_rng(1)):
    store = AnalystStore("duckdb:///:memory:")
    e = unit(rng)[0]
    store.upsert_face_embedding(record("old-unmatched", NOW - 8 * DAY, e))
    store.upsert_face_embedding(record("old-matched", NOW - 30 * DAY, e, matched="W-7"))
    store.upsert_face_embedding(record("recent-unmatched", NOW - 6 * DAY, e))
    store.upsert_face_embedding(record("just-inside", NOW - 7 * DAY, e))
    store.commit()
    unmatched = lambda days: store.delete_expired(Retention(), days, now_ms=NOW)["unmatched_embeddings"]
    assert unmatched(7) == 1
    left = {r[0] for r in store.query("SELECT face_id FROM face_embeddings")}
    assert left == {"old-matched", "recent-unmatched", "just-inside"}
    assert unmatched(7) == 0
    assert unmatched(0.5) == 2  # half a day
    assert {r[0] for r in store.query("SELECT face_id FROM face_embeddings")} == {"old-matched"}


def test_face_upsert_is_idempotent_and_keeps_a_match(rng=np.random.default_rng(2)):
    store = AnalystStore("duckdb:///:memory:")
    e = unit(rng)[0]
    store.upsert_face_embedding(record("f", NOW, e, matched="W-7"))
    store.upsert_face_embedding(record("f", NOW, e))  # redelivered by a replay without the match
    store.commit()
    (face_id, subject, blob), = store.query(
        "SELECT face_id, matched_subject, embedding FROM face_embeddings")
    assert subject == "W-7"
    np.testing.assert_allclose(np.frombuffer(blob, "<f4"), e, rtol=1e-6)


def test_face_records_skip_bad_embeddings_and_round_trip_the_contract(rng=np.random.default_rng(3)):
    emb = unit(rng, 4).astype(np.float32) * 3  # not normalised on purpose
    emb[1] = np.nan
    emb[2] = 0
    faces = Detections(xyxy=np.arange(16).reshape(4, 4), confidence=np.ones(4),
                       class_id=np.zeros(4), tracker_id=[5, 6, 7, -1],
                       data={"embedding": emb}, class_names=("face",))
    records = face_embedding_records("port-gate", NOW, 42, faces, ["W-1", None, None, None])
    assert [r["face_id"] for r in records] == ["port-gate:42:0", "port-gate:42:3"]
    assert [r["track_id"] for r in records] == [5, None]
    assert [r["matched_subject"] for r in records] == ["W-1", None]
    assert records[1]["x1"] == 12.0 and records[1]["y2"] == 15.0
    assert abs(np.linalg.norm(records[0]["embedding"]) - 1) < 1e-5
    codec = AvroCodec("FaceEmbedding")
    back = codec.decode(codec.encode(records[0]))
    assert back["face_id"] == "port-gate:42:0" and back["time_ms"] == NOW
    np.testing.assert_allclose(back["embedding"], records[0]["embedding"], rtol=1e-6)


def test_faces_are_searched_per_row_and_marked_matched(rng=np.random.default_rng(4)):
    target, other = unit(rng, 2)
    state = WatchlistState().apply({"id": "W-7", "kind": "face", "category": "wanted",
                                    "embeddings": [target.tolist()], "time_ms": 1})
    index = FaceIndex.build(state, use_gpu=False)
    emb = np.stack([near(other, rng), np.full(128, np.nan), near(target, rng)])
    faces = Detections(xyxy=np.zeros((3, 4)), confidence=np.ones(3), class_id=np.zeros(3),
                       tracker_id=[1, 2, 3], data={"embedding": emb}, class_names=("face",))
    sids, sims = search_faces(faces, index)
    assert sids[1] is None and sids[2] == "W-7" and sims[2] > 0.9
    assert FaceMatchDecider(MatchingConfig(face_threshold=0.9)).matched_subjects(sids, sims) == [None, None, "W-7"]
    # an empty watchlist: every face unmatched, none refused
    sids, _ = search_faces(faces, FaceIndex.build(WatchlistState(), use_gpu=False))
    assert list(sids) == [None, None, None]


def test_search_store_groups_by_camera_and_track_in_time_order(rng=np.random.default_rng(5)):
    store = AnalystStore("duckdb:///:memory:")
    subject, stranger = unit(rng, 2)
    rows = [record("a:1:0", NOW - 3 * DAY, near(subject, rng), "airport", track=4),
            record("b:1:0", NOW - 2 * DAY, near(subject, rng), "market", track=9),
            record("a:2:0", NOW - 3 * DAY + 500, near(subject, rng), "airport", track=4),
            record("b:2:0", NOW - 2 * DAY, near(stranger, rng), "market", track=10),
            record("a:0:0", NOW - 9 * DAY, near(subject, rng), "airport", track=1, matched="W-7")]
    for r in rows:
        store.upsert_face_embedding(r)
    store.commit()
    result = search_store(store, "W-7", subject[None, :].astype(np.float32), NOW - 7 * DAY, 0.9)
    assert result.summary() == {"subject": "W-7", "searched": 4, "matches": 3, "cameras": 2}
    groups = result.groups()
    assert [[m.face_id for m in g] for g in groups] == [["a:1:0", "a:2:0"], ["b:1:0"]]
    lines = format_lines(result, {"airport": "Phu Quoc airport"})
    assert len(lines) == 3 and "airport" in lines[0] and "track 4" in lines[0]
    assert "Phu Quoc airport" in lines[0] and "similarity 0.9" in lines[0]
    everything = search_store(store, "W-7", subject[None, :].astype(np.float32), 0, 0.9)
    assert everything.summary()["matches"] == 4
