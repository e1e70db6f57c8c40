/**
 * kafkaSink against a real single-node Apache Kafka (test/fixtures/kafka.ts).
 * What arrived is read back with kcat, an independent client (librdkafka).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { tracingChannel } from 'node:diagnostics_channel';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import { KafkaProducerSink, kafkaSink, type KafkaSinkOptions } from '../../lib/kafka/sink.js';
import { sinkConformance } from '../conformance/suite.js';
import { startKafka, type KafkaBroker } from '../fixtures/kafka.js';

const run = promisify(execFile);
let broker: KafkaBroker;

before(async () => {
  broker = await startKafka();
});
after(async () => {
  await broker?.stop();
});

interface Arrived {
  partition: number;
  key: string;
  headers: string;
  value: string;
}

/** Everything in `topic`, read with kcat from the beginning to the end of each partition. */
async function readWithKcat(topic: string): Promise<Arrived[]> {
  // \x1f separates fields; payloads in these tests never contain it.
  const { stdout } = await run('kcat', ['-b', broker.bootstrap, '-C', '-t', topic, '-e', '-q', '-f', '%p\x1f%k\x1f%h\x1f%s\n'], { maxBuffer: 64 * 1024 * 1024 });
  return stdout
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => {
      const [partition, key, headers, value] = line.split('\x1f');
      return { partition: Number(partition), key: key!, headers: headers!, value: value! };
    });
}

function tracked(inits: Array<Parameters<typeof createMessage>[0]>): { messages: Message[]; acked: Set<number>; nacked: Map<number, Error> } {
  const acked = new Set<number>();
  const nacked = new Map<number, Error>();
  const messages = inits.map((init, i) =>
    createMessage({
      ...init,
      onAck: () => acked.add(i),
      onNack: (error) => nacked.set(i, error),
    }),
  );
  return { messages, acked, nacked };
}

