"""Packaging: pyproject.toml declares what the code imports, in step with requirements.txt,
the version is written once, and the command line keeps its exit-status promise."""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _requirements() -> set[str]:
    lines = (line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines())
    return {_name(line) for line in lines if line}


def test_requirements_txt_names_exactly_the_declared_dependencies():
    declared = {_name(r) for r in PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["dev"]}
    assert declared == _requirements()


def test_what_the_code_imports_is_declared():
    """Third-party imports of the package map to declared distributions (shapely and boto3
    were imported but not listed)."""
    declared = {_name(r) for r in PYPROJECT["dependencies"]}
    module_to_dist = {"cv2": "opencv-python-headless", "yaml": "pyyaml", "faiss": "faiss-cpu",
                      "dlib": "dlib-bin", "pyflink": "apache-flink", "jinja2": "jinja2",
                      "paho": "paho-mqtt", "psycopg": "psycopg", "confluent_kafka": "confluent-kafka",
                      "google": "protobuf", "multipart": "python-multipart"}
    for module in ("numpy", "cv2", "shapely", "boto3", "scipy", "onnxruntime", "onnx", "faiss",
                   "fastavro", "avro", "duckdb", "psycopg", "pydantic", "yaml", "tqdm", "requests",
                   "prometheus_client", "paho", "matplotlib", "jinja2", "fastapi", "uvicorn",
                   "itsdangerous", "pyflink", "confluent_kafka", "dlib", "motmetrics", "av"):
        dist = module_to_dist.get(module, module).lower().replace("_", "-")
        assert dist in declared, f"{module} ({dist}) is imported but not a dependency"


def test_the_version_is_written_once_and_printed():
    import camflow
    from camflow.commands import main
    assert PYPROJECT["dynamic"] == ["version"] and "version" not in PYPROJECT
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", camflow.__version__)


def test_usage_and_config_errors_exit_2_runtime_failures_1(tmp_path, capsys):
    from camflow.commands import main
    with pytest.raises(SystemExit) as stopped:  # argparse: unknown argument
        main(["status", "--no-such-option"])
    assert stopped.value.code == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka: {topics: {partitions: 0}}\n")
    assert main(["topics", "apply", "--config", str(bad)]) == 2  # invalid config
    assert main(["topics", "apply", "--config", str(tmp_path / "missing.yaml")]) == 2
    with pytest.raises(SystemExit) as stopped:  # a usage error a command finds
        main(["job", "submit", "--from-checkpoint", "/x", "--from-savepoint", "/y"])
    assert stopped.value.code == 2
    with pytest.raises(SystemExit) as stopped:  # a command that stops with its message
        main(["ingest", "--camera", "c", "--source", "/no/such.avi", "--max-in-flight", "0"])
    assert stopped.value.code == 2
    assert main(["schemas", "check", "--config", str(_config(tmp_path, ""))]) == 2  # no registry
    gone = _config(tmp_path, "kafka: {bootstrap_servers: '127.0.0.1:1'}\n"
                             "job: {rest_url: 'http://127.0.0.1:1'}\n")
    with pytest.raises(SystemExit) as stopped:  # no cluster answers: a runtime failure
        main(["job", "savepoint", "--config", str(gone), "--dir", str(tmp_path)])
    assert stopped.value.code == 1
    assert "127.0.0.1:1" in capsys.readouterr().err


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"c{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(text or "deployment: x\n")
    return path


def test_commands_find_the_config_and_say_which(tmp_path, monkeypatch, capsys):
    from camflow.commands import common
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(common.CONFIG_ENV, raising=False)
    assert common.find_config(None) == (common.DEMO_CONFIG, common.find_config(None)[1])
    (tmp_path / "camflow.yaml").write_text("deployment: local\n")
    assert common.find_config(None)[0] == Path("camflow.yaml")
    env = tmp_path / "env.yaml"
    env.write_text("deployment: from-env\nstore: {url: 'duckdb:///var/x.duckdb'}\n")
    monkeypatch.setenv(common.CONFIG_ENV, str(env))
    assert common.find_config(None)[0] == env
    assert common.find_config("given.yaml")[0] == Path("given.yaml")

    class Args:
        config = None
    assert common._config(Args()).deployment == "from-env"
    said = capsys.readouterr().err
    assert str(env) in said and "$CAMFLOW_CONFIG" in said
    assert f"duckdb:///{tmp_path}/var/x.duckdb" in said


def test_python_m_camflow_version():
    import subprocess
    done = subprocess.run([sys.executable, "-m", "camflow", "--version"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("camflow ")
