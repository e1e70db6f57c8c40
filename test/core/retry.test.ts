import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import { backoffDelay, resolveRetry, retryingSink, retryingSource, withRetry, type RetryEvent } from '../../lib/core/retry.js';

const transient = (text = 'connection reset'): Error => Object.assign(new Error(text), { code: 'ECONNRESET' });
const fast = { retries: 5, minTimeoutMs: 1, maxTimeoutMs: 5 };

describe('resolveRetry', () => {
  it('fills defaults and validates each field by name', () => {
    assert.deepEqual(resolveRetry('x', undefined), { retries: 10, minTimeoutMs: 200, maxTimeoutMs: 30_000, factor: 2, signal: undefined });
    assert.equal(resolveRetry('x', false).retries, 0);
    assert.throws(() => resolveRetry('rabbitmqSource', { retries: -1 }), /rabbitmqSource: options\.retry\.retries must be a non-negative integer, got -1/);
    assert.throws(() => resolveRetry('x', { minTimeoutMs: 100, maxTimeoutMs: 10 }), /maxTimeoutMs \(10\) must be at least options\.retry\.minTimeoutMs \(100\)/);
    assert.throws(() => resolveRetry('x', { retires: 3 } as never), /unknown option "retires"/);
  });

  it('computes jittered exponential delays within bounds', () => {
    const r = resolveRetry('x', { minTimeoutMs: 100, maxTimeoutMs: 1000 });
    for (let i = 0; i < 50; i++) {
      const first = backoffDelay(r, 1);
      assert.ok(first >= 100 && first <= 200, String(first));
      const third = backoffDelay(r, 3);
      assert.ok(third >= 400 && third <= 800, String(third));
      assert.ok(backoffDelay(r, 20) <= 1000);
    }
  });
});

describe('withRetry', () => {
  it('retries transient failures and reports each retry', async () => {
    const events: RetryEvent[] = [];
    let calls = 0;
    const result = await withRetry('connecting', async () => {
      calls++;
      if (calls < 3) throw transient();
      return 'ok';
    }, resolveRetry('t', fast), (e) => events.push(e));
    assert.equal(result, 'ok');
    assert.equal(calls, 3);
    assert.deepEqual(events.map((e) => e.attempt), [1, 2]);
    assert.ok(events.every((e) => e.error.message === 'connection reset'));
  });

  it('does not retry a fatal error, and wraps it naming what failed', async () => {
    let calls = 0;
    await assert.rejects(
      withRetry('opening queue "q"', async () => {
        calls++;
        throw Object.assign(new Error('NOT_FOUND - no queue'), { code: 404 });
      }, resolveRetry('t', fast)),
      (error: unknown) => {
        assert.ok(error instanceof ManifoldError);
        assert.match(error.message, /^opening queue "q" failed: NOT_FOUND - no queue$/);
        assert.equal(error.retryable, false);
        return true;
      },
    );
    assert.equal(calls, 1);
  });

  it('passes a fatal ManifoldError through as it is', async () => {
    const fatal = new ManifoldError('bad credentials for amqp://u:***@h', { code: ErrorCodes.AUTH });
    await assert.rejects(withRetry('x', async () => { throw fatal; }, resolveRetry('t', fast)), (e) => e === fatal);
  });

  it('gives up after the budget with RETRIES_EXHAUSTED and the last cause', async () => {
    let calls = 0;
    await assert.rejects(
      withRetry('connecting to ws://feed', async () => {
        calls++;
        throw transient(`refused ${calls}`);
      }, resolveRetry('t', { retries: 2, minTimeoutMs: 1, maxTimeoutMs: 2 })),
      (error: unknown) => {
        assert.ok(error instanceof ManifoldError);
        assert.equal(error.code, ErrorCodes.RETRIES_EXHAUSTED);
        assert.match(error.message, /^connecting to ws:\/\/feed failed after 3 attempts: refused 3$/);
        assert.equal((error.cause as Error).message, 'refused 3');
        return true;
      },
    );
    assert.equal(calls, 3);
  });

  it('stops waiting at once when its signal aborts', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const running = withRetry('x', async () => { throw transient(); }, resolveRetry('t', { retries: 100, minTimeoutMs: 10_000 }), undefined, controller.signal);
    setTimeout(() => controller.abort(new ManifoldError('stop', { code: ErrorCodes.ABORTED })), 20);
    await assert.rejects(running, /stop/);
    assert.ok(Date.now() - started < 5000);
  });

  it('with retry: false makes a single attempt', async () => {
    let calls = 0;
    await assert.rejects(withRetry('x', async () => { calls++; throw transient(); }, resolveRetry('t', false)), /x failed: connection reset/);
    assert.equal(calls, 1);
  });
});

