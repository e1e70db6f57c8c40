/**
 * The conformance suite every source and sink passes: open and close, abort
 * before start and mid-stream, at-least-once, bounded memory while the
 * consumer is 10x slower than the producer, and no handle left behind.
 *
 * A connector's test file calls `sourceConformance(harness)` or
 * `sinkConformance(harness)`; see harness.ts for what a harness provides.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { isMessage, type Message } from '../../lib/core/message.js';
import type { SinkFixture, SinkHarness, SourceFixture, SourceHarness } from './harness.js';

export type { SinkFixture, SinkHarness, SourceFixture, SourceHarness } from './harness.js';

function payloads(count: number, prefix: string, size = 0): Buffer[] {
  return Array.from({ length: count }, (_, i) => {
    const head = `${prefix}-${String(i).padStart(6, '0')}`;
    return Buffer.from(size > head.length ? head.padEnd(size, '.') : head);
  });
}

/** Counts of active handles by type, as Node reports them. */
function activeHandles(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const type of process.getActiveResourcesInfo()) counts.set(type, (counts.get(type) ?? 0) + 1);
  return counts;
}

/** Waits (bounded) until no handle type has more instances than in `before`; returns the excess. */
async function handlesReleased(before: Map<string, number>, waitMs = 3000): Promise<string[]> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const excess: string[] = [];
    for (const [type, count] of activeHandles()) {
      // Timers are owned by many libraries' pools (keep-alive agents); sockets, servers and child processes are ours.
      if (type === 'Timeout' || type === 'Immediate' || type === 'TTYWrap') continue;
      if (count > (before.get(type) ?? 0)) excess.push(`${type} x${count - (before.get(type) ?? 0)}`);
    }
    if (excess.length === 0 || Date.now() > deadline) return excess;
    await sleep(50);
  }
}

function isAbortError(error: unknown): boolean {
  return error instanceof Error && (error.name === 'AbortError' || (error as { code?: unknown }).code === 'ABORT_ERR');
}

/** Resolves with the stream's error (or undefined) once it has closed. */
function closed(stream: Readable | Writable, timeoutMs: number): Promise<Error | undefined> {
  return new Promise((resolve, reject) => {
    let error: Error | undefined;
    const timer = setTimeout(() => reject(new Error(`stream did not close within ${timeoutMs} ms`)), timeoutMs);
    stream.on('error', (e: Error) => {
      error ??= e;
    });
    if (stream.closed) {
      clearTimeout(timer);
      resolve(stream.errored ?? undefined);
      return;
    }
    stream.once('close', () => {
      clearTimeout(timer);
      resolve(error ?? stream.errored ?? undefined);
    });
  });
}

