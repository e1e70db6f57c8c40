/**
 * The seed's kinesis-consumer: every shard of a stream to stdout, one record per
 * line, checkpointed to a file so a restart resumes where it stopped.
 *
 * Needs: a Kinesis stream (STREAM; AWS credentials and region from the environment;
 * KINESIS_ENDPOINT for a local Kinesis API such as kinesis-local). Optional:
 * CONSUMER_NAME for enhanced fan-out, FROM=latest|trim-horizon, CHECKPOINT=<file>;
 * or LEASE_TABLE=<DynamoDB table> (DYNAMO_ENDPOINT for a local DynamoDB API) to share
 * the stream with every other process started with the same table.
 *   STREAM=orders npx tsx examples/kinesis-consumer/index.ts
 *   STREAM=orders LEASE_TABLE=orders-leases npx tsx examples/kinesis-consumer/index.ts   # in several terminals
 */
import { KinesisClient } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { dynamoLeases, fileCheckpointer, flow, kinesisSource, stdoutSink } from '../../lib/index.js';

const streamName = process.env['STREAM'];
if (!streamName) {
  process.stderr.write('set STREAM (and KINESIS_ENDPOINT for a local Kinesis API)\n');
  process.exit(2);
}
const endpoint = process.env['KINESIS_ENDPOINT'];
// Local Kinesis API servers speak HTTP/1.1 only.
const client = endpoint ? new KinesisClient({ endpoint, requestHandler: new NodeHttpHandler() }) : undefined;
const consumerName = process.env['CONSUMER_NAME'];
const leaseTable = process.env['LEASE_TABLE'];
const dynamoEndpoint = process.env['DYNAMO_ENDPOINT'];

const source = kinesisSource({
  streamName,
  ...(client ? { client } : {}),
  ...(consumerName ? { consumerName } : {}),
  startingPosition: process.env['FROM'] === 'latest' ? 'LATEST' : 'TRIM_HORIZON',
  ...(leaseTable
    ? { coordinator: dynamoLeases({ tableName: leaseTable, ...(dynamoEndpoint ? { endpoint: dynamoEndpoint } : {}) }) }
    : { checkpointer: fileCheckpointer(process.env['CHECKPOINT'] ?? `./${streamName}.checkpoint.json`) }),
});
source.on('lease', (e: { type: string; shardId: string }) => process.stderr.write(`lease ${e.type}: ${e.shardId}\n`));
source.on('lag', (e: { shardId: string; millisBehindLatest: number }) => {
  if (e.millisBehindLatest > 60_000) process.stderr.write(`${e.shardId} is ${Math.round(e.millisBehindLatest / 1000)} s behind\n`);
});

const stats = await flow({ source, sink: stdoutSink(), handleSignals: true });
process.stderr.write(`${stats.messages} records, ${stats.acks} acked\n`);
