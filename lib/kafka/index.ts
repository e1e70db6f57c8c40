/**
 * Apache Kafka as a source and a sink: `manifold/kafka`, which loads @platformatic/kafka.
 */
export { KafkaConsumerSource, kafkaSource, type KafkaSourceOptions, type KafkaCheckpointEvent, type KafkaLagEvent, type KafkaNackEvent } from './source.js';
export type { KafkaSaslOptions } from './options.js';
export { KafkaProducerSink, kafkaSink, type KafkaSinkOptions } from './sink.js';
export type { KafkaConnectionOptions, KafkaSaslPassword, KafkaSaslAwsIam, KafkaAwsCredentials } from './options.js';
