/**
 * Core overhead: 1,000,000 messages of 100 bytes through source -> map -> sink.
 * Raw: Readable.from(Buffers) -> Transform -> Writable doing the same work.
 * Ours: Messages with acks -> map() -> stdoutSink() into the same null output,
 * and the same again through flow(), which counts and tracks every ack.
 * The error policy's cost when nothing fails: flow() against the flow() of the commit
 * before the policy (bench/baseline/flow-before-policy.ts, kept verbatim), same pipeline.
 */
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { flow } from '../lib/core/flow.js';
import { createMessage } from '../lib/core/message.js';
import { flow as flowBeforePolicy } from './baseline/flow-before-policy.js';
import { stdoutSink } from '../lib/stdio/sink.js';
import { map } from '../lib/transforms/map.js';
import { rate, withPeakRss, type BenchArea, type BenchRow } from './lib.js';

const SIZE = 100;

interface Run {
  result: number;
  peakRssMiB: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The run with the median rate, its peak RSS the highest of all runs. */
function medianRun(all: Run[]): Run {
  const result = median(all.map((run) => run.result));
  return { result, peakRssMiB: Math.max(...all.map((run) => run.peakRssMiB)) };
}

function nullOutput(): Writable & { bytes: number } {
  const out = new Writable({
    write(chunk: Buffer, _enc, callback) {
      out.bytes += chunk.length;
      callback();
    },
    writev(chunks, callback) {
      for (const { chunk } of chunks) out.bytes += (chunk as Buffer).length;
      callback();
    },
  }) as Writable & { bytes: number };
  out.bytes = 0;
  return out;
}

// The per-message work both sides do: flip the first byte.
function work(data: Buffer): Buffer {
  const copy = Buffer.from(data);
  copy[0] = 0x42;
  return copy;
}

function* payloads(count: number, payload: Buffer): Generator<Buffer> {
  for (let i = 0; i < count; i++) yield payload;
}

async function raw(count: number, payload: Buffer): Promise<void> {
  const output = nullOutput();
  const newline = Buffer.from('\n');
  await pipeline(
    Readable.from(payloads(count, payload)),
    new Transform({ objectMode: true, transform(chunk: Buffer, _e, cb) { cb(null, work(chunk)); } }),
    new Writable({
      objectMode: true,
      write(chunk: Buffer, _e, cb) {
        output.write(Buffer.concat([chunk, newline]), cb);
      },
    }),
  );
  if (output.bytes !== count * (SIZE + 1)) throw new Error(`raw wrote ${output.bytes} bytes`);
}

function messages(count: number, payload: Buffer, onAck: () => void): Readable {
  return Readable.from((function* () {
    for (let i = 0; i < count; i++) yield createMessage({ data: payload, onAck });
  })());
}

async function ours(count: number, payload: Buffer, via: 'pipeline' | 'flow' | 'before'): Promise<void> {
  const output = nullOutput();
  let acked = 0;
  const onAck = (): void => {
    acked++;
  };
  const source = messages(count, payload, onAck);
  const stage = map((m) => work(m.data));
  const sink = stdoutSink({ output });
  if (via === 'flow') await flow({ source, transforms: [stage], sink });
  else if (via === 'before') await flowBeforePolicy({ source, transforms: [stage], sink });
  else await pipeline(source, stage, sink);
  if (acked !== count) throw new Error(`ours acked ${acked} of ${count}`);
  if (output.bytes !== count * (SIZE + 1)) throw new Error(`ours wrote ${output.bytes} bytes`);
}

const area: BenchArea = async (scale) => {
  const count = Math.max(10_000, Math.round(1_000_000 * scale));
  const payload = Buffer.alloc(SIZE, 'a');
  // Warm up the JIT on both paths before measuring.
  await raw(20_000, payload);
  await ours(20_000, payload, 'pipeline');
  await ours(20_000, payload, 'flow');
  await ours(20_000, payload, 'before');
  const rows: BenchRow[] = [];
  // Interleave the four, several rounds, and keep each one's median: the machine is shared, and a
  // neighbour's burst should not decide a ratio. The policy's ratio is the median of each round's
  // own ratio (flow() now / flow() before, run back to back), so slow drift cancels too.
  const ROUNDS = 7;
  const runs = { raw: [] as Run[], ours: [] as Run[], flow: [] as Run[], before: [] as Run[] };
  const policyRatios: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate which of the two flows goes first, so neither always runs on a warmer heap.
    const order: Array<'flow' | 'before'> = round % 2 === 0 ? ['flow', 'before'] : ['before', 'flow'];
    runs.raw.push(await withPeakRss(() => rate(count, () => raw(count, payload))));
    runs.ours.push(await withPeakRss(() => rate(count, () => ours(count, payload, 'pipeline'))));
    for (const via of order) runs[via].push(await withPeakRss(() => rate(count, () => ours(count, payload, via))));
    policyRatios.push(runs.flow[round]!.result / runs.before[round]!.result);
  }
  const rawRun = medianRun(runs.raw);
  const oursRun = medianRun(runs.ours);
  const flowRun = medianRun(runs.flow);
  const beforeRun = medianRun(runs.before);
  const policyRatio = median(policyRatios);
  const label = `${count.toLocaleString('en-US')} x ${SIZE} B, source -> map -> sink, median of ${ROUNDS}`;
  rows.push({ area: 'core', case: `${label} (pipeline)`, unit: 'msg/s', raw: rawRun.result, ours: oursRun.result, goal: 0.8, peakRssMiB: oursRun.peakRssMiB, note: `raw peak RSS ${rawRun.peakRssMiB.toFixed(0)} MiB` });
  rows.push({ area: 'core', case: `${label} (flow(), with stats)`, unit: 'msg/s', raw: rawRun.result, ours: flowRun.result, peakRssMiB: flowRun.peakRssMiB });
  rows.push({
    area: 'core',
    case: `${label}: flow() with its error policy vs flow() before the policy (raw column), nothing failing`,
    unit: 'msg/s',
    raw: beforeRun.result,
    ours: flowRun.result,
    goal: 0.95,
    peakRssMiB: flowRun.peakRssMiB,
    note: `median of the ${ROUNDS} paired ratios ${policyRatio.toFixed(3)} (${policyRatios.map((r) => r.toFixed(2)).join(', ')}); flow() before the policy peak RSS ${beforeRun.peakRssMiB.toFixed(0)} MiB`,
  });
  return rows;
};

export default area;
