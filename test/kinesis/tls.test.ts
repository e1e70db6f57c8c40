/**
 * kinesisSource, kinesisSink and dynamoLeases over TLS with a private CA: kinesis-local and dynalite
 * behind loopback TLS terminators (tlsProxy from test/fixtures/tls.ts) signed by this run's CA and
 * requiring a client certificate. The proxies negotiate no ALPN protocol, so the clients speak HTTP/1.1
 * (kinesis-local's HTTP/2 fails PutRecords with a protocol error even on its own TLS port). The
 * conformance suites through it; a server of another CA, an expired certificate, no client certificate:
 * MANIFOLD_ERR_TLS within a second, never retried; a client certificate replaced on disk used by the next
 * connection; the command line from a URI (with a lease table over TLS) and a pipeline file.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createSecureServer, type Http2ServerRequest } from 'node:http2';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import type { TlsOptions } from '../../lib/core/tls.js';
import { dynamoLeases } from '../../lib/kinesis/dynamo-leases.js';
import { memoryCheckpointer } from '../../lib/kinesis/memory-checkpointer.js';
import { kinesisSink } from '../../lib/kinesis/sink.js';
import { kinesisSource, type KinesisSource } from '../../lib/kinesis/source.js';
import { sinkConformance, sourceConformance } from '../conformance/suite.js';
import { DYNAMO_CONFIG, startDynamo, type DynamoServer } from '../fixtures/dynamodb.js';
import { createStream, deleteStream, putRaw, rawClient, readAll, startKinesisServer, type KinesisServer } from '../fixtures/kinesis.js';
import { makePki, tlsProxy, type Pki, type TlsProxy } from '../fixtures/tls.js';
import { take } from '../fixtures/take.js';

const credentials = { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' };

let pki: Pki;
let server: KinesisServer;
let proxy: TlsProxy;
let endpoint: string;
before(async () => {
  pki = makePki();
  server = await startKinesisServer();
  proxy = await tlsProxy({ upstreamPort: Number(new URL(server.endpoint).port), cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requireClientCert: true });
  endpoint = `https://127.0.0.1:${proxy.port}`;
});
after(async () => {
  await proxy.close();
  await server.stop();
  pki.remove();
});

function clientTls(): TlsOptions {
  return { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey };
}

function connection(tls: TlsOptions = clientTls(), at = endpoint) {
  return { endpoint: at, region: 'us-east-1', credentials, tls };
}


sourceConformance({
  name: 'kinesis over TLS with a private CA and a client certificate',
  redelivers: true,
  timeoutMs: 30_000,
  async setup() {
    const raw = rawClient(server.endpoint);
    const { streamName } = await createStream(raw, 2);
    const checkpointer = memoryCheckpointer();
    return {
      source: (options) =>
        kinesisSource({ streamName, ...connection(), startingPosition: 'TRIM_HORIZON', checkpointer, closeTimeoutMs: 1000, ...(options?.signal ? { signal: options.signal } : {}) }),
      produce: (payloads) => putRaw(raw, streamName, payloads.map((data) => ({ data, key: 'conformance' }))),
      async cleanup() {
        await deleteStream(raw, streamName);
        raw.destroy();
      },
    };
  },
});

sinkConformance({
  name: 'kinesis over TLS with a private CA and a client certificate',
  timeoutMs: 30_000,
  async setup() {
    const raw = rawClient(server.endpoint);
    const { streamName } = await createStream(raw, 1);
    return {
      sink: (options) => kinesisSink({ streamName, ...connection(), ...(options?.signal ? { signal: options.signal } : {}) }),
      readBack: async () => {
        const got = (await readAll(raw, streamName)).map((r) => Buffer.from(r.Data!));
        if (got.length > 0) assert.ok(proxy.clientNames.includes('manifold-client'));
        return got;
      },
      async cleanup() {
        await deleteStream(raw, streamName);
        raw.destroy();
      },
    };
  },
});

describe('kinesis tls options', () => {
  it('tls with an http:// endpoint or beside a client is refused, naming both options', () => {
    const raw = rawClient(server.endpoint);
    try {
      for (const make of [(o: object) => kinesisSink({ streamName: 's', ...o }), (o: object) => kinesisSource({ streamName: 's', ...o })]) {
        assert.throws(() => make({ endpoint: server.endpoint, tls: { ca: pki.ca } }), (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && /options\.tls and options\.endpoint/.test(e.message));
        assert.throws(() => make({ client: raw, tls: { ca: pki.ca } }), (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && /options\.client and options\.tls/.test(e.message));
      }
      assert.throws(() => dynamoLeases({ tableName: 'leases', endpoint: 'http://127.0.0.1:1', tls: { ca: pki.ca } }), /options\.tls and options\.endpoint/);
    } finally {
      raw.destroy();
    }
  });
});

describe('kinesis over TLS: refusals are MANIFOLD_ERR_TLS within a second, never retried', { timeout: 60_000 }, () => {
  const cases: Array<[string, () => { cert: string; key: string }, () => TlsOptions, RegExp]> = [
    ['a server signed by another CA', () => ({ cert: pki.otherServerCert, key: pki.otherServerKey }), clientTls, /unknown CA/],
    ['an expired server certificate', () => ({ cert: pki.expiredServerCert, key: pki.expiredServerKey }), clientTls, /expired/],
    ['no client certificate where the server requires one', () => ({ cert: pki.serverCert, key: pki.serverKey }), () => ({ ca: pki.ca }), /client certificate|refused/],
  ];
  for (const [name, cert, client, reason] of cases) {
    for (const direction of ['source', 'sink'] as const) {
      it(`${direction}: ${name}`, async (t) => {
        const bad = await tlsProxy({ upstreamPort: Number(new URL(server.endpoint).port), ...cert(), ca: pki.ca, requireClientCert: true });
        t.after(() => bad.close());
        const retries: unknown[] = [];
        const retry = { retries: 5, minTimeoutMs: 200, maxTimeoutMs: 400 };
        const started = Date.now();
        const stream =
          direction === 'source'
            ? kinesisSource({ streamName: 'any', ...connection(client(), `https://127.0.0.1:${bad.port}`), retry, checkpointer: memoryCheckpointer() })
            : kinesisSink({ streamName: 'any', ...connection(client(), `https://127.0.0.1:${bad.port}`), retry, lingerMs: 0 });
        stream.on('retry', (e) => retries.push(e));
        if ('write' in stream) stream.write('x');
        else stream.resume();
        const error = await new Promise<Error>((resolve) => stream.on('error', resolve));
        const elapsed = Date.now() - started;
        assert.ok(error instanceof ManifoldError, String(error));
        assert.equal(error.code, ErrorCodes.TLS, error.message);
        assert.match(error.message, reason);
        assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${bad.port}`), 'names the host');
        assert.equal(error.retryable, false);
        assert.deepEqual(retries, [], 'not retried');
        assert.ok(elapsed < 1000, `failed after ${elapsed} ms`);
        stream.destroy();
      });
    }
  }
});

describe('kinesis over TLS: enhanced fan-out', { timeout: 60_000 }, () => {
  it('a source with consumerName reads every record through the TLS proxy (SubscribeToShard over HTTP/1.1: the proxy offers no h2)', async (t) => {
    const raw = rawClient(server.endpoint);
    t.after(() => raw.destroy());
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, Array.from({ length: 10 }, (_, i) => ({ data: Buffer.from(`f${i}`), key: 'k' })));
    const subscribed: unknown[] = [];
    const source = kinesisSource({ streamName, ...connection(), startingPosition: 'TRIM_HORIZON', checkpointer: memoryCheckpointer(), consumerName: `tls-${Date.now()}`, deregisterOnClose: true });
    t.after(() => source.destroy());
    source.on('subscribe', (e) => subscribed.push(e));
    const got = await take(source, 10, { ack: true });
    assert.deepEqual(got.map((m) => m.data.toString()), Array.from({ length: 10 }, (_, i) => `f${i}`));
    assert.ok(subscribed.length > 0, 'read by SubscribeToShard');
    source.resume();
    await source.close();
  });
});

/**
 * A minimal Kinesis over HTTP/2 with TLS (kinesis-local's HTTP/2 is broken): PutRecords succeeds for every
 * record; records each request's HTTP version and client certificate CN.
 */
