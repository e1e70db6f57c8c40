/**
 * The sides of bench/rabbitmq.ts, each run in its own process (bench/lib.ts runSide), each
 * importing only its own client. Messages: `count` x 100 B (payloads built before the clock
 * starts; ours wraps each in a Message from a generator as the sink reads it), to the
 * durable queue `queue` through the default exchange, persistent and mandatory.
 *
 * Publish with confirms, at most WINDOW (1,000) unconfirmed on every side:
 * - ours: pipeline(Readable.from(messages), rabbitmqSink({ routingKey: queue, maxInFlight: 1000 })).
 * - amqplib: a confirm channel; publish() with a callback per message, waiting when 1,000 are
 *   unconfirmed or publish() returns false ('drain'); waitForConfirms() at the end.
 * - acm (amqp-connection-manager): a confirm ChannelWrapper; sendToQueue() returns a promise per
 *   message, settled at its confirm; at most 1,000 unsettled.
 * - rascal: a publication (confirm: true) on the queue; broker.publish() per message, 'success' on
 *   its confirm; at most 1,000 unconfirmed.
 * Timed from before connecting to the last confirm (the close excluded).
 *
 * Consume `count` messages with prefetch 1,000:
 * - ours: rabbitmqSource({ queue, prefetch: 1000 }), every message acked ('data' handler).
 * - amqplib: channel.consume, batched acks: ack(msg, allUpTo = true) every ACK_EVERY (100) messages
 *   and at the last one.
 * - acm: ChannelWrapper.consume({ prefetch: 1000 }), the same batched acks (wrapper.ack(msg, true)).
 * - rascal: a subscription with prefetch 1,000, ackOrNack() per message (rascal acks one message at
 *   a time; it has no allUpTo).
 * Timed from the first message to the `count`-th.
 *
 * RSS (the startup/RSS case): a program that imports manifold/rabbitmq (the compiled
 * lib/rabbitmq/index.js), connects and publishes one message through rabbitmqSink, against the
 * same with plain amqplib (a confirm channel, one publish, waitForConfirms); its peak RSS is the result.
 */
import { createRequire } from 'node:module';
import type { Message } from '../../lib/core/message.js';
import { measure, sideMain, stopwatch, type Measured, type SideArgs } from '../lib.js';

interface RabbitArgs extends SideArgs {
  url: string;
  queue: string;
  count: number;
}

const WINDOW = 1000;
const ACK_EVERY = 100;

function payloads(count: number): Buffer[] {
  return Array.from({ length: count }, (_, i) => Buffer.from(`${String(i).padStart(10, '0')}-${'x'.repeat(89)}`));
}

/** Runs `publish(i, done)` for every i with at most WINDOW not yet `done`; resolves when all are. */
async function windowed(count: number, publish: (i: number, done: (error?: unknown) => void) => void): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let next = 0;
    let settled = 0;
    let failed = false;
    const done = (error?: unknown): void => {
      if (failed) return;
      if (error) {
        failed = true;
        reject(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      settled += 1;
      if (settled === count) resolve();
      else pump();
    };
    const pump = (): void => {
      while (next < count && next - settled < WINDOW) publish(next++, done);
    };
    pump();
  });
}

async function oursPublish({ url, queue, count }: RabbitArgs): Promise<Measured> {
  const { Readable } = await import('node:stream');
  const { pipeline } = await import('node:stream/promises');
  const { rabbitmqSink } = await import('../../lib/rabbitmq/sink.js');
  const data = payloads(count);
  // Messages made as they are read, as a source makes them; the peers publish the payloads directly.
  const messages = function* (): Generator<Message> {
    for (let i = 0; i < count; i++) yield { data: data[i]!, ack() {}, nack() {} } as unknown as Message;
  };
  return measure(count, () => pipeline(Readable.from(messages()), rabbitmqSink({ url, routingKey: queue, maxInFlight: WINDOW })));
}

