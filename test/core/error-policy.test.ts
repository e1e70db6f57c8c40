import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { describePosition, type DeadLetterEnvelope } from '../../lib/core/error-policy.js';
import { flow, type DeadLetterEvent, type RedeliverEvent } from '../../lib/core/flow.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import { jsonAppend } from '../../lib/transforms/json-append.js';

interface Record_ {
  data: string | Buffer;
  key?: string;
  partition?: number;
}

/** A source of Messages with Kafka-like meta that records how each was settled. */
function source(records: Record_[], opts: { redelivers?: boolean } = {}) {
  const settled = new Map<number, 'ack' | 'nack'>();
  const messages = records.map((r, offset) =>
    createMessage({
      data: r.data,
      key: r.key,
      meta: { topic: 't', partition: r.partition ?? 0, offset: String(offset) },
      onAck: () => settled.set(offset, 'ack'),
      onNack: () => settled.set(offset, 'nack'),
    }),
  );
  const stream = Object.assign(Readable.from(messages), { redelivers: opts.redelivers ?? true });
  return { stream, settled };
}

/** A sink that asks `decide` per delivery (ack, or nack with an error) and records what it delivered, in order. */
function sink(decide: (m: Message, delivery: number) => Error | undefined = () => undefined, opts: { delayMs?: number; carriesHeaders?: boolean } = {}) {
  const delivered: Message[] = [];
  const seen: Array<{ data: string; attempt: number | undefined }> = [];
  const tries = new Map<string, number>();
  const stream = new Writable({
    objectMode: true,
    write(m: Message, _e, cb) {
      const n = (tries.get(m.data.toString()) ?? 0) + 1;
      tries.set(m.data.toString(), n);
      seen.push({ data: m.data.toString(), attempt: m.attempt });
      const settle = (): void => {
        const error = decide(m, n);
        if (error) m.nack(error);
        else {
          delivered.push(m);
          m.ack();
        }
      };
      if (opts.delayMs) setTimeout(settle, opts.delayMs);
      else settle();
      cb();
    },
  });
  if (opts.carriesHeaders) Object.assign(stream, { carriesHeaders: true });
  return { stream, delivered, seen, tries };
}

const fast = { minTimeoutMs: 20, maxTimeoutMs: 50 };

