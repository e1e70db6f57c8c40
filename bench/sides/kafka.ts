/**
 * The sides of bench/kafka.ts, each run in its own process (bench/lib.ts runSide). Each side
 * imports only its own client (dynamic imports), so its peak RSS is what a program using it pays.
 * Messages: `count` x 100 B, keys `k<i % 64>`; the payload buffers are built before the clock
 * starts, the message or record objects around them as they are sent (ours: one Message per
 * message from a generator; the peers: one record per message, a batch at a time).
 *
 * Produce (acks = all, idempotent, into `topic`):
 * - ours: pipeline(Readable.from(messages), kafkaSink({ brokers, topic })) with the sink's defaults
 *   (batches of 1,000, one request in flight, acks all, idempotent).
 * - platformatic: @platformatic/kafka Producer({ idempotent: true, acks: all }), send() of
 *   1,000-message batches with up to `inFlight` (5, Kafka's limit for an idempotent producer)
 *   sends outstanding.
 * - kafkajs: producer({ idempotent: true, maxInFlightRequests: 1 }), send() of 1,000-message
 *   batches with acks -1, one at a time (kafkajs' idempotent sequence numbers are per send, and it
 *   documents only one request in flight for the idempotent producer).
 * Timed from before the client is made to the last acknowledgement (close excluded).
 *
 * Consume (`count` messages from the earliest offset of `topic`, a fresh group each time):
 * - ours: kafkaSource({ startFrom: 'earliest' }), every message acked ('data' handler), commits
 *   every second (commitIntervalMs 1000, as the peers' autocommit; the default is 5 s).
 * - platformatic: @platformatic/kafka Consumer.consume({ mode: 'earliest', autocommit: 1000 }) with
 *   the same fetch settings as ours (maxWaitTime 500 ms, maxBytes 4 MiB), read with a 'data' handler.
 * - kafkajs: consumer.run({ eachBatch }) from the beginning, resolveOffset of the batch's last
 *   offset per batch, autocommit every 1 s.
 * Timed from the first message to the `count`-th, so the group join is not counted (for kafkajs,
 * from its first batch, whose messages are then left out of the count).
 */
import type { Message } from '../../lib/core/message.js';
import { measure, sideMain, stopwatch, type Measured, type SideArgs } from '../lib.js';

interface KafkaArgs extends SideArgs {
  bootstrap: string;
  topic: string;
  count: number;
  inFlight?: number;
  /** Extra kafkaSink options for the ours-produce side (by-hand comparisons of settings; the bench passes none). */
  sinkOptions?: Record<string, unknown>;
}

const BATCH = 1000;

function payloads(count: number): Buffer[] {
  return Array.from({ length: count }, (_, i) => Buffer.from(`${String(i).padStart(10, '0')}-${'x'.repeat(89)}`));
}

function keys(): Buffer[] {
  return Array.from({ length: 64 }, (_, i) => Buffer.from(`k${i}`));
}

async function oursProduce({ bootstrap, topic, count, inFlight, sinkOptions }: KafkaArgs): Promise<Measured> {
  const { Readable } = await import('node:stream');
  const { pipeline } = await import('node:stream/promises');
  const { kafkaSink } = await import('../../lib/kafka/sink.js');
  const data = payloads(count);
  // Messages made as they are read, as a source makes them (each peer makes its records per batch).
  // The 64 keys made before the clock starts, as the peers' key buffers are (Message.key is a string).
  const keyStrings = keys().map((k) => k.toString());
  const messages = function* (): Generator<Message> {
    for (let i = 0; i < count; i++) yield { data: data[i]!, key: keyStrings[i % 64], ack() {}, nack() {} } as unknown as Message;
  };
  // inFlight: maxInFlightRequests (the sink's default, 1, when not given).
  return measure(count, () => pipeline(Readable.from(messages()), kafkaSink({ brokers: bootstrap, topic, ...(inFlight === undefined ? {} : { maxInFlightRequests: inFlight }), ...sinkOptions })));
}

async function platformaticProduce({ bootstrap, topic, count, inFlight = 5 }: KafkaArgs): Promise<Measured> {
  const { Producer, ProduceAcks } = await import('@platformatic/kafka');
  const data = payloads(count);
  const k = keys();
  let producer: InstanceType<typeof Producer> | undefined;
  const measured = await measure(count, async () => {
    producer = new Producer({ clientId: 'bench-platformatic', bootstrapBrokers: [bootstrap], idempotent: true, acks: ProduceAcks.ALL });
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < count) {
        const i = next;
        next += BATCH;
        await producer!.send({ messages: data.slice(i, i + BATCH).map((value, j) => ({ topic, key: k[(i + j) % 64]!, value })) });
      }
    };
    await Promise.all(Array.from({ length: inFlight }, worker));
  });
  await producer?.close();
  return measured;
}

async function kafkajsProduce({ bootstrap, topic, count }: KafkaArgs): Promise<Measured> {
  const { Kafka, logLevel } = await import('kafkajs');
  const data = payloads(count);
  const k = keys();
  const kafka = new Kafka({ clientId: 'bench-kafkajs', brokers: [bootstrap], logLevel: logLevel.ERROR });
  let producer: ReturnType<typeof kafka.producer> | undefined;
  const measured = await measure(count, async () => {
    producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    for (let i = 0; i < count; i += BATCH) {
      await producer.send({ topic, messages: data.slice(i, i + BATCH).map((value, j) => ({ key: k[(i + j) % 64]!, value })), acks: -1 });
    }
  });
  await producer?.disconnect();
  return measured;
}

