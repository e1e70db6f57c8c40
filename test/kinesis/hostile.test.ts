/**
 * kinesisSource against a hostile producer (issue 19), on kinesis-local: KPL aggregates that
 * hold 10,000 user records each, records large enough to matter in bytes, and records that
 * carry the KPL magic bytes without being valid aggregates.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { flow } from '../../lib/core/flow.js';
import type { Message } from '../../lib/core/message.js';
import { map } from '../../lib/transforms/map.js';
import { KPL_MAGIC, openAggregate, type AggregateCursor, type MalformedAggregate } from '../../lib/kinesis/deaggregate.js';
import { kinesisSource, type KinesisSource, type KinesisSourceOptions, type MalformedEvent } from '../../lib/kinesis/source.js';
import { aggregate, createStream, deleteStream, putRaw, startKinesisServer, type KinesisServer } from '../fixtures/kinesis.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let server: KinesisServer;
before(async () => {
  server = await startKinesisServer();
});
after(async () => {
  await server.stop();
});

const credentials = { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' };
const MiB = 1024 * 1024;

function connect(): Pick<KinesisSourceOptions, 'endpoint' | 'region' | 'credentials'> {
  return { endpoint: server.endpoint, region: 'us-east-1', credentials };
}

function heapMiB(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed / MiB;
}

/** Resolves once `predicate()` holds, checking every 50 ms; rejects after `timeoutMs` saying what it waited for. */
async function until(what: string, predicate: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** `count` aggregates of `perAggregate` tiny user records `<aggregate>.<index>`, over four partition keys. */
function flood(count: number, perAggregate: number): Array<{ data: Buffer; key: string }> {
  return Array.from({ length: count }, (_, a) => ({
    data: aggregate(Array.from({ length: perAggregate }, (_, i) => ({ data: Buffer.from(`${a}.${i}`), key: `k${i % 4}` }))),
    key: `outer-${a}`,
  }));
}

/** A sink that takes every message and never acks it (and keeps it: the worst case for memory). */
function holdingSink(held: Message[]): Writable {
  return new Writable({
    objectMode: true,
    write(m: Message, _encoding, callback) {
      held.push(m);
      callback();
    },
  });
}

describe('kinesisSource: a KPL flood is bounded by maxInFlightPerShard in user records', () => {
  for (const mode of ['polling', 'enhanced fan-out'] as const) {
    it(`${mode}: 20 aggregates of 10,000 user records, a sink that never acks, maxInFlightPerShard 100`, async (t) => {
      const raw = server.client();
      const { streamName, streamARN } = await createStream(raw, 1);
      await putRaw(raw, streamName, flood(20, 10_000));
      const heapBefore = heapMiB();
      const rssBefore = process.memoryUsage().rss / MiB;
      const source = kinesisSource({
        ...(mode === 'polling' ? { streamName } : { streamARN, consumerName: `flood-${Date.now()}` }),
        ...connect(),
        startingPosition: 'TRIM_HORIZON',
        maxInFlightPerShard: 100,
        pollIntervalMs: 200,
      });
      // Holds every message unacked until told to ack; then acks everything, checking the order.
      const held: Message[] = [];
      let acking = false;
      let next = 0;
      let outOfOrder: string | undefined;
      let overBound = 0;
      const expected = (n: number): string => `${Math.floor(n / 10_000)}.${n % 10_000}`;
      const sink = new Writable({
        objectMode: true,
        write(m: Message, _encoding, callback) {
          if (outOfOrder === undefined && m.data.toString() !== expected(next)) outOfOrder = `${m.data.toString()} where ${expected(next)} was due`;
          next += 1;
          if (source.inFlight() > 100) overBound += 1;
          if (acking) m.ack();
          else held.push(m);
          callback();
        },
      });
      source.pipe(sink);
      t.after(async () => {
        source.destroy();
        sink.destroy();
        await deleteStream(raw, streamName);
      });
      await until('the first 100 user records', () => held.length >= 100);
      // Long enough for several more GetRecords rounds (or fan-out events) had the bound not held.
      await sleep(2500);
      const heapGrowth = heapMiB() - heapBefore;
      const rssGrowth = process.memoryUsage().rss / MiB - rssBefore;
      t.diagnostic(`${mode}: ${held.length} user records in flight; heap +${heapGrowth.toFixed(1)} MiB, RSS +${rssGrowth.toFixed(1)} MiB`);
      assert.equal(held.length, 100, 'exactly maxInFlightPerShard user records handed out');
      assert.equal(source.inFlight(), 100);
      assert.deepEqual(
        held.map((m) => m.data.toString()),
        Array.from({ length: 100 }, (_, i) => `0.${i}`),
        'in order, from the first aggregate',
      );
      // Before: all 200,000 in flight, heap +314 MiB. Now: the messages plus one GetRecords page (~2 MiB of aggregates).
      assert.ok(heapGrowth < 40, `heap grew by ${heapGrowth.toFixed(1)} MiB`);

      // Acks make room: the rest comes, every user record once and in order, never more than 100 in flight.
      acking = true;
      for (const m of held.splice(0)) m.ack();
      await until('all 200,000 user records', () => next >= 200_000, 180_000);
      await sleep(300);
      assert.equal(outOfOrder, undefined);
      assert.equal(next, 200_000, 'none twice');
      assert.equal(overBound, 0);
    });
  }
});

describe('kinesisSource: maxInFlightBytes', () => {
  it('stops handing out large records at maxInFlightBytes of unacked payload, and goes on as they are acked', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 2);
    // 24 records of 512 KiB over two shards: 12 MiB in all, put 4 MiB at a time (PutRecords takes 5 MiB).
    const large = Array.from({ length: 24 }, (_, i) => ({ data: Buffer.alloc(512 * 1024, i), key: `key-${i % 2}` }));
    for (let i = 0; i < large.length; i += 8) await putRaw(raw, streamName, large.slice(i, i + 8));
    const source = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON', maxInFlightBytes: 2 * MiB, pollIntervalMs: 200 });
    const held: Message[] = [];
    const sink = holdingSink(held);
    source.pipe(sink);
    t.after(async () => {
      source.destroy();
      sink.destroy();
      await deleteStream(raw, streamName);
    });
    await until('4 records', () => held.length >= 4);
    await sleep(2000);
    t.diagnostic(`in flight ${held.length} records, ${source.inFlightBytes / MiB} MiB; fetched and not handed out ${(source.pendingBytes / MiB).toFixed(1)} MiB`);
    assert.equal(held.length, 4, '2 MiB of 512 KiB records, and no more');
    assert.equal(source.inFlightBytes, 2 * MiB);
    const seen = new Set<number>();
    for (let round = 0; seen.size < 24; round++) {
      assert.ok(round < 100, 'every record arrives');
      for (const m of held.splice(0)) {
        seen.add(m.data[0]!);
        m.ack();
      }
      await until('the next records, or all of them', () => held.length > 0 || seen.size === 24);
      assert.ok(source.inFlightBytes <= 2 * MiB, `${source.inFlightBytes} bytes in flight`);
    }
    assert.equal(seen.size, 24);
  });

  it('counts user records inside an aggregate: large user records stop mid-aggregate and resume there', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    // Two aggregates of 9 user records of 100 KiB each.
    const records = [0, 1].map((a) => ({
      data: aggregate(Array.from({ length: 9 }, (_, i) => ({ data: Buffer.alloc(100 * 1024, a * 9 + i), key: 'k' }))),
      key: `outer-${a}`,
    }));
    await putRaw(raw, streamName, records);
    const source = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON', maxInFlightBytes: 256 * 1024, pollIntervalMs: 200 });
    const held: Message[] = [];
    const sink = holdingSink(held);
    source.pipe(sink);
    t.after(async () => {
      source.destroy();
      sink.destroy();
      await deleteStream(raw, streamName);
    });
    await until('3 user records', () => held.length >= 3);
    await sleep(1500);
    // 100 KiB, 200 KiB, then the third crosses 256 KiB: nothing more until an ack.
    assert.equal(held.length, 3);
    assert.deepEqual(
      held.map((m) => m.meta!.subSequenceNumber),
      [0, 1, 2],
    );
    const order: number[] = [];
    while (order.length < 18) {
      for (const m of held.splice(0)) {
        order.push(m.data[0]!);
        m.ack();
      }
      if (order.length < 18) await until('more user records', () => held.length > 0);
    }
    assert.deepEqual(order, Array.from({ length: 18 }, (_, i) => i));
  });

  it('rejects a bad maxInFlightBytes naming the option', () => {
    assert.throws(
      () => kinesisSource({ streamName: 's', ...connect(), maxInFlightBytes: 0 }),
      (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && /maxInFlightBytes/.test(e.message),
    );
    assert.throws(
      () => kinesisSource({ streamName: 's', ...connect(), malformedAggregates: 'drop' as 'deliver' }),
      (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && /malformedAggregates/.test(e.message),
    );
  });
});

