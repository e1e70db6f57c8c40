/**
 * The demo behind `npm start`: an in-process WebSocket ticker sending JSON quotes
 * -> websocketSource -> jsonAppend({ receivedAt }) -> s3Sink into an S3 API
 * server (s3rver) started in-process on loopback, rotating a file every few
 * seconds. After DEMO_SECONDS (default 20) or Ctrl-C it drains, then prints the
 * uploaded object keys and a sample record. Nothing leaves this machine.
 *
 * Run: npm start        (or: DEMO_SECONDS=5 npm start; DEMO_DIR=<folder> keeps the data elsewhere)
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, S3Client, CreateBucketCommand } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { WebSocketServer } from 'ws';
import { flow, jsonAppend, s3Sink, websocketSource } from '../../lib/index.js';

const seconds = Number(process.env['DEMO_SECONDS'] ?? 20);
const root = process.env['DEMO_DIR'] ?? join(import.meta.dirname, '..', '..', '.cache', 'demo');
mkdirSync(root, { recursive: true });

// 1. An S3 API on loopback, keeping its data under .cache/demo (git-ignored).
const s3rver = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: join(root, 's3rver') });
const { port: s3Port } = await s3rver.run();
const endpoint = `http://127.0.0.1:${s3Port}`;
const client = new S3Client({
  region: 'us-east-1',
  endpoint,
  forcePathStyle: true,
  credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  // s3rver cannot parse the SDK's default streaming checksums.
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
});
const bucket = 'manifold-demo';
await client.send(new CreateBucketCommand({ Bucket: bucket })).catch(() => undefined);

// 2. A ticker: every 20 ms a quote for one of a few symbols, to every subscriber.
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
const wsPort = (wss.address() as { port: number }).port;
const symbols = ['BTC-USD', 'ETH-USD', 'SOL-USD'];
let seq = 0;
const ticker = setInterval(() => {
  // Quotes start with the first subscriber, so the first one it gets is seq 0 however slow the connect.
  if (wss.clients.size === 0) return;
  const symbol = symbols[seq % symbols.length]!;
  const quote = JSON.stringify({ seq: seq++, symbol, price: +(100 + Math.random() * 10).toFixed(2), ts: Date.now() });
  for (const socket of wss.clients) if (socket.readyState === socket.OPEN) socket.send(quote);
}, 20);

// 3. The pipeline.
const prefix = `quotes/${new Date().toISOString().replace(/[:.]/g, '-')}/`;
const sink = s3Sink({ bucket, prefix, client, bufferPath: join(root, 'buffer'), commitIntervalMs: 3000, uploadIntervalMs: 1000 });
const source = websocketSource({ url: `ws://127.0.0.1:${wsPort}/quotes` });
sink.on('upload', (e: { key: string }) => process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[K' : ''}uploaded s3://${bucket}/${e.key}\n`));
const running = flow({ source, transforms: [jsonAppend({ receivedAt: () => Date.now() })], sink, handleSignals: true });
process.stderr.write(`demo: ws://127.0.0.1:${wsPort}/quotes -> s3://${bucket}/${prefix} on ${endpoint} for ${seconds} s (Ctrl-C to stop sooner)\n`);
const progress = setInterval(() => {
  const s = running.stats;
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${s.messages} received, ${s.acks} acked (on disk), ${s.messages - s.acks - s.nacks} in flight`);
}, 500);
const timer = setTimeout(() => void running.stop(), seconds * 1000);

const stats = await running;
clearTimeout(timer);
clearInterval(progress);
clearInterval(ticker);

// 4. What arrived.
const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
const keys = (listed.Contents ?? []).map((o) => o.Key!).sort();
process.stdout.write(`\n${stats.messages} messages, ${stats.acks} acked, ${stats.nacks} nacked in ${(stats.durationMs / 1000).toFixed(1)} s\n`);
process.stdout.write(`uploaded objects (${keys.length}):\n${keys.map((k) => `  s3://${bucket}/${k}`).join('\n')}\n`);
if (keys.length > 0) {
  const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: keys[0] }));
  const text = await object.Body!.transformToString();
  process.stdout.write(`sample record: ${text.split('\n')[0]}\n`);
}
await new Promise<void>((resolve) => wss.close(() => resolve()));
client.destroy();
await s3rver.close();
