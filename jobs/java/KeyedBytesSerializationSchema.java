package camflow.kafka;

import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.kafka.clients.producer.ProducerRecord;

/**
 * The camflow job's Kafka records: each element is a (key, value) pair of byte arrays made in
 * Python (jobs/operators.py EncodeRecords); an empty key means "no key". PyFlink's own record
 * serializer applies its key schema to the whole element, so it cannot key records.
 * The partition is left to Kafka's default partitioner (murmur2 of the key), so every record
 * of one camera lands in one partition. Built into a jar by jobs/kafka_io.py.
 */
public final class KeyedBytesSerializationSchema
        implements KafkaRecordSerializationSchema<Tuple2<byte[], byte[]>> {
    private static final long serialVersionUID = 1L;
    private final String topic;

    public KeyedBytesSerializationSchema(String topic) {
        this.topic = topic;
    }

    @Override
    public ProducerRecord<byte[], byte[]> serialize(
            Tuple2<byte[], byte[]> element, KafkaSinkContext context, Long timestamp) {
        byte[] key = element.f0 == null || element.f0.length == 0 ? null : element.f0;
        Long time = timestamp == null || timestamp < 0 ? null : timestamp;
        return new ProducerRecord<>(topic, null, time, key, element.f1);
    }
}
