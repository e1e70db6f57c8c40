/** kinesisSource against kinesis-local on loopback: polling and enhanced fan-out, resharding, checkpoints, KPL, faults. */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { DescribeStreamConsumerCommand, MergeShardsCommand, PutRecordsCommand, SplitShardCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import { fileCheckpointer } from '../../lib/kinesis/file-checkpointer.js';
import { SHARD_END } from '../../lib/kinesis/checkpoint.js';
import { memoryCheckpointer } from '../../lib/kinesis/memory-checkpointer.js';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { flow } from '../../lib/core/flow.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import { kinesisSink } from '../../lib/kinesis/sink.js';
import { kinesisSource, type CheckpointEvent, type KinesisSource, type KinesisSourceOptions, type LagEvent } from '../../lib/kinesis/source.js';
import { sourceConformance } from '../conformance/suite.js';
import {
  aggregate,
  createStream,
  deleteStream,
  putRaw,
  rawClient,
  shardsOf,
  startFaultProxy,
  startKinesisServer,
  waitActive,
  type KinesisServer,
} from '../fixtures/kinesis.js';

let server: KinesisServer;
before(async () => {
  server = await startKinesisServer();
});
after(async () => {
  await server.stop();
});

const credentials = { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' };
const FAST_RETRY = { retries: 8, minTimeoutMs: 10, maxTimeoutMs: 100 };

function connect(endpoint = server.endpoint): Pick<KinesisSourceOptions, 'endpoint' | 'region' | 'credentials'> {
  return { endpoint, region: 'us-east-1', credentials };
}

/**
 * Reads `source` until `done(received)`, acking by `settle` (ack all by default).
 * Rejects on a source error or after `timeoutMs`.
 */
async function collect(
  source: Readable,
  done: (received: Message[]) => boolean,
  settle: (m: Message, i: number) => void = (m) => m.ack(),
  timeoutMs = 60_000,
): Promise<Message[]> {
  const received: Message[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out with ${received.length} messages`));
    }, timeoutMs);
    const onData = (m: Message): void => {
      received.push(m);
      settle(m, received.length - 1);
      if (done(received)) {
        cleanup();
        source.pause();
        resolve(received);
      }
    };
    const onError = (e: Error): void => {
      cleanup();
      reject(e);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(received);
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      source.off('data', onData);
      source.off('error', onError);
      source.off('end', onEnd);
    };
    source.on('data', onData);
    source.on('error', onError);
    source.on('end', onEnd);
    if (done(received)) onEnd();
  });
}

async function stop(source: KinesisSource): Promise<void> {
  source.resume();
  await source.close();
}

function text(m: Message): string {
  return m.data.toString();
}

/** Asserts that, per key, the numbered records arrived in increasing order. Data is `<key>:<n>`. */
function assertPerKeyOrder(messages: readonly Message[]): void {
  const last = new Map<string, number>();
  for (const m of messages) {
    const [key, n] = text(m).split(':');
    const value = Number(n);
    const previous = last.get(key!) ?? -1;
    assert.ok(value > previous, `key ${key}: ${value} came after ${previous}`);
    last.set(key!, value);
  }
}

describe('kinesisSource options', () => {
  it('rejects streamName and streamARN that disagree, and other bad options, naming them', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ streamName: 'a', streamARN: 'arn:aws:kinesis:us-east-1:000000000000:stream/b' }, /options\.streamName and options\.streamARN name different streams/],
      [{ streamName: 's', startingPosition: 'EARLIEST' }, /options\.startingPosition must be 'LATEST', 'TRIM_HORIZON', \{ timestamp: Date \| ms \} or \{ afterSequenceNumber: '<digits>' \}, got "EARLIEST"/],
      [{ streamName: 's', startingPosition: { afterSequenceNumber: '123' } }, /options\.startingPosition and options\.shardIds must go together/],
      [{ streamName: 's', shardIds: [] }, /options\.shardIds must be a non-empty array of shard ids/],
      [{ streamName: 's', deregisterOnClose: true }, /options\.deregisterOnClose and options\.consumerName go together/],
      [{ streamName: 's', pollIntervalMs: 50 }, /options\.pollIntervalMs must be a number of at least 200 \(milliseconds\), got 50/],
      [{ streamName: 's', maxRecordsPerCall: 20_000 }, /options\.maxRecordsPerCall must be a positive integer of at most 10000 \(the GetRecords limit\), got 20000/],
      [{ streamName: 's', maxInFlightPerShard: 0 }, /options\.maxInFlightPerShard must be a positive integer, got 0/],
      [{ streamName: 's', checkpointer: {} }, /options\.checkpointer must be a Checkpointer/],
      [{ streamName: 's', checkpointIntervalMs: 0 }, /options\.checkpointIntervalMs must be a number of at least 1/],
      [{ streamName: 's', consumer: 'x' }, /unknown option "consumer" \(did you mean "consumerName"\?\)/],
      [{ streamName: 's', maxInFlightPerShrd: 5 }, /kinesisSource: unknown option "maxInFlightPerShrd" \(did you mean "maxInFlightPerShard"\?\)/],
      [{ streamName: 's', retry: 5 }, /options\.retry must be false or an object of retry settings \(retries, minTimeoutMs, maxTimeoutMs, factor, signal\), got 5/],
      [{ streamName: 'bad name!' }, /options\.streamName must be a Kinesis stream name \(1 to 128 of a-z, A-Z, 0-9, _ \. -\), got "bad name!"/],
    ];
    for (const [options, pattern] of cases) {
      assert.throws(
        () => kinesisSource({ region: 'us-east-1', credentials, ...options } as never),
        (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && pattern.test(e.message),
        `${Object.keys(options).join(',')} -> ${pattern}`,
      );
    }
  });

  it('accepts every documented starting position', () => {
    for (const startingPosition of ['LATEST', 'TRIM_HORIZON', { timestamp: new Date() }, { timestamp: Date.now() }] as const) {
      kinesisSource({ streamName: 's', startingPosition, ...connect() }).destroy();
    }
    kinesisSource({ streamName: 's', startingPosition: { afterSequenceNumber: '1' }, shardIds: ['shardId-000000000000'], ...connect() }).destroy();
  });
});

describe('kinesisSource: 20,000 records over 4 shards, written by kinesisSink', () => {
  const N = 20_000;
  const KEYS = 100;
  let raw: KinesisClient;
  let streamName: string;
  before(async () => {
    raw = server.client();
    ({ streamName } = await createStream(raw, 4));
    const counters = new Array<number>(KEYS).fill(0);
    const messages = Array.from({ length: N }, (_, i) => {
      const key = `key${i % KEYS}`;
      return createMessage({ data: `${key}:${counters[i % KEYS]!++}`, key });
    });
    await pipeline(Readable.from(messages), kinesisSink({ streamName, client: server.client() }));
  });
  after(() => deleteStream(raw, streamName));

  for (const mode of ['polling', 'enhanced fan-out'] as const) {
    it(`${mode}: every record arrives once, per-key order kept, checkpoints stored`, async (t) => {
      const checkpointer = memoryCheckpointer();
      const source = kinesisSource({
        streamName,
        ...connect(),
        startingPosition: 'TRIM_HORIZON',
        checkpointer,
        ...(mode === 'enhanced fan-out' ? { consumerName: `c-${Date.now()}`, deregisterOnClose: true } : {}),
      });
      t.after(() => source.destroy());
      const lags: LagEvent[] = [];
      source.on('lag', (e: LagEvent) => lags.push(e));
      const received = await collect(source, (r) => r.length >= N);
      await stop(source);
      assert.equal(received.length, N);
      assert.equal(new Set(received.map(text)).size, N, 'no duplicates');
      assertPerKeyOrder(received);
      const shards = new Set(received.map((m) => m.meta!.shardId));
      assert.equal(shards.size, 4, 'every shard was read');
      for (const m of received.slice(0, 10)) {
        assert.equal(m.key, text(m).split(':')[0]);
        assert.equal(typeof m.timestamp, 'number');
        assert.match(String(m.meta!.sequenceNumber), /^\d+$/);
        assert.equal(m.meta!.subSequenceNumber, 0);
      }
      assert.ok(lags.length > 0 && lags.every((l) => typeof l.millisBehindLatest === 'number'), 'lag events');
      const stored = checkpointer.snapshot(streamName);
      assert.equal(Object.keys(stored).length, 4, 'a checkpoint per shard');
      // Everything was acked: each shard's checkpoint is its last record.
      const lastPerShard = new Map<string, string>();
      for (const m of received) lastPerShard.set(m.meta!.shardId as string, m.meta!.sequenceNumber as string);
      for (const [shardId, seq] of lastPerShard) assert.deepEqual(stored[shardId], { sequenceNumber: seq });
    });
  }
});

/**
 * Splits shard 0, then merges one of its children with shard 1, writing a
 * batch of numbered records per key before each change; returns every record
 * read. Checks children after parents through the 'shard' events and arrival order.
 */
async function reshardWhileReading(t: TestContext, mode: 'polling' | 'enhanced fan-out'): Promise<void> {
  const raw = server.client();
  const { streamName } = await createStream(raw, 2);
  try {
    const source = kinesisSource({
      streamName,
      ...connect(),
      startingPosition: 'TRIM_HORIZON',
      shardDiscoveryIntervalMs: 200,
      pollIntervalMs: 200,
      ...(mode === 'enhanced fan-out' ? { consumerName: `reshard-${Date.now()}`, deregisterOnClose: true } : {}),
    });
    t.after(() => source.destroy());
    const order: Message[] = [];
    source.on('data', (m: Message) => {
      order.push(m);
      m.ack();
    });
    let counter = 0;
    const keys = Array.from({ length: 20 }, (_, i) => `key${i}`);
    const writeRound = async (): Promise<void> => {
      const round = counter++;
      await putRaw(raw, streamName, keys.map((key) => ({ data: Buffer.from(`${key}:${round}`), key })));
    };
    const waitFor = async (count: number): Promise<void> => {
      const deadline = Date.now() + 30_000;
      while (order.length < count) {
        if (Date.now() > deadline) throw new Error(`read ${order.length} of ${count}`);
        await sleep(50);
      }
    };
    for (let i = 0; i < 3; i++) await writeRound();
    await waitFor(60);
    const [s0, s1] = await shardsOf(raw, streamName);
    const mid = (BigInt(s0!.HashKeyRange!.StartingHashKey!) + BigInt(s0!.HashKeyRange!.EndingHashKey!)) / 2n;
    await raw.send(new SplitShardCommand({ StreamName: streamName, ShardToSplit: s0!.ShardId!, NewStartingHashKey: mid.toString() }));
    await waitActive(raw, streamName);
    for (let i = 0; i < 3; i++) await writeRound();
    await waitFor(120);
    // The upper child of shard 0 is adjacent to shard 1: merge them.
    const upper = (await shardsOf(raw, streamName)).find((s) => s.ParentShardId === s0!.ShardId && BigInt(s.HashKeyRange!.StartingHashKey!) === mid)!;
    await raw.send(new MergeShardsCommand({ StreamName: streamName, ShardToMerge: upper.ShardId!, AdjacentShardToMerge: s1!.ShardId! }));
    await waitActive(raw, streamName);
    for (let i = 0; i < 3; i++) await writeRound();
    await waitFor(180);
    await sleep(300);
    await stop(source);

    assert.equal(order.length, 180, 'nothing lost, nothing repeated');
    assert.equal(new Set(order.map(text)).size, 180);
    assertPerKeyOrder(order);
    // A child's first record comes after its parents' last.
    const shards = await shardsOf(raw, streamName);
    assert.equal(shards.length, 5, 'two parents, two split children, one merged child');
    const position = (shardId: string, which: 'first' | 'last'): number => {
      const indexes = order.map((m, i) => (m.meta!.shardId === shardId ? i : -1)).filter((i) => i >= 0);
      return which === 'first' ? indexes[0]! : indexes[indexes.length - 1]!;
    };
    for (const child of shards.filter((s) => s.ParentShardId)) {
      const parents = [child.ParentShardId, child.AdjacentParentShardId].filter((p): p is string => !!p);
      if (!order.some((m) => m.meta!.shardId === child.ShardId)) continue;
      for (const parent of parents) {
        assert.ok(position(child.ShardId!, 'first') > position(parent, 'last'), `${child.ShardId} read after its parent ${parent}`);
      }
    }
    assert.ok(order.some((m) => shards.find((s) => s.ShardId === m.meta!.shardId)?.AdjacentParentShardId), 'the merged child was read');
  } finally {
    await deleteStream(raw, streamName);
  }
}

describe('kinesisSource resharding', () => {
  it('polling: split and merge while reading lose nothing, children after parents', async (t) => {
    await reshardWhileReading(t, 'polling');
  });
  it('enhanced fan-out: split and merge while reading lose nothing, children after parents', async (t) => {
    await reshardWhileReading(t, 'enhanced fan-out');
  });
});

describe('kinesisSource checkpoints', () => {
  it('restarts from a fileCheckpointer after the last checkpoint; duplicates at most the unacked window', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 2);
    const dir = await mkdtemp(join(tmpdir(), 'manifold-kinesis-'));
    t.after(async () => {
      await deleteStream(raw, streamName);
      await rm(dir, { recursive: true, force: true });
    });
    const path = join(dir, 'checkpoints.json');
    const sent = Array.from({ length: 400 }, (_, i) => ({ data: Buffer.from(`key${i % 10}:${Math.floor(i / 10)}`), key: `key${i % 10}` }));
    await putRaw(raw, streamName, sent);

    const first = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON', checkpointer: fileCheckpointer(path), closeTimeoutMs: 200 });
    t.after(() => first.destroy());
    const checkpoints: CheckpointEvent[] = [];
    first.on('checkpoint', (e: CheckpointEvent) => checkpoints.push(e));
    const warnings: ManifoldError[] = [];
    first.on('warning', (e: ManifoldError) => warnings.push(e));
    const acked = new Set<string>();
    const firstRead = await collect(
      first,
      (r) => r.length >= 250,
      (m, i) => {
        // Ack 200, then leave a window of 50 unacked.
        if (i < 200) {
          m.ack();
          acked.add(text(m));
        }
      },
    );
    const unackedWindow = firstRead.length - acked.size;
    await stop(first);
    assert.equal(warnings[0]?.code, ErrorCodes.CLOSE_TIMEOUT, 'close reported the unacked messages');
    assert.ok(checkpoints.length > 0, 'checkpoints were stored on close');
    const file = JSON.parse(await readFile(path, 'utf8')) as { scopes: Record<string, Record<string, { sequenceNumber: string }>> };
    assert.deepEqual(Object.keys(file.scopes), [streamName]);

    const second = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON', checkpointer: fileCheckpointer(path) });
    t.after(() => second.destroy());
    const secondRead = await collect(second, (r) => sent.every((s) => acked.has(s.data.toString()) || r.some((m) => text(m) === s.data.toString())));
    await stop(second);
    const missing = sent.map((s) => s.data.toString()).filter((p) => !acked.has(p) && !secondRead.some((m) => text(m) === p));
    assert.deepEqual(missing, []);
    const duplicates = secondRead.filter((m) => acked.has(text(m))).length;
    assert.ok(duplicates <= unackedWindow, `redelivered ${duplicates} acked messages, more than the unacked window of ${unackedWindow}`);
    // Resumed after the checkpoint, not from TRIM_HORIZON: the first 200 acked are mostly not read again.
    assert.ok(secondRead.length < 400 - 100, `second read ${secondRead.length}`);
    assertPerKeyOrder(secondRead);
  });

  it('a destroyed source keeps what was acked: the next one resumes there', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, Array.from({ length: 30 }, (_, i) => ({ data: Buffer.from(`d${i}`), key: 'k' })));
    const checkpointer = memoryCheckpointer();
    const first = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON', checkpointer });
    t.after(() => first.destroy());
    await collect(first, (r) => r.length >= 30, (m, i) => (i < 10 ? m.ack() : undefined));
    first.destroy();
    await new Promise((resolve) => first.once('close', resolve));
    const second = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON', checkpointer });
    t.after(() => second.destroy());
    const again = await collect(second, (r) => r.length >= 20);
    await stop(second);
    assert.deepEqual(again.map(text), Array.from({ length: 20 }, (_, i) => `d${i + 10}`));
  });

  it('a nack holds the shard checkpoint at the record before it', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, Array.from({ length: 10 }, (_, i) => ({ data: Buffer.from(`n${i}`), key: 'k' })));
    const checkpointer = memoryCheckpointer();
    const source = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON', checkpointer });
    t.after(() => source.destroy());
    const nacks: unknown[] = [];
    source.on('nack', (e) => nacks.push(e));
    const read = await collect(source, (r) => r.length >= 10, (m, i) => (i === 4 ? m.nack(new Error('no')) : m.ack()));
    await stop(source);
    assert.equal(nacks.length, 1);
    assert.deepEqual(checkpointer.snapshot(streamName), { [read[3]!.meta!.shardId as string]: { sequenceNumber: read[3]!.meta!.sequenceNumber } });
  });
});

describe('kinesisSource KPL aggregation', () => {
  it('de-aggregates KPL records into user records and resumes inside an aggregate', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    const agg = aggregate(
      [
        { data: Buffer.from('u0'), key: 'alpha' },
        { data: Buffer.from('u1'), key: 'beta', hashKey: '1' },
        { data: Buffer.from('u2'), key: 'alpha' },
        { data: Buffer.from('u3'), key: 'gamma' },
      ],
      { tags: true },
    );
    const fake = Buffer.concat([Buffer.from([0xf3, 0x89, 0x9a, 0xc2]), Buffer.from('not a protobuf'), Buffer.alloc(16)]);
    await raw.send(
      new PutRecordsCommand({
        StreamName: streamName,
        Records: [
          { Data: Buffer.from('plain-before'), PartitionKey: 'p' },
          { Data: agg, PartitionKey: 'outer' },
          { Data: fake, PartitionKey: 'f' },
          { Data: Buffer.from('plain-after'), PartitionKey: 'p' },
        ],
      }),
    );
    const checkpointer = memoryCheckpointer();
    const first = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON', checkpointer });
    t.after(() => first.destroy());
    const read = await collect(first, (r) => r.length >= 7, (m, i) => (i <= 2 ? m.ack() : undefined));
    assert.deepEqual(read.map(text).slice(0, 5), ['plain-before', 'u0', 'u1', 'u2', 'u3']);
    assert.ok(read[5]!.data.equals(fake), 'a record with the magic but a bad MD5 is delivered as it is');
    assert.equal(text(read[6]!), 'plain-after');
    assert.deepEqual(read.slice(1, 5).map((m) => m.key), ['alpha', 'beta', 'alpha', 'gamma']);
    assert.deepEqual(read.slice(1, 5).map((m) => m.meta!.subSequenceNumber), [0, 1, 2, 3]);
    assert.equal(new Set(read.slice(1, 5).map((m) => m.meta!.sequenceNumber)).size, 1);
    await stop(first);
    assert.deepEqual(Object.values(checkpointer.snapshot(streamName)), [{ sequenceNumber: read[1]!.meta!.sequenceNumber, subSequenceNumber: 1 }]);

    const second = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON', checkpointer });
    t.after(() => second.destroy());
    const again = await collect(second, (r) => r.length >= 4);
    await stop(second);
    assert.deepEqual(again.map(text).slice(0, 2), ['u2', 'u3']);
    assert.equal(text(again[3]!), 'plain-after');
  });
});

describe('kinesisSource faults and positions', () => {
  it('rides out throttled GetRecords and expired iterators: every record once', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 2);
    t.after(() => deleteStream(raw, streamName));
    const proxy = await startFaultProxy(server.endpoint);
    t.after(() => proxy.stop());
    await putRaw(raw, streamName, Array.from({ length: 100 }, (_, i) => ({ data: Buffer.from(`t${i % 10}:${Math.floor(i / 10)}`), key: `t${i % 10}` })));
    proxy.faults.throttleGetRecords = 4;
    const source = kinesisSource({ streamName, ...connect(proxy.endpoint), startingPosition: 'TRIM_HORIZON', retry: FAST_RETRY, maxRecordsPerCall: 10 });
    t.after(() => source.destroy());
    const retries: Array<{ operation: string; error: Error }> = [];
    source.on('retry', (e: { operation: string; error: Error }) => retries.push(e));
    let expired = false;
    const read = await collect(source, (r) => r.length >= 100, (m, i) => {
      m.ack();
      if (i === 30 && !expired) {
        expired = true;
        proxy.faults.expireIterators = 2;
      }
    });
    await sleep(500);
    await stop(source);
    assert.equal(proxy.stats.throttledGets, 4);
    assert.equal(read.length, 100);
    assert.equal(new Set(read.map(text)).size, 100, 'no duplicates after iterator refreshes');
    assertPerKeyOrder(read);
    assert.ok(retries.filter((r) => /throttled/.test(r.error.message)).length >= 4, 'throttling was retried with backoff');
    assert.equal(retries.filter((r) => /iterator of shardId-\d+ expired/.test(r.error.message)).length, 2, 'expired iterators were refreshed');
  });

  it('fails with NOT_FOUND, not retried, for a missing stream', async (t) => {
    const source = kinesisSource({ streamName: `missing-${Date.now()}`, ...connect(), retry: FAST_RETRY });
    t.after(() => source.destroy());
    let retries = 0;
    source.on('retry', () => retries++);
    const error = await collect(source, () => false).then(() => undefined, (e: unknown) => e as ManifoldError);
    assert.equal(error?.code, ErrorCodes.NOT_FOUND);
    assert.match(error!.message, /DescribeStreamSummary failed: stream "missing-\d+" \(or its consumer\) does not exist/);
    assert.equal(retries, 0);
  });

  it('LATEST reads only what is put after it started', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 2);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, [{ data: Buffer.from('old'), key: 'a' }]);
    const source = kinesisSource({ streamName, ...connect(), pollIntervalMs: 200 });
    t.after(() => source.destroy());
    const reading = collect(source, (r) => r.length >= 2);
    await new Promise((resolve) => source.once('ready', resolve));
    await sleep(300);
    await putRaw(raw, streamName, [{ data: Buffer.from('new1'), key: 'a' }, { data: Buffer.from('new2'), key: 'b' }]);
    const read = await reading;
    await stop(source);
    assert.deepEqual(read.map(text).sort(), ['new1', 'new2']);
  });

  it('{ timestamp } starts at that time; { afterSequenceNumber } with shardIds reads one shard after that record', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 2);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, Array.from({ length: 10 }, (_, i) => ({ data: Buffer.from(`early${i}`), key: `k${i}` })));
    await sleep(1100);
    const cut = Date.now();
    await sleep(100);
    await putRaw(raw, streamName, Array.from({ length: 10 }, (_, i) => ({ data: Buffer.from(`late${i}`), key: `k${i}` })));
    const byTime = kinesisSource({ streamName, ...connect(), startingPosition: { timestamp: new Date(cut) } });
    t.after(() => byTime.destroy());
    const late = await collect(byTime, (r) => r.length >= 10);
    await sleep(300);
    await stop(byTime);
    assert.deepEqual(late.map(text).sort(), Array.from({ length: 10 }, (_, i) => `late${i}`).sort());

    const all = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON' });
    t.after(() => all.destroy());
    const everything = await collect(all, (r) => r.length >= 20);
    await stop(all);
    const shardId = everything[0]!.meta!.shardId as string;
    const ofShard = everything.filter((m) => m.meta!.shardId === shardId);
    const one = kinesisSource({ streamName, ...connect(), startingPosition: { afterSequenceNumber: ofShard[0]!.meta!.sequenceNumber as string }, shardIds: [shardId] });
    t.after(() => one.destroy());
    const rest = await collect(one, (r) => r.length >= ofShard.length - 1);
    await sleep(300);
    await stop(one);
    assert.deepEqual(rest.map(text), ofShard.slice(1).map(text));
  });

  it('names unknown shardIds', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    const source = kinesisSource({ streamName, ...connect(), shardIds: ['shardId-000000000009'] });
    t.after(() => source.destroy());
    const error = await collect(source, () => false).then(() => undefined, (e: unknown) => e as ManifoldError);
    assert.equal(error?.code, ErrorCodes.NOT_FOUND);
    assert.match(error!.message, /options\.shardIds names shard\(s\) shardId-000000000009/);
  });

  it('stops fetching a shard at maxInFlightPerShard unacked messages, and resumes as they are acked', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, Array.from({ length: 100 }, (_, i) => ({ data: Buffer.from(`w${i}`), key: 'k' })));
    const source = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON', maxInFlightPerShard: 20, pollIntervalMs: 200 });
    t.after(() => source.destroy());
    const held: Message[] = [];
    source.on('data', (m: Message) => held.push(m));
    await sleep(1500);
    assert.equal(held.length, 20, 'no more than maxInFlightPerShard unacked');
    for (const m of held.splice(0)) m.ack();
    await sleep(1000);
    assert.equal(held.length, 20, 'the next 20 after acks');
    for (const m of held.splice(0)) m.ack();
    await stop(source);
  });

  it('enhanced fan-out: renews subscriptions without losing or repeating records, and deregisters on close', async (t) => {
    const raw = server.client();
    const { streamName, streamARN } = await createStream(raw, 2);
    t.after(() => deleteStream(raw, streamName));
    const consumerName = `renew-${Date.now()}`;
    const source = kinesisSource({ streamARN, ...connect(), startingPosition: 'TRIM_HORIZON', consumerName, deregisterOnClose: true, resubscribeAfterMs: 2000 });
    t.after(() => source.destroy());
    const read: Message[] = [];
    source.on('data', (m: Message) => {
      read.push(m);
      m.ack();
    });
    const subscriptions: Array<{ shardId: string; position: string }> = [];
    source.on('subscribe', (e: { shardId: string; position: string }) => subscriptions.push(e));
    const total = 200;
    // Records keep coming for about 6 s, across several 2 s subscriptions per shard.
    for (let i = 0; i < 20; i++) {
      await putRaw(raw, streamName, Array.from({ length: 10 }, (_, j) => ({ data: Buffer.from(`e${j}:${i}`), key: `e${j}` })));
      await sleep(300);
    }
    const deadline = Date.now() + 20_000;
    while (read.length < total && Date.now() < deadline) await sleep(50);
    await sleep(500);
    await stop(source);
    assert.equal(read.length, total);
    assert.equal(new Set(read.map(text)).size, total);
    assertPerKeyOrder(read);
    const renewals = subscriptions.filter((s) => s.position === 'AFTER_SEQUENCE_NUMBER');
    assert.ok(renewals.length >= 2, `subscriptions were renewed after the last record (${JSON.stringify(subscriptions)})`);
    const gone = await raw
      .send(new DescribeStreamConsumerCommand({ StreamARN: streamARN, ConsumerName: consumerName }))
      .then((d) => d.ConsumerDescription?.ConsumerStatus, (e: Error) => e.name);
    assert.ok(gone === 'ResourceNotFoundException' || gone === 'DELETING', `consumer after close: ${gone}`);
  });

  it('with shardIds, ends once those shards are read to their end (SHARD_END stored)', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, Array.from({ length: 5 }, (_, i) => ({ data: Buffer.from(`s${i}`), key: `k${i}` })));
    const [parent] = await shardsOf(raw, streamName);
    await raw.send(new SplitShardCommand({ StreamName: streamName, ShardToSplit: parent!.ShardId!, NewStartingHashKey: (2n ** 127n).toString() }));
    await waitActive(raw, streamName);
    const checkpointer = memoryCheckpointer();
    const source = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON', shardIds: [parent!.ShardId!], checkpointer });
    t.after(() => source.destroy());
    const read = await collect(source, () => false);
    assert.deepEqual(read.map(text), ['s0', 's1', 's2', 's3', 's4']);
    await source.close();
    assert.deepEqual(checkpointer.snapshot(streamName), { [parent!.ShardId!]: { sequenceNumber: SHARD_END } });
  });
});

/** Splits the stream's first shard at the middle of its hash range; resolves its id and the split key. */
async function splitFirst(raw: KinesisClient, streamName: string): Promise<{ parent: string; mid: bigint }> {
  const [s0] = await shardsOf(raw, streamName);
  const mid = (BigInt(s0!.HashKeyRange!.StartingHashKey!) + BigInt(s0!.HashKeyRange!.EndingHashKey!)) / 2n;
  await raw.send(new SplitShardCommand({ StreamName: streamName, ShardToSplit: s0!.ShardId!, NewStartingHashKey: mid.toString() }));
  await waitActive(raw, streamName);
  return { parent: s0!.ShardId!, mid };
}

describe('kinesisSource restarts and shard ends', () => {
  it('LATEST: a restart after a split reads every record put into the children while it was down', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    const checkpointer = memoryCheckpointer();
    const first = kinesisSource({ streamName, ...connect(), checkpointer, pollIntervalMs: 200 });
    t.after(() => first.destroy());
    const reading = collect(first, (r) => r.length >= 5);
    await new Promise((resolve) => first.once('ready', resolve));
    await putRaw(raw, streamName, Array.from({ length: 5 }, (_, i) => ({ data: Buffer.from(`before-${i}`), key: `k${i}` })));
    assert.deepEqual((await reading).map(text).sort(), ['before-0', 'before-1', 'before-2', 'before-3', 'before-4']);
    await stop(first);
    const { parent } = await splitFirst(raw, streamName);
    assert.ok(checkpointer.snapshot(streamName)[parent], 'the parent has a checkpoint');

    // Keys spread over the whole hash range, so both children get records.
    const down = Array.from({ length: 10 }, (_, i) => ({ data: Buffer.from(`down-${i}`), key: `key-${i * 7919}` }));
    await putRaw(raw, streamName, down);
    const children = (await shardsOf(raw, streamName)).filter((s) => s.ParentShardId === parent).map((s) => s.ShardId!);

    const second = kinesisSource({ streamName, ...connect(), checkpointer, pollIntervalMs: 200 });
    t.after(() => second.destroy());
    const read = await collect(second, (r) => r.length >= down.length, undefined, 30_000);
    await stop(second);
    assert.deepEqual(read.map(text).sort(), down.map((d) => d.data.toString()).sort(), 'every record put while down was read, and nothing before');
    assert.ok(read.every((m) => children.includes(m.meta!.shardId as string)));
  });

  it('LATEST with no checkpoint at all still starts at the newest record, children included', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, [{ data: Buffer.from('old-parent'), key: 'a' }]);
    await splitFirst(raw, streamName);
    await putRaw(raw, streamName, [{ data: Buffer.from('old-child'), key: 'b' }]);
    const source = kinesisSource({ streamName, ...connect(), pollIntervalMs: 200 });
    t.after(() => source.destroy());
    const reading = collect(source, (r) => r.length >= 2);
    await new Promise((resolve) => source.once('ready', resolve));
    await putRaw(raw, streamName, [{ data: Buffer.from('new-1'), key: 'c' }, { data: Buffer.from('new-2'), key: 'key-99999' }]);
    const read = await reading;
    await sleep(500);
    await stop(source);
    assert.deepEqual(read.map(text).sort(), ['new-1', 'new-2']);
  });

  it('stores SHARD_END for every closed shard and keeps it; a restart reads no finished parent', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 2);
    t.after(() => deleteStream(raw, streamName));
    const keys = Array.from({ length: 20 }, (_, i) => `key${i}`);
    let round = 0;
    const writeRound = (): Promise<void> => {
      const r = round++;
      return putRaw(raw, streamName, keys.map((key) => ({ data: Buffer.from(`${key}:${r}`), key })));
    };
    await writeRound();
    const [s0, s1] = await shardsOf(raw, streamName);
    const { mid } = await splitFirst(raw, streamName);
    await writeRound();
    const upper = (await shardsOf(raw, streamName)).find((s) => s.ParentShardId === s0!.ShardId && BigInt(s.HashKeyRange!.StartingHashKey!) === mid)!;
    await raw.send(new MergeShardsCommand({ StreamName: streamName, ShardToMerge: upper.ShardId!, AdjacentShardToMerge: s1!.ShardId! }));
    await waitActive(raw, streamName);
    await writeRound();
    const closedShards = [s0!.ShardId!, s1!.ShardId!, upper.ShardId!].sort();

    const checkpointer = memoryCheckpointer();
    const options = { streamName, ...connect(), startingPosition: 'TRIM_HORIZON' as const, checkpointer, checkpointIntervalMs: 100, shardDiscoveryIntervalMs: 200, pollIntervalMs: 200 };
    const first = kinesisSource(options);
    t.after(() => first.destroy());
    const read = await collect(first, (r) => r.length >= 60);
    assertPerKeyOrder(read);
    // Several checkpoint intervals after every shard was read to its end and acked.
    await sleep(1500);
    await stop(first);
    const stored = checkpointer.snapshot(streamName);
    assert.deepEqual(
      closedShards.filter((id) => stored[id]?.sequenceNumber !== SHARD_END),
      [],
      `every closed shard holds SHARD_END after a graceful close: ${JSON.stringify(stored)}`,
    );

    const second = kinesisSource(options);
    t.after(() => second.destroy());
    const started: string[] = [];
    second.on('shard', (e: { shardId: string; state: string }) => {
      if (e.state === 'reading') started.push(e.shardId);
    });
    const again: Message[] = [];
    second.on('data', (m: Message) => {
      again.push(m);
      m.ack();
    });
    await new Promise((resolve) => second.once('ready', resolve));
    await sleep(1000);
    await stop(second);
    assert.deepEqual(started.filter((id) => closedShards.includes(id)), [], 'no finished shard was read again');
    assert.equal(again.length, 0, 'nothing was read again');
  });

  it("LATEST: records put right after 'ready' are read, on every shard", async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 8);
    t.after(() => deleteStream(raw, streamName));
    for (let attempt = 0; attempt < 3; attempt++) {
      const source = kinesisSource({ streamName, ...connect(), pollIntervalMs: 200 });
      t.after(() => source.destroy());
      const sent = Array.from({ length: 40 }, (_, i) => ({ data: Buffer.from(`ready-${attempt}-${i}`), key: `key-${attempt}-${i}` }));
      let putting: Promise<void> | undefined;
      source.once('ready', () => {
        putting = putRaw(raw, streamName, sent);
      });
      const read = await collect(source, (r) => r.length >= sent.length, undefined, 15_000).catch((error: Error) => error);
      await putting;
      await stop(source);
      assert.ok(!(read instanceof Error), `attempt ${attempt}: ${String(read)}`);
      assert.deepEqual(read.map(text).sort(), sent.map((s) => s.data.toString()).sort());
    }
  });

  it('flow() resolves only after the final checkpoint is stored', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 2);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, Array.from({ length: 100 }, (_, i) => ({ data: Buffer.from(`f${i}`), key: `k${i}` })));
    const inner = memoryCheckpointer();
    // A slow store (a file on a busy disk, a remote table) makes the race plain.
    const checkpointer = {
      load: (scope: string) => inner.load(scope),
      async store(scope: string, checkpoints: Record<string, { sequenceNumber: string }>) {
        await sleep(300);
        await inner.store(scope, checkpoints);
      },
    };
    const source = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON', checkpointer, checkpointIntervalMs: 60_000 });
    let count = 0;
    const lastPerShard = new Map<string, string>();
    const sink = new Writable({
      objectMode: true,
      write(m: Message, _enc, callback) {
        count += 1;
        lastPerShard.set(m.meta!.shardId as string, m.meta!.sequenceNumber as string);
        setImmediate(() => {
          m.ack();
          callback();
        });
      },
    });
    // Stopped as a signal stops it; the program awaits the flow itself, as `await flow(...); process.exit()` does.
    const controller = new AbortController();
    const running = flow({ source, sink, signal: controller.signal });
    t.after(() => source.destroy());
    while (count < 100) await sleep(20);
    controller.abort();
    await running;
    // What a program that exits right after the flow would have stored.
    const stored = inner.snapshot(streamName);
    assert.deepEqual(
      Object.fromEntries([...lastPerShard].map(([shardId, sequenceNumber]) => [shardId, stored[shardId]?.sequenceNumber])),
      Object.fromEntries(lastPerShard),
    );
  });
});

sourceConformance({
  name: 'kinesis',
  redelivers: true,
  timeoutMs: 30_000,
  async setup() {
    const raw = rawClient(server.endpoint);
    const { streamName } = await createStream(raw, 2);
    const checkpointer = memoryCheckpointer();
    return {
      source: (options) =>
        kinesisSource({
          streamName,
          ...connect(),
          startingPosition: 'TRIM_HORIZON',
          checkpointer,
          closeTimeoutMs: 1000,
          ...(options?.signal ? { signal: options.signal } : {}),
        }),
      async produce(payloads) {
        // One key: order is the put order.
        await putRaw(raw, streamName, payloads.map((data) => ({ data, key: 'conformance' })));
      },
      async cleanup() {
        await deleteStream(raw, streamName);
        raw.destroy();
      },
    };
  },
});
