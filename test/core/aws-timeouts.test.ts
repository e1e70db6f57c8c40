/**
 * AWS calls that get no answer: through a loopback proxy that swallows one
 * request (never answers it, keeps the socket open) in front of kinesis-local,
 * s3rver and dynalite, every connector times the call out, retries it, and
 * delivers everything. Also with a client the user built without timeouts.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, it, type TestContext } from 'node:test';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListTablesCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DescribeStreamSummaryCommand, KinesisClient } from '@aws-sdk/client-kinesis';
import { ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { dynamoLeases } from '../../lib/kinesis/dynamo-leases.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, awsCall, awsConnection, awsRequestHandler, awsTimeouts } from '../../lib/core/aws.js';
import { awsConnectionOptions } from '../../lib/core/aws-options.js';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import { kinesisSink } from '../../lib/kinesis/sink.js';
import { s3Sink } from '../../lib/s3/sink.js';
import { kinesisSource, type KinesisSource } from '../../lib/kinesis/source.js';
import { awsOperation, startBlackholeProxy, type BlackholeProxy } from '../fixtures/blackhole-proxy.js';
import { DYNAMO_CONFIG, startDynamo, type DynamoServer } from '../fixtures/dynamodb.js';
import { createStream, deleteStream, putRaw, readAll, startKinesisServer, type KinesisServer } from '../fixtures/kinesis.js';
import { s3rverClient, startS3, type S3Fixture } from '../fixtures/s3.js';

const credentials = { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' };
const FAST_RETRY = { retries: 8, minTimeoutMs: 10, maxTimeoutMs: 100 };
const TIMEOUT_MS = 1_000;
/**
 * The sink tests' requestTimeoutMs, and how many records each of their PutRecords carries. kinesis-local's
 * PutRecords costs about (records in the request) x (records already in the shard): on a 2-core machine, 500-record
 * requests into a stream of 2,500+ records take over 1 s, longer still with the cores busy, so every attempt of
 * such a request timed out. 100-record requests into a stream of at most 1,200 records take about 100 ms
 * (under 650 ms with both cores saturated), well inside this timeout: only the swallowed request times out.
 */
const SINK_TIMEOUT_MS = 3_000;
const SINK_BATCH = 100;

async function proxyTo(t: TestContext, target: string): Promise<BlackholeProxy> {
  const proxy = await startBlackholeProxy(target);
  t.after(() => proxy.stop());
  return proxy;
}

interface Tracked {
  messages: Message[];
  acked: Set<number>;
  nacks: Map<number, Error>;
}

function tracked(count: number, data: (i: number) => string): Tracked {
  const acked = new Set<number>();
  const nacks = new Map<number, Error>();
  const messages = Array.from({ length: count }, (_, i) => createMessage({ data: data(i), onAck: () => acked.add(i), onNack: (e) => nacks.set(i, e) }));
  return { messages, acked, nacks };
}

/** The retry events whose error is a request timeout, as ManifoldErrors. */
function timeouts(events: Array<{ error: Error }>): ManifoldError[] {
  return events.map((e) => e.error).filter((e): e is ManifoldError => e instanceof ManifoldError && /got no response within \d+ ms/.test(e.message));
}

