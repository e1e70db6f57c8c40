import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes } from '../../lib/core/errors.js';
import { createMessage } from '../../lib/core/message.js';
import { stdoutSink } from '../../lib/stdio/sink.js';
import { sinkConformance } from '../conformance/suite.js';

function tracked(n: number) {
  const acked: number[] = [];
  const nacked = new Map<number, Error>();
  const messages = Array.from({ length: n }, (_, i) => createMessage({ data: `m${i}`, onAck: () => acked.push(i), onNack: (e) => nacked.set(i, e) }));
  return { messages, acked, nacked };
}

describe('stdoutSink', () => {
  it('writes each message plus a newline and acks after the write callback', async () => {
    const chunks: string[] = [];
    const output = new Writable({ write(c: Buffer, _e, cb) { chunks.push(c.toString()); setTimeout(cb, 1); } });
    const { messages, acked } = tracked(50);
    await pipeline(Readable.from(messages), stdoutSink({ output }));
    assert.equal(chunks.join(''), messages.map((m) => `${m.data}\n`).join(''));
    assert.equal(acked.length, 50);
    assert.ok(output.writableEnded, 'a non-stdout output is ended by default');
  });

  it('uses the delimiter and can leave the output open', async () => {
    const output = new PassThrough();
    let text = '';
    output.on('data', (c: Buffer) => { text += c.toString(); });
    await pipeline(Readable.from(['a', 'b']), stdoutSink({ output, delimiter: '\0', end: false }));
    assert.equal(text, 'a\0b\0');
    assert.equal(output.writableEnded, false);
  });

  it('applies the output\'s backpressure', async () => {
    let pending = 0;
    let maxPending = 0;
    const output = new Writable({
      highWaterMark: 64,
      write(_c, _e, cb) {
        pending++;
        maxPending = Math.max(maxPending, output.writableLength);
        setTimeout(() => { pending--; cb(); }, 1);
      },
    });
    const { messages, acked } = tracked(500);
    await pipeline(Readable.from(messages), stdoutSink({ output }));
    assert.equal(acked.length, 500);
    assert.ok(maxPending < 64 * 16, `output buffer stayed bounded, saw ${maxPending} bytes`);
  });

  it('on EPIPE: emits outputclose, nacks what it could not write, and finishes without error', async () => {
    const output = new Writable({ write(_c, _e, _cb) { /* the reader is gone: never completes */ } });
    const sink = stdoutSink({ output });
    const { messages, acked, nacked } = tracked(20);
    let closedEvent: (Error & { code?: string }) | undefined;
    sink.on('outputclose', (e: Error) => { closedEvent = e; });
    const source = Readable.from((async function* () {
      for (const [i, m] of messages.entries()) {
        if (i === 5) output.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
        yield m;
        await sleep(0);
      }
    })());
    await pipeline(source, sink);
    assert.equal(closedEvent?.code, ErrorCodes.OUTPUT_CLOSED);
    assert.equal(acked.length, 0);
    assert.equal(nacked.size, 20);
    assert.match(nacked.get(19)!.message, /stdoutSink: the output is closed \(write EPIPE\); message not delivered/);
    assert.ok(sink.outputClosed);
  });

  it('fails with a clear error on other output errors', async () => {
    const output = new Writable({ write(_c, _e, cb) { cb(Object.assign(new Error('no space left'), { code: 'ENOSPC' })); } });
    await assert.rejects(pipeline(Readable.from(['a', 'b']), stdoutSink({ output })), /stdoutSink: writing the output failed: no space left/);
  });

  it('rejects bad options at construction', () => {
    assert.throws(() => stdoutSink({ output: {} as never }), /stdoutSink: options\.output must be a writable byte stream/);
    assert.throws(() => stdoutSink({ end: 'yes' as never }), /options\.end must be true or false/);
  });
});

sinkConformance({
  name: 'stdout',
  async setup() {
    const lines: Buffer[] = [];
    let rest = '';
    // A slow reader: the destination takes 1 ms per write, so the sink must apply backpressure.
    const output = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _enc, callback) {
        const text = rest + chunk.toString();
        const parts = text.split('\n');
        rest = parts.pop() ?? '';
        for (const p of parts) lines.push(Buffer.from(p));
        void sleep(1).then(() => callback());
      },
    });
    return {
      sink: (options) => stdoutSink({ output, end: false, ...(options?.signal ? { signal: options.signal } : {}) }),
      readBack: async () => [...lines],
      async cleanup() {
        output.destroy();
      },
    };
  },
});
