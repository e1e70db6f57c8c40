import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setImmediate as tick } from 'node:timers/promises';
import { emitToFlowing } from '../../lib/core/hand-over.js';

/** A source whose chunks are offered by the test: through emitToFlowing, and push() when it declines (as the sources do). */
function source(options: ConstructorParameters<typeof Readable>[0] = {}): Readable & { offer(chunk: unknown): boolean } {
  const stream = new Readable({ objectMode: true, read() {}, ...options }) as Readable & { offer(chunk: unknown): boolean };
  stream.offer = (chunk) => {
    if (emitToFlowing(stream, chunk)) return true;
    stream.push(chunk);
    return false;
  };
  return stream;
}

describe('emitToFlowing', () => {
  it('calls a single data listener with the stream as this, and nothing is buffered', async () => {
    const s = source();
    const seen: Array<[unknown, unknown]> = [];
    s.on('data', function (this: unknown, chunk: unknown) {
      seen.push([this, chunk]);
    });
    await tick();
    assert.equal(s.offer('a'), true);
    assert.equal(s.offer('b'), true);
    assert.deepEqual(seen, [[s, 'a'], [s, 'b']]);
    assert.equal(s.readableLength, 0);
  });

  it('several listeners, and a once listener, each get every chunk they asked for, in order', async () => {
    const s = source();
    const first: unknown[] = [];
    const second: unknown[] = [];
    const onlyOnce: unknown[] = [];
    s.on('data', (c) => first.push(c));
    s.once('data', (c) => onlyOnce.push(c));
    s.on('data', (c) => second.push(c));
    await tick();
    for (const c of [1, 2, 3]) assert.equal(s.offer(c), true);
    assert.deepEqual(first, [1, 2, 3]);
    assert.deepEqual(second, [1, 2, 3]);
    assert.deepEqual(onlyOnce, [1]);
    // A lone once listener is stored as a function: called directly, it still removes itself.
    const t = source();
    const got: unknown[] = [];
    t.once('data', (c) => got.push(c));
    await tick();
    assert.equal(t.offer('x'), true);
    assert.equal(t.listenerCount('data'), 0);
    // No listener now, so the stream is no longer consuming: the next chunk is buffered, not lost.
    assert.equal(t.offer('y'), false);
    assert.deepEqual(got, ['x']);
    assert.equal(t.read(), 'y');
  });

  it('declines while the stream is paused or has chunks buffered, so order is kept', async () => {
    const s = source();
    const seen: unknown[] = [];
    s.on('data', (c) => {
      seen.push(c);
      if (c === 2) s.pause();
    });
    await tick();
    assert.equal(s.offer(1), true);
    assert.equal(s.offer(2), true);
    assert.equal(s.offer(3), false, 'paused: pushed');
    s.resume();
    // The buffered chunk goes first: a chunk offered while it is still buffered is pushed behind it.
    assert.equal(s.offer(4), false);
    await tick();
    assert.equal(s.offer(5), true);
    assert.deepEqual(seen, [1, 2, 3, 4, 5]);
  });

  it('declines before anything consumes the stream, and after it ended or was destroyed', async () => {
    const s = source();
    assert.equal(s.offer('early'), false);
    const seen: unknown[] = [];
    s.on('data', (c) => seen.push(c));
    await tick();
    assert.deepEqual(seen, ['early']);
    s.push(null);
    assert.equal(emitToFlowing(s, 'late'), false);
    const d = source();
    d.on('data', () => assert.fail('no chunk after destroy'));
    d.destroy();
    assert.equal(emitToFlowing(d, 'late'), false);
  });

  it('a stream made with captureRejections turns a listener that rejects into an error, as emit() does', async () => {
    const s = source({ captureRejections: true } as ConstructorParameters<typeof Readable>[0]);
    s.on('data', async () => {
      throw new Error('listener failed');
    });
    await tick();
    const failed = once(s, 'error');
    assert.equal(s.offer('a'), true);
    const [error] = (await failed) as [Error];
    assert.equal(error.message, 'listener failed');
  });

  it('into pipe() with a slow destination: every chunk arrives once, in order, with backpressure taking the buffer', async () => {
    const s = source({ highWaterMark: 4 });
    const got: number[] = [];
    const sink = new Writable({
      objectMode: true,
      highWaterMark: 2,
      write(chunk: number, _encoding, callback) {
        got.push(chunk);
        setImmediate(callback);
      },
    });
    const done = pipeline(s, new PassThrough({ objectMode: true, highWaterMark: 2 }), sink);
    await tick();
    let direct = 0;
    for (let i = 0; i < 200; i++) {
      if (s.offer(i)) direct += 1;
      if (i % 10 === 9) await tick();
    }
    s.push(null);
    await done;
    assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => i));
    assert.ok(direct > 0 && direct < 200, `some chunks handed over directly, some pushed (${direct} direct)`);
  });
});
