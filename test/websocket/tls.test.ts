/**
 * websocketSource and websocketSink over wss:// against a real `https.createServer` + `ws` server on
 * loopback that requires a client certificate signed by this run's CA (test/fixtures/tls.ts): the
 * conformance suite with a client certificate; refusals (another CA, expired, another name, no client
 * certificate, a client certificate of another CA, a plaintext port) as MANIFOLD_ERR_TLS within a second
 * and without a reconnect; a certificate replaced on disk used at the next reconnect and swap; a bearer
 * token from the environment, sent and never shown; the command line from a URI and a pipeline file.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import type { Message } from '../../lib/core/message.js';
import type { TlsOptions } from '../../lib/core/tls.js';
import { websocketSink } from '../../lib/websocket/sink.js';
import { websocketSource, type WebSocketSource } from '../../lib/websocket/source.js';
import { sinkConformance, sourceConformance } from '../conformance/suite.js';
import { makePki, plaintextServer, type Pki } from '../fixtures/tls.js';
import { startCollector, startFeed, startWsServer, type WsServer, type WsServerOptions } from '../fixtures/websocket.js';
import { take } from '../fixtures/take.js';

let pki: Pki;
before(() => {
  pki = makePki();
});
after(() => pki.remove());

/** The server side: this run's CA, its localhost certificate, a client certificate required. */
function serverTls(overrides: Partial<NonNullable<WsServerOptions['tls']>> = {}): NonNullable<WsServerOptions['tls']> {
  return { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requireClientCert: true, ...overrides };
}

/** The client side: trust the CA, present the client certificate. */
function clientTls(): TlsOptions {
  return { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey };
}

/** Retries that would reconnect several times if the failure were taken for transient. */
const retrying = { retries: 5, minTimeoutMs: 100, maxTimeoutMs: 200 };

/** Waits for `check`, failing after `timeoutMs`. */
async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}


sourceConformance({
  name: 'websocket over wss with a client certificate',
  redelivers: false,
  liveOnly: true,
  async setup() {
    const feed = await startFeed({ tls: serverTls() });
    return {
      source: (options) => websocketSource({ url: feed.server.url, tls: clientTls(), ...(options?.signal ? { signal: options.signal } : {}) }),
      produce: (payloads) => feed.produce(payloads),
      cleanup: () => feed.server.close(),
    };
  },
});

sinkConformance({
  name: 'websocket over wss with a client certificate',
  async setup() {
    const collector = await startCollector({ tls: serverTls() });
    return {
      sink: (options) => websocketSink({ url: collector.server.url, tls: clientTls(), ...(options?.signal ? { signal: options.signal } : {}) }),
      readBack: async () => {
        assert.ok(collector.server.clientNames.length > 0 && collector.server.clientNames.every((cn) => cn === 'manifold-client'), 'every connection presented the client certificate');
        return [...collector.received];
      },
      cleanup: () => collector.server.close(),
    };
  },
});

