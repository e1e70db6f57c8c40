/**
 * dynamoLeases in one process, against dynalite (DynamoDB API) and
 * kinesis-local: options, the table, conditional-write races, a lost lease,
 * balancing by handoff and a graceful close between two sources.
 * The multi-process tests are in dynamodb-workers.test.ts.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateTableCommand, GetItemCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { dynamoLeases, type DynamoLeases, type DynamoLeasesOptions } from '../../lib/kinesis/dynamo-leases.js';
import { memoryCheckpointer } from '../../lib/kinesis/memory-checkpointer.js';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import type { Message } from '../../lib/core/message.js';
import type { CoordinatedSource, GrantedShard, LeaseEvent } from '../../lib/kinesis/coordinator.js';
import { kinesisSource, type KinesisSource, type KinesisSourceOptions, type ShardEvent } from '../../lib/kinesis/source.js';
import { startDynamo, type DynamoServer } from '../fixtures/dynamodb.js';
import { createStream, deleteStream, putRaw, startKinesisServer, type KinesisServer } from '../fixtures/kinesis.js';

let kinesis: KinesisServer;
let dynamo: DynamoServer;
let raw: KinesisClient;
let ddb: DynamoDBClient;
before(async () => {
  [kinesis, dynamo] = await Promise.all([startKinesisServer(), startDynamo()]);
  raw = kinesis.client();
  ddb = dynamo.client();
});
after(async () => {
  await Promise.all([kinesis.stop(), dynamo.stop()]);
});

// Every source and coordinator a test makes is closed after it, even when an assertion failed
// part-way: a renew timer or poll loop left running would keep this file's process from exiting.
const sources = new Set<KinesisSource>();
const coordinators = new Set<DynamoLeases>();
afterEach(async () => {
  await Promise.allSettled([...sources].map((s) => s.close()));
  await Promise.allSettled([...coordinators].map((c) => c.stop()));
  sources.clear();
  coordinators.clear();
});

const FAST = { leaseDurationMs: 1_500, renewIntervalMs: 300 } as const;

function leases(options: Partial<DynamoLeasesOptions> & { tableName: string }): DynamoLeases {
  const coordinator = dynamoLeases({ client: ddb, ...FAST, ...options });
  coordinators.add(coordinator);
  return coordinator;
}

function source(streamName: string, coordinator: DynamoLeases, extra: Partial<KinesisSourceOptions> = {}): KinesisSource {
  const src = kinesisSource({
    streamName,
    client: raw,
    startingPosition: 'TRIM_HORIZON',
    ...extra,
    coordinator,
    pollIntervalMs: 200,
    shardDiscoveryIntervalMs: 500,
    checkpointIntervalMs: 200,
  });
  sources.add(src);
  return src;
}

/** A stand-in for the source, recording what the coordinator asks of it; `active: false` keeps it from taking leases on its own. */
function fakeSource(streamName: string, active = false): CoordinatedSource & { events: LeaseEvent[]; acquired: GrantedShard[]; revoked: string[]; errors: Error[] } {
  const events: LeaseEvent[] = [];
  const acquired: GrantedShard[] = [];
  const revoked: string[] = [];
  const errors: Error[] = [];
  return {
    streamName,
    active,
    events,
    acquired,
    revoked,
    errors,
    acquire: (shard) => acquired.push(shard),
    revoke: (shardId) => revoked.push(shardId),
    drain: async () => undefined,
    lease: (event) => events.push(event),
    warn: (error) => errors.push(error),
    fail: (error) => errors.push(error),
  };
}

const table = (): string => `leases-${randomUUID()}`;

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Consumes a source, acking everything but the messages `hold` picks, and records what arrived; returns the held messages. */
function drainInto(src: KinesisSource, into: string[], events: LeaseEvent[] = [], hold: (m: Message) => boolean = () => false): Message[] {
  const held: Message[] = [];
  src.on('data', (m: Message) => {
    into.push(m.data.toString());
    if (hold(m)) held.push(m);
    else m.ack();
  });
  src.on('lease', (e: LeaseEvent) => events.push(e));
  return held;
}

