import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import { retryingSink } from '../../lib/core/retrying-sink.js';
import type { RetryEvent } from '../../lib/core/retry.js';

const transient = (text = 'connection reset'): Error => Object.assign(new Error(text), { code: 'ECONNRESET' });
const fast = { retries: 5, minTimeoutMs: 1, maxTimeoutMs: 5 };


function store() {
  const stored: string[] = [];
  /** Every write an inner sink took, in the order it took them (a broker's receive order). */
  const written: string[] = [];
  let failAfter: number | undefined;
  let failWith: Error = transient();
  let created = 0;
  const nackAll: Array<() => void> = [];
  return {
    stored,
    written,
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
          written.push(m.data.toString());
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

  it('three failures in a row, writes batched while it recovers: every message delivered, in write order', async () => {
    const s = store();
    s.failNext(30);
    let failures = 0;
    const items = Array.from({ length: 500 }, (_, i) => `m${i}`);
    const { messages, acked, nacked } = tracked(items);
    const sink = retryingSink(() => s.make(), { retry: fast, highWaterMark: 64 });
    sink.on('reconnect', () => {
      failures++;
      // The next sink fails too, twice, after a few writes of the re-send or of what came during the outage.
      if (failures < 3) s.failNext(7 + failures * 11);
    });
    await pipeline(Readable.from(messages), sink);
    assert.equal(failures, 3);
    assert.equal(acked.size, items.length);
    assert.equal(nacked.size, 0);
    // Stored in the order confirmed; taken in the order written, which is what must follow the outer writes.
    assert.deepEqual([...new Set(s.stored)].sort(), [...items].sort(), 'every message stored');
    const firsts = [...new Set(s.written)];
    const at = firsts.findIndex((v, i) => v !== items[i]);
    assert.deepEqual(firsts, items, `every message written on, first in the order written (from ${at}: ${firsts.slice(Math.max(0, at - 3), at + 6).join(' ')})`);
    // A re-send after each failure starts again from the oldest unacked message, and never jumps ahead.
    let highest = -1;
    for (const [i, data] of s.written.entries()) {
      const n = Number(data.slice(1));
      if (n > highest + 1) assert.fail(`write ${i} (${data}) jumped past m${highest + 1}`);
      highest = Math.max(highest, n);
    }
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
