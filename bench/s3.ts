/**
 * S3 sink benchmarks, raw and ours in the same run:
 * - collector throughput (ackOn 'disk', default 100 ms group commit) for 100-byte and
 *   10 KiB messages, against fs.createWriteStream writing the same bytes plus one
 *   final fsync (the disk is the limit);
 * - end to end into s3rver on loopback: PutObject of the same bytes in
 *   commit-sized objects with the raw client, against s3Sink; peak RSS of ours.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { createMessage, type Message } from '../lib/core/message.js';
import { s3Collector } from '../lib/s3/collector.js';
import { s3Sink } from '../lib/s3/sink.js';
import { startS3 } from '../test/fixtures/s3.js';
import { rate, withPeakRss, type BenchArea, type BenchRow } from './lib.js';

function payloads(count: number, size: number): Buffer[] {
  const one = Buffer.alloc(size, 'p');
  return Array.from({ length: count }, () => one);
}

function messages(data: Buffer[], onAck: () => void): Message[] {
  return data.map((d) => createMessage({ data: d, onAck }));
}

async function rawFile(path: string, data: Buffer[]): Promise<void> {
  const nl = Buffer.from('\n');
  const out = createWriteStream(path);
  for (const d of data) {
    const a = out.write(d);
    const b = out.write(nl);
    if (!a || !b) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  }
  await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
  const handle = await open(path, 'r');
  await handle.sync();
  await handle.close();
}

/** Messages over `data` (made before the clock starts, as the raw side's buffers are), and their ack count. */
function tracked(data: Buffer[]): { msgs: Message[]; acked: () => number } {
  let count = 0;
  return { msgs: messages(data, () => (count += 1)), acked: () => count };
}

async function oursCollector(bufferPath: string, { msgs, acked }: { msgs: Message[]; acked: () => number }): Promise<void> {
  const collector = s3Collector({ bufferPath, commitSizeBytes: 64 * 1024 * 1024 });
  collector.resume(); // committed files are not uploaded here
  // The same write loop as the raw side, so the figure is the collector's and not Readable.from's.
  for (const m of msgs) {
    if (!collector.write(m)) await new Promise<void>((resolve) => collector.once('drain', () => resolve()));
  }
  await new Promise<void>((resolve, reject) => {
    collector.once('error', reject);
    collector.once('end', () => resolve());
    collector.end();
  });
  if (acked() !== msgs.length) throw new Error(`only ${acked()} of ${msgs.length} acked`);
}

async function collectorCase(dir: string, count: number, size: number, label: string): Promise<BenchRow> {
  const data = payloads(count, size);
  const mb = (count * (size + 1)) / 1e6;
  // A small warm-up of both, then three interleaved runs each, best kept: the machine is shared and noisy.
  await rawFile(join(dir, 'warm-raw'), data.slice(0, Math.ceil(count / 10)));
  await oursCollector(join(dir, 'warm-ours'), tracked(data.slice(0, Math.ceil(count / 10))));
  let rawRate = 0;
  let oursRate = 0;
  let peak = 0;
  for (let run = 0; run < 3; run++) {
    rawRate = Math.max(rawRate, await rate(count, () => rawFile(join(dir, `raw-${size}-${run}`), data)));
    const input = tracked(data);
    const { result, peakRssMiB } = await withPeakRss(() => rate(count, () => oursCollector(join(dir, `ours-${size}-${run}`), input)));
    oursRate = Math.max(oursRate, result);
    peak = Math.max(peak, peakRssMiB);
    await rm(join(dir, `raw-${size}-${run}`), { force: true });
    await rm(join(dir, `ours-${size}-${run}`), { recursive: true, force: true });
  }
  const row: BenchRow = {
    area: 's3',
    case: `collector ${count.toLocaleString('en')} x ${label}, ackOn disk (${mb.toFixed(0)} MB)`,
    unit: 'msg/s',
    raw: Math.round(rawRate),
    ours: Math.round(oursRate),
    peakRssMiB: Math.round(peak),
    note: 'raw: fs.createWriteStream + one fsync at the end; ours: group-commit fsync every 100 ms, every message acked; best of 3',
  };
  if (size <= 100) row.goal = 0.7;
  return row;
}

const bench: BenchArea = async (scale) => {
  const dir = await mkdtemp(join(tmpdir(), 'manifold-bench-s3-'));
  const s3 = await startS3();
  try {
    const rows: BenchRow[] = [];
    rows.push(await collectorCase(dir, Math.max(1000, Math.round(300_000 * scale)), 100, '100 B'));
    rows.push(await collectorCase(dir, Math.max(100, Math.round(5_000 * scale)), 10 * 1024, '10 KiB'));

    // End to end: the same bytes as objects of commitSizeBytes, raw PutObject (sequential) vs s3Sink.
    const commitSizeBytes = 8 * 1024 * 1024;
    const size = 1024;
    const count = Math.max(2000, Math.round(96 * 1024 * scale));
    const data = payloads(count, size);
    const total = count * (size + 1);
    const rawBucket = await s3.createBucket();
    const perObject = Math.floor(commitSizeBytes / (size + 1));
    const rawMBs = await rate(total / 1e6, async () => {
      const nl = Buffer.from('\n');
      for (let i = 0, n = 0; i < count; i += perObject, n++) {
        const parts: Buffer[] = [];
        for (const d of data.slice(i, i + perObject)) parts.push(d, nl);
        await s3.client.send(new PutObjectCommand({ Bucket: rawBucket, Key: `raw/${n}`, Body: Buffer.concat(parts) }));
      }
    });
    const bucket = await s3.createBucket();
    const bufferPath = join(dir, 'e2e');
    let acked = 0;
    const msgs = messages(data, () => (acked += 1));
    const { result: oursMBs, peakRssMiB } = await withPeakRss(() =>
      rate(total / 1e6, async () => {
        await pipeline(Readable.from(msgs), s3Sink({ bucket, bufferPath, client: s3.client, commitSizeBytes, closeTimeoutMs: 120_000 }));
        if (acked !== count) throw new Error(`only ${acked} of ${count} acked`);
      }),
    );
    rows.push({
      area: 's3',
      case: `end to end into s3rver, ${(total / 1e6).toFixed(0)} MB as ${size} B messages, 8 MiB objects`,
      unit: 'MB/s',
      raw: Number(rawMBs.toFixed(1)),
      ours: Number(oursMBs.toFixed(1)),
      peakRssMiB: Math.round(peakRssMiB),
      note: 'raw: PutObject of prebuilt 8 MiB bodies from memory; ours: disk buffer + fsync + multipart from disk + delete',
    });
    return rows;
  } finally {
    await s3.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
};

export default bench;
