"""PyFlink helpers: configured execution environments and a local standalone cluster.

    python -m camflow.infra.flink up [--taskmanagers 2 --slots 2]   # JM + TMs from the pyflink package
    python -m camflow.infra.flink status
    python -m camflow.infra.flink down
    python -m camflow.infra.flink submit path/to/job.py [--parallelism N] [-- job args...]

The cluster uses the Flink distribution inside the installed ``pyflink`` package
(``flink_home()``), with a generated, writable ``FLINK_CONF_DIR`` under
``$CAMFLOW_VAR/flink/conf`` (default ``<repo>/var``) and logs/pids under
``$CAMFLOW_VAR/flink/{log,pid}``.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Iterable, Sequence

REPO = pathlib.Path(__file__).resolve().parent.parent
DEBIAN_JDK17 = "/usr/lib/jvm/java-17-openjdk-amd64"
DEFAULT_REST_PORT = 8081


# --------------------------------------------------------------------------- paths
def java_home() -> str:
    """JAVA_HOME for Flink: ``$JAVA_HOME`` if it has bin/java, else the Debian JDK 17 folder."""
    env = os.environ.get("JAVA_HOME")
    if env and os.access(os.path.join(env, "bin", "java"), os.X_OK):
        return env
    if os.access(os.path.join(DEBIAN_JDK17, "bin", "java"), os.X_OK):
        return DEBIAN_JDK17
    java = shutil.which("java")
    if java:
        return str(pathlib.Path(java).resolve().parent.parent)
    raise RuntimeError("no JDK found: apt-get install -y openjdk-17-jdk-headless")


def _set_java_env() -> str:
    jh = java_home()
    os.environ["JAVA_HOME"] = jh
    path = os.environ.get("PATH", "")
    jbin = os.path.join(jh, "bin")
    if jbin not in path.split(os.pathsep):
        os.environ["PATH"] = jbin + os.pathsep + path
    return jh


def flink_home() -> pathlib.Path:
    """The installed ``pyflink`` package folder (it holds bin/, lib/, opt/, conf/)."""
    import importlib.util

    spec = importlib.util.find_spec("pyflink")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"pyflink is not installed for {sys.executable}; run infra/setup_env.sh")
    home = pathlib.Path(list(spec.submodule_search_locations)[0]).resolve()
    if not (home / "bin" / "flink").is_file():
        raise RuntimeError(f"{home} has no bin/flink")
    return home


def var_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("CAMFLOW_VAR") or (REPO / "var")).expanduser()


def _flink_var() -> pathlib.Path:
    return var_dir() / "flink"


def conf_dir() -> pathlib.Path:
    return _flink_var() / "conf"


def log_dir() -> pathlib.Path:
    return _flink_var() / "log"


def venv_python() -> str:
    """Python used by Flink's Python workers: the repo venv if present, else this interpreter."""
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


# --------------------------------------------------------------------------- pyflink kafka shim
_PATCHED = False


def patch_pyflink_kafka() -> None:
    """Make pyflink's ``KafkaTopicPartition`` / ``KafkaOffsetResetStrategy`` work with our jars.

    pyflink 2.3.0 builds these with the *shaded* class names of the fat
    ``flink-sql-connector-kafka`` jar (``org.apache.flink.kafka.shaded.org.apache.kafka...``).
    We ship the thin ``flink-connector-kafka.jar`` + plain ``kafka-clients.jar``, so
    ``set_partitions(...)``, ``KafkaOffsetsInitializer.offsets(...)`` and
    ``committed_offsets(...)`` would fail with "Could not found the Java class".
    This swaps in the unshaded ``org.apache.kafka...`` classes (client side only;
    called by :func:`make_env`; idempotent).
    """
    global _PATCHED
    if _PATCHED:
        return
    from pyflink.datastream.connectors import kafka as pk
    from pyflink.java_gateway import get_gateway

    def _to_j_topic_partition(self):
        return get_gateway().jvm.org.apache.kafka.common.TopicPartition(self._topic, self._partition)

    def _to_j_offset_reset_strategy(self):
        cls = get_gateway().jvm.org.apache.kafka.clients.consumer.OffsetResetStrategy
        return getattr(cls, self.name)

    pk.KafkaTopicPartition._to_j_topic_partition = _to_j_topic_partition
    pk.KafkaOffsetResetStrategy._to_j_offset_reset_strategy = _to_j_offset_reset_strategy
    _PATCHED = True


