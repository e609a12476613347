"""Kafka sources and sinks for the job, from the deployment config (bytes in, bytes out).

Values cross into Python as raw bytes (``ByteArraySchema``); Avro is done in Python with
fastavro (``camflow.schemas.codec``), because Flink's Avro format jar is not available here.
Output records carry no Kafka key: PyFlink's record serializer applies the key schema to the
whole element, so consumers identify records by their fields (alert_id; camera + window).
"""
from __future__ import annotations

from pyflink.common import Types
from pyflink.common.serialization import ByteArraySchema
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import (KafkaOffsetResetStrategy, KafkaOffsetsInitializer,
                                                 KafkaRecordSerializationSchema, KafkaSink,
                                                 KafkaSource, KafkaTopicPartition)

from camflow.config import Kafka

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())


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


def bytes_sink(kafka: Kafka, topic: str) -> KafkaSink:
    """At-least-once sink: records are flushed before each checkpoint completes. Consumers
    deduplicate by the record's own key fields (the analyst store upserts)."""
    builder = (KafkaSink.builder()
               .set_bootstrap_servers(kafka.bootstrap_servers)
               .set_record_serializer(KafkaRecordSerializationSchema.builder()
                                      .set_topic(topic)
                                      .set_value_serialization_schema(ByteArraySchema())
                                      .build())
               .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
               .set_property("acks", "all")
               .set_property("enable.idempotence", "true")
               .set_property("max.request.size", str(16 * 1024 * 1024)))
    for key, value in kafka.java_client_properties().items():
        builder.set_property(key, value)
    return builder.build()
