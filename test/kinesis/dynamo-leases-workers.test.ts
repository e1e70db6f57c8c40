/**
 * dynamoLeases across worker processes (test/fixtures/lease-worker-child.ts)
 * on one stream, against dynalite and kinesis-local: the 2-2-2 split of six
 * shards, kill -9 failover, graceful close, and resharding while three workers run.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { after, afterEach, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { MergeShardsCommand, SplitShardCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SHARD_END } from '../../lib/kinesis/checkpoint.js';
import { ErrorCodes, type ManifoldError } from '../../lib/core/errors.js';
import { dynamoLeases } from '../../lib/kinesis/dynamo-leases.js';
import type { LeaseRow } from '../../lib/kinesis/lease-table.js';
import type { LeaseEvent } from '../../lib/kinesis/coordinator.js';
import { startDynamo, type DynamoServer } from '../fixtures/dynamodb.js';
import { createStream, deleteStream, putRaw, shardsOf, startKinesisServer, waitActive, type KinesisServer } from '../fixtures/kinesis.js';
import type { LeaseWorkerConfig } from '../fixtures/lease-worker-child.js';

const CHILD = fileURLToPath(new URL('../fixtures/lease-worker-child.ts', import.meta.url));
const LEASE_MS = 3_000;
const RENEW_MS = 600;
const CHECKPOINT_MS = 500;
const MAX_IN_FLIGHT = 200;

let kinesis: KinesisServer;
let dynamo: DynamoServer;
let raw: KinesisClient;
let ddb: DynamoDBClient;
const workers = new Set<Worker>();
before(async () => {
  [kinesis, dynamo] = await Promise.all([startKinesisServer(), startDynamo()]);
  raw = kinesis.client();
  ddb = dynamo.client();
});
// Workers a test left running (it failed part-way) must not read on into the next test's stream and table.
afterEach(async () => {
  for (const w of workers) w.child.kill('SIGKILL');
  await Promise.all([...workers].map((w) => w.exited));
  workers.clear();
});
after(async () => {
  await Promise.all([kinesis.stop(), dynamo.stop()]);
});

interface Rec {
  shardId: string;
  seq: string;
  data: string;
  at: number;
}

type Line =
  | ({ t: 'rec' } & Rec)
  | ({ t: 'lease'; at: number } & LeaseEvent)
  | { t: 'checkpoint'; shardId: string; sequenceNumber: string; at: number }
  | { t: 'shard'; shardId: string; state: string; at: number }
  | { t: 'warning'; message: string }
  | { t: 'closed'; at: number };

/** A worker process and everything it wrote. */
class Worker {
  readonly child: ChildProcess;
  readonly recs: Rec[] = [];
  readonly leases: Array<LeaseEvent & { at: number }> = [];
  readonly checkpoints: Array<{ shardId: string; sequenceNumber: string; at: number }> = [];
  readonly shardEvents: Array<{ shardId: string; state: string; at: number }> = [];
  readonly warnings: string[] = [];
  closed = false;
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(readonly id: string, config: LeaseWorkerConfig) {
    this.child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
      env: { ...process.env, MANIFOLD_LEASE_WORKER: JSON.stringify(config) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buffered = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const text of lines) this.#take(JSON.parse(text) as Line);
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-4000);
    });
    this.exited = once(this.child, 'exit').then(([code]) => code as number | null);
    workers.add(this);
  }

  #take(line: Line): void {
    if (line.t === 'rec') this.recs.push(line);
    else if (line.t === 'lease') this.leases.push(line);
    else if (line.t === 'checkpoint') this.checkpoints.push(line);
    else if (line.t === 'shard') this.shardEvents.push(line);
    else if (line.t === 'warning') this.warnings.push(line.message);
    else if (line.t === 'closed') this.closed = true;
  }

  /** The shards this worker holds, by its own lease events. */
  held(): Set<string> {
    const held = new Set<string>();
    for (const e of this.leases) {
      if (e.type === 'gained') held.add(e.shardId);
      else held.delete(e.shardId);
    }
    return held;
  }

  async close(): Promise<void> {
    this.child.kill('SIGTERM');
    const code = await this.exited;
    assert.equal(code, 0, `worker ${this.id} exited ${code}: ${this.stderr}`);
    assert.ok(this.closed, `worker ${this.id} closed gracefully`);
  }
}