describe('kafkaSink', () => {
  it('produces keys and headers that kcat reads back, acking each message once the broker has it', async () => {
    const topic = await broker.createTopic({ partitions: 3 });
    const { messages, acked, nacked } = tracked(
      Array.from({ length: 600 }, (_, i) => ({ data: `v-${i}`, key: `user-${i % 5}`, headers: { seq: String(i), origin: 'manifold' } })),
    );
    await pipeline(Readable.from(messages), kafkaSink({ brokers: broker.bootstrap, topic, batchSize: 100 }));
    assert.equal(acked.size, 600);
    assert.equal(nacked.size, 0);
    const arrived = await readWithKcat(topic);
    assert.equal(arrived.length, 600, 'no message was written twice');
    const byKey = new Map<string, number[]>();
    const partitionOfKey = new Map<string, Set<number>>();
    for (const a of arrived) {
      const seq = Number(a.value.slice(2));
      assert.equal(a.headers, `seq=${seq},origin=manifold`);
      assert.equal(a.key, `user-${seq % 5}`);
      byKey.set(a.key, [...(byKey.get(a.key) ?? []), seq]);
      partitionOfKey.set(a.key, new Set([...(partitionOfKey.get(a.key) ?? []), a.partition]));
    }
    for (const [key, seqs] of byKey) {
      assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), `key ${key} kept its order`);
      assert.equal(partitionOfKey.get(key)!.size, 1, `key ${key} went to one partition`);
    }
  });

  it('produces each message with its own key when there are more keys than the key cache holds (3,000 keys, mixed with unkeyed messages)', async () => {
    const topic = await broker.createTopic({ partitions: 3 });
    // Keys repeat (each twice, far apart) and outnumber the sink's cache of key Buffers, which is cleared when full.
    const { messages, acked } = tracked(
      Array.from({ length: 6500 }, (_, i) => (i % 13 === 0 ? { data: `v-${i}` } : { data: `v-${i}`, key: `key-${i % 3000}` })),
    );
    await pipeline(Readable.from(messages), kafkaSink({ brokers: broker.bootstrap, topic, batchSize: 250 }));
    assert.equal(acked.size, 6500);
    const arrived = await readWithKcat(topic);
    assert.equal(arrived.length, 6500);
    const partitionOfKey = new Map<string, number>();
    for (const a of arrived) {
      const i = Number(a.value.slice(2));
      assert.equal(a.key, i % 13 === 0 ? '' : `key-${i % 3000}`, `message ${i} has its own key`);
      if (a.key === '') continue;
      const before = partitionOfKey.get(a.key);
      if (before !== undefined) assert.equal(a.partition, before, `key ${a.key} stays on one partition`);
      partitionOfKey.set(a.key, a.partition);
    }
  });

  it('produces through a SASL/PLAIN listener; a wrong password fails at once with an auth error', async () => {
    const topic = await broker.createTopic({ partitions: 1 });
    await pipeline(Readable.from(['over-sasl']), kafkaSink({ brokers: broker.saslBootstrap, sasl: broker.sasl, topic }));
    assert.deepEqual((await readWithKcat(topic)).map((a) => a.value), ['over-sasl']);

    const { messages, nacked } = tracked([{ data: 'refused' }]);
    const sink = kafkaSink({ brokers: broker.saslBootstrap, sasl: { ...broker.sasl, password: 'wrong-password-42' }, topic, retry: { retries: 5, minTimeoutMs: 10 } });
    const reconnects: unknown[] = [];
    sink.on('reconnect', (e) => reconnects.push(e));
    const error = await pipeline(Readable.from(messages), sink).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof ManifoldError, String(error));
    assert.equal(error.code, ErrorCodes.AUTH);
    assert.equal(reconnects.length, 0, 'an auth failure is not retried');
    assert.equal(nacked.size, 1);
    assert.doesNotMatch(`${error.message} ${String(error.cause)}`, /wrong-password-42/);
  });

  it('produces plain strings and Buffers without a key', async () => {
    const topic = await broker.createTopic({ partitions: 1 });
    await pipeline(Readable.from(['alpha', Buffer.from('beta'), new Uint8Array([0x67, 0x61, 0x6d, 0x6d, 0x61])]), kafkaSink({ brokers: broker.bootstrap, topic }));
    const arrived = await readWithKcat(topic);
    assert.deepEqual(
      arrived.map((a) => [a.key, a.value]),
      [
        ['', 'alpha'],
        ['', 'beta'],
        ['', 'gamma'],
      ],
    );
  });

  it('with 5 produce requests in flight (idempotent), delivers every message once, each key in the order written, in full batches', async () => {
    const topic = await broker.createTopic({ partitions: 3 });
    const count = 20_000;
    const { messages, acked, nacked } = tracked(Array.from({ length: count }, (_, i) => ({ data: `m-${i}`, key: `k${i % 7}` })));
    // The library's own trace of each produce request: how many messages it carried.
    const sizes: number[] = [];
    const sends = tracingChannel<unknown, { options: { messages: unknown[] } }>('plt:kafka:producer:sends');
    const onStart = (context: { options: { messages: unknown[] } }): void => {
      sizes.push(context.options.messages.length);
    };
    sends.start.subscribe(onStart as (message: unknown) => void);
    try {
      await pipeline(Readable.from(messages), kafkaSink({ brokers: broker.bootstrap, topic, maxInFlightRequests: 5 }));
    } finally {
      sends.start.unsubscribe(onStart as (message: unknown) => void);
    }
    assert.equal(acked.size, count);
    assert.equal(nacked.size, 0);
    assert.equal(sizes.reduce((a, b) => a + b, 0), count);
    // A writer that keeps up fills batches of batchSize (1,000) while requests are out.
    assert.ok(sizes.length <= 25, `${sizes.length} produce requests for ${count} messages (sizes ${sizes.slice(0, 40).join(', ')})`);
    const arrived = await readWithKcat(topic);
    assert.equal(arrived.length, count);
    assert.equal(new Set(arrived.map((a) => a.value)).size, count);
    // A key goes to one partition: its messages arrive in the order written.
    for (let k = 0; k < 7; k++) {
      const values = arrived.filter((a) => a.key === `k${k}`).map((a) => Number(a.value.slice(2)));
      assert.deepEqual(values, [...values].sort((a, b) => a - b), `key k${k} out of order`);
    }
  });

  it('nacks a message over maxMessageBytes without sending it, and delivers the rest', async () => {
    const topic = await broker.createTopic({ partitions: 1 });
    const { messages, acked, nacked } = tracked([{ data: 'small-1' }, { data: Buffer.alloc(5000, 0x61) }, { data: 'small-2' }]);
    await pipeline(Readable.from(messages), kafkaSink({ brokers: broker.bootstrap, topic, maxMessageBytes: 4096 }));
    assert.deepEqual([...acked].sort(), [0, 2]);
    const error = nacked.get(1);
    assert.ok(error instanceof ManifoldError);
    assert.equal(error.code, ErrorCodes.MESSAGE_TOO_LARGE);
    assert.match(error.message, /a message of 5000 bytes .* is over maxMessageBytes \(4096\)/);
    assert.deepEqual((await readWithKcat(topic)).map((a) => a.value), ['small-1', 'small-2']);
  });

  it('nacks the one message the broker refuses as too large, and delivers the others of its batch', async () => {
    const topic = await broker.createTopic({ partitions: 1, config: { 'max.message.bytes': '20000' } });
    const inits = Array.from({ length: 10 }, (_, i) => ({ data: i === 4 ? Buffer.alloc(60_000, 0x62) : `ok-${i}` }));
    const { messages, acked, nacked } = tracked(inits);
    // lingerMs keeps all ten in one produce request, so the broker refuses the batch and the sink must isolate the culprit.
    await pipeline(Readable.from(messages), kafkaSink({ brokers: broker.bootstrap, topic, lingerMs: 50 }));
    assert.deepEqual([...nacked.keys()], [4]);
    const error = nacked.get(4)!;
    assert.ok(error instanceof ManifoldError);
    assert.equal(error.code, ErrorCodes.MESSAGE_TOO_LARGE);
    assert.match(error.message, /max message size|max\.message\.bytes/);
    assert.equal(acked.size, 9);
    assert.deepEqual(
      (await readWithKcat(topic)).map((a) => a.value),
      inits.filter((_, i) => i !== 4).map((init) => String(init.data)),
    );
  });

  it('nacks with a clear error and fails when the topic does not exist and autocreate is off', async () => {
    const topic = `missing-${randomUUID()}`;
    const { messages, acked, nacked } = tracked([{ data: 'x' }, { data: 'y' }]);
    const error = await pipeline(Readable.from(messages), kafkaSink({ brokers: broker.bootstrap, topic })).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof ManifoldError, String(error));
    assert.equal(error.code, ErrorCodes.NOT_FOUND);
    assert.match(error.message, new RegExp(`topic "${topic}" does not exist and autocreateTopics is off`));
    assert.equal(acked.size, 0);
    assert.deepEqual([...nacked.keys()].sort(), [0, 1]);
    for (const e of nacked.values()) assert.equal((e as ManifoldError).code, ErrorCodes.NOT_FOUND);
  });

  it('creates the topic when autocreateTopics is on', async () => {
    const topic = `auto-${randomUUID()}`;
    await pipeline(Readable.from(['created']), kafkaSink({ brokers: broker.bootstrap, topic, autocreateTopics: true }));
    assert.deepEqual((await readWithKcat(topic)).map((a) => a.value), ['created']);
  });

  it('produces with gzip, lz4, snappy and zstd compression that kcat can read', async () => {
    for (const compression of ['gzip', 'lz4', 'snappy', 'zstd'] as const) {
      const topic = await broker.createTopic({ partitions: 1 });
      const payloads = Array.from({ length: 50 }, (_, i) => `${compression}-${i}-${'x'.repeat(200)}`);
      await pipeline(Readable.from(payloads), kafkaSink({ brokers: broker.bootstrap, topic, compression }));
      assert.deepEqual((await readWithKcat(topic)).map((a) => a.value), payloads, compression);
    }
  });

  it('re-sends what was not acked when the broker crashes (kill -9) and comes back', async () => {
    const topic = await broker.createTopic({ partitions: 1 });
    const total = 3000;
    const { messages, acked, nacked } = tracked(Array.from({ length: total }, (_, i) => ({ data: `r-${i}` })));
    const sink = kafkaSink({ brokers: broker.bootstrap, topic, batchSize: 100, retry: { retries: 30, minTimeoutMs: 100, maxTimeoutMs: 1000 } });
    const reconnects: unknown[] = [];
    sink.on('reconnect', (e) => reconnects.push(e));
    let restarted: Promise<void> | undefined;
    const source = Readable.from(
      (async function* () {
        for (let i = 0; i < total; i++) {
          if (i === 1000) restarted = broker.restart({ signal: 'SIGKILL', downMs: 1000 });
          yield messages[i]!;
          if (i % 50 === 0) await new Promise((resolve) => setTimeout(resolve, 5));
        }
      })(),
    );
    await pipeline(source, sink);
    await restarted;
    assert.equal(nacked.size, 0);
    assert.equal(acked.size, total);
    assert.ok(reconnects.length > 0, 'the crash happened while messages were in flight');
    const arrived = new Set((await readWithKcat(topic)).map((a) => a.value));
    const missing = Array.from({ length: total }, (_, i) => `r-${i}`).filter((p) => !arrived.has(p));
    assert.deepEqual(missing, [], 'every acked message is in the topic');
  });

  it('fails with a clear error after the retry budget when no broker answers, nacking what it held', async () => {
    const { messages, acked, nacked } = tracked([{ data: 'a' }, { data: 'b' }]);
    const sink = kafkaSink({ brokers: '127.0.0.1:1', topic: 't', retry: { retries: 2, minTimeoutMs: 10, maxTimeoutMs: 20 } });
    const reconnects: unknown[] = [];
    sink.on('reconnect', (e) => reconnects.push(e));
    const error = await pipeline(Readable.from(messages), sink).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof ManifoldError, String(error));
    assert.equal(error.code, ErrorCodes.RETRIES_EXHAUSTED);
    assert.match(error.message, /kafkaSink: producing to t on 127\.0\.0\.1:1 failed after 3 attempts/);
    assert.equal(reconnects.length, 2);
    assert.equal(acked.size, 0);
    assert.equal(nacked.size, 2, 'every message is reported as not delivered');
  });

  it('returns an instance of the exported KafkaProducerSink, as the other connectors do', async () => {
    const sink = kafkaSink({ brokers: broker.bootstrap, topic: 'instance-check' });
    assert.ok(sink instanceof KafkaProducerSink);
    assert.equal(sink.topic, 'instance-check');
    sink.destroy();
    await new Promise((resolve) => sink.once('close', resolve));
  });

  it('rejects bad options at construction, naming the option', () => {
    const ok = { brokers: '127.0.0.1:9092', topic: 't' };
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...ok, topic: '' }, /options\.topic must be a non-empty string, got ""/],
      [{ ...ok, topic: 'a b' }, /options\.topic must be a topic name of letters, digits, "\.", "_" and "-" \(at most 249\), got "a b"/],
      [{ ...ok, brokers: 'host:99999' }, /options\.brokers must be a list of "host:port" strings, got "host:99999"/],
      [{ ...ok, acks: 2 }, /options\.acks must be one of "all", "leader", "none", got 2/],
      [{ ...ok, acks: 'leader', idempotent: true }, /options\.idempotent and options\.acks cannot be combined/],
      [{ ...ok, batchSize: 0 }, /options\.batchSize must be a positive integer, got 0/],
      [{ ...ok, batchBytes: 1.5 }, /options\.batchBytes must be a positive integer \(bytes\), got 1\.5/],
      [{ ...ok, maxInFlightRequests: 6 }, /options\.maxInFlightRequests must be a positive integer of at most 5, got 6/],
      [{ ...ok, compression: 'brotli' }, /options\.compression must be one of "none", "gzip", "snappy", "lz4", "zstd"/],
      [{ ...ok, lingerMs: -1 }, /options\.lingerMs must be/],
      [{ ...ok, retry: { minTimeoutMs: 100, maxTimeoutMs: 10 } }, /options\.retry\.maxTimeoutMs \(10\) must be at least options\.retry\.minTimeoutMs \(100\)/],
      [{ ...ok, topics: ['t'] }, /unknown option "topics" \(did you mean "topic"\?\)/],
      [{ ...ok, lingrMs: 5 }, /unknown option "lingrMs" \(did you mean "lingerMs"\?\)/],
    ];
    for (const [options, message] of cases) {
      assert.throws(
        () => kafkaSink(options as unknown as KafkaSinkOptions),
        (error: unknown) => error instanceof ManifoldError && error.code === ErrorCodes.INVALID_OPTION && message.test(error.message),
        `expected ${message} for ${JSON.stringify(options)}`,
      );
    }
    // acks 'leader' without idempotence is a valid combination.
    kafkaSink({ ...ok, acks: 'leader' }).destroy();
  });
});

sinkConformance({
  name: 'kafka',
  // One batch in flight and one filling (batchSize 1,000 each) plus the outer and inner high-water marks (1,024 each).
  maxUnacked: 2 * 1000 + 2 * 1024,
  timeoutMs: 30_000,
  async setup() {
    const topic = await broker.createTopic({ partitions: 1 });
    return {
      sink: (options) => kafkaSink({ brokers: broker.bootstrap, topic, ...(options?.signal ? { signal: options.signal } : {}) }),
      readBack: async () => (await readWithKcat(topic)).map((a) => Buffer.from(a.value)),
      async cleanup() {},
    };
  },
});
