/**
 * flow()'s error policy with rabbitmqSource and rabbitmqSink against the machine's RabbitMQ: a poison message
 * leaves its queue after maxAttempts deliveries spaced by the backoff and lands in a dead-letter queue with its
 * headers; on a quorum queue the attempt count carries over a consumer restart through `x-delivery-count`.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { flow, type DeadLetterEvent, type Flow, type FlowStats, type RedeliverEvent } from '../../lib/core/flow.js';
import type { Message } from '../../lib/core/message.js';
import { rabbitmqSink } from '../../lib/rabbitmq/sink.js';
import { rabbitmqSource, type RabbitmqSource } from '../../lib/rabbitmq/source.js';
import { gate, refusal } from '../fixtures/error-policy.js';
import { RABBITMQ_URL, RabbitFixture, randomName, until, type RawMessage } from '../fixtures/rabbitmq.js';

const FAST_RETRY = { retries: 40, minTimeoutMs: 50, maxTimeoutMs: 500 };

/**
 * Queues and exchanges for one test, and one after hook that undoes the test's work last first: flows stop
 * before their queues are deleted.
 */
function fixture(t: TestContext): { f: RabbitFixture; undo: (fn: () => unknown) => void } {
  const f = new RabbitFixture();
  const steps: Array<() => unknown> = [() => f.cleanup()];
  t.after(async () => {
    for (const step of steps.reverse()) await step();
  });
  return { f, undo: (fn) => steps.push(fn) };
}

/**
 * A fanout exchange bound to a new queue, for a sink. Fanout because a sink publishes with each message's own key
 * as routing key, and a message consumed from a queue has that queue's name as its key (the default exchange
 * would route it straight back).
 */
async function outlet(f: RabbitFixture, what: string): Promise<{ exchange: string; queue: string }> {
  const exchange = await f.exchange('fanout', `${what}-x`);
  const queue = await f.queue(what);
  await f.bind(queue, exchange, '');
  return { exchange, queue };
}

function sink(exchange: string) {
  return rabbitmqSink({ url: RABBITMQ_URL, exchange, retry: FAST_RETRY, connectionName: randomName('sink') });
}

function source(queue: string): RabbitmqSource {
  return rabbitmqSource({ url: RABBITMQ_URL, queue, prefetch: 50, retry: FAST_RETRY, connectionName: randomName('src') });
}

/** Stops a flow (a no-op once it has ended), whatever the test did. */
function stopping(running: Flow): () => Promise<unknown> {
  return () => running.stop().catch(() => undefined);
}

const payloads = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => Buffer.from(`m-${i}`));

function headersOf(m: RawMessage): Record<string, string> {
  return Object.fromEntries(Object.entries(m.headers).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString() : String(v)]));
}

