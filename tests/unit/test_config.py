"""The deployment YAML: shipped examples validate, mistakes get errors that name the field."""
from pathlib import Path

import pytest

from camflow.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def test_phu_quoc_example_has_41_unique_cameras_with_sites():
    config = load_config(REPO / "infra/config/phu-quoc.example.yaml")
    assert len(config.cameras) == 41
    assert all(c.location and c.location.lat and c.location.site for c in config.cameras)
    kinds = {c.location.kind for c in config.cameras}
    assert {"port", "airport", "market", "square", "gateway"} <= kinds


def test_demo_config_has_the_walkway_camera():
    config = load_config(REPO / "infra/config/demo.yaml")
    assert config.camera("walkway").crowd_limit == 6


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,where", [
    ("cameras: [{id: 'Bad Id'}]", "cameras.0.id"),
    ("cameras: [{id: a, fps: 0}]", "cameras.0.fps"),
    ("cameras: [{id: a}, {id: a}]", "appears twice"),
    ("kafka: {bootstrap_server: x}", "kafka.bootstrap_server"),  # typo: extra field refused
    ("job: {window_ms: 10}", "job.window_ms"),
    ("- just a list", "top level must be a mapping"),
    ("cameras: [", "cannot read YAML"),
])
def test_mistakes_name_the_field(tmp_path, text, where):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert where in str(err.value)


def test_password_comes_from_the_environment_never_the_yaml(tmp_path, monkeypatch):
    path = write(tmp_path, "kafka: {security: {protocol: SASL_SSL, sasl_mechanism: PLAIN, "
                           "username: u, password_env: CAMFLOW_TEST_PW}}")
    config = load_config(path)
    monkeypatch.setenv("CAMFLOW_TEST_PW", "s3cret")
    conf = config.kafka.client_conf()
    assert conf["sasl.password"] == "s3cret" and conf["security.protocol"] == "SASL_SSL"
    assert "s3cret" in config.kafka.java_client_properties()["sasl.jaas.config"]
    assert "s3cret" not in path.read_text()
    monkeypatch.delenv("CAMFLOW_TEST_PW")
    with pytest.raises(RuntimeError, match="CAMFLOW_TEST_PW"):
        config.kafka.client_conf()
