/** kinesisSink against kinesis-local on loopback, with a fault-injecting proxy for throttling and partial failures. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import { kinesisSink, type PartialRetryEvent, type RejectEvent } from '../../lib/kinesis/sink.js';
import { sinkConformance } from '../conformance/suite.js';
import { createStream, deleteStream, rawClient, readAll, startFaultProxy, startKinesisServer, type KinesisServer } from '../fixtures/kinesis.js';

let server: KinesisServer;
before(async () => {
  server = await startKinesisServer();
});
after(async () => {
  await server.stop();
});

const credentials = { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' };
const FAST_RETRY = { retries: 8, minTimeoutMs: 10, maxTimeoutMs: 100 };

interface Tracked {
  messages: Message[];
  acked: Set<number>;
  nacks: Map<number, Error>;
}

function tracked(count: number, make: (i: number) => { data: string | Buffer; key?: string }): Tracked {
  const acked = new Set<number>();
  const nacks = new Map<number, Error>();
  const messages = Array.from({ length: count }, (_, i) => {
    const { data, key } = make(i);
    return createMessage({ data, key, onAck: () => acked.add(i), onNack: (e) => nacks.set(i, e) });
  });
  return { messages, acked, nacks };
}

describe('kinesisSink options', () => {
  it('rejects streamName and streamARN that name different streams, naming both', () => {
    assert.throws(
      () => kinesisSink({ streamName: 'a', streamARN: 'arn:aws:kinesis:us-east-1:000000000000:stream/b', region: 'us-east-1' }),
      (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && /streamName and options\.streamARN/.test(e.message) && /"a" and "b"/.test(e.message),
    );
  });

  it('accepts a streamName and streamARN that agree', () => {
    const sink = kinesisSink({ streamName: 'b', streamARN: 'arn:aws:kinesis:us-east-1:000000000000:stream/b', region: 'us-east-1', credentials });
    sink.destroy();
  });

  it('names the option, the value and what is allowed', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{}, /options\.streamName or options\.streamARN is required/],
      [{ streamName: 's', maxBatchRecords: 501 }, /options\.maxBatchRecords must be a positive integer of at most 500 \(the PutRecords limit\), got 501/],
      [{ streamName: 's', maxBatchBytes: 6 * 1024 * 1024 }, /options\.maxBatchBytes must be a positive integer of at most 5242880 \(bytes; the PutRecords limit\), got 6291456/],
      [{ streamName: 's', maxRecordBytes: 0 }, /options\.maxRecordBytes must be a positive integer \(bytes\), got 0/],
      [{ streamName: 's', maxInFlightRequest: 2 }, /unknown option "maxInFlightRequest" \(did you mean "maxInFlightRequests"\?\)/],
      [{ streamName: 's', maxBatchBytes: 1000, maxRecordBytes: 2000 }, /maxRecordBytes \(2000\) must not exceed options\.maxBatchBytes \(1000\)/],
      [{ streamName: 's', lingerMs: -1 }, /options\.lingerMs must be a number of at least 0/],
      [{ streamName: 's', partitionKey: '' }, /options\.partitionKey must be a string of 1 to 256 characters or a function/],
      [{ streamName: 's', streamARN: 'nope' }, /options\.streamARN must be a Kinesis stream ARN/],
      [{ streamName: 'bad name!' }, /options\.streamName must be a Kinesis stream name/],
      [{ streamName: 's', client: rawClient('http://127.0.0.1:1'), region: 'us-east-1' }, /options\.client and options\.region cannot be combined/],
      [{ streamName: 's', endpoint: 'ftp://x' }, /options\.endpoint must be an http:\/\/ or https:\/\/ URL/],
      [{ streamName: 's', maxInFlight: 2 }, /unknown option "maxInFlight" \(did you mean "maxInFlightRequests"\?\)/],
      [{ streamName: 's', retry: { retries: -1 } }, /options\.retry\.retries must be a non-negative integer/],
    ];
    for (const [options, pattern] of cases) {
      assert.throws(() => kinesisSink(options as never), (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && pattern.test(e.message), `${Object.keys(options).join(",")} -> ${pattern}`);
    }
  });
});

describe('kinesisSink', () => {
  it('batches PutRecords, acks each record, and every record arrives once', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 2);
    t.after(() => deleteStream(raw, streamName));
    const proxy = await startFaultProxy(server.endpoint);
    t.after(() => proxy.stop());
    const n = 1200;
    const { messages, acked, nacks } = tracked(n, (i) => ({ data: `batch-${i}`, key: `k${i % 7}` }));
    await pipeline(Readable.from(messages), kinesisSink({ streamName, endpoint: proxy.endpoint, region: 'us-east-1', credentials, lingerMs: 1000 }));
    assert.equal(acked.size, n);
    assert.equal(nacks.size, 0);
    // 1200 records in batches of at most 500: three requests, not one per record (linger is long, so only full batches and the final flush send).
    assert.equal(proxy.stats.putRequests, 3);
    const got = await readAll(raw, streamName);
    assert.deepEqual(got.map((r) => Buffer.from(r.Data!).toString()).sort(), messages.map((m) => m.data.toString()).sort());
    // Per-key order: within a key, records come in the order written.
    for (let k = 0; k < 7; k++) {
      const ofKey = got.filter((r) => r.PartitionKey === `k${k}`).map((r) => Number(Buffer.from(r.Data!).toString().split('-')[1]));
      assert.deepEqual(ofKey, [...ofKey].sort((a, b) => a - b));
    }
  });

  it('keeps each request within maxBatchBytes, counting partition keys', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    const proxy = await startFaultProxy(server.endpoint);
    t.after(() => proxy.stop());
    // 10 records of 1000 data bytes + 24-byte key; 3 fit in 3100 bytes, 4 would not.
    const { messages, acked } = tracked(10, (i) => ({ data: Buffer.alloc(1000, 65 + i), key: `key-${String(i).padStart(20, '0')}` }));
    await pipeline(Readable.from(messages), kinesisSink({ streamName, endpoint: proxy.endpoint, region: 'us-east-1', credentials, maxBatchBytes: 3100, lingerMs: 1000 }));
    assert.equal(acked.size, 10);
    assert.equal(proxy.stats.putRequests, 4);
    assert.equal((await readAll(raw, streamName)).length, 10);
  });

  it('sends a partial batch after lingerMs without waiting for end()', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    const sink = kinesisSink({ streamName, client: server.client(), lingerMs: 50 });
    const { messages, acked } = tracked(3, (i) => ({ data: `linger-${i}` }));
    for (const m of messages) sink.write(m);
    const deadline = Date.now() + 5000;
    while (acked.size < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(acked.size, 3, 'acked before end() was called');
    sink.end();
    await new Promise((resolve) => sink.on('finish', resolve));
    assert.equal((await readAll(raw, streamName)).length, 3);
  });

  it('takes the partition key from message.key, else partitionKey (string or function), else random', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    await pipeline(Readable.from([createMessage({ data: 'keyed', key: 'mine' }), 'plain']), kinesisSink({ streamName, client: server.client(), partitionKey: 'fixed' }));
    await pipeline(Readable.from(['fn-1', 'fn-22']), kinesisSink({ streamName, client: server.client(), partitionKey: (m) => `len-${m.data.length}` }));
    await pipeline(Readable.from(['r1', 'r2']), kinesisSink({ streamName, client: server.client() }));
    const keys = new Map((await readAll(raw, streamName)).map((r) => [Buffer.from(r.Data!).toString(), r.PartitionKey!]));
    assert.equal(keys.get('keyed'), 'mine');
    assert.equal(keys.get('plain'), 'fixed');
    assert.equal(keys.get('fn-1'), 'len-4');
    assert.equal(keys.get('fn-22'), 'len-5');
    assert.match(keys.get('r1')!, /^[0-9a-f-]{36}$/);
    assert.notEqual(keys.get('r1'), keys.get('r2'));
  });

  it('nacks an oversized record with its size and the limit, and delivers the others', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    const big = Buffer.alloc(1024 * 1024, 1);
    const { messages, acked, nacks } = tracked(3, (i) => (i === 1 ? { data: big, key: 'kk' } : { data: `small-${i}`, key: 'kk' }));
    const sink = kinesisSink({ streamName, client: server.client() });
    const rejects: RejectEvent[] = [];
    sink.on('reject', (e: RejectEvent) => rejects.push(e));
    await pipeline(Readable.from(messages), sink);
    assert.deepEqual([...acked].sort(), [0, 2]);
    const error = nacks.get(1) as ManifoldError;
    assert.equal(error.code, ErrorCodes.MESSAGE_TOO_LARGE);
    assert.match(error.message, /record of 1048578 bytes \(data 1048576 \+ partition key 2\) exceeds the stream's record limit of 1048576 bytes/);
    assert.equal(rejects.length, 1);
    assert.equal(rejects[0]!.bytes, 1048578);
    assert.deepEqual((await readAll(raw, streamName)).map((r) => Buffer.from(r.Data!).toString()), ['small-0', 'small-2']);
  });

  it('retries only the failed entries of a partial failure; every record arrives exactly once', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 2);
    t.after(() => deleteStream(raw, streamName));
    const proxy = await startFaultProxy(server.endpoint);
    t.after(() => proxy.stop());
    // Every 7th entry of the first three requests fails (its retry goes through: requests 4+ are clean).
    proxy.faults.failEntry = (index, request) => request <= 3 && index % 7 === 0;
    const n = 1000;
    const { messages, acked, nacks } = tracked(n, (i) => ({ data: `partial-${i}`, key: `k${i % 5}` }));
    const sink = kinesisSink({ streamName, endpoint: proxy.endpoint, region: 'us-east-1', credentials, retry: FAST_RETRY });
    const retries: PartialRetryEvent[] = [];
    sink.on('retry', (e: PartialRetryEvent) => {
      if ('failed' in e) retries.push(e);
    });
    await pipeline(Readable.from(messages), sink);
    assert.equal(acked.size, n);
    assert.equal(nacks.size, 0);
    assert.ok(proxy.stats.failedEntries > 0, 'faults were injected');
    // Only the failed entries were sent again: entries sent = records + failures.
    assert.equal(proxy.stats.putEntries, n + proxy.stats.failedEntries);
    assert.equal(retries.reduce((sum, e) => sum + e.failed, 0), proxy.stats.failedEntries);
    assert.deepEqual(retries[0]!.errorCodes, { ProvisionedThroughputExceededException: retries[0]!.failed });
    const got = (await readAll(raw, streamName)).map((r) => Buffer.from(r.Data!).toString());
    assert.equal(got.length, n, 'no duplicates');
    assert.deepEqual(got.sort(), messages.map((m) => m.data.toString()).sort());
  });

  it('retries whole requests that are throttled', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    const proxy = await startFaultProxy(server.endpoint);
    t.after(() => proxy.stop());
    proxy.faults.throttlePutRecords = 3;
    const { messages, acked } = tracked(50, (i) => ({ data: `throttle-${i}`, key: 'k' }));
    const sink = kinesisSink({ streamName, endpoint: proxy.endpoint, region: 'us-east-1', credentials, retry: FAST_RETRY });
    let retryEvents = 0;
    sink.on('retry', () => retryEvents++);
    await pipeline(Readable.from(messages), sink);
    assert.equal(acked.size, 50);
    assert.equal(proxy.stats.throttledPuts, 3);
    assert.equal(retryEvents, 3);
    assert.deepEqual((await readAll(raw, streamName)).map((r) => Buffer.from(r.Data!).toString()), messages.map((m) => m.data.toString()));
  });

  it('nacks and fails with RETRIES_EXHAUSTED when an entry keeps failing', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    const proxy = await startFaultProxy(server.endpoint);
    t.after(() => proxy.stop());
    proxy.faults.failEntry = (_i, _r, data) => data.toString() === 'doomed';
    const { messages, acked, nacks } = tracked(3, (i) => ({ data: i === 1 ? 'doomed' : `ok-${i}`, key: 'k' }));
    const error = await pipeline(
      Readable.from(messages),
      kinesisSink({ streamName, endpoint: proxy.endpoint, region: 'us-east-1', credentials, retry: { retries: 2, minTimeoutMs: 5, maxTimeoutMs: 10 } }),
    ).then(() => undefined, (e: unknown) => e as ManifoldError);
    assert.equal(error?.code, ErrorCodes.RETRIES_EXHAUSTED);
    assert.match(error!.message, /1 record\(s\) could not be put .* after 3 attempts \(ProvisionedThroughputExceededException\)/);
    assert.deepEqual([...acked].sort(), [0, 2]);
    assert.equal((nacks.get(1) as ManifoldError).code, ErrorCodes.RETRIES_EXHAUSTED);
    assert.equal(proxy.failedData.length, 3, 'the first try and two retries');
  });

  it('fails at once with NOT_FOUND for a missing stream, nacking what it held', async (t) => {
    const proxy = await startFaultProxy(server.endpoint);
    t.after(() => proxy.stop());
    const { messages, acked, nacks } = tracked(5, (i) => ({ data: `m${i}` }));
    const error = await pipeline(
      Readable.from(messages),
      kinesisSink({ streamName: `missing-${Date.now()}`, endpoint: proxy.endpoint, region: 'us-east-1', credentials, retry: FAST_RETRY }),
    ).then(() => undefined, (e: unknown) => e as ManifoldError);
    assert.equal(error?.code, ErrorCodes.NOT_FOUND);
    assert.match(error!.message, /PutRecords failed: stream "missing-\d+" \(or its consumer\) does not exist/);
    assert.equal(error!.retryable, false);
    assert.equal(proxy.stats.putRequests, 1, 'not retried');
    assert.equal(acked.size, 0);
    assert.equal(nacks.size, 5);
  });

  it('holds its write callback while its buffer is full (backpressure), with several requests in flight', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 2);
    t.after(() => deleteStream(raw, streamName));
    const sink = kinesisSink({ streamName, client: server.client(), maxBatchRecords: 10, maxInFlightRequests: 2, highWaterMark: 5 });
    let maxPending = 0;
    const n = 300;
    const { messages, acked } = tracked(n, (i) => ({ data: `bp-${i}` }));
    const source = Readable.from(
      (async function* () {
        for (const m of messages) {
          maxPending = Math.max(maxPending, sink.pending);
          yield m;
        }
      })(),
    );
    await pipeline(source, sink);
    assert.equal(acked.size, n);
    // 10 per batch x (2 in flight + 1 filling) = 30 buffered at most before write() waits.
    assert.ok(maxPending <= 30, `pending stayed bounded, saw ${maxPending}`);
    assert.equal((await readAll(raw, streamName)).length, n);
  });
});

sinkConformance({
  name: 'kinesis',
  timeoutMs: 30_000,
  async setup() {
    const raw = server.client();
    // One shard keeps arrival order equal to write order for messages without keys.
    const { streamName } = await createStream(raw, 1);
    return {
      sink: (options) =>
        kinesisSink({ streamName, endpoint: server.endpoint, region: 'us-east-1', credentials, ...(options?.signal ? { signal: options.signal } : {}) }),
      readBack: async () => (await readAll(raw, streamName)).map((r) => Buffer.from(r.Data!)),
      async cleanup() {
        await deleteStream(raw, streamName);
        raw.destroy();
      },
    };
  },
});
