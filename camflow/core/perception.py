"""The configured perception models, found in the verified model cache and handed to
``transforms/`` as ready objects.

``transforms/`` never looks models up: everything that needs a detector, a face model or a
plate reader gets it here, so the job, the evaluations, enrolment and the benches load the same
files the same way. Models are built before anything runs (``camflow models build``); a missing
or altered file is an error that says so, never a download inside a task.
"""
from __future__ import annotations

from pathlib import Path

from camflow.models import registry
from camflow.transforms.detections import VEHICLE_CLASSES

# Manifest names (models/manifest.yaml) of the face and plate stages.
FACE_DETECTOR_MODEL = "centerface"
FACE_LANDMARK_MODEL = "dlib-shape5"
FACE_EMBEDDING_MODEL = "dlib-face-resnet"
POSE_MODEL = "movenet-multipose"
APPEARANCE_MODEL = "mobilenetv2-appearance"


class ModelMissing(RuntimeError):
    pass


def model_path(name: str) -> Path:
    """The verified file of a manifest model."""
    if not registry.verify(name):
        raise ModelMissing(f"model {name!r} is missing or fails its sha256 check in "
                           f"{registry.models_dir()}: run `camflow models build` first")
    return registry.model_path(name)


def object_detector(name: str, *, threads: int = 1, classes=None, score_threshold=None,
                    iou_threshold=None, input_size=None, providers=None):
    from camflow.transforms.detect import ObjectDetector
    path = model_path(name)
    return ObjectDetector(registry.get(name), path, threads=threads, classes=classes,
                          score_threshold=score_threshold, iou_threshold=iou_threshold,
                          input_size=input_size, providers=providers)


def configured_detector(detector):
    """The object detector as ``job.detector`` (``camflow.config.Detector``) sets it."""
    return object_detector(detector.model, threads=detector.threads, classes=detector.classes,
                           score_threshold=detector.score_threshold,
                           iou_threshold=detector.nms_iou, input_size=detector.input_size)


def vehicle_detector(name: str = "centernet-coco", threads: int = 1):
    return object_detector(name, threads=threads, classes=sorted(VEHICLE_CLASSES))


def face_detector(threads: int = 0, **kwargs):
    from camflow.transforms.faces import FaceDetector
    return FaceDetector(model_path(FACE_DETECTOR_MODEL), threads=threads, **kwargs)


def face_embedder(**kwargs):
    from camflow.transforms.faces import FaceEmbedder
    return FaceEmbedder(model_path(FACE_EMBEDDING_MODEL), model_path(FACE_LANDMARK_MODEL),
                        **kwargs)


def appearance_embedder(threads: int = 1):
    """``embedder(image, xyxy) -> [N, 1280]`` unit vectors of whole person/vehicle crops."""
    from camflow.transforms.appearance import AppearanceEmbedder
    from camflow.transforms.onnx_runtime import open_session
    return AppearanceEmbedder(open_session(model_path(APPEARANCE_MODEL), threads=threads))


def configured_appearances(config):
    """Per-track appearance records as ``job.appearance`` sets them (None when off); the
    embedding model is loaded only when the config asks for it."""
    from camflow.transforms.appearance import TrackAppearances
    settings = config.job.appearance
    if not settings.enabled:
        return None
    embedder = appearance_embedder(config.job.detector.threads) if settings.embedding else None
    return TrackAppearances(settings, embedder, APPEARANCE_MODEL if embedder else None)


def person_down(threads: int = 1):
    """``person_down(image, box, search=False) -> Posture | None``: the pose model on a person's
    crop, for the fall rule."""
    from camflow.transforms.pose import PersonDown, PoseEstimator
    return PersonDown(PoseEstimator(model_path(POSE_MODEL), threads=threads))


def configured_person_down(config):
    """The pose check when any camera's scene raises falls (None otherwise: no model loaded)."""
    from camflow.transforms.scene import Scene
    scenes = [c.scene or Scene() for c in config.cameras] + [Scene()]  # unknown cameras too
    if not any(scene.fall.enabled for scene in scenes):
        return None
    return person_down(config.job.detector.threads)


def configured_recognition(config):
    """Faces (CenterFace + dlib embeddings) and plates, as ``job.recognition`` sets them
    (None when both are off on every camera)."""
    from camflow.transforms.recognition import TrackRecognition
    policies = [config.job.recognition] + [camera_policy(config, c) for c in config.cameras]
    if not any(p.faces or p.plates for p in policies):
        return None
    threads = config.job.detector.threads
    find_faces = read_plates = None
    if any(p.faces for p in policies):
        face_finder, embedder = face_detector(threads=threads), face_embedder()
        min_face_px = config.job.recognition.min_face_px

        def detect_and_embed(image, persons):
            faces = face_finder.detect_in_persons(image, persons)
            faces = faces[(faces.xyxy[:, 3] - faces.xyxy[:, 1]) >= min_face_px]
            return embedder.embed(image, faces) if len(faces) else faces
        find_faces = detect_and_embed
    if any(p.plates for p in policies):
        read_plates = plate_reader(threads=threads)
    return TrackRecognition(find_faces, read_plates, config.job.recognition)