describe('flow error policy', () => {
  it('redelivers a nacked message with backoff until the sink takes it: delivered once, later records of its key behind it', async () => {
    const records = Array.from({ length: 200 }, (_, i) => ({ data: `r${i}`, key: `k${i % 5}` }));
    const src = source(records);
    const out = sink((m, n) => (m.data.toString() === 'r10' && n <= 2 ? new Error('sink busy') : undefined));
    const redeliveries: RedeliverEvent[] = [];
    const running = flow({ source: src.stream, sink: out.stream, maxAttempts: 5, retryBackoff: fast });
    running.events.on('redeliver', (e: RedeliverEvent) => redeliveries.push(e));
    const stats = await running;
    const order = out.delivered.map((m) => m.data.toString());
    assert.equal(order.filter((d) => d === 'r10').length, 1, 'delivered exactly once');
    assert.equal(order.length, 200);
    assert.deepEqual(redeliveries.map((e) => e.attempt), [2, 3]);
    assert.ok(redeliveries.every((e) => e.delayMs >= 20 && e.delayMs <= 50), 'backoff within retryBackoff');
    assert.equal(out.delivered.find((m) => m.data.toString() === 'r10')!.attempt, 3);
    // Records of key k0 read after r10 failed come after it; those of other keys were not held.
    const sameKey = order.filter((d) => Number(d.slice(1)) % 5 === 0);
    const at = sameKey.indexOf('r10');
    const laterInFlight = sameKey.slice(0, at).filter((d) => Number(d.slice(1)) > 10);
    // At most what was already downstream when the failure was known (the pipeline's buffers) went ahead.
    assert.ok(laterInFlight.length <= 8, `records of the key delivered ahead: ${laterInFlight.join(',')}`);
    assert.ok(order.indexOf('r11') < order.indexOf('r10'), 'other keys kept flowing');
    assert.equal(stats.redeliveries, 2);
    assert.equal(stats.acks, 200);
    assert.equal(stats.nacks, 0);
    assert.equal(stats.unsettled, 0);
    assert.equal([...src.settled.values()].filter((s) => s === 'ack').length, 200);
  });

  it('keeps order for the key when the sink nacks before taking the next message', async () => {
    // One key: everything after the poison record must wait for it.
    const records = Array.from({ length: 50 }, (_, i) => ({ data: `r${i}`, key: 'k' }));
    const src = source(records);
    const out = sink((m, n) => (m.data.toString() === 'r5' && n <= 2 ? new Error('not yet') : undefined), { delayMs: 1 });
    // A sink that settles each message before it takes the next: a one-at-a-time sink.
    const serial = new Writable({
      objectMode: true,
      highWaterMark: 1,
      write(m: Message, e, cb) {
        out.stream.write(m);
        setTimeout(cb, 3);
      },
    });
    await flow({ source: src.stream, sink: serial, maxAttempts: 3, retryBackoff: fast });
    const order = out.delivered.map((m) => m.data.toString());
    assert.equal(order.length, 50);
    const at = order.indexOf('r5');
    assert.deepEqual(order.slice(0, 5), ['r0', 'r1', 'r2', 'r3', 'r4']);
    // r6.. may only precede r5 if they were already handed to the sink when r5 failed (at most the head's buffer).
    assert.ok(at <= 5 + 17, `r5 delivered at ${at}`);
    const after = order.slice(at + 1).map((d) => Number(d.slice(1)));
    assert.deepEqual(after, [...after].sort((a, b) => a - b), 'what came after r5 is in order');
  });

  it('writes a message whose attempts are used up to the dead-letter sink, with headers, and acks the original only then', async () => {
    const src = source([{ data: 'ok1' }, { data: 'poison', key: 'p' }, { data: 'ok2' }]);
    const out = sink((m) => (m.data.toString() === 'poison' ? new ManifoldError('broker said no', { code: ErrorCodes.DELIVERY, retryable: true }) : undefined));
    const dlq = sink(() => undefined, { carriesHeaders: true, delayMs: 30 });
    const events: DeadLetterEvent[] = [];
    const running = flow({ source: src.stream, sink: out.stream, maxAttempts: 3, retryBackoff: fast, deadLetter: dlq.stream });
    running.events.on('deadletter', (e: DeadLetterEvent) => events.push(e));
    const stats = await running;
    assert.equal(out.tries.get('poison'), 3);
    assert.equal(dlq.delivered.length, 1);
    const dead = dlq.delivered[0]!;
    assert.equal(dead.data.toString(), 'poison', 'the original bytes, unchanged');
    assert.equal(dead.key, 'p');
    assert.equal(dead.headers!['x-manifold-dead-letter-attempts'], '3');
    assert.equal(dead.headers!['x-manifold-dead-letter-error-code'], ErrorCodes.DELIVERY);
    assert.match(dead.headers!['x-manifold-dead-letter-error']!, /broker said no/);
    assert.deepEqual(JSON.parse(dead.headers!['x-manifold-dead-letter-position']!), { topic: 't', partition: 0, offset: '1' });
    assert.equal(dead.headers!['x-manifold-dead-letter-source'], 'kafka');
    assert.ok(!Number.isNaN(Date.parse(dead.headers!['x-manifold-dead-letter-failed-at']!)));
    assert.equal(src.settled.get(1), 'ack', 'the original is acked once the dead-letter sink acked');
    assert.equal(stats.deadLettered, 1);
    assert.equal(stats.acks, 2);
    assert.equal(stats.redeliveries, 2);
    assert.equal(events[0]!.attempts, 3);
    assert.equal(stats.unsettled, 0);
  });

  it('a dead letter to a sink that routes by key (RabbitMQ) goes without the original key, which it keeps in a header', async () => {
    const src = source([{ data: 'poison', key: 'orders' }]);
    const out = sink(() => new ManifoldError('no', { code: ErrorCodes.INVALID_MESSAGE }));
    const dlq = sink(() => undefined, { carriesHeaders: true });
    Object.assign(dlq.stream, { routesByKey: true });
    await flow({ source: src.stream, sink: out.stream, deadLetter: dlq.stream });
    const dead = dlq.delivered[0]!;
    assert.equal(dead.key, undefined, 'the sink routes it by its own routingKey, not back to the source queue');
    assert.equal(dead.headers!['x-manifold-dead-letter-key'], 'orders');
    const { unwrapDeadLetter } = await import('../../lib/transforms/unwrap-dead-letter.js');
    const back = sink();
    await flow({ source: Readable.from([createMessage({ data: dead.data, headers: dead.headers })]), transforms: [unwrapDeadLetter()], sink: back.stream });
    assert.equal(back.delivered[0]!.key, 'orders', 'unwrapping gives the key back');
    assert.equal(back.delivered[0]!.headers, undefined);
  });

  it('skips retries for a record at fault (not JSON) and writes a JSON envelope to a sink without headers', async () => {
    const src = source([{ data: '{"a":1}' }, { data: 'not json' }, { data: Buffer.from([0xff, 0xfe]) }]);
    const out = sink();
    const dlq = sink();
    const stats = await flow({ source: src.stream, transforms: [jsonAppend({ seen: 1 })], sink: out.stream, maxAttempts: 5, retryBackoff: fast, deadLetter: dlq.stream, sourceName: 'kafka://127.0.0.1/t' });
    assert.equal(stats.redeliveries, 0, 'a record at fault is not redelivered');
    assert.equal(stats.deadLettered, 2);
    const envelope = JSON.parse(dlq.delivered[0]!.data.toString()) as DeadLetterEnvelope;
    assert.equal(envelope.manifoldDeadLetter, 1);
    assert.equal(envelope.data, 'not json');
    assert.equal(envelope.source, 'kafka://127.0.0.1/t');
    assert.equal(envelope.attempts, 1);
    assert.equal(envelope.error.code, ErrorCodes.INVALID_MESSAGE);
    assert.deepEqual(envelope.position, { topic: 't', partition: 0, offset: '1' });
    const second = JSON.parse(dlq.delivered[1]!.data.toString()) as DeadLetterEnvelope;
    assert.deepEqual(Buffer.from(second.dataBase64!, 'base64'), Buffer.from([0xff, 0xfe]));
    assert.equal(second.data, undefined);
  });

  it('without a dead-letter sink, fails naming the record and the cause; a source that cannot redeliver reports what was lost', async () => {
    const src = source([{ data: 'a' }, { data: 'b' }], { redelivers: false });
    const out = sink(() => new Error('refused'));
    const lost: Message[] = [];
    const running = flow({ source: src.stream, sink: out.stream, maxAttempts: 2, retryBackoff: fast });
    running.events.on('lost', (m: Message) => lost.push(m));
    await assert.rejects(running, (error: ManifoldError) => {
      assert.equal(error.code, ErrorCodes.UNDELIVERED);
      assert.match(error.message, /topic t partition 0 offset 0 could not be delivered after 2 attempt\(s\): refused/);
      assert.match(error.message, /lost/);
      assert.match(error.message, /2 message\(s\) were lost in all/);
      assert.equal(error.lost, 2);
      return true;
    });
    assert.equal(running.stats.lost, 2);
    assert.equal(lost.length, 2);
    assert.equal(out.tries.get('a'), 2, 'retried, not in a hot loop');
  });

  it('a redelivering source gets the message back (nacked) when the flow fails, and the error says it comes again', async () => {
    const src = source([{ data: 'a' }]);
    const out = sink(() => new Error('refused'));
    await assert.rejects(flow({ source: src.stream, sink: out.stream, maxAttempts: 1 }), /deliver it again on the next start/);
    assert.equal(src.settled.get(0), 'nack');
  });

  it('a graceful stop hands a message waiting for its retry back to a redelivering source at once', async () => {
    let push!: (m: Message) => void;
    const settled: string[] = [];
    const stream = Object.assign(new Readable({ objectMode: true, read() {} }), { redelivers: true });
    push = (m) => stream.push(m);
    const out = sink(() => new Error('down'));
    const running = flow({ source: stream, sink: out.stream, maxAttempts: 10, retryBackoff: { minTimeoutMs: 60_000, maxTimeoutMs: 60_000 } });
    push(createMessage({ data: 'x', meta: { shardId: 's-0', sequenceNumber: '1' }, onNack: () => settled.push('nack'), onAck: () => settled.push('ack') }));
    while (running.stats.redeliveries === 0) await sleep(5);
    const started = performance.now();
    const stats = await running.stop();
    assert.ok(performance.now() - started < 5000, 'the backoff did not hold the stop');
    assert.deepEqual(settled, ['nack']);
    assert.equal(stats.nacks, 1);
  });

  it('holds at most maxHeld messages, then stops reading the source', async () => {
    const records = Array.from({ length: 500 }, (_, i) => ({ data: `r${i}` })); // no key: one group
    const src = source(records);
    let read = 0;
    src.stream.on('data', () => (read += 1));
    let failing = true;
    const out = sink((m) => (failing && m.data.toString() === 'r0' ? new Error('later') : undefined));
    const running = flow({ source: src.stream, sink: out.stream, maxAttempts: 100, retryBackoff: { minTimeoutMs: 50, maxTimeoutMs: 50 }, maxHeld: 50 });
    await sleep(400);
    assert.ok(running.stats.messages < 50 + 16 * 3 + 20, `read ${running.stats.messages} while r0 waited`);
    failing = false;
    const stats = await running;
    assert.equal(stats.acks, 500);
    assert.equal(out.delivered[out.delivered.length - 1]!.data.toString(), 'r499');
    assert.ok(read >= 500);
  });

  it('names positions of every source kind', () => {
    const m = (meta: Record<string, unknown>) => createMessage({ data: 'x', meta });
    assert.equal(describePosition(m({ shardId: 'shardId-000000000001', sequenceNumber: '42' })), 'shard shardId-000000000001 at sequence number 42');
    assert.equal(describePosition(m({ queue: 'q', deliveryTag: 7 })), 'queue q delivery tag 7');
    assert.equal(describePosition(m({ line: 3 })), 'line 3');
  });

  it('rejects bad policy options naming them', () => {
    const make = () => ({ source: Readable.from([]), sink: new Writable({ objectMode: true, write: (_m, _e, cb) => cb() }) });
    assert.throws(() => flow({ ...make(), maxAttempts: 0 }), /flow: options.maxAttempts must be a positive integer, got 0/);
    assert.throws(() => flow({ ...make(), retryBackoff: { minTimeoutMs: 10, maxTimeoutMs: 5 } }), /retryBackoff.maxTimeoutMs/);
    assert.throws(() => flow({ ...make(), deadLetter: 'dlq' as never }), /options.deadLetter must be a Writable/);
    assert.throws(() => flow({ ...make(), deadLetterFormat: 'xml' as never }), /deadLetterFormat/);
  });
});

