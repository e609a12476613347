"""The job's per-camera step (``transforms.camera_analysis``) without Flink: state in, state
out, as the ``analyse`` operator drives it; and the per-camera settings built from a config."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from camflow.config import Config
from camflow.transforms.anomaly import CameraLiveness, LivenessConfig
from camflow.transforms.behaviour import SceneBehaviour
from camflow.transforms.camera_analysis import CameraAnalysis, CameraSettings, CameraState
from camflow.transforms.detections import Detections, FrameAnalysis
from camflow.transforms.motion import REUSED, MotionGate, MotionGateConfig
from camflow.transforms.recognition import RecognitionPolicy
from camflow.transforms.tracking import IouTracker, TrackerConfig

T0 = 1_700_000_000_000


class WalkingPerson:
    """A detector stand-in: one person walking right 8 px per call, plus a faint one."""

    name, version, class_names = "stand-in", "stand-in@1", ("person",)

    def __init__(self):
        self.calls = 0

    def __call__(self, image):
        x = 100 + 8 * self.calls
        self.calls += 1
        return Detections(xyxy=[[x, 100, x + 40, 200], [400, 100, 440, 200]],
                          confidence=[0.9, 0.3], class_id=[0, 0], class_names=self.class_names)


def frame(i: int, camera: str = "quay", still: bool = False) -> FrameAnalysis:
    image = np.zeros((240, 320, 3), np.uint8)
    if not still:
        image[:, (i * 13) % 320] = 255  # something changes in view
    return FrameAnalysis(camera_id=camera, capture_ms=T0 + 250 * i, sequence=i, width=320,
                         height=240, jpeg=b"", image=image)


def step_for(detector, score_threshold=None, offline_after_ms=5_000) -> CameraAnalysis:
    settings = CameraSettings(MotionGate(MotionGateConfig()), IouTracker(TrackerConfig()),
                              RecognitionPolicy(faces=False, plates=False), SceneBehaviour(None),
                              score_threshold)
    return CameraAnalysis(detector, None, lambda camera_id: settings,
                          CameraLiveness(LivenessConfig(offline_after_ms=offline_after_ms)))


def test_a_walking_person_keeps_one_track_through_pickled_state():
    step, state = step_for(WalkingPerson()), CameraState()
    ids = []
    for i in range(6):
        result = step.frame(state, frame(i), watermark_ms=T0 + 250 * i)
        state = pickle.loads(pickle.dumps(result.state))  # as Flink's keyed state would
        tracked = result.analysis.detections
        ids.append(int(tracked.tracker_id[0]) if len(tracked) else -1)
    confirmed = [t for t in ids if t >= 0]
    assert confirmed and len(set(confirmed)) == 1, ids
    assert result.next_check_ms == T0 + 250 * 5 + 5_000


def test_a_camera_threshold_drops_weak_detections():
    loose = step_for(WalkingPerson()).frame(CameraState(), frame(0), None).analysis
    strict = step_for(WalkingPerson(), score_threshold=0.5).frame(CameraState(), frame(0), None)
    assert len(loose.detections) == 2 and len(strict.analysis.detections) == 1


def test_a_still_frame_reuses_the_last_detections():
    detector = WalkingPerson()
    step = step_for(detector)
    first = step.frame(CameraState(), frame(0, still=True), None)
    second = step.frame(first.state, frame(1, still=True), None)
    assert detector.calls == 1
    assert second.analysis.model_versions.get(REUSED[0]) == REUSED[1]


def test_silence_raises_camera_offline_once_the_watermark_passes_the_deadline():
    step = step_for(WalkingPerson(), offline_after_ms=5_000)
    seen = step.frame(CameraState(), frame(0), watermark_ms=T0)
    early = step.silence(seen.state, "quay", T0 + 4_000)
    assert early.alerts == []
    late = step.silence(early.state, "quay", T0 + 6_000)
    assert [a["type"] for a in late.alerts] == ["camera_offline"]


def test_camera_overrides_apply_only_to_their_camera(tmp_path):
    from camflow.core import perception

    config = Config.model_validate({
        "cameras": [
            {"id": "night-quay", "detector": {"score_threshold": 0.6},
             "motion_gate": {"min_changed_fraction": 0.02}, "recognition": {"plates": False}},
            {"id": "market"}]})
    settings_for = perception.camera_settings(config)
    quay, market = settings_for("night-quay"), settings_for("market")
    assert quay.score_threshold == 0.6
    assert market.score_threshold == perception.job_score_threshold(config)
    assert quay.motion_gate.config.min_changed_fraction == 0.02
    assert market.motion_gate.config.min_changed_fraction == config.job.motion_gate.min_changed_fraction
    assert quay.recognition.plates is False and market.recognition.plates is True
    assert settings_for("unknown").scene.scene.zones == []


def test_an_override_outside_its_bounds_fails_at_load():
    with pytest.raises(ValueError):
        Config.model_validate({"cameras": [{"id": "c", "recognition": {"max_attempts": 0}}]})
    with pytest.raises(ValueError):
        Config.model_validate({"cameras": [{"id": "c", "motion_gate": {"no_such_field": 1}}]})
