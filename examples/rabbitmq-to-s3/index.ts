/**
 * RabbitMQ -> S3 archiver: each message is acked to the broker only once it is
 * fsynced in the local buffer (ackOn: 'disk'), so a crash loses nothing; files
 * rotate at 64 MiB or 5 minutes, gzip-compressed, and survive S3 outages.
 *
 * Needs: a RabbitMQ broker (AMQP_URL, default amqp://guest:guest@127.0.0.1:5672) with a queue
 * (QUEUE), and an S3 bucket (BUCKET; AWS credentials and region from the environment;
 * S3_ENDPOINT for a local S3 API such as s3rver or MinIO).
 *   QUEUE=events BUCKET=archive npx tsx examples/rabbitmq-to-s3/index.ts
 */
import { S3Client } from '@aws-sdk/client-s3';
import { flow, jsonAppend, rabbitmqSource, s3Sink } from '../../lib/index.js';

const queue = process.env['QUEUE'];
const bucket = process.env['BUCKET'];
if (!queue || !bucket) {
  process.stderr.write('set QUEUE and BUCKET (and AMQP_URL, S3_ENDPOINT as needed)\n');
  process.exit(2);
}
const endpoint = process.env['S3_ENDPOINT'];
const client = endpoint
  ? new S3Client({ endpoint, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' })
  : undefined;

const source = rabbitmqSource({ url: process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672', queue, prefetch: 1000 });
const sink = s3Sink({
  bucket,
  prefix: `${queue}/`,
  ...(client ? { client } : {}),
  commitSizeBytes: 64 * 1024 * 1024,
  commitIntervalMs: 5 * 60_000,
  compression: 'gzip',
  ackOn: 'disk',
});
source.on('reconnect', (e: { attempt: number; error: Error }) => process.stderr.write(`reconnect #${e.attempt}: ${e.error.message}\n`));
sink.on('upload', (e: { key: string }) => process.stderr.write(`uploaded ${e.key}\n`));

const stats = await flow({ source, transforms: [jsonAppend({ archivedAt: () => Date.now() }, { onError: 'pass' })], sink, handleSignals: true });
process.stderr.write(`${stats.messages} messages, ${stats.acks} acked\n`);