async function oursConsume({ bootstrap, topic, count }: KafkaArgs): Promise<Measured> {
  const { kafkaSource } = await import('../../lib/kafka/source.js');
  const clock = stopwatch();
  const source = kafkaSource({ brokers: bootstrap, topics: topic, groupId: `bench-ours-${process.pid}-${Date.now()}`, startFrom: 'earliest', commitIntervalMs: 1000 });
  let seen = 0;
  const measured = await new Promise<Measured>((resolve, reject) => {
    source.on('error', reject);
    source.on('data', (m: Message) => {
      clock.start();
      m.ack();
      if (++seen === count) resolve(clock.stop(count));
    });
  });
  await source.close();
  return measured;
}

/** A @platformatic/kafka consumer in a fresh group, with kafkaSource's fetch settings (maxWaitMs 500, fetchMaxBytes 4 MiB). */
async function platformaticConsumer(bootstrap: string, group: string) {
  const { Consumer } = await import('@platformatic/kafka');
  return new Consumer({
    clientId: 'bench-platformatic',
    groupId: `${group}-${process.pid}-${Date.now()}`,
    bootstrapBrokers: [bootstrap],
    maxWaitTime: 500,
    maxBytes: 4 * 1024 * 1024,
  });
}

async function platformaticConsume({ bootstrap, topic, count }: KafkaArgs): Promise<Measured> {
  const clock = stopwatch();
  const consumer = await platformaticConsumer(bootstrap, 'bench-platformatic');
  const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: 1000 });
  let seen = 0;
  const measured = await new Promise<Measured>((resolve, reject) => {
    stream.on('error', reject);
    stream.on('data', () => {
      clock.start();
      if (++seen === count) resolve(clock.stop(count));
    });
  });
  await stream.close();
  await consumer.close(true);
  return measured;
}

/**
 * Not one of the bench's rows; for profiling by hand (bench/analysis.md): the platformatic side with
 * autocommit off, as kafkaSource runs the library (it commits only acked offsets), building for
 * each record the Message kafkaSource builds (data, key string, timestamp, meta with the offset as
 * a string, ack/nack closures) and acking it, with no tracker and no stream of its own.
 */
async function platformaticMessageConsume({ bootstrap, topic, count }: KafkaArgs): Promise<Measured> {
  const clock = stopwatch();
  const consumer = await platformaticConsumer(bootstrap, 'bench-platformatic-message');
  const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false });
  let seen = 0;
  let settledBytes = 0;
  const measured = await new Promise<Measured>((resolve, reject) => {
    stream.on('error', reject);
    stream.on('data', (record: { value: Buffer; key: Buffer | null | undefined; timestamp: bigint; topic: string; partition: number; offset: bigint }) => {
      clock.start();
      const size = record.value.length;
      const message: Record<string, unknown> & { ack(): void } = {
        data: record.value,
        ack: () => {
          settledBytes += size;
        },
        nack: () => {
          settledBytes -= size;
        },
      };
      if (record.key !== undefined && record.key !== null) message.key = record.key.toString();
      message.timestamp = Number(record.timestamp);
      message.meta = { topic: record.topic, partition: record.partition, offset: record.offset.toString() };
      message.ack();
      if (++seen === count) resolve(clock.stop(count, { settledBytes }));
    });
  });
  await stream.close();
  await consumer.close(true);
  return measured;
}

async function kafkajsConsume({ bootstrap, topic, count }: KafkaArgs): Promise<Measured> {
  const { Kafka, logLevel } = await import('kafkajs');
  const clock = stopwatch();
  const kafka = new Kafka({ clientId: 'bench-kafkajs', brokers: [bootstrap], logLevel: logLevel.ERROR });
  const consumer = kafka.consumer({ groupId: `bench-kafkajs-${process.pid}-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let seen = 0;
  let first = 0;
  const measured = await new Promise<Measured>((resolve, reject) => {
    consumer
      .run({
        autoCommitInterval: 1000,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, resolveOffset }) => {
          if (seen >= count) return;
          // The clock starts at the first batch, whose messages are then not counted (a handler called per
          // message starts at its first one): the rate is of what arrived after the clock started.
          if (!clock.started()) {
            clock.start();
            first = batch.messages.length;
          }
          seen += batch.messages.length;
          resolveOffset(batch.lastOffset());
          if (seen >= count) resolve(clock.stop(seen - first));
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
  return measured;
}

sideMain({
  'ours-produce': (a) => oursProduce(a as KafkaArgs),
  'platformatic-produce': (a) => platformaticProduce(a as KafkaArgs),
  'kafkajs-produce': (a) => kafkajsProduce(a as KafkaArgs),
  'ours-consume': (a) => oursConsume(a as KafkaArgs),
  'platformatic-consume': (a) => platformaticConsume(a as KafkaArgs),
  'kafkajs-consume': (a) => kafkajsConsume(a as KafkaArgs),
  'platformatic-message-consume': (a) => platformaticMessageConsume(a as KafkaArgs),
});