/** Reads `source`, acking everything, until `count` distinct payloads arrived. */
async function readDistinct(source: KinesisSource, count: number, timeoutMs = 60_000): Promise<Set<string>> {
  const seen = new Set<string>();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out with ${seen.size} of ${count} records`)), timeoutMs);
    source.on('data', (m: Message) => {
      seen.add(m.data.toString());
      m.ack();
      if (seen.size >= count) {
        clearTimeout(timer);
        resolve(seen);
      }
    });
    source.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

// kinesis-local is started once, by the first suite that needs it, and shared.
let kinesisServer: Promise<KinesisServer> | undefined;
const kinesis = (): Promise<KinesisServer> => (kinesisServer ??= startKinesisServer());
after(async () => {
  await (await kinesisServer)?.stop();
});

describe('AWS request timeouts: Kinesis', () => {
  let server: KinesisServer;
  before(async () => {
    server = await kinesis();
  });

  // Without the timeout the sink would wait for the swallowed request for ever: the test's own timeout turns that into a failure.
  it('kinesisSink: the 3rd PutRecords is never answered; it times out, is retried, and every record arrives', { timeout: 120_000 }, async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 2);
    t.after(() => deleteStream(raw, streamName));
    const proxy = await proxyTo(t, server.endpoint);
    proxy.swallow(awsOperation('PutRecords'), 3);
    // 10 requests: 2 answered, the swallowed one, and 7 after it, which must not be stuck behind it.
    const n = 10 * SINK_BATCH;
    const { messages, acked, nacks } = tracked(n, (i) => `put-${i}`);
    const sink = kinesisSink({
      streamName,
      endpoint: proxy.endpoint,
      region: 'us-east-1',
      credentials,
      maxBatchRecords: SINK_BATCH,
      requestTimeoutMs: SINK_TIMEOUT_MS,
      retry: FAST_RETRY,
    });
    const retries: Array<{ error: Error }> = [];
    sink.on('retry', (e: { error: Error }) => retries.push(e));
    await pipeline(Readable.from(messages), sink);
    assert.equal(proxy.swallowed.length, 1, 'one PutRecords was swallowed');
    assert.equal(acked.size, n, 'every record acked');
    assert.equal(nacks.size, 0);
    const timedOut = timeouts(retries);
    assert.equal(timedOut.length, 1, `the unanswered request was retried once, and its retry was answered: ${timedOut.map((e) => e.message).join(' | ')}`);
    assert.equal(timedOut[0]!.code, ErrorCodes.CONNECTION);
    assert.equal(timedOut[0]!.retryable, true);
    assert.match(timedOut[0]!.message, new RegExp(`kinesisSink: PutRecords to "test-[^"]+" got no response within ${SINK_TIMEOUT_MS} ms and was aborted; raise options\\.requestTimeoutMs`));
    const stored = new Set((await readAll(raw, streamName)).map((r) => Buffer.from(r.Data!).toString()));
    for (let i = 0; i < n; i++) assert.ok(stored.has(`put-${i}`), `record ${i} is in the stream`);
  });

  it('kinesisSink with the user\'s own client (a plain NodeHttpHandler, no timeouts): the abort signal still times the call out', { timeout: 120_000 }, async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    const proxy = await proxyTo(t, server.endpoint);
    proxy.swallow(awsOperation('PutRecords'), 1);
    const client = new KinesisClient({ endpoint: proxy.endpoint, region: 'us-east-1', credentials, requestHandler: new NodeHttpHandler() });
    t.after(() => client.destroy());
    const n = 12 * SINK_BATCH;
    const { messages, acked, nacks } = tracked(n, (i) => `own-${i}`);
    const sink = kinesisSink({ streamName, client, maxBatchRecords: SINK_BATCH, requestTimeoutMs: SINK_TIMEOUT_MS, retry: FAST_RETRY });
    const retries: Array<{ error: Error }> = [];
    sink.on('retry', (e: { error: Error }) => retries.push(e));
    await pipeline(Readable.from(messages), sink);
    assert.equal(proxy.swallowed.length, 1);
    assert.equal(acked.size, n);
    assert.equal(nacks.size, 0);
    const timedOut = timeouts(retries);
    assert.equal(timedOut.length, 1, timedOut.map((e) => e.message).join(' | '));
    assert.match(timedOut[0]!.message, new RegExp(`got no response within ${SINK_TIMEOUT_MS} ms`));
    const stored = new Set((await readAll(raw, streamName)).map((r) => Buffer.from(r.Data!).toString()));
    assert.equal(stored.size, n, 'every record is in the stream');
  });

  it('kinesisSource: the 3rd GetRecords is never answered; the shard reads on and all 2,000 records are delivered', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    const n = 2_000;
    await putRaw(raw, streamName, Array.from({ length: n }, (_, i) => ({ data: Buffer.from(`get-${i}`), key: `k${i % 7}` })));
    const proxy = await proxyTo(t, server.endpoint);
    proxy.swallow(awsOperation('GetRecords'), 3);
    const source = kinesisSource({
      streamName,
      endpoint: proxy.endpoint,
      region: 'us-east-1',
      credentials,
      startingPosition: 'TRIM_HORIZON',
      requestTimeoutMs: TIMEOUT_MS,
      retry: FAST_RETRY,
      maxRecordsPerCall: 200,
      pollIntervalMs: 200,
    });
    t.after(() => source.destroy());
    const retries: Array<{ operation: string; error: Error }> = [];
    source.on('retry', (e: { operation: string; error: Error }) => retries.push(e));
    const seen = await readDistinct(source, n, 30_000);
    await source.close();
    assert.equal(proxy.swallowed.length, 1, 'one GetRecords was swallowed');
    assert.equal(seen.size, n);
    for (let i = 0; i < n; i++) assert.ok(seen.has(`get-${i}`), `record ${i} delivered`);
    const timedOut = retries.filter((r) => r.operation === 'GetRecords' && timeouts([r]).length === 1);
    assert.equal(timedOut.length, 1, 'the unanswered GetRecords was retried');
    assert.match(timedOut[0]!.error.message, /kinesisSource: GetRecords of shardId-\d+ got no response within 1000 ms/);
  });

  it('kinesisSource with the user\'s own client: an unanswered DescribeStreamSummary is timed out and retried', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, Array.from({ length: 50 }, (_, i) => ({ data: Buffer.from(`d-${i}`), key: 'k' })));
    const proxy = await proxyTo(t, server.endpoint);
    proxy.swallow(awsOperation('DescribeStreamSummary'), 1);
    const client = new KinesisClient({ endpoint: proxy.endpoint, region: 'us-east-1', credentials, requestHandler: new NodeHttpHandler() });
    t.after(() => client.destroy());
    const source = kinesisSource({ streamName, client, startingPosition: 'TRIM_HORIZON', requestTimeoutMs: TIMEOUT_MS, retry: FAST_RETRY });
    t.after(() => source.destroy());
    const retries: Array<{ operation: string; error: Error }> = [];
    source.on('retry', (e: { operation: string; error: Error }) => retries.push(e));
    const seen = await readDistinct(source, 50, 30_000);
    await source.close();
    assert.equal(seen.size, 50);
    assert.deepEqual(
      retries.filter((r) => timeouts([r]).length === 1).map((r) => r.operation),
      ['DescribeStreamSummary'],
    );
  });

  it('awsCall: a user client with no timeouts gives up after timeoutMs with a retryable CONNECTION error naming the call and the option', async (t) => {
    const proxy = await proxyTo(t, server.endpoint);
    proxy.swallow(awsOperation('DescribeStreamSummary'), 1);
    // SDK retries left on: the deadline covers the whole send, whatever the client does inside.
    const client = new KinesisClient({ endpoint: proxy.endpoint, region: 'us-east-1', credentials, requestHandler: new NodeHttpHandler() });
    t.after(() => client.destroy());
    const started = Date.now();
    const error = await awsCall({ what: 'test: DescribeStreamSummary of "s"', timeoutMs: 300 }, (abortSignal) =>
      client.send(new DescribeStreamSummaryCommand({ StreamName: 's' }), { abortSignal }),
    ).then(
      () => assert.fail('should time out'),
      (e: unknown) => e as ManifoldError,
    );
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 290 && elapsed < 3_000, `gave up after ${elapsed} ms`);
    assert.ok(error instanceof ManifoldError);
    assert.equal(error.code, ErrorCodes.CONNECTION);
    assert.equal(error.retryable, true);
    assert.equal(error.message, 'test: DescribeStreamSummary of "s" got no response within 300 ms and was aborted; raise options.requestTimeoutMs if the service is that slow');
  });

  it('awsCall: an abort through the caller\'s signal stays an abort, not a timeout', async (t) => {
    const proxy = await proxyTo(t, server.endpoint);
    proxy.swallow(awsOperation('DescribeStreamSummary'), 1);
    const client = new KinesisClient({ endpoint: proxy.endpoint, region: 'us-east-1', credentials, requestHandler: new NodeHttpHandler() });
    t.after(() => client.destroy());
    const stop = new AbortController();
    setTimeout(() => stop.abort(new Error('closing')), 100);
    const error = await awsCall({ what: 'test', timeoutMs: 5_000, signal: stop.signal }, (abortSignal) =>
      client.send(new DescribeStreamSummaryCommand({ StreamName: 's' }), { abortSignal }),
    ).then(
      () => assert.fail('should abort'),
      (e: unknown) => e as Error,
    );
    assert.equal(error.name, 'AbortError');
  });
});