# --------------------------------------------------------------------------- embedded env
def make_env(parallelism: int = 1, checkpoint_ms: int | None = None,
             jars: Iterable[str | os.PathLike] | None = None, kafka: bool = True,
             config: dict[str, str] | None = None):
    """A configured :class:`pyflink.datastream.StreamExecutionEnvironment`.

    * JAVA_HOME (and PATH) are set before the JVM gateway starts;
    * ``python.executable`` = ``sys.executable`` (the Python workers use this venv);
    * ``jars`` (paths or file:// URLs) are added; with ``kafka=True`` (default) the
      Kafka connector + kafka-clients jars from :mod:`camflow.infra.jars` are added too;
    * with ``kafka=True`` :func:`patch_pyflink_kafka` is applied (needed for
      ``KafkaTopicPartition`` / ``KafkaOffsetsInitializer.offsets`` with our jars);
    * ``checkpoint_ms`` enables checkpointing at that interval;
    * ``config``: extra Flink options (e.g. ``{"python.fn-execution.bundle.size": "10"}``).

    Run from a plain ``python job.py`` this is an embedded mini-cluster; inside
    ``flink run -py`` it is the cluster's context environment.
    """
    _set_java_env()
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    conf = Configuration()
    conf.set_string("python.executable", sys.executable)
    conf.set_string("python.client.executable", sys.executable)
    for k, v in (config or {}).items():
        conf.set_string(k, str(v))
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(parallelism)
    env.set_python_executable(sys.executable)

    urls: list[str] = []
    all_jars: list[str | os.PathLike] = []
    if kafka:
        from camflow.infra.jars import ensure_kafka_connector_jars

        all_jars.extend(ensure_kafka_connector_jars())
    all_jars.extend(jars or [])
    for j in all_jars:
        s = str(j)
        urls.append(s if "://" in s else pathlib.Path(s).resolve().as_uri())
    if urls:
        env.add_jars(*urls)
    if kafka:
        patch_pyflink_kafka()
    if checkpoint_ms:
        env.enable_checkpointing(int(checkpoint_ms))
    return env


