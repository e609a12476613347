"""One camera's analysis of one frame, as a pure step: the job's keyed ``analyse`` operator only
gets this camera's state from Flink, calls ``CameraAnalysis.frame`` and puts the state back.

    decoded frame -> detect (motion-gated) -> track -> read faces/plates -> scene rules
                  -> track appearances -> liveness   => analysis, alerts, appearances, state

The state is a ``CameraState`` of plain values (dicts of primitives) so that Flink can pickle
it into checkpoints and savepoints; each part is stored in its own named Flink state, the same
names as before this step was pulled out of the operator, so older savepoints restore.

Settings are per camera (``CameraSettings``): the deployment's job-wide defaults with the
camera's own overrides applied (a night quay is not a market), built once per operator.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from camflow.transforms.anomaly import CameraLiveness
from camflow.transforms.appearance import TrackAppearances
from camflow.transforms.behaviour import SceneBehaviour
from camflow.transforms.detections import FrameAnalysis
from camflow.transforms.motion import REUSED, MotionGate, gated_detections
from camflow.transforms.recognition import RecognitionPolicy, TrackRecognition
from camflow.transforms.tracking import IouTracker, TrackerState


@dataclass
class CameraSettings:
    """What one camera runs with: its motion gate, tracker, recognition policy, scene rules,
    and the detector score below which its detections are dropped (None: the detector's)."""

    motion_gate: MotionGate
    tracker: IouTracker
    recognition: RecognitionPolicy
    scene: SceneBehaviour
    score_threshold: float | None = None


@dataclass
class CameraState:
    """Everything one camera remembers between frames (each a plain value or None):
    ``motion`` -- the motion gate's reference thumbnail and last detections;
    ``tracker`` -- the tracker's ``TrackerState`` as a dict;
    ``recognition`` -- per track, how often faces/plates were looked for;
    ``behaviour`` -- per track and zone, what the scene rules remember;
    ``liveness`` -- last frame time and whether the camera is offline;
    ``appearance`` -- per track, its best crop so far (``TrackAppearances``)."""

    motion: Any = None
    tracker: Any = None
    recognition: Any = None
    behaviour: Any = None
    liveness: Any = None
    appearance: Any = None


@dataclass
class CameraStep:
    """What one step produced: the enriched analysis (None for a silence check), its alerts,
    its appearance records, the camera's new state, and when liveness wants to be asked again
    if no frame comes."""

    analysis: FrameAnalysis | None
    state: CameraState
    alerts: list[dict] = field(default_factory=list)
    next_check_ms: int | None = None
    appearances: list[dict] = field(default_factory=list)


class CameraAnalysis:
    """The per-camera step of the job. ``detector(image) -> Detections`` (with ``name``,
    ``version`` and ``class_names``) and ``recognition`` (faces and plates, or None) are the
    models, loaded once, with ``person_down`` (the pose check of the fall rule, or None) and
    ``appearances`` (per-track appearance records, or None);
    ``settings_for(camera_id)`` gives a camera's ``CameraSettings``."""

    def __init__(self, detector, recognition: TrackRecognition | None,
                 settings_for: Callable[[str], CameraSettings], liveness: CameraLiveness,
                 person_down: Callable | None = None,
                 appearances: TrackAppearances | None = None):
        self.detector = detector
        self.recognition = recognition
        self.settings_for = settings_for
        self.liveness = liveness
        self.person_down = person_down  # the pose check of the fall rule (None: box only)
        self.appearances = appearances

    def frame(self, state: CameraState, analysis: FrameAnalysis,
              watermark_ms: int | None) -> CameraStep:
        """A decoded frame (``analysis.image``) through every stage. ``watermark_ms`` is the
        operator's current event-time watermark (None: do not check liveness)."""
        settings = self.settings_for(analysis.camera_id)
        state = CameraState(**vars(state))
        self._detect(settings, state, analysis)
        tracked = settings.tracker.update(
            TrackerState.from_dict(state.tracker) if state.tracker else TrackerState(),
            analysis.detections, analysis.capture_ms, image=analysis.image)
        state.tracker = tracked.state.to_dict()
        analysis.detections = tracked.detections
        if self.recognition is not None:
            state.recognition = self.recognition(state.recognition, analysis,
                                                 settings.recognition)
        behaviour = settings.scene.step(state.behaviour, analysis, pose=self.person_down)
        state.behaviour = behaviour.state
        analysis.crossings = behaviour.extra["crossings"]
        step = CameraStep(analysis, state, list(behaviour.alerts))
        if self.appearances is not None:
            state.appearance, step.appearances = self.appearances(
                state.appearance, analysis.camera_id, analysis.capture_ms, analysis.image,
                analysis.detections)
        if watermark_ms is not None:
            self._check_liveness(step, analysis.camera_id, analysis.capture_ms, watermark_ms)
        return step

    def silence(self, state: CameraState, camera_id: str, watermark_ms: int) -> CameraStep:
        """No frame, but event time moved on: is the camera silent for too long?"""
        step = CameraStep(None, CameraState(**vars(state)))
        self._check_liveness(step, camera_id, None, watermark_ms)
        return step

    def _detect(self, settings: CameraSettings, state: CameraState,
                analysis: FrameAnalysis) -> None:
        detections, state.motion, gate = gated_detections(
            settings.motion_gate, state.motion, analysis.image, analysis.capture_ms,
            self.detector, self.detector.class_names)
        if settings.score_threshold is not None:
            detections = detections[detections.confidence >= settings.score_threshold]
        analysis.detections = detections
        analysis.model_versions[self.detector.name] = self.detector.version
        if not gate.detect:  # consumers can tell detections carried over from an earlier frame
            key, value = REUSED
            analysis.model_versions[key] = value

    def _check_liveness(self, step: CameraStep, camera_id: str, frame_ms: int | None,
                        watermark_ms: int) -> None:
        found = self.liveness.step(step.state.liveness, camera_id, frame_ms, watermark_ms)
        step.state.liveness = found.state
        step.next_check_ms = found.extra["next_check_ms"]
        step.alerts += found.alerts
