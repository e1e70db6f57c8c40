import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Readable, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import { retryingSink, takeMessages, type TakesMessages } from '../../lib/core/retrying-sink.js';
import type { RetryEvent } from '../../lib/core/retry.js';

const transient = (text = 'connection reset'): Error => Object.assign(new Error(text), { code: 'ECONNRESET' });
const fast = { retries: 5, minTimeoutMs: 1, maxTimeoutMs: 5 };


/**
 * Inner sinks that store what they are given, confirm asynchronously in batches of 3, and can be told to fail.
 * With `direct`, each also takes messages past its Writable buffer (TakesMessages): at once, or once
 * `readyAfterMs` passed after it was made; and its first `slowWrites` writes through write() call back after a timer, so writes sit
 * in its buffer while the outer sink goes on (the hand-over must not overtake them).
 */
function store(options: { direct?: boolean; readyAfterMs?: number; slowWrites?: number; connectMs?: number } = {}) {
  const stored: string[] = [];
  /** Every write an inner sink took, in the order it took them (a broker's receive order). */
  const written: string[] = [];
  let failAfter: number | undefined;
  let failWith: Error = transient();
  let created = 0;
  let handedOver = 0;
  let viaWrite = 0;
  return {
    stored,
    written,
    get created() { return created; },
    /** Messages taken through the direct hand-over, and through write(). */
    get handedOver() { return handedOver; },
    get viaWrite() { return viaWrite; },
    failNext(after: number, error: Error = transient()) { failAfter = after; failWith = error; },
    make() {
      created++;
      let writes = 0;
      const unconfirmed: Message[] = [];
      const take = (m: Message, cb: (error?: Error | null) => void): void => {
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
      };
      let slow = options.slowWrites ?? 0;
      const sink: Writable = new Writable({
        objectMode: true,
        // Room for the writes that wait behind the slow ones, so the outer sink does not wait for a drain.
        highWaterMark: options.slowWrites ? 1000 : 16,
        ...(options.connectMs === undefined ? {} : { construct: (cb: () => void) => void setTimeout(cb, options.connectMs) }),
        write(m: Message, _e, cb) {
          viaWrite++;
          if (slow > 0) {
            slow--;
            setTimeout(() => take(m, cb), 2);
            return;
          }
          take(m, cb);
        },
        final(cb) {
          const batch = unconfirmed.splice(0);
          for (const u of batch) { stored.push(u.data.toString()); u.ack(); }
          cb();
        },
      });
      if (options.direct) {
        let ready = options.readyAfterMs === undefined;
        if (!ready) setTimeout(() => (ready = true), options.readyAfterMs).unref();
        (sink as Writable & TakesMessages)[takeMessages] = (messages, callback) => {
          if (!ready || sink.destroyed) return false;
          let i = 0;
          const next = (error?: Error | null): void => {
            if (error) callback(error);
            else if (i === messages.length) callback();
            else {
              handedOver++;
              take(messages[i++]!, next);
            }
          };
          next();
          return true;
        };
      }
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

  // With direct, the inner sinks take the batches past their Writable buffer (TakesMessages); a failure is then an
  // error in the hand-over's callback.
  for (const direct of [false, true]) {
    it(`three failures in a row${direct ? ', inner sinks taking messages directly' : ''}, writes batched while it recovers: every message delivered, in write order`, async () => {
      const s = store({ direct });
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
      if (direct) assert.ok(s.handedOver > s.written.length / 2, `handed over ${s.handedOver} of ${s.written.length}`);
    });
  }

  it('an inner sink that takes messages directly: used once it can, never ahead of writes buffered in it; order and acks kept', async () => {
    // Not ready for 30 ms (connecting): the first messages go through write(), the first 20 of them slowly.
    const s = store({ direct: true, readyAfterMs: 30, slowWrites: 20 });
    const items = Array.from({ length: 3000 }, (_, i) => `m${i}`);
    const { messages, acked, nacked } = tracked(items);
    const slowly = Readable.from((async function* () {
      for (const [i, m] of messages.entries()) {
        // A source slower than the sink at first, so the hand-over starts while writes still sit in the inner buffer.
        if (i < 200 && i % 10 === 0) await new Promise((r) => setTimeout(r, 2));
        yield m;
      }
    })());
    await pipeline(slowly, retryingSink(() => s.make(), { retry: fast, highWaterMark: 32 }));
    assert.ok(s.viaWrite > 20, `through write(): ${s.viaWrite}`);
    assert.ok(s.handedOver > 1000, `handed over: ${s.handedOver}`);
    assert.equal(s.viaWrite + s.handedOver, items.length);
    assert.deepEqual(s.written, items, 'taken in the order written');
    assert.equal(acked.size, items.length);
    assert.equal(nacked.size, 0);
  });

  it('an inner sink that declines the hand-over while connecting: every message goes through write(), also past a full inner buffer', { timeout: 10_000 }, async () => {
    // Ready only after the whole run: each batch is declined and written with write(); while the inner sink connects
    // its buffer (16) fills, and the rest of a batch waits for the drain.
    const s = store({ direct: true, readyAfterMs: 60_000, connectMs: 30 });
    const items = Array.from({ length: 200 }, (_, i) => `m${i}`);
    const { messages, acked, nacked } = tracked(items);
    const sink = retryingSink(() => s.make(), { retry: fast, highWaterMark: 256 });
    // Written at once, as a program does before the connect: the outer sink takes them as one batch (_writev).
    for (const m of messages) sink.write(m);
    sink.end();
    await finished(sink);
    assert.equal(s.handedOver, 0);
    assert.equal(s.created, 1, 'no second inner sink (a message skipped would be re-sent by one after the end)');
    assert.deepEqual(s.written, items);
    assert.equal(acked.size, items.length);
    assert.equal(nacked.size, 0);
  });

  it('a fatal nack while an inner sink takes messages directly reaches the outer message; the rest are acked', async () => {
    const s = store({ direct: true });
    const items = Array.from({ length: 100 }, (_, i) => (i === 50 ? 'too-large-50' : `m${i}`));
    const { messages, acked, nacked } = tracked(items);
    await pipeline(Readable.from(messages), retryingSink(() => s.make(), { retry: fast }));
    assert.equal(s.viaWrite, 0);
    assert.equal(nacked.get('too-large-50')?.message, 'record too large');
    assert.equal(acked.size, 99);
    assert.equal(s.created, 1);
  });

  it('an inner sink destroyed while it holds a hand-over callback: the outer write goes on, every message delivered', { timeout: 10_000 }, async () => {
    let made = 0;
    const stored: string[] = [];
    const sink = retryingSink(() => {
      made++;
      const first = made === 1;
      const inner = new Writable({ objectMode: true, write(m: Message, _e, cb) { stored.push(m.data.toString()); m.ack(); cb(); } });
      (inner as Writable & TakesMessages)[takeMessages] = (messages, callback) => {
        if (first) {
          // Takes the batch, never calls back, and dies a moment later (a connection lost while it waited for room).
          setTimeout(() => inner.destroy(transient('connection lost')), 5);
          return true;
        }
        for (const m of messages) {
          stored.push(m.data.toString());
          m.ack();
        }
        callback();
        return true;
      };
      return inner;
    }, { retry: fast });
    const items = Array.from({ length: 50 }, (_, i) => `m${i}`);
    const { messages, acked, nacked } = tracked(items);
    await pipeline(Readable.from(messages), sink);
    assert.equal(made, 2);
    assert.equal(acked.size, items.length);
    assert.equal(nacked.size, 0);
    assert.deepEqual([...new Set(stored)].sort(), [...items].sort());
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
