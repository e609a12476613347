"""Per-track appearance records: when they are written, what they hold, and how the analyst
store keeps one row per track (refreshes replace the best crop, closing moves last-seen on)."""
import numpy as np
import pytest

from camflow.services.store import AnalystStore
from camflow.transforms.appearance import AppearanceConfig, TrackAppearances, heading
from camflow.transforms.detections import COCO_CLASSES, Detections

PERSON = COCO_CLASSES.index("person")


def frame_with_person(x: float, height: float, shirt=(0, 0, 220), trousers=(200, 60, 0)):
    image = np.full((480, 640, 3), (90, 120, 100), np.uint8)
    y1, width = 100.0, height / 3
    image[int(y1):int(y1 + height / 2), int(x):int(x + width)] = shirt
    image[int(y1 + height / 2):int(y1 + height), int(x):int(x + width)] = trousers
    detections = Detections(xyxy=np.array([[x, y1, x + width, y1 + height]]),
                            confidence=np.array([0.9]), class_id=np.array([PERSON]),
                            tracker_id=np.array([7]))
    return image, detections


def fake_embedder(image, xyxy):
    out = np.zeros((len(xyxy), 4), np.float32)
    out[:, 0] = 1.0
    return out


def run(steps, config=AppearanceConfig(), embedder=fake_embedder):
    appearances = TrackAppearances(config, embedder, "fake-embedder")
    state, records = None, []
    for capture_ms, image, detections in steps:
        state, new = appearances(state, "cam-a", capture_ms, image, detections)
        records += new
    return state, records


def test_first_usable_crop_then_a_larger_one_then_closing():
    steps = [(0, *frame_with_person(100, 30)),      # too short for a best crop
             (1000, *frame_with_person(110, 90)),   # first record
             (2000, *frame_with_person(120, 95)),   # not larger enough, and too soon
             (4000, *frame_with_person(130, 150)),  # refresh: much larger
             (5000, *frame_with_person(140, 100))]
    image = steps[-1][1]
    blank = Detections(xyxy=np.zeros((0, 4)), confidence=np.zeros(0), class_id=np.zeros(0, int),
                       tracker_id=np.zeros(0, int))
    steps.append((11_000, image, blank))  # the person is gone: closed after close_after_ms
    state, records = run(steps)
    assert [r["best_ms"] for r in records] == [1000, 4000, 4000]
    first, refresh, closing = records
    assert first["appearance_id"] == refresh["appearance_id"] == closing["appearance_id"] == "cam-a:7:0"
    assert (first["upper_colour"], first["lower_colour"]) == ("red", "blue")
    assert first["colour"] is not None and first["embedding"] == [1.0, 0.0, 0.0, 0.0]
    assert first["crop_jpeg"][:2] == b"\xff\xd8"
    assert closing["closed"] and closing["colour"] is None and closing["last_seen_ms"] == 5000
    # It moved ~50 px right, less than half its height (150 px) at its best: "still".
    assert closing["heading"] == "still"
    assert state == {}


def test_without_embedding_and_for_classes_not_asked_for():
    _, records = run([(0, *frame_with_person(100, 90))], AppearanceConfig(embedding=False))
    assert records[0]["embedding"] is None and records[0]["embedding_model"] is None
    _, records = run([(0, *frame_with_person(100, 90))], AppearanceConfig(classes=["car"]))
    assert records == []


def test_a_box_cut_by_the_frame_edge_is_never_the_best_crop():
    image, detections = frame_with_person(0, 90)
    _, records = run([(0, image, detections)])
    assert records == []


def test_heading_words():
    assert heading(50, 5, 10) == "right" and heading(-50, 5, 10) == "left"
    assert heading(0, -40, 10) == "up" and heading(2, 3, 10) == "still"


def test_store_keeps_one_row_per_track(tmp_path):
    steps = [(1000, *frame_with_person(110, 90)), (4000, *frame_with_person(130, 150))]
    _, records = run(steps)
    closing = dict(records[-1], colour=None, embedding=None, embedding_model=None, crop_jpeg=None,
                   upper_colour=None, lower_colour=None, closed=True, last_seen_ms=9000,
                   heading="right")
    store = AnalystStore(f"duckdb://{tmp_path / 'store.duckdb'}")
    store.create_schema()
    for record in records + [closing, records[0]]:  # a late redelivery of the first record
        store.upsert_appearance(record)
    store.commit()
    rows = store.appearances(vectors=True, crops=True)
    assert len(rows) == 1
    row = rows[0]
    assert row["best_ms"] == 4000  # the larger crop stays the best despite the redelivery
    assert row["last_ms"] == 9000 and row["heading"] == "right"
    assert row["upper_colour"] == "red" and row["crop_jpeg"] is not None
    assert store.appearances(colours={"upper": "red", "lower": "blue"}, class_name="person")
    assert not store.appearances(colours={"upper": "green"})
    assert store.track_appearance("cam-a", 7) == "cam-a:7:1000"
    deleted = store.delete_expired(_Retention(), unmatched_embeddings_days=1, now_ms=9000 + 2 * 86_400_000)
    assert deleted["appearances"] == 1 and not store.appearances()


