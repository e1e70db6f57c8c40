/**
 * A hostile WebSocket server, as issue 19 found one: compressed floods into a consumer that does not
 * read, frames above maxPayloadBytes or breaking the protocol on every connection, and close() or
 * destroy() landing at any moment of a connect.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, type ManifoldError } from '../../lib/core/errors.js';
import type { RetryEvent } from '../../lib/core/retry.js';
import { websocketSink } from '../../lib/websocket/sink.js';
import { websocketSource } from '../../lib/websocket/source.js';
import { deflateMessage, rawFrame, startFloodServer, startRawWsServer, startWsServer } from '../fixtures/websocket.js';

const MiB = 1024 * 1024;
const root = join(import.meta.dirname, '..', '..');

/** Resolves when `predicate()` holds, polling; rejects after `timeoutMs` naming `what`. */
async function until(what: string, predicate: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Open TCP handles of this process (sockets and servers). */
function tcpHandles(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TCPServerWrap').length;
}

/**
 * Runs a websocketSource in a child process that never reads it, so its peak RSS is the source's alone:
 * `until: 'paused'` waits for the socket to pause with a message held (then 1.5 s more for stragglers),
 * `until: 'reconnects'` for 3 reconnects.
 */
async function floodChild(url: string, options: Record<string, unknown>, until: 'paused' | 'reconnects'): Promise<{
  maxRssMiB: number;
  readableLength: number;
  bufferedBytes: number;
  reconnects: Array<{ attempt: number; delayMs: number; message: string }>;
}> {
  const code = `
    const { websocketSource } = await import(process.env.MANIFOLD_LIB);
    const source = websocketSource({ url: process.env.MANIFOLD_URL, ...JSON.parse(process.env.MANIFOLD_OPTIONS) });
    const reconnects = [];
    source.on('reconnect', (e) => reconnects.push({ attempt: e.attempt, delayMs: e.delayMs, message: e.error.message }));
    source.on('error', (e) => { console.error(e.message); process.exit(1); });
    source.read(0);
    const done = () => process.env.MANIFOLD_UNTIL === 'paused' ? source.socketsPaused && source.readableLength > 0 : reconnects.length >= 3;
    while (!done()) await new Promise((r) => setTimeout(r, 20));
    if (process.env.MANIFOLD_UNTIL === 'paused') await new Promise((r) => setTimeout(r, 1500));
    process.stdout.write(JSON.stringify({
      maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
      readableLength: source.readableLength,
      bufferedBytes: source.bufferedBytes,
      reconnects,
    }));
    source.destroy();
    process.exit(0);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: root,
    env: {
      ...process.env,
      NODE_V8_COVERAGE: '',
      MANIFOLD_LIB: join(root, 'lib', 'websocket', 'source.ts'),
      MANIFOLD_URL: url,
      MANIFOLD_OPTIONS: JSON.stringify(options),
      MANIFOLD_UNTIL: until,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const [exitCode] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  assert.equal(exitCode, 0, `child failed: ${err}`);
  return JSON.parse(out);
}

describe('websocketSource against a hostile server', () => {
  test('16 compressed 64 MiB messages into a source nobody reads: memory bounded, with deflate on or off', async (t) => {
    // 64 MiB of zeros deflates to about 64 KiB: the server sends 16 of them, 1 MiB on the wire in all.
    const frame = rawFrame(deflateMessage(Buffer.alloc(64 * MiB)), { compressed: true });
    const server = await startRawWsServer((socket) => {
      for (let i = 0; i < 16; i++) socket.write(frame);
    });
    t.after(() => server.close());

    // Deflate on and 64 MiB allowed: one message is held, the socket pauses, the other 15 wait in TCP buffers.
    // Before: the source buffered all 16 (1 GiB of payload, 1.2 GiB RSS).
    const accepted = await floodChild(server.url, { perMessageDeflate: true, maxPayloadBytes: 128 * MiB }, 'paused');
    t.diagnostic(`deflate on, maxPayloadBytes 128 MiB: peak RSS ${accepted.maxRssMiB} MiB, ${accepted.readableLength} message(s) held, ${accepted.bufferedBytes} bytes (wire frame ${frame.length} bytes)`);
    assert.ok(accepted.readableLength >= 1 && accepted.readableLength <= 2, `held ${accepted.readableLength}`);
    assert.ok(accepted.bufferedBytes <= 2 * 64 * MiB);
    assert.ok(accepted.maxRssMiB < 400, `peak RSS ${accepted.maxRssMiB} MiB`);
    assert.deepEqual(accepted.reconnects, []);

    // Deflate on with the default maxPayloadBytes (16 MiB): each message is refused once it inflates past it (1009).
    const refused = await floodChild(server.url, { perMessageDeflate: true, retry: { retries: 10, minTimeoutMs: 20 } }, 'reconnects');
    t.diagnostic(`deflate on, defaults: peak RSS ${refused.maxRssMiB} MiB; ${refused.reconnects[0]!.message}`);
    assert.equal(refused.readableLength, 0);
    assert.ok(refused.maxRssMiB < 250, `peak RSS ${refused.maxRssMiB} MiB`);
    assert.match(refused.reconnects[0]!.message, /Max payload size exceeded; the client closed with code 1009: raise maxPayloadBytes/);
    assert.deepEqual(refused.reconnects.map((r) => r.attempt), [1, 2, 3]);

    // The default: deflate is not offered, so the compressed frames break the protocol (1002) and nothing inflates.
    const plain = await floodChild(server.url, { retry: { retries: 10, minTimeoutMs: 20 } }, 'reconnects');
    t.diagnostic(`defaults: peak RSS ${plain.maxRssMiB} MiB; ${plain.reconnects[0]!.message}`);
    assert.equal(plain.readableLength, 0);
    assert.ok(plain.maxRssMiB < 250, `peak RSS ${plain.maxRssMiB} MiB`);
    assert.match(plain.reconnects[0]!.message, /RSV1 must be clear; the client closed with code 1002/);
    assert.deepEqual(plain.reconnects.map((r) => r.attempt), [1, 2, 3]);
    assert.equal(server.offeredDeflate.at(-1), false, 'permessage-deflate is not offered by default');
    assert.equal(server.offeredDeflate[0], true);
  });

  test('a frame above maxPayloadBytes on every connection: growing backoff, then RETRIES_EXHAUSTED naming 1009', async (t) => {
    // Only the frame header is sent: ws refuses the announced length before any payload arrives.
    const header = rawFrame(Buffer.alloc(2048)).subarray(0, 4);
    const server = await startRawWsServer((socket) => socket.write(header));
    t.after(() => server.close());
    const source = websocketSource({ url: server.url, maxPayloadBytes: 1024, retry: { retries: 4, minTimeoutMs: 20, maxTimeoutMs: 10_000 } });
    t.after(() => source.destroy());
    const reconnects: RetryEvent[] = [];
    source.on('reconnect', (e: RetryEvent) => reconnects.push(e));
    source.resume();
    const [error] = (await once(source, 'error')) as [ManifoldError];
    assert.equal(error.code, ErrorCodes.RETRIES_EXHAUSTED);
    assert.match(error.message, /websocketSource: connecting to ws:\/\/127\.0\.0\.1:\d+\/ failed after 5 attempts: .*Max payload size exceeded; the client closed with code 1009/);
    assert.equal((error.cause as ManifoldError).sentCloseCode, 1009);
    assert.deepEqual(reconnects.map((r) => r.attempt), [1, 2, 3, 4]);
    // Jittered exponential backoff: attempt n waits between 20·2^(n-1) and twice that.
    for (const r of reconnects) {
      const base = 20 * 2 ** (r.attempt - 1);
      assert.ok(r.delayMs >= base && r.delayMs <= 2 * base, `attempt ${r.attempt} waited ${r.delayMs} ms`);
    }
    assert.equal(server.connections, 5);
  });

  test('a good message then an oversize one on every connection, default retry: at most 5 connections in 5 s (was 10-16 per 8 s)', async (t) => {
    const good = rawFrame(Buffer.from('hello'), { opcode: 0x1 });
    const oversize = rawFrame(Buffer.alloc(32 * MiB)).subarray(0, 10);
    const server = await startRawWsServer((socket) => socket.write(Buffer.concat([good, oversize])));
    t.after(() => server.close());
    const source = websocketSource({ url: server.url });
    t.after(() => source.destroy());
    const reconnects: RetryEvent[] = [];
    source.on('reconnect', (e: RetryEvent) => reconnects.push(e));
    let messages = 0;
    source.on('data', () => (messages += 1));
    await sleep(5_000);
    // The delays are at least 200, 400, 800, 1600 ms: a fifth reconnect cannot come before 3 s, a sixth before 6.2 s.
    assert.ok(server.connections <= 5, `${server.connections} connections`);
    assert.ok(server.connections >= 2, `${server.connections} connections`);
    assert.deepEqual(reconnects.map((r) => r.attempt), reconnects.map((_, i) => i + 1), 'a message before the oversize frame does not reset the backoff');
    // Each connection delivered its good message before the oversize frame killed it.
    assert.ok(messages >= server.connections - 1 && messages <= server.connections, `${messages} messages, ${server.connections} connections`);
    assert.match(reconnects[0]!.error.message, /Max payload size exceeded/);
  });

  test('a server closing with 1008 (policy) right after the upgrade is backed off; a healthy one is not', async (t) => {
    const refusing = await startWsServer({ onConnection: (ws) => ws.close(1008, 'not allowed') });
    t.after(() => refusing.close());
    const source = websocketSource({ url: refusing.url, retry: { retries: 3, minTimeoutMs: 20, maxTimeoutMs: 10_000 } });
    t.after(() => source.destroy());
    const reconnects: RetryEvent[] = [];
    source.on('reconnect', (e: RetryEvent) => reconnects.push(e));
    source.resume();
    const [error] = (await once(source, 'error')) as [ManifoldError];
    assert.equal(error.code, ErrorCodes.RETRIES_EXHAUSTED);
    assert.match(error.message, /closed with code 1008 \(not allowed\)/);
    assert.deepEqual(reconnects.map((r) => r.attempt), [1, 2, 3]);

    // Three messages, then a normal close: that connection worked, and each loss starts a new outage.
    const healthy = await startWsServer({
      onConnection: (ws) => {
        for (const m of ['a', 'b', 'c']) ws.send(m);
        // Later than the upgrade: a connection that closes while it is still being opened is a failed attempt.
        setTimeout(() => ws.close(1001, 'going away'), 100);
      },
    });
    t.after(() => healthy.close());
    const feed = websocketSource({ url: healthy.url, retry: { retries: 2, minTimeoutMs: 20, maxTimeoutMs: 10_000 } });
    t.after(() => feed.destroy());
    const healthyReconnects: RetryEvent[] = [];
    feed.on('reconnect', (e: RetryEvent) => healthyReconnects.push(e));
    let got = 0;
    feed.on('data', () => (got += 1));
    await until('12 messages over 4 connections', () => got >= 12);
    assert.ok(healthyReconnects.length >= 3);
    assert.ok(healthyReconnects.every((r) => r.attempt === 1), `attempts ${healthyReconnects.map((r) => r.attempt).join(',')}`);
    feed.destroy();
  });

  test('maxInFlightBytes pauses the socket by bytes long before highWaterMark, and resumes at half', async (t) => {
    const size = 256 * 1024;
    const { server } = await startFloodServer({ size, bufferLimitBytes: 512 * 1024 });
    t.after(() => server.close());
    const source = websocketSource({ url: server.url, maxInFlightBytes: 2 * MiB, highWaterMark: 1024 });
    t.after(() => source.destroy());
    source.read(0);
    await until('the socket to pause', () => source.socketsPaused);
    await sleep(500);
    // 8 messages reach 2 MiB; what ws had read when the socket paused may complete one more.
    assert.ok(source.readableLength >= 8 && source.readableLength <= 9, `held ${source.readableLength} messages`);
    assert.ok(source.bufferedBytes <= 2 * MiB + size, `held ${source.bufferedBytes} bytes`);
    assert.equal(source.bufferedBytes, source.readableLength * size);
    // Read down to half the bound: the socket resumes and more arrives.
    let read = 0;
    while (source.bufferedBytes > MiB) {
      assert.ok(source.read() !== null);
      read += 1;
    }
    assert.equal(source.socketsPaused, false);
    await until('more messages after the resume', () => source.socketsPaused && source.readableLength >= 8);
    assert.ok(source.bufferedBytes <= 2 * MiB + size);
    t.diagnostic(`read ${read}, held again ${source.readableLength} (${source.bufferedBytes} bytes)`);
  });
});

describe('close() and destroy() at any moment of a connect', () => {
  test('websocketSource: 40 connects stopped after 0-40 ms (TCP connect, upgrade, onOpen): no socket left, the stream ends', async (t) => {
    const server = await startWsServer();
    t.after(() => server.close());
    // The upgrade is answered after 0-20 ms and onOpen takes 0-20 ms more, so the stop lands anywhere in the connect.
    server.wss.options.verifyClient = (_info: unknown, done: (ok: boolean) => void) => setTimeout(() => done(true), Math.random() * 20);
    const baseline = tcpHandles();
    let graceful = 0;
    for (let i = 0; i < 40; i++) {
      const source = websocketSource({ url: server.url, onOpen: () => sleep(Math.random() * 20) });
      source.resume();
      await sleep(Math.random() * 40);
      if (i % 2 === 0) {
        await source.close();
        assert.equal(source.readableEnded, true);
        graceful += 1;
      } else {
        const closed = once(source, 'close');
        source.destroy();
        await closed;
      }
      await until(`no socket of attempt ${i}`, () => source.connections === 0);
    }
    await until('every server-side socket closed', () => server.clients.size === 0);
    await until('no TCP handle left', () => tcpHandles() <= baseline);
    t.diagnostic(`${server.accepted.length} upgrades accepted of 40 connects (${graceful} closed, ${40 - graceful} destroyed)`);
  });

  test('websocketSink: 40 connects ended or destroyed after 0-40 ms: no socket left, what end() flushed arrived', async (t) => {
    const received: string[] = [];
    const server = await startWsServer({ onConnection: (ws) => ws.on('message', (d) => received.push(String(d))) });
    t.after(() => server.close());
    server.wss.options.verifyClient = (_info: unknown, done: (ok: boolean) => void) => setTimeout(() => done(true), Math.random() * 20);
    const baseline = tcpHandles();
    const ended: string[] = [];
    for (let i = 0; i < 40; i++) {
      const sink = websocketSink({ url: server.url, onOpen: () => sleep(Math.random() * 20) });
      sink.on('error', () => {});
      sink.write(`m${i}`);
      await sleep(Math.random() * 40);
      const closed = once(sink, 'close');
      if (i % 2 === 0) {
        sink.end();
        ended.push(`m${i}`);
      } else {
        sink.destroy();
      }
      await closed;
    }
    await until('every server-side socket closed', () => server.clients.size === 0);
    await until('no TCP handle left', () => tcpHandles() <= baseline);
    // A graceful end() delivers what was written, whenever it came.
    for (const m of ended) assert.ok(received.includes(m), `${m} was ended gracefully but did not arrive`);
  });
});
