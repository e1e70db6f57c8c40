/**
 * flow()'s error policy with kafkaSource and kafkaSink against a real single-node Apache Kafka broker
 * (test/fixtures/kafka.ts): a poison record among 100,000 goes to a dead-letter topic after maxAttempts while
 * every other record is delivered and the group commits to the end; a record that fails twice and then
 * succeeds is delivered once, ahead of the later records of its key; and a kill -9 while a record waits for
 * its retry loses nothing.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { flow } from '../../lib/core/flow.js';
import type { Message } from '../../lib/core/message.js';
import { kafkaSink } from '../../lib/kafka/sink.js';
import { kafkaSource, type KafkaSourceOptions } from '../../lib/kafka/source.js';
import { assertBoundedMemory, assertOnePoison, describeMemory, gate, refusal, sampleMemory, watchPolicy } from '../fixtures/error-policy.js';
import { startKafka, type KafkaBroker } from '../fixtures/kafka.js';

let broker: KafkaBroker;

before(async () => {
  broker = await startKafka();
});
after(async () => {
  await broker?.stop();
});

/** A consumer that is quick in tests: short sessions, frequent commits, short fetch waits. */
function fast(extra: Partial<KafkaSourceOptions> & Pick<KafkaSourceOptions, 'topics' | 'groupId'>): KafkaSourceOptions {
  return {
    brokers: broker.bootstrap,
    startFrom: 'earliest',
    commitIntervalMs: 200,
    sessionTimeoutMs: 6000,
    heartbeatIntervalMs: 500,
    maxWaitMs: 100,
    closeTimeoutMs: 5000,
    ...extra,
  };
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** Record `i` of a backlog: key `k<i % keys>`, on partition `(i % keys) % partitions`, so a key keeps one partition. */
interface Backlog {
  topic: string;
  /** The end offset of each partition. */
  ends: bigint[];
  keys: number;
  partitions: number;
}

/** The offset of record `i` in its partition. */
function offsetOf(i: number, keys: number, partitions: number): number {
  const partition = (i % keys) % partitions;
  let offset = 0;
  for (let j = 0; j < i; j++) if ((j % keys) % partitions === partition) offset += 1;
  return offset;
}

/** Record i's payload: `r-<i>`, padded with `-x…` to `bytes` when given. */
function value(i: number, bytes = 0): string {
  const text = `r-${i}`;
  return text.length >= bytes ? text : `${text}-${'x'.repeat(bytes - text.length - 1)}`;
}
const indexOf = (m: Message): number => Number.parseInt(m.data.toString('latin1', 2, 12), 10);

/** Produces `total` records `r-<i>` (padded to `bytes`) with headers `seq: <i>` before any consumer exists. */
async function backlog(total: number, keys: number, { partitions = 3, bytes = 0 } = {}): Promise<Backlog> {
  const topic = await broker.createTopic({ partitions });
  const ends = Array.from({ length: partitions }, () => 0n);
  const records = Array.from({ length: total }, (_, i) => {
    const partition = (i % keys) % partitions;
    ends[partition]! += 1n;
    return { value: value(i, bytes), key: `k${i % keys}`, partition, headers: { seq: String(i) } };
  });
  await broker.produce(topic, records);
  return { topic, ends, keys, partitions };
}

/**
 * Reads `topic` from the start with a new group until `done(received)`, acking everything; the messages in the
 * order of each partition.
 */
async function readBack(t: TestContext, topic: string, done: (received: Message[]) => boolean, timeoutMs = 90_000): Promise<Message[]> {
  const source = kafkaSource(fast({ topics: topic, groupId: `read-${randomUUID()}` }));
  t.after(() => source.destroy());
  const received: Message[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`reading ${topic} back: timed out after ${timeoutMs} ms with ${received.length} message(s)`));
    }, timeoutMs);
    const onData = (m: Message): void => {
      received.push(m);
      m.ack();
      if (done(received)) {
        cleanup();
        resolve();
      }
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      source.off('data', onData);
      source.off('error', onError);
    };
    source.on('data', onData);
    source.on('error', onError);
  });
  source.resume();
  await source.close();
  return received;
}

