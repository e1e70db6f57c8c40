/**
 * RabbitMQ: 100,000 messages of 100 bytes published with confirms and
 * consumed with acks through the broker on the machine (127.0.0.1:5672, see
 * test/fixtures/rabbitmq/prepare.sh), plain amqplib against rabbitmqSink /
 * rabbitmqSource in the same run.
 *
 * Publish, raw: a confirm channel, persistent + mandatory publishes to a
 * durable queue through the default exchange, at most 1,000 unconfirmed,
 * waiting for 'drain' when publish() returns false. Ours: pipeline(Readable,
 * rabbitmqSink({ maxInFlight: 1000 })) with its defaults (persistent, mandatory).
 * Consume, raw: prefetch 1,000, one basic.ack per message. Ours:
 * rabbitmqSource({ prefetch: 1000 }), every message acked.
 * Each side runs twice after an untimed warm-up, in alternating order (raw first, then ours first),
 * with a 1 s settle before each phase; the best run of each is reported.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import amqp from 'amqplib';
import type { Message } from '../lib/core/message.js';
import { rabbitmqSink } from '../lib/rabbitmq/sink.js';
import { rabbitmqSource } from '../lib/rabbitmq/source.js';
import { RABBITMQ_URL, RabbitFixture } from '../test/fixtures/rabbitmq.js';
import { rate, withPeakRss, type BenchArea, type BenchRow } from './lib.js';

const WINDOW = 1000;

function payloads(count: number): Buffer[] {
  return Array.from({ length: count }, (_, i) => Buffer.from(`${String(i).padStart(10, '0')}-${'x'.repeat(89)}`));
}

async function rawPublish(queue: string, data: Buffer[]): Promise<void> {
  const connection = await amqp.connect(RABBITMQ_URL);
  try {
    const channel = await connection.createConfirmChannel();
    let inFlight = 0;
    let wake: (() => void) | undefined;
    let failed: Error | undefined;
    const confirmed = (error: unknown): void => {
      if (error) failed ??= error as Error;
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
    await channel.close();
  } finally {
    await connection.close();
  }
}

async function oursPublish(queue: string, data: Buffer[]): Promise<void> {
  const source = Readable.from(
    (function* () {
      for (const d of data) yield { data: d, ack() {}, nack() {} };
    })(),
  );
  await pipeline(source, rabbitmqSink({ url: RABBITMQ_URL, routingKey: queue, maxInFlight: WINDOW }));
}

async function rawConsume(queue: string, count: number): Promise<void> {
  const connection = await amqp.connect(RABBITMQ_URL);
  try {
    const channel = await connection.createChannel();
    await channel.prefetch(WINDOW);
    let seen = 0;
    await new Promise<void>((resolve) => {
      void channel.consume(queue, (m) => {
        // Deliveries past `count` (the prefetch window keeps coming until the close) stay unacked and go back to the queue.
        if (!m || seen >= count) return;
        channel.ack(m);
        if (++seen === count) resolve();
      });
    });
    await channel.close();
  } finally {
    await connection.close();
  }
}

async function oursConsume(queue: string, count: number): Promise<void> {
  const source = rabbitmqSource({ url: RABBITMQ_URL, queue, prefetch: WINDOW });
  await new Promise<void>((resolve, reject) => {
    let seen = 0;
    source.on('error', reject);
    source.on('data', (m: Message) => {
      if (seen >= count) return;
      m.ack();
      if (++seen === count) resolve();
    });
  });
  const closing = source.close();
  source.resume();
  await closing;
}

const bench: BenchArea = async (scale) => {
  const count = Math.max(1000, Math.round(100_000 * scale));
  const data = payloads(count);
  const fixture = new RabbitFixture();
  try {
    // Warm-up, untimed: JIT, the broker's first queue processes and message store files.
    const warm = await fixture.queue('bench-warm');
    await rawPublish(warm, data.slice(0, 2000));
    await oursPublish(warm, data.slice(0, 2000));
    await rawConsume(warm, 2000);
    await oursConsume(warm, 2000);

    const best = { rawPublish: 0, oursPublish: 0, rawConsume: 0, oursConsume: 0, publishRss: 0, consumeRss: 0 };
    const oursPublishTimed = async (queue: string): Promise<void> => {
      const { result, peakRssMiB } = await withPeakRss(() => rate(count, () => oursPublish(queue, data)));
      best.oursPublish = Math.max(best.oursPublish, result);
      best.publishRss = Math.max(best.publishRss, peakRssMiB);
    };
    const oursConsumeTimed = async (queue: string): Promise<void> => {
      const { result, peakRssMiB } = await withPeakRss(() => rate(count, () => oursConsume(queue, count)));
      best.oursConsume = Math.max(best.oursConsume, result);
      best.consumeRss = Math.max(best.consumeRss, peakRssMiB);
    };
    const rawPublishTimed = async (queue: string): Promise<void> => {
      best.rawPublish = Math.max(best.rawPublish, await rate(count, () => rawPublish(queue, data)));
    };
    const rawConsumeTimed = async (queue: string): Promise<void> => {
      best.rawConsume = Math.max(best.rawConsume, await rate(count, () => rawConsume(queue, count)));
    };
    // The broker keeps writing persistent messages to its store after confirming them, which slows whoever runs
    // next: the order alternates between rounds, and each phase starts after a short settle.
    for (let round = 0; round < 2; round++) {
      const rawQueue = await fixture.queue('bench-raw');
      const oursQueue = await fixture.queue('bench-ours');
      const rawFirst = round % 2 === 0;
      for (const step of rawFirst ? [rawPublishTimed, oursPublishTimed] : [oursPublishTimed, rawPublishTimed]) {
        await sleep(1000);
        await step(step === rawPublishTimed ? rawQueue : oursQueue);
      }
      for (const step of rawFirst ? [oursConsumeTimed, rawConsumeTimed] : [rawConsumeTimed, oursConsumeTimed]) {
        await sleep(1000);
        await step(step === rawConsumeTimed ? rawQueue : oursQueue);
      }
      await fixture.withChannel(async (ch) => {
        await ch.deleteQueue(rawQueue);
        await ch.deleteQueue(oursQueue);
      });
    }
    const rows: BenchRow[] = [
      {
        area: 'rabbitmq',
        case: `publish ${count.toLocaleString('en-US')} x 100 B with confirms`,
        unit: 'msg/s',
        raw: best.rawPublish,
        ours: best.oursPublish,
        goal: 0.9,
        peakRssMiB: best.publishRss,
        note: `persistent, mandatory, durable queue, ${WINDOW} unconfirmed at most; best of 2`,
      },
      {
        area: 'rabbitmq',
        case: `consume ${count.toLocaleString('en-US')} x 100 B with acks`,
        unit: 'msg/s',
        raw: best.rawConsume,
        ours: best.oursConsume,
        goal: 0.9,
        peakRssMiB: best.consumeRss,
        note: `prefetch ${WINDOW}, one ack per message; best of 2`,
      },
    ];
    return rows;
  } finally {
    await fixture.cleanup();
  }
};

export default bench;