async function startH2Kinesis(t: TestContext, server: { cert: string; key: string }): Promise<{ endpoint: string; port: number; requests: Array<{ version: string; cn: string; target: string }> }> {
  const requests: Array<{ version: string; cn: string; target: string }> = [];
  const h2 = createSecureServer(
    { cert: readFileSync(server.cert), key: readFileSync(server.key), ca: readFileSync(pki.ca), requestCert: true, rejectUnauthorized: true, allowHTTP1: false },
    (req: Http2ServerRequest, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const cn = (req.socket as unknown as TLSSocket).getPeerCertificate?.()?.subject?.CN;
        const target = String(req.headers['x-amz-target'] ?? '');
        requests.push({ version: req.httpVersion, cn: Array.isArray(cn) ? cn.join(',') : (cn ?? ''), target });
        const body = JSON.parse(Buffer.concat(chunks).toString() || '{}') as { Records?: unknown[] };
        res.setHeader('content-type', 'application/x-amz-json-1.1');
        res.end(JSON.stringify({ FailedRecordCount: 0, Records: (body.Records ?? []).map((_, i) => ({ SequenceNumber: String(i + 1), ShardId: 'shardId-000000000000' })) }));
      });
    },
  );
  h2.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    await new Promise((resolve) => h2.close(resolve));
  });
  const port = (h2.address() as AddressInfo).port;
  return { endpoint: `https://127.0.0.1:${port}`, port, requests };
}