describe('flow() error policy with Kafka', () => {
  it('one poison record among 100,000: 3 deliveries, then the dead-letter topic with its headers, bytes and key; every other record delivered; offsets committed to the end; memory bounded', async (t) => {
    const total = 100_000;
    const poison = 61_234;
    const bytes = 256;
    // 25 MB of payload, about 125 MiB once read: a source that read ahead without bound would show.
    const { topic, ends } = await backlog(total, 64, { bytes });
    const target = await broker.createTopic({ partitions: 3 });
    const dlq = await broker.createTopic({ partitions: 1 });
    const groupId = `g-${randomUUID()}`;

    const memory = await sampleMemory();
    const source = kafkaSource(fast({ topics: topic, groupId }));
    const deliveries: Array<{ attempt: number | undefined; at: number }> = [];
    const sink = gate(kafkaSink({ brokers: broker.bootstrap, topic: target }), (m) => {
      if (indexOf(m) !== poison) return undefined;
      deliveries.push({ attempt: m.attempt, at: performance.now() });
      return refusal(`record ${poison}`);
    });
    const deadLetter = kafkaSink({ brokers: broker.bootstrap, topic: dlq });
    const running = flow({ source, sink, maxAttempts: 3, retryBackoff: { minTimeoutMs: 50, maxTimeoutMs: 200 }, deadLetter });
    // Stop flows before the broker goes (hooks run in the order added; the broker's is the file's after()).
    t.after(() => running.stop().catch(() => undefined));
    const policy = watchPolicy(running);
    await waitFor('every record acked or dead-lettered', () => running.stats.acks + running.stats.deadLettered >= total, 120_000);
    const stats = await running.stop();
    const figures = memory.stop();
    t.diagnostic(`${stats.durationMs.toFixed(0)} ms for ${total} records; ${describeMemory(figures)}`);

    assertOnePoison(stats, total, deliveries, policy, 50);

    assert.deepEqual(await broker.committed(groupId, topic, 3), ends, 'the committed offsets are the end offsets of every partition');

    const dead = await readBack(t, dlq, (r) => r.length >= 1);
    assert.equal(dead.length, 1);
    const record = dead[0]!;
    assert.equal(record.data.toString(), value(poison, bytes), 'the original bytes');
    assert.equal(record.key, `k${poison % 64}`, 'the original key');
    const headers = record.headers!;
    assert.equal(headers.seq, String(poison), 'the original headers');
    assert.equal(headers['x-manifold-dead-letter-source'], 'kafka');
    assert.deepEqual(JSON.parse(headers['x-manifold-dead-letter-position']!), {
      topic,
      partition: (poison % 64) % 3,
      offset: String(offsetOf(poison, 64, 3)),
    });
    assert.equal(headers['x-manifold-dead-letter-attempts'], '3');
    assert.equal(headers['x-manifold-dead-letter-error-code'], 'MANIFOLD_ERR_DELIVERY');
    assert.match(headers['x-manifold-dead-letter-error']!, /test: the sink refused record 61234/);
    assert.ok(Math.abs(Date.parse(headers['x-manifold-dead-letter-failed-at']!) - Date.now()) < 600_000, 'failed-at is a recent ISO time');

    const seen = new Set<number>();
    const delivered = await readBack(t, target, (r) => {
      for (let i = seen.size; i < r.length; i++) seen.add(indexOf(r[i]!));
      return r.length >= total - 1;
    });
    assert.equal(delivered.length, total - 1, 'every other record arrived once');
    assert.equal(seen.size, total - 1);
    assert.ok(!seen.has(poison), 'the poison record is not in the target topic');
    assertBoundedMemory(figures, { livePeakMiB: 64, liveAfterMiB: 24, rssMiB: 1024 });
  });

  it('a record refused twice and then taken is delivered once, and the later records of its key that were read after its first refusal reach the sink after it', async (t) => {
    const total = 20_000;
    const keys = 20;
    const flaky = 5_000;
    const flakyKey = `k${flaky % keys}`;
    const { topic, ends } = await backlog(total, keys);
    const target = await broker.createTopic({ partitions: 3 });
    const groupId = `g-${randomUUID()}`;
    // One clock for three kinds of event: read from the source, refused by the sink, taken by the sink.
    let clock = 0;
    const readAt = new Map<number, number>();
    const takenAt = new Map<number, number>();
    const refusedAt: number[] = [];
    const flakyAttempts: Array<number | undefined> = [];
    const twice: number[] = [];
    const source = kafkaSource(fast({ topics: topic, groupId }));
    const sink = gate(kafkaSink({ brokers: broker.bootstrap, topic: target }), (m) => {
      const i = indexOf(m);
      if (i === flaky) {
        flakyAttempts.push(m.attempt);
        if (flakyAttempts.length <= 2) {
          refusedAt.push(clock++);
          return refusal(`record ${flaky}`);
        }
      }
      if (takenAt.has(i)) twice.push(i);
      takenAt.set(i, clock++);
      return undefined;
    });
    const running = flow({ source, sink, maxAttempts: 5, retryBackoff: { minTimeoutMs: 300, maxTimeoutMs: 300 } });
    t.after(() => running.stop().catch(() => undefined));
    // flow() has paused the source and listens first: a record is admitted by the policy before it is noted here.
    source.on('data', (m: Message) => readAt.set(indexOf(m), clock++));
    await waitFor('every record acked', () => running.stats.acks >= total, 90_000);
    const stats = await running.stop();

    assert.deepEqual(flakyAttempts, [1, 2, 3], 'the record reached the sink 3 times');
    assert.deepEqual(twice, [], 'the sink took every record once');
    assert.deepEqual({ acks: stats.acks, redeliveries: stats.redeliveries, deadLettered: stats.deadLettered, nacks: stats.nacks }, { acks: total, redeliveries: 2, deadLettered: 0, nacks: 0 });
    assert.deepEqual(await broker.committed(groupId, topic, 3), ends, 'the committed offsets are the end offsets');

    const firstRefusal = refusedAt[0]!;
    const takenFlaky = takenAt.get(flaky)!;
    const laterOfKey = Array.from({ length: total }, (_, i) => i).filter((i) => i > flaky && i % keys === flaky % keys);
    const readAfter = laterOfKey.filter((i) => readAt.get(i)! > firstRefusal);
    const ahead = laterOfKey.filter((i) => takenAt.get(i)! < takenFlaky);
    t.diagnostic(`${readAfter.length} later records of ${flakyKey} were read while it waited; ${ahead.length} already read before its first refusal reached the sink ahead of it`);
    assert.ok(readAfter.length >= 10, `records of ${flakyKey} were read while it waited for its retry (${readAfter.length})`);
    for (const i of readAfter) assert.ok(takenAt.get(i)! > takenFlaky, `record ${i} of ${flakyKey}, read after the first refusal, reached the sink after ${flaky}`);
    for (const i of ahead) assert.ok(readAt.get(i)! < firstRefusal, `record ${i} of ${flakyKey} reached the sink before ${flaky}: it was read before the first refusal`);
    const othersMeanwhile = [...takenAt].filter(([i, at]) => i % keys !== flaky % keys && at > firstRefusal && at < takenFlaky).length;
    assert.ok(othersMeanwhile > 0, 'other keys kept flowing while the record waited');

    // What arrived, in the order of the target topic (one key, one partition).
    const delivered = await readBack(t, target, (r) => r.length >= total);
    assert.equal(delivered.length, total);
    assert.equal(new Set(delivered.map(indexOf)).size, total, 'every record once');
    const byKey = new Map<string, number[]>();
    for (const m of delivered) byKey.set(m.key!, [...(byKey.get(m.key!) ?? []), indexOf(m)]);
    for (const [key, order] of byKey) {
      if (key === flakyKey) continue;
      assert.ok(order.every((i, n) => n === 0 || i > order[n - 1]!), `key ${key} kept its order`);
    }
    const order = byKey.get(flakyKey)!;
    const at = order.indexOf(flaky);
    assert.deepEqual(
      order.filter((i) => i !== flaky),
      order.filter((i) => i !== flaky).toSorted((a, b) => a - b),
      `the other records of ${flakyKey} kept their order`,
    );
    assert.deepEqual(order.slice(0, at).filter((i) => i > flaky), ahead, `only the records read before the first refusal precede ${flaky} in the topic`);
    assert.ok(readAfter.every((i) => order.indexOf(i) > at), `every record of ${flakyKey} read after the first refusal follows it in the topic`);
  });

  it('kill -9 while a record waits for its retry: a new member of the group gets it again, and nothing is lost', async (t) => {
    const total = 3000;
    const keys = 30;
    const poison = 1000;
    const { topic, ends } = await backlog(total, keys);
    const poisonPartition = (poison % keys) % 3;
    const poisonOffset = BigInt(offsetOf(poison, keys, 3));
    const groupId = `g-${randomUUID()}`;
    const dir = await mkdtemp(join(tmpdir(), 'manifold-retry-child-'));
    const out = join(dir, 'out');
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../fixtures/kafka-retry-child.ts', import.meta.url))], {
      env: { ...process.env, MANIFOLD_KAFKA_RETRY_CHILD: JSON.stringify({ brokers: broker.bootstrap, topic, groupId, poison: value(poison), backoffMs: 120_000, out }) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    t.after(async () => {
      child.kill('SIGKILL');
      await exited;
      await rm(dir, { recursive: true, force: true });
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const processed = new Set<number>();
    const refused: string[] = [];
    let waiting: string | undefined;
    /** Reads what the child has written so far (whole lines only). */
    const progress = async (): Promise<void> => {
      const text = await readFile(out, 'utf8').catch(() => '');
      for (const line of text.slice(0, text.lastIndexOf('\n') + 1).split('\n')) {
        if (line.startsWith('processed ')) processed.add(Number(line.slice('processed r-'.length)));
        else if (line.startsWith('refused ') && !refused.includes(line.slice('refused '.length))) refused.push(line.slice('refused '.length));
        else if (line.startsWith('waiting ')) waiting = line.slice('waiting '.length);
      }
    };
    // Everything but the poison record and the later records of its key, which the policy holds behind it.
    const expected = Array.from({ length: total }, (_, i) => i).filter((i) => i !== poison && !(i > poison && i % keys === poison % keys));
    try {
      await waitFor('the child to process every record it may and to commit up to the waiting one', async () => {
        await progress();
        if (waiting === undefined || !expected.every((i) => processed.has(i))) return false;
        const committed = await broker.committed(groupId, topic, 3);
        return committed.every((offset, p) => offset === (p === poisonPartition ? poisonOffset : ends[p]));
      });
    } catch (error) {
      throw new Error(`${(error as Error).message}; processed ${processed.size}, waiting ${waiting}, stderr: ${stderr}`);
    }
    child.kill('SIGKILL');
    assert.equal(await exited, 'SIGKILL');
    await progress();
    assert.deepEqual(refused, [`${value(poison)} 1`], 'the record was refused once and was waiting for its second delivery');
    assert.match(waiting!, new RegExp(`^${value(poison)} 2 120000$`));
    assert.ok(!processed.has(poison));

    // A new member of the group: it starts at the committed offsets.
    const source = kafkaSource(fast({ topics: topic, groupId }));
    const got = new Set<number>();
    const sink = new Writable({
      objectMode: true,
      write(m: Message, _encoding, callback) {
        got.add(indexOf(m));
        m.ack();
        callback();
      },
    });
    const running = flow({ source, sink, maxAttempts: 1 });
    t.after(() => running.stop().catch(() => undefined));
    const missing = (): number[] => Array.from({ length: total }, (_, i) => i).filter((i) => !processed.has(i) && !got.has(i));
    await waitFor('every record the child did not process', () => missing().length === 0, 60_000);
    await waitFor('the new member to commit to the end', async () => {
      const committed = await broker.committed(groupId, topic, 3);
      return committed.every((offset, p) => offset === ends[p]);
    });
    await running.stop();
    assert.ok(got.has(poison), 'the record that was waiting for its retry came back');
    assert.deepEqual(missing(), [], 'nothing was lost');
    assert.ok(
      [...got].every((i) => (i % keys) % 3 === poisonPartition && BigInt(offsetOf(i, keys, 3)) >= poisonOffset),
      'only the records from the waiting one on, on its partition, were read again',
    );
  });
});
