/**
 * flow()'s error policy with kinesisSource against kinesis-local, dead-lettering to s3Sink on s3rver: a poison
 * record among 100,000 is delivered maxAttempts times, lands in the bucket as a JSON envelope naming its shard
 * and sequence number, every other record is delivered, every shard's checkpoint ends at its last sequence
 * number, and memory stays bounded.
 *
 * The 100,000 records go in as 2,000 plain records and 98,000 user records in 1,000 KPL aggregates: kinesis-local
 * slows down with every record a stream holds (on a busy 2-CPU machine 5,000 plain records took 6 s to put, 20,000
 * took 99 s over 4 shards and 37 s over 16), so 100,000 plain records would take most of an hour.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { PutRecordsCommand, type KinesisClient, type PutRecordsRequestEntry } from '@aws-sdk/client-kinesis';
import type { DeadLetterEnvelope } from '../../lib/core/error-policy.js';
import { flow } from '../../lib/core/flow.js';
import type { Message } from '../../lib/core/message.js';
import { memoryCheckpointer } from '../../lib/kinesis/memory-checkpointer.js';
import { kinesisSource } from '../../lib/kinesis/source.js';
import { s3Sink } from '../../lib/s3/sink.js';
import { assertBoundedMemory, assertOnePoison, describeMemory, gate, refusal, sampleMemory, watchPolicy } from '../fixtures/error-policy.js';
import { aggregate, createStream, deleteStream, startKinesisServer } from '../fixtures/kinesis.js';
import { startS3 } from '../fixtures/s3.js';

const credentials = { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' };

/** One after hook that undoes a test's work last first: flows stop before their servers go. */
function undoer(t: TestContext): (fn: () => unknown) => void {
  const steps: Array<() => unknown> = [];
  t.after(async () => {
    for (const step of steps.reverse()) await step();
  });
  return (fn) => steps.push(fn);
}

