/**
 * s3Sink over TLS with a private CA: s3rver behind a loopback TLS terminator (tlsProxy from
 * test/fixtures/tls.ts) signed by this run's CA and requiring a client certificate. The conformance
 * suite through it; a server of another CA, an expired certificate, no client certificate: MANIFOLD_ERR_TLS
 * within a second of the first upload, never retried; a client certificate replaced on disk used by the
 * next connection; tls beside a client or an http:// endpoint refused; the command line from a URI and
 * a pipeline file; and s3Source through the same proxy.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it, type TestContext } from 'node:test';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import type { TlsOptions } from '../../lib/core/tls.js';
import { s3Sink, type S3SinkOptions } from '../../lib/s3/sink.js';
import { sinkConformance } from '../conformance/suite.js';
import { startS3, type S3Fixture } from '../fixtures/s3.js';
import { makePki, plaintextServer, tlsProxy, type Pki, type TlsProxy } from '../fixtures/tls.js';

const FAST = {
  commitIntervalMs: 150,
  syncIntervalMs: 10,
  uploadIntervalMs: 100,
  retry: { retries: 2, minTimeoutMs: 20, maxTimeoutMs: 60 },
} satisfies Partial<S3SinkOptions>;

const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

let pki: Pki;
before(() => {
  pki = makePki();
});
after(() => pki.remove());

function clientTls(): TlsOptions {
  return { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey };
}

/** s3rver, and a TLS proxy in front of it requiring a client certificate (or with `server`'s certificate). */
async function startTlsS3(t: TestContext | undefined, server: { cert: string; key: string } = { cert: pki.serverCert, key: pki.serverKey }): Promise<{ s3: S3Fixture; proxy: TlsProxy; endpoint: string; cleanup(): Promise<void> }> {
  const s3 = await startS3();
  const proxy = await tlsProxy({ upstreamPort: s3.port, cert: server.cert, key: server.key, ca: pki.ca, requireClientCert: true });
  const cleanup = async (): Promise<void> => {
    await proxy.close();
    await s3.cleanup();
  };
  t?.after(cleanup);
  return { s3, proxy, endpoint: `https://127.0.0.1:${proxy.port}`, cleanup };
}

function records(bodies: Buffer[]): string[] {
  return bodies.flatMap((b) => b.toString().split('\n').slice(0, -1));
}

async function filesLeft(bufferPath: string): Promise<string[]> {
  const out: string[] = [];
  for (const dir of await readdir(bufferPath).catch(() => [] as string[])) {
    if (dir === '.lock') continue;
    for (const name of await readdir(join(bufferPath, dir)).catch(() => [] as string[])) out.push(`${dir}/${name}`);
  }
  return out;
}

sinkConformance({
  name: 's3 over TLS with a private CA and a client certificate',
  timeoutMs: 30_000,
  async setup() {
    const { s3, proxy, endpoint, cleanup } = await startTlsS3(undefined);
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const sinks: Writable[] = [];
    const connection = { endpoint, region: 'us-east-1', credentials, tls: clientTls() };
    return {
      sink(options) {
        const sink = s3Sink({ ...FAST, ...connection, bucket, bufferPath, commitSizeBytes: 64 * 1024, ...(options?.signal ? { signal: options.signal } : {}) });
        sinks.push(sink);
        return sink;
      },
      async readBack() {
        for (const sink of sinks) if (!sink.closed) await new Promise((resolve) => sink.once('close', resolve));
        if ((await filesLeft(bufferPath)).length > 0) await pipeline(Readable.from([]), s3Sink({ ...FAST, ...connection, bucket, bufferPath }));
        const got = records((await s3.objects(bucket)).map((o) => o.body)).map((r) => Buffer.from(r));
        if (got.length > 0) assert.ok(proxy.clientNames.length > 0 && proxy.clientNames.every((cn): boolean => cn === 'manifold-client'), 'every upload went through the TLS proxy with the client certificate');
        return got;
      },
      async cleanup() {
        for (const sink of sinks) sink.destroy();
        await cleanup();
      },
    };
  },
});