describe('AWS request timeouts: S3', () => {
  let s3: S3Fixture;
  before(async () => {
    s3 = await startS3();
  });
  after(async () => {
    await s3.cleanup();
  });

  async function sinkThroughProxy(t: TestContext, own: boolean): Promise<void> {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const proxy = await proxyTo(t, s3.endpoint);
    proxy.swallow((r) => r.method === 'PUT' && r.url.includes(`/${bucket}/`), 2);
    const client = own ? undefined : s3rverClient(proxy.endpoint);
    if (client) t.after(() => client.destroy());
    const connection = client
      ? { client }
      : { endpoint: proxy.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } };
    const n = 600;
    const { messages, acked, nacks } = tracked(n, (i) => `line-${i}`);
    const sink = s3Sink({
      bucket,
      bufferPath,
      ...connection,
      ackOn: 'upload',
      commitSizeBytes: 1_000,
      uploadIntervalMs: 200,
      syncIntervalMs: 10,
      requestTimeoutMs: TIMEOUT_MS,
      retry: FAST_RETRY,
    });
    const retries: Array<{ error: Error; key: string }> = [];
    sink.on('retry', (e: { error: Error; key: string }) => retries.push(e));
    await pipeline(Readable.from(messages), sink);
    assert.equal(proxy.swallowed.length, 1, 'one PUT was swallowed');
    assert.equal(acked.size, n, 'every record acked (on upload)');
    assert.equal(nacks.size, 0);
    assert.ok(retries.length >= 1, 'the upload was retried');
    assert.match(retries[0]!.error.message, /PutObject to s3:\/\/[^ ]+ (got no response within \d+ ms|timed out: .*inactivity)/);
    const lines = (await s3.objects(bucket)).flatMap((o) => o.body.toString().split('\n').filter(Boolean));
    assert.equal(new Set(lines).size, n, 'every record is in the bucket');
  }

  it('s3Sink (client built from endpoint settings): an unanswered PUT times out, is retried, every record is in the bucket', async (t) => {
    await sinkThroughProxy(t, true);
  });

  it('s3Sink with the user\'s own client (no timeouts): the abort signal times the PUT out', async (t) => {
    await sinkThroughProxy(t, false);
  });

  it('s3Sink multipart: an unanswered 5 MiB part is caught by the socket idle timeout long before its size-scaled deadline; the object is whole', async (t) => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const proxy = await proxyTo(t, s3.endpoint);
    proxy.swallow((r) => r.method === 'PUT' && /[?&]partNumber=2(&|$)/.test(r.url), 1);
    const line = 'x'.repeat(1023);
    const n = 6 * 1024 + 100;
    const started = Date.now();
    // The sink's own client: its handler's socket idle timeout is what ends the hang.
    const sink = s3Sink({
      bucket,
      bufferPath,
      endpoint: proxy.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      commitSizeBytes: 64 * 1024 * 1024,
      partSizeBytes: 5 * 1024 * 1024,
      requestTimeoutMs: TIMEOUT_MS,
      retry: FAST_RETRY,
    });
    const retries: Array<{ error: Error }> = [];
    sink.on('retry', (e: { error: Error }) => retries.push(e));
    await pipeline(
      Readable.from(Array.from({ length: n }, (_, i) => `${String(i).padStart(8, '0')}${line.slice(8)}`)),
      sink,
    );
    const elapsed = Date.now() - started;
    assert.equal(proxy.swallowed.length, 1, 'part 2 was swallowed once');
    assert.ok(retries.some((r) => /UploadPart to s3:\/\/.* timed out: .*1000 ms of inactivity/.test(r.error.message)), retries.map((r) => r.error.message).join(' | '));
    // The part's overall deadline is 1 s + 80 s (5 MiB at 64 KiB/s); the idle timeout ended the hang long before.
    assert.ok(elapsed < 30_000, `done in ${elapsed} ms`);
    const objects = await s3.objects(bucket);
    assert.equal(objects.length, 1);
    const lines = objects[0]!.body.toString().split('\n').filter(Boolean);
    assert.equal(lines.length, n, 'the object holds every record once');
    assert.equal(objects[0]!.body.length, n * 1024);
  });
});

