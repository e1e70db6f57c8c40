/**
 * The seed's kinesis-producer: each line of stdin becomes a Kinesis record,
 * sent in PutRecords batches (500 records / 5 MiB), failed entries retried alone.
 *
 * Needs: a Kinesis stream (STREAM; AWS credentials and region from the environment;
 * KINESIS_ENDPOINT for a local Kinesis API). PARTITION_KEY fixes the key (default: random).
 *   seq 1 1000 | STREAM=orders npx tsx examples/kinesis-producer/index.ts
 */
import { KinesisClient } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { flow, kinesisSink, stdinSource } from '../../lib/index.js';

const streamName = process.env['STREAM'];
if (!streamName) {
  process.stderr.write('set STREAM (and KINESIS_ENDPOINT for a local Kinesis API)\n');
  process.exit(2);
}
const endpoint = process.env['KINESIS_ENDPOINT'];
const client = endpoint ? new KinesisClient({ endpoint, requestHandler: new NodeHttpHandler() }) : undefined;
const partitionKey = process.env['PARTITION_KEY'];

const sink = kinesisSink({ streamName, ...(client ? { client } : {}), ...(partitionKey ? { partitionKey } : {}), lingerMs: 100 });
const stats = await flow({ source: stdinSource(), sink, handleSignals: true });
process.stderr.write(`${stats.messages} lines, ${stats.acks} in the stream, ${stats.nacks} refused\n`);
