"""GPU extras (requirements-gpu.txt, infra/setup_env.sh's GPU block) leave a CPU-only machine
as it is: the block installs nothing without nvidia-smi, and the models run on the CPU."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]


def _requirements(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def test_gpu_requirements_pin_the_cuda_builds_of_onnxruntime_and_faiss():
    requirements = _requirements(REPO / "requirements-gpu.txt")
    by_name = {r.name.lower(): r for r in requirements}
    assert set(by_name) == {"onnxruntime-gpu", "faiss-gpu"}
    for r in requirements:
        assert len(r.specifier) == 1 and next(iter(r.specifier)).operator == "==", r
    assert by_name["onnxruntime-gpu"].extras == {"cuda", "cudnn"}  # CUDA/cuDNN as wheels
    # the same FAISS as the CPU build (one index format, one API)
    assert next(iter(by_name["faiss-gpu"].specifier)).version == _pins(REPO / "constraints.txt")["faiss-cpu"]
    cpu = {r.name.lower() for r in _requirements(REPO / "requirements.txt")}
    assert {"onnxruntime", "faiss-cpu"} <= cpu and not set(by_name) & cpu


def _gpu_block() -> str:
    text = (REPO / "infra" / "setup_env.sh").read_text()
    start, end = text.index("# --- GPU extras"), text.index("# --- jars")
    return text[start:end]


def _run_block(tmp_path: Path, env: dict[str, str], stamp: bool = False) -> list[str]:
    """The setup script's GPU block against a fake venv whose python logs its arguments."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    calls = tmp_path / "calls"
    fake = venv / "bin" / "python"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    fake.chmod(0o755)
    (venv / ".camflow-setup.stamp").write_text("main-key\n")
    if stamp:
        (venv / ".camflow-gpu.stamp").write_text("old\n")
    script = tmp_path / "block.sh"
    script.write_text("set -euo pipefail\n"
                      f'REPO={REPO}; VENV={venv}; STAMP="$VENV/.camflow-setup.stamp"\n'
                      'log() { printf "[setup_env] %s\\n" "$*" >&2; }\n' + _gpu_block())
    nobin = tmp_path / "path"  # a PATH with sh and friends but no nvidia-smi
    nobin.mkdir(exist_ok=True)
    for tool in ("cat", "sha256sum", "cut", "rm", "printf", "sh"):
        target = next((Path(d) / tool for d in ("/usr/bin", "/bin") if (Path(d) / tool).exists()), None)
        if target is not None and not (nobin / tool).exists():
            (nobin / tool).symlink_to(target)
    done = subprocess.run(["/bin/bash", str(script)], env={"PATH": str(nobin), **env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return calls.read_text().splitlines() if calls.exists() else []


def test_setup_installs_nothing_more_without_nvidia_smi(tmp_path):
    assert _run_block(tmp_path, {}) == []
    assert _run_block(tmp_path, {"CAMFLOW_GPU": "0"}) == []


def test_setup_swaps_in_the_gpu_builds_when_asked_and_back_without_a_gpu(tmp_path):
    calls = _run_block(tmp_path, {"CAMFLOW_GPU": "1"})
    assert calls[0].startswith("-m pip uninstall") and "onnxruntime" in calls[0] and "faiss-cpu" in calls[0]
    assert calls[1].startswith("-m pip install") and "requirements-gpu.txt" in calls[1]
    assert (tmp_path / "venv" / ".camflow-gpu.stamp").is_file()
    (tmp_path / "calls").unlink()
    assert _run_block(tmp_path, {"CAMFLOW_GPU": "1"}) == []  # stamp current: nothing to do
    calls = _run_block(tmp_path, {})  # the GPU is gone: the CPU builds come back
    assert calls[-1].startswith("-m pip install") and "onnxruntime faiss-cpu" in calls[-1]
    assert not (tmp_path / "venv" / ".camflow-gpu.stamp").exists()


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def test_models_run_on_the_cpu_here_and_fall_back_when_cuda_cannot_start(tiny_model, monkeypatch):
    import onnxruntime as ort

    from camflow.transforms.onnx_runtime import open_session
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert open_session(tiny_model).get_providers() == ["CPUExecutionProvider"]
    real = ort.InferenceSession
    tried = []

    def session(path, sess_options=None, providers=None):
        tried.append(list(providers))
        if "CUDAExecutionProvider" in providers:
            raise RuntimeError("libcublasLt.so.12: cannot open shared object file")
        return real(path, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", session)
    assert open_session(tiny_model).get_providers() == ["CPUExecutionProvider"]
    assert tried == [["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]]
