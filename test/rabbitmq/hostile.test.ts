/**
 * Issue 19 against the broker on the machine: close() and destroy() at any moment of a connect must leave
 * no connection and no consumer (before, a source stopped while connecting kept a live consumer holding
 * `prefetch` unacked messages, and the process never exited); maxInFlightBytes bounds the unacked payload
 * where prefetch only counts messages.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Message } from '../../lib/core/message.js';
import type { RetryEvent } from '../../lib/core/retry.js';
import { rabbitmqSink } from '../../lib/rabbitmq/sink.js';
import { rabbitmqSource } from '../../lib/rabbitmq/source.js';
import { RABBITMQ_URL, RabbitFixture, connectionPids, consumersOf, randomName, until } from '../fixtures/rabbitmq.js';

const MiB = 1024 * 1024;
const FAST_RETRY = { retries: 40, minTimeoutMs: 50, maxTimeoutMs: 500 };

function fixture(t: TestContext): RabbitFixture {
  const f = new RabbitFixture();
  t.after(() => f.cleanup());
  return f;
}

/** Open TCP handles of this process (sockets and servers). */
function tcpHandles(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TCPServerWrap').length;
}

/** Rejects after `ms` naming `what`, so a hang fails the test instead of holding it open. */
async function within<T>(what: string, ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

describe('rabbitmqSource and rabbitmqSink stopped during a connect', () => {
  test('rabbitmqSource: close() or destroy() at 40 random moments of a connect leaves no consumer, no connection, nothing unacked', async (t) => {
    const f = fixture(t);
    const queue = await f.queue('stop');
    const total = 300;
    await f.produce(
      queue,
      Array.from({ length: total }, (_, i) => Buffer.from(`m-${i}`)),
    );
    // Opened before the baseline: the fixture's own connection is not a leak.
    await f.count(queue);
    const baseline = tcpHandles();
    const connectionName = randomName('src-stop');
    const problems: string[] = [];
    let ready = 0;
    let delivered = 0;
    for (let i = 0; i < 40; i++) {
      // assert: true adds the topology step (queue declaration) to the connect.
      // Nothing is acked: a close() after the consumer ran waits closeTimeoutMs for acks, then gives them back.
      const s = rabbitmqSource({ url: RABBITMQ_URL, queue, connectionName, assert: true, retry: FAST_RETRY, closeTimeoutMs: 300 });
      s.on('error', (e: Error) => problems.push(`${i}: error ${e.message}`));
      s.on('reconnect', (e: RetryEvent) => problems.push(`${i}: reconnect ${e.error.message}`));
      s.on('ready', () => (ready += 1));
      s.on('data', () => (delivered += 1));
      // A connect takes some tens of ms here: 0-100 ms lands before it, in each of its steps, and after it.
      await sleep(Math.random() * 100);
      if (i % 2 === 0) {
        await within(`close() of attempt ${i}`, 20_000, s.close());
        assert.equal(s.readableEnded, true, `attempt ${i}: close() resolved with the stream ended`);
      } else {
        const closed = once(s, 'close');
        s.destroy();
        await within(`destroy() of attempt ${i}`, 20_000, closed);
      }
      // Checked at once: close() and 'close' come after the connection is closed, consumer and all.
      const { consumerCount } = await f.withChannel((ch) => ch.checkQueue(queue));
      if (consumerCount !== 0) problems.push(`${i}: ${consumerCount} consumer(s) left right after the stop`);
    }
    assert.deepEqual(problems, []);
    assert.deepEqual(await connectionPids(connectionName), [], 'rabbitmqctl list_connections: no connection of the source');
    assert.deepEqual(await consumersOf(queue), [], 'rabbitmqctl list_consumers: no consumer on the queue');
    assert.equal(await f.count(queue), total, 'every message is back in the queue, none held unacked');
    await until('no TCP handle left', () => tcpHandles() <= baseline);
    t.diagnostic(`${ready} of 40 connects had reached consuming when stopped; ${delivered} deliveries, all requeued`);
  });

  test('rabbitmqSink: end() or destroy() at 40 random moments of a connect leaves no connection; what end() flushed arrived', async (t) => {
    const f = fixture(t);
    const queue = await f.queue('sink-stop');
    await f.count(queue);
    const baseline = tcpHandles();
    const connectionName = randomName('sink-stop');
    const problems: string[] = [];
    const ended: string[] = [];
    for (let i = 0; i < 40; i++) {
      // assert with a queue adds the topology steps (queue declaration) to the connect.
      const s = rabbitmqSink({ url: RABBITMQ_URL, exchange: '', routingKey: queue, connectionName, assert: { queues: [{ name: queue }] }, retry: FAST_RETRY });
      s.on('error', (e: Error) => problems.push(`${i}: error ${e.message}`));
      s.on('reconnect', (e: RetryEvent) => problems.push(`${i}: reconnect ${e.error.message}`));
      s.write(`m-${i}`);
      await sleep(Math.random() * 100);
      const closed = once(s, 'close');
      if (i % 2 === 0) {
        s.end();
        ended.push(`m-${i}`);
      } else {
        s.destroy();
      }
      await within(`the stop of attempt ${i}`, 20_000, closed);
    }
    assert.deepEqual(problems, []);
    assert.deepEqual(await connectionPids(connectionName), [], 'rabbitmqctl list_connections: no connection of the sink');
    const got = (await f.drain(queue, ended.length)).map((m) => m.content.toString());
    for (const m of ended) assert.ok(got.includes(m), `${m} was ended gracefully but did not arrive`);
    await until('no TCP handle left', () => tcpHandles() <= baseline);
  });

  test('a broker that accepts TCP and never answers: close() and destroy() during the handshake end at once, the socket closed', async (t) => {
    const peers = new Set<Socket>();
    const server = createServer((socket) => {
      peers.add(socket);
      socket.on('close', () => peers.delete(socket));
      socket.on('error', () => {});
      // Read (and ignore) the AMQP protocol header, so the client's FIN is seen.
      socket.resume();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const { port } = server.address() as { port: number };
    const url = `amqp://guest:guest@127.0.0.1:${port}`;
    // Both timeouts far beyond the test's own bound: the stop must not wait for either.
    const s = rabbitmqSource({ url, queue: 'never', connectTimeoutMs: 120_000, closeTimeoutMs: 120_000 });
    s.on('error', () => {});
    s.resume();
    await until('the source connected its socket', () => peers.size === 1);
    await within('close() during the handshake', 20_000, s.close());
    assert.equal(s.readableEnded, true);

    const k = rabbitmqSink({ url, exchange: '', connectTimeoutMs: 120_000 });
    k.on('error', () => {});
    k.write('x');
    await until('the sink connected its socket', () => peers.size === 1);
    const closed = once(k, 'close');
    k.destroy();
    await within('destroy() during the handshake', 20_000, closed);
    await until('the broker side saw both sockets close', () => peers.size === 0);
  });
});

describe('rabbitmqSource maxInFlightBytes', () => {
  test('1 MiB messages, prefetch 256: the unacked payload stays within maxInFlightBytes, acked or not; in order, nothing lost', async (t) => {
    const f = fixture(t);
    const queue = await f.queue('bytes');
    const total = 60;
    await f.produce(
      queue,
      Array.from({ length: total }, (_, i) => Buffer.alloc(MiB, i)),
    );
    const s = rabbitmqSource({ url: RABBITMQ_URL, queue, prefetch: 256, maxInFlightBytes: 8 * MiB, retry: FAST_RETRY });
    s.on('error', () => {});
    t.after(() => s.destroy());
    const held: Message[] = [];
    const order: number[] = [];
    let maxUnacked = 0;
    s.on('data', (m: Message) => {
      held.push(m);
      order.push(m.data[0]!);
      maxUnacked = Math.max(maxUnacked, s.stats.unackedBytes);
    });
    // A consumer that acks nothing: the source stops at the bound (before, it held all 60 MiB: prefetch is 256).
    await until('the bound reached', () => s.stats.byteStops >= 1);
    await sleep(1000);
    t.diagnostic(`without acks: ${held.length} delivered, ${s.stats.unackedBytes / MiB} MiB unacked`);
    assert.ok(s.stats.unackedBytes <= 8 * MiB, `${s.stats.unackedBytes / MiB} MiB unacked`);
    assert.ok(held.length <= 8);
    // Then a slow consumer: one ack per 2 ms, each as it comes. The source resumes at half and stops again.
    while (order.length < total || held.length > 0) {
      held.shift()?.ack();
      await sleep(2);
    }
    t.diagnostic(`then acking: at most ${maxUnacked / MiB} MiB unacked, ${s.stats.byteStops} stop(s)`);
    assert.ok(maxUnacked <= 8 * MiB, `${maxUnacked / MiB} MiB unacked at most`);
    assert.deepEqual(order, Array.from({ length: total }, (_, i) => i), 'every message once, in queue order');
    assert.equal(s.stats.redelivered, 0);
    await s.close();
    assert.equal(await f.count(queue), 0);
  });

  test('without the byte bound (1 GiB) the same consumer holds all 60 MiB: prefetch alone counts messages', async (t) => {
    const f = fixture(t);
    const queue = await f.queue('bytes-off');
    const total = 60;
    await f.produce(
      queue,
      Array.from({ length: total }, (_, i) => Buffer.alloc(MiB, i)),
    );
    const s = rabbitmqSource({ url: RABBITMQ_URL, queue, prefetch: 256, maxInFlightBytes: 1024 * MiB, retry: FAST_RETRY });
    s.on('error', () => {});
    t.after(() => s.destroy());
    const held: Message[] = [];
    s.on('data', (m: Message) => held.push(m));
    await until('all delivered', () => held.length === total);
    assert.equal(s.stats.unackedBytes, total * MiB);
    assert.equal(s.stats.byteStops, 0);
    for (const m of held) m.ack();
    await s.close();
  });
});
