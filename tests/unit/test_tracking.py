import copy
import pickle

import numpy as np
import pytest

from camflow.transforms.detections import Detections
from camflow.transforms.tracking import (
    IouTracker,
    TrackerConfig,
    TrackerState,
    box_iou,
    tracked_ids,
)

PERSON, CAR = 0, 2
FRAME_MS = 100
T0 = 1_700_000_000_000


def frame(*objects) -> Detections:
    """objects: (x1, y1, x2, y2[, class_id[, confidence]])."""
    rows = [tuple(o) + (PERSON, 0.9)[len(o) - 4:] for o in objects]
    return Detections(
        xyxy=np.array([r[:4] for r in rows], np.float32).reshape(-1, 4),
        class_id=np.array([r[4] for r in rows], np.int32),
        confidence=np.array([r[5] for r in rows], np.float32),
    )


def person_at(x: float, y: float = 100.0, size: float = 40.0, **kw) -> tuple:
    return (x, y, x + size, y + size * 2, kw.get("class_id", PERSON), kw.get("conf", 0.9))


def run(tracker, frames, state=None, start_ms=T0):
    """Feed frames FRAME_MS apart; returns (final state, list of tracker_id lists, ended lists)."""
    state = state or TrackerState()
    ids, ended = [], []
    for i, detections in enumerate(frames):
        update = tracker.update(state, detections, start_ms + i * FRAME_MS)
        state = update.state
        ids.append(update.detections.tracker_id.tolist())
        ended.append([t.track_id for t in update.ended])
    return state, ids, ended


def test_box_iou_exact_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 0.0]])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 4)


def test_track_is_confirmed_after_min_hits_and_keeps_its_id():
    tracker = IouTracker(TrackerConfig(min_hits=3))
    state, ids, ended = run(tracker, [frame(person_at(100 + 5 * i)) for i in range(6)])
    assert ids == [[-1], [-1], [1], [1], [1], [1]]
    assert state.confirmed_total == 1
    assert state.next_id == 2
    track = state.tracks[0]
    assert (track.track_id, track.class_id, track.hits, track.misses) == (1, PERSON, 6, 0)
    assert (track.first_seen_ms, track.last_seen_ms) == (T0, T0 + 5 * FRAME_MS)
    assert track.box == (125.0, 100.0, 165.0, 180.0)
    assert track.velocity[0] == pytest.approx(5 / FRAME_MS)
    assert ended == [[]] * 6


def test_min_hits_one_confirms_immediately():
    tracker = IouTracker(TrackerConfig(min_hits=1))
    state, ids, _ = run(tracker, [frame(person_at(100), person_at(300))])
    assert ids == [[1, 2]]
    assert state.confirmed_total == 2


def test_detection_order_does_not_matter_to_outputs_alignment():
    # tracker ids come back aligned with the input rows, whatever their order.
    tracker = IouTracker(TrackerConfig(min_hits=1))
    state, _, _ = run(tracker, [frame(person_at(100), person_at(300))])
    update = tracker.update(state, frame(person_at(302), person_at(101)), T0 + FRAME_MS)
    assert update.detections.tracker_id.tolist() == [2, 1]
    np.testing.assert_array_equal(update.detections.xyxy, frame(person_at(302), person_at(101)).xyxy)


def test_two_people_crossing_keep_their_ids():
    # A walks right, B walks left, 16 px per frame (40 px wide boxes), B 10 px lower. At the
    # crossing each last-seen box overlaps the *other* person's new box more than its own, so
    # plain IoU matching would swap ids; matching against velocity-predicted boxes does not.
    tracker = IouTracker(TrackerConfig(min_hits=2))
    frames = [
        frame(person_at(40 + 16 * i, y=100), person_at(440 - 16 * i, y=110)) for i in range(26)
    ]
    a_before, b_before = frames[12].xyxy
    a_after, b_after = frames[13].xyxy
    assert box_iou([a_before], [b_after])[0, 0] > box_iou([a_before], [a_after])[0, 0]
    state, ids, ended = run(tracker, frames)
    assert ids[0] == [-1, -1]
    assert all(frame_ids == [1, 2] for frame_ids in ids[1:])
    assert state.confirmed_total == 2
    assert state.next_id == 3
    assert ended == [[]] * 26


