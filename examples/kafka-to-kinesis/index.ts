/**
 * Kafka -> Kinesis: consume a topic in a consumer group and produce each
 * message to a Kinesis stream, keyed by the Kafka key. Offsets are committed
 * only after Kinesis accepted the records (at-least-once).
 *
 * Needs: Kafka brokers (KAFKA_BROKERS=host:9092), a topic (TOPIC), a Kinesis
 * stream (STREAM; AWS credentials and region from the environment;
 * KINESIS_ENDPOINT for a local Kinesis API).
 *   KAFKA_BROKERS=127.0.0.1:9092 TOPIC=orders STREAM=orders npx tsx examples/kafka-to-kinesis/index.ts
 */
import { KinesisClient } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { flow, kafkaSource, kinesisSink } from '../../lib/index.js';

const brokers = process.env['KAFKA_BROKERS'];
const topic = process.env['TOPIC'];
const streamName = process.env['STREAM'];
if (!brokers || !topic || !streamName) {
  process.stderr.write('set KAFKA_BROKERS, TOPIC and STREAM (and KINESIS_ENDPOINT for a local Kinesis API)\n');
  process.exit(2);
}
const endpoint = process.env['KINESIS_ENDPOINT'];
// Local Kinesis API servers speak HTTP/1.1 only.
const client = endpoint ? new KinesisClient({ endpoint, requestHandler: new NodeHttpHandler() }) : undefined;

const stats = await flow({
  source: kafkaSource({ brokers, topics: topic, groupId: 'kafka-to-kinesis', startFrom: 'earliest' }),
  sink: kinesisSink({ streamName, ...(client ? { client } : {}), lingerMs: 50 }),
  handleSignals: true,
});
process.stderr.write(`${stats.messages} messages, ${stats.acks} acked\n`);
