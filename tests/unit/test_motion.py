import pickle

import cv2
import numpy as np
import pytest

from camflow.transforms.detections import Detections
from camflow.transforms.motion import MotionGate, MotionGateConfig, gated_detections


def scene(person_x: int = 100, noise_seed: int | None = None) -> np.ndarray:
    """A textured 'street' with one dark 'person' box at ``person_x``."""
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(60, 200, (36, 64, 3), dtype=np.uint8), (640, 360),
                       interpolation=cv2.INTER_CUBIC)
    cv2.rectangle(image, (person_x, 150), (person_x + 40, 300), (20, 20, 20), -1)
    if noise_seed is not None:  # sensor noise, then a JPEG round trip as the sampler does
        noise = np.random.default_rng(noise_seed).normal(0, 4, image.shape)
        image = np.clip(image + noise, 0, 255).astype(np.uint8)
        image = cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1], 1)
    return image


PERSON = Detections(xyxy=[[100, 150, 140, 300]], confidence=[0.8], class_id=[0])


def run(gate, state, image, now_ms, detections=PERSON):
    found, state, decision = gated_detections(gate, state, image, now_ms, lambda _: detections,
                                              detections.class_names)
    return decision, state, found


def test_first_frame_runs_the_detector_and_a_still_frame_reuses_its_detections():
    gate = MotionGate()
    first, state, _ = run(gate, None, scene(noise_seed=1), 0)
    assert first.detect and first.reason == "first"
    still, state, reused = run(gate, state, scene(noise_seed=2), 1000)
    assert not still.detect and still.reason == "still"
    assert still.changed_fraction < MotionGateConfig().min_changed_fraction
    np.testing.assert_allclose(reused.xyxy, PERSON.xyxy)
    assert reused.class_name.tolist() == ["person"] and (reused.tracker_id == -1).all()


def test_a_moving_person_runs_the_detector():
    gate = MotionGate()
    _, state, _ = run(gate, None, scene(100), 0)
    moved = gate.decide(state, scene(160), 1000)
    assert moved.detect and moved.reason == "motion" and moved.changed_fraction > 0.01


def test_slow_drift_adds_up_against_the_frame_the_detector_last_saw():
    gate = MotionGate()
    _, state, _ = run(gate, None, scene(100), 0)
    reasons = []
    for step in range(1, 30):  # 2 px per frame: each step alone is below the threshold
        decision, state, _ = run(gate, state, scene(100 + 2 * step), step * 100)
        reasons.append(decision.reason)
    assert "motion" in reasons and reasons[0] == "still"


def test_the_detector_runs_again_after_max_reuse_even_when_still():
    gate = MotionGate(MotionGateConfig(max_reuse_ms=3000))
    _, state, _ = run(gate, None, scene(), 0)
    assert run(gate, state, scene(), 2999)[0].reason == "still"
    assert run(gate, state, scene(), 3000)[0].reason == "stale"
    # a clock going backwards (a replayed backlog) also forces a fresh detection
    _, state, _ = run(gate, None, scene(), 10_000)
    assert run(gate, state, scene(), 9_000)[0].detect


def test_resolution_change_and_disabled_gate_always_detect():
    gate = MotionGate()
    _, state, _ = run(gate, None, scene(), 0)
    assert run(gate, state, cv2.resize(scene(), (320, 240)), 100)[0].reason == "resized"
    off = MotionGate(MotionGateConfig(enabled=False))
    assert all(off.decide(None, scene(), t).detect for t in (0, 100, 200))


def test_state_is_plain_and_survives_a_checkpoint_round_trip():
    gate = MotionGate()
    _, state, _ = run(gate, None, scene(noise_seed=3), 0)
    restored = pickle.loads(pickle.dumps(state))
    assert set(restored) == {"reference", "reference_shape", "detected_ms", "detections"}
    assert len(restored["reference"]) < 10_000  # a thumbnail, not a frame
    assert not gate.decide(restored, scene(noise_seed=4), 500).detect


@pytest.mark.parametrize("image", [np.zeros((1, 1, 3), np.uint8), np.zeros((720, 1280), np.uint8)])
def test_odd_images_are_handled(image):
    decision = MotionGate().decide(None, image, 0)
    assert decision.detect
