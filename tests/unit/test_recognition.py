"""Recognition once per track: who gets looked at, how often, and ownership of faces/plates."""
import pickle

import numpy as np

from camflow.transforms.detections import COCO_CLASSES, Detections, FrameAnalysis
from camflow.transforms.recognition import RecognitionPolicy, TrackRecognition, owner_rows

PERSON, CAR = COCO_CLASSES.index("person"), COCO_CLASSES.index("car")


def frame(t_ms, boxes, classes, tracks):
    analysis = FrameAnalysis("cam", t_ms, t_ms, 640, 480, b"")
    analysis.image = np.zeros((480, 640, 3), np.uint8)
    analysis.detections = Detections(xyxy=boxes, confidence=np.ones(len(boxes)),
                                     class_id=classes, tracker_id=tracks)
    return analysis


class FaceFinder:
    """Finds one face in the upper part of every person it is given, and counts calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, image, persons):
        self.calls.append(persons.tracker_id.tolist())
        boxes = [[x1 + 5, y1 + 5, x1 + 25, y1 + 25] for x1, y1, _, _ in persons.xyxy]
        return Detections(xyxy=np.array(boxes, np.float32).reshape(-1, 4), confidence=np.ones(len(boxes)),
                          class_id=np.zeros(len(boxes)), class_names=("face",),
                          data={"embedding": np.ones((len(boxes), 128), np.float32)})


def test_faces_are_read_per_track_until_enough_readings():
    finder = FaceFinder()
    policy = RecognitionPolicy(max_attempts=10, retry_ms=0, readings_per_track=2)
    recognise = TrackRecognition(finder, None, policy)
    state = None
    for t in range(5):
        analysis = frame(t * 100, [[10, 10, 60, 200], [300, 10, 350, 200]], [PERSON, PERSON], [7, -1])
        state = recognise(state, analysis)
        assert analysis.faces.tracker_id.tolist() == finder.calls[-1]
    # track 7 is read twice, then left alone; the unconfirmed person (-1) is tried every frame
    assert finder.calls == [[7, -1], [7, -1], [-1], [-1], [-1]]
    assert state["faces"]["7"] == {"attempts": 2, "readings": 2, "last_ms": 100}


def test_retry_interval_and_attempt_cap_use_event_time():
    finder = FaceFinder()
    empty = lambda image, persons: Detections(class_names=("face",))  # never finds a face
    recognise = TrackRecognition(lambda i, p: (finder(i, p), empty(i, p))[1], None,
                                 RecognitionPolicy(max_attempts=2, retry_ms=300))
    state = None
    for t in (0, 100, 200, 300, 600, 900):
        state = pickle.loads(pickle.dumps(recognise(state, frame(t, [[0, 0, 50, 100]], [PERSON], [3]))))
    assert len(finder.calls) == 2  # at 0 and 300 ms; then the cap stops it
    assert state["faces"]["3"]["attempts"] == 2 and state["faces"]["3"]["readings"] == 0


def test_small_people_are_skipped_and_old_tracks_forgotten():
    finder = FaceFinder()
    recognise = TrackRecognition(finder, None, RecognitionPolicy(min_person_height_px=40, forget_after_ms=1000))
    state = recognise(None, frame(0, [[0, 0, 10, 20]], [PERSON], [1]))
    assert finder.calls == [] and state["faces"] == {}
    state = recognise(state, frame(0, [[0, 0, 50, 100]], [PERSON], [1]))
    state = recognise(state, frame(5000, [[0, 0, 50, 100]], [CAR], [2]))
    assert state["faces"] == {}


def test_plates_belong_to_the_vehicle_track_that_holds_them():
    def read(image, vehicles):
        return Detections(xyxy=[[120, 150, 160, 170]], confidence=[0.9], class_id=[0],
                          class_names=("licence_plate",),
                          data={"plate_text": np.array(["51F12345"], object), "vehicle_index": np.array([0])})  # row in `vehicles`
    analysis = frame(0, [[0, 0, 50, 100], [100, 50, 300, 200]], [PERSON, CAR], [1, 9])
    TrackRecognition(None, read)(None, analysis)
    assert analysis.plates.tracker_id.tolist() == [9]


def test_owner_rows_needs_most_of_the_inner_box_inside():
    outer = np.array([[0, 0, 100, 100], [200, 0, 300, 100]], np.float32)
    inner = np.array([[10, 10, 20, 20], [95, 10, 115, 20], [250, 50, 260, 60]], np.float32)
    assert owner_rows(inner, outer).tolist() == [0, -1, 1]


def test_a_vehicle_track_gets_one_fused_plate_read_and_one_store_row():
    """Three frames of one vehicle read 51F-123.45, 51F-128.45, 51E-123.45: every frame after
    the first carries the track's vote, and the store keeps one row for the track."""
    from camflow.services.store import AnalystStore
    from camflow.transforms.detections import analysis_record
    from camflow.transforms.recognition import RecognitionPolicy, TrackRecognition

    reads = iter([("51F12345", "0.95,0.9,0.9,0.9,0.9,0.9,0.9,0.9"),
                  ("51F12845", "0.95,0.9,0.9,0.9,0.9,0.4,0.9,0.9"),
                  ("51E12345", "0.95,0.9,0.3,0.9,0.9,0.9,0.9,0.9")])

    def read_plates(image, vehicles):
        text, conf = next(reads)
        return Detections(xyxy=[[10, 10, 60, 40]], confidence=[0.9], class_id=[0],
                          class_names=("licence_plate",),
                          data={"plate_text": np.array([text], dtype=object),
                                "plate_display": np.array([text], dtype=object),
                                "vehicle_index": np.array([0], np.int32),
                                "char_conf": np.array([conf], dtype=object)})

    recognise = TrackRecognition(None, read_plates, RecognitionPolicy(retry_ms=0, readings_per_track=5))
    store, state = AnalystStore("duckdb:///:memory:"), None
    for i in range(3):
        analysis = FrameAnalysis(camera_id="gate", capture_ms=1000 * i, sequence=i, width=640,
                                 height=480, jpeg=b"", image=np.zeros((480, 640, 3), np.uint8))
        analysis.detections = Detections(xyxy=[[0, 0, 300, 200]], confidence=[0.9], class_id=[2],
                                         tracker_id=[7])
        state = recognise(state, analysis)
        store.upsert_analysis(analysis_record(analysis, processed_ms=1000 * i))
    assert list(analysis.plates.data["plate_read"]) == ["51E12345"]
    assert list(analysis.plates.data["plate_text"]) == ["51F12345"]
    assert store.query("SELECT track_id, plate_text, reads, first_ms, last_ms FROM vehicle_plates") == [
        (7, "51F12345", 3, 0, 2000)]
