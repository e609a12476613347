import copy
import pickle

import numpy as np
import pytest

from camflow.transforms.detections import Detections
from camflow.transforms.tracking import (
    APPEARANCE_SIZE,
    IouTracker,
    Tracker,
    TrackerConfig,
    TrackerState,
    box_iou,
    colour_histograms,
    hellinger,
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


# ----------------------------------------------------------------------- low frame rates
# At 1-4 frames/s people move more than their own width between samples: boxes of the same
# person in consecutive frames do not overlap, and IoU matching alone loses every track.

SECOND = 1_000
RED, BLUE, GREEN = (30, 30, 200), (200, 60, 30), (40, 160, 40)  # BGR
GREY = (128, 128, 128)


def draw(people, size=(400, 800)) -> np.ndarray:
    """A grey frame with each (box, (top colour, bottom colour)) painted as a person."""
    image = np.full((*size, 3), 110, np.uint8)
    for (x1, y1, x2, y2), (top, bottom) in people:
        middle = int((y1 + y2) / 2)
        image[int(y1):middle, int(x1):int(x2)] = top
        image[middle:int(y2), int(x1):int(x2)] = bottom
    return image


def run_timed(tracker, frames, images=None, state=None, start_ms=T0, step_ms=SECOND):
    """Like ``run`` but frames ``step_ms`` apart and optional images."""
    state = state or TrackerState()
    ids = []
    for i, detections in enumerate(frames):
        image = images[i] if images is not None else None
        update = tracker.update(state, detections, start_ms + i * step_ms, image=image)
        state = update.state
        ids.append(update.detections.tracker_id.tolist())
    return state, ids


def test_low_rate_crossing_keeps_ids_without_box_overlap():
    # 1 frame/s: A walks right and B left at 60 px/s, 40 px wide boxes, B 10 px lower. Each
    # person's boxes in consecutive samples never overlap, and after the crossing each old box
    # is nearer the *other* person's new box: IoU cannot match them, the prediction can.
    tracker = Tracker(TrackerConfig(min_hits=2))
    xs_a = [100 + 60 * i for i in range(9)]
    xs_b = [560 - 60 * i for i in range(9)]
    frames = [frame(person_at(a, y=100), person_at(b, y=110)) for a, b in zip(xs_a, xs_b)]
    assert all(box_iou([frames[i].xyxy[0]], [frames[i + 1].xyxy[0]])[0, 0] == 0 for i in range(8))
    state, ids = run_timed(tracker, frames)
    assert ids[0] == [-1, -1]
    assert all(frame_ids == [1, 2] for frame_ids in ids[1:])
    assert state.confirmed_total == 2 and state.next_id == 3
    # The velocity was measured from the detections: 60 px per second.
    assert state.tracks[0].velocity[0] == pytest.approx(0.06)


def test_low_rate_crossing_where_motion_misleads_is_held_by_appearance():
    # 1 frame/s: A (red top, blue legs) and B (green top, grey legs) walk towards each other
    # and stop where they meet. Motion predicts each where the *other* one stands; the colour
    # histograms of the crops keep the ids. Without the image the same frames swap them.
    tracker = Tracker(TrackerConfig(min_hits=2))
    xs_a = [100, 160, 220, 220, 220]
    xs_b = [400, 340, 280, 280, 280]
    looks = [(RED, BLUE), (GREEN, GREY)]
    boxes = [[(a, 100, a + 40, 180), (b, 100, b + 40, 180)] for a, b in zip(xs_a, xs_b)]
    frames = [frame(*[box + (PERSON, 0.9) for box in pair]) for pair in boxes]
    images = [draw(list(zip(pair, looks))) for pair in boxes]
    _, with_image = run_timed(tracker, frames, images)
    assert with_image[1:] == [[1, 2]] * 4
    _, motion_only = run_timed(tracker, frames)
    assert motion_only[3] == [2, 1]  # what the appearance cue prevents


def test_track_lost_for_a_few_samples_is_reidentified_and_a_stranger_is_not():
    # 2 frames/s: A walks right, is hidden for 2 samples (1 s) and reappears where it should
    # be; a differently dressed stranger who appears near A's predicted spot while A is
    # still hidden starts a new track instead of taking A's id.
    tracker = Tracker(TrackerConfig(min_hits=2, max_age_ms=3_000))
    step = 500
    a_box = lambda i: (100 + 30 * i, 100, 140 + 30 * i, 180)  # 60 px/s
    frames, images = [], []
    for i in range(8):
        people = []
        if i < 3 or i >= 6:
            people.append((a_box(i), (RED, BLUE)))
        if i in (4, 5):  # the stranger, near where A would be, while A is hidden
            people.append(((a_box(i)[0] + 20, 104, a_box(i)[2] + 20, 184), (GREEN, GREY)))
        frames.append(frame(*[box + (PERSON, 0.9) for box, _ in people]))
        images.append(draw(people))
    state, ids = run_timed(tracker, frames, images, step_ms=step)
    assert ids[:3] == [[-1], [1], [1]]
    assert ids[3] == []
    assert ids[4] == [-1] and ids[5] == [2]  # the stranger: a new track
    assert ids[6:] == [[1], [1]]  # A again, after 1.5 s unseen
    assert state.confirmed_total == 2


def test_tentative_track_at_one_frame_per_second_is_confirmed_across_a_long_step():
    # A new track has no velocity yet; its gate must still reach where a walker is 1 s later
    # (here 1.2 box heights away), or no track could ever be confirmed at 1 frame/s.
    tracker = Tracker(TrackerConfig(min_hits=2))
    _, ids = run_timed(tracker, [frame(person_at(100)), frame(person_at(196))])
    assert ids == [[-1], [1]]


def test_old_state_dict_without_history_or_appearance_still_loads_and_tracks():
    # A savepoint written before the history and appearance fields existed.
    old = {"next_id": 4, "last_frame_ms": T0, "confirmed_total": 3, "tracks": [
        {"track_id": 3, "class_id": PERSON, "box": [100.0, 100.0, 140.0, 180.0],
         "first_seen_ms": T0 - 5_000, "last_seen_ms": T0, "hits": 12, "misses": 0,
         "confidence": 0.8, "velocity": [0.05, 0.0, 0.05, 0.0]}]}
    state = TrackerState.from_dict(old)
    track = state.tracks[0]
    assert track.history == ((float(T0), 120.0, 180.0, 40.0, 80.0),) and track.appearance == ()
    tracker = Tracker(TrackerConfig(min_hits=2))
    update = tracker.update(state, frame(person_at(150)), T0 + SECOND,
                            image=draw([((150, 100, 190, 180), (RED, BLUE))]))
    assert update.detections.tracker_id.tolist() == [3]
    assert TrackerState.from_dict(update.state.to_dict()) == update.state
    assert len(update.state.tracks[0].appearance) == APPEARANCE_SIZE


def test_state_with_appearance_round_trips_and_continues_identically():
    tracker = Tracker(TrackerConfig(min_hits=2, max_age_ms=2_000))
    colours = [RED, BLUE, GREEN, GREY, (0, 200, 200), (200, 0, 200)]
    frames, images = [], []
    for i in range(12):
        people = [((50 + 120 * k + 25 * i * (-1) ** k % 400, 60 + 40 * k,
                    90 + 120 * k + 25 * i * (-1) ** k % 400, 140 + 40 * k),
                   (colours[k], colours[-1 - k])) for k in range(5) if (i + k) % 5]
        frames.append(frame(*[box + (PERSON, 0.9) for box, _ in people]))
        images.append(draw(people))
    state, first = run_timed(tracker, frames[:6], images[:6], step_ms=250)
    copies = [state, pickle.loads(pickle.dumps(state)),
              TrackerState.from_dict(pickle.loads(pickle.dumps(state.to_dict())))]
    assert copies[1] == state and copies[2] == state
    assert any(t.appearance for t in state.tracks)
    results = [run_timed(tracker, frames[6:], images[6:], s, start_ms=T0 + 6 * 250, step_ms=250)
               for s in copies]
    assert results[0] == results[1] == results[2]
    assert sum(i >= 0 for ids in results[0][1] for i in ids) > 10


def test_colour_histograms():
    image = draw([((10, 10, 50, 90), (RED, BLUE)), ((100, 10, 140, 90), (GREEN, GREY))])
    boxes = np.array([[10, 10, 50, 90], [100, 10, 140, 90], [200, 200, 202, 203]], np.float32)
    hist = colour_histograms(image, boxes)
    assert hist.shape == (3, APPEARANCE_SIZE)
    np.testing.assert_allclose(hist[:2].sum(axis=1), 1.0)
    assert not hist[2].any()  # too small to describe
    distance = hellinger(hist[:2], hist[:2])
    np.testing.assert_allclose(np.diag(distance), 0.0, atol=1e-6)
    assert distance[0, 1] > 0.9  # nothing in common
    assert not colour_histograms(None, boxes).any()


def test_tracker_config_is_the_domain_config_model():
    from pydantic import BaseModel, ValidationError

    config = TrackerConfig()
    assert isinstance(config, BaseModel)
    assert all(f.description for f in TrackerConfig.model_fields.values())
    with pytest.raises(ValidationError):
        TrackerConfig(surprise=1)  # extra fields are refused
    with pytest.raises(ValidationError):
        config.min_hits = 5  # frozen
    with pytest.raises(ValidationError):
        TrackerConfig(gate_radius=0)
    assert TrackerConfig.model_validate(config.model_dump()) == config


def test_iou_tracker_alias_keeps_the_job_interface():
    assert IouTracker is Tracker
    update = IouTracker(TrackerConfig(min_hits=1)).update(TrackerState(), frame(person_at(1)), T0)
    assert update.detections.tracker_id.tolist() == [1] and update.ended == []