/**
 * A source over an in-memory "broker": it reads from a shared queue, and can be told
 * to fail after n messages. Unacked messages go back to the queue when it fails,
 * as a broker requeues them.
 */
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
function store() {
  const stored: string[] = [];
  let failAfter: number | undefined;
  let failWith: Error = transient();
  let created = 0;
  const nackAll: Array<() => void> = [];
  return {
    stored,
    get created() { return created; },
    failNext(after: number, error: Error = transient()) { failAfter = after; failWith = error; },
    make() {
      created++;
      let writes = 0;
      const unconfirmed: Message[] = [];
      const sink: Writable = new Writable({
        objectMode: true,
        write(m: Message, _e, cb) {
          writes++;
          if (failAfter !== undefined && writes > failAfter) {
            failAfter = undefined;
            // A dying sink nacks what it had not confirmed (a retryable error): the wrapper must re-send, not nack.
            for (const u of unconfirmed) u.nack(transient('channel closed'));
            cb(failWith);
            return;
          }
          if (m.data.toString().startsWith('too-large')) {
            m.nack(new ManifoldError('record too large', { code: ErrorCodes.MESSAGE_TOO_LARGE }));
            cb();
            return;
          }
          unconfirmed.push(m);
          // Confirm asynchronously, in batches, like a broker.
          if (unconfirmed.length >= 3) {
            const batch = unconfirmed.splice(0);
            setImmediate(() => { for (const u of batch) { stored.push(u.data.toString()); u.ack(); } });
          }
          cb();
        },
        final(cb) {
          const batch = unconfirmed.splice(0);
          for (const u of batch) { stored.push(u.data.toString()); u.ack(); }
          cb();
        },
      });
      nackAll.push(() => {});
      return sink;
    },
  };
}

function tracked(items: string[]) {
  const acked = new Set<string>();
  const nacked = new Map<string, Error>();
  const messages = items.map((data) => createMessage({ data, onAck: () => acked.add(data), onNack: (e) => nacked.set(data, e) }));
  return { messages, acked, nacked };
}

describe('retryingSink', () => {
  it('re-creates a failed sink and re-writes every unacked message; nothing written is lost', async () => {
    const s = store();
    s.failNext(40);
    const items = Array.from({ length: 200 }, (_, i) => `m${i}`);
    const { messages, acked, nacked } = tracked(items);
    const events: RetryEvent[] = [];
    const sink = retryingSink(() => s.make(), { retry: fast });
    sink.on('reconnect', (e: RetryEvent) => events.push(e));
    await pipeline(Readable.from(messages), sink);
    assert.equal(acked.size, items.length);
    assert.equal(nacked.size, 0);
    assert.deepEqual([...new Set(s.stored)].sort(), [...items].sort());
    assert.equal(s.created, 2);
    assert.equal(events.length, 1);
    assert.equal(sink.pending, 0);
  });

  it('passes a fatal nack through to the outer message and carries on', async () => {
    const s = store();
    const { messages, acked, nacked } = tracked(['a', 'too-large-1', 'b']);
    await pipeline(Readable.from(messages), retryingSink(() => s.make(), { retry: fast }));
    assert.deepEqual([...acked].sort(), ['a', 'b']);
    assert.equal(nacked.get('too-large-1')?.message, 'record too large');
    assert.equal(s.created, 1);
  });

  it('fails on a fatal sink error and nacks what it could not deliver', async () => {
    const s = store();
    s.failNext(5, Object.assign(new Error('ACCESS_REFUSED'), { code: 403 }));
    const { messages, nacked } = tracked(Array.from({ length: 20 }, (_, i) => `m${i}`));
    await assert.rejects(pipeline(Readable.from(messages), retryingSink(() => s.make(), { retry: fast, what: 'publishing to exchange "x"' })), /publishing to exchange "x" failed: ACCESS_REFUSED/);
    assert.ok(nacked.size > 0);
    assert.equal(s.created, 1);
  });

  it('gives up after the budget when every new sink fails', async () => {
    let created = 0;
    const sink = retryingSink(() => {
      created++;
      return new Writable({ objectMode: true, write(_m, _e, cb) { cb(transient('ECONNREFUSED')); } });
    }, { retry: { retries: 2, minTimeoutMs: 1, maxTimeoutMs: 2 }, what: 'connecting to ws://127.0.0.1:1' });
    const { messages } = tracked(['a']);
    await assert.rejects(pipeline(Readable.from(messages), sink), (error: unknown) => {
      assert.ok(error instanceof ManifoldError);
      assert.equal(error.code, ErrorCodes.RETRIES_EXHAUSTED);
      assert.match(error.message, /connecting to ws:\/\/127\.0\.0\.1:1 failed after 3 attempts: ECONNREFUSED/);
      return true;
    });
    assert.equal(created, 3);
  });

  it('recovers when the sink fails while flushing', async () => {
    const s = store();
    let made = 0;
    const sink = retryingSink(() => {
      made++;
      const inner = s.make();
      if (made === 1) {
        inner._final = (cb) => cb(transient('lost during flush'));
      }
      return inner;
    }, { retry: fast });
    const { messages, acked } = tracked(['x', 'y']);
    await pipeline(Readable.from(messages), sink);
    assert.deepEqual([...acked].sort(), ['x', 'y']);
    assert.deepEqual([...new Set(s.stored)].sort(), ['x', 'y']);
    assert.equal(made, 2);
  });

  it('rejects non-messages with a clear error', async () => {
    const s = store();
    await assert.rejects(pipeline(Readable.from([{ nope: true }]), retryingSink(() => s.make())), /expected a Message, Buffer, Uint8Array or string/);
  });

  it('is destroyed by its signal', async () => {
    const controller = new AbortController();
    controller.abort();
    const s = store();
    await assert.rejects(pipeline(Readable.from(['a']), retryingSink(() => s.make(), { signal: controller.signal })), { name: 'AbortError' });
  });

  it('rejects bad arguments at construction', () => {
    assert.throws(() => retryingSink('x' as never), /factory must be a function/);
  });
});
