/**
 * S3 sink benchmarks:
 * - collector throughput (in this process, raw and ours one after the other; ackOn 'disk',
 *   default 100 ms group commit) for 100-byte and 10 KiB messages, against fs.createWriteStream
 *   writing the same bytes plus one final fsync (the disk is the limit);
 * - end to end into s3rver on loopback (started here), 1,000,000 x 100 B (scaled): s3Sink against
 *   a hand-written file + rotate + @aws-sdk/lib-storage Upload uploader with the same fsync policy
 *   (bench/sides/s3.ts says exactly what each does), each side in its own child process, 3 rounds
 *   alternating, medians. Goal (issue 20): ≥ 0.8 of the hand-written uploader.
 * - end to end with keyTemplate 'region={json.region}': 20 partitions against one (the same sink, the same
 *   100 B JSON payloads, naming 20 regions or one), each in its own process, 3 rounds alternating. Goal
 *   (issue 18): 20 partitions ≥ 0.8 of one.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMessage, type Message } from '../lib/core/message.js';
import { s3Collector } from '../lib/s3/collector.js';
import { startS3 } from '../test/fixtures/s3.js';
import { interleaved, rate, runSide, sideRow, withPeakRss, type BenchArea, type BenchRow } from './lib.js';

const ROUNDS = 3;

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

    // End to end: each side in its own process, a fresh bucket and buffer folder per run.
    const count = Math.max(10_000, Math.round(1_000_000 * scale));
    const e2e = await interleaved(['ours', 'handwritten'] as const, ROUNDS, async (side) =>
      runSide('s3', { side, endpoint: s3.endpoint, bucket: await s3.createBucket(), dir: await s3.tempDir(side), count }),
    );
    rows.push(
      sideRow(
        {
          area: 's3',
          case: `end to end into s3rver, ${count.toLocaleString('en-US')} x 100 B, 8 MiB objects: vs rotate + lib-storage Upload`,
          unit: 'msg/s',
          goal: 0.8,
          note: 'the same fsync policy for both: group commit, an fsync at most every 100 ms and at rotation, a message acked once an fsync covered it; at most 4 uploads at once; ours: s3Sink defaults (ackOn disk); raw: 64 KiB writev, rotate at 8 MiB, Upload from the file, delete; timed to the last object uploaded',
        },
        e2e.ours,
        e2e.handwritten,
        'hand-written',
      ),
    );

    // Partitioned: 20 partitions against one, the same template and JSON parsing on both sides.
    const parts = await interleaved(['partitions20', 'partition1'] as const, ROUNDS, async (side) =>
      runSide('s3', { side, endpoint: s3.endpoint, bucket: await s3.createBucket(), dir: await s3.tempDir(side), count }),
    );
    rows.push(
      sideRow(
        {
          area: 's3',
          case: `end to end into s3rver, ${count.toLocaleString('en-US')} x 100 B JSON, keyTemplate region={json.region}: 20 partitions vs one`,
          unit: 'msg/s',
          goal: 0.8,
          note: 'ours: 20 regions in turn (20 open buffer files, objects 1/20 the size); raw: one region; both s3Sink defaults with the same template (every payload parsed as JSON); timed to the last object uploaded',
        },
        parts.partitions20,
        parts.partition1,
        'one partition',
      ),
    );
    return rows;
  } finally {
    await s3.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
};

export default bench;
