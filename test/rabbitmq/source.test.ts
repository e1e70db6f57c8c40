import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import type { Message } from '../../lib/core/message.js';
import { rabbitmqSource, type RabbitmqSource, type RabbitmqSourceOptions } from '../../lib/rabbitmq/source.js';
import { sourceConformance } from '../conformance/suite.js';
import { RABBITMQ_URL, RabbitFixture, closeConnectionsNamed, randomName, until, waitForConnection } from '../fixtures/rabbitmq.js';

const FAST_RETRY = { retries: 40, minTimeoutMs: 50, maxTimeoutMs: 500 };

function fixture(t: TestContext): RabbitFixture {
  const f = new RabbitFixture();
  t.after(() => f.cleanup());
  return f;
}

function source(t: TestContext, options: RabbitmqSourceOptions): RabbitmqSource {
  const s = rabbitmqSource({ url: RABBITMQ_URL, retry: FAST_RETRY, connectionName: randomName('src'), ...options });
  s.on('error', () => {});
  t.after(() => {
    s.destroy();
  });
  return s;
}

/** Collects messages as they arrive; the caller settles them. */
function collect(s: RabbitmqSource): Message[] {
  const got: Message[] = [];
  s.on('data', (m: Message) => got.push(m));
  return got;
}

function payloads(n: number, prefix = 'm'): Buffer[] {
  return Array.from({ length: n }, (_, i) => Buffer.from(`${prefix}-${i}`));
}

describe('rabbitmqSource options', () => {
  test('a malformed URL is rejected at construction, without its password', () => {
    assert.throws(
      () => rabbitmqSource({ url: 'amqp://guest:s3cret@[bad', queue: 'q' }),
      (err: ManifoldError) => {
        assert.equal(err.code, ErrorCodes.INVALID_OPTION);
        assert.match(err.message, /rabbitmqSource: options\.url must be an amqp:\/\/ or amqps:\/\/ URL/);
        assert.doesNotMatch(err.message, /s3cret/);
        return true;
      },
    );
    assert.throws(() => rabbitmqSource({ url: 'http://guest:s3cret@localhost', queue: 'q' }), (err: ManifoldError) => {
      assert.match(err.message, /options\.url .*got "http:\/\/guest:\*\*\*@localhost/);
      assert.doesNotMatch(err.message, /s3cret/);
      return true;
    });
  });

  test('each bad option names itself, the value and what is allowed', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{}, /options\.queue must be a non-empty string, got undefined/],
      [{ queue: 'q', prefetch: 0 }, /options\.prefetch must be a positive integer of at most 65535, got 0/],
      [{ queue: 'q', nackRequeue: 'no' }, /options\.nackRequeue must be true or false, got "no"/],
      [{ queue: 'q', closeTimeoutMs: -1 }, /options\.closeTimeoutMs must be a number of at least 0 \(milliseconds\), got -1/],
      [{ queue: 'q', prefetchCount: 5 }, /unknown option "prefetchCount" \(did you mean "prefetch"\?\)/],
      [{ queue: 'q', assert: { bindings: [{ routingKey: 'a' }] } }, /options\.assert\.bindings\[0\]\.exchange must be a non-empty string/],
      [{ queue: 'q', assert: { queue: { durabel: true } } }, /options\.assert\.queue: unknown option "durabel"/],
      [{ queue: 'q', retry: { retries: -1 } }, /rabbitmqSource: options\.retry\.retries must be a non-negative integer, got -1/],
      [{ queue: 'q', url: 42 }, /options\.url must be an amqp:\/\/ or amqps:\/\/ URL string, got 42/],
      [{ queue: 'q', prefech: 5 }, /unknown option "prefech" \(did you mean "prefetch"\?\)/],
      [{ queue: 7 }, /options\.queue must be a non-empty string, got 7/],
      [{ queue: 'q', assert: 7 }, /options\.assert must be true, false or an object \{ queue, bindings \}, got 7/],
      [{ queue: 'q', assert: { bindings: [{ exchange: 'x', exchangeOptions: { durabel: true } }] } }, /options\.assert\.bindings\[0\]\.exchangeOptions: unknown option "durabel" \(did you mean "durable"\?\)/],
      [{ queue: 'q', connectionName: '' }, /options\.connectionName must be a non-empty string, got ""/],
    ];
    for (const [options, expected] of cases) {
      assert.throws(() => rabbitmqSource(options as unknown as RabbitmqSourceOptions), (err: ManifoldError) => {
        assert.equal(err.code, ErrorCodes.INVALID_OPTION, err.message);
        assert.match(err.message, expected);
        return true;
      });
    }
  });
});

