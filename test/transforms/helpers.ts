/** What the transform tests share: tracked messages and a pipeline run that collects the output. */
import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createMessage, type Message } from '../../lib/core/message.js';

/** Messages whose acks and nacks are recorded by index. */
export function tracked(items: Array<string | Buffer>) {
  const acked: number[] = [];
  const nacked = new Map<number, Error>();
  const messages = items.map((data, i) =>
    createMessage({ data, key: `k${i}`, meta: { i }, onAck: () => acked.push(i), onNack: (e) => nacked.set(i, e) }));
  return { messages, acked, nacked };
}

/** Runs `input` through `stages` and returns what came out. */
export async function run(input: unknown[], ...stages: Transform[]): Promise<Message[]> {
  const out: Message[] = [];
  await (pipeline as unknown as (...s: unknown[]) => Promise<void>)(Readable.from(input), ...stages, new Writable({
    objectMode: true,
    write(m: Message, _e, cb) { out.push(m); cb(); },
  }));
  return out;
}