/** A record with the KPL magic and a valid MD5 around `proto`. */
function wrap(proto: Buffer): Buffer {
  return Buffer.concat([KPL_MAGIC, proto, createHash('md5').update(proto).digest()]);
}

describe('openAggregate', () => {
  it('checks the whole aggregate up front and then decodes one user record at a time; skip() resumes inside it', () => {
    // About 100,000 one-byte user records fit in 1 MiB: a cursor, not an array of them.
    const records = Array.from({ length: 100_000 }, (_, i) => ({ data: Buffer.from([i % 256]), key: i % 2 === 0 ? 'even' : 'odd' }));
    const data = aggregate(records);
    assert.ok(data.length < 1024 * 1024, `${data.length} bytes`);
    const cursor = openAggregate(data) as AggregateCursor;
    assert.equal(cursor.malformed, false);
    assert.equal(cursor.count, 100_000);
    const first = cursor.next()!;
    assert.deepEqual([first.data[0], first.partitionKey, cursor.index], [0, 'even', 1]);
    cursor.skip(99_997);
    assert.equal(cursor.index, 99_998);
    const r = cursor.next()!;
    assert.deepEqual([r.data[0], r.partitionKey, cursor.done], [99_998 % 256, 'even', false]);
    cursor.next();
    assert.equal(cursor.done, true);
    assert.equal(cursor.next(), undefined);
  });

  it('tells truncated, digest and protobuf faults apart; a record without the magic is not an aggregate', () => {
    const fault = (data: Buffer): string => (openAggregate(data) as MalformedAggregate).fault;
    const good = aggregate([{ data: Buffer.from('x'), key: 'k' }]);
    const badDigest = Buffer.from(good);
    badDigest[6]! ^= 0x01;
    assert.equal(openAggregate(Buffer.from('plain')), undefined);
    assert.equal(fault(KPL_MAGIC), 'truncated');
    assert.equal(fault(Buffer.concat([KPL_MAGIC, Buffer.alloc(15)])), 'truncated');
    assert.equal(fault(badDigest), 'digest');
    assert.equal(fault(wrap(Buffer.from([0x1a, 0x05, 0x08]))), 'protobuf');
    assert.equal(fault(wrap(Buffer.from([0x1a, 0x04, 0x08, 0x03, 0x1a, 0x00]))), 'protobuf', 'partition key index out of range');
    // A bad record after a thousand good ones: found before the first is handed out.
    const many = aggregate(Array.from({ length: 1000 }, (_, i) => ({ data: Buffer.from(`r${i}`), key: 'k' })));
    const proto = Buffer.concat([many.subarray(4, many.length - 16), Buffer.from([0x1a, 0x02, 0x08, 0x00])]);
    assert.match((openAggregate(wrap(proto)) as MalformedAggregate).reason, /without partition key index or data/);
  });
});

