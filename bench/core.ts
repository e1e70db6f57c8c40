/**
 * Core overhead: 1,000,000 messages of 100 bytes through source -> map -> sink.
 * Raw: Readable.from(Buffers) -> Transform -> Writable doing the same work.
 * Ours: Messages with acks -> map() -> stdoutSink() into the same null output,
 * and the same again through flow(), which counts and tracks every ack.
 * The error policy's cost when nothing fails: flow() against the same pipeline
 * behind a head that only counts settles (what flow() did before the policy).
 */
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { flow } from '../lib/core/flow.js';
import { createMessage, relay, type Message } from '../lib/core/message.js';
import { stdoutSink } from '../lib/stdio/sink.js';
import { map } from '../lib/transforms/map.js';
import { rate, withPeakRss, type BenchArea, type BenchRow } from './lib.js';

const SIZE = 100;

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

/** flow() without its error policy: a head that relays every message with counting settles, nothing more. */
async function countingPipeline(source: Readable, stage: Transform, sink: Writable): Promise<void> {
  const stats = { messages: 0, acks: 0, nacks: 0 };
  const head = new Readable({ objectMode: true, highWaterMark: 16, read: () => void source.resume() });
  source.on('data', (message: Message) => {
    stats.messages += 1;
    const counted = relay(
      message,
      () => {
        stats.acks += 1;
        message.ack();
      },
      (error) => {
        stats.nacks += 1;
        message.nack(error);
      },
    );
    if (!head.push(counted)) source.pause();
  });
  source.on('end', () => head.push(null));
  source.pause();
  await pipeline(head, stage, sink);
}

async function ours(count: number, payload: Buffer, via: 'pipeline' | 'flow' | 'counting'): Promise<void> {
  const output = nullOutput();
  let acked = 0;
  const onAck = (): void => {
    acked++;
  };
  const source = messages(count, payload, onAck);
  const stage = map((m) => work(m.data));
  const sink = stdoutSink({ output });
  if (via === 'flow') await flow({ source, transforms: [stage], sink });
  else if (via === 'counting') await countingPipeline(source, stage, sink);
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
  await ours(20_000, payload, 'counting');
  const rows: BenchRow[] = [];
  // Alternate the three, three rounds, and keep each one's best: the machine is shared, and a
  // neighbour's burst should not decide a ratio.
  const best = {
    raw: { result: 0, peakRssMiB: 0 },
    ours: { result: 0, peakRssMiB: 0 },
    flow: { result: 0, peakRssMiB: 0 },
    counting: { result: 0, peakRssMiB: 0 },
  };
  const keep = (slot: { result: number; peakRssMiB: number }, run: { result: number; peakRssMiB: number }): void => {
    if (run.result > slot.result) slot.result = run.result;
    slot.peakRssMiB = Math.max(slot.peakRssMiB, run.peakRssMiB);
  };
  for (let round = 0; round < 3; round++) {
    keep(best.raw, await withPeakRss(() => rate(count, () => raw(count, payload))));
    keep(best.ours, await withPeakRss(() => rate(count, () => ours(count, payload, 'pipeline'))));
    keep(best.flow, await withPeakRss(() => rate(count, () => ours(count, payload, 'flow'))));
    keep(best.counting, await withPeakRss(() => rate(count, () => ours(count, payload, 'counting'))));
  }
  const { raw: rawRun, ours: oursRun, flow: flowRun, counting: countingRun } = best;
  const label = `${count.toLocaleString('en-US')} x ${SIZE} B, source -> map -> sink, best of 3`;
  rows.push({ area: 'core', case: `${label} (pipeline)`, unit: 'msg/s', raw: rawRun.result, ours: oursRun.result, goal: 0.8, peakRssMiB: oursRun.peakRssMiB, note: `raw peak RSS ${rawRun.peakRssMiB.toFixed(0)} MiB` });
  rows.push({ area: 'core', case: `${label} (flow(), with stats)`, unit: 'msg/s', raw: rawRun.result, ours: flowRun.result, peakRssMiB: flowRun.peakRssMiB });
  rows.push({
    area: 'core',
    case: `${label}: flow() with its error policy vs a counting head without it (raw column), nothing failing`,
    unit: 'msg/s',
    raw: countingRun.result,
    ours: flowRun.result,
    goal: 0.95,
    peakRssMiB: flowRun.peakRssMiB,
    note: `counting head peak RSS ${countingRun.peakRssMiB.toFixed(0)} MiB`,
  });
  return rows;
};

export default area;
