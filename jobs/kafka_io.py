"""Kafka sources and sinks for the job, from the deployment config (bytes in, bytes out).

Values cross into Python as raw bytes (``ByteArraySchema``); Avro is done in Python with
fastavro (``camflow.schemas.codec``), because Flink's Avro format jar is not available here.

Output records are keyed: the job's outputs are streams of ``(key, value)`` byte pairs
(``KEYED``; the key is the camera id, empty for no key) and ``keyed_sink`` writes them with a
record serializer of its own (``jobs/java/KeyedBytesSerializationSchema.java``): PyFlink's
record serializer applies its key schema to the whole element, so it cannot key records. The
class is compiled once with the JDK's ``javac`` into ``$CAMFLOW_CACHE/jars`` (``keyed_records_jar``:
``python -m camflow.jobs.kafka_io`` prints its path; ``infra/setup_env.sh`` runs it) and added
to the job by ``use_keyed_records``. Kafka's default partitioner hashes the key, so all records
of one camera go to one partition.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from pyflink.common import Types
from pyflink.common.serialization import ByteArraySchema
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import (KafkaOffsetResetStrategy, KafkaOffsetsInitializer,
                                                 KafkaSink, KafkaSource, KafkaTopicPartition)

from camflow.config import Kafka

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
# An output record: (Kafka key, Avro value); an empty key is written as no key.
KEYED = Types.TUPLE([BYTES, BYTES])

JAVA_SOURCE = Path(__file__).resolve().parent / "java" / "KeyedBytesSerializationSchema.java"


def frames_source(kafka: Kafka, stop_offsets: dict[int, int] | None = None) -> KafkaSource:
    """The ``frames`` topic. ``stop_offsets`` (partition -> offset) makes the read bounded.

    Unbounded runs resume from the group's committed offsets (committed on checkpoints);
    bounded runs read from the earliest offset to exactly the given offsets, because Tansu
    reports wrong end offsets after multi-record batches.
    """
    return bytes_source(kafka, kafka.topics.frames, stop_offsets)


def watchlist_source(kafka: Kafka, stop_offsets: dict[int, int] | None = None) -> KafkaSource:
    """The compacted ``watchlist`` topic, always read from the start: every instance of the
    job folds the whole list into its broadcast state."""
    return bytes_source(kafka, kafka.topics.watchlist, stop_offsets, from_start=True)


def bytes_source(kafka: Kafka, topic: str, stop_offsets: dict[int, int] | None = None,
                 from_start: bool = False) -> KafkaSource:
    builder = (KafkaSource.builder()
               .set_bootstrap_servers(kafka.bootstrap_servers)
               .set_topics(topic)
               .set_group_id(f"{kafka.group_id}-job-{topic}")
               .set_value_only_deserializer(ByteArraySchema())
               .set_property("session.timeout.ms", "6000")
               .set_property("commit.offsets.on.checkpoint", "true"))
    for key, value in kafka.java_client_properties().items():
        builder.set_property(key, value)
    if stop_offsets is not None or from_start:
        builder.set_starting_offsets(KafkaOffsetsInitializer.earliest())
    if stop_offsets is not None:
        builder.set_bounded(KafkaOffsetsInitializer.offsets(
            {KafkaTopicPartition(topic, int(p)): int(o) for p, o in stop_offsets.items()}))
    elif not from_start:
        builder.set_starting_offsets(
            KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST))
    return builder.build()


def keyed_sink(kafka: Kafka, topic: str) -> KafkaSink:
    """At-least-once sink of ``(key, value)`` pairs (``KEYED``): records are flushed before
    each checkpoint completes. Consumers deduplicate by the record's own identity fields (the
    analyst store upserts). Needs ``use_keyed_records`` on the job's environment first."""
    from pyflink.java_gateway import get_gateway
    builder = (KafkaSink.builder()
               .set_bootstrap_servers(kafka.bootstrap_servers)
               .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
               .set_property("acks", "all")
               .set_property("enable.idempotence", "true")
               .set_property("max.request.size", str(16 * 1024 * 1024)))
    for key, value in kafka.java_client_properties().items():
        builder.set_property(key, value)
    # Not builder.set_record_serializer: that one reads private fields of Flink's own class.
    builder._j_builder.setRecordSerializer(get_gateway().jvm.camflow.kafka
                                           .KeyedBytesSerializationSchema(topic))
    return builder.build()


def use_keyed_records(env) -> None:
    """Add the keyed record serializer's jar to the job (``pipeline.jars``, and the client's
    class loader), once."""
    uri = keyed_records_jar().as_uri()
    from pyflink.java_gateway import get_gateway
    jars_key = get_gateway().jvm.org.apache.flink.configuration.PipelineOptions.JARS.key()
    config = get_gateway().jvm.org.apache.flink.python.util.PythonConfigUtil \
        .getEnvironmentConfig(env._j_stream_execution_environment)
    if uri not in (config.getString(jars_key, None) or ""):
        env.add_jars(uri)


def keyed_records_jar(cache_dir: str | os.PathLike | None = None) -> Path:
    """The jar of ``KeyedBytesSerializationSchema``, compiled from ``JAVA_SOURCE`` with the
    JDK's ``javac`` into ``<cache>/jars`` the first time (its name carries the source's hash,
    so an edited source builds a new jar). Where no JDK is (a JRE-only image), build it where
    one is and copy ``<cache>/jars`` over, as ``infra/k8s/Dockerfile`` does."""
    from camflow.jobs.connector_jars import default_cache_dir, ensure_kafka_connector_jars
    from camflow.jobs.environment import java_home

    digest = hashlib.sha256(JAVA_SOURCE.read_bytes()).hexdigest()[:16]
    jars = Path(cache_dir or default_cache_dir()) / "jars"
    jar = jars / f"camflow-keyed-records-{digest}.jar"
    if jar.is_file():
        return jar
    javac = Path(java_home()) / "bin" / "javac"
    if not os.access(javac, os.X_OK):
        raise RuntimeError(f"{jar.name} is not built and {javac} is missing: install a JDK "
                           "(apt-get install openjdk-17-jdk-headless) or copy the jar into "
                           f"{jars}")
    import pyflink
    flink_lib = Path(pyflink.__file__).resolve().parent / "lib"
    classpath = [*sorted(flink_lib.glob("flink-dist-*.jar")), *ensure_kafka_connector_jars(cache_dir)]
    jars.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="camflow-javac-") as tmp:
        classes = Path(tmp) / "classes"
        done = subprocess.run([str(javac), "--release", "11", "-nowarn", "-d", str(classes),
                               "-cp", os.pathsep.join(map(str, classpath)), str(JAVA_SOURCE)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"javac {JAVA_SOURCE.name} failed:\n{done.stdout}{done.stderr}")
        staged = jars / f".{jar.name}.{os.getpid()}.tmp"  # same file system as the jar
        with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as out:
            out.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: camflow\n")
            for path in sorted(classes.rglob("*.class")):
                out.write(path, path.relative_to(classes).as_posix())
        os.replace(staged, jar)  # atomic: a concurrent build finds a whole jar or none
    return jar


if __name__ == "__main__":
    print(keyed_records_jar())
    sys.exit(0)