def plate_recogniser(threads: int = 1, **kwargs):
    """Plate finding and reading on the verified model files, each on ``threads`` ONNX Runtime
    threads (the job: ``job.detector.threads``; they used every core before)."""
    from camflow.transforms.plates import PLATE_MODELS, PlateRecogniser
    return PlateRecogniser.from_paths(
        **{role: model_path(name) for role, name in PLATE_MODELS.items()}, threads=threads,
        **kwargs)


def plate_reader(threads: int = 1):
    """``read(image, vehicles) -> Detections`` of plates (``data["plate_text"]``)."""
    return plate_recogniser(threads).read_plate


def with_overrides(settings, overrides: dict | None):
    """``settings`` (a config model) with some fields replaced, validated again."""
    if not overrides:
        return settings
    return type(settings).model_validate({**settings.model_dump(), **overrides})


def camera_policy(config, camera):
    """A camera's recognition policy: the job's with the camera's overrides."""
    return with_overrides(config.job.recognition, camera.recognition)


def camera_settings(config):
    """``settings_for(camera_id) -> CameraSettings``: the job's settings with each camera's
    overrides (detector score, motion gate, recognition), built once."""
    from camflow.transforms.behaviour import SceneBehaviour
    from camflow.transforms.camera_analysis import CameraSettings
    from camflow.transforms.motion import MotionGate
    from camflow.transforms.tracking import IouTracker

    job = config.job
    tracker = IouTracker(job.tracking)
    job_score = job_score_threshold(config)
    default = CameraSettings(MotionGate(job.motion_gate), tracker, job.recognition,
                             SceneBehaviour(None), job_score)  # zone-free rules: unknown cameras
    settings = {}
    for camera in config.cameras:
        gate = (MotionGate(with_overrides(job.motion_gate, camera.motion_gate))
                if camera.motion_gate else default.motion_gate)
        score = (camera.detector.score_threshold if camera.detector
                 and camera.detector.score_threshold is not None else job_score)
        settings[camera.id] = CameraSettings(gate, tracker, camera_policy(config, camera),
                                             SceneBehaviour(camera.scene), score)
    return lambda camera_id: settings.get(camera_id, default)


def job_score_threshold(config) -> float:
    """The detection score threshold of cameras without their own: the job's, else the model
    manifest's."""
    detector = config.job.detector
    if detector.score_threshold is not None:
        return detector.score_threshold
    return registry.get(detector.model).thresholds.score


def detector_for_cameras(config):
    """The job's detector, run at the lowest score any camera asks for (each camera then keeps
    the detections at or above its own threshold)."""
    lowest = min([job_score_threshold(config)] + [
        c.detector.score_threshold for c in config.cameras
        if c.detector and c.detector.score_threshold is not None])
    return configured_detector(config.job.detector.model_copy(update={"score_threshold": lowest}))


def camera_analysis(config):
    """The job's per-camera step with its models loaded and warmed up."""
    from camflow.transforms.anomaly import CameraLiveness
    from camflow.transforms.camera_analysis import CameraAnalysis
    analysis = CameraAnalysis(detector_for_cameras(config), configured_recognition(config),
                              camera_settings(config), CameraLiveness(config.job.liveness),
                              configured_person_down(config), configured_appearances(config))
    warm_up(analysis.detector, analysis.recognition, analysis.person_down)
    return analysis


def warm_up(detector, recognition, person_down=None) -> None:
    """Every model once on a blank frame at start: a first inference allocates ONNX Runtime's
    buffers and the plate reader loads lazily, so without this the first frames after a
    (re)start wait seconds each."""
    import numpy as np

    from camflow.transforms.detections import Detections
    blank = np.full((540, 960, 3), 127, np.uint8)
    detector(blank)
    if person_down is not None:
        person_down(blank, (380, 40, 580, 520))
    if recognition is None:
        return
    if recognition.find_faces is not None:
        recognition.find_faces(blank, Detections(xyxy=[[380, 40, 580, 520]], confidence=[0.9],
                                                 class_id=[0]))
    if recognition.read_plates is not None:
        recognition.read_plates(blank, Detections(xyxy=[[200, 200, 760, 500]], confidence=[0.9],
                                                  class_id=[2]))