describe('kinesisSource: malformed KPL aggregates', () => {
  const good = aggregate([
    { data: Buffer.from('g0'), key: 'a' },
    { data: Buffer.from('g1'), key: 'b' },
  ]);
  const badDigest = Buffer.from(aggregate([{ data: Buffer.from('x'), key: 'k' }]));
  badDigest[badDigest.length - 1]! ^= 0xff;
  const truncated = Buffer.concat([KPL_MAGIC, Buffer.from('short')]);
  const badProtobuf = wrap(Buffer.from([0x1a, 0x05, 0x08]));
  const badMagic = Buffer.concat([Buffer.from([0xf3, 0x89, 0x9a, 0xc3]), good.subarray(4)]);
  const put = [
    { data: Buffer.from('plain'), key: 'p' },
    { data: badDigest, key: 'd' },
    { data: good, key: 'g' },
    { data: truncated, key: 't' },
    { data: badProtobuf, key: 'b' },
    { data: badMagic, key: 'm' },
  ];

  it("emits 'malformed' and delivers each as one message of its bytes marked meta.malformed; a near-miss magic is an ordinary record", async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, put);
    const source = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON' });
    t.after(() => source.destroy());
    const events: MalformedEvent[] = [];
    source.on('malformed', (e: MalformedEvent) => events.push(e));
    const received: Message[] = [];
    source.on('data', (m: Message) => {
      received.push(m);
      m.ack();
    });
    await until('7 messages', () => received.length >= 7);
    await source.close();
    assert.deepEqual(
      events.map((e) => [e.fault, e.bytes]),
      [
        ['digest', badDigest.length],
        ['truncated', truncated.length],
        ['protobuf', badProtobuf.length],
      ],
    );
    for (const e of events) {
      assert.equal(e.shardId, received[0]!.meta!.shardId);
      assert.match(e.sequenceNumber, /^\d+$/);
      assert.ok(e.reason.length > 10, e.reason);
    }
    assert.match(events[0]!.reason, /MD5/);
    assert.match(events[1]!.reason, /needs at least 20/);
    assert.match(events[2]!.reason, /does not decode: truncated/);
    const summary = received.map((m) => [m.data.length, m.meta!.malformed]);
    assert.deepEqual(summary, [
      [5, undefined],
      [badDigest.length, events[0]!.reason],
      [2, undefined],
      [2, undefined],
      [truncated.length, events[1]!.reason],
      [badProtobuf.length, events[2]!.reason],
      [badMagic.length, undefined],
    ]);
    assert.ok(received[1]!.data.equals(badDigest), 'the record as it was written');
    assert.deepEqual(
      received.map((m) => m.meta!.sequenceNumber === events[0]!.sequenceNumber),
      [false, true, false, false, false, false, false],
    );
  });

  it("malformedAggregates: 'deliver' delivers them as ordinary records, still with the event", async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, put);
    const source = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON', malformedAggregates: 'deliver' });
    t.after(() => source.destroy());
    let events = 0;
    source.on('malformed', () => (events += 1));
    const received: Message[] = [];
    source.on('data', (m: Message) => {
      received.push(m);
      m.ack();
    });
    await until('7 messages', () => received.length >= 7);
    await source.close();
    assert.equal(events, 3);
    assert.ok(received.every((m) => m.meta!.malformed === undefined));
  });

  // flow() hands a message marked meta.malformed to its error policy without delivering it (ErrorPolicy.admit).
  it('flow() with a dead-letter sink: the malformed records are dead-lettered as written, the rest delivered', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, put);
    const source: KinesisSource = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON' });
    const delivered: Buffer[] = [];
    const deadLetters: Buffer[] = [];
    const sinkOf = (into: Buffer[]): Writable =>
      new Writable({
        objectMode: true,
        write(m: Message, _encoding, callback) {
          into.push(m.data);
          m.ack();
          callback();
        },
      });
    const running = flow({ source, sink: sinkOf(delivered), deadLetter: sinkOf(deadLetters), deadLetterFormat: 'json', handleSignals: false });
    t.after(() => running.stop());
    await until('4 delivered and 3 dead-lettered', () => delivered.length >= 4 && deadLetters.length >= 3, 20_000);
    await running.stop();
    const stats = await running;
    assert.equal(stats.deadLettered, 3);
    assert.deepEqual(delivered.map((d) => d.length), [5, 2, 2, badMagic.length]);
    const envelopes = deadLetters.map((d) => JSON.parse(d.toString()) as { error: { code: string; message: string }; dataBase64?: string; position: { shardId: string } });
    assert.deepEqual(
      envelopes.map((e) => Buffer.from(e.dataBase64 ?? '', 'base64').length),
      [badDigest.length, truncated.length, badProtobuf.length],
    );
    assert.ok(envelopes.every((e) => e.error.code === ErrorCodes.INVALID_MESSAGE && /MD5|needs at least|does not decode/.test(e.error.message)));
  });

  it('flow() without a dead-letter sink fails naming the shard and sequence number of the malformed record', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, put);
    const source: KinesisSource = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON' });
    const sink = new Writable({
      objectMode: true,
      write(m: Message, _encoding, callback) {
        m.ack();
        callback();
      },
    });
    const running = flow({ source, sink, handleSignals: false });
    t.after(() => running.stop().catch(() => {}));
    const failed = Promise.race([running, sleep(20_000).then(() => Promise.reject(new Error('the flow did not fail within 20 s')))]);
    await assert.rejects(failed, (e: ManifoldError) => e.code === ErrorCodes.UNDELIVERED && /shard shardId-\d+ at sequence number \d+/.test(e.message) && /MD5/.test(e.message));
  });

  it('a transform that refuses marked messages sends them to the dead-letter sink through the error policy; the rest flows on', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, put);
    const source: KinesisSource = kinesisSource({ streamName, ...connect(), startingPosition: 'TRIM_HORIZON', checkpointIntervalMs: 100 });
    const delivered: string[] = [];
    const deadLetters: string[] = [];
    const sinkOf = (into: string[]): Writable =>
      new Writable({
        objectMode: true,
        write(m: Message, _encoding, callback) {
          into.push(m.data.toString());
          m.ack();
          callback();
        },
      });
    const refuseMalformed = map((m) => {
      if (m.meta?.malformed !== undefined) throw new ManifoldError(`malformed KPL aggregate: ${String(m.meta.malformed)}`, { code: ErrorCodes.INVALID_MESSAGE });
      return m;
    });
    const running = flow({
      source,
      transforms: [refuseMalformed],
      sink: sinkOf(delivered),
      deadLetter: sinkOf(deadLetters),
      deadLetterFormat: 'json',
      handleSignals: false,
    });
    t.after(() => running.stop());
    await until('4 delivered and 3 dead-lettered', () => delivered.length >= 4 && deadLetters.length >= 3);
    await sleep(300);
    await running.stop();
    const stats = await running;
    assert.equal(stats.deadLettered, 3);
    assert.equal(delivered.length, 4);
    const envelopes = deadLetters.map((d) => JSON.parse(d) as { error: { code: string; message: string }; dataBase64?: string; data?: string; position: { sequenceNumber: string } });
    assert.ok(envelopes.every((e) => e.error.code === ErrorCodes.INVALID_MESSAGE && /malformed/.test(e.error.message)));
    assert.ok(Buffer.from(envelopes[0]!.dataBase64 ?? '', 'base64').equals(badDigest), 'the dead letter keeps the record as written');
  });
});