async function amqplibPublish({ url, queue, count }: RabbitArgs): Promise<Measured> {
  const { default: amqp } = await import('amqplib');
  const data = payloads(count);
  let connection: Awaited<ReturnType<typeof amqp.connect>> | undefined;
  const measured = await measure(count, async () => {
    connection = await amqp.connect(url);
    const channel = await connection.createConfirmChannel();
    let inFlight = 0;
    let wake: (() => void) | undefined;
    let failed: unknown;
    const confirmed = (error: unknown): void => {
      if (error) failed ??= error;
      inFlight -= 1;
      const w = wake;
      wake = undefined;
      w?.();
    };
    for (const content of data) {
      while (inFlight >= WINDOW) await new Promise<void>((resolve) => (wake = resolve));
      inFlight += 1;
      if (!channel.publish('', queue, content, { persistent: true, mandatory: true }, confirmed)) {
        await new Promise((resolve) => channel.once('drain', resolve));
      }
    }
    await channel.waitForConfirms();
    if (failed) throw failed;
  });
  await connection?.close();
  return measured;
}

async function acmPublish({ url, queue, count }: RabbitArgs): Promise<Measured> {
  const { default: acm } = await import('amqp-connection-manager');
  const data = payloads(count);
  let connection: ReturnType<typeof acm.connect> | undefined;
  const measured = await measure(count, async () => {
    connection = acm.connect([url]);
    const wrapper = connection.createChannel({ confirm: true });
    await wrapper.waitForConnect();
    await windowed(count, (i, done) => {
      wrapper.sendToQueue(queue, data[i]!, { persistent: true, mandatory: true }).then(() => done(), done);
    });
  });
  await connection?.close();
  return measured;
}

/** The parts of rascal this bench uses (it ships no types). */
interface RascalBroker {
  publish(name: string, content: Buffer): Promise<NodeJS.EventEmitter>;
  subscribe(name: string): Promise<NodeJS.EventEmitter>;
  shutdown(): Promise<void>;
  on(event: 'error', fn: (error: Error) => void): void;
}

async function rascal(url: string, queue: string): Promise<RascalBroker> {
  const { BrokerAsPromised, withDefaultConfig } = createRequire(import.meta.url)('rascal') as {
    BrokerAsPromised: { create(config: unknown): Promise<RascalBroker> };
    withDefaultConfig(config: unknown): unknown;
  };
  const config = {
    vhosts: {
      '/': {
        connection: { url },
        queues: { [queue]: { assert: false, check: true } },
        publications: { p: { queue, confirm: true, options: { persistent: true, mandatory: true } } },
        subscriptions: { s: { queue, prefetch: WINDOW } },
      },
    },
  };
  const broker = await BrokerAsPromised.create(withDefaultConfig(config));
  broker.on('error', (error) => process.stderr.write(`rascal: ${error.message}\n`));
  return broker;
}

async function rascalPublish({ url, queue, count }: RabbitArgs): Promise<Measured> {
  const data = payloads(count);
  let broker: RascalBroker | undefined;
  const measured = await measure(count, async () => {
    broker = await rascal(url, queue);
    await windowed(count, (i, done) => {
      broker!.publish('p', data[i]!).then(
        (publication) => {
          publication.once('success', () => done());
          publication.once('error', (error: Error) => done(error));
          publication.once('return', () => done(new Error('message returned: no queue took it')));
        },
        (error: unknown) => done(error),
      );
    });
  });
  await broker?.shutdown();
  return measured;
}

async function oursConsume({ url, queue, count }: RabbitArgs): Promise<Measured> {
  const { rabbitmqSource } = await import('../../lib/rabbitmq/source.js');
  const clock = stopwatch();
  const source = rabbitmqSource({ url, queue, prefetch: WINDOW });
  let seen = 0;
  const measured = await new Promise<Measured>((resolve, reject) => {
    source.on('error', reject);
    source.on('data', (m: Message) => {
      if (seen >= count) return;
      clock.start();
      m.ack();
      if (++seen === count) resolve(clock.stop(count));
    });
  });
  const closing = source.close();
  source.resume();
  await closing;
  return measured;
}

