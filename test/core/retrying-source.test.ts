import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import { retryingSource } from '../../lib/core/retrying-source.js';
import type { RetryEvent } from '../../lib/core/retry.js';

const transient = (text = 'connection reset'): Error => Object.assign(new Error(text), { code: 'ECONNRESET' });
const fast = { retries: 5, minTimeoutMs: 1, maxTimeoutMs: 5 };


function broker(items: string[]) {
  const queue = [...items];
  const delivered: string[] = [];
  let failAfter: number | undefined;
  let failWith: Error = transient();
  let created = 0;
  const make = () => {
    created++;
    const unacked = new Map<number, string>();
    let n = 0;
    let tag = 0;
    const source = new Readable({
      objectMode: true,
      read() {
        if (failAfter !== undefined && n >= failAfter) {
          failAfter = undefined;
          // The broker requeues what this consumer had not acked.
          queue.unshift(...unacked.values());
          unacked.clear();
          this.destroy(failWith);
          return;
        }
        const next = queue.shift();
        if (next === undefined) {
          this.push(null);
          return;
        }
        n++;
        const id = tag++;
        unacked.set(id, next);
        this.push(createMessage({ data: next, onAck: () => { unacked.delete(id); delivered.push(next); } }));
      },
    });
    return source;
  };
  return {
    make,
    delivered,
    get created() { return created; },
    failNext(after: number, error: Error = transient()) { failAfter = after; failWith = error; },
  };
}

async function collect(source: Readable): Promise<string[]> {
  const got: string[] = [];
  for await (const m of source as AsyncIterable<Message>) {
    got.push(m.data.toString());
    m.ack();
  }
  return got;
}