async function waitFor(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

const value = (i: number): string => `r-${i}`;
const indexOf = (m: Message): number => Number(m.data.toString().slice(2));

/**
 * Puts records 0 to total - 1 (`r-<i>`, key `k<i % 64>`): every 50th as a plain Kinesis record, the others in KPL
 * aggregates of 98. Returns the last sequence number of each shard.
 */
async function load(raw: KinesisClient, streamName: string, total: number): Promise<Map<string, bigint>> {
  const entries: PutRecordsRequestEntry[] = [];
  let pending: Array<{ data: Buffer; key: string }> = [];
  for (let i = 0; i < total; i++) {
    const record = { data: Buffer.from(value(i)), key: `k${i % 64}` };
    if (i % 50 === 0) entries.push({ Data: record.data, PartitionKey: record.key });
    else pending.push(record);
    if (pending.length === 98 || (i === total - 1 && pending.length > 0)) {
      entries.push({ Data: aggregate(pending), PartitionKey: `agg-${entries.length}` });
      pending = [];
    }
  }
  const lastOfShard = new Map<string, bigint>();
  for (let i = 0; i < entries.length; i += 500) {
    const out = await raw.send(new PutRecordsCommand({ StreamName: streamName, Records: entries.slice(i, i + 500) }));
    assert.equal(out.FailedRecordCount ?? 0, 0);
    for (const r of out.Records!) {
      const sequence = BigInt(r.SequenceNumber!);
      if (sequence > (lastOfShard.get(r.ShardId!) ?? -1n)) lastOfShard.set(r.ShardId!, sequence);
    }
  }
  return lastOfShard;
}

describe('flow() error policy with Kinesis', () => {
  it('one poison record among 100,000: 3 deliveries, then a JSON envelope in S3; every other record delivered; every checkpoint at the last sequence number of its shard; memory bounded', async (t) => {
    const undo = undoer(t);
    const server = await startKinesisServer();
    undo(() => server.stop());
    const s3 = await startS3();
    undo(() => s3.cleanup());
    const raw = server.client();
    const { streamName } = await createStream(raw, 4);
    undo(() => deleteStream(raw, streamName));

    const total = 100_000;
    const poison = 61_234;
    assert.equal(poison % 50 === 0, false, 'the poison record is inside an aggregate');
    const lastOfShard = await load(raw, streamName, total);
    assert.equal(lastOfShard.size, 4, 'every shard has records');

    const memory = await sampleMemory();
    const checkpointer = memoryCheckpointer();
    const source = kinesisSource({ streamName, endpoint: server.endpoint, region: 'us-east-1', credentials, startingPosition: 'TRIM_HORIZON', checkpointer, checkpointIntervalMs: 500 });
    const delivered = new Set<number>();
    let duplicates = 0;
    const deliveries: Array<{ attempt: number | undefined; at: number; meta: Readonly<Record<string, unknown>> | undefined }> = [];
    const collecting = new Writable({
      objectMode: true,
      write(m: Message, _encoding, callback) {
        const i = indexOf(m);
        if (delivered.has(i)) duplicates += 1;
        delivered.add(i);
        m.ack();
        callback();
      },
    });
    const sink = gate(collecting, (m) => {
      if (indexOf(m) !== poison) return undefined;
      deliveries.push({ attempt: m.attempt, at: performance.now(), meta: m.meta });
      return refusal(`record ${poison}`);
    });
    const bucket = await s3.createBucket();
    const deadLetter = s3Sink({ bucket, prefix: 'dead', bufferPath: await s3.tempDir(), client: s3.client });
    const running = flow({ source, sink, maxAttempts: 3, retryBackoff: { minTimeoutMs: 50, maxTimeoutMs: 200 }, deadLetter });
    undo(() => running.stop().catch(() => undefined));
    const policy = watchPolicy(running);
    await waitFor('every record acked or dead-lettered', () => running.stats.acks + running.stats.deadLettered >= total, 120_000);
    // The flow ends the dead-letter sink: its buffer file is uploaded before the flow resolves.
    const stats = await running.stop();
    const figures = memory.stop();
    t.diagnostic(`${stats.durationMs.toFixed(0)} ms for ${total} records; ${describeMemory(figures)}`);

    assertOnePoison(stats, total, deliveries, policy, 50);
    assert.equal(delivered.size, total - 1, 'every other record was delivered');
    assert.equal(duplicates, 0, 'once');
    assert.ok(!delivered.has(poison));

    const stored = checkpointer.snapshot(streamName);
    assert.deepEqual(
      stored,
      Object.fromEntries([...lastOfShard].map(([shardId, sequence]) => [shardId, { sequenceNumber: String(sequence) }])),
      'every shard is checkpointed at its last sequence number',
    );

    const objects = await s3.objects(bucket);
    const lines = objects.flatMap((o) => o.body.toString().split('\n').filter((line) => line.length > 0));
    assert.equal(lines.length, 1, `one dead-letter record in ${objects.map((o) => o.key).join(', ')}`);
    assert.ok(objects[0]!.key.startsWith('dead/'));
    const envelope = JSON.parse(lines[0]!) as DeadLetterEnvelope;
    const meta = deliveries[0]!.meta!;
    assert.deepEqual(
      { ...envelope, failedAt: undefined, timestamp: undefined, error: { ...envelope.error, message: undefined } },
      {
        manifoldDeadLetter: 1,
        source: 'kinesis',
        position: { shardId: meta.shardId, sequenceNumber: meta.sequenceNumber, subSequenceNumber: meta.subSequenceNumber },
        attempts: 3,
        error: { code: 'MANIFOLD_ERR_DELIVERY', message: undefined },
        failedAt: undefined,
        key: `k${poison % 64}`,
        timestamp: undefined,
        data: value(poison),
      },
    );
    assert.match(envelope.error.message, /test: the sink refused record 61234/);
    assert.equal(typeof envelope.timestamp, 'number');
    assert.ok(!Number.isNaN(Date.parse(envelope.failedAt)));
    assert.ok(typeof meta.subSequenceNumber === 'number' && meta.subSequenceNumber > 0, 'the poison came out of an aggregate');
    assertBoundedMemory(figures, { livePeakMiB: 64, liveAfterMiB: 24, rssMiB: 1024 });
  });
});
