/**
 * The seed's kinesis-consumer: every shard of a stream to stdout, one record per
 * line, checkpointed to a file so a restart resumes where it stopped.
 *
 * Needs: a Kinesis stream (STREAM; AWS credentials and region from the environment;
 * KINESIS_ENDPOINT for a local Kinesis API such as kinesis-local). Optional:
 * CONSUMER_NAME for enhanced fan-out, FROM=latest|trim-horizon, CHECKPOINT=<file>.
 *   STREAM=orders npx tsx examples/kinesis-consumer/index.ts
 */
import { KinesisClient } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { fileCheckpointer, flow, kinesisSource, stdoutSink } from '../../lib/index.js';

const streamName = process.env['STREAM'];
if (!streamName) {
  process.stderr.write('set STREAM (and KINESIS_ENDPOINT for a local Kinesis API)\n');
  process.exit(2);
}
const endpoint = process.env['KINESIS_ENDPOINT'];
// Local Kinesis API servers speak HTTP/1.1 only.
const client = endpoint ? new KinesisClient({ endpoint, requestHandler: new NodeHttpHandler() }) : undefined;
const consumerName = process.env['CONSUMER_NAME'];

const source = kinesisSource({
  streamName,
  ...(client ? { client } : {}),
  ...(consumerName ? { consumerName } : {}),
  startingPosition: process.env['FROM'] === 'latest' ? 'LATEST' : 'TRIM_HORIZON',
  checkpointer: fileCheckpointer(process.env['CHECKPOINT'] ?? `./${streamName}.checkpoint.json`),
});
source.on('lag', (e: { shardId: string; millisBehindLatest: number }) => {
  if (e.millisBehindLatest > 60_000) process.stderr.write(`${e.shardId} is ${Math.round(e.millisBehindLatest / 1000)} s behind\n`);
});

const stats = await flow({ source, sink: stdoutSink(), handleSignals: true });
process.stderr.write(`${stats.messages} records, ${stats.acks} acked\n`);