function startWorkers(streamName: string, tableName: string, count: number, extra: Partial<LeaseWorkerConfig> = {}): Worker[] {
  return Array.from(
    { length: count },
    (_, i) =>
      new Worker(`w${i + 1}`, {
        kinesisEndpoint: kinesis.endpoint,
        dynamoEndpoint: dynamo.endpoint,
        streamName,
        tableName,
        workerId: `w${i + 1}`,
        leaseDurationMs: LEASE_MS,
        renewIntervalMs: RENEW_MS,
        checkpointIntervalMs: CHECKPOINT_MS,
        maxInFlightPerShard: MAX_IN_FLIGHT,
        ...extra,
      }),
  );
}

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs: number, all: Worker[] = [...workers]): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    for (const w of all) {
      if (w.child.exitCode !== null && w.child.exitCode !== 0 && w.child.signalCode === null) throw new Error(`worker ${w.id} died (${w.child.exitCode}): ${w.stderr}`);
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; workers: ${all.map((w) => `${w.id} ${w.recs.length} recs, holds ${[...w.held()].join(',')}`).join('; ')}`);
    await sleep(100);
  }
}

async function put(streamName: string, from: number, count: number): Promise<string[]> {
  const records = Array.from({ length: count }, (_, i) => ({ data: Buffer.from(`r${from + i}`), key: `key-${(from + i) % 997}` }));
  await putRaw(raw, streamName, records);
  return records.map((r) => r.data.toString());
}

const seen = (ws: Worker[]): Set<string> => new Set(ws.flatMap((w) => w.recs.map((r) => r.data)));

/** The lease rows of the stream; none while the workers have not yet created the table. */
async function rowsOf(tableName: string, streamName: string): Promise<LeaseRow[]> {
  try {
    return await dynamoLeases({ tableName, client: ddb }).leases(streamName);
  } catch (error) {
    if ((error as ManifoldError).code === ErrorCodes.NOT_FOUND) return [];
    throw error;
  }
}

/** Every open shard's lease held by the given workers, `each` of them per worker, in the table and by the workers' own events. */
async function balanced(tableName: string, streamName: string, ws: Worker[], each: number[]): Promise<boolean> {
  const rows = (await rowsOf(tableName, streamName)).filter((r) => r.checkpoint?.sequenceNumber !== SHARD_END);
  const byOwner = new Map<string, number>();
  for (const r of rows) {
    if (r.owner === undefined || r.pendingOwner !== undefined) return false;
    byOwner.set(r.owner, (byOwner.get(r.owner) ?? 0) + 1);
  }
  const counts = ws.map((w) => byOwner.get(w.id) ?? 0).sort();
  if (byOwner.size !== ws.length || JSON.stringify(counts) !== JSON.stringify([...each].sort())) return false;
  // And each worker knows it: a lease handed over is in the table before its new owner's next round takes it up.
  return ws.every((w) => {
    const held = w.held();
    return held.size === byOwner.get(w.id) && rows.every((r) => (r.owner === w.id) === held.has(r.shardId));
  });
}

/** The shards each worker holds by its own events match the table, and no shard is held twice. */
async function assertHeldOnce(tableName: string, streamName: string, ws: Worker[]): Promise<void> {
  const rows = (await rowsOf(tableName, streamName)).filter((r) => r.checkpoint?.sequenceNumber !== SHARD_END);
  const claimed = ws.flatMap((w) => [...w.held()].map((shardId) => ({ shardId, owner: w.id })));
  assert.equal(new Set(claimed.map((c) => c.shardId)).size, claimed.length, `no shard held by two workers: ${JSON.stringify(claimed)}`);
  assert.deepEqual(
    claimed.sort((a, b) => a.shardId.localeCompare(b.shardId)),
    rows.map((r) => ({ shardId: r.shardId, owner: r.owner })).sort((a, b) => a.shardId.localeCompare(b.shardId)),
    'each worker holds exactly the leases the table gives it',
  );
}

describe('dynamoLeases: worker processes sharing a stream', { timeout: 600_000 }, () => {
  it('3 workers, 6 shards, 30,000 records: every record processed, then each shard held by one worker, 2-2-2', async () => {
    const { streamName } = await createStream(raw, 6);
    const tableName = `leases-${randomUUID()}`;
    const expected = await put(streamName, 0, 30_000);
    const ws = startWorkers(streamName, tableName, 3);
    await waitFor('30,000 records', () => seen(ws).size >= 30_000, 240_000);
    await waitFor('a 2-2-2 split', () => balanced(tableName, streamName, ws, [2, 2, 2]), 60_000);
    await sleep(2 * RENEW_MS);
    assert.ok(await balanced(tableName, streamName, ws, [2, 2, 2]), 'the split stays 2-2-2');
    await assertHeldOnce(tableName, streamName, ws);
    const all = ws.flatMap((w) => w.recs.map((r) => r.data));
    assert.deepEqual(seen(ws), new Set(expected), 'every record, nothing else');
    // Balancing hands leases over after their acks: nothing is read twice.
    assert.equal(all.length, expected.length, `duplicates: ${all.length - expected.length}`);
    for (const w of ws) assert.ok(w.recs.length > 0, `${w.id} processed records`);
    await Promise.all(ws.map((w) => w.close()));
    for (const w of ws) workers.delete(w);
    const rows = await rowsOf(tableName, streamName);
    assert.ok(rows.every((r) => r.owner === undefined), 'closing released every lease');
    await deleteStream(raw, streamName);
  });

  it('kill -9 of a worker: its shards move within the lease bound, nothing is lost, duplicates only from its last checkpoint on', async (t) => {
    const { streamName } = await createStream(raw, 6);
    const tableName = `leases-${randomUUID()}`;
    const expected = await put(streamName, 0, 12_000);
    // About 500 records/s per worker: the run lasts long enough to kill one mid-way.
    const ws = startWorkers(streamName, tableName, 3, { delayMs: 10, batch: 5 });
    await waitFor('a 2-2-2 split', () => balanced(tableName, streamName, ws, [2, 2, 2]), 60_000);
    const victim = ws[0]!;
    await waitFor('the victim to have checkpointed its shards', () => [...victim.held()].every((s) => victim.checkpoints.some((c) => c.shardId === s)), 30_000);
    assert.ok(seen(ws).size < expected.length, 'killed mid-run');
    const victimShards = [...victim.held()];
    victim.child.kill('SIGKILL');
    const killedAt = Date.now();
    await victim.exited;
    const survivors = ws.slice(1);
    await waitFor(
      'the victim’s shards to be taken',
      () => victimShards.every((s) => survivors.some((w) => w.held().has(s))),
      LEASE_MS + 2 * RENEW_MS + 10_000,
      survivors,
    );
    // When each shard was first gained after the kill (a survivor may have held it before, and handed it to the victim).
    const moved = Math.max(...victimShards.map((s) => Math.min(...survivors.flatMap((w) => w.leases.filter((e) => e.type === 'gained' && e.shardId === s && e.at >= killedAt).map((e) => e.at)))));
    assert.ok(Number.isFinite(moved), 'every shard of the victim was gained after the kill');
    // Expiry is measured on each worker's own clock from when it saw the counter move: at most a lease duration plus two renew rounds after the last renew.
    assert.ok(moved - killedAt <= LEASE_MS + 2 * RENEW_MS + 500, `shards moved ${moved - killedAt} ms after the kill`);
    t.diagnostic(`the killed worker's shards moved ${moved - killedAt} ms after the kill (lease ${LEASE_MS} ms, renew ${RENEW_MS} ms)`);
    for (const s of victimShards) {
      const gained = survivors.flatMap((w) => w.leases.filter((e) => e.type === 'gained' && e.shardId === s && e.at >= killedAt));
      assert.equal(gained[0]?.reason, 'expired', `${s} taken as expired`);
    }
    await waitFor('every record', () => seen(ws).size >= expected.length, 180_000, survivors);
    assert.deepEqual(seen(ws), new Set(expected), 'nothing lost');
    // Duplicates: only records the victim processed after its last stored checkpoint of their shard.
    const lastCheckpoint = new Map<string, bigint>();
    for (const c of victim.checkpoints) lastCheckpoint.set(c.shardId, BigInt(c.sequenceNumber));
    const survivorData = new Set(survivors.flatMap((w) => w.recs.map((r) => r.data)));
    const duplicates = victim.recs.filter((r) => survivorData.has(r.data));
    for (const r of duplicates) {
      assert.ok(victimShards.includes(r.shardId), `duplicate ${r.data} from a shard the victim held at the end`);
      assert.ok(BigInt(r.seq) > (lastCheckpoint.get(r.shardId) ?? -1n), `duplicate ${r.data} (${r.shardId} ${r.seq}) is past the victim's last checkpoint`);
    }
    // So at most the unacked window plus what one checkpoint interval processes, per shard.
    const perShardBound = MAX_IN_FLIGHT + Math.ceil(500 * (CHECKPOINT_MS / 1000)) * 2;
    assert.ok(duplicates.length <= victimShards.length * perShardBound, `${duplicates.length} duplicates`);
    t.diagnostic(`${duplicates.length} duplicates after the kill (bound ${victimShards.length * perShardBound})`);
    const survivorAll = survivors.flatMap((w) => w.recs.map((r) => r.data));
    assert.equal(survivorAll.length, survivorData.size, 'the survivors read nothing twice');
    await Promise.all(survivors.map((w) => w.close()));
    for (const w of ws) workers.delete(w);
    await deleteStream(raw, streamName);
  });

  it('graceful close of a worker: its shards move to the others with no duplicates', async () => {
    const { streamName } = await createStream(raw, 6);
    const tableName = `leases-${randomUUID()}`;
    const expected = await put(streamName, 0, 9_000);
    const ws = startWorkers(streamName, tableName, 3, { delayMs: 10, batch: 5 });
    await waitFor('a 2-2-2 split', () => balanced(tableName, streamName, ws, [2, 2, 2]), 60_000);
    const leaving = ws[1]!;
    const shards = [...leaving.held()];
    assert.ok(seen(ws).size < expected.length, 'closed mid-run');
    const closedAt = Date.now();
    await leaving.close();
    assert.deepEqual(new Set(leaving.leases.filter((e) => e.type === 'released').map((e) => e.shardId)), new Set(shards), 'it released its leases');
    const stay = [ws[0]!, ws[2]!];
    await waitFor('its shards to be taken', () => shards.every((s) => stay.some((w) => w.held().has(s))), 2 * RENEW_MS + 5_000, stay);
    for (const s of shards) {
      const gained = stay.flatMap((w) => w.leases.filter((e) => e.type === 'gained' && e.shardId === s && e.at >= closedAt));
      assert.equal(gained[0]?.reason, 'free', `${s} was taken as a released lease, at once`);
    }
    await waitFor('every record', () => seen(ws).size >= expected.length, 180_000, stay);
    const all = ws.flatMap((w) => w.recs.map((r) => r.data));
    assert.deepEqual(new Set(all), new Set(expected));
    assert.equal(all.length, expected.length, `no duplicates (${all.length - expected.length})`);
    await waitFor('a 3-3 split', () => balanced(tableName, streamName, stay, [3, 3]), 30_000, stay);
    await Promise.all(stay.map((w) => w.close()));
    for (const w of ws) workers.delete(w);
    await deleteStream(raw, streamName);
  });

  it('resharding while 3 workers run: parents are read to their end before their children start', async () => {
    const { streamName } = await createStream(raw, 4);
    const tableName = `leases-${randomUUID()}`;
    const ws = startWorkers(streamName, tableName, 3);
    const expected: string[] = [];
    let next = 0;
    const round = async (): Promise<void> => {
      expected.push(...(await put(streamName, next, 600)));
      next += 600;
    };
    await round();
    await waitFor('the first round', () => seen(ws).size >= expected.length, 60_000);
    const [s0, s1, s2] = await shardsOf(raw, streamName);
    const mid = (BigInt(s0!.HashKeyRange!.StartingHashKey!) + BigInt(s0!.HashKeyRange!.EndingHashKey!)) / 2n;
    await raw.send(new SplitShardCommand({ StreamName: streamName, ShardToSplit: s0!.ShardId!, NewStartingHashKey: mid.toString() }));
    await waitActive(raw, streamName);
    await round();
    await raw.send(new MergeShardsCommand({ StreamName: streamName, ShardToMerge: s1!.ShardId!, AdjacentShardToMerge: s2!.ShardId! }));
    await waitActive(raw, streamName);
    await round();
    await waitFor('every record', () => seen(ws).size >= expected.length, 120_000);
    assert.deepEqual(seen(ws), new Set(expected), 'nothing lost');

    const shards = await shardsOf(raw, streamName);
    const children = shards.filter((s) => s.ParentShardId);
    assert.equal(children.length, 3, 'two split children and one merged child');
    const ended = (shardId: string): number => {
      const times = ws.flatMap((w) => w.shardEvents.filter((e) => e.shardId === shardId && e.state === 'ended').map((e) => e.at));
      assert.ok(times.length > 0, `${shardId} was read to its end`);
      return Math.min(...times);
    };
    const allRecs = ws.flatMap((w) => w.recs);
    for (const child of children) {
      const parents = [child.ParentShardId, child.AdjacentParentShardId].filter((p): p is string => !!p);
      const first = Math.min(...allRecs.filter((r) => r.shardId === child.ShardId).map((r) => r.at));
      assert.ok(Number.isFinite(first), `${child.ShardId} was read`);
      for (const parent of parents) {
        assert.ok(first >= ended(parent), `${child.ShardId} started ${first - ended(parent)} ms after its parent ${parent} ended`);
        const lastOfParent = Math.max(...allRecs.filter((r) => r.shardId === parent).map((r) => r.at));
        assert.ok(first >= lastOfParent, `${child.ShardId}'s first record after ${parent}'s last`);
      }
    }
    const rows = await rowsOf(tableName, streamName);
    const parentsOf = new Set(children.flatMap((c) => [c.ParentShardId!, ...(c.AdjacentParentShardId ? [c.AdjacentParentShardId] : [])]));
    for (const row of rows) {
      if (parentsOf.has(row.shardId)) assert.deepEqual(row.checkpoint, { sequenceNumber: SHARD_END }, `${row.shardId} is finished in its lease`);
    }
    assert.equal(rows.length, shards.length, 'a lease per shard');
    await Promise.all(ws.map((w) => w.close()));
    for (const w of ws) workers.delete(w);
    await deleteStream(raw, streamName);
  });
});