# --------------------------------------------------------------------------- standalone cluster
def _write_conf(taskmanagers: int, slots: int, rest_port: int, tm_process_mb: int,
                jm_process_mb: int) -> pathlib.Path:
    """Generate FLINK_CONF_DIR (config.yaml + log4j files copied from the distribution)."""
    src = flink_home() / "conf"
    dst = conf_dir()
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("log4j.properties", "log4j-console.properties", "log4j-cli.properties",
                 "log4j-session.properties", "logback.xml", "logback-console.xml"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    (dst / "masters").write_text(f"localhost:{rest_port}\n")
    (dst / "workers").write_text("localhost\n" * taskmanagers)
    base = (src / "config.yaml").read_text()
    java_opts = ""
    for line in base.splitlines():  # keep the distribution's --add-opens list for JDK 17
        if line.strip().startswith("all: --add-exports"):
            java_opts = line.split("all:", 1)[1].strip()
    ld, pd = log_dir(), _flink_var() / "pid"
    ld.mkdir(parents=True, exist_ok=True)
    pd.mkdir(parents=True, exist_ok=True)
    tmp = _flink_var() / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    py = venv_python()
    # Sized for a 2-core / 24 GiB box: JM 1 GiB, each TM 3 GiB of which ~0.3 is managed
    # memory (Python workers draw from managed memory), network buffers small.
    cfg = f"""# generated by camflow.infra.flink -- edits are overwritten by `up`
env:
  java:
    home: {java_home()}
    opts:
      all: {java_opts}
  log:
    dir: {ld}
  pid:
    dir: {pd}
io:
  tmp:
    dirs: {tmp}
jobmanager:
  bind-host: localhost
  rpc:
    address: localhost
    port: 6123
  memory:
    process:
      size: {jm_process_mb}m
  execution:
    failover-strategy: region
taskmanager:
  bind-host: localhost
  host: localhost
  numberOfTaskSlots: {slots}
  memory:
    process:
      size: {tm_process_mb}m
    managed:
      fraction: 0.3
    network:
      min: 64m
      max: 128m
parallelism:
  default: 1
rest:
  address: localhost
  bind-address: localhost
  port: {rest_port}
python:
  executable: {py}
  client:
    executable: {py}
execution:
  checkpointing:
    dir: file://{_flink_var() / 'checkpoints'}
# A lost TaskManager is noticed in seconds, not the default 50 s (faster failover here).
heartbeat:
  interval: 2000
  timeout: 10000
# A task whose Python worker does not stop on cancel takes its TaskManager down after 60 s
# (default 180 s); the TaskManager is then started again and the job recovers sooner.
task:
  cancellation:
    timeout: 60000
restart-strategy:
  type: fixed-delay
  fixed-delay:
    attempts: 1000
    delay: 2 s
state:
  checkpoints:
    dir: file://{_flink_var() / 'checkpoints'}
"""
    (dst / "config.yaml").write_text(cfg)
    return dst


# Set in a process that has run a job on the embedded mini-cluster: PyFlink runs the Python
# operators of local jobs in the client process ("loopback"), and marks the process so.
# A child process (a CLI, `flink run`, a job script) must not inherit the mark.
LOOPBACK_VARIABLES = ("PYFLINK_GATEWAY_DISABLED", "PYTHON_LOOPBACK_SERVER_ADDRESS",
                      "_PYFLINK_CONN_INFO_PATH")


def child_env() -> dict[str, str]:
    """``os.environ`` for a child process that may start its own PyFlink client."""
    return {k: v for k, v in os.environ.items() if k not in LOOPBACK_VARIABLES}


def _cluster_env() -> dict[str, str]:
    env = child_env()
    jh = java_home()
    env["JAVA_HOME"] = jh
    env["PATH"] = os.path.join(jh, "bin") + os.pathsep + env.get("PATH", "")
    env["FLINK_HOME"] = str(flink_home())
    env["FLINK_CONF_DIR"] = str(conf_dir())
    env["FLINK_LOG_DIR"] = str(log_dir())
    env["FLINK_PID_DIR"] = str(_flink_var() / "pid")
    env["PYFLINK_CLIENT_EXECUTABLE"] = venv_python()
    # the CLI's python must find the camflow package and pyflink
    env["PATH"] = str(pathlib.Path(venv_python()).parent) + os.pathsep + env["PATH"]
    return env


def _run(cmd: Sequence[str], check: bool = True, capture: bool = True, timeout: float | None = 120):
    return subprocess.run(list(cmd), env=_cluster_env(), check=check, text=True, timeout=timeout,
                          capture_output=capture, stdin=subprocess.DEVNULL)


def _rest(path: str, rest_port: int = DEFAULT_REST_PORT, timeout: float = 2.0):
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}{path}", timeout=timeout) as r:
        return json.loads(r.read().decode())


def _rest_port() -> int:
    try:
        import yaml

        cfg = yaml.safe_load((conf_dir() / "config.yaml").read_text())
        return int(cfg["rest"]["port"])
    except Exception:
        return DEFAULT_REST_PORT