describe('flow() error policy with RabbitMQ', () => {
  test('a poison message leaves its queue after exactly 4 deliveries spaced by the backoff, and is in the dead-letter queue with its headers; the queue ends empty', async (t) => {
    const { f, undo } = fixture(t);
    const total = 200;
    const poison = 57;
    const queue = await f.queue('ep');
    const out = await outlet(f, 'out');
    const dlq = await outlet(f, 'dlq');
    await f.produce(queue, payloads(total).slice(0, poison));
    await f.produce(queue, [Buffer.from(`m-${poison}`)], { headers: { trace: 'poison-1' }, messageId: 'the-poison' });
    await f.produce(queue, payloads(total).slice(poison + 1));

    const src = source(queue);
    const deliveries: Array<{ attempt: number | undefined; at: number }> = [];
    const main = gate(sink(out.exchange), (m) => {
      if (m.data.toString() !== `m-${poison}`) return undefined;
      deliveries.push({ attempt: m.attempt, at: performance.now() });
      return refusal(`m-${poison}`);
    });
    const running = flow({ source: src, sink: main, maxAttempts: 4, retryBackoff: { minTimeoutMs: 100, maxTimeoutMs: 400 }, deadLetter: sink(dlq.exchange) });
    undo(stopping(running));
    const redeliveries: RedeliverEvent[] = [];
    const deadLettered: DeadLetterEvent[] = [];
    running.events.on('redeliver', (e: RedeliverEvent) => redeliveries.push(e));
    running.events.on('deadletter', (e: DeadLetterEvent) => deadLettered.push(e));
    await until('every message acked or dead-lettered', () => running.stats.acks + running.stats.deadLettered >= total, 30_000);
    const stats = await running.stop();

    assert.deepEqual(
      deliveries.map((d) => d.attempt),
      [1, 2, 3, 4],
      'the poison message reached the sink 4 times',
    );
    assert.deepEqual(
      redeliveries.map((r) => r.attempt),
      [2, 3, 4],
    );
    for (let i = 1; i < deliveries.length; i++) {
      const gap = deliveries[i]!.at - deliveries[i - 1]!.at;
      const backoff = redeliveries[i - 1]!.delayMs;
      assert.ok(backoff >= 100 && backoff <= 400, `backoff ${backoff} ms is within retryBackoff`);
      assert.ok(gap >= backoff - 2, `delivery ${i + 1} came ${gap.toFixed(1)} ms after the one before; its backoff was ${backoff} ms`);
    }
    assert.deepEqual(
      { acks: stats.acks, deadLettered: stats.deadLettered, redeliveries: stats.redeliveries, nacks: stats.nacks, unsettled: stats.unsettled },
      { acks: total - 1, deadLettered: 1, redeliveries: 3, nacks: 0, unsettled: 0 },
    );
    assert.equal(deadLettered[0]?.attempts, 4);
    // The redeliveries were in-process: the broker delivered each message once and had every one acked.
    assert.deepEqual(
      { delivered: src.stats.delivered, redelivered: src.stats.redelivered, acked: src.stats.acked, nacked: src.stats.nacked },
      { delivered: total, redelivered: 0, acked: total, nacked: 0 },
    );

    assert.equal(await f.count(queue), 0, 'the queue ended empty');
    const dead = await f.drain(dlq.queue, 1);
    assert.equal(dead.length, 1, 'one message in the dead-letter queue');
    assert.equal(dead[0]!.content.toString(), `m-${poison}`, 'its original bytes');
    const headers = headersOf(dead[0]!);
    assert.equal(headers.trace, 'poison-1', 'its original headers');
    assert.equal(headers['x-manifold-dead-letter-source'], 'rabbitmq');
    const position = JSON.parse(headers['x-manifold-dead-letter-position']!) as Record<string, unknown>;
    assert.equal(position.queue, queue);
    assert.equal(typeof position.deliveryTag, 'number');
    assert.equal(headers['x-manifold-dead-letter-attempts'], '4');
    assert.equal(headers['x-manifold-dead-letter-error-code'], 'MANIFOLD_ERR_DELIVERY');
    assert.match(headers['x-manifold-dead-letter-error']!, /test: the sink refused m-57/);
    assert.ok(!Number.isNaN(Date.parse(headers['x-manifold-dead-letter-failed-at']!)));
    const delivered = await f.drain(out.queue, total - 1);
    assert.equal(delivered.length, total - 1, 'every other message was delivered once');
    assert.deepEqual(
      delivered.map((m) => m.content.toString()).toSorted(),
      payloads(total)
        .map(String)
        .filter((p) => p !== `m-${poison}`)
        .toSorted(),
    );
  });

  /** A quorum queue of `total` messages `m-<i>`; `m-<poison>` carries a header. */
  async function quorumQueue(f: RabbitFixture, total: number, poison: number): Promise<string> {
    const queue = await f.queue('qq', { arguments: { 'x-queue-type': 'quorum' } });
    await f.produce(queue, payloads(total).slice(0, poison));
    await f.produce(queue, [Buffer.from(`m-${poison}`)], { headers: { trace: 'poison-q' } });
    await f.produce(queue, payloads(total).slice(poison + 1));
    return queue;
  }

  interface Seen {
    consumer: number;
    attempt: number | undefined;
    deliveryCount: string | undefined;
  }

  /** A sink decision that refuses `m-<poison>` and notes how it came. */
  function refusePoison(poison: number, consumer: number, seen: Seen[]): (m: Message) => Error | undefined {
    return (m) => {
      if (m.data.toString() !== `m-${poison}`) return undefined;
      seen.push({ consumer, attempt: m.attempt, deliveryCount: m.headers?.['x-delivery-count'] });
      return refusal(`m-${poison}`);
    };
  }

  /** Runs a first consumer until the poison waits (a minute) for its retry, then stops it gracefully. */
  async function stopWhileWaiting(undo: (fn: () => unknown) => void, queue: string, outExchange: string, poison: number, seen: Seen[]): Promise<FlowStats> {
    const first = flow({
      source: source(queue),
      sink: gate(sink(outExchange), refusePoison(poison, 1, seen)),
      maxAttempts: 4,
      retryBackoff: { minTimeoutMs: 60_000, maxTimeoutMs: 60_000 },
    });
    undo(stopping(first));
    const waiting: RedeliverEvent[] = [];
    first.events.on('redeliver', (e: RedeliverEvent) => waiting.push(e));
    await until('the poison to wait for its retry', () => waiting.length === 1, 20_000);
    const started = performance.now();
    const stats = await first.stop();
    assert.ok(performance.now() - started < 30_000, 'the stop did not wait for the backoff');
    return stats;
  }

  test('quorum queue: the attempt count carries over a consumer restart through x-delivery-count; the poison is dead-lettered at attempt 4 in all', async (t) => {
    const { f, undo } = fixture(t);
    const total = 20;
    const poison = 5;
    const queue = await quorumQueue(f, total, poison);
    const out = await outlet(f, 'out');
    const dlq = await outlet(f, 'dlq');
    const seen: Seen[] = [];
    const firstStats = await stopWhileWaiting(undo, queue, out.exchange, poison, seen);
    assert.ok(firstStats.nacks >= 1, 'the stop handed the waiting poison back to the broker');

    const src = source(queue);
    const second = flow({
      source: src,
      sink: gate(sink(out.exchange), refusePoison(poison, 2, seen)),
      maxAttempts: 4,
      retryBackoff: { minTimeoutMs: 100, maxTimeoutMs: 400 },
      deadLetter: sink(dlq.exchange),
    });
    undo(stopping(second));
    await until('the poison dead-lettered and the rest acked', () => second.stats.deadLettered === 1 && firstStats.acks + second.stats.acks >= total - 1, 30_000);
    const secondStats = await second.stop();

    // The broker counts every return of the poison (one hand-back on the graceful stop).
    const bySecond = seen.filter((s) => s.consumer === 2);
    const returned = Number(bySecond[0]?.deliveryCount);
    assert.ok(returned >= 1, `x-delivery-count says the broker had the poison back: ${bySecond[0]?.deliveryCount}`);
    assert.ok(returned < 4, `x-delivery-count ${returned} leaves the second consumer a delivery`);
    assert.deepEqual(
      bySecond,
      Array.from({ length: 4 - returned }, (_, i) => ({ consumer: 2, attempt: returned + 1 + i, deliveryCount: String(returned) })),
      'the second consumer began at attempt x-delivery-count + 1 and went on to 4',
    );
    assert.equal(secondStats.redeliveries, 4 - returned - 1);
    assert.ok(src.stats.redelivered >= 1, 'the broker marked it redelivered');
    assert.equal(await f.count(queue), 0, 'the queue ended empty');
    const dead = await f.drain(dlq.queue, 1);
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.content.toString(), `m-${poison}`);
    const headers = headersOf(dead[0]!);
    assert.equal(headers.trace, 'poison-q');
    assert.equal(headers['x-manifold-dead-letter-attempts'], '4');
    const delivered = (await f.drain(out.queue, total - 1)).map((m) => m.content.toString());
    assert.deepEqual(
      [...new Set(delivered)].toSorted(),
      payloads(total)
        .map(String)
        .filter((p) => p !== `m-${poison}`)
        .toSorted(),
      'every other message was delivered',
    );
  });

  test(
    'quorum queue: a graceful stop hands the waiting poison back once, without delivering it again while the consumer stops',
    async (t) => {
      const { f, undo } = fixture(t);
      const total = 20;
      const poison = 5;
      const queue = await quorumQueue(f, total, poison);
      const out = await outlet(f, 'out');
      const seen: Seen[] = [];
      const stats = await stopWhileWaiting(undo, queue, out.exchange, poison, seen);
      assert.deepEqual(seen, [{ consumer: 1, attempt: 1, deliveryCount: undefined }], 'the poison reached the sink once');
      assert.equal(stats.nacks, 1, 'it was handed back once');
      assert.ok(stats.messages <= total, `${stats.messages} messages read from a queue of ${total}`);
    },
  );

  test(
    'a dead-letter sink on the default exchange with routingKey puts the record in that queue, not back in the source queue',
    async (t) => {
      const { f, undo } = fixture(t);
      const queue = await f.queue('ep');
      const dlq = await f.queue('dlq');
      await f.produce(queue, [Buffer.from('poison')]);
      const running = flow({
        source: source(queue),
        sink: gate(sink(''), () => refusal('poison')),
        maxAttempts: 1,
        deadLetter: rabbitmqSink({ url: RABBITMQ_URL, exchange: '', routingKey: dlq, retry: FAST_RETRY, connectionName: randomName('sink') }),
      });
      undo(stopping(running));
      await until('the poison dead-lettered', () => running.stats.deadLettered >= 1, 10_000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const stats = await running.stop();
      assert.equal(stats.deadLettered, 1, `dead-lettered ${stats.deadLettered} times`);
      assert.equal(await f.count(queue), 0, 'the source queue ended empty');
      assert.equal(await f.count(dlq), 1, 'the record is in the dead-letter queue');
    },
  );
});