async function amqplibConsume({ url, queue, count }: RabbitArgs): Promise<Measured> {
  const { default: amqp } = await import('amqplib');
  const clock = stopwatch();
  const connection = await amqp.connect(url);
  const channel = await connection.createChannel();
  await channel.prefetch(WINDOW);
  let seen = 0;
  const measured = await new Promise<Measured>((resolve) => {
    void channel.consume(queue, (m) => {
      // Deliveries past `count` stay unacked and go back to the queue at the close.
      if (!m || seen >= count) return;
      clock.start();
      seen += 1;
      if (seen % ACK_EVERY === 0 || seen === count) channel.ack(m, true);
      if (seen === count) resolve(clock.stop(count));
    });
  });
  await connection.close();
  return measured;
}

async function acmConsume({ url, queue, count }: RabbitArgs): Promise<Measured> {
  const { default: acm } = await import('amqp-connection-manager');
  const clock = stopwatch();
  const connection = acm.connect([url]);
  const wrapper = connection.createChannel({ confirm: false });
  await wrapper.waitForConnect();
  let seen = 0;
  const measured = await new Promise<Measured>((resolve, reject) => {
    wrapper
      .consume(
        queue,
        (m) => {
          if (seen >= count) return;
          clock.start();
          seen += 1;
          if (seen % ACK_EVERY === 0 || seen === count) wrapper.ack(m, true);
          if (seen === count) resolve(clock.stop(count));
        },
        { prefetch: WINDOW },
      )
      .catch(reject);
  });
  await connection.close();
  return measured;
}

async function rascalConsume({ url, queue, count }: RabbitArgs): Promise<Measured> {
  const clock = stopwatch();
  const broker = await rascal(url, queue);
  const subscription = await broker.subscribe('s');
  let seen = 0;
  const measured = await new Promise<Measured>((resolve, reject) => {
    subscription.on('error', reject);
    subscription.on('message', (_message: unknown, _content: unknown, ackOrNack: () => void) => {
      if (seen >= count) return;
      clock.start();
      ackOrNack();
      if (++seen === count) resolve(clock.stop(count));
    });
  });
  await broker.shutdown();
  return measured;
}

async function oursRss({ url, queue }: RabbitArgs): Promise<Measured> {
  return measure(1, async () => {
    // manifold/rabbitmq as the compiled package exposes it (dist/lib/rabbitmq/index.js).
    const { rabbitmqSink } = await import('../../lib/rabbitmq/index.js');
    const { Readable } = await import('node:stream');
    const { pipeline } = await import('node:stream/promises');
    await pipeline(Readable.from([{ data: Buffer.from('one'), ack() {}, nack() {} }]), rabbitmqSink({ url, routingKey: queue }));
  });
}

async function amqplibRss({ url, queue }: RabbitArgs): Promise<Measured> {
  return measure(1, async () => {
    const { default: amqp } = await import('amqplib');
    const connection = await amqp.connect(url);
    const channel = await connection.createConfirmChannel();
    channel.publish('', queue, Buffer.from('one'), { persistent: true, mandatory: true });
    await channel.waitForConfirms();
    await connection.close();
  });
}

sideMain({
  'ours-publish': (a) => oursPublish(a as RabbitArgs),
  'amqplib-publish': (a) => amqplibPublish(a as RabbitArgs),
  'acm-publish': (a) => acmPublish(a as RabbitArgs),
  'rascal-publish': (a) => rascalPublish(a as RabbitArgs),
  'ours-consume': (a) => oursConsume(a as RabbitArgs),
  'amqplib-consume': (a) => amqplibConsume(a as RabbitArgs),
  'acm-consume': (a) => acmConsume(a as RabbitArgs),
  'rascal-consume': (a) => rascalConsume(a as RabbitArgs),
  'ours-rss': (a) => oursRss(a as RabbitArgs),
  'amqplib-rss': (a) => amqplibRss(a as RabbitArgs),
});