def test_the_store_refuses_a_colour_vector_of_another_size(tmp_path):
    from camflow.schemas.codec import SchemaError
    _, records = run([(1000, *frame_with_person(110, 90))])
    store = AnalystStore(f"duckdb://{tmp_path / 'store.duckdb'}")
    store.create_schema()
    with pytest.raises(SchemaError, match="colour of 5 floats, expected 432"):
        store.upsert_appearance(dict(records[0], colour=[0.1] * 5))
    assert store.appearances() == []


class _Retention:
    alerts_days = evidence_days = matched_embeddings_days = sightings_days = 365
    frame_analyses_days = vehicle_plates_days = sink_rejects_days = access_audit_days = 365


def _config_with_cameras():
    from camflow.config import Config
    return Config.model_validate({"cameras": [
        {"id": "cam-a", "name": "A", "location": {"site": "Night market", "lat": 10.2, "lon": 103.96}},
        {"id": "cam-b", "name": "B", "location": {"site": "An Thoi port", "lat": 10.0, "lon": 104.0}}]})


def _stored(tmp_path, people):
    """``people``: (camera, track, capture_ms, shirt, trousers) -> a store with their records."""
    store = AnalystStore(f"duckdb://{tmp_path / 'store.duckdb'}")
    store.create_schema()
    for camera, track, capture_ms, shirt, trousers in people:
        image, detections = frame_with_person(200, 120, shirt, trousers)
        detections.tracker_id[:] = track
        _, records = TrackAppearances(AppearanceConfig(embedding=False))(
            None, camera, capture_ms, image, detections)
        for record in records:
            store.upsert_appearance(record)
    store.commit()
    return store


RED, BLUE, GREEN, WHITE = (0, 0, 220), (200, 60, 0), (0, 180, 0), (245, 245, 245)


def test_find_by_colours_site_and_time(tmp_path):
    from camflow.services.appearance_search import AppearanceSearchError, find_tracks
    store = _stored(tmp_path, [("cam-a", 1, 1000, RED, BLUE), ("cam-b", 2, 5000, RED, BLUE),
                               ("cam-a", 3, 2000, GREEN, WHITE)])
    config = _config_with_cameras()
    found = find_tracks(store, config, class_name="person", upper="red", lower="navy")
    assert [(m.camera_id, m.track_id) for m in found] == [("cam-a", 1), ("cam-b", 2)]
    assert found[1].site == "An Thoi port" and found[0].colours == {"upper": "red", "lower": "blue"}
    assert [m.track_id for m in find_tracks(store, config, upper="red", sites=["port"])] == [2]
    assert [m.track_id for m in find_tracks(store, config, upper="red", until_ms=1500)] == [1]
    with pytest.raises(AppearanceSearchError, match="unknown colour"):
        find_tracks(store, config, upper="mauve")
    with pytest.raises(AppearanceSearchError, match="unknown camera"):
        find_tracks(store, config, cameras=["nowhere"])


def test_similar_ranks_the_same_clothes_first(tmp_path):
    from camflow.services.appearance_search import resolve_track, similar_tracks
    store = _stored(tmp_path, [("cam-a", 1, 1000, RED, BLUE), ("cam-b", 2, 5000, GREEN, WHITE),
                               ("cam-b", 3, 6000, RED, BLUE), ("cam-b", 4, 7000, BLUE, RED)])
    config = _config_with_cameras()
    appearance_id = resolve_track(store, "cam-a:1")
    query, matches = similar_tracks(store, config, appearance_id)
    assert query.track_id == 1
    assert [m.track_id for m in matches] == [3, 4, 2]
    assert matches[0].score > 0.99 and matches[0].score > matches[1].score > matches[2].score
    with pytest.raises(Exception, match="no appearance record of track 9"):
        resolve_track(store, "cam-a:9")
