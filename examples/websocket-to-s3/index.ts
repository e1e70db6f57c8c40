/**
 * A WebSocket feed archived to S3: subscriptions are re-sent on every
 * (re)connect, the connection is swapped make-before-break every 12 hours, and
 * the S3 sink buffers on local disk so restarts and S3 outages lose nothing.
 *
 * Needs: a WebSocket feed (FEED_URL, e.g. wss://feed.example/ws), an S3 bucket
 * (BUCKET; AWS credentials and region from the environment as the AWS SDK reads
 * them; S3_ENDPOINT for a local S3 API such as s3rver or MinIO).
 *   FEED_URL=ws://127.0.0.1:8080/quotes BUCKET=archive npx tsx examples/websocket-to-s3/index.ts
 */
import { S3Client } from '@aws-sdk/client-s3';
import { flow, jsonAppend, s3Sink, websocketSource } from '../../lib/index.js';

const feedUrl = process.env['FEED_URL'];
const bucket = process.env['BUCKET'];
if (!feedUrl || !bucket) {
  process.stderr.write('set FEED_URL and BUCKET (and S3_ENDPOINT for a local S3 API)\n');
  process.exit(2);
}
const endpoint = process.env['S3_ENDPOINT'];
const client = endpoint
  ? new S3Client({ endpoint, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' })
  : undefined;

const source = websocketSource({
  url: feedUrl,
  reconnectEveryMs: 12 * 60 * 60 * 1000,
  heartbeatIntervalMs: 15_000,
  onOpen: (socket) => socket.send(JSON.stringify({ op: 'subscribe', channels: ['ticker'] })),
});
const sink = s3Sink({ bucket, prefix: 'feed/', ...(client ? { client } : {}), commitSizeBytes: 8 * 1024 * 1024, commitIntervalMs: 60_000, compression: 'gzip' });
for (const event of ['reconnect', 'swap']) source.on(event, (e: unknown) => process.stderr.write(`${event} ${JSON.stringify(e)}\n`));
sink.on('upload', (e: { key: string }) => process.stderr.write(`uploaded ${e.key}\n`));

const stats = await flow({ source, transforms: [jsonAppend({ receivedAt: () => Date.now() })], sink, handleSignals: true });
process.stderr.write(`${stats.messages} messages, ${stats.acks} acked\n`);
