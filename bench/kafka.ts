/**
 * Kafka: 200,000 messages of 100 bytes produced and consumed through a local
 * single-node broker (test/fixtures/kafka.ts), plain @platformatic/kafka
 * against kafkaSink / kafkaSource in the same run.
 *
 * Produce, raw: Producer.send() of 1,000-message batches, one request at a
 * time, idempotent with acks = all. Ours: pipeline(Readable, kafkaSink()) with
 * its defaults (the same batch size, acks and idempotence).
 * Consume, raw: Consumer.consume() from the earliest offset with autocommit
 * every second. Ours: kafkaSource() from the earliest offset, every message
 * acked, commits every second. Each side runs twice, alternating, after an
 * untimed warm-up; the best run of each is reported.
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Consumer, Producer } from '@platformatic/kafka';
import type { Message } from '../lib/core/message.js';
import { kafkaSink } from '../lib/kafka/sink.js';
import { kafkaSource } from '../lib/kafka/source.js';
import { startKafka } from '../test/fixtures/kafka.js';
import { rate, withPeakRss, type BenchArea, type BenchRow } from './lib.js';

const PARTITIONS = 6;

function payloads(count: number): Buffer[] {
  return Array.from({ length: count }, (_, i) => Buffer.from(`${String(i).padStart(10, '0')}-${'x'.repeat(89)}`));
}

const bench: BenchArea = async (scale) => {
  const count = Math.max(1000, Math.round(200_000 * scale));
  const data = payloads(count);
  const broker = await startKafka();
  try {
    // Warm-up, untimed: JIT, connections' first metadata, the broker's own first appends and group coordinator.
    const warmTopic = await broker.createTopic({ partitions: PARTITIONS });
    const warmProducer = new Producer({ clientId: 'bench-warm', bootstrapBrokers: [broker.bootstrap], idempotent: true });
    await warmProducer.send({ messages: data.slice(0, 1000).map((value) => ({ topic: warmTopic, value })) });
    await warmProducer.close();
    await pipeline(Readable.from(data.slice(0, 1000)), kafkaSink({ brokers: broker.bootstrap, topic: warmTopic }));
    const warmSource = kafkaSource({ brokers: broker.bootstrap, topics: warmTopic, groupId: `warm-${randomUUID()}`, startFrom: 'earliest', maxWaitMs: 100 });
    await new Promise<void>((resolve, reject) => {
      let seen = 0;
      warmSource.on('error', reject);
      warmSource.on('data', (m: Message) => {
        m.ack();
        if (++seen === 2000) resolve();
      });
    });
    await warmSource.close();

    const rawProduceOnce = async (topic: string): Promise<number> =>
      rate(count, async () => {
        const producer = new Producer({ clientId: 'bench-raw', bootstrapBrokers: [broker.bootstrap], idempotent: true });
        try {
          for (let i = 0; i < count; i += 1000) {
            await producer.send({ messages: data.slice(i, i + 1000).map((value, j) => ({ topic, key: Buffer.from(`k${(i + j) % 64}`), value })) });
          }
        } finally {
          await producer.close();
        }
      });
    const oursProduceOnce = async (topic: string): Promise<number> =>
      rate(count, async () => {
        const source = Readable.from(
          (function* () {
            for (let i = 0; i < count; i++) yield { data: data[i]!, key: `k${i % 64}`, ack() {}, nack() {} };
          })(),
        );
        await pipeline(source, kafkaSink({ brokers: broker.bootstrap, topic }));
      });
    const rawConsumeOnce = async (topic: string): Promise<number> =>
      rate(count, async () => {
        const consumer = new Consumer({ clientId: 'bench-raw', groupId: `bench-${randomUUID()}`, bootstrapBrokers: [broker.bootstrap], maxWaitTime: 100 });
        try {
          const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: 1000 });
          let seen = 0;
          for await (const _ of stream) {
            if (++seen >= count) break;
          }
          await stream.close();
        } finally {
          await consumer.close(true);
        }
      });
    const oursConsumeOnce = async (topic: string): Promise<number> =>
      rate(count, async () => {
        const source = kafkaSource({ brokers: broker.bootstrap, topics: topic, groupId: `bench-${randomUUID()}`, startFrom: 'earliest', commitIntervalMs: 1000, maxWaitMs: 100 });
        let seen = 0;
        await new Promise<void>((resolve, reject) => {
          source.on('error', reject);
          source.on('data', (m: Message) => {
            m.ack();
            if (++seen === count) resolve();
          });
        });
        await source.close();
      });

    // Two alternating rounds, best of each: two shared cores make single runs noisy.
    const topics = { raw: [] as string[], ours: [] as string[] };
    let rawProduce = 0;
    let oursProduce = 0;
    let producePeak = 0;
    for (let round = 0; round < 2; round++) {
      topics.raw.push(await broker.createTopic({ partitions: PARTITIONS }));
      topics.ours.push(await broker.createTopic({ partitions: PARTITIONS }));
      rawProduce = Math.max(rawProduce, await rawProduceOnce(topics.raw[round]!));
      const measured = await withPeakRss(() => oursProduceOnce(topics.ours[round]!));
      oursProduce = Math.max(oursProduce, measured.result);
      producePeak = Math.max(producePeak, measured.peakRssMiB);
    }
    let rawConsume = 0;
    let oursConsume = 0;
    let consumePeak = 0;
    for (let round = 0; round < 2; round++) {
      rawConsume = Math.max(rawConsume, await rawConsumeOnce(topics.raw[round]!));
      const measured = await withPeakRss(() => oursConsumeOnce(topics.ours[round]!));
      oursConsume = Math.max(oursConsume, measured.result);
      consumePeak = Math.max(consumePeak, measured.peakRssMiB);
    }

    const rows: BenchRow[] = [
      {
        area: 'kafka',
        case: `produce ${count.toLocaleString('en-US')} x 100 B, ${PARTITIONS} partitions, acks=all, idempotent`,
        unit: 'msg/s',
        raw: rawProduce,
        ours: oursProduce,
        goal: 0.85,
        peakRssMiB: producePeak,
        note: 'raw: Producer.send of 1,000-message batches, one at a time; ours: kafkaSink defaults (batchSize 1,000, 1 request in flight)',
      },
      {
        area: 'kafka',
        case: `consume ${count.toLocaleString('en-US')} x 100 B, ${PARTITIONS} partitions, from earliest`,
        unit: 'msg/s',
        raw: rawConsume,
        ours: oursConsume,
        goal: 0.85,
        peakRssMiB: consumePeak,
        note: 'raw: Consumer.consume with autocommit every 1 s; ours: kafkaSource, each message acked, commits every 1 s',
      },
    ];
    return rows;
  } finally {
    await broker.stop();
  }
};

export default bench;