describe('retryingSource', () => {
  it('re-creates a failed source and keeps the outer stream going; redelivery comes from the system', async () => {
    const items = Array.from({ length: 100 }, (_, i) => `m${i}`);
    const b = broker(items);
    b.failNext(30);
    const events: RetryEvent[] = [];
    const source = retryingSource(() => b.make(), { retry: fast });
    source.on('reconnect', (e: RetryEvent) => events.push(e));
    const got = await collect(source);
    assert.deepEqual([...new Set(got)].sort(), [...items].sort());
    assert.equal(b.created, 2);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.error.message, 'connection reset');
  });

  it('fails the outer stream at once on a fatal error', async () => {
    const b = broker(['a', 'b', 'c']);
    b.failNext(1, Object.assign(new Error('ACCESS_REFUSED'), { code: 403 }));
    const source = retryingSource(() => b.make(), { retry: fast, what: 'consuming queue "q"' });
    await assert.rejects(collect(source), /consuming queue "q" failed: ACCESS_REFUSED/);
    assert.equal(b.created, 1);
  });

  it('gives up after the retry budget when no source can be made', async () => {
    let attempts = 0;
    const source = retryingSource(() => {
      attempts++;
      return new Readable({ objectMode: true, read() { this.destroy(transient('ECONNREFUSED 127.0.0.1:1')); } });
    }, { retry: { retries: 3, minTimeoutMs: 1, maxTimeoutMs: 2 }, what: 'connecting to amqp://127.0.0.1:1' });
    await assert.rejects(collect(source), (error: unknown) => {
      assert.ok(error instanceof ManifoldError);
      assert.equal(error.code, ErrorCodes.RETRIES_EXHAUSTED);
      assert.match(error.message, /connecting to amqp:\/\/127\.0\.0\.1:1 failed after 4 attempts: ECONNREFUSED 127\.0\.0\.1:1/);
      return true;
    });
    assert.equal(attempts, 4);
  });

  it('starts a fresh budget after a healthy source fails', async () => {
    const items = Array.from({ length: 60 }, (_, i) => `m${i}`);
    const b = broker(items);
    // Five failures in a row, each after some healthy reading: more than retries: 2 would allow in one outage.
    const source = retryingSource(() => {
      const s = b.make();
      if (b.created <= 5) b.failNext(5);
      return s;
    }, { retry: { retries: 2, minTimeoutMs: 1, maxTimeoutMs: 2 } });
    const got = await collect(source);
    assert.deepEqual([...new Set(got)].sort(), [...items].sort());
    assert.equal(b.created, 6);
  });

  it('a source that says ready and fails before delivering anything continues the outage: growing delays, then the budget ends', async () => {
    let made = 0;
    const source = retryingSource(() => {
      made += 1;
      const inner = new Readable({ objectMode: true, read() {} });
      setImmediate(() => {
        inner.emit('ready');
        setImmediate(() => inner.destroy(Object.assign(new Error('dropped'), { code: 'ECONNRESET' })));
      });
      return inner;
    }, { retry: { retries: 3, minTimeoutMs: 5, maxTimeoutMs: 1000, factor: 2 } });
    const delays: number[] = [];
    source.on('reconnect', (e: { attempt: number; delayMs: number }) => delays.push(e.attempt));
    source.resume();
    const error = await new Promise<Error>((resolve) => source.once('error', resolve));
    assert.match(error.message, /dropped/);
    assert.deepEqual(delays, [1, 2, 3], 'each short-lived connection is one more attempt of the same outage');
    assert.equal(made, 4);
  });

  it('forwards named events of the inner source', async () => {
    const inner = new Readable({ objectMode: true, read() {} });
    const source = retryingSource(() => inner, { forwardEvents: ['checkpoint'] });
    const seen: unknown[] = [];
    source.on('checkpoint', (x) => seen.push(x));
    source.resume();
    await sleep(10);
    inner.emit('checkpoint', { shardId: 's1' });
    inner.push(null);
    await new Promise((r) => source.once('end', r));
    assert.deepEqual(seen, [{ shardId: 's1' }]);
  });

  it('close() stops gracefully through the inner close()', async () => {
    let closedInner = false;
    const inner = Object.assign(new Readable({ objectMode: true, read() {} }), {
      async close() {
        closedInner = true;
        inner.push(createMessage({ data: 'last' }));
        inner.push(null);
      },
    });
    const source = retryingSource(() => inner);
    const collecting = collect(source);
    inner.push(createMessage({ data: 'first' }));
    await sleep(10);
    await source.close();
    assert.ok(closedInner);
    assert.deepEqual(await collecting, ['first', 'last']);
    await source.close(); // idempotent
  });

  it('close() during a reconnect wait ends the stream instead of failing it', async () => {
    const source = retryingSource(
      () => new Readable({ objectMode: true, read() { this.destroy(transient()); } }),
      { retry: { retries: 100, minTimeoutMs: 60_000, maxTimeoutMs: 60_000 } },
    );
    const collecting = collect(source);
    await new Promise((r) => source.once('reconnect', r));
    await source.close();
    assert.deepEqual(await collecting, []);
  });

  it('piped into a slow sink: a message straight to a flowing consumer or through the buffer, every one arrives once and in order, and backpressure pauses the inner source', async () => {
    const total = 20_000;
    let pauses = 0;
    let sent = 0;
    // A network-like inner source: bursts of 500 pushed from outside _read(), paused by the outer when it is full.
    const inner = new Readable({ objectMode: true, read() {} });
    inner.on('pause', () => (pauses += 1));
    const burst = (): void => {
      for (let i = 0; i < 500 && sent < total; i++) inner.push(createMessage({ data: String(sent++) }));
      if (sent < total) setImmediate(burst);
      else inner.push(null);
    };
    setImmediate(burst);
    const source = retryingSource(() => inner, { retry: fast });
    const got: number[] = [];
    const sink = new Writable({
      objectMode: true,
      highWaterMark: 4,
      write(message: Message, _encoding, callback) {
        got.push(Number(message.data.toString()));
        message.ack();
        // Every 50th write takes a while, so the outer stream's consumer falls behind and catches up again.
        if (got.length % 50 === 0) setTimeout(callback, 1);
        else callback();
      },
    });
    await pipeline(source, sink);
    assert.equal(got.length, total);
    for (let i = 0; i < total; i++) if (got[i] !== i) assert.fail(`message ${i} arrived as ${got[i]}`);
    assert.ok(pauses > 0, 'the slow sink paused the inner source');
  });

  it('is destroyed by its signal', async () => {
    const controller = new AbortController();
    const source = retryingSource(() => new Readable({ objectMode: true, read() {} }), { signal: controller.signal });
    source.resume();
    controller.abort();
    await assert.rejects(collect(source), { name: 'AbortError' });
  });

  it('rejects bad arguments at construction', () => {
    assert.throws(() => retryingSource(5 as never), /factory must be a function/);
    assert.throws(() => retryingSource(() => new Readable(), { retry: { retries: 'x' } as never }), /options\.retry\.retries must be a non-negative integer/);
    assert.throws(() => retryingSource(() => new Readable(), { bogus: 1 } as never), /unknown option "bogus"/);
  });
});

/**
 * A sink over an in-memory "broker" that stores what it confirms; it can be told to
 * fail after n writes, losing (not confirming) what it had in flight.
 */
