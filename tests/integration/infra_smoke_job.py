"""Tiny PyFlink job used by test_infra_smoke.py: Kafka bytes -> Python map -> Kafka bytes.

Runs embedded (``python infra_smoke_job.py ...``) or on a cluster
(``flink run -py infra_smoke_job.py -pyexec .venv/bin/python ...``).

    --bootstrap 127.0.0.1:19092 --in-topic A --out-topic B --stop 0:5,1:3 [--parallelism 1]

``--stop`` gives the explicit stopping offset of every input partition
(Tansu's reported end offsets are unreliable, so "latest" must not be used).
"""
from __future__ import annotations

import argparse
import sys


def smoke_transform(value: bytes) -> bytes:
    return b"seen:" + bytes(value).upper()


def build(env, bootstrap: str, in_topic: str, out_topic: str, stop: dict[int, int]):
    from pyflink.common import Types, WatermarkStrategy
    from pyflink.common.serialization import ByteArraySchema
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import (
        KafkaOffsetsInitializer, KafkaRecordSerializationSchema, KafkaSink, KafkaSource,
        KafkaTopicPartition)

    partitions = {KafkaTopicPartition(in_topic, p) for p in stop}
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_partitions(partitions)  # explicit partitions: no consumer-group join needed
        .set_group_id("camflow-smoke")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_bounded(KafkaOffsetsInitializer.offsets(
            {KafkaTopicPartition(in_topic, p): off for p, off in stop.items()}))
        .set_value_only_deserializer(ByteArraySchema())
        .build()
    )
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(bootstrap)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(out_topic)
            .set_value_serialization_schema(ByteArraySchema())
            .build())
        .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .build()
    )
    ds = env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka-in")
    # output_type=PRIMITIVE_ARRAY(BYTE) so the sink gets byte[] (not pickled bytes)
    ds.map(smoke_transform, output_type=Types.PRIMITIVE_ARRAY(Types.BYTE())).sink_to(sink)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--in-topic", required=True)
    ap.add_argument("--out-topic", required=True)
    ap.add_argument("--stop", required=True, help="partition:offset,...")
    ap.add_argument("--parallelism", type=int, default=1)
    ns = ap.parse_args(argv)
    stop = {int(p): int(o) for p, o in (x.split(":") for x in ns.stop.split(","))}

    from camflow.jobs.environment import make_env

    env = make_env(parallelism=ns.parallelism)
    build(env, ns.bootstrap, ns.in_topic, ns.out_topic, stop)
    env.execute("camflow-infra-smoke")
    return 0


if __name__ == "__main__":
    sys.exit(main())