def test_occlusion_gap_within_max_age_keeps_the_id():
    tracker = IouTracker(TrackerConfig(min_hits=3, max_age_ms=2_000))
    walking = [frame(person_at(100 + 10 * i)) for i in range(5)]
    hidden = [frame() for _ in range(12)]  # 1.2 s behind a pillar
    reappears = [frame(person_at(100 + 10 * i)) for i in range(17, 20)]
    state, ids, ended = run(tracker, walking + hidden + reappears)
    assert ids[:5] == [[-1], [-1], [1], [1], [1]]
    assert ids[5:17] == [[]] * 12
    # The predicted box has walked on at 10 px/frame, so it meets the person where they reappear.
    assert ids[17:] == [[1], [1], [1]]
    assert state.tracks[0].hits == 8
    assert all(not e for e in ended)
    assert state.next_id == 2


def test_skipped_frames_are_not_misses_by_count_but_by_time():
    # A motion-gated sampler sends nothing for 1.5 s; the next frame still matches.
    tracker = IouTracker(TrackerConfig(min_hits=2, max_age_ms=2_000))
    state, ids, _ = run(tracker, [frame(person_at(100)), frame(person_at(101))])
    update = tracker.update(state, frame(person_at(102)), T0 + FRAME_MS + 1_500)
    assert ids == [[-1], [1]]
    assert update.detections.tracker_id.tolist() == [1]


def test_track_expires_after_max_age_and_is_reported_once():
    tracker = IouTracker(TrackerConfig(min_hits=2, max_age_ms=2_000))
    state, ids, _ = run(tracker, [frame(person_at(100)) for _ in range(3)])
    last_seen = T0 + 2 * FRAME_MS
    assert ids == [[-1], [1], [1]]

    # Exactly max_age later: still alive (matching here would be allowed).
    update = tracker.update(state, frame(), last_seen + 2_000)
    assert update.ended == [] and [t.track_id for t in update.state.tracks] == [1]

    # One millisecond more: gone, reported, and a person at the same spot gets a new id.
    update = tracker.update(update.state, frame(person_at(100)), last_seen + 2_001)
    assert [(t.track_id, t.first_seen_ms, t.last_seen_ms, t.hits) for t in update.ended] == [
        (1, T0, last_seen, 3)
    ]
    assert update.detections.tracker_id.tolist() == [-1]
    update = tracker.update(update.state, frame(person_at(100)), last_seen + 2_101)
    assert update.detections.tracker_id.tolist() == [2]
    assert update.ended == []
    assert update.state.confirmed_total == 2


def test_expire_for_event_time_timers():
    tracker = IouTracker(TrackerConfig(min_hits=1, max_age_ms=1_000))
    state, _, _ = run(tracker, [frame(person_at(100), person_at(300))])
    state, _, _ = run(tracker, [frame(person_at(301))], state, start_ms=T0 + 800)
    kept, ended = tracker.expire(state, T0 + 1_500)
    assert [t.track_id for t in ended] == [1]
    assert [t.track_id for t in kept.tracks] == [2]
    assert [t.track_id for t in state.tracks] == [1, 2]  # input untouched


def test_matching_is_class_consistent():
    tracker = IouTracker(TrackerConfig(min_hits=1))
    state, _, _ = run(tracker, [frame(person_at(100))])
    # A car detected exactly where the person was does not inherit the person's id.
    update = tracker.update(state, frame(person_at(100, class_id=CAR)), T0 + FRAME_MS)
    assert update.detections.tracker_id.tolist() == [2]
    assert sorted((t.track_id, t.class_id) for t in update.state.tracks) == [(1, PERSON), (2, CAR)]


def test_low_confidence_detection_extends_a_confirmed_track_but_starts_none():
    tracker = IouTracker(TrackerConfig(min_hits=2, high_confidence=0.5, low_confidence=0.1))
    state, ids, _ = run(tracker, [frame(person_at(100)), frame(person_at(102))])
    assert ids == [[-1], [1]]
    # Half occluded: the detector is only 30 % sure, and a 30 % blob appears elsewhere.
    update = tracker.update(
        state, frame(person_at(104, conf=0.3), person_at(400, conf=0.3)), T0 + 2 * FRAME_MS
    )
    assert update.detections.tracker_id.tolist() == [1, -1]
    assert [t.track_id for t in update.state.tracks] == [1]
    assert update.state.tracks[0].confidence == pytest.approx(0.3)
    # Below low_confidence: ignored, the track just misses this frame.
    update = tracker.update(update.state, frame(person_at(106, conf=0.05)), T0 + 3 * FRAME_MS)
    assert update.detections.tracker_id.tolist() == [-1]
    assert update.state.tracks[0].misses == 1


