/**
 * kafkaSource against a real single-node Apache Kafka (test/fixtures/kafka.ts):
 * round trip, commits of contiguous acked offsets, backpressure, a consumer
 * killed with -9, two consumers sharing a group, kcat interop, bad input, and
 * the shared conformance suite.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setImmediate as tick, setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { flow } from '../../lib/core/flow.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import { kafkaSink } from '../../lib/kafka/sink.js';
import { s3Sink } from '../../lib/s3/sink.js';
import { KafkaConsumerSource, kafkaSource, type KafkaCheckpointEvent, type KafkaLagEvent, type KafkaSourceOptions } from '../../lib/kafka/source.js';
import { sourceConformance } from '../conformance/suite.js';
import { startKafka, type KafkaBroker } from '../fixtures/kafka.js';
import { startS3 } from '../fixtures/s3.js';

const run = promisify(execFile);
let broker: KafkaBroker;

before(async () => {
  broker = await startKafka();
});
after(async () => {
  await broker?.stop();
});

/** Options that make a test consumer quick: short sessions, frequent commits, short fetch waits. */
function fast(extra: Partial<KafkaSourceOptions> & Pick<KafkaSourceOptions, 'topics' | 'groupId'>): KafkaSourceOptions {
  return {
    brokers: broker.bootstrap,
    startFrom: 'earliest',
    commitIntervalMs: 100,
    sessionTimeoutMs: 6000,
    heartbeatIntervalMs: 500,
    maxWaitMs: 100,
    closeTimeoutMs: 5000,
    ...extra,
  };
}