/**
 * Takes the stream's one lease as an expired lease would be taken. Its owner renews every few hundred ms,
 * moving the counter a take is conditional on: take on a fresh read until one lands between two renews.
 */
async function takeAsExpired(taker: DynamoLeases): Promise<void> {
  await waitFor(`${taker.workerId} to take the lease`, async () => {
    const [row] = await taker.leases();
    return taker.tryTake(row!, 'expired');
  });
}

async function putNumbered(streamName: string, from: number, count: number): Promise<string[]> {
  const records = Array.from({ length: count }, (_, i) => ({ data: Buffer.from(`r${from + i}`), key: `k${(from + i) % 50}` }));
  await putRaw(raw, streamName, records);
  return records.map((r) => r.data.toString());
}

describe('dynamoLeases: options', () => {
  it('rejects bad options, naming them', () => {
    const cases: Array<[unknown, RegExp]> = [
      [{}, /options\.tableName must be a non-empty string, got undefined/],
      [{ tableName: 'ab' }, /options\.tableName must be a DynamoDB table name/],
      [{ tableName: 'abc', leaseDurationMs: 1000, renewIntervalMs: 600 }, /options\.renewIntervalMs and options\.leaseDurationMs do not fit: renew at least twice per lease duration/],
      [{ tableName: 'abc', client: ddb, endpoint: 'http://127.0.0.1:1' }, /options\.client and options\.endpoint cannot be combined/],
      [{ tableName: 'abc', endpoint: 'ftp://x' }, /options\.endpoint must be an http/],
      [{ tableName: 'abc', leaseDuration: 5 }, /unknown option "leaseDuration" \(did you mean "leaseDurationMs"\?\)/],
      [{ tableName: 'abc', client: {} }, /options\.client must be a DynamoDBClient/],
    ];
    for (const [options, pattern] of cases) {
      assert.throws(
        () => dynamoLeases(options as DynamoLeasesOptions),
        (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && pattern.test(e.message),
        String(pattern),
      );
    }
  });

  it('kinesisSource refuses a coordinator together with a checkpointer or shardIds, and a non-coordinator', () => {
    const coordinator = leases({ tableName: 'abc' });
    const cases: Array<[object, RegExp]> = [
      [{ coordinator, checkpointer: memoryCheckpointer() }, /options\.coordinator and options\.checkpointer cannot be combined/],
      [{ coordinator, shardIds: ['shardId-000000000000'] }, /options\.coordinator and options\.shardIds cannot be combined/],
      [{ coordinator: { start() {} } }, /options\.coordinator must be a ShardCoordinator/],
    ];
    for (const [options, pattern] of cases) {
      assert.throws(
        () => kinesisSource({ streamName: 's', client: raw, ...options }),
        (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && pattern.test(e.message),
        String(pattern),
      );
    }
  });
});

describe('dynamoLeases: the lease table', () => {
  it('creates the table with the documented key, and a second worker uses it as it is', async () => {
    const tableName = table();
    const a = leases({ tableName, workerId: 'a' });
    const b = leases({ tableName, workerId: 'b' });
    await Promise.all([a.start(fakeSource('s1')), b.start(fakeSource('s1'))]);
    await a.sync([{ shardId: 'shardId-1', parents: [], closed: false, start: { type: 'AT_TIMESTAMP', timestamp: 1234 }, finished: false }]);
    const rows = await b.leases('s1');
    assert.deepEqual(rows, [
      { streamName: 's1', shardId: 'shardId-1', owner: undefined, counter: 0, checkpoint: undefined, start: { type: 'AT_TIMESTAMP', timestamp: 1234 }, parents: [], pendingOwner: undefined, ownerSwitches: 0 },
    ]);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('without createTable, a missing table fails the source with an error naming the table and the option', async () => {
    const { streamName } = await createStream(raw, 1);
    const tableName = table();
    const src = source(streamName, leases({ tableName, createTable: false }));
    src.resume();
    const error = await new Promise<ManifoldError>((resolve) => src.once('error', resolve));
    assert.equal(error.code, ErrorCodes.NOT_FOUND);
    assert.match(error.message, new RegExp(`lease table "${tableName}" does not exist; create it .* or set createTable: true`));
    await deleteStream(raw, streamName);
  });

  it('refuses a table whose key is not a lease table key', async () => {
    const tableName = table();
    await ddb.send(
      new CreateTableCommand({
        TableName: tableName,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
      }),
    );
    await assert.rejects(leases({ tableName }).start(fakeSource('s')), (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && /is not a lease table \(its key is id:HASH/.test(e.message));
  });
});

describe('dynamoLeases: conditional writes', () => {
  it('two workers claiming the same lease at once: exactly one wins, every time', async () => {
    const tableName = table();
    const a = leases({ tableName, workerId: 'a' });
    const b = leases({ tableName, workerId: 'b' });
    const fa = fakeSource('race');
    const fb = fakeSource('race');
    await a.start(fa);
    await b.start(fb);
    const shards = Array.from({ length: 20 }, (_, i) => ({ shardId: `shard-${i}`, parents: [], closed: false, start: { type: 'TRIM_HORIZON' as const }, finished: false }));
    await a.sync(shards);
    const seen = await a.leases();
    assert.equal(seen.length, 20);
    const results = await Promise.all(seen.map((row) => Promise.all([a.tryTake(row), b.tryTake(row)])));
    for (const [wonA, wonB] of results) assert.equal(Number(wonA) + Number(wonB), 1, 'exactly one of the two claims succeeds');
    const rows = await a.leases();
    for (const [i, row] of rows.entries()) {
      const winner = results[seen.findIndex((s) => s.shardId === row.shardId)]![0] ? 'a' : 'b';
      assert.equal(row.owner, winner, `${row.shardId} belongs to the one that won`);
      assert.equal(row.counter, 1, `${i}: one take, one counter step`);
    }
    assert.equal(fa.acquired.length + fb.acquired.length, 20, 'each shard handed to exactly one source');
    // A claim with a stale view (the counter moved on) loses too.
    assert.equal(await b.tryTake(seen[0]!), false);
    await Promise.all([a.stop(), b.stop()]);
    assert.ok((await a.leases()).every((r) => r.owner === undefined), 'stop() released every lease');
  });

  it('a worker that lost its lease can neither renew it nor move its checkpoint', async () => {
    const tableName = table();
    const a = leases({ tableName, workerId: 'a', leaseDurationMs: 60_000, renewIntervalMs: 200 });
    const b = leases({ tableName, workerId: 'b', leaseDurationMs: 60_000, renewIntervalMs: 200 });
    const fa = fakeSource('lost', true);
    const fb = fakeSource('lost');
    await a.start(fa);
    await b.start(fb);
    await a.sync([{ shardId: 'shard-0', parents: [], closed: false, start: { type: 'TRIM_HORIZON' }, finished: false }]);
    await waitFor('a to take the lease', () => a.held().includes('shard-0'));
    assert.equal(await a.checkpoint('shard-0', { sequenceNumber: '100' }), true);
    // b takes it as it sees it now (as an expired lease would be taken).
    await takeAsExpired(b);
    assert.equal(await a.checkpoint('shard-0', { sequenceNumber: '200', subSequenceNumber: 3 }), false, 'the checkpoint write is refused');
    assert.deepEqual(fa.revoked, ['shard-0'], 'the source was told to stop reading');
    assert.deepEqual(
      fa.events.map((e) => [e.type, e.shardId]),
      [
        ['gained', 'shard-0'],
        ['lost', 'shard-0'],
      ],
    );
    const item = await ddb.send(new GetItemCommand({ TableName: tableName, Key: { streamName: { S: 'lost' }, shardId: { S: 'shard-0' } }, ConsistentRead: true }));
    assert.equal(item.Item?.leaseOwner?.S, 'b');
    assert.equal(item.Item?.checkpoint?.S, '100', 'the old owner did not move the checkpoint');
    assert.equal(item.Item?.checkpointSubSequenceNumber, undefined);
    assert.deepEqual(fb.acquired, [{ shardId: 'shard-0', parents: [], checkpoint: { sequenceNumber: '100' }, start: { type: 'TRIM_HORIZON' } }]);
    // a keeps running its loop and does not take the lease back while b renews it.
    await sleep(600);
    assert.deepEqual(a.held(), []);
    await Promise.all([a.stop(), b.stop()]);
  });
});

describe('dynamoLeases: failures', () => {
  it('an owner that never hands a requested lease over loses it to a forced take after three lease durations', async () => {
    const tableName = table();
    const timing = { leaseDurationMs: 600, renewIntervalMs: 150 };
    const a = leases({ tableName, workerId: 'a', ...timing });
    const fa = fakeSource('stuck', true);
    // A source whose handoff never finishes (stuck acks).
    fa.drain = () => new Promise(() => {});
    await a.start(fa);
    await a.sync(['s0', 's1'].map((shardId) => ({ shardId, parents: [], closed: false, start: { type: 'TRIM_HORIZON' as const }, finished: false })));
    await waitFor('a to take both', () => a.held().length === 2);
    const b = leases({ tableName, workerId: 'b', ...timing });
    const fb = fakeSource('stuck', true);
    await b.start(fb);
    await waitFor('a forced take', () => fb.events.some((e) => e.type === 'gained'), 10_000);
    const gained = fb.events.find((e) => e.type === 'gained')!;
    assert.equal(gained.reason, 'forced');
    assert.equal(gained.otherWorker, 'a');
    await waitFor('a to notice', () => fa.events.some((e) => e.type === 'lost' && e.shardId === gained.shardId), 5_000);
    assert.deepEqual(fa.revoked, [gained.shardId]);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('a worker that cannot reach the table stops reading its shards within a lease duration, and says why', async () => {
    const own = await startDynamo();
    try {
      const a = dynamoLeases({ tableName: table(), client: own.client(), workerId: 'a', leaseDurationMs: 1_000, renewIntervalMs: 200 });
      const fa = fakeSource('outage', true);
      await a.start(fa);
      await a.sync([{ shardId: 's0', parents: [], closed: false, start: { type: 'TRIM_HORIZON' }, finished: false }]);
      await waitFor('the lease', () => a.held().length === 1);
      await own.stop();
      const cutAt = Date.now();
      await waitFor('the lease to be given up', () => fa.revoked.length === 1, 5_000);
      assert.ok(Date.now() - cutAt <= 1_000 + 2 * 200 + 300, `gave up after ${Date.now() - cutAt} ms`);
      const lost = fa.events.find((e) => e.type === 'lost')!;
      assert.match(lost.reason!, /not renewed for 1000 ms \(lease table unreachable\?\)/);
      assert.ok(fa.errors.length > 0 && fa.errors.every((e) => e instanceof ManifoldError && e.retryable), 'renew failures reported as retryable warnings');
      assert.match(fa.errors[0]!.message, /dynamoLeases: .* on lease table/);
      await a.stop();
    } finally {
      await own.stop();
    }
  });
});

describe('dynamoLeases with kinesisSource', () => {
  it('a source that loses its lease stops reading that shard; the new owner resumes from the checkpoint', async () => {
    const { streamName } = await createStream(raw, 1);
    const tableName = table();
    const coordinator = leases({ tableName, workerId: 'a', leaseDurationMs: 60_000, renewIntervalMs: 200 });
    const src = source(streamName, coordinator);
    const got: string[] = [];
    const events: LeaseEvent[] = [];
    const shardEvents: ShardEvent[] = [];
    src.on('shard', (e: ShardEvent) => shardEvents.push(e));
    // The 50th message is held unacked until after the loss: its ack then comes too late, and is counted.
    const held = drainInto(src, got, events, (m) => m.data.toString() === 'r49');
    // Listened for before the records go in: the checkpoint may come while they are being read.
    let checkpoints = 0;
    src.on('checkpoint', () => checkpoints++);
    const first = await putNumbered(streamName, 0, 50);
    await waitFor('the first records', () => got.length >= 50);
    await waitFor('a checkpoint', () => checkpoints > 0);
    const thief = leases({ tableName, workerId: 'thief', leaseDurationMs: 60_000, renewIntervalMs: 200 });
    const fake = fakeSource(streamName);
    await thief.start(fake);
    await takeAsExpired(thief);
    await waitFor('the lease loss', () => events.some((e) => e.type === 'lost'));
    assert.ok(shardEvents.some((e) => e.state === 'stopped'), 'the shard was stopped');
    assert.equal(held.length, 1);
    held[0]!.ack();
    assert.equal(src.lateSettles, 1, 'the ack after the loss is ignored and counted');
    await putNumbered(streamName, 50, 20);
    await sleep(1_000);
    assert.deepEqual(got, first, 'nothing read after the lease was lost');
    assert.deepEqual(fake.acquired[0]?.checkpoint !== undefined, true, 'the thief resumes from the stored checkpoint');
    await src.close();
    await thief.stop();
    await deleteStream(raw, streamName);
  });

  it("'LATEST' is pinned to the lease's creation: a later owner reads what arrived after it, even with no checkpoint yet", async () => {
    const { streamName } = await createStream(raw, 1);
    const tableName = table();
    await putNumbered(streamName, 0, 5);
    await sleep(50);
    const a = source(streamName, leases({ tableName, workerId: 'a' }), { startingPosition: 'LATEST' });
    const gotA: string[] = [];
    const eventsA: LeaseEvent[] = [];
    drainInto(a, gotA, eventsA);
    await waitFor('a to take the lease', () => eventsA.some((e) => e.type === 'gained'));
    await a.close();
    const [row] = await leases({ tableName }).leases(streamName);
    assert.equal(row?.start.type, 'AT_TIMESTAMP');
    assert.equal(row?.checkpoint, undefined, 'nothing read, nothing checkpointed');
    // Put while no worker reads the shard: a plain LATEST at the next owner's start would skip these.
    const expected = await putNumbered(streamName, 5, 10);
    const b = source(streamName, leases({ tableName, workerId: 'b' }), { startingPosition: 'LATEST' });
    const gotB: string[] = [];
    drainInto(b, gotB);
    await waitFor('b to read the records put after the lease was created', () => gotB.length >= 10);
    await sleep(500);
    await b.close();
    assert.deepEqual(gotA, []);
    assert.deepEqual(gotB, expected, 'the records from before the lease are not read, the ones after are');
    await deleteStream(raw, streamName);
  });

  it('enhanced fan-out: two sources share the shards by handoff, every record once', async () => {
    const { streamName } = await createStream(raw, 2);
    const tableName = table();
    const consumerName = `leases-${Date.now()}`;
    const expected = await putNumbered(streamName, 0, 200);
    const a = source(streamName, leases({ tableName, workerId: 'a' }), { consumerName });
    const gotA: string[] = [];
    const eventsA: LeaseEvent[] = [];
    drainInto(a, gotA, eventsA);
    await waitFor('a to read everything', () => gotA.length >= 200);
    const b = source(streamName, leases({ tableName, workerId: 'b' }), { consumerName });
    const gotB: string[] = [];
    const eventsB: LeaseEvent[] = [];
    drainInto(b, gotB, eventsB);
    await waitFor('a handoff', () => eventsB.some((e) => e.type === 'gained' && e.reason === 'handoff'));
    expected.push(...(await putNumbered(streamName, 200, 200)));
    await waitFor('the second batch', () => gotA.length + gotB.length >= 400);
    await sleep(500);
    await Promise.all([a.close(), b.close()]);
    assert.ok(gotB.length > 0, 'b read its shard through its own subscription');
    const all = [...gotA, ...gotB];
    assert.equal(all.length, new Set(all).size, 'no duplicates');
    assert.deepEqual(new Set(all), new Set(expected));
    await deleteStream(raw, streamName);
  });

  it("gauges(): kinesis_leases_held is the lease rows the worker owns, as the table says; 'lag' has MillisBehindLatest for every shard it reads", async () => {
    const { streamName } = await createStream(raw, 4);
    const tableName = table();
    await putNumbered(streamName, 0, 200);
    const a = source(streamName, leases({ tableName, workerId: 'a' }));
    const lagA = new Map<string, number>();
    a.on('lag', (e: { shardId: string; millisBehindLatest: number }) => lagA.set(e.shardId, e.millisBehindLatest));
    const gotA: string[] = [];
    drainInto(a, gotA);
    const view = leases({ tableName });
    const owned = async (worker: string): Promise<string[]> => (await view.leases(streamName)).filter((r) => r.owner === worker).map((r) => r.shardId).sort();
    await waitFor('a to hold all four', async () => a.gauges().kinesis_leases_held === 4 && (await owned('a')).length === 4);
    assert.equal(a.gauges().kinesis_shards_reading, 4);
    await waitFor('a lag for every shard a reads', () => lagA.size === 4);
    assert.deepEqual([...lagA.keys()].sort(), await owned('a'));
    assert.ok([...lagA.values()].every((ms) => Number.isInteger(ms) && ms >= 0), JSON.stringify([...lagA]));
    // A second worker takes two by handoff: both gauges follow the table.
    const b = source(streamName, leases({ tableName, workerId: 'b' }));
    const lagB = new Map<string, number>();
    b.on('lag', (e: { shardId: string; millisBehindLatest: number }) => lagB.set(e.shardId, e.millisBehindLatest));
    drainInto(b, []);
    await waitFor('two leases each, in the table and in the gauges', async () => {
      const [ownedA, ownedB] = await Promise.all([owned('a'), owned('b')]);
      return ownedA.length === 2 && ownedB.length === 2 && a.gauges().kinesis_leases_held === 2 && b.gauges().kinesis_leases_held === 2;
    });
    await waitFor('b lag for the shards it reads', async () => {
      const ownedB = await owned('b');
      return ownedB.every((shardId) => lagB.has(shardId));
    });
    await b.close();
    assert.equal(b.gauges().kinesis_leases_held, 0, 'released on close');
    await waitFor('a to hold all four again', async () => a.gauges().kinesis_leases_held === 4 && (await owned('a')).length === 4, 15_000);
    await a.close();
    await deleteStream(raw, streamName);
  });

  it('a second source takes half the shards by handoff, without duplicates; closing it gives them back, without duplicates', async () => {
    const { streamName } = await createStream(raw, 4);
    const tableName = table();
    const expected = await putNumbered(streamName, 0, 400);
    const a = source(streamName, leases({ tableName, workerId: 'a' }));
    const gotA: string[] = [];
    const eventsA: LeaseEvent[] = [];
    drainInto(a, gotA, eventsA);
    await waitFor('a to read everything', () => gotA.length >= 400);
    const b = source(streamName, leases({ tableName, workerId: 'b' }));
    const gotB: string[] = [];
    const eventsB: LeaseEvent[] = [];
    drainInto(b, gotB, eventsB);
    await waitFor('b to get two shards', () => eventsB.filter((e) => e.type === 'gained').length >= 2, 30_000);
    assert.ok(eventsB.filter((e) => e.type === 'gained').every((e) => e.reason === 'handoff' && e.otherWorker === 'a'), JSON.stringify(eventsB));
    assert.equal(eventsA.filter((e) => e.type === 'stolen').length, 2, 'a handed two shards over');
    // Settled: two each, and more records reach both.
    await sleep(1_500);
    const owners = (await leases({ tableName }).leases(streamName)).map((r) => r.owner).sort();
    assert.deepEqual(owners, ['a', 'a', 'b', 'b']);
    expected.push(...(await putNumbered(streamName, 400, 400)));
    await waitFor('the second batch', () => gotA.length + gotB.length >= 800);
    assert.ok(gotB.length > 0 && gotA.length > 400, `both read: a ${gotA.length}, b ${gotB.length}`);
    await b.close();
    assert.equal(eventsB.filter((e) => e.type === 'released').length, 2, 'b released its leases on close');
    await waitFor('a to take b’s shards', () => eventsA.filter((e) => e.type === 'gained').length >= 6, 10_000);
    expected.push(...(await putNumbered(streamName, 800, 400)));
    await waitFor('the third batch', () => gotA.length + gotB.length >= 1200);
    await sleep(1_000);
    await a.close();
    const all = [...gotA, ...gotB];
    assert.equal(all.length, new Set(all).size, 'no duplicates');
    assert.deepEqual(new Set(all), new Set(expected), 'every record');
    await deleteStream(raw, streamName);
  });
});