describe('AWS request timeouts: DynamoDB leases', () => {
  let server: KinesisServer;
  let dynamo: DynamoServer;
  before(async () => {
    [server, dynamo] = await Promise.all([kinesis(), startDynamo()]);
  });
  after(async () => {
    await dynamo.stop();
  });

  it('dynamoLeases: an unanswered UpdateItem times out, the next round retries, and the source reads everything', async (t) => {
    const raw = server.client();
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    const proxy = await proxyTo(t, dynamo.endpoint);
    const coordinator = dynamoLeases({
      tableName: `leases-${randomUUID()}`,
      endpoint: proxy.endpoint,
      ...DYNAMO_CONFIG,
      leaseDurationMs: 6_000,
      renewIntervalMs: 500,
      requestTimeoutMs: TIMEOUT_MS,
    });
    t.after(() => coordinator.stop());
    const source = kinesisSource({
      streamName,
      client: raw,
      coordinator,
      startingPosition: 'TRIM_HORIZON',
      retry: FAST_RETRY,
      pollIntervalMs: 200,
      checkpointIntervalMs: 200,
    });
    t.after(() => source.destroy());
    const warnings: Error[] = [];
    source.on('warning', (e: Error) => warnings.push(e));
    const half = 1_000;
    await putRaw(raw, streamName, Array.from({ length: half }, (_, i) => ({ data: Buffer.from(`lease-${i}`), key: 'k' })));
    const reading = readDistinct(source, 2 * half, 60_000);
    // The 3rd UpdateItem (a take, renew or checkpoint) is never answered: before timeouts, the lease loop hung on it for ever.
    proxy.swallow(awsOperation('UpdateItem'), 3);
    await proxy.whenSwallowed(1);
    // Records put after the hang can only be read if the lease loop recovered from it.
    await putRaw(raw, streamName, Array.from({ length: half }, (_, i) => ({ data: Buffer.from(`lease-${half + i}`), key: 'k' })));
    const seen = await reading;
    await source.close();
    assert.equal(seen.size, 2 * half);
    const timedOut = warnings.filter((e) => e instanceof ManifoldError && /dynamoLeases: UpdateItem \([a-z]+\) on lease table "leases-[^"]+" got no response within 1000 ms/.test(e.message));
    assert.ok(timedOut.length >= 1, `a warning names the timed-out call: ${warnings.map((w) => w.message).join(' | ')}`);
    assert.equal((timedOut[0] as ManifoldError).code, ErrorCodes.CONNECTION);
  });
});

