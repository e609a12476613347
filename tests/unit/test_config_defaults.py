"""Each setting has one default, owned by its domain's model: what the job actually runs with
where the YAML is silent must be exactly those defaults (no copy of a default elsewhere)."""
from __future__ import annotations

import json
from pathlib import Path

from camflow.config import Config, load_config
from camflow.transforms.anomaly import AnomalyConfig, LivenessConfig
from camflow.transforms.detect import DetectorConfig
from camflow.transforms.motion import MotionGateConfig
from camflow.transforms.recognition import RecognitionPolicy
from camflow.transforms.tracking import TrackerConfig
from camflow.transforms.watchlist import FaceMatchDecider, MatchingConfig, PlateMatchDecider

REPO = Path(__file__).resolve().parents[2]


def test_the_job_runs_the_domain_defaults_where_the_yaml_is_silent():
    from camflow.core import perception
    # demo.yaml sets cameras, windows, crowd limits, the detector's threads and anomaly slots
    for config in (Config(), load_config(REPO / "infra" / "config" / "demo.yaml")):
        job = config.job
        assert job.tracking == TrackerConfig()
        assert job.motion_gate == MotionGateConfig()
        assert job.recognition == RecognitionPolicy()
        assert job.watchlist == MatchingConfig()
        silent = DetectorConfig.model_fields.keys() - job.detector.model_fields_set
        assert {k: getattr(job.detector, k) for k in silent} == \
            {k: getattr(DetectorConfig(), k) for k in silent}
        if config.cameras:  # demo.yaml learns its baseline per hour of the day
            assert job.anomaly.model_fields_set == {"slots", "warmup_windows"}
        else:
            assert job.anomaly == AnomalyConfig()
        assert job.liveness == LivenessConfig()
        settings = perception.camera_settings(config)(
            config.cameras[0].id if config.cameras else "any-camera")
        assert settings.tracker.config == TrackerConfig()
        assert settings.motion_gate.config == MotionGateConfig()
        assert settings.recognition == RecognitionPolicy()
        faces, plates = FaceMatchDecider(job.watchlist), PlateMatchDecider(job.watchlist)
        assert faces.threshold == MatchingConfig().face_threshold
        assert faces.confirmations == MatchingConfig().face_confirmations
        assert plates.confirmations == MatchingConfig().plate_confirmations


def test_the_published_json_schema_is_current():
    schema = json.loads((REPO / "infra" / "config" / "camflow.schema.json").read_text())
    assert schema == json.loads(json.dumps(Config.model_json_schema())), \
        "run: camflow config schema --out infra/config/camflow.schema.json"


def test_every_config_field_says_what_it_is():
    """Bounds and a one-line description per field: the schema is the reference."""
    missing = []

    def walk(model, path):
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if not field.description and not _is_model(annotation):
                missing.append(f"{path}.{name}")
            if _is_model(annotation):
                walk(annotation, f"{path}.{name}")

    walk(Config, "config")
    assert not missing, missing


def _is_model(annotation) -> bool:
    from pydantic import BaseModel
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def test_the_future_skew_allowed_never_exceeds_the_out_of_orderness():
    import pytest
    assert Config().job.limits.max_future_skew_ms <= Config().job.out_of_orderness_ms
    tight = Config.model_validate({"job": {"out_of_orderness_ms": 1000}})
    assert tight.job.limits.max_future_skew_ms == 1000
    with pytest.raises(ValueError, match="max_future_skew_ms"):
        Config.model_validate({"job": {"out_of_orderness_ms": 1000,
                                       "limits": {"max_future_skew_ms": 2000}}})