describe('kinesis over TLS: HTTP/2 where the server offers h2', { timeout: 60_000 }, () => {
  it('the sink speaks HTTP/2 with the client certificate, and a file replaced on disk is used by the next session', async (t) => {
    const h2 = await startH2Kinesis(t, { cert: pki.serverCert, key: pki.serverKey });
    const dir = mkdtempSync(join(tmpdir(), 'manifold-kinesis-h2-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const first = pki.issue('h2-first', { cn: 'h2-first' });
    const cert = join(dir, 'client.pem');
    const key = join(dir, 'client.key');
    copyFileSync(first.cert, cert);
    copyFileSync(first.key, key);
    const sink = kinesisSink({ streamName: 's', ...connection({ ca: pki.ca, cert, key }, h2.endpoint), lingerMs: 0 });
    t.after(() => sink.destroy());
    const put = (data: string): Promise<void> =>
      new Promise((resolve, reject) => {
        sink.write(createMessage({ data, onAck: resolve, onNack: reject }));
      });
    await put('one');
    const next = pki.issue('h2-second', { cn: 'h2-second' });
    writeFileSync(key, readFileSync(next.key));
    writeFileSync(cert, readFileSync(next.cert));
    // One HTTP/2 session per request (as the SDK's Kinesis handler): the next request is a new connection.
    await put('two');
    await new Promise<void>((resolve, reject) => sink.end((error?: Error | null) => (error ? reject(error) : resolve())));
    assert.deepEqual(
      h2.requests.map((r) => [r.version, r.cn, r.target]),
      [
        ['2.0', 'h2-first', 'Kinesis_20131202.PutRecords'],
        ['2.0', 'h2-second', 'Kinesis_20131202.PutRecords'],
      ],
    );
  });

  for (const [name, cert, client, reason] of [
    ['a server of another CA', () => ({ cert: pki.otherServerCert, key: pki.otherServerKey }), clientTls, /unknown CA/],
    ['no client certificate', () => ({ cert: pki.serverCert, key: pki.serverKey }), () => ({ ca: pki.ca }), /client certificate|refused|TLS/],
  ] as const) {
    it(`over HTTP/2, ${name}: MANIFOLD_ERR_TLS within a second, never retried`, async (t) => {
      // The sink's own HTTP/2 handler, as for AWS's own endpoints: the probe then finds h2 (another CA: the probe fails, HTTP/1.1 reports it).
      const h2 = await startH2Kinesis(t, cert());
      const retries: unknown[] = [];
      const sink = kinesisSink({ streamName: 's', ...connection(client(), h2.endpoint), lingerMs: 0, retry: { retries: 5, minTimeoutMs: 200, maxTimeoutMs: 400 } });
      t.after(() => sink.destroy());
      sink.on('retry', (e) => retries.push(e));
      const started = Date.now();
      sink.write('x');
      const error = await new Promise<ManifoldError>((resolve) => sink.on('error', resolve));
      assert.equal(error.code, ErrorCodes.TLS, error.message);
      assert.match(error.message, reason);
      assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${h2.port}`));
      assert.deepEqual(retries, []);
      assert.ok(Date.now() - started < 1000);
    });
  }
});

/** A TCP relay to `port` whose connections can be cut (a server dropping its connections). */
async function cuttableRelay(t: TestContext, port: number): Promise<{ port: number; cut(): void }> {
  const sockets = new Set<Socket>();
  const relay = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    sockets.add(client).add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => relay.close(resolve));
  });
  return {
    port: (relay.address() as AddressInfo).port,
    cut: () => {
      for (const s of sockets) s.destroy();
    },
  };
}

describe('kinesis over TLS: a client certificate replaced on disk is used by the next connection', { timeout: 60_000 }, () => {
  it('sink: the connections are cut; the next request presents the new certificate', async (t) => {
    const relay = await cuttableRelay(t, Number(new URL(server.endpoint).port));
    const front = await tlsProxy({ upstreamPort: relay.port, cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requireClientCert: true });
    t.after(() => front.close());
    const raw = rawClient(server.endpoint);
    t.after(() => raw.destroy());
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    const dir = mkdtempSync(join(tmpdir(), 'manifold-kinesis-rotate-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const first = pki.issue('kinesis-first', { cn: 'first' });
    const cert = join(dir, 'client.pem');
    const key = join(dir, 'client.key');
    copyFileSync(first.cert, cert);
    copyFileSync(first.key, key);
    const sink = kinesisSink({ streamName, ...connection({ ca: pki.ca, cert, key }, `https://127.0.0.1:${front.port}`), lingerMs: 0, retry: { retries: 5, minTimeoutMs: 10, maxTimeoutMs: 50 } });
    t.after(() => sink.destroy());
    const put = (data: string): Promise<void> =>
      new Promise((resolve, reject) => {
        sink.write(createMessage({ data, onAck: resolve, onNack: reject }));
      });
    await put('one');
    assert.ok(front.clientNames.length > 0 && front.clientNames.every((cn): boolean => cn === 'first'), front.clientNames.join(','));
    const before = front.clientNames.length;
    const next = pki.issue('kinesis-second', { cn: 'second' });
    writeFileSync(key, readFileSync(next.key));
    writeFileSync(cert, readFileSync(next.cert));
    relay.cut();
    await sleep(50);
    await put('two');
    assert.ok(front.clientNames.length > before, 'a new connection');
    assert.ok(front.clientNames.slice(before).every((cn): boolean => cn === 'second'), front.clientNames.join(','));
    await new Promise<void>((resolve, reject) => sink.end((error?: Error | null) => (error ? reject(error) : resolve())));
    assert.deepEqual((await readAll(raw, streamName)).map((r) => Buffer.from(r.Data!).toString()), ['one', 'two']);
  });
});

describe('dynamoLeases over TLS', { timeout: 90_000 }, () => {
  let dynamo: DynamoServer;
  let dynamoProxy: TlsProxy;
  before(async () => {
    dynamo = await startDynamo();
    dynamoProxy = await tlsProxy({ upstreamPort: Number(new URL(dynamo.endpoint).port), cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requireClientCert: true });
  });
  after(async () => {
    await dynamoProxy.close();
    await dynamo.stop();
  });

  it('a source sharing the stream through a lease table over TLS reads every record', async (t) => {
    const raw = rawClient(server.endpoint);
    t.after(() => raw.destroy());
    const { streamName } = await createStream(raw, 2);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, Array.from({ length: 20 }, (_, i) => ({ data: Buffer.from(`r${i}`), key: `k${i}` })));
    const coordinator = dynamoLeases({ tableName: `leases-${Date.now()}`, endpoint: `https://127.0.0.1:${dynamoProxy.port}`, ...DYNAMO_CONFIG, tls: clientTls(), leaseDurationMs: 1_500, renewIntervalMs: 300 });
    const source = kinesisSource({ streamName, ...connection(), startingPosition: 'TRIM_HORIZON', coordinator, pollIntervalMs: 200, shardDiscoveryIntervalMs: 500, checkpointIntervalMs: 200 });
    t.after(() => source.destroy());
    const got = await take(source, 20, { ack: true });
    assert.deepEqual(got.map((m) => m.data.toString()).sort(), Array.from({ length: 20 }, (_, i) => `r${i}`).sort());
    assert.ok(dynamoProxy.clientNames.includes('manifold-client'), 'the lease table was reached through TLS with the client certificate');
    source.resume();
    await source.close();
  });

  it('a lease table behind a server of another CA: the source fails with MANIFOLD_ERR_TLS', async (t) => {
    const raw = rawClient(server.endpoint);
    t.after(() => raw.destroy());
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    const bad = await tlsProxy({ upstreamPort: Number(new URL(dynamo.endpoint).port), cert: pki.otherServerCert, key: pki.otherServerKey });
    t.after(() => bad.close());
    const coordinator = dynamoLeases({ tableName: 'leases-bad', endpoint: `https://127.0.0.1:${bad.port}`, ...DYNAMO_CONFIG, tls: { ca: pki.ca } });
    const source = kinesisSource({ streamName, ...connection(), coordinator });
    t.after(() => source.destroy());
    const started = Date.now();
    const error = await new Promise<ManifoldError>((resolve) => source.on('error', resolve).resume());
    assert.equal(error.code, ErrorCodes.TLS, error.message);
    assert.match(error.message, /unknown CA/);
    assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${bad.port}`));
    assert.ok(Date.now() - started < 1000, `${Date.now() - started} ms`);
  });

  it('the command line: kinesis:<stream>?endpoint=https://...&tls.*=...&leaseTable=...&dynamoEndpoint=https://...&dynamoTls.*=...', async (t) => {
    const raw = rawClient(server.endpoint);
    t.after(() => raw.destroy());
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, [0, 1, 2].map((i) => ({ data: Buffer.from(`c${i}`), key: 'k' })));
    const query = new URLSearchParams({
      endpoint,
      from: 'trim-horizon',
      'tls.ca': pki.ca,
      'tls.cert': pki.clientCert,
      'tls.key': pki.clientKey,
      leaseTable: `cli-leases-${Date.now()}`,
      dynamoEndpoint: `https://127.0.0.1:${dynamoProxy.port}`,
      'dynamoTls.ca': pki.ca,
      'dynamoTls.cert': pki.clientCert,
      'dynamoTls.key': pki.clientKey,
    });
    const cli = manifold([`kinesis:${streamName}?${query}`, 'stdout:', '-q']);
    assert.deepEqual(await readLines(cli, 3), ['c0', 'c1', 'c2']);
  });
});