describe('rabbitmqSource', () => {
  test('delivers content, routing key, headers, timestamp and meta; acks remove the messages', async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    await f.produce(queue, payloads(3), { headers: { tenant: 'acme', n: 5, ok: true }, timestamp: 1_700_000_000, messageId: 'id-1', contentType: 'text/plain' });
    const s = source(t, { queue, prefetch: 10 });
    const got = collect(s);
    await until('3 messages', () => got.length === 3);
    assert.deepEqual(got.map((m) => m.data.toString()), ['m-0', 'm-1', 'm-2']);
    const first = got[0]!;
    assert.equal(first.key, queue);
    assert.deepEqual(first.headers, { tenant: 'acme', n: '5', ok: 'true' });
    assert.equal(first.timestamp, 1_700_000_000_000);
    assert.equal(first.meta?.exchange, '');
    assert.equal(first.meta?.redelivered, false);
    assert.equal(first.meta?.queue, queue);
    assert.equal(first.meta?.messageId, 'id-1');
    assert.equal(first.meta?.contentType, 'text/plain');
    assert.equal(typeof first.meta?.deliveryTag, 'number');
    for (const m of got) m.ack();
    await s.close();
    assert.equal(await f.count(queue), 0, 'acked messages are gone from the queue');
    // Acked in one turn, in delivery order: one multiple ack.
    assert.deepEqual(s.stats, { connections: 1, delivered: 3, redelivered: 0, acked: 3, ackFrames: 1, nacked: 0, lateSettles: 0, byteStops: 0, unackedBytes: 0 });
  });

  test('a message settles once: a second ack or a nack after it does nothing, and a nack then an ack redelivers it', async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    await f.produce(queue, payloads(4));
    const s = source(t, { queue, prefetch: 10 });
    const got = collect(s);
    await until('4 messages', () => got.length === 4);
    const [m0, m1, m2, m3] = got as [Message, Message, Message, Message];
    m0.ack();
    m0.ack();
    m1.nack(new Error('try again'));
    m1.ack();
    m2.ack();
    await sleep(50);
    // After its ack went to the broker: a nack of the same delivery tag would be a channel error (406), and a new connection.
    m0.nack(new Error('late'));
    m2.ack();
    m3.ack();
    m3.nack(new Error('late'));
    await until('m-1 again', () => got.length === 5);
    assert.equal(got[4]!.data.toString(), 'm-1');
    assert.equal(got[4]!.meta?.redelivered, true);
    got[4]!.ack();
    await s.close();
    assert.equal(await f.count(queue), 0);
    assert.deepEqual(
      { connections: s.stats.connections, delivered: s.stats.delivered, acked: s.stats.acked, nacked: s.stats.nacked, unackedBytes: s.stats.unackedBytes },
      { connections: 1, delivered: 5, acked: 4, nacked: 1, unackedBytes: 0 },
    );
  });

  test('acks in delivery order go as few multiple acks; an ack behind an unsettled message goes alone; every message leaves the queue', async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    await f.produce(queue, payloads(1000));
    const s = source(t, { queue, prefetch: 1000 });
    const got = collect(s);
    await until('1000 messages', () => got.length === 1000);
    // The first held back; the others acked in delivery order, then out of order, across several turns.
    for (let i = 1; i < 500; i++) got[i]!.ack();
    await sleep(50);
    const framesBehind = s.stats.ackFrames;
    assert.equal(framesBehind, 499, 'behind the unsettled first message, every ack went alone (a multiple ack would have taken it too)');
    // The first settles: one multiple ack covers it (the 499 behind it are acked already).
    got[0]!.ack();
    await sleep(50);
    assert.equal(s.stats.ackFrames, framesBehind + 1);
    // The other 500 in one turn, even in reverse order: the run is whole at the end of the turn, one frame.
    for (let i = 999; i >= 500; i--) got[i]!.ack();
    await s.close();
    assert.equal(await f.count(queue), 0, 'every message acked, none requeued');
    assert.equal(s.stats.acked, 1000);
    assert.equal(s.stats.ackFrames, framesBehind + 2);
  });

  test('unacked messages go back to the queue when the source is destroyed', async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    await f.produce(queue, payloads(4));
    const s = source(t, { queue });
    const got = collect(s);
    await until('4 messages', () => got.length === 4);
    got[0]!.ack();
    s.destroy();
    await once(s, 'close');
    await until('3 requeued', async () => (await f.count(queue)) === 3);
    got[1]!.ack(); // after the channel is gone: ignored, never throws
    assert.equal(s.stats.lateSettles, 1);
  });

  test('nack() requeues by default: the message comes back marked redelivered', async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    await f.produce(queue, [Buffer.from('again')]);
    const s = source(t, { queue });
    const got = collect(s);
    await until('first delivery', () => got.length === 1);
    got[0]!.nack(new Error('try later'));
    await until('redelivery', () => got.length === 2);
    assert.equal(got[1]!.data.toString(), 'again');
    assert.equal(got[1]!.meta?.redelivered, true);
    got[1]!.ack();
    await s.close();
    assert.equal(await f.count(queue), 0);
    assert.equal(s.stats.nacked, 1);
    assert.equal(s.stats.redelivered, 1);
  });

  test('with nackRequeue: false, nack() rejects into the dead-letter exchange', async (t) => {
    const f = fixture(t);
    const dlx = await f.exchange('fanout', 'dlx');
    const dead = await f.queue('dead');
    await f.bind(dead, dlx, '');
    const queue = await f.queue('work', { deadLetterExchange: dlx });
    await f.produce(queue, [Buffer.from('poison'), Buffer.from('fine')]);
    const s = source(t, { queue, nackRequeue: false });
    const got = collect(s);
    await until('2 messages', () => got.length === 2);
    got[0]!.nack(new Error('cannot parse'));
    got[1]!.ack();
    await s.close();
    const deadLettered = await f.drain(dead, 1);
    assert.deepEqual(deadLettered.map((m) => m.content.toString()), ['poison']);
    assert.equal(await f.count(queue), 0);
    assert.equal(got.length, 2, 'the rejected message was not redelivered');
  });

  test('assert declares the queue and its bindings before consuming', async (t) => {
    const f = fixture(t);
    const queue = randomName('asserted');
    const exchange = randomName('events');
    f.track({ queues: [queue], exchanges: [exchange] });
    const s = source(t, { queue, assert: { queue: { durable: true }, bindings: [{ exchange, exchangeType: 'topic', routingKey: 'orders.#' }] } });
    const got = collect(s);
    await once(s, 'ready');
    await f.withChannel(async (ch) => {
      ch.publish(exchange, 'orders.created', Buffer.from('o-1'), { headers: { v: '2' } });
      ch.publish(exchange, 'users.created', Buffer.from('u-1'));
      await ch.waitForConfirms();
    });
    await until('the routed message', () => got.length === 1);
    await sleep(100);
    assert.equal(got.length, 1, 'only the bound routing key arrives');
    assert.equal(got[0]!.key, 'orders.created');
    assert.equal(got[0]!.meta?.exchange, exchange);
    assert.deepEqual(got[0]!.headers, { v: '2' });
    got[0]!.ack();
    await s.close();
    assert.ok(await f.exists(queue));
  });

  test('a missing queue without assert fails with NOT_FOUND and is not retried', async (t) => {
    const queue = randomName('missing');
    const s = source(t, { queue });
    let reconnects = 0;
    s.on('reconnect', () => reconnects++);
    s.resume();
    const [err] = (await once(s, 'error')) as [ManifoldError];
    assert.equal(err.code, ErrorCodes.NOT_FOUND);
    assert.equal(err.retryable, false);
    assert.match(err.message, new RegExp(`consuming queue "${queue}".*NOT_FOUND.*set options\\.assert`));
    assert.equal(reconnects, 0);
  });

  test('a wrong password fails with AUTH, is not retried, and the error hides the password', async (t) => {
    const url = new URL(RABBITMQ_URL);
    url.password = 'wrong-s3cret';
    const s = source(t, { queue: 'whatever', url: url.toString() });
    let reconnects = 0;
    s.on('reconnect', () => reconnects++);
    s.resume();
    const [err] = (await once(s, 'error')) as [ManifoldError];
    assert.equal(err.code, ErrorCodes.AUTH);
    assert.equal(err.retryable, false);
    assert.match(err.message, /ACCESS_REFUSED/);
    assert.match(err.message, /guest:\*\*\*@/);
    assert.doesNotMatch(err.message, /wrong-s3cret/);
    assert.doesNotMatch(JSON.stringify(err), /wrong-s3cret/);
    assert.equal(reconnects, 0);
  });

  test('a refused connection is retried, then fails naming the attempts', async (t) => {
    const s = source(t, { queue: 'q', url: 'amqp://guest:guest@127.0.0.1:1', retry: { retries: 2, minTimeoutMs: 10, maxTimeoutMs: 20 } });
    let reconnects = 0;
    s.on('reconnect', () => reconnects++);
    s.resume();
    const [err] = (await once(s, 'error')) as [ManifoldError];
    assert.equal(err.code, ErrorCodes.RETRIES_EXHAUSTED);
    assert.match(err.message, /rabbitmqSource: consuming queue "q" at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:1.* failed after 3 attempts: .*ECONNREFUSED/);
    assert.equal(reconnects, 2);
  });

  test('an ack after its channel is gone is ignored and counted; the broker redelivers the message', async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    await f.produce(queue, [Buffer.from('only')]);
    const connectionName = randomName('src-late');
    const s = source(t, { queue, connectionName });
    const got = collect(s);
    let ready = 0;
    s.on('ready', () => ready++);
    await until('first delivery', () => got.length === 1);
    assert.equal(await closeConnectionsNamed(connectionName), 1);
    await until('redelivery after reconnect', () => got.length === 2);
    assert.equal(ready, 2);
    assert.doesNotThrow(() => got[0]!.ack());
    assert.equal(s.stats.lateSettles, 1);
    assert.equal(got[1]!.meta?.redelivered, true);
    got[1]!.ack();
    await s.close();
    assert.equal(await f.count(queue), 0);
  });

  test("after a broker-side close the reconnect error carries the broker's reason (320 CONNECTION_FORCED and its text)", async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    const connectionName = randomName('src-reason');
    const s = source(t, { queue, connectionName });
    const reconnects: Error[] = [];
    s.on('reconnect', (event: { error: Error }) => reconnects.push(event.error));
    let ready = 0;
    s.on('ready', () => ready++);
    s.resume();
    await until('connected', () => ready === 1);
    const reason = `manifold test ${randomName('reason')}`;
    assert.equal(await closeConnectionsNamed(connectionName, reason), 1);
    await until('reconnected', () => ready === 2);
    assert.equal(reconnects.length, 1);
    const error = reconnects[0]! as Error & { replyCode?: number };
    assert.match(error.message, /320 \(CONNECTION-FORCED\)/);
    assert.ok(error.message.includes(`CONNECTION_FORCED - ${reason}`), error.message);
    assert.equal(error.replyCode, 320);
    await s.close();
  });

  test('a broker-side connection kill mid-stream: every message at least once, duplicates bounded by prefetch', async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    const total = 2000;
    const prefetch = 50;
    await f.produce(queue, payloads(total));
    const connectionName = randomName('src-kill');
    const s = source(t, { queue, prefetch, connectionName });
    const seen = new Map<string, number>();
    // While the kill is under way acks are held back, as a slow sink would: they arrive after the channel is gone.
    let held: Message[] | undefined;
    s.on('data', (m: Message) => {
      const id = m.data.toString();
      seen.set(id, (seen.get(id) ?? 0) + 1);
      if (held) held.push(m);
      else m.ack();
    });
    await until('a quarter delivered', () => seen.size >= total / 4);
    held = [];
    await until('the prefetch window is full', () => held!.length === prefetch);
    assert.equal(await closeConnectionsNamed(connectionName), 1);
    await until('reconnected', () => s.stats.connections === 2);
    const late = held;
    held = undefined;
    for (const m of late) m.ack();
    assert.equal(s.stats.lateSettles, prefetch);
    await until('every message', () => seen.size === total, 30_000);
    await s.close();
    const deliveries = [...seen.values()].reduce((a, b) => a + b, 0);
    const duplicates = deliveries - total;
    t.diagnostic(`duplicates after the kill: ${duplicates}`);
    assert.ok(duplicates >= 1, 'the unacked window was redelivered');
    assert.ok(duplicates <= prefetch, `duplicates ${duplicates} <= prefetch ${prefetch}`);
    assert.equal(await f.count(queue), 0, 'everything was acked in the end');
  });

  test('close() cancels the consumer, ends, and waits for the outstanding acks', async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    await f.produce(queue, payloads(10));
    const s = source(t, { queue, prefetch: 10 });
    const got = collect(s);
    await until('10 messages', () => got.length === 10);
    const ended = once(s, 'end');
    const closing = s.close();
    // Messages published after close() are not consumed.
    await sleep(50);
    await f.produce(queue, [Buffer.from('late')]);
    setTimeout(() => {
      for (const m of got) m.ack();
    }, 200);
    await closing;
    await ended;
    assert.equal(got.length, 10);
    assert.equal(s.stats.acked, 10);
    assert.equal(await f.count(queue), 1, 'only the message published after close() is left');
  });

  test('close() gives up after closeTimeoutMs and the broker requeues what was not acked', async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    await f.produce(queue, payloads(5));
    const s = source(t, { queue, closeTimeoutMs: 200 });
    const got = collect(s);
    const timeouts: ManifoldError[] = [];
    s.on('closetimeout', (err: ManifoldError) => timeouts.push(err));
    await until('5 messages', () => got.length === 5);
    got[0]!.ack();
    await s.close();
    assert.equal(timeouts.length, 1);
    assert.equal(timeouts[0]!.code, ErrorCodes.CLOSE_TIMEOUT);
    assert.match(timeouts[0]!.message, /4 message\(s\) of 4 not acked; the broker requeues them/);
    await until('4 requeued', async () => (await f.count(queue)) === 4);
  });

  test('close() before the first read ends at once; close() while connecting stops cleanly', async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    const idle = source(t, { queue });
    const closing = idle.close();
    idle.resume();
    await closing;
    assert.equal(idle.readableEnded, true);

    await f.produce(queue, [Buffer.from('x')]);
    const s = source(t, { queue });
    const got = collect(s);
    await s.close();
    await until('the message is back in the queue', async () => (await f.count(queue)) === 1);
    for (const m of got) m.ack(); // late: ignored
    assert.equal(s.stats.acked, 0);
  });

  test('an abort signal destroys the source and releases its connection', async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    await f.produce(queue, payloads(3));
    const controller = new AbortController();
    const connectionName = randomName('src-abort');
    const s = source(t, { queue, signal: controller.signal, connectionName });
    const got = collect(s);
    await until('3 messages', () => got.length === 3);
    controller.abort();
    const [err] = (await once(s, 'error')) as [Error];
    assert.equal(err.name, 'AbortError');
    await until('connection gone', async () => (await closeConnectionsNamed(connectionName)) === 0);
    await until('3 requeued', async () => (await f.count(queue)) === 3);
  });

  test('a queue deleted under the consumer is re-declared when assert is set', async (t) => {
    const f = fixture(t);
    const queue = randomName('recreated');
    f.track({ queues: [queue] });
    const connectionName = randomName('src-cancel');
    const s = source(t, { queue, assert: true, connectionName });
    const got = collect(s);
    const reconnects: Error[] = [];
    s.on('reconnect', (e: { error: Error }) => reconnects.push(e.error));
    await once(s, 'ready');
    await f.withChannel((ch) => ch.deleteQueue(queue));
    await until('a reconnect', () => reconnects.length > 0);
    assert.match(reconnects[0]!.message, /cancelled the consumer/);
    await waitForConnection(connectionName);
    await until('queue re-declared', () => f.exists(queue));
    await f.produce(queue, [Buffer.from('after')]);
    await until('delivery after re-declare', () => got.length === 1);
    got[0]!.ack();
    await s.close();
  });
});

sourceConformance({
  name: 'rabbitmq',
  redelivers: true,
  async setup() {
    const f = new RabbitFixture();
    const queue = await f.queue('conf-src');
    return {
      source: (options) => rabbitmqSource({ url: RABBITMQ_URL, queue, prefetch: 64, ...(options?.signal ? { signal: options.signal } : {}) }),
      produce: (payloads) => f.produce(queue, payloads),
      cleanup: () => f.cleanup(),
    };
  },
});