async function withTimeout<T>(what: string, timeoutMs: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: timed out after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function stopSource(source: Readable, timeoutMs: number): Promise<void> {
  const close = (source as Readable & { close?: () => Promise<void> }).close;
  if (typeof close === 'function' && !source.destroyed) {
    // close() ends the stream after what was fetched; drain it so 'end' can come.
    source.resume();
    await withTimeout('close()', timeoutMs, close.call(source));
  }
  if (!source.destroyed) source.destroy();
  await closed(source, timeoutMs).catch(() => undefined);
}

/**
 * Reads messages from `source` until `want(all)` is true, applying `settle`
 * to each (ack by default). Resolves with every message read.
 */
async function readUntil(
  source: Readable,
  timeoutMs: number,
  want: (received: Message[]) => boolean,
  settle: (message: Message, index: number) => void = (m) => m.ack(),
): Promise<Message[]> {
  const received: Message[] = [];
  if (want(received)) return received;
  return withTimeout(
    'reading the source',
    timeoutMs,
    new Promise<Message[]>((resolve, reject) => {
      const onData = (message: Message): void => {
        assert.ok(isMessage(message), 'a source emits Message objects');
        received.push(message);
        settle(message, received.length - 1);
        if (want(received)) {
          cleanup();
          source.pause();
          resolve(received);
        }
      };
      const onError = (error: Error): void => {
        cleanup();
        reject(error);
      };
      const onEnd = (): void => {
        cleanup();
        resolve(received);
      };
      const cleanup = (): void => {
        source.off('data', onData);
        source.off('error', onError);
        source.off('end', onEnd);
      };
      source.on('data', onData);
      source.on('error', onError);
      source.on('end', onEnd);
    }),
  );
}

function contents(messages: readonly Message[]): string[] {
  return messages.map((m) => m.data.toString());
}

/** Registers the source conformance tests for `harness`. */
export function sourceConformance(harness: SourceHarness): void {
  const timeoutMs = harness.timeoutMs ?? 20_000;
  const live = harness.liveOnly ?? false;

  describe(`${harness.name} source conformance`, () => {
    async function withFixture(fn: (fixture: SourceFixture) => Promise<void>): Promise<void> {
      const fixture = await harness.setup();
      try {
        await fn(fixture);
      } finally {
        await fixture.cleanup();
      }
    }

    it('delivers what was produced, then closes and releases its handles', async () => {
      const before = activeHandles();
      await withFixture(async (fixture) => {
        const sent = payloads(50, 'open-close');
        const source = fixture.source();
        if (!live) await fixture.produce(sent);
        const reading = readUntil(source, timeoutMs, (r) => new Set(contents(r)).size >= sent.length);
        if (live) {
          await sleep(200);
          await fixture.produce(sent);
        }
        const received = await reading;
        assert.deepEqual([...new Set(contents(received))].sort(), contents(sent.map((data) => ({ data }) as Message)).sort());
        await stopSource(source, timeoutMs);
        assert.ok(source.destroyed || source.readableEnded, 'the source has ended or been destroyed');
      });
      assert.deepEqual(await handlesReleased(before), [], 'no socket, server or process is left open');
    });

    it('fails with an AbortError and reads nothing when aborted before start', async () => {
      await withFixture(async (fixture) => {
        const controller = new AbortController();
        controller.abort();
        const source = fixture.source({ signal: controller.signal });
        const got: Message[] = [];
        source.on('data', (m: Message) => got.push(m));
        const error = await closed(source, timeoutMs);
        assert.ok(isAbortError(error), `expected an AbortError, got ${String(error)}`);
        assert.equal(got.length, 0);
      });
    });

    it('fails with an AbortError when aborted mid-stream', async () => {
      await withFixture(async (fixture) => {
        const controller = new AbortController();
        const source = fixture.source({ signal: controller.signal });
        const sent = payloads(20, 'abort-mid');
        if (!live) await fixture.produce(sent);
        const reading = readUntil(source, timeoutMs, (r) => r.length >= 5);
        if (live) {
          await sleep(200);
          await fixture.produce(sent);
        }
        await reading;
        const whenClosed = closed(source, timeoutMs);
        controller.abort();
        const error = await whenClosed;
        assert.ok(isAbortError(error), `expected an AbortError, got ${String(error)}`);
        assert.ok(source.destroyed);
      });
    });

    it('is at-least-once: nacked and unacked messages come back, or every message was delivered', async () => {
      await withFixture(async (fixture) => {
        const sent = payloads(40, 'alo');
        const expected = contents(sent.map((data) => ({ data }) as Message));
        const first = fixture.source();
        if (!live) await fixture.produce(sent);
        const acked = new Set<string>();
        // Ack the first half, nack every fourth message, leave the rest of the second half unsettled.
        const reading = readUntil(
          first,
          timeoutMs,
          (r) => new Set(contents(r)).size >= (harness.redelivers ? 30 : sent.length),
          (m, i) => {
            if (i % 4 === 3) m.nack(new Error('conformance: nacked on purpose'));
            else if (i < 20) {
              m.ack();
              acked.add(m.data.toString());
            }
          },
        );
        if (live) {
          await sleep(200);
          await fixture.produce(sent);
        }
        const firstRead = await reading;
        if (!harness.redelivers) {
          assert.deepEqual([...new Set(contents(firstRead))].sort(), expected.sort(), 'every message was delivered once');
          await stopSource(first, timeoutMs);
          return;
        }
        first.destroy();
        await closed(first, timeoutMs).catch(() => undefined);
        const second = fixture.source();
        const seen = new Set(acked);
        await readUntil(second, timeoutMs, () => expected.every((p) => seen.has(p)), (m) => {
          seen.add(m.data.toString());
          m.ack();
        });
        const missing = expected.filter((p) => !seen.has(p));
        assert.deepEqual(missing, [], 'every message not acked on the first source was redelivered');
        await stopSource(second, timeoutMs);
      });
    });

    // Real sinks ack later than they are written to (S3 after fsync, RabbitMQ after the confirm), and a backlog
    // fills the source's buffer at once: together they once stalled a source for good after its first buffers.
    const backlogSize = harness.backlog ?? 2000;

    /** Produces a backlog (live sources: starts reading first), reads it with `consume`, and checks every message came. */
    async function readBacklog(prefix: string, consume: (source: Readable, seen: Set<string>) => Promise<void>): Promise<void> {
      await withFixture(async (fixture) => {
        const sent = payloads(backlogSize, prefix);
        const expected = contents(sent.map((data) => ({ data }) as Message));
        const source = fixture.source();
        if (!live) await fixture.produce(sent);
        const seen = new Set<string>();
        const consuming = consume(source, seen);
        if (live) {
          await sleep(200);
          await fixture.produce(sent);
        }
        const progress = (): string => `${seen.size} of ${expected.length} read`;
        await withTimeout(`reading a backlog (${progress()})`, timeoutMs * 3, (async () => {
          while (seen.size < expected.length) {
            if (source.errored) throw source.errored;
            await sleep(20);
          }
        })()).catch((error: Error) => {
          throw new Error(`${error.message}; ${progress()}`);
        });
        assert.deepEqual(expected.filter((p) => !seen.has(p)), [], 'every message of the backlog was read');
        await stopSource(source, timeoutMs);
        await consuming;
      });
    }

    it('reads a backlog through a sink that acks asynchronously', async () => {
      await readBacklog('async-ack', async (source, seen) => {
        const sink = new Writable({
          objectMode: true,
          write(message: Message, _enc, callback) {
            seen.add(message.data.toString());
            callback();
            setImmediate(() => message.ack());
          },
        });
        await pipeline(source, sink).catch(() => undefined);
      });
    });

    it('reads a backlog with for await and an await in its body', async () => {
      await readBacklog('for-await', async (source, seen) => {
        try {
          for await (const message of source as AsyncIterable<Message>) {
            seen.add(message.data.toString());
            await new Promise((resolve) => setImmediate(resolve));
            message.ack();
          }
        } catch {
          // stopSource() may destroy the source under the loop.
        }
      });
    });

    it('keeps memory bounded while the consumer is 10x slower than the producer', async () => {
      await withFixture(async (fixture) => {
        const sent = payloads(live ? 2000 : 600, 'slow', 1024);
        const source = fixture.source();
        if (!live) await fixture.produce(sent);
        let maxBuffered = 0;
        let count = 0;
        const slow = new Writable({
          objectMode: true,
          highWaterMark: 1,
          write(message: Message, _enc, callback) {
            count += 1;
            maxBuffered = Math.max(maxBuffered, source.readableLength);
            message.ack();
            // The producer is a tight loop; 2 ms per message is far more than 10x slower than it.
            setTimeout(callback, 2);
          },
        });
        const running = pipeline(source, slow).catch(() => undefined);
        if (live) {
          await sleep(200);
          void fixture.produce(sent).catch(() => undefined);
        }
        await withTimeout('slow consumer', timeoutMs, (async () => {
          while (count < 150) await sleep(20);
        })());
        assert.ok(
          maxBuffered <= source.readableHighWaterMark + 16,
          `the source buffered at most its highWaterMark (${source.readableHighWaterMark}) + slack, saw ${maxBuffered}`,
        );
        await stopSource(source, timeoutMs);
        slow.destroy();
        // Node's pipeline() can stay pending over a source destroyed after it ended; what matters was checked above.
        await Promise.race([running, sleep(2000)]);
      });
    });
  });
}

/** Registers the sink conformance tests for `harness`. */
export function sinkConformance(harness: SinkHarness): void {
  const timeoutMs = harness.timeoutMs ?? 20_000;
  const ordered = harness.ordered ?? true;
  const maxUnackedBound = harness.maxUnacked ?? 2000;

  describe(`${harness.name} sink conformance`, () => {
    async function withFixture(fn: (fixture: SinkFixture) => Promise<void>): Promise<void> {
      const fixture = await harness.setup();
      try {
        await fn(fixture);
      } finally {
        await fixture.cleanup();
      }
    }

    function tracked(sent: Buffer[]): { messages: Message[]; acked: Set<number>; nacked: Set<number> } {
      const acked = new Set<number>();
      const nacked = new Set<number>();
      const messages = sent.map((data, i) => ({
        data,
        ack: () => {
          acked.add(i);
        },
        nack: () => {
          nacked.add(i);
        },
      }));
      return { messages, acked, nacked };
    }

    async function arrived(fixture: SinkFixture, want: (got: string[]) => boolean): Promise<string[]> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const got = (await fixture.readBack()).map((b) => b.toString());
        if (want(got) || Date.now() > deadline) return got;
        await sleep(100);
      }
    }

    it('delivers and acks every message, then finishes and releases its handles', async () => {
      const before = activeHandles();
      await withFixture(async (fixture) => {
        const sent = payloads(200, 'deliver');
        const { messages, acked } = tracked(sent);
        const sink = fixture.sink();
        await withTimeout('writing', timeoutMs, pipeline(Readable.from(messages), sink));
        assert.equal(acked.size, sent.length, 'every message was acked by the time the sink finished');
        const expected = sent.map(String);
        const got = await arrived(fixture, (g) => expected.every((p) => g.includes(p)));
        if (ordered) assert.deepEqual(got.filter((p) => expected.includes(p)).slice(0, expected.length), expected);
        else assert.deepEqual([...new Set(got)].sort(), [...expected].sort());
      });
      assert.deepEqual(await handlesReleased(before), [], 'no socket, server or process is left open');
    });

    it('accepts plain Buffers and strings', async () => {
      await withFixture(async (fixture) => {
        const sink = fixture.sink();
        await withTimeout('writing', timeoutMs, pipeline(Readable.from([Buffer.from('plain-buffer'), 'plain-string']), sink));
        const got = await arrived(fixture, (g) => g.includes('plain-buffer') && g.includes('plain-string'));
        assert.ok(got.includes('plain-buffer') && got.includes('plain-string'), `got ${JSON.stringify(got)}`);
      });
    });

    it('fails with an AbortError and delivers nothing when aborted before start', async () => {
      await withFixture(async (fixture) => {
        const controller = new AbortController();
        controller.abort();
        const sink = fixture.sink({ signal: controller.signal });
        const { messages, acked } = tracked(payloads(5, 'abort-before'));
        const error = await pipeline(Readable.from(messages), sink).then(() => undefined, (e: unknown) => e);
        assert.ok(isAbortError(error), `expected an AbortError, got ${String(error)}`);
        assert.equal(acked.size, 0);
      });
    });

    it('fails with an AbortError mid-stream, and every acked message arrived', async () => {
      await withFixture(async (fixture) => {
        const controller = new AbortController();
        const sink = fixture.sink({ signal: controller.signal });
        const sent = payloads(5000, 'abort-mid');
        const { messages, acked } = tracked(sent);
        const source = Readable.from(
          (async function* () {
            for (let i = 0; i < messages.length; i++) {
              if (i === 50) controller.abort();
              yield messages[i]!;
              if (i % 10 === 0) await sleep(0);
            }
          })(),
        );
        const error = await pipeline(source, sink).then(() => undefined, (e: unknown) => e);
        assert.ok(isAbortError(error), `expected an AbortError, got ${String(error)}`);
        assert.ok(acked.size < sent.length, 'the abort stopped the sink before the end');
        const ackedPayloads = [...acked].map((i) => sent[i]!.toString());
        const got = await arrived(fixture, (g) => ackedPayloads.every((p) => g.includes(p)));
        assert.deepEqual(ackedPayloads.filter((p) => !got.includes(p)), [], 'every acked message arrived');
      });
    });

    it('keeps memory bounded while the destination is slower than the producer', async () => {
      await withFixture(async (fixture) => {
        const sink = fixture.sink();
        const sent = payloads(3000, 'bounded', 512);
        const { messages, acked } = tracked(sent);
        let maxQueued = 0;
        let maxUnacked = 0;
        let produced = 0;
        const source = new Readable({
          objectMode: true,
          highWaterMark: 16,
          read() {
            maxQueued = Math.max(maxQueued, sink.writableLength);
            maxUnacked = Math.max(maxUnacked, produced - acked.size);
            this.push(produced < messages.length ? messages[produced++] : null);
          },
        });
        await withTimeout('writing', timeoutMs * 3, pipeline(source, sink));
        assert.equal(acked.size, sent.length);
        assert.ok(
          maxQueued <= sink.writableHighWaterMark + 16,
          `the sink queued at most its highWaterMark (${sink.writableHighWaterMark}) + slack, saw ${maxQueued}`,
        );
        // A sink that calls back at once but holds everything itself would pass the check above; this one catches it.
        assert.ok(maxUnacked <= maxUnackedBound, `at most ${maxUnackedBound} messages were written and not yet acked, saw ${maxUnacked}`);
      });
    });
  });
}