// ---- The command line ----

const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');

function manifold(args: string[], input?: string) {
  const env: NodeJS.ProcessEnv = { ...process.env, AWS_ACCESS_KEY_ID: 'AKIDTEST', AWS_SECRET_ACCESS_KEY: 'test-secret' };
  delete env.AWS_REGION;
  delete env.AWS_DEFAULT_REGION;
  const proc = spawn(process.execPath, ['--import', 'tsx', bin, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
  proc.stdin.on('error', () => {});
  proc.stdin.end(input ?? '');
  return { proc, code: new Promise<number | null>((r) => proc.once('exit', (c) => r(c))), stdout: () => out, stderr: () => err };
}

async function readLines(run: ReturnType<typeof manifold>, lines: number): Promise<string[]> {
  for (let i = 0; run.stdout().split('\n').length <= lines && i < 1500 && run.proc.exitCode === null; i++) await sleep(20);
  run.proc.kill('SIGTERM');
  assert.equal(await run.code, 0, run.stderr());
  return run.stdout().trim().split('\n');
}

describe('kinesis: on the command line over TLS', { timeout: 90_000 }, () => {
  it('source from a URI with tls.ca, tls.cert, tls.key', async (t) => {
    const raw = rawClient(server.endpoint);
    t.after(() => raw.destroy());
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, [0, 1, 2].map((i) => ({ data: Buffer.from(`m${i}`), key: 'k' })));
    const query = new URLSearchParams({ endpoint, from: 'trim-horizon', 'tls.ca': pki.ca, 'tls.cert': pki.clientCert, 'tls.key': pki.clientKey });
    const cli = manifold([`kinesis:${streamName}?${query}`, 'stdout:', '-q']);
    assert.deepEqual(await readLines(cli, 3), ['m0', 'm1', 'm2']);
  });

  it('sink from a pipeline file with a tls: mapping', async (t) => {
    const raw = rawClient(server.endpoint);
    t.after(() => raw.destroy());
    const { streamName } = await createStream(raw, 1);
    t.after(() => deleteStream(raw, streamName));
    const dir = mkdtempSync(join(tmpdir(), 'manifold-kinesis-yaml-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'pipeline.yaml');
    writeFileSync(
      file,
      `from: "stdin:"\nto:\n  uri: "kinesis:${streamName}"\n  endpoint: "${endpoint}"\n  partitionKey: k\n  tls:\n    ca: ${JSON.stringify(pki.ca)}\n    cert: ${JSON.stringify(pki.clientCert)}\n    key: ${JSON.stringify(pki.clientKey)}\nquiet: true\n`,
    );
    const cli = manifold(['run', file], 'a\nb\nc\n');
    assert.equal(await cli.code, 0, cli.stderr());
    assert.deepEqual((await readAll(raw, streamName)).map((r) => Buffer.from(r.Data!).toString()), ['a', 'b', 'c']);
  });

  it('a server of another CA: exits 1 with MANIFOLD_ERR_TLS naming the host and the reason', async (t) => {
    const bad = await tlsProxy({ upstreamPort: Number(new URL(server.endpoint).port), cert: pki.otherServerCert, key: pki.otherServerKey });
    t.after(() => bad.close());
    const cli = manifold(['stdin:', `kinesis:s?endpoint=${encodeURIComponent(`https://127.0.0.1:${bad.port}`)}&tls.ca=${encodeURIComponent(pki.ca)}`], 'a\n');
    assert.equal(await cli.code, 1, cli.stderr());
    assert.match(cli.stderr(), /unknown CA/);
    assert.match(cli.stderr(), new RegExp(`127\\.0\\.0\\.1:${bad.port}`));
  });

  it('exits 2: tls.* with an http:// endpoint', async () => {
    const cli = manifold([`kinesis:s?endpoint=${encodeURIComponent(server.endpoint)}&tls.ca=${encodeURIComponent(pki.ca)}`, 'stdout:']);
    assert.equal(await cli.code, 2, cli.stderr());
    assert.match(cli.stderr(), /options\.tls and options\.endpoint cannot be combined/);
  });
});
