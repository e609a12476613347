"""The job's execution environment: the same for the embedded mini-cluster (``camflow job
run``, the demo, tests) and a Flink cluster (``flink run -py`` / ``camflow job submit``).

* JAVA_HOME (and PATH) are set before the JVM gateway starts;
* ``python.executable`` = ``sys.executable`` (the Python workers use this interpreter);
* the Kafka connector jars (``jobs/connector_jars.py``) are added and PyFlink's Kafka classes
  are pointed at them (``patch_pyflink_kafka``);
* the deployment's job settings (bundles, checkpoints, extra Flink options) are applied.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import sys
from typing import Iterable

DEBIAN_JDK17 = "/usr/lib/jvm/java-17-openjdk-amd64"


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
      Kafka connector + kafka-clients jars from :mod:`camflow.jobs.connector_jars` are added too;
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
        from camflow.jobs.connector_jars import ensure_kafka_connector_jars

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


# Set in a process that has run a job on the embedded mini-cluster: PyFlink runs the Python
# operators of local jobs in the client process ("loopback"), and marks the process so.
# A child process (a CLI, `flink run`, a job script) must not inherit the mark.
LOOPBACK_VARIABLES = ("PYFLINK_GATEWAY_DISABLED", "PYTHON_LOOPBACK_SERVER_ADDRESS",
                      "_PYFLINK_CONN_INFO_PATH")


def child_env() -> dict[str, str]:
    """``os.environ`` for a child process that may start its own PyFlink client."""
    return {k: v for k, v in os.environ.items() if k not in LOOPBACK_VARIABLES}


def job_environment(job, parallelism: int | None = None, restore_from: str | None = None):
    """The environment for the camflow job as ``job`` (``camflow.config.Job``) sets it."""
    options = {"python.fn-execution.bundle.time": str(job.python_bundle_ms),
               "python.fn-execution.bundle.size": str(job.python_bundle_size)}
    options.update(job.flink_options)
    if job.checkpoint_dir:
        options.update({"execution.checkpointing.dir": job.checkpoint_dir,
                        "execution.checkpointing.externalized-checkpoint-retention":
                            "RETAIN_ON_CANCELLATION"})
    if restore_from:
        options["execution.state-recovery.path"] = restore_from
    return make_env(parallelism=parallelism or job.parallelism,
                    checkpoint_ms=job.checkpoint_interval_ms, config=options)