/** Collects messages until `done(received)` or the timeout, settling each with `settle`. */
function collect(
  source: Readable,
  done: (received: Message[]) => boolean,
  settle: (m: Message) => void = (m) => m.ack(),
  timeoutMs = 60_000,
): Promise<Message[]> {
  return new Promise((resolve, reject) => {
    const received: Message[] = [];
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${timeoutMs} ms with ${received.length} message(s)`));
    }, timeoutMs);
    const onData = (m: Message): void => {
      received.push(m);
      settle(m);
      if (done(received)) {
        cleanup();
        resolve(received);
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
}

async function closeSource(source: Readable & { close(): Promise<void> }): Promise<void> {
  source.resume();
  await source.close();
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * Produces `total` records `bk-<i>` round-robin over a new topic of `partitions` partitions,
 * before any consumer exists; `ends` are the end offsets a fully read group commits.
 */
async function backlog(total: number, partitions = 3): Promise<{ topic: string; ends: bigint[] }> {
  const topic = await broker.createTopic({ partitions });
  await broker.produce(topic, Array.from({ length: total }, (_, i) => ({ value: `bk-${i}`, partition: i % partitions })));
  const ends = Array.from({ length: partitions }, (_, p) => BigInt(Math.floor(total / partitions) + (p < total % partitions ? 1 : 0)));
  return { topic, ends };
}

/**
 * Destroys `source` with an error naming the progress once `progress()` has not moved for `idleMs`,
 * so a source that stops delivering fails the test instead of hanging it. Returns the stop function.
 */
function failOnStall(source: Readable, progress: () => number, idleMs = 15_000): () => void {
  let last = -1;
  let since = Date.now();
  const timer = setInterval(() => {
    const now = progress();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since > idleMs) {
      clearInterval(timer);
      source.destroy(new Error(`stalled: no progress for ${idleMs} ms at ${now}`));
    }
  }, 250);
  return () => clearInterval(timer);
}

describe('kafkaSource', () => {
  it('round-trips 20,000 keyed messages over 6 partitions with per-key order (our sink to our source)', async () => {
    const topic = await broker.createTopic({ partitions: 6 });
    const keys = 50;
    const count = 20_000;
    const sent = Array.from({ length: count }, (_, i) => ({ data: `m-${i}`, key: `key-${i % keys}`, headers: { seq: String(i) } }));
    await pipeline(Readable.from(sent.map((m) => createMessage(m))), kafkaSink({ brokers: broker.bootstrap, topic }));

    const source = kafkaSource(fast({ topics: topic, groupId: `g-${randomUUID()}` }));
    const seen = new Set<string>();
    const received = await collect(source, (r) => {
      for (let i = seen.size; i < r.length; i++) seen.add(r[i]!.data.toString());
      return seen.size >= count;
    });
    await closeSource(source);

    assert.equal(seen.size, count, 'every message arrived');
    assert.equal(received.length, count, 'and none twice');
    const lastByKey = new Map<string, number>();
    const partitionsByKey = new Map<string, Set<number>>();
    for (const m of received) {
      const seq = Number(m.headers?.seq);
      assert.equal(m.data.toString(), `m-${seq}`, 'headers came with their message');
      const key = m.key!;
      assert.ok((lastByKey.get(key) ?? -1) < seq, `key ${key}: ${seq} arrived after ${lastByKey.get(key)}`);
      lastByKey.set(key, seq);
      const parts = partitionsByKey.get(key) ?? new Set<number>();
      parts.add(m.meta!.partition as number);
      partitionsByKey.set(key, parts);
      assert.equal(m.meta!.topic, topic);
      assert.equal(typeof m.meta!.offset, 'string');
      assert.ok(typeof m.timestamp === 'number' && m.timestamp > Date.now() - 600_000, 'timestamp is in ms since the epoch');
    }
    assert.equal(lastByKey.size, keys);
    for (const [key, parts] of partitionsByKey) assert.equal(parts.size, 1, `key ${key} stayed on one partition`);
    assert.equal(new Set(received.map((m) => m.meta!.partition)).size, 6, 'all 6 partitions were used');
  });

  it('commits only the offset after the highest contiguous acked message, never past an unacked or nacked one', async () => {
    const topic = await broker.createTopic({ partitions: 2 });
    const groupId = `g-${randomUUID()}`;
    await broker.produce(topic, Array.from({ length: 40 }, (_, i) => ({ value: `c-${i}`, partition: i % 2 })));
    const source = kafkaSource(fast({ topics: topic, groupId }));
    const checkpoints: KafkaCheckpointEvent[] = [];
    source.on('checkpoint', (e: KafkaCheckpointEvent) => checkpoints.push(e));
    const nacks: unknown[] = [];
    source.on('nack', (e) => nacks.push(e));
    const held: Message[] = [];
    // Partition 0: offset 5 is left unacked (acked later); partition 1: offset 7 is nacked. Acks arrive out of order.
    const late: Message[] = [];
    await collect(source, (r) => r.length >= 40, (m) => {
      const { partition, offset } = m.meta as { partition: number; offset: string };
      if (partition === 0 && offset === '5') held.push(m);
      else if (partition === 1 && offset === '7') m.nack(new Error('nacked on purpose'));
      else if (Number(offset) % 3 === 0) late.push(m);
      else m.ack();
    });
    for (const m of late.reverse()) m.ack();
    await waitFor('commits of both partitions', async () => {
      const [p0, p1] = await broker.committed(groupId, topic, 2);
      return p0 === 5n && p1 === 7n;
    });
    await sleep(400); // several commit intervals: nothing moves past the gaps
    assert.deepEqual(await broker.committed(groupId, topic, 2), [5n, 7n]);
    assert.equal(nacks.length, 1);
    assert.deepEqual({ ...(nacks[0] as object), error: undefined }, { topic, partition: 1, offset: '7', error: undefined });

    held[0]!.ack();
    await waitFor('partition 0 committed to the end', async () => (await broker.committed(groupId, topic, 2))[0] === 20n);
    await closeSource(source);
    assert.deepEqual(await broker.committed(groupId, topic, 2), [20n, 7n], 'close committed what was acked; the nack still holds partition 1');
    assert.ok(checkpoints.some((c) => c.reason === 'interval'));

    // A new member of the group starts at the nacked message.
    const again = kafkaSource(fast({ topics: topic, groupId }));
    const redelivered = await collect(again, (r) => r.length >= 13);
    assert.deepEqual(
      redelivered.map((m) => `${m.meta!.partition}:${m.meta!.offset}`),
      Array.from({ length: 13 }, (_, i) => `1:${i + 7}`),
    );
    await closeSource(again);
    assert.deepEqual(await broker.committed(groupId, topic, 2), [20n, 20n]);
  });

  it("reports 'lag' per partition: the end offset minus the group's committed offset, as the broker has them", async () => {
    const topic = await broker.createTopic({ partitions: 2 });
    const groupId = `g-${randomUUID()}`;
    const produced = [30, 20];
    await broker.produce(topic, [
      ...Array.from({ length: produced[0]! }, (_, i) => ({ value: `l-0-${i}`, partition: 0 })),
      ...Array.from({ length: produced[1]! }, (_, i) => ({ value: `l-1-${i}`, partition: 1 })),
    ]);
    const source = kafkaSource(fast({ topics: topic, groupId, commitIntervalMs: 100 }));
    const lag = new Map<number, KafkaLagEvent>();
    source.on('lag', (e: KafkaLagEvent) => lag.set(e.partition, e));
    // Partition 0 acks offsets below 10, partition 1 below 15; the rest are held.
    const held: Message[] = [];
    const ackedBelow = [10, 15];
    let ackAll = false;
    source.on('data', (m: Message) => {
      const { partition, offset } = m.meta as { partition: number; offset: string };
      if (ackAll || Number(offset) < ackedBelow[partition]!) m.ack();
      else held.push(m);
    });
    /** Waits until the last 'lag' of each partition is the broker's end offset minus its committed offset. */
    const agrees = async (what: string, expected: number[]): Promise<void> => {
      await waitFor(what, async () => {
        const committed = await broker.committed(groupId, topic, 2);
        return [0, 1].every((p) => {
          const e = lag.get(p);
          return e !== undefined && e.lag === expected[p] && e.lag === produced[p]! - Number(committed[p]) && e.committed === String(committed[p]) && e.highWatermark === String(produced[p]);
        });
      });
    };
    await agrees('lag 20 and 5', [20, 5]);
    // Seven more records on partition 1: its end moves, its committed offset does not.
    await broker.produce(topic, Array.from({ length: 7 }, (_, i) => ({ value: `l-1-more-${i}`, partition: 1 })));
    produced[1]! += 7;
    await agrees('lag 20 and 12', [20, 12]);
    ackAll = true;
    for (const m of held.splice(0)) m.ack();
    await agrees('lag 0 once everything is acked and committed', [0, 0]);
    await closeSource(source);
  });

  it('pauses fetching at maxInFlightPerPartition unacked messages and resumes as they are acked', async () => {
    const topic = await broker.createTopic({ partitions: 1 });
    await broker.produce(topic, Array.from({ length: 100 }, (_, i) => ({ value: `p-${i}` })));
    const source = kafkaSource(fast({ topics: topic, groupId: `g-${randomUUID()}`, maxInFlightPerPartition: 10 }));
    const first = await collect(source, (r) => r.length >= 10, () => undefined);
    await sleep(700);
    assert.equal(first.length, 10);
    let extra = 0;
    const count = (): void => {
      extra += 1;
    };
    source.on('data', count);
    await sleep(300);
    assert.equal(extra, 0, 'nothing more while 10 are unacked');
    source.off('data', count);
    const reading = collect(source, (r) => r.length >= 5, () => undefined);
    for (const m of first.slice(0, 5)) m.ack();
    const more = await reading;
    assert.deepEqual(
      more.map((m) => m.data.toString()),
      Array.from({ length: 5 }, (_, i) => `p-${i + 10}`),
    );
    for (const m of [...first, ...more]) m.ack();
    await closeSource(source);
  });

  it('is at-least-once through kill -9: a new member gets every message the dead one had not acked', async () => {
    const topic = await broker.createTopic({ partitions: 3 });
    const groupId = `g-${randomUUID()}`;
    const total = 3000;
    const hold = [700, 701, 1500, 2999];
    await broker.produce(topic, Array.from({ length: total }, (_, i) => ({ value: `k9-${i}`, partition: i % 3 })));
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../fixtures/kafka-consumer-child.ts', import.meta.url))], {
      env: { ...process.env, MANIFOLD_KAFKA_CHILD: JSON.stringify({ brokers: broker.bootstrap, topic, groupId, hold, pace: 10 }) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const processed = new Set<string>();
    const heldSeen = new Set<string>();
    let checkpoints = 0;
    let stderr = '';
    let rest = '';
    child.stdout.on('data', (chunk: Buffer) => {
      const lines = (rest + chunk.toString()).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        if (line.startsWith('processed ')) processed.add(line.slice(10));
        else if (line.startsWith('held ')) heldSeen.add(line.slice(5));
        else if (line === 'checkpoint') checkpoints += 1;
      }
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    try {
      await waitFor('the child to process 1200 messages and commit twice', () => processed.size >= 1200 && checkpoints >= 2, 60_000);
    } catch (error) {
      throw new Error(`${(error as Error).message}; processed ${processed.size}, checkpoints ${checkpoints}, stderr: ${stderr}`);
    } finally {
      child.kill('SIGKILL');
    }
    assert.equal(await exited, 'SIGKILL');
    const committed = await broker.committed(groupId, topic, 3);
    assert.ok(committed.some((o) => o > 0n), `the child committed something: ${committed}`);

    const source = kafkaSource(fast({ topics: topic, groupId }));
    const expected = Array.from({ length: total }, (_, i) => `k9-${i}`).filter((p) => !processed.has(p));
    const got = new Set<string>();
    await collect(source, (r) => {
      got.add(r[r.length - 1]!.data.toString());
      return expected.every((p) => got.has(p));
    });
    await closeSource(source);
    const missing = expected.filter((p) => !got.has(p));
    assert.deepEqual(missing, [], 'every message the dead consumer had not acked was delivered again');
    for (const h of hold.filter((i) => heldSeen.has(`k9-${i}`))) assert.ok(got.has(`k9-${h}`), `held message ${h} came back`);
    assert.ok(got.size < total, `committed offsets were honoured: ${got.size} of ${total} redelivered`);
    assert.ok(processed.size < total - hold.length, `the child was killed mid-stream (${processed.size} processed)`);
  });

  it('splits partitions between two members of a group; when one closes, the other takes over without loss', async () => {
    const topic = await broker.createTopic({ partitions: 6 });
    const groupId = `g-${randomUUID()}`;
    const a = kafkaSource(fast({ topics: topic, groupId }));
    const b = kafkaSource(fast({ topics: topic, groupId }));
    const assignments = new Map<Readable, number>();
    a.on('rebalance', (e: { assignments: unknown[] }) => assignments.set(a, e.assignments.length));
    b.on('rebalance', (e: { assignments: unknown[] }) => assignments.set(b, e.assignments.length));
    const fromA: Message[] = [];
    const fromB: Message[] = [];
    a.on('data', (m: Message) => {
      fromA.push(m);
      m.ack();
    });
    await waitFor('a to own every partition', () => assignments.get(a) === 6);
    b.on('data', (m: Message) => {
      fromB.push(m);
      m.ack();
    });
    await waitFor('the partitions to be split 3 and 3', () => assignments.get(a) === 3 && assignments.get(b) === 3);

    const total = 3000;
    await broker.produce(topic, Array.from({ length: 1500 }, (_, i) => ({ value: `s-${i}`, partition: i % 6 })));
    await waitFor('both members to read the first half', () => new Set([...fromA, ...fromB].map((m) => m.data.toString())).size >= 1500);
    const partsA = new Set(fromA.map((m) => m.meta!.partition));
    const partsB = new Set(fromB.map((m) => m.meta!.partition));
    assert.equal(partsA.size, 3);
    assert.equal(partsB.size, 3);
    assert.deepEqual([...partsA].filter((p) => partsB.has(p)), [], 'no partition was read by both');

    await closeSource(a);
    const aCount = fromA.length;
    await waitFor('b to own every partition', () => assignments.get(b) === 6);
    await broker.produce(topic, Array.from({ length: 1500 }, (_, i) => ({ value: `s-${1500 + i}`, partition: i % 6 })));
    const all = (): Set<string> => new Set([...fromA, ...fromB].map((m) => m.data.toString()));
    await waitFor('every message to arrive', () => all().size >= total);
    await closeSource(b);
    assert.equal(fromA.length, aCount, 'a read nothing after it closed');
    assert.equal(all().size, total, 'nothing was lost');
    assert.ok(fromB.filter((m) => partsA.has(m.meta!.partition)).length >= 750, 'b read the partitions a had');
  });

  it('commits what is acked when a rebalance starts, so the next owner does not read it again', async () => {
    const topic = await broker.createTopic({ partitions: 6 });
    const groupId = `g-${randomUUID()}`;
    await broker.produce(topic, Array.from({ length: 600 }, (_, i) => ({ value: `r-${i}`, partition: i % 6 })));
    // A long interval: only the rebalance can commit within this test.
    const a = kafkaSource(fast({ topics: topic, groupId, commitIntervalMs: 600_000 }));
    const checkpoints: KafkaCheckpointEvent[] = [];
    a.on('checkpoint', (e: KafkaCheckpointEvent) => checkpoints.push(e));
    await collect(a, (r) => r.length >= 600);
    a.on('data', (m: Message) => m.ack());
    assert.deepEqual(await broker.committed(groupId, topic, 6), Array(6).fill(-1n), 'nothing committed before the rebalance');

    const b = kafkaSource(fast({ topics: topic, groupId }));
    let bPartitions = 0;
    b.on('rebalance', (e: { assignments: unknown[] }) => {
      bPartitions = e.assignments.length;
    });
    const fromB: Message[] = [];
    b.on('data', (m: Message) => {
      fromB.push(m);
      m.ack();
    });
    await waitFor('a rebalance checkpoint', () => checkpoints.some((c) => c.reason === 'rebalance'));
    assert.deepEqual(await broker.committed(groupId, topic, 6), Array(6).fill(100n));
    const rebalance = checkpoints.find((c) => c.reason === 'rebalance')!;
    assert.deepEqual(
      rebalance.offsets.map((o) => o.offset),
      Array(6).fill('100'),
    );
    await waitFor('b to be assigned partitions', () => bPartitions === 3);
    await sleep(1000); // b fetches from the committed offsets: there is nothing left
    await closeSource(a);
    await closeSource(b);
    assert.deepEqual(fromB.map((m) => m.data.toString()), [], 'b read nothing that a had acked');
  });

  describe('a backlog read by a sink that acks asynchronously', () => {
    const total = 20_000;

    it('reads 20,000 records to the end with for await and an await before each ack; lag 0', async (t) => {
      const { topic, ends } = await backlog(total);
      const groupId = `g-${randomUUID()}`;
      const source = kafkaSource(fast({ topics: topic, groupId }));
      t.after(() => source.destroy());
      const seen = new Set<string>();
      let received = 0;
      t.after(failOnStall(source, () => received));
      let closing: Promise<void> | undefined;
      for await (const m of source as AsyncIterable<Message>) {
        await tick();
        m.ack();
        received += 1;
        seen.add(m.data.toString());
        if (seen.size === total) closing ??= source.close();
      }
      await closing;
      assert.equal(seen.size, total, 'every record arrived');
      assert.equal(received, total, 'and none twice');
      assert.deepEqual(await broker.committed(groupId, topic, 3), ends, 'the committed offsets are the end offsets');
    });

    it('reads 20,000 records to the end into a Writable that acks in setImmediate; lag 0', async (t) => {
      const { topic, ends } = await backlog(total);
      const groupId = `g-${randomUUID()}`;
      const source = kafkaSource(fast({ topics: topic, groupId }));
      t.after(() => source.destroy());
      const seen = new Set<string>();
      let acked = 0;
      t.after(failOnStall(source, () => acked));
      let closing: Promise<void> | undefined;
      const sink = new Writable({
        objectMode: true,
        write(m: Message, _encoding, done) {
          setImmediate(() => {
            m.ack();
            acked += 1;
            seen.add(m.data.toString());
            if (seen.size === total) closing ??= source.close();
            done();
          });
        },
      });
      await pipeline(source, sink);
      await closing;
      assert.equal(seen.size, total, 'every record arrived');
      assert.equal(acked, total, 'and none twice');
      assert.deepEqual(await broker.committed(groupId, topic, 3), ends, 'the committed offsets are the end offsets');
    });

    it('flow() resolves only after the final commit: a program that exits right after it loses nothing', async (t) => {
      const { topic, ends } = await backlog(2000);
      const groupId = `g-${randomUUID()}`;
      // No interval commit comes before the stop: only close() commits.
      const source = kafkaSource(fast({ topics: topic, groupId, commitIntervalMs: 600_000 }));
      t.after(() => source.destroy());
      let acked = 0;
      const sink = new Writable({
        objectMode: true,
        write(m: Message, _encoding, done) {
          setImmediate(() => {
            m.ack();
            acked += 1;
            done();
          });
        },
      });
      const controller = new AbortController();
      const running = flow({ source, sink, signal: controller.signal });
      await waitFor('every record acked', () => acked === 2000);
      controller.abort();
      await running;
      // Read at once, as `await flow(...); process.exit()` leaves it.
      assert.deepEqual(await broker.committed(groupId, topic, 3), ends);
    });

    it('reads 20,000 records to the end through pipeline(kafkaSource, s3Sink) (acks after fsync); every record is in the bucket; lag 0', async (t) => {
      const s3 = await startS3();
      t.after(() => s3.cleanup());
      const bucket = await s3.createBucket();
      const bufferPath = await s3.tempDir();
      const { topic, ends } = await backlog(total);
      const groupId = `g-${randomUUID()}`;
      const source = kafkaSource(fast({ topics: topic, groupId }));
      t.after(() => source.destroy());
      // Commits are the only outside view of s3Sink's acks: all 20,000 are acked once every partition is committed to its end.
      const committed = ends.map(() => 0n);
      t.after(failOnStall(source, () => Number(committed.reduce((a, b) => a + b, 0n))));
      let closing: Promise<void> | undefined;
      source.on('checkpoint', (e: KafkaCheckpointEvent) => {
        for (const { partition, offset } of e.offsets) committed[partition] = BigInt(offset);
        if (committed.every((offset, p) => offset === ends[p])) closing ??= source.close();
      });
      await pipeline(source, s3Sink({ bucket, bufferPath, client: s3.client }));
      await closing;
      const stored = (await s3.objects(bucket)).flatMap((o) => o.body.toString().split('\n').slice(0, -1));
      assert.equal(new Set(stored).size, total, 'every record is in the bucket');
      assert.equal(stored.length, total, 'once');
      assert.deepEqual(await broker.committed(groupId, topic, 3), ends, 'the committed offsets are the end offsets');
    });
  });

  it('keeps committing every commitIntervalMs while a sink works synchronously without ever yielding', async (t) => {
    const { topic } = await backlog(4000);
    const groupId = `g-${randomUUID()}`;
    const source = kafkaSource(fast({ topics: topic, groupId, commitIntervalMs: 200 }));
    t.after(() => source.destroy());
    const commits: number[] = [];
    source.on('checkpoint', (e: KafkaCheckpointEvent) => {
      if (e.reason === 'interval') commits.push(performance.now());
    });
    // About 5 s of blocking work, watched while the backlog lasts.
    const window = 2500;
    let processed = 0;
    let firstAt = 0;
    let lastAt = 0;
    let closing: Promise<void> | undefined;
    const sink = new Writable({
      objectMode: true,
      write(m: Message, _encoding, done) {
        const until = performance.now() + 2;
        while (performance.now() < until); // CPU-bound work that never returns to the event loop
        m.ack();
        processed += 1;
        if (processed === 1) firstAt = performance.now();
        if (processed === window) {
          lastAt = performance.now();
          closing ??= source.close();
        }
        done();
      },
    });
    await pipeline(source, sink);
    await closing;
    assert.ok(processed >= window, `the sink processed ${processed} records`);
    const marks = [firstAt, ...commits.filter((c) => c > firstAt && c < lastAt), lastAt];
    const gaps = marks.slice(1).map((m, i) => m - marks[i]!);
    const longest = Math.max(...gaps);
    assert.ok(
      longest < 1000,
      `longest time without an interval commit: ${Math.round(longest)} ms (${marks.length - 2} commits in ${Math.round(lastAt - firstAt)} ms of processing)`,
    );
    const offsets = await broker.committed(groupId, topic, 3);
    assert.equal(
      // -1: a partition the sink never got to (a fetch response hands partitions over one after the other).
      offsets.reduce((a, b) => a + (b < 0n ? 0n : b), 0n),
      BigInt(processed),
      `the final commit covers every acked record: ${offsets}`,
    );
  });

  it('keeps reading across a broker crash (kill -9) and restart, losing nothing', async () => {
    const topic = await broker.createTopic({ partitions: 2 });
    await broker.produce(topic, Array.from({ length: 300 }, (_, i) => ({ value: `b-${i}`, partition: i % 2 })));
    const source = kafkaSource(fast({ topics: topic, groupId: `g-${randomUUID()}`, retry: { retries: 30, minTimeoutMs: 100, maxTimeoutMs: 1000 } }));
    const got = new Set<string>();
    let errored: Error | undefined;
    source.on('error', (error: Error) => {
      errored = error;
    });
    source.on('data', (m: Message) => {
      got.add(m.data.toString());
      m.ack();
    });
    await waitFor('the first 300', () => got.size >= 300);
    await broker.restart({ signal: 'SIGKILL', downMs: 1000 });
    await broker.produce(topic, Array.from({ length: 300 }, (_, i) => ({ value: `b-${300 + i}`, partition: i % 2 })));
    await waitFor('all 600 after the restart', () => got.size >= 600 || errored !== undefined, 90_000);
    assert.equal(errored, undefined);
    await closeSource(source);
    assert.equal(got.size, 600);
  });

  it("starts a partition again per startFrom when the group's offset is out of range (past the log's end)", async () => {
    const { Admin } = await import('@platformatic/kafka');
    for (const startFrom of ['earliest', 'latest'] as const) {
      const { topic } = await backlog(20, 1);
      const groupId = `g-${randomUUID()}`;
      const admin = new Admin({ clientId: 'test', bootstrapBrokers: [broker.bootstrap] });
      try {
        // The group has a committed offset that no record has: the first fetch is refused as out of range.
        await admin.alterConsumerGroupOffsets({ groupId, topics: [{ name: topic, partitionOffsets: [{ partition: 0, offset: 1000n }] }] });
      } finally {
        await admin.close();
      }
      const source = kafkaSource(fast({ topics: topic, groupId, startFrom }));
      try {
        if (startFrom === 'earliest') {
          const received = await collect(source, (r) => r.length >= 20);
          assert.deepEqual(
            received.map((m) => [m.data.toString(), (m.meta as { offset: string }).offset]),
            Array.from({ length: 20 }, (_, i) => [`bk-${i}`, String(i)]),
          );
        } else {
          // From the log's end: none of the backlog arrives, only records produced after the reset. Those are
          // produced one every 100 ms until three arrived (when the reset happened is not observable from here).
          let produced = 0;
          const producing = setInterval(() => void broker.produce(topic, [{ value: `new-${produced++}` }]), 100);
          let received: Message[];
          try {
            received = await collect(source, (r) => r.length >= 3);
          } finally {
            clearInterval(producing);
          }
          const first = Number(/^new-(\d+)$/.exec(received[0]!.data.toString())?.[1]);
          assert.ok(Number.isInteger(first), `the first message is a new one, not ${received[0]!.data.toString()}`);
          assert.deepEqual(
            received.map((m) => [m.data.toString(), (m.meta as { offset: string }).offset]),
            [0, 1, 2].map((i) => [`new-${first + i}`, String(20 + first + i)]),
          );
        }
      } finally {
        await closeSource(source);
      }
    }
  });

  it('skips transaction markers and aborted records, and commits past the markers', async () => {
    const { Producer } = await import('@platformatic/kafka');
    const topic = await broker.createTopic({ partitions: 1 });
    const producer = new Producer({ clientId: 'tx', bootstrapBrokers: [broker.bootstrap], idempotent: true, transactionalId: `tx-${randomUUID()}` });
    try {
      const committed = await producer.beginTransaction();
      await committed.send({ messages: [0, 1, 2].map((i) => ({ topic, value: Buffer.from(`kept-${i}`), headers: new Map([[Buffer.from('h'), Buffer.from(`v${i}`)]]) })) });
      await committed.commit();
      const aborted = await producer.beginTransaction();
      await aborted.send({ messages: [0, 1].map((i) => ({ topic, value: Buffer.from(`aborted-${i}`) })) });
      await aborted.abort();
    } finally {
      await producer.close();
    }
    await broker.produce(topic, [{ value: 'plain-0' }, { value: 'plain-1' }]);
    const groupId = `g-${randomUUID()}`;
    const source = kafkaSource(fast({ topics: topic, groupId }));
    try {
      const received = await collect(source, (r) => r.length >= 5);
      assert.deepEqual(
        received.map((m) => m.data.toString()),
        ['kept-0', 'kept-1', 'kept-2', 'plain-0', 'plain-1'],
      );
      assert.deepEqual(received[1]!.headers, { h: 'v1' });
      // 3 records + a commit marker + 2 aborted records + an abort marker + 2 records: the last is offset 8.
      assert.equal((received[4]!.meta as { offset: string }).offset, '8');
      await sleep(300);
      assert.equal(received.length, 5, 'nothing aborted or a marker is delivered');
      await waitFor('the commit after the last record', async () => (await broker.committed(groupId, topic, 1))[0] === 9n);
    } finally {
      await closeSource(source);
    }
  });

  it('reads two topics in one group: every message says its topic, and each topic is committed to its end', async () => {
    const a = await backlog(30, 2);
    const b = await backlog(20, 1);
    const groupId = `g-${randomUUID()}`;
    const source = kafkaSource(fast({ topics: [a.topic, b.topic], groupId }));
    try {
      const received = await collect(source, (r) => r.length >= 50);
      const byTopic = (topic: string): string[] =>
        received
          .filter((m) => (m.meta as { topic: string }).topic === topic)
          .map((m) => m.data.toString())
          .sort();
      assert.deepEqual(byTopic(a.topic), Array.from({ length: 30 }, (_, i) => `bk-${i}`).sort());
      assert.deepEqual(byTopic(b.topic), Array.from({ length: 20 }, (_, i) => `bk-${i}`).sort());
      await waitFor('both topics committed to their ends', async () => {
        const [ca, cb] = await Promise.all([broker.committed(groupId, a.topic, 2), broker.committed(groupId, b.topic, 1)]);
        return ca.join() === a.ends.join() && cb.join() === b.ends.join();
      });
    } finally {
      await closeSource(source);
    }
  });

  it('hands over a 3 MiB record in one partition while the others hold a backlog, without waiting for them to drain', async () => {
    // Larger than the 1 MiB a partition may add to a fetch: the broker returns it whole only when its partition
    // comes first in the fetch. The broker's fetch session moves the partitions that returned data to the back (and
    // the source rotates the order of its requests too), so it comes after a round or two of the others (4,001st
    // here), not after the 12 MB of partitions 0 and 2.
    const topic = await broker.createTopic({ partitions: 3, config: { 'max.message.bytes': String(8 * 1024 * 1024) } });
    const big = Buffer.alloc(3 * 1024 * 1024, 'b');
    big.write('big-start');
    const small = Array.from({ length: 12_000 }, (_, i) => ({ value: `s-${i}-${'x'.repeat(1000)}`, partition: i % 2 === 0 ? 0 : 2 }));
    await broker.produce(topic, small);
    await broker.produce(topic, [{ value: 'before-big', partition: 1 }, { value: big, partition: 1 }, { value: 'after-big', partition: 1 }]);
    const source = kafkaSource(fast({ topics: topic, groupId: `g-${randomUUID()}` }));
    try {
      const received = await collect(source, (r) => r.length >= 12_003);
      const one = received.filter((m) => (m.meta as { partition: number }).partition === 1);
      assert.deepEqual(
        one.map((m) => (m.data.length > 100 ? `${m.data.length} bytes` : m.data.toString())),
        ['before-big', `${big.length} bytes`, 'after-big'],
      );
      assert.ok(one[1]!.data.equals(big), 'the 3 MiB record arrives as it was written');
      assert.equal(new Set(received.map((m) => `${(m.meta as { partition: number }).partition}:${(m.meta as { offset: string }).offset}`)).size, 12_003);
      const at = received.indexOf(one[1]!);
      assert.ok(at < received.length / 2, `the 3 MiB record came ${at}th of ${received.length}: it waited for the other partitions`);
    } finally {
      await closeSource(source);
    }
  });

  it('delivers a tombstone as empty data and an empty header value as an empty string, with its key', async () => {
    const { Producer } = await import('@platformatic/kafka');
    const topic = await broker.createTopic({ partitions: 1 });
    const producer = new Producer({ clientId: 'tombstone', bootstrapBrokers: [broker.bootstrap] });
    try {
      await producer.send({
        messages: [
          { topic, key: Buffer.from('k1'), value: undefined, headers: new Map([[Buffer.from('empty'), Buffer.alloc(0)]]) },
          { topic, key: Buffer.from('k2'), value: Buffer.from('v2') },
        ],
      });
    } finally {
      await producer.close();
    }
    const source = kafkaSource(fast({ topics: topic, groupId: `g-${randomUUID()}` }));
    try {
      const received = await collect(source, (r) => r.length >= 2);
      assert.equal(received[0]!.key, 'k1');
      assert.equal(received[0]!.data.length, 0);
      assert.deepEqual(received[0]!.headers, { empty: '' });
      assert.equal(received[1]!.key, 'k2');
      assert.equal(received[1]!.data.toString(), 'v2');
      assert.equal(received[1]!.headers, undefined);
    } finally {
      await closeSource(source);
    }
  });

  it('reads through a SASL/PLAIN listener; a wrong password fails at once with an auth error that does not show it', async () => {
    const topic = await broker.createTopic({ partitions: 1 });
    await broker.produce(topic, [{ value: 'over-sasl' }]);
    const source = kafkaSource(fast({ brokers: broker.saslBootstrap, sasl: broker.sasl, topics: topic, groupId: `g-${randomUUID()}` }));
    const got = await collect(source, (r) => r.length >= 1);
    await closeSource(source);
    assert.equal(got[0]!.data.toString(), 'over-sasl');

    const wrong = kafkaSource(
      fast({ brokers: broker.saslBootstrap, sasl: { ...broker.sasl, password: 'not-the-password-42' }, topics: topic, groupId: `g-${randomUUID()}`, retry: { retries: 5, minTimeoutMs: 10 } }),
    );
    const reconnects: unknown[] = [];
    wrong.on('reconnect', (e) => reconnects.push(e));
    wrong.resume();
    const error = await new Promise<Error>((resolve) => wrong.once('error', resolve));
    assert.ok(error instanceof ManifoldError, String(error));
    assert.equal(error.code, ErrorCodes.AUTH);
    assert.equal(reconnects.length, 0, 'an auth failure is not retried');
    assert.doesNotMatch(`${error.message} ${String(error.cause)}`, /not-the-password-42/);
  });

  it('reads keys and headers produced by kcat', async () => {
    const topic = await broker.createTopic({ partitions: 1 });
    const child = spawn('kcat', ['-b', broker.bootstrap, '-P', '-t', topic, '-K', '|', '-H', 'origin=kcat', '-H', 'trace=abc-123'], { stdio: ['pipe', 'ignore', 'pipe'] });
    child.stdin.end(['user-1|{"n":1}', 'user-2|{"n":2}', 'user-1|{"n":3}', ''].join('\n'));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 0);
    const source = kafkaSource(fast({ topics: topic, groupId: `g-${randomUUID()}` }));
    const got = await collect(source, (r) => r.length >= 3);
    await closeSource(source);
    assert.deepEqual(
      got.map((m) => [m.key, m.data.toString(), m.headers]),
      [
        ['user-1', '{"n":1}', { origin: 'kcat', trace: 'abc-123' }],
        ['user-2', '{"n":2}', { origin: 'kcat', trace: 'abc-123' }],
        ['user-1', '{"n":3}', { origin: 'kcat', trace: 'abc-123' }],
      ],
    );
  });

  it('fails with a clear error after the retry budget when no broker answers', async () => {
    const source = kafkaSource({
      brokers: '127.0.0.1:1',
      topics: 'nowhere',
      groupId: 'g',
      retry: { retries: 2, minTimeoutMs: 10, maxTimeoutMs: 20 },
    });
    const reconnects: unknown[] = [];
    source.on('reconnect', (e) => reconnects.push(e));
    source.resume();
    const error = await new Promise<Error>((resolve) => source.once('error', resolve));
    assert.ok(error instanceof ManifoldError);
    assert.equal(error.code, ErrorCodes.RETRIES_EXHAUSTED);
    assert.match(error.message, /kafkaSource: consuming nowhere from 127\.0\.0\.1:1 as group g failed after 3 attempts/);
    assert.equal(reconnects.length, 2);
  });

  it('fails at once naming the topic when it does not exist', async () => {
    const source = kafkaSource(fast({ topics: `missing-${randomUUID()}`, groupId: 'g' }));
    source.resume();
    const error = await new Promise<Error>((resolve) => source.once('error', resolve));
    assert.ok(error instanceof ManifoldError);
    assert.equal(error.code, ErrorCodes.NOT_FOUND);
    assert.match(error.message, /Unknown topic missing-/);
  });

  it('returns an instance of the exported KafkaConsumerSource, as the other connectors do', async () => {
    const source = kafkaSource(fast({ topics: 'instance-check', groupId: `g-${randomUUID()}` }));
    assert.ok(source instanceof KafkaConsumerSource);
    assert.deepEqual([source.topics, source.groupId.startsWith('g-')], [['instance-check'], true]);
    source.destroy();
    await new Promise((resolve) => source.once('close', resolve));
  });

  it('rejects bad options at construction, naming the option', () => {
    const ok = { brokers: '127.0.0.1:9092', topics: 't', groupId: 'g' };
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...ok, brokers: 'no-port' }, /options\.brokers must be a list of "host:port" strings, got "no-port"/],
      [{ ...ok, brokers: [] }, /options\.brokers must be/],
      [{ ...ok, topics: [] }, /options\.topics must be a non-empty string or a non-empty array of them, got \[\]/],
      [{ brokers: '127.0.0.1:9092', groupId: 'g' }, /options\.topics must be a non-empty string or a non-empty array of them, got undefined/],
      [{ ...ok, topics: 'bad topic' }, /options\.topics must be topic names/],
      [{ ...ok, groupId: '' }, /options\.groupId must be a non-empty string/],
      [{ ...ok, startFrom: 'beginning' }, /options\.startFrom must be one of "latest", "earliest", got "beginning"/],
      [{ ...ok, maxInFlightPerPartition: 0 }, /options\.maxInFlightPerPartition must be a positive integer, got 0/],
      [{ ...ok, commitIntervalMs: -5 }, /options\.commitIntervalMs must be/],
      [{ ...ok, sessionTimeoutMs: 1000, heartbeatIntervalMs: 2000 }, /heartbeatIntervalMs \(2000\) must be below options\.sessionTimeoutMs \(1000\)/],
      [{ ...ok, sasl: { mechanism: 'PLAIN', username: 'u', password: '' } }, /options\.sasl\.password must be a non-empty string, got "<hidden>"/],
      [{ ...ok, sasl: { mechanism: 'MD5', username: 'u', password: 'secret' } }, /options\.sasl\.mechanism must be one of/],
      [{ ...ok, tls: 'yes' }, /options\.tls must be true, false or \{ ca, cert, key, passphrase, servername, rejectUnauthorized, minVersion \}, got "yes"/],
      [{ ...ok, retry: { retries: -1 } }, /kafkaSource: options\.retry\.retries must be a non-negative integer, got -1/],
      [{ ...ok, groupID: 'x' }, /unknown option "groupID" \(did you mean "groupId"\?\)/],
      [{ ...ok, comitIntervalMs: 5 }, /unknown option "comitIntervalMs" \(did you mean "commitIntervalMs"\?\)/],
      [{ ...ok, commitIntervalMs: '5s' }, /options\.commitIntervalMs must be a number of at least 1 \(milliseconds\), got "5s"/],
      [{ ...ok, fetchMaxBytes: 512 }, /options\.fetchMaxBytes must be an integer of at least 1024 \(bytes\), got 512/],
      [{ ...ok, sasl: 'user:secret' }, /options\.sasl must be an object \{ mechanism, username, password \} \(or \{ mechanism: 'AWS_MSK_IAM', region \}\), got "\(hidden\)"/],
    ];
    for (const [options, message] of cases) {
      assert.throws(
        () => kafkaSource(options as unknown as KafkaSourceOptions),
        (error: unknown) => error instanceof ManifoldError && error.code === ErrorCodes.INVALID_OPTION && message.test(error.message),
        `expected ${message} for ${JSON.stringify(options)}`,
      );
    }
  });

  it('never shows the SASL password in its errors', async () => {
    const source = kafkaSource({
      brokers: '127.0.0.1:1',
      topics: 't',
      groupId: 'g',
      sasl: { mechanism: 'PLAIN', username: 'u', password: 'hunter2-secret' },
      retry: false,
    });
    source.resume();
    const error = await new Promise<Error>((resolve) => source.once('error', resolve));
    assert.doesNotMatch(`${error.message} ${String(error.cause)}`, /hunter2/);
  });
});

sourceConformance({
  name: 'kafka',
  redelivers: true,
  timeoutMs: 30_000,
  async setup() {
    const topic = await broker.createTopic({ partitions: 3 });
    const groupId = `g-${randomUUID()}`;
    return {
      source: (options) => kafkaSource(fast({ topics: topic, groupId, ...(options?.signal ? { signal: options.signal } : {}) })),
      produce: (payloads) => broker.produce(topic, payloads.map((value) => ({ value }))),
      async cleanup() {},
    };
  },
});