describe('unwrapDeadLetter', () => {
  it('gives back the original message from a JSON envelope or x-manifold headers, and names what is neither', async () => {
    const { unwrapDeadLetter } = await import('../../lib/transforms/unwrap-dead-letter.js');
    const src = source([{ data: 'one', key: 'k1' }, { data: Buffer.from([0xff, 0x00]), key: 'k2' }]);
    const out = sink((m) => (m.data.toString() === 'one' ? new ManifoldError('bad', { code: ErrorCodes.INVALID_MESSAGE }) : new ManifoldError('bad', { code: ErrorCodes.MESSAGE_TOO_LARGE })));
    const dlq = sink();
    await flow({ source: src.stream, sink: out.stream, deadLetter: dlq.stream });
    const withHeaders = createMessage({ data: 'h', key: 'k3', headers: { a: '1', 'x-manifold-dead-letter-attempts': '5' } });
    const records = [...dlq.delivered.map((m) => createMessage({ data: m.data })), withHeaders, createMessage({ data: 'plain' })];
    const back = sink();
    const nacked: Error[] = [];
    const unwrap = unwrapDeadLetter();
    unwrap.on('nack', (e: Error) => nacked.push(e));
    const stats = await flow({ source: Readable.from(records), transforms: [unwrap], sink: back.stream, maxAttempts: 1, deadLetter: sink().stream });
    assert.deepEqual(back.delivered.map((m) => [m.data.toString('hex'), m.key, m.headers]), [
      [Buffer.from('one').toString('hex'), 'k1', undefined],
      ['ff00', 'k2', undefined],
      [Buffer.from('h').toString('hex'), 'k3', { a: '1' }],
    ]);
    assert.equal(stats.deadLettered, 1);
    assert.match(nacked[0]!.message, /not a dead-letter record/);
  });
});