describe('clients we build time out by themselves', () => {
  // A loopback TCP server that accepts connections and never says anything (no HTTP answer, no TLS handshake).
  async function silentServer(t: TestContext): Promise<number> {
    const sockets = new Set<Socket>();
    const server = createTcpServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.resume();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    });
    return (server.address() as AddressInfo).port;
  }

  const cases: Array<[string, string, (endpoint: string) => { send(): Promise<unknown>; destroy(): void }]> = [
    [
      'DynamoDB, http:// (HTTP/1.1 requestTimeout)',
      'http',
      (endpoint) => {
        const c = awsConnection('test', { endpoint, ...DYNAMO_CONFIG, requestTimeoutMs: 300 }, 'a client');
        assert.ok('settings' in c);
        const client = new DynamoDBClient(c.settings);
        return { send: () => client.send(new ListTablesCommand({})), destroy: () => client.destroy() };
      },
    ],
    [
      'DynamoDB, https:// (HTTP/1.1 requestTimeout, keep-alive agent)',
      'https',
      (endpoint) => {
        const c = awsConnection('test', { endpoint, ...DYNAMO_CONFIG, requestTimeoutMs: 300 }, 'a client');
        assert.ok('settings' in c);
        const client = new DynamoDBClient(c.settings);
        return { send: () => client.send(new ListTablesCommand({})), destroy: () => client.destroy() };
      },
    ],
    [
      'Kinesis, https:// (HTTP/2 stream timeout)',
      'https',
      (endpoint) => {
        const c = awsConnection('test', { endpoint, region: 'us-east-1', credentials, requestTimeoutMs: 300 }, 'a client', {}, { http2: true });
        assert.ok('settings' in c);
        const client = new KinesisClient(c.settings);
        return { send: () => client.send(new DescribeStreamSummaryCommand({ StreamName: 's' })), destroy: () => client.destroy() };
      },
    ],
    [
      'S3, http:// (socket idle timeout)',
      'http',
      (endpoint) => {
        const handler = awsRequestHandler(endpoint, awsTimeouts('test', { requestTimeoutMs: 300 }), { idle: true });
        const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials, requestHandler: handler, maxAttempts: 1 });
        return { send: () => client.send(new ListBucketsCommand({})), destroy: () => client.destroy() };
      },
    ],
  ];
  for (const [name, scheme, make] of cases) {
    it(`${name}: a call with no abort signal fails with TimeoutError instead of hanging`, async (t) => {
      const port = await silentServer(t);
      const client = make(`${scheme}://127.0.0.1:${port}`);
      t.after(() => client.destroy());
      const started = Date.now();
      const error = await Promise.race([
        client.send().then(
          () => assert.fail('should time out'),
          (e: unknown) => e as Error,
        ),
        sleep(10_000).then(() => assert.fail('still hanging after 10 s')),
      ]);
      assert.equal(error.name, 'TimeoutError', String(error));
      assert.ok(Date.now() - started < 5_000);
    });
  }

  it('maxAttempts is 1 on every client we build (manifold\'s retry decides)', async () => {
    const c = awsConnection('test', { endpoint: 'https://example.invalid', region: 'us-east-1', credentials }, 'a client');
    assert.ok('settings' in c);
    assert.equal(c.settings.maxAttempts, 1);
    const client = new DynamoDBClient(c.settings);
    assert.equal(await client.config.maxAttempts(), 1);
    client.destroy();
  });
});