def cluster_status(rest_port: int | None = None) -> dict | None:
    """``/overview`` of the running cluster (taskmanagers, slots-total, ...) or None."""
    try:
        return _rest("/overview", rest_port or _rest_port())
    except Exception:
        return None


def start_cluster(taskmanagers: int = 2, slots: int = 2, rest_port: int = DEFAULT_REST_PORT,
                  tm_process_mb: int = 3072, jm_process_mb: int = 1024,
                  timeout: float = 90.0) -> dict:
    """Start a JobManager and ``taskmanagers`` TaskManagers; wait until all slots registered.

    Returns the cluster ``/overview`` dict.  If a cluster already answers on
    ``rest_port`` with enough TaskManagers it is reused.
    """
    ov = cluster_status(rest_port)
    if ov and ov.get("taskmanagers", 0) >= taskmanagers:
        return ov
    _write_conf(taskmanagers, slots, rest_port, tm_process_mb, jm_process_mb)
    bin_dir = flink_home() / "bin"
    if ov is None:
        _run(["bash", str(bin_dir / "jobmanager.sh"), "start"])
    have = ov.get("taskmanagers", 0) if ov else 0
    for _ in range(taskmanagers - have):
        _run(["bash", str(bin_dir / "taskmanager.sh"), "start"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ov = cluster_status(rest_port)
        if ov and ov.get("taskmanagers", 0) >= taskmanagers and ov.get("slots-total", 0) >= taskmanagers * slots:
            return ov
        time.sleep(0.5)
    raise TimeoutError(f"cluster not up after {timeout:.0f}s (last overview {ov}); logs in {log_dir()}")


def stop_cluster(timeout: float = 30.0) -> None:
    """Stop all TaskManagers and the JobManager started with this FLINK_CONF_DIR/FLINK_PID_DIR."""
    if not (conf_dir() / "config.yaml").exists():
        return
    bin_dir = flink_home() / "bin"
    _run(["bash", str(bin_dir / "taskmanager.sh"), "stop-all"], check=False)
    _run(["bash", str(bin_dir / "jobmanager.sh"), "stop-all"], check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and cluster_status() is not None:
        time.sleep(0.5)


def submit(py_file: str | os.PathLike, args: Sequence[str] = (), parallelism: int | None = None,
           detached: bool = False, timeout: float | None = 600, extra: Sequence[str] = ()) \
        -> subprocess.CompletedProcess:
    """``bin/flink run -py py_file -pyexec <venv python> [-p N] [-d] -- args`` against the cluster."""
    py = venv_python()
    cmd = ["bash", str(flink_home() / "bin" / "flink"), "run",
           "-m", f"localhost:{_rest_port()}",
           "-py", str(pathlib.Path(py_file).resolve()),
           "-pyexec", py, "-pyclientexec", py]
    if parallelism:
        cmd += ["-p", str(parallelism)]
    if detached:
        cmd.append("-d")
    cmd += list(extra)
    cmd += list(args)
    return _run(cmd, check=False, timeout=timeout)


def _rest_send(method: str, path: str, body: dict | None = None, rest_port: int | None = None,
               timeout: float = 10.0) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{rest_port or _rest_port()}{path}",
                                     data=None if body is None else json.dumps(body).encode(),
                                     method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return json.loads(r.read().decode() or "{}")
    except urllib.error.HTTPError as exc:  # Flink explains in the body: {"errors": [...]}
        raise RuntimeError(f"Flink REST {method} {path}: {exc.code} {exc.read().decode()[:2000]}") from None


def _rest_post(path: str, body: dict, rest_port: int | None = None, timeout: float = 10.0) -> dict:
    return _rest_send("POST", path, body, rest_port, timeout)


def cancel(job_id: str, rest_port: int | None = None, timeout: float = 10.0) -> None:
    """Cancel a job now (REST ``PATCH /jobs/<id>``; the ``flink cancel`` CLI first starts a JVM,
    seconds during which more checkpoints may complete)."""
    _rest_send("PATCH", f"/jobs/{job_id}?mode=cancel", rest_port=rest_port, timeout=timeout)


def live_jobs(name: str | None = None, rest_port: int | None = None) -> list[dict]:
    """Jobs on the cluster that have not ended (``jid``, ``name``, ``state``), optionally only
    those called ``name``."""
    jobs = _rest("/jobs/overview", rest_port or _rest_port(), timeout=10)["jobs"]
    return [j for j in jobs if j["state"] not in ("CANCELED", "FAILED", "FINISHED")
            and (name is None or j["name"] == name)]


def savepoint(job_id: str, target_dir: str, stop: bool = False, rest_port: int | None = None,
              timeout: float = 300.0) -> str:
    """Trigger a savepoint of ``job_id`` into ``target_dir`` (``stop``: stop-with-savepoint, the
    job ends once it is written, without draining its windows); wait for it and return its path.

    Uses the REST API (``/jobs/:id/savepoints``, ``/jobs/:id/stop``) so no Flink distribution is
    needed on the caller's machine, only access to the JobManager."""
    if stop:
        trigger = _rest_post(f"/jobs/{job_id}/stop", {"targetDirectory": target_dir, "drain": False},
                             rest_port)
    else:
        trigger = _rest_post(f"/jobs/{job_id}/savepoints",
                             {"target-directory": target_dir, "cancel-job": False}, rest_port)
    request_id = trigger["request-id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = _rest(f"/jobs/{job_id}/savepoints/{request_id}", rest_port or _rest_port(), timeout=10)
        if result["status"]["id"] == "COMPLETED":
            operation = result.get("operation") or {}
            if "location" in operation:
                return operation["location"]
            cause = operation.get("failure-cause") or operation
            raise RuntimeError(f"savepoint of job {job_id} failed: "
                               f"{cause.get('stack-trace', cause) if isinstance(cause, dict) else cause}"[:4000])
        time.sleep(0.5)
    raise TimeoutError(f"savepoint of job {job_id} not complete after {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m camflow.infra.flink")
    sub = ap.add_subparsers(dest="action", required=True)
    up = sub.add_parser("up")
    up.add_argument("--taskmanagers", type=int, default=2)
    up.add_argument("--slots", type=int, default=2)
    up.add_argument("--rest-port", type=int, default=DEFAULT_REST_PORT)
    up.add_argument("--tm-mb", type=int, default=3072)
    sub.add_parser("down")
    sub.add_parser("status")
    sub.add_parser("home")
    sm = sub.add_parser("submit")
    sm.add_argument("py_file")
    sm.add_argument("--parallelism", "-p", type=int, default=None)
    sm.add_argument("--detached", "-d", action="store_true")
    sm.add_argument("job_args", nargs=argparse.REMAINDER)
    ns = ap.parse_args(argv)

    if ns.action == "home":
        print(flink_home())
    elif ns.action == "up":
        t0 = time.monotonic()
        ov = start_cluster(ns.taskmanagers, ns.slots, ns.rest_port, tm_process_mb=ns.tm_mb)
        print(f"flink up in {time.monotonic() - t0:.1f}s: {ov.get('taskmanagers')} TMs, "
              f"{ov.get('slots-total')} slots, UI http://localhost:{ns.rest_port}  logs {log_dir()}")
    elif ns.action == "down":
        stop_cluster()
        print("flink down")
    elif ns.action == "status":
        ov = cluster_status()
        print(json.dumps(ov, indent=2) if ov else "flink cluster not running")
        return 0 if ov else 3
    elif ns.action == "submit":
        args = ns.job_args[1:] if ns.job_args[:1] == ["--"] else ns.job_args
        cp = submit(ns.py_file, args, ns.parallelism, detached=ns.detached, timeout=None)
        sys.stdout.write(cp.stdout or "")
        sys.stderr.write(cp.stderr or "")
        return cp.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