def test_low_confidence_detection_does_not_extend_a_tentative_track():
    tracker = IouTracker(TrackerConfig(min_hits=3))
    state, _, _ = run(tracker, [frame(person_at(100))])
    update = tracker.update(state, frame(person_at(101, conf=0.3)), T0 + FRAME_MS)
    assert update.state.tracks == []


def test_tentative_track_is_dropped_at_its_first_miss():
    tracker = IouTracker(TrackerConfig(min_hits=3))
    state, ids, ended = run(
        tracker, [frame(person_at(100)), frame(person_at(100)), frame(), frame(person_at(100))]
    )
    assert ids == [[-1], [-1], [], [-1]]
    assert [t.track_id for t in state.tracks] == [2]
    assert ended == [[], [], [], []]  # never confirmed, never reported
    assert state.confirmed_total == 0


def sequence_of_many_objects(n_frames: int, n_objects: int = 30) -> list[Detections]:
    rng = np.random.default_rng(7)
    start = rng.uniform(0, 1800, size=(n_objects, 2)) * [1, 0.5]
    speed = rng.uniform(-4, 4, size=(n_objects, 2))
    classes = rng.choice([PERSON, CAR], size=n_objects)
    frames = []
    for i in range(n_frames):
        visible = rng.random(n_objects) > 0.1  # each object missed in ~10 % of frames
        corners = start + speed * i
        boxes = np.hstack([corners, corners + [30, 60]])[visible]
        frames.append(
            Detections(
                xyxy=boxes,
                class_id=classes[visible],
                confidence=rng.uniform(0.3, 0.99, size=visible.sum()),
            )
        )
    return frames


def test_state_round_trips_through_pickle_mid_sequence_and_continues_identically():
    tracker = IouTracker(TrackerConfig(min_hits=3, max_age_ms=500))
    frames = sequence_of_many_objects(40)
    state, ids_first, ended_first = run(tracker, frames[:20])

    restored = pickle.loads(pickle.dumps(state))
    from_dict = TrackerState.from_dict(pickle.loads(pickle.dumps(state.to_dict())))
    assert restored == state and from_dict == state

    results = [run(tracker, frames[20:], s, start_ms=T0 + 20 * FRAME_MS)
               for s in (state, restored, from_dict)]
    assert results[0] == results[1] == results[2]
    final_state, ids_second, _ = results[0]
    # The sequence is busy enough to exercise the tracker: many confirmed ids, stable ones.
    assert final_state.confirmed_total >= 25
    assert sum(i >= 0 for frame_ids in ids_second for i in frame_ids) > 400


def test_update_does_not_modify_its_input_state():
    tracker = IouTracker(TrackerConfig(min_hits=2))
    frames = sequence_of_many_objects(5)
    state, _, _ = run(tracker, frames[:4])
    before = copy.deepcopy(state)
    tracker.update(state, frames[4], T0 + 4 * FRAME_MS)
    assert state == before


def test_state_dict_holds_only_primitives():
    tracker = IouTracker(TrackerConfig(min_hits=1))
    state, _, _ = run(tracker, [frame(person_at(100))])
    data = state.to_dict()

    def primitive(value):
        if isinstance(value, dict):
            return all(isinstance(k, str) and primitive(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return all(primitive(v) for v in value)
        return value is None or type(value) in (int, float, str, bool)

    assert primitive(data)
    assert data["tracks"][0]["track_id"] == 1


def test_tracked_ids_lists_confirmed_ids_in_a_frame():
    detections = frame(person_at(0), person_at(100), person_at(200))
    detections.tracker_id = np.array([4, -1, 9])
    assert tracked_ids(detections) == {4, 9}


def test_config_is_validated():
    with pytest.raises(ValueError):
        TrackerConfig(low_confidence=0.6, high_confidence=0.5)
    with pytest.raises(ValueError):
        TrackerConfig(min_hits=0)