describe('timeout options', () => {
  it('are validated, named in the error, and a passed client excludes connectTimeoutMs', () => {
    const cases: Array<[() => unknown, RegExp]> = [
      [() => kinesisSink({ streamName: 's', region: 'us-east-1', requestTimeoutMs: 0 }), /kinesisSink: options\.requestTimeoutMs must be a number from 1 to 2147483647 \(milliseconds\), got 0/],
      [() => kinesisSource({ streamName: 's', region: 'us-east-1', connectTimeoutMs: -5 }), /kinesisSource: options\.connectTimeoutMs must be a number from 1 to 2147483647 \(milliseconds\), got -5/],
      [() => kinesisSink({ streamName: 's', client: new KinesisClient({ region: 'us-east-1' }), connectTimeoutMs: 100 }), /options\.client and options\.connectTimeoutMs cannot be combined/],
      [() => s3Sink({ bucket: 'b', requestTimeoutMs: 'soon' as never }), /s3Sink: options\.requestTimeoutMs must be a number from 1 to 2147483647 \(milliseconds\), got "soon"/],
      [() => s3Sink({ bucket: 'b', client: new S3Client({ region: 'us-east-1' }), connectTimeoutMs: 100 }), /options\.client and options\.connectTimeoutMs cannot be combined/],
      [() => dynamoLeases({ tableName: 'abc', requestTimeoutMs: Infinity }), /dynamoLeases: options\.requestTimeoutMs must be a number from 1 to 2147483647/],
    ];
    for (const [make, pattern] of cases) {
      assert.throws(make, (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && pattern.test(e.message), String(pattern));
    }
  });
});

describe('AWS connection options: declarations', () => {
  it("connectTimeoutMs' documented default is DEFAULT_CONNECT_TIMEOUT_MS (written out by hand, to keep ICU out of the command's start)", () => {
    const declared = awsConnectionOptions({ client: 'KinesisClient', credentials: "KinesisClientConfig['credentials']" });
    assert.equal(declared.connectTimeoutMs.defaultText, `${DEFAULT_CONNECT_TIMEOUT_MS.toLocaleString('en-US')} ms`);
  });
});