describe('websocket TLS options', () => {
  it('tls with a ws:// URL is refused: plaintext where TLS was asked for is never silent', () => {
    for (const factory of [websocketSource, websocketSink] as const) {
      assert.throws(
        () => factory({ url: 'ws://127.0.0.1:1/feed', tls: { ca: pki.ca } }),
        (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && /options\.tls and options\.url/.test(e.message) && /wss:\/\//.test(e.message),
      );
    }
  });

  it('bad tls settings name the option', () => {
    assert.throws(() => websocketSource({ url: 'wss://h/x', tls: { ca: '/nonexistent/ca.pem' } }), (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && /tls\.ca/.test(e.message));
    assert.throws(() => websocketSink({ url: 'wss://h/x', tls: { cert: pki.clientCert } as TlsOptions }), (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && /tls\.key/.test(e.message));
  });

  it('bearerEnv: an unset or empty variable, a bad name, or an Authorization header beside it is refused, naming the variable', () => {
    const name = 'MANIFOLD_TEST_UNSET_TOKEN';
    delete process.env[name];
    assert.throws(() => websocketSource({ url: 'wss://h/x', bearerEnv: name }), (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && e.message.includes(name) && /not set/.test(e.message));
    process.env[name] = '';
    try {
      assert.throws(() => websocketSink({ url: 'wss://h/x', bearerEnv: name }), (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && e.message.includes(name) && /empty/.test(e.message));
    } finally {
      delete process.env[name];
    }
    assert.throws(() => websocketSource({ url: 'wss://h/x', bearerEnv: 'not a name' }), /options\.bearerEnv must be the name of an environment variable/);
    process.env[name] = 'tok-hunter2-secret';
    try {
      assert.throws(
        () => websocketSource({ url: 'wss://h/x', bearerEnv: name, headers: { authorization: 'Basic x' } }),
        (e: ManifoldError) => /options\.bearerEnv and options\.headers cannot be combined/.test(e.message) && !e.message.includes('tok-hunter2-secret'),
      );
    } finally {
      delete process.env[name];
    }
  });
});

describe('websocket over wss: refusals are MANIFOLD_ERR_TLS within a second, never retried', { timeout: 60_000 }, () => {
  const cases: Array<[string, () => NonNullable<WsServerOptions['tls']>, () => TlsOptions, RegExp]> = [
    ['a server signed by another CA', () => serverTls({ cert: pki.otherServerCert, key: pki.otherServerKey }), clientTls, /unknown CA/],
    ['an expired server certificate', () => serverTls({ cert: pki.expiredServerCert, key: pki.expiredServerKey }), clientTls, /expired/],
    ['a server certificate for another name', () => serverTls({ cert: pki.wrongNameServerCert, key: pki.wrongNameServerKey }), clientTls, /name mismatch/],
    ['no client certificate where the server requires one', () => serverTls(), () => ({ ca: pki.ca }), /client certificate|refused/],
    ['a client certificate of another CA', () => serverTls(), () => ({ ca: pki.ca, cert: pki.otherClientCert, key: pki.otherClientKey }), /refused|client certificate/],
  ];
  for (const [name, server, client, reason] of cases) {
    for (const direction of ['source', 'sink'] as const) {
      it(`${direction}: ${name}`, async (t) => {
        const srv = await startWsServer({ tls: server() });
        t.after(() => srv.close());
        const reconnects: unknown[] = [];
        const started = Date.now();
        const error = await new Promise<Error>((resolve) => {
          if (direction === 'source') {
            const source = websocketSource({ url: srv.url, tls: client(), retry: retrying });
            source.on('reconnect', (e) => reconnects.push(e));
            source.on('error', resolve);
            source.resume();
          } else {
            const sink = websocketSink({ url: srv.url, tls: client(), retry: retrying });
            sink.on('reconnect', (e) => reconnects.push(e));
            sink.on('error', resolve);
            sink.write('x');
          }
        });
        const elapsed = Date.now() - started;
        assert.ok(error instanceof ManifoldError, String(error));
        assert.equal(error.code, ErrorCodes.TLS, error.message);
        assert.match(error.message, reason);
        assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${srv.port}`), 'names the host');
        assert.match(error.message, direction === 'source' ? /websocketSource/ : /websocketSink/);
        assert.equal(error.retryable, false);
        assert.deepEqual(reconnects, [], 'not retried');
        assert.ok(elapsed < 1000, `failed after ${elapsed} ms`);
        assert.equal(srv.accepted.length, 0, 'no WebSocket connection was made');
      });
    }
  }

  it('an encrypted key: the right passphrase connects; a wrong one is MANIFOLD_ERR_TLS that does not show it', async (t) => {
    const key = join(pki.dir, 'encrypted-client.key');
    execFileSync('openssl', ['pkey', '-in', pki.clientKey, '-aes256', '-passout', 'pass:right-pass-hunter2', '-out', key]);
    const srv = await startWsServer({ tls: serverTls(), onConnection: (ws) => ws.send('hi') });
    t.after(() => srv.close());
    const wrong = websocketSource({ url: srv.url, tls: { ca: pki.ca, cert: pki.clientCert, key, passphrase: 'wrong-pass-hunter2' }, retry: retrying });
    const error = await new Promise<ManifoldError>((resolve) => wrong.on('error', resolve).resume());
    assert.equal(error.code, ErrorCodes.TLS, error.message);
    assert.match(error.message, /passphrase/);
    assert.ok(!`${error.message} ${JSON.stringify(error.details)}`.includes('hunter2'), error.message);
    const right = websocketSource({ url: srv.url, tls: { ca: pki.ca, cert: pki.clientCert, key, passphrase: 'right-pass-hunter2' } });
    t.after(() => right.destroy());
    assert.deepEqual((await take(right, 1)).map((m) => m.data.toString()), ['hi']);
    assert.deepEqual(srv.clientNames, ['manifold-client']);
  });

  it('source and sink: wss:// to a plaintext port is MANIFOLD_ERR_TLS, not a silent fallback', async (t) => {
    const plain = await plaintextServer();
    t.after(() => plain.close());
    const url = `wss://127.0.0.1:${plain.port}/feed`;
    for (const make of [() => websocketSource({ url, tls: { ca: pki.ca }, retry: retrying }).resume(), () => websocketSink({ url, tls: { ca: pki.ca }, retry: retrying })] as const) {
      const started = Date.now();
      const stream = make();
      if ('write' in stream) stream.write('x');
      const error = await new Promise<Error>((resolve) => stream.on('error', resolve));
      assert.equal((error as ManifoldError).code, ErrorCodes.TLS, error.message);
      assert.match(error.message, /plaintext|TLS/);
      assert.ok(Date.now() - started < 1000);
    }
  });
});

describe('websocket over wss: a certificate replaced on disk is used at the next connection', { timeout: 60_000 }, () => {
  function rotating(t: TestContext): { tls: TlsOptions; rotate(cn: string): void } {
    const dir = mkdtempSync(join(tmpdir(), 'manifold-ws-rotate-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const first = pki.issue(`first-${Math.random().toString(36).slice(2)}`, { cn: 'first' });
    const cert = join(dir, 'client.pem');
    const key = join(dir, 'client.key');
    copyFileSync(first.cert, cert);
    copyFileSync(first.key, key);
    return {
      tls: { ca: pki.ca, cert, key },
      rotate(cn) {
        const next = pki.issue(`${cn}-${Math.random().toString(36).slice(2)}`, { cn });
        writeFileSync(key, readFileSync(next.key));
        writeFileSync(cert, readFileSync(next.cert));
      },
    };
  }

  it('source: the server closes the connection; the reconnect presents the new certificate', async (t) => {
    const files = rotating(t);
    const srv: WsServer = await startWsServer({ tls: serverTls(), onConnection: (ws) => ws.send(`hello ${srv.accepted.length}`) });
    t.after(() => srv.close());
    const source = websocketSource({ url: srv.url, tls: files.tls, retry: { retries: 5, minTimeoutMs: 10, maxTimeoutMs: 50 } });
    t.after(() => source.destroy());
    assert.deepEqual((await take(source, 1)).map((m) => m.data.toString()), ['hello 1']);
    assert.deepEqual(srv.clientNames, ['first']);
    files.rotate('second');
    for (const ws of srv.clients) ws.close(1001, 'going away');
    await until('a second connection', () => srv.accepted.length === 2);
    assert.deepEqual(srv.clientNames, ['first', 'second']);
    assert.deepEqual((await take(source, 1)).map((m) => m.data.toString()), ['hello 2']);
    source.resume();
    await source.close();
  });

  it('source: a periodic swap (reconnectEveryMs) presents the new certificate', async (t) => {
    const files = rotating(t);
    const srv = await startWsServer({ tls: serverTls() });
    t.after(() => srv.close());
    const source = websocketSource({ url: srv.url, tls: files.tls, reconnectEveryMs: 300 });
    t.after(() => source.destroy());
    source.resume();
    await until('a first connection', () => srv.accepted.length === 1);
    files.rotate('swapped');
    await until('a swap', () => srv.accepted.length >= 2);
    assert.equal(srv.clientNames[0], 'first');
    assert.equal(srv.clientNames[1], 'swapped');
    await source.close();
  });

  it('sink: the server closes the connection; the reconnect presents the new certificate and the message is delivered', async (t) => {
    const files = rotating(t);
    const collector = await startCollector({ tls: serverTls() });
    t.after(() => collector.server.close());
    const sink = websocketSink({ url: collector.server.url, tls: files.tls, retry: { retries: 5, minTimeoutMs: 10, maxTimeoutMs: 50 } });
    t.after(() => sink.destroy());
    sink.write('one');
    await collector.waitFor(1);
    files.rotate('rotated-sink');
    for (const ws of collector.server.clients) ws.close(1001, 'going away');
    await until('the sink to notice', () => collector.server.clients.size === 0);
    sink.write('two');
    await collector.waitFor(2);
    assert.deepEqual(collector.received.map(String), ['one', 'two']);
    assert.deepEqual(collector.server.clientNames, ['first', 'rotated-sink']);
    await new Promise<void>((resolve, reject) => sink.end((error?: Error | null) => (error ? reject(error) : resolve())));
  });
});

describe('websocket: a bearer token from the environment', { timeout: 60_000 }, () => {
  const VAR = 'MANIFOLD_TEST_FEED_TOKEN';
  const TOKEN = 'tok-3f9a1c-hunter2-secret';

  it('source and sink send Authorization: Bearer <token>, read again at every connect', async (t) => {
    process.env[VAR] = TOKEN;
    t.after(() => delete process.env[VAR]);
    const seen: string[] = [];
    const srv = await startWsServer({ tls: serverTls(), onConnection: (ws, req) => {
      seen.push(req.headers.authorization ?? '');
      ws.send('hi');
    } });
    t.after(() => srv.close());
    const source = websocketSource({ url: srv.url, tls: clientTls(), bearerEnv: VAR, retry: { retries: 5, minTimeoutMs: 10, maxTimeoutMs: 50 } });
    t.after(() => source.destroy());
    await take(source, 1);
    process.env[VAR] = `${TOKEN}-next`;
    for (const ws of srv.clients) ws.close(1001);
    await until('a reconnect', () => seen.length === 2);
    await take(source, 1);
    source.resume();
    await source.close();
    assert.deepEqual(seen, [`Bearer ${TOKEN}`, `Bearer ${TOKEN}-next`]);

    const collector = await startCollector({ tls: serverTls() });
    t.after(() => collector.server.close());
    const sink = websocketSink({ url: collector.server.url, tls: clientTls(), bearerEnv: VAR });
    sink.end('m');
    await new Promise((resolve) => sink.once('finish', resolve));
    assert.equal(collector.server.accepted[0]!.req.headers.authorization, `Bearer ${TOKEN}-next`);
  });

  it('a server refusing the token (401) is MANIFOLD_ERR_AUTH, and the token is not in the error', async (t) => {
    process.env[VAR] = TOKEN;
    t.after(() => delete process.env[VAR]);
    const srv = await startWsServer({ tls: serverTls(), refuseWith: 401 });
    t.after(() => srv.close());
    const source = websocketSource({ url: srv.url, tls: clientTls(), bearerEnv: VAR, retry: retrying });
    const error = await new Promise<ManifoldError>((resolve) => source.on('error', resolve).resume());
    assert.equal(error.code, ErrorCodes.AUTH);
    const shown = `${error.message} ${JSON.stringify(error.details ?? {})} ${String(error.stack)} ${error.cause ? String(error.cause) : ''}`;
    assert.ok(!shown.includes(TOKEN) && !shown.includes('hunter2'), shown);
  });
});

// ---- The command line ----

const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');

function manifold(args: string[], input?: string, env: Record<string, string> = {}) {
  const proc = spawn(process.execPath, ['--import', 'tsx', bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  let err = '';
  proc.stdout.on('data', (c: Buffer) => {
    out += c.toString();
  });
  proc.stderr.on('data', (c: Buffer) => {
    err += c.toString();
  });
  proc.stdin.on('error', () => {});
  if (input !== undefined) proc.stdin.end(input);
  else proc.stdin.end();
  return { proc, code: new Promise<number | null>((r) => proc.once('exit', (c) => r(c))), stdout: () => out, stderr: () => err };
}

async function readUntil(run: ReturnType<typeof manifold>, lines: number): Promise<string[]> {
  for (let i = 0; run.stdout().split('\n').length <= lines && i < 1000; i++) await sleep(20);
  run.proc.kill('SIGTERM');
  assert.equal(await run.code, 0, run.stderr());
  return run.stdout().trim().split('\n');
}

function pipelineFile(t: TestContext, yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'manifold-cli-wss-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'pipeline.yaml');
  writeFileSync(file, yaml);
  return file;
}

/** A wss feed requiring a client certificate that sends m0..m(n-1) to each connection, recording upgrade URLs and Authorization headers. */
async function startTlsFeed(t: TestContext, count: number) {
  const requests: Array<{ url: URL; authorization: string | undefined }> = [];
  const server = await startWsServer({
    tls: serverTls(),
    onConnection(ws, req) {
      requests.push({ url: new URL(req.url ?? '/', 'wss://x'), authorization: req.headers.authorization });
      for (let i = 0; i < count; i++) ws.send(`m${i}`);
    },
  });
  t.after(() => server.close());
  return { server, requests };
}

describe('wss: on the command line', { timeout: 90_000 }, () => {
  it('source from a URI: tls.ca, tls.cert, tls.key are file paths, not sent to the server; bearerEnv sends the token and never prints it', async (t) => {
    const feed = await startTlsFeed(t, 3);
    const uri = new URL(feed.server.url);
    uri.searchParams.append('channel', 'ticks');
    uri.searchParams.append('tls.ca', pki.ca);
    uri.searchParams.append('tls.cert', pki.clientCert);
    uri.searchParams.append('tls.key', pki.clientKey);
    uri.searchParams.append('bearerEnv', 'FEED_TOKEN');
    const run = manifold([uri.toString(), 'stdout:'], undefined, { FEED_TOKEN: 'cli-token-hunter2-secret' });
    assert.deepEqual(await readUntil(run, 3), ['m0', 'm1', 'm2']);
    assert.deepEqual([...feed.requests[0]!.url.searchParams], [['channel', 'ticks']], 'our keys are not sent to the server');
    assert.equal(feed.requests[0]!.authorization, 'Bearer cli-token-hunter2-secret');
    assert.deepEqual(feed.server.clientNames, ['manifold-client']);
    assert.ok(!run.stderr().includes('hunter2') && !run.stdout().includes('hunter2'), run.stderr());
  });

  it('sink from a URI with tls.ca, tls.cert, tls.key', async (t) => {
    const collector = await startCollector({ tls: serverTls() });
    t.after(() => collector.server.close());
    const uri = new URL(collector.server.url);
    uri.searchParams.append('messageType', 'text');
    uri.searchParams.append('tls.ca', pki.ca);
    uri.searchParams.append('tls.cert', pki.clientCert);
    uri.searchParams.append('tls.key', pki.clientKey);
    const run = manifold(['stdin:', uri.toString(), '-q'], 'a\nb\n');
    assert.equal(await run.code, 0, run.stderr());
    assert.deepEqual(collector.received.map(String), ['a', 'b']);
    assert.deepEqual(collector.server.clientNames, ['manifold-client']);
    assert.equal(new URL(collector.server.accepted[0]!.req.url ?? '/', 'wss://x').search, '', 'no tls.* key reached the server');
  });

  it('sink from a pipeline file with a tls: mapping', async (t) => {
    const collector = await startCollector({ tls: serverTls() });
    t.after(() => collector.server.close());
    const file = pipelineFile(
      t,
      `from: "stdin:"\nto:\n  uri: "${collector.server.url}"\n  messageType: text\n  tls:\n    ca: ${JSON.stringify(pki.ca)}\n    cert: ${JSON.stringify(pki.clientCert)}\n    key: ${JSON.stringify(pki.clientKey)}\nquiet: true\n`,
    );
    const run = manifold(['run', file], 'a\nb\nc\n');
    assert.equal(await run.code, 0, run.stderr());
    assert.deepEqual(collector.received.map(String), ['a', 'b', 'c']);
    assert.deepEqual(collector.server.clientNames, ['manifold-client']);
  });

  it('source from a pipeline file with a tls: mapping', async (t) => {
    const feed = await startTlsFeed(t, 2);
    const file = pipelineFile(
      t,
      `from:\n  uri: "${feed.server.url}"\n  tls:\n    ca: ${JSON.stringify(pki.ca)}\n    cert: ${JSON.stringify(pki.clientCert)}\n    key: ${JSON.stringify(pki.clientKey)}\nto: "stdout:"\nquiet: true\n`,
    );
    const run = manifold(['run', file]);
    assert.deepEqual(await readUntil(run, 2), ['m0', 'm1']);
    assert.deepEqual(feed.server.clientNames, ['manifold-client']);
  });

  it('a server of another CA: exits 1 at once with MANIFOLD_ERR_TLS naming the host and the reason', async (t) => {
    const server = await startWsServer({ tls: serverTls({ cert: pki.otherServerCert, key: pki.otherServerKey }) });
    t.after(() => server.close());
    const started = Date.now();
    const run = manifold([`${server.url}?tls.ca=${encodeURIComponent(pki.ca)}`, 'stdout:']);
    assert.equal(await run.code, 1, run.stderr());
    assert.match(run.stderr(), /MANIFOLD_ERR_TLS|TLS with 127\.0\.0\.1/);
    assert.match(run.stderr(), /unknown CA/);
    assert.match(run.stderr(), new RegExp(`127\\.0\\.0\\.1:${server.port}`));
    assert.ok(Date.now() - started < 15_000);
  });

  it('exits 2: tls.* on a ws:// URI, or an unknown tls subkey', async () => {
    for (const [uri, message] of [
      [`ws://127.0.0.1:1/x?tls.ca=${encodeURIComponent(pki.ca)}`, /options\.tls and options\.url cannot be combined/],
      [`wss://127.0.0.1:1/x?tls.cafile=${encodeURIComponent(pki.ca)}`, /tls\.cafile/],
    ] as const) {
      const run = manifold([uri, 'stdout:']);
      assert.equal(await run.code, 2, run.stderr());
      assert.match(run.stderr(), message);
    }
  });

  it('exits 2: bearerEnv naming a variable that is not set, naming it', async () => {
    const run = manifold(['wss://127.0.0.1:1/x?bearerEnv=MANIFOLD_NOT_SET_VAR', 'stdout:']);
    assert.equal(await run.code, 2, run.stderr());
    assert.match(run.stderr(), /MANIFOLD_NOT_SET_VAR.*not set/);
  });
});
