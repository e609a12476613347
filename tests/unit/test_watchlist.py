"""Watchlist core: state, FAISS face index, fuzzy plates, match deciders, evidence crops."""
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from camflow.transforms.alerts import alert_id, time_bucket
from camflow.transforms.watchlist import (
    FaceIndex, FaceMatchDecider, EvidenceError, MatchingConfig, InvalidEmbedding, InvalidEntry,
    PlateMatchDecider, PlateWatchlist, WatchlistError, WatchlistState, choose_index_kind,
    embedding_problems, entry_key, evidence_crop, plate_distance, validate_embeddings,
)

SCHEMAS = Path(__file__).parents[2] / "schemas"
T0 = 1_700_000_400_000  # a multiple of the default 10-minute cooldown
CAM = "pq-cam-07"


def unit(rng, n=1, dim=128):
    v = rng.standard_normal((n, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def near(v, rng, noise=0.15):
    """Another "photo" of the same face: cosine ~0.99 with ``v``."""
    w = np.asarray(v) + rng.standard_normal(np.shape(v)) * noise / np.sqrt(128)
    return w / np.linalg.norm(w, axis=-1, keepdims=True)


def face(sid, emb, category="wanted", t=1, name=None):
    return {"id": sid, "kind": "face", "name": name or f"Person {sid}", "category": category,
            "embeddings": np.asarray(emb).tolist(), "plate": None, "plate_display": None,
            "reason": "case 42", "added_by": "officer", "time_ms": t, "removed": False}


def plate(text, category="suspect", t=1):
    return {"id": text, "kind": "plate", "name": "white Vios", "category": category,
            "embeddings": [], "plate": text, "plate_display": text, "reason": None,
            "added_by": "officer", "time_ms": t, "removed": False}


@pytest.fixture()
def rng():
    return np.random.default_rng(7)


@pytest.fixture()
def faces_state(rng):
    state = WatchlistState()
    for i in range(50):
        state = state.apply(face(f"W-{i:03d}", unit(rng, 2), category=("wanted", "suspect", "missing")[i % 3]))
    return state


# ------------------------------------------------------------------ state
def test_apply_upsert_and_tombstone_are_pure_and_pickle(rng):
    s0 = WatchlistState()
    s1 = s0.apply(face("W-1", unit(rng, 2), t=10))
    s2 = s1.apply(plate("51F59881", t=11))
    assert len(s0) == 0 and len(s1) == 1 and len(s2) == 2  # old states untouched
    assert set(s2.entries) == {"face:W-1", "plate:51F59881"}
    e = s2.get("face", "W-1")
    assert len(e["embeddings"]) == 2 and len(e["embeddings"][0]) == 128
    assert np.allclose(np.linalg.norm(e["embeddings"], axis=1), 1.0)
    assert "removed" not in e

    s3 = s2.apply(None, key="face:W-1", time_ms=20)       # compacted-topic tombstone
    assert s3.get("face", "W-1") is None and s3.tombstones["face:W-1"] == 20
    assert s2.get("face", "W-1") is not None

    restored = WatchlistState.from_dict(pickle.loads(pickle.dumps(s3.to_dict())))
    assert restored == s3


def test_removal_record_and_stale_updates(rng):
    emb = unit(rng, 1)
    s = WatchlistState().apply(face("W-1", emb, t=10))
    s = s.apply({**face("W-1", emb, t=30), "embeddings": [], "removed": True})  # audit-style removal
    assert s.get("face", "W-1") is None and s.tombstones[entry_key("face", "W-1")] == 30
    assert s.apply(face("W-1", emb, t=25)) is s          # replayed older add: no resurrection
    s = s.apply(face("W-1", emb, t=40))                   # a newer re-enrolment wins
    assert s.get("face", "W-1")["time_ms"] == 40 and "face:W-1" not in s.tombstones
    assert s.apply(None, key="face:W-1", time_ms=35) is s  # stale removal ignored
    # the same record applied twice is idempotent
    again = s.apply(face("W-1", emb, t=40))
    assert again.entries == s.entries


@pytest.mark.parametrize("bad,reason", [
    ({"kind": "face"}, "bad_entry"),
    ({"id": "x", "kind": "car", "category": "wanted"}, "bad_kind"),
    ({"id": "x", "kind": "face", "category": "vip", "embeddings": [[1.0] * 128]}, "bad_category"),
    ({"id": "x", "kind": "face", "category": "wanted", "embeddings": []}, "no_embeddings"),
    ({"id": "x", "kind": "face", "category": "wanted", "embeddings": [[0.0] * 128]}, "zero_norm"),
    ({"id": "x", "kind": "face", "category": "wanted", "embeddings": [[float("nan")] * 128]}, "non_finite"),
    ({"id": "x", "kind": "face", "category": "wanted", "embeddings": [[1.0] * 64]}, "bad_shape"),
    ({"id": "x", "kind": "plate", "category": "wanted", "plate": "--"}, "bad_plate"),
])
def test_invalid_entries_are_refused_with_a_reason(bad, reason):
    with pytest.raises(InvalidEntry) as e:
        WatchlistState().apply(bad)
    assert e.value.reason == reason and isinstance(e.value, ValueError)


# ------------------------------------------------------------------ face index
def test_search_finds_the_enrolled_identity(faces_state, rng):
    index = FaceIndex.build(faces_state, use_gpu=False)
    assert index.kind == "flat" and index.ntotal == 100
    target = faces_state.get("face", "W-017")["embeddings"][1]
    queries = np.vstack([near(target, rng), unit(rng, 1)[0]])
    ids, sims = index.search(queries, k=3)
    assert ids.shape == sims.shape == (2, 3)
    assert ids[0, 0] == "W-017" and sims[0, 0] > 0.95
    assert len(set(ids[0])) == 3                    # distinct subjects, not vectors
    assert sims[1, 0] < 0.5                         # a stranger matches nobody well
    assert np.all(np.diff(sims, axis=1) <= 0)


def test_index_rebuilt_from_state_equals_incremental(rng):
    index = FaceIndex.build(WatchlistState(), use_gpu=False)
    state = WatchlistState()
    changes = [face(f"W-{i}", unit(rng, 1 + i % 3)) for i in range(30)]
    changes += [face("W-3", unit(rng, 2), t=5)]           # re-enrolled with new photos
    for c in changes:
        state = state.apply(c)
        index.update_entry(c["id"], state.get("face", c["id"]))
    for sid in ("W-4", "W-9"):
        state = state.apply(None, key=f"face:{sid}")
        index.update_entry(sid, state.get("face", sid))
    rebuilt = FaceIndex.build(state, use_gpu=False)
    assert index.ntotal == rebuilt.ntotal == sum(len(e["embeddings"]) for e in state.entries.values())
    assert index.subject_vectors.keys() == rebuilt.subject_vectors.keys()
    q = unit(rng, 20)
    q[:3] = near(np.array(state.get("face", "W-3")["embeddings"][:1] * 3), rng)
    a_ids, a_sims = index.search(q, 5)
    b_ids, b_sims = rebuilt.search(q, 5)
    assert (a_ids == b_ids).all()
    assert np.allclose(a_sims, b_sims, atol=1e-6)
    assert set(a_ids[:3, 0]) == {"W-3"}
    assert "W-4" not in set(a_ids.ravel()) | set(b_ids.ravel())


def test_index_kind_chosen_by_size(rng):
    assert choose_index_kind(99_999) == "flat"
    assert choose_index_kind(100_000) == "ivf"
    assert choose_index_kind(100_000, large_kind="hnsw") == "hnsw"
    state = WatchlistState()
    for i in range(40):
        state = state.apply(face(f"W-{i}", unit(rng, 4)))      # 160 vectors
    small = FaceIndex.build(state, ivf_threshold=1000, use_gpu=False)
    ivf = FaceIndex.build(state, ivf_threshold=100, use_gpu=False)
    hnsw = FaceIndex.build(state, ivf_threshold=100, large_kind="hnsw", use_gpu=False)
    assert (small.kind, ivf.kind, hnsw.kind) == ("flat", "ivf", "hnsw")
    assert ivf.search_param is not None and hnsw.search_param is not None
    target = state.get("face", "W-11")["embeddings"][2]
    for index in (ivf, hnsw):
        ids, sims = index.search(near(target, rng), 1)
        assert ids[0, 0] == "W-11" and sims[0, 0] > 0.95
    # live removal: IVF removes vectors; HNSW masks them until a rebuild
    for index in (ivf, hnsw):
        index.update_entry("W-11", None)
        ids, _ = index.search(np.asarray(target), 3)
        assert "W-11" not in set(ids[0])
    assert hnsw.index.ntotal == 160 and hnsw.ntotal == 156
    # growing a flat index past the threshold asks for a rebuild
    assert not small.needs_rebuild
    small.ivf_threshold = 100
    assert small.needs_rebuild


@pytest.mark.parametrize("row,reason", [
    (np.full(128, np.nan), "non_finite"),
    (np.r_[np.inf, np.zeros(127)], "non_finite"),
    (np.zeros(128), "zero_norm"),
])
def test_nan_and_zero_embeddings_are_rejected(faces_state, rng, row, reason):
    index = FaceIndex.build(faces_state, use_gpu=False)
    batch = np.vstack([unit(rng, 1), row])
    with pytest.raises(InvalidEmbedding) as e:
        index.search(batch, 1)
    assert e.value.reason == reason and isinstance(e.value, WatchlistError)
    assert "row 1" in str(e.value)
    assert list(embedding_problems(batch)) == ["", reason]
    with pytest.raises(InvalidEmbedding) as e:
        index.add_subject("W-x", row)
    assert e.value.reason == reason
    with pytest.raises(InvalidEmbedding) as e:
        validate_embeddings(np.ones((2, 64)))
    assert e.value.reason == "bad_shape"


# ------------------------------------------------------------------ plates
@pytest.fixture()
def plates():
    state = WatchlistState().apply(plate("51F59881")).apply(plate("59S244717", "wanted"))
    return PlateWatchlist.build(state)


@pytest.mark.parametrize("read,subject,distance,exact", [
    ("51F59881", "51F59881", 0.0, True),       # exact
    ("51F-598.81", "51F59881", 0.0, True),     # display form normalises to the same text
    ("51F598B1", "51F59881", 0.5, False),      # one OCR confusion (8/B)
    ("5IF598B1", "51F59881", 1.0, False),      # two OCR confusions (1/I, 8/B)
    ("59N244717", "59S244717", 1.0, False),    # one real substitution (S -> N)
    ("59S24471", "59S244717", 1.0, False),     # one character dropped
    ("51F59822", None, None, None),            # two real substitutions: no match
    ("51F5982", None, None, None),             # substitution + deletion: no match
    ("30A12345", None, None, None),
])
def test_plate_fuzzy_matching(plates, read, subject, distance, exact):
    m = plates.match(read)
    if subject is None:
        assert m is None
    else:
        assert (m.subject_id, m.distance, m.exact) == (subject, distance, exact)
        assert m.entry["kind"] == "plate"


def test_plate_distance_and_removal(plates):
    assert plate_distance("0", "D") == 0.5 and plate_distance("M", "N") == 0.5
    assert plate_distance("1", "7") == 1.0 and plate_distance("ABC", "ABC") == 0.0
    plates.update_entry("51F59881", None)
    assert plates.match("51F59881") is None and len(plates) == 1


# ------------------------------------------------------------------ deciders
@pytest.fixture()
def world(faces_state):
    return faces_state, FaceIndex.build(faces_state, use_gpu=False)


def sees(decider, state, watchlist, index, t, track, emb):
    ids, sims = index.search(np.atleast_2d(emb), 1)
    return decider.observe(state, CAM, t, [track], ids[:, 0], sims[:, 0], watchlist)


def check_alert_record(record, contract):
    fastavro = pytest.importorskip("fastavro")
    schema = fastavro.parse_schema(json.loads((SCHEMAS / contract).read_text()))
    assert fastavro.validate(record, schema, raise_errors=True)


def test_one_face_does_not_alert_two_in_one_track_do(world, rng):
    watchlist, index = world
    target = watchlist.get("face", "W-000")["embeddings"][0]
    d, st = FaceMatchDecider(), FaceMatchDecider.new_state()
    assert sees(d, st, watchlist, index, T0, 5, near(target, rng)) == ([], [])
    alerts, sightings = sees(d, st, watchlist, index, T0 + 400, 5, near(target, rng))
    assert len(alerts) == 1 and len(sightings) == 1
    a, s = alerts[0], sightings[0]
    assert a["type"] == "watchlist_face" and a["severity"] == "critical"   # wanted
    assert a["subject"] == "W-000" and a["track_id"] == 5 and a["camera_id"] == CAM
    assert a["alert_id"] == alert_id("watchlist_face", CAM, "W-000", time_bucket(T0 + 400, 600_000))
    assert re.fullmatch(r"[0-9a-f]{32}", a["alert_id"])
    ev = json.loads(a["evidence"])
    assert ev["name"] == "Person W-000" and ev["category"] == "wanted"
    assert ev["confirmations"] == 2 and ev["threshold"] == d.threshold
    assert ev["similarity"] == pytest.approx(a["score"], abs=1e-5) and a["score"] > 0.95
    assert s["subject_id"] == "W-000" and s["alert_id"] == a["alert_id"] and s["kind"] == "face"
    assert s["time_ms"] == T0 + 400 and s["track_id"] == 5
    check_alert_record(a, "alert.avsc")
    check_alert_record(s, "sighting.avsc")
    pickle.loads(pickle.dumps(st))  # keyed state is plain data


def test_two_tracks_or_outside_window_do_not_confirm(world, rng):
    watchlist, index = world
    target = watchlist.get("face", "W-001")["embeddings"][0]
    d, st = FaceMatchDecider(), FaceMatchDecider.new_state()
    assert sees(d, st, watchlist, index, T0, 1, near(target, rng)) == ([], [])
    assert sees(d, st, watchlist, index, T0 + 300, 2, near(target, rng)) == ([], [])
    assert sees(d, st, watchlist, index, T0 + 6_000, 1, near(target, rng)) == ([], [])  # > 5 s later
    assert sees(d, st, watchlist, index, T0 + 6_000, 1, near(target, rng)) == ([], [])  # same frame again
    # configurable: any track of the camera, or a single face
    loose, st2 = FaceMatchDecider(same_track=False), FaceMatchDecider.new_state()
    sees(loose, st2, watchlist, index, T0, 1, near(target, rng))
    alerts, _ = sees(loose, st2, watchlist, index, T0 + 300, 2, near(target, rng))
    assert len(alerts) == 1 and alerts[0]["severity"] == "warning"  # suspect
    single, st3 = FaceMatchDecider(MatchingConfig(face_confirmations=1)), FaceMatchDecider.new_state()
    assert len(sees(single, st3, watchlist, index, T0, -1, near(target, rng))[0]) == 1
    # below the threshold never counts
    strict, st4 = FaceMatchDecider(MatchingConfig(face_threshold=0.999)), FaceMatchDecider.new_state()
    for t in range(3):
        assert sees(strict, st4, watchlist, index, T0 + t * 100, 1, near(target, rng, 0.5)) == ([], [])


def test_cooldown_suppresses_second_alert_and_reuses_id(world, rng):
    watchlist, index = world
    target = watchlist.get("face", "W-002")["embeddings"][1]
    d, st = FaceMatchDecider(), FaceMatchDecider.new_state()
    sees(d, st, watchlist, index, T0, 1, near(target, rng))
    (first,), _ = sees(d, st, watchlist, index, T0 + 200, 1, near(target, rng))
    # the same person comes back on another track 2 minutes later: sightings, no new alert
    sees(d, st, watchlist, index, T0 + 120_000, 9, near(target, rng))
    alerts, sightings = sees(d, st, watchlist, index, T0 + 120_300, 9, near(target, rng))
    assert alerts == [] and sightings[0]["alert_id"] == first["alert_id"]
    assert sightings[0]["track_id"] == 9
    # with emit_updates the alert is re-emitted under the same id (the sink upserts)
    upd, st2 = FaceMatchDecider(emit_updates=True), FaceMatchDecider.new_state()
    sees(upd, st2, watchlist, index, T0, 1, near(target, rng))
    (a1,), _ = sees(upd, st2, watchlist, index, T0 + 200, 1, near(target, rng))
    (a2,), _ = sees(upd, st2, watchlist, index, T0 + 400, 1, near(target, rng))
    assert a1["alert_id"] == a2["alert_id"] and json.loads(a2["evidence"])["sightings"] == 2
    # after the cooldown a new alert with a new id
    sees(d, st, watchlist, index, T0 + 700_000, 3, near(target, rng))
    (second,), _ = sees(d, st, watchlist, index, T0 + 700_200, 3, near(target, rng))
    assert second["alert_id"] != first["alert_id"]
    # a replay from the same state gives the same ids
    st_r = FaceMatchDecider.new_state()
    sees(d, st_r, watchlist, index, T0, 1, near(target, rng))
    (again,), _ = sees(d, st_r, watchlist, index, T0 + 200, 1, near(target, rng))
    assert again["alert_id"] == first["alert_id"]


def test_removal_stops_alerts(world, rng):
    watchlist, index = world
    target = watchlist.get("face", "W-003")["embeddings"][0]
    d, st = FaceMatchDecider(), FaceMatchDecider.new_state()
    sees(d, st, watchlist, index, T0, 1, near(target, rng))
    removed = watchlist.apply(None, key="face:W-003", time_ms=T0 + 100)
    # even before the index catches up, the decider checks the state
    ids, sims = index.search(near(target, rng), 1)
    assert ids[0, 0] == "W-003"
    assert d.observe(st, CAM, T0 + 200, [1], ids[:, 0], sims[:, 0], removed) == ([], [])
    assert "W-003" not in st["pending"]
    index.update_entry("W-003", removed.get("face", "W-003"))
    assert sees(d, st, removed, index, T0 + 400, 1, near(target, rng)) == ([], [])


def test_plate_decider_one_read_and_cooldown(plates):
    d, st = PlateMatchDecider(), PlateMatchDecider.new_state()
    alerts, sightings = d.observe(st, CAM, T0, [12, 13], ["51F598B1", "30A12345"], plates)
    assert len(alerts) == 1 and len(sightings) == 1
    a, s = alerts[0], sightings[0]
    assert a["type"] == "watchlist_plate" and a["subject"] == "51F59881" and a["severity"] == "warning"
    assert a["score"] == 0.75 and a["track_id"] == 12
    ev = json.loads(a["evidence"])
    assert ev["plate_read"] == "51F598B1" and ev["distance"] == 0.5 and ev["exact"] is False
    assert s["plate"] == "51F598B1" and s["alert_id"] == a["alert_id"]
    check_alert_record(a, "alert.avsc")
    check_alert_record(s, "sighting.avsc")
    alerts, sightings = d.observe(st, CAM, T0 + 60_000, [40], ["51F59881"], plates)
    assert alerts == [] and sightings[0]["alert_id"] == a["alert_id"]
    plates.update_entry("51F59881", None)
    assert d.observe(st, CAM, T0 + 61_000, [40], ["51F59881"], plates) == ([], [])


# ------------------------------------------------------------------ evidence
def test_evidence_crop_respects_its_cap(rng):
    import cv2

    noise = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)  # incompressible
    for cap in (64_000, 8_000, 2_000):
        jpeg = evidence_crop(noise, (400, 300, 1400, 900), max_bytes=cap)
        assert len(jpeg) <= cap and jpeg[:2] == b"\xff\xd8"
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is not None
    smooth = np.zeros((480, 640, 3), np.uint8)
    small = evidence_crop(smooth, (100, 100, 140, 150))
    img = cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_COLOR)
    assert abs(img.shape[0] - 75) <= 1 and img.shape[1] == 60  # 40x50 box, 25 % padding a side
    with pytest.raises(EvidenceError) as e:
        evidence_crop(smooth, (700, 500, 800, 600))
    assert e.value.reason == "empty_crop"
    with pytest.raises(EvidenceError) as e:
        evidence_crop(noise, (0, 0, 100, 100), max_bytes=100)
    assert e.value.reason == "too_large"
