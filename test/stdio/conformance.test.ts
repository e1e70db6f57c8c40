/** The stdio source and sink through the shared conformance suite, over in-memory streams. */
import { PassThrough, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { stdinSource } from '../../lib/stdio/source.js';
import { stdoutSink } from '../../lib/stdio/sink.js';
import { sinkConformance, sourceConformance } from '../conformance/suite.js';

sourceConformance({
  name: 'stdin',
  redelivers: false,
  async setup() {
    const input = new PassThrough();
    return {
      source: (options) => stdinSource({ input, ...(options?.signal ? { signal: options.signal } : {}) }),
      async produce(payloads) {
        // The PassThrough holds what the source has not read yet, as the kernel's pipe buffer would.
        for (const p of payloads) input.write(Buffer.concat([p, Buffer.from('\n')]));
      },
      async cleanup() {
        input.destroy();
      },
    };
  },
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