describe('s3Sink tls options', () => {
  it('tls with an http:// endpoint or beside a client is refused, naming both options', async () => {
    const s3 = await startS3();
    try {
      assert.throws(
        () => s3Sink({ bucket: 'b', endpoint: 'http://127.0.0.1:1', tls: { ca: pki.ca } }),
        (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && /options\.tls and options\.endpoint/.test(e.message) && /https:\/\//.test(e.message),
      );
      assert.throws(
        () => s3Sink({ bucket: 'b', client: s3.client, tls: { ca: pki.ca } }),
        (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && /options\.client and options\.tls/.test(e.message),
      );
      assert.throws(() => s3Sink({ bucket: 'b', endpoint: 'https://127.0.0.1:1', tls: { ca: '/nonexistent/ca.pem' } }), (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && /tls\.ca/.test(e.message));
    } finally {
      await s3.cleanup();
    }
  });
});

describe('s3Sink over TLS: refusals are MANIFOLD_ERR_TLS within a second, never retried', { timeout: 60_000 }, () => {
  const cases: Array<[string, (p: Pki) => { cert: string; key: string } | 'plaintext', () => TlsOptions, RegExp]> = [
    ['a server signed by another CA', (p) => ({ cert: p.otherServerCert, key: p.otherServerKey }), clientTls, /unknown CA/],
    ['an expired server certificate', (p) => ({ cert: p.expiredServerCert, key: p.expiredServerKey }), clientTls, /expired/],
    ['no client certificate where the server requires one', (p) => ({ cert: p.serverCert, key: p.serverKey }), () => ({ ca: pki.ca }), /client certificate|refused/],
    ['a plaintext port', () => 'plaintext', clientTls, /plaintext|TLS/],
  ];
  for (const [name, server, client, reason] of cases) {
    it(name, async (t) => {
      let endpoint: string;
      let dir: string;
      const cert = server(pki);
      if (cert === 'plaintext') {
        const plain = await plaintextServer();
        t.after(() => plain.close());
        endpoint = `https://127.0.0.1:${plain.port}`;
        dir = mkdtempSync(join(tmpdir(), 'manifold-s3-tls-'));
        t.after(() => rmSync(dir, { recursive: true, force: true }));
      } else {
        const { s3, endpoint: at } = await startTlsS3(t, cert);
        endpoint = at;
        dir = await s3.tempDir();
      }
      const retries: unknown[] = [];
      const sink = s3Sink({ ...FAST, commitIntervalMs: 50, retry: { retries: 5, minTimeoutMs: 200, maxTimeoutMs: 400 }, bucket: 'b', bufferPath: dir, endpoint, region: 'us-east-1', credentials, tls: client() });
      sink.on('retry', (e) => retries.push(e));
      sink.on('uploaderror', (e) => retries.push(e));
      const started = Date.now();
      sink.write('one record');
      const error = await new Promise<Error>((resolve) => sink.on('error', resolve));
      const elapsed = Date.now() - started;
      assert.ok(error instanceof ManifoldError, String(error));
      assert.equal(error.code, ErrorCodes.TLS, error.message);
      assert.match(error.message, reason);
      assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${new URL(endpoint).port}`), 'names the host');
      assert.equal(error.retryable, false);
      assert.deepEqual(retries, [], 'not retried');
      // The start-up check (HeadBucket, verify: 'bucket' by default) meets it, before the first commit: well within a second.
      assert.ok(elapsed < 1000, `failed after ${elapsed} ms`);
      // Nothing was uploaded; the record, if it reached the disk before the sink failed, stays there for a run with the right settings.
      assert.ok((await filesLeft(dir)).length <= 1);
    });
  }
});

describe('s3Sink over TLS: a client certificate replaced on disk is used by the next connection', { timeout: 60_000 }, () => {
  it('s3rver restarts (the connections are cut); the next upload presents the new certificate', async (t) => {
    const { s3, proxy, endpoint } = await startTlsS3(t);
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const dir = mkdtempSync(join(tmpdir(), 'manifold-s3-rotate-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const first = pki.issue('s3-first', { cn: 'first' });
    const cert = join(dir, 'client.pem');
    const key = join(dir, 'client.key');
    copyFileSync(first.cert, cert);
    copyFileSync(first.key, key);
    const sink = s3Sink({ ...FAST, ackOn: 'upload', bucket, bufferPath, endpoint, region: 'us-east-1', credentials, tls: { ca: pki.ca, cert, key } });
    t.after(() => sink.destroy());
    const acked = (data: string): Promise<void> =>
      new Promise((resolve, reject) => {
        sink.write({ data: Buffer.from(data), ack: resolve, nack: reject });
      });
    await acked('one');
    assert.ok(proxy.clientNames.length > 0 && proxy.clientNames.every((cn): boolean => cn === 'first'), proxy.clientNames.join(','));
    const before = proxy.clientNames.length;
    const next = pki.issue('s3-second', { cn: 'second' });
    writeFileSync(key, readFileSync(next.key));
    writeFileSync(cert, readFileSync(next.cert));
    await s3.stop();
    await s3.start();
    await acked('two');
    assert.ok(proxy.clientNames.length > before);
    assert.ok(proxy.clientNames.slice(before).every((cn): boolean => cn === 'second'), proxy.clientNames.join(','));
    await new Promise<void>((resolve, reject) => sink.end((error?: Error | null) => (error ? reject(error) : resolve())));
    assert.deepEqual(records((await s3.objects(bucket)).map((o) => o.body)), ['one', 'two']);
  });
});

// ---- The command line ----

const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');

function run(args: string[], input: string): { code: Promise<number | null>; stderr: () => string; stdout: () => string } {
  const env: NodeJS.ProcessEnv = { ...process.env, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
  delete env.AWS_REGION;
  delete env.AWS_DEFAULT_REGION;
  const proc = spawn(process.execPath, ['--import', 'tsx', bin, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  proc.stdin.on('error', () => {});
  proc.stdin.end(input);
  return { code: new Promise((resolve) => proc.once('exit', resolve)), stderr: () => stderr, stdout: () => stdout };
}

describe('s3: on the command line over TLS', { timeout: 90_000 }, () => {
  it('stdin: -> s3://...?endpoint=https://...&tls.ca=&tls.cert=&tls.key=: every line is in the bucket', async (t) => {
    const { s3, proxy, endpoint } = await startTlsS3(t);
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir('cli-s3-tls');
    const query = new URLSearchParams({ endpoint, bufferPath, ackOn: 'upload', 'tls.ca': pki.ca, 'tls.cert': pki.clientCert, 'tls.key': pki.clientKey });
    const cli = run(['stdin:', `s3://${bucket}/in/?${query}`, '-q'], 'a\nb\nc\n');
    assert.equal(await cli.code, 0, cli.stderr());
    assert.deepEqual(records((await s3.objects(bucket)).map((o) => o.body)), ['a', 'b', 'c']);
    assert.ok(proxy.clientNames.includes('manifold-client'));
  });

  it('from a pipeline file with a tls: mapping', async (t) => {
    const { s3, proxy, endpoint } = await startTlsS3(t);
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir('cli-s3-tls-yaml');
    const dir = mkdtempSync(join(tmpdir(), 'manifold-s3-yaml-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'pipeline.yaml');
    writeFileSync(
      file,
      `from: "stdin:"\nto:\n  uri: "s3://${bucket}/y/"\n  endpoint: "${endpoint}"\n  bufferPath: ${JSON.stringify(bufferPath)}\n  ackOn: upload\n  tls:\n    ca: ${JSON.stringify(pki.ca)}\n    cert: ${JSON.stringify(pki.clientCert)}\n    key: ${JSON.stringify(pki.clientKey)}\nquiet: true\n`,
    );
    const cli = run(['run', file], 'x\ny\n');
    assert.equal(await cli.code, 0, cli.stderr());
    assert.deepEqual(records((await s3.objects(bucket)).map((o) => o.body)), ['x', 'y']);
    assert.ok(proxy.clientNames.includes('manifold-client'));
  });

  it('a server of another CA: exits 1 with MANIFOLD_ERR_TLS naming the host and the reason', async (t) => {
    const { s3, endpoint } = await startTlsS3(t, { cert: pki.otherServerCert, key: pki.otherServerKey });
    const bufferPath = await s3.tempDir('cli-s3-tls-bad');
    const query = new URLSearchParams({ endpoint, bufferPath, ackOn: 'upload', 'tls.ca': pki.ca });
    const cli = run(['stdin:', `s3://b/p/?${query}`], 'a\n');
    assert.equal(await cli.code, 1, cli.stderr());
    assert.match(cli.stderr(), /unknown CA/);
    assert.match(cli.stderr(), new RegExp(`127\\.0\\.0\\.1:${new URL(endpoint).port}`));
  });

  it('exits 2: tls.* with an http:// endpoint', async () => {
    const cli = run(['stdin:', `s3://b/p/?endpoint=${encodeURIComponent('http://127.0.0.1:1')}&tls.ca=${encodeURIComponent(pki.ca)}`], '');
    assert.equal(await cli.code, 2, cli.stderr());
    assert.match(cli.stderr(), /options\.tls and options\.endpoint cannot be combined/);
  });
});

describe('s3Source over TLS', { timeout: 60_000 }, () => {
  it('reads back through the TLS proxy with a client certificate, and a server of another CA is MANIFOLD_ERR_TLS within a second', async (t) => {
    const { s3, proxy, endpoint } = await startTlsS3(t);
    const bucket = await s3.createBucket();
    const { PutObjectCommand } = await import('@aws-sdk/client-s3');
    await s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'in/1', Body: 'a\nb\n' }));
    const { s3Source } = await import('../../lib/s3/source.js');
    const got: string[] = [];
    await pipeline(
      s3Source({ bucket, prefix: 'in/', endpoint, region: 'us-east-1', credentials, tls: clientTls() }),
      new (await import('node:stream')).Writable({
        objectMode: true,
        write(message: { data: Buffer; ack(): void }, _e, callback) {
          got.push(message.data.toString());
          message.ack();
          callback();
        },
      }),
    );
    assert.deepEqual(got, ['a', 'b']);
    assert.ok(proxy.clientNames.includes('manifold-client'));
    const other = await startTlsS3(t, { cert: pki.otherServerCert, key: pki.otherServerKey });
    const started = Date.now();
    const source = s3Source({ bucket, prefix: 'in/', endpoint: other.endpoint, region: 'us-east-1', credentials, tls: clientTls() });
    const error = await new Promise<Error>((resolve) => {
      source.on('error', resolve);
      source.resume();
    });
    assert.ok(error instanceof ManifoldError && error.code === ErrorCodes.TLS, String(error));
    assert.match(error.message, /unknown CA/);
    assert.ok(Date.now() - started < 1000, `${Date.now() - started} ms`);
  });
});
