import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import type { Message } from '../../lib/core/message.js';
import type { RetryEvent } from '../../lib/core/retry.js';
import { websocketSource, type WebSocketOpenInfo, type WebSocketSource } from '../../lib/websocket/source.js';
import { sourceConformance } from '../conformance/suite.js';
import { deadUrl, startBroadcaster, startEchoServer, startFeed, startFloodServer, startWsServer } from '../fixtures/websocket.js';

const fastRetry = { retries: 3, minTimeoutMs: 10, maxTimeoutMs: 50 };

/** Reads messages until `until` says stop (or the timeout passes, which fails the test). */
function collect(source: WebSocketSource, until: (got: Message[]) => boolean, timeoutMs = 10_000): Promise<Message[]> {
  const got: Message[] = [];
  return new Promise<Message[]>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${timeoutMs} ms with ${got.length} messages`));
    }, timeoutMs);
    const onData = (m: Message): void => {
      got.push(m);
      if (until(got)) {
        cleanup();
        resolve(got);
      }
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      source.off('data', onData);
      source.off('error', onError);
      source.pause();
    };
    source.on('data', onData);
    source.on('error', onError);
    // An earlier collect() paused the stream explicitly; a new 'data' listener alone would not restart it.
    source.resume();
  });
}

/** close() resolves once the stream has ended, so whatever is still buffered has to be read. */
async function stop(source: WebSocketSource): Promise<void> {
  source.resume();
  await source.close();
}

function texts(messages: Message[]): string[] {
  return messages.map((m) => m.data.toString());
}

describe('websocketSource options', () => {
  test('bad options throw synchronously, naming the option, the value and what is allowed', () => {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{}, /options\.url must be a ws:\/\/ or wss:\/\/ URL, got undefined/],
      [{ url: 'ftp://x' }, /options\.url must be a ws:\/\/ or wss:\/\/ URL, got "ftp:\/\/x\/"/],
      [{ url: 'not a url' }, /options\.url must be a ws:\/\/ or wss:\/\/ URL/],
      [{ url: 'ws://x/#frag' }, /without a #fragment/],
      [{ url: 'ws://x', reconnectEveryMs: -1 }, /options\.reconnectEveryMs must be a number of at least 1 \(milliseconds\), got -1/],
      [{ url: 'ws://x', heartbeatIntervalMs: 'soon' }, /options\.heartbeatIntervalMs must be a number/],
      [{ url: 'ws://x', heartbeatIntervalMs: 0, heartbeatTimeoutMs: 10 }, /heartbeatTimeoutMs and options\.heartbeatIntervalMs cannot be combined/],
      [{ url: 'ws://x', headers: { Authorization: 42 } }, /options\.headers\["Authorization"\] must be a string, got "number"/],
      [{ url: 'ws://x', protocols: ['a b'] }, /options\.protocols must be a subprotocol name/],
      [{ url: 'ws://x', protocols: ['a', 'a'] }, /options\.protocols must be/],
      [{ url: 'ws://x', onOpen: 'subscribe' }, /options\.onOpen must be a function/],
      [{ url: 'ws://x', retry: { retries: -1 } }, /options\.retry\.retries must be a non-negative integer/],
      [{ url: 'ws://x', highWaterMark: 0 }, /options\.highWaterMark must be a positive integer/],
      [{ url: 'ws://x', reconectEveryMs: 5 }, /unknown option "reconectEveryMs" \(did you mean "reconnectEveryMs"\?\)/],
      [{ url: 'ws://x', hearbeatIntervalMs: 5 }, /unknown option "hearbeatIntervalMs" \(did you mean "heartbeatIntervalMs"\?\)/],
      [{ url: 'ws://x', headers: 'Bearer hunter2' }, /options\.headers must be an object of header names to strings, got "\(hidden\)"/],
      [{ url: 'ws://x', retry: 5 }, /options\.retry must be false or an object of retry settings/],
      [{ url: 'ws://x', maxPayloadBytes: 1.5 }, /options\.maxPayloadBytes must be a positive integer \(bytes\), got 1\.5/],
    ];
    for (const [options, message] of bad) {
      assert.throws(
        () => websocketSource(options as never),
        (error: unknown) => error instanceof ManifoldError && error.code === ErrorCodes.INVALID_OPTION && message.test(error.message),
        `expected ${message} for ${JSON.stringify(options)}`,
      );
    }
  });

  test('a password in a bad URL is not echoed', () => {
    assert.throws(() => websocketSource({ url: 'ftp://user:hunter2@x/' }), (error: Error) => !error.message.includes('hunter2') && error.message.includes('***'));
  });
});

describe('websocketSource', { timeout: 60_000 }, () => {
  test('echo round trip: text and binary messages, in order, with meta', async (t) => {
    const server = await startEchoServer();
    t.after(() => server.close());
    const source = websocketSource({
      url: server.url,
      onOpen: (ws) => {
        for (let i = 0; i < 50; i++) ws.send(`text-${i}`);
        ws.send(Buffer.from([0, 1, 2, 255]));
      },
    });
    t.after(() => source.destroy());
    const opened: WebSocketOpenInfo[] = [];
    source.on('open', (info: WebSocketOpenInfo) => opened.push(info));
    const before = Date.now();
    const got = await collect(source, (g) => g.length === 51);
    assert.deepEqual(texts(got.slice(0, 50)), Array.from({ length: 50 }, (_, i) => `text-${i}`));
    assert.deepEqual([...got[50]!.data], [0, 1, 2, 255]);
    assert.equal(got[0]!.meta?.binary, false);
    assert.equal(got[50]!.meta?.binary, true);
    assert.equal(got[0]!.meta?.connectionId, 1);
    assert.ok((got[0]!.meta?.receivedAt as number) >= before);
    assert.equal(got[0]!.timestamp, got[0]!.meta?.receivedAt);
    assert.deepEqual(opened.map((o) => [o.connectionId, o.reason, o.url]), [[1, 'connect', server.url]]);
    // Acks are harmless no-ops: a WebSocket server cannot redeliver.
    got[0]!.ack();
    got[1]!.nack(new Error('x'));
    await stop(source);
    assert.equal(source.readableEnded, true);
  });

  test('sends headers, credentials and subprotocols on the upgrade', async (t) => {
    const server = await startEchoServer({ protocols: ['feed.v2'] });
    t.after(() => server.close());
    const url = server.url.replace('ws://', 'ws://alice:s3cret@');
    const source = websocketSource({ url, headers: { 'X-Api-Key': 'k-123' }, protocols: ['feed.v1', 'feed.v2'], onOpen: (ws) => ws.send('hi') });
    t.after(() => source.destroy());
    const opened = once(source, 'open');
    await collect(source, (g) => g.length === 1);
    const [info] = (await opened) as [WebSocketOpenInfo];
    assert.equal(info.protocol, 'feed.v2');
    assert.ok(!info.url.includes('s3cret') && info.url.includes('alice:***@'), info.url);
    assert.equal(source.url, info.url);
    const { req } = server.accepted[0]!;
    assert.equal(req.headers['x-api-key'], 'k-123');
    assert.equal(req.headers.authorization, `Basic ${Buffer.from('alice:s3cret').toString('base64')}`);
    await stop(source);
  });

  test('a server that closes at message 10: the source reconnects, resubscribes and carries on', async (t) => {
    const feed = await startBroadcaster({ intervalMs: 5, closeAfter: 10 });
    t.after(() => feed.server.close());
    const source = websocketSource({ url: feed.server.url, onOpen: (ws) => ws.send('subscribe'), retry: fastRetry });
    t.after(() => source.destroy());
    const reconnects: RetryEvent[] = [];
    const disconnects: Array<{ code: number; expected: boolean }> = [];
    source.on('reconnect', (e: RetryEvent) => reconnects.push(e));
    source.on('disconnect', (e: { code: number; expected: boolean }) => disconnects.push(e));
    const got = await collect(source, (g) => g.length === 25);
    const ids = new Set(got.map((m) => m.meta?.connectionId));
    assert.deepEqual([...ids], [1, 2, 3], 'ten messages per connection, then a new connection');
    assert.equal(got.filter((m) => m.meta?.connectionId === 1).length, 10);
    assert.ok(reconnects.length >= 2);
    assert.match(reconnects[0]!.error.message, /connection to .* was lost: closed with code 1012 \(restarting\)/);
    assert.equal(reconnects[0]!.attempt, 1);
    assert.deepEqual(disconnects.slice(0, 2).map((d) => [d.code, d.expected]), [[1012, false], [1012, false]]);
    // Sequence numbers increase: nothing is replayed, and the source kept going through each restart.
    const seqs = texts(got).map(Number);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
    await stop(source);
  });

  test("a server closing with 4001 and a reason: the reconnect error names both, after and during onOpen; 'ready' on every connect", async (t) => {
    let connections = 0;
    const server = await startWsServer({
      onConnection: (ws) => {
        const index = connections++;
        ws.on('message', () => {
          // The first connection is refused while onOpen still runs; the second after it was adopted.
          if (index === 0) ws.close(4001, 'token expired');
          else if (index === 1) setTimeout(() => ws.close(4001, 'session revoked'), 300);
          else setTimeout(() => ws.send('hello'), 300);
        });
      },
    });
    t.after(() => server.close());
    const source = websocketSource({
      url: server.url,
      onOpen: async (ws) => {
        ws.send('subscribe');
        await sleep(100);
      },
      retry: fastRetry,
    });
    t.after(() => source.destroy());
    const reconnects: RetryEvent[] = [];
    const ready: Array<{ connectionId: number }> = [];
    source.on('reconnect', (e: RetryEvent) => reconnects.push(e));
    source.on('ready', (e: { connectionId: number }) => ready.push(e));
    const got = await collect(source, (g) => g.length === 1);
    assert.equal(got[0]!.data.toString(), 'hello');
    assert.deepEqual(ready.map((r) => r.connectionId), [2, 3]);
    assert.equal(reconnects.length, 2);
    const [during, after] = reconnects.map((r) => r.error as ManifoldError);
    assert.match(during!.message, /closed with code 4001 \(token expired\)/);
    assert.equal(during!.closeCode, 4001);
    assert.equal(during!.closeReason, 'token expired');
    assert.match(after!.message, /was lost: closed with code 4001 \(session revoked\)/);
    assert.equal(after!.closeCode, 4001);
    assert.equal(after!.closeReason, 'session revoked');
    await stop(source);
  });

  test('a server that drops the TCP connection without a close frame: reconnected', async (t) => {
    let count = 0;
    const server = await startWsServer({
      onConnection: (ws) => {
        count += 1;
        ws.send(`hello-${count}`);
        if (count === 1) setTimeout(() => ws.terminate(), 20);
      },
    });
    t.after(() => server.close());
    const source = websocketSource({ url: server.url, retry: fastRetry });
    t.after(() => source.destroy());
    const got = await collect(source, (g) => g.length === 2);
    assert.deepEqual(texts(got), ['hello-1', 'hello-2']);
    await stop(source);
  });

  test('reconnectEveryMs of 1 s over 150 messages: swaps, nothing missed', async (t) => {
    const feed = await startBroadcaster({ intervalMs: 15 });
    t.after(() => feed.server.close());
    const source = websocketSource({ url: feed.server.url, reconnectEveryMs: 1000, onOpen: (ws) => ws.send('subscribe') });
    t.after(() => source.destroy());
    const swaps: Array<{ from: number; to: number }> = [];
    source.on('swap', (s: { from: number; to: number }) => swaps.push(s));
    const seen = new Set<number>();
    let first = 0;
    await collect(source, (g) => {
      const seq = Number(g[g.length - 1]!.data.toString());
      first ||= seq;
      seen.add(seq);
      return seen.size >= 150 && seen.has(first + 149);
    }, 20_000);
    for (let s = first; s < first + 150; s++) assert.ok(seen.has(s), `sequence ${s} missing`);
    assert.ok(swaps.length >= 1, `expected swaps, got ${JSON.stringify(swaps)}`);
    assert.deepEqual(swaps[0], { from: 1, to: 2 });
    await stop(source);
  });

  test('swaps without gaps: every broadcast sequence number arrives at least once across several swaps', async (t) => {
    const feed = await startBroadcaster({ intervalMs: 2, perTick: 5 });
    t.after(() => feed.server.close());
    const source = websocketSource({
      url: feed.server.url,
      reconnectEveryMs: 150,
      // A slow subscription makes the overlap matter: break-before-make would lose everything sent meanwhile.
      onOpen: async (ws) => {
        ws.send('subscribe');
        await sleep(20);
      },
    });
    t.after(() => source.destroy());
    let swaps = 0;
    source.on('swap', () => (swaps += 1));
    const seen = new Set<number>();
    await collect(source, (g) => {
      seen.add(Number(g[g.length - 1]!.data.toString()));
      return swaps >= 4;
    }, 20_000);
    await stop(source);
    const sorted = [...seen].sort((a, b) => a - b);
    const first = sorted[0]!;
    const last = sorted[sorted.length - 1]!;
    const missing = [];
    for (let s = first; s <= last; s++) if (!seen.has(s)) missing.push(s);
    assert.deepEqual(missing, [], `gaps across ${swaps} swaps`);
    assert.ok(last - first > 100, `too few messages to mean anything: ${first}..${last}`);
    // Every connection the source opened was subscribed by onOpen and then closed by us, not the server.
    assert.ok(feed.server.accepted.length >= 5);
    assert.equal(feed.server.clients.size, 0);
  });

  test('a swap that cannot connect keeps the old connection, reports swapfailed, and swaps later', async (t) => {
    const feed = await startBroadcaster({ intervalMs: 5 });
    t.after(() => feed.server.close());
    let refuse = false;
    feed.server.wss.options.verifyClient = (_info: unknown, done: (ok: boolean, status?: number) => void) => (refuse ? done(false, 401) : done(true));
    // The fixture's path check is replaced above; any path is accepted, which is fine here.
    const source = websocketSource({ url: feed.server.url, reconnectEveryMs: 150, onOpen: (ws) => ws.send('subscribe'), retry: fastRetry });
    t.after(() => source.destroy());
    const failures: Array<{ connectionId: number; error: ManifoldError }> = [];
    source.on('swapfailed', (f: { connectionId: number; error: ManifoldError }) => failures.push(f));
    source.once('open', () => (refuse = true));
    await collect(source, () => failures.length >= 1, 5000);
    assert.equal(failures[0]!.connectionId, 1);
    assert.equal(failures[0]!.error.code, ErrorCodes.AUTH);
    // Still reading the first connection.
    const more = await collect(source, (g) => g.length >= 5);
    assert.ok(more.every((m) => m.meta?.connectionId === 1));
    const swapped = once(source, 'swap');
    refuse = false;
    source.resume();
    const [swap] = (await swapped) as [{ from: number; to: number }];
    assert.equal(swap.from, 1);
    await stop(source);
  });

  test('a retired connection whose server never answers the close frame is terminated after closeTimeoutMs', async (t) => {
    let first = true;
    const server = await startWsServer({
      onConnection: (ws) => {
        // The first connection stops reading: it will never see, nor answer, our close frame.
        if (first) ws.pause();
        first = false;
      },
    });
    t.after(() => server.close());
    const source = websocketSource({ url: server.url, reconnectEveryMs: 100, closeTimeoutMs: 150 });
    t.after(() => source.destroy());
    source.resume();
    const disconnects: Array<{ connectionId: number; code: number; expected: boolean }> = [];
    source.on('disconnect', (d: { connectionId: number; code: number; expected: boolean }) => disconnects.push(d));
    await once(source, 'swap');
    const start = Date.now();
    while (!disconnects.some((d) => d.connectionId === 1) && Date.now() - start < 5000) await sleep(10);
    const d = disconnects.find((x) => x.connectionId === 1);
    assert.ok(d, 'connection 1 was closed');
    assert.equal(d.code, 1006, 'terminated, not closed by a handshake');
    assert.equal(d.expected, true);
    await stop(source);
  });

  test('the current connection dying during a swap: the swap takes over without a reconnect', async (t) => {
    const server = await startWsServer();
    t.after(() => server.close());
    const source = websocketSource({
      url: server.url,
      reconnectEveryMs: 100,
      onOpen: async (_ws, info) => {
        if (info.reason !== 'swap') return;
        // While the new connection is being set up, the old one is dropped by the server.
        server.accepted[0]!.ws.terminate();
        await sleep(100);
      },
      retry: fastRetry,
    });
    t.after(() => source.destroy());
    source.on('reconnect', () => assert.fail('the swap should take over'));
    source.resume();
    const [swap] = (await once(source, 'swap')) as [{ from: number; to: number }];
    assert.deepEqual(swap, { from: 1, to: 2 });
    await stop(source);
  });

  test('a server that stops answering pings without closing is detected and reconnected', async (t) => {
    const server = await startWsServer({ autoPong: false, onConnection: (ws) => ws.send('hi') });
    t.after(() => server.close());
    const source = websocketSource({ url: server.url, heartbeatIntervalMs: 100, heartbeatTimeoutMs: 200, retry: fastRetry });
    t.after(() => source.destroy());
    const reconnected = once(source, 'reconnect') as Promise<[RetryEvent]>;
    const start = Date.now();
    await collect(source, (g) => g.length === 1);
    const [event] = await reconnected;
    const elapsed = Date.now() - start;
    assert.match(event.error.message, /no pong within 200 ms/);
    // Interval + timeout is 300 ms; allow for a busy machine.
    assert.ok(elapsed < 3000, `took ${elapsed} ms`);
    await server.waitForConnections(2);
    const first = server.accepted[0]!.ws;
    if (first.readyState !== WebSocket.CLOSED) await once(first, 'close');
    await stop(source);
  });

  test('a server that answers pings is not dropped', async (t) => {
    const server = await startWsServer({ onConnection: (ws) => ws.send('hi') });
    t.after(() => server.close());
    const source = websocketSource({ url: server.url, heartbeatIntervalMs: 20, heartbeatTimeoutMs: 500 });
    t.after(() => source.destroy());
    let pings = 0;
    server.wss.on('connection', (ws) => ws.on('ping', () => (pings += 1)));
    source.on('reconnect', () => assert.fail('no reconnect expected'));
    await collect(source, (g) => g.length === 1);
    const ws = server.accepted[0]!.ws;
    ws.on('ping', () => (pings += 1));
    await sleep(400);
    assert.ok(pings >= 3, `expected pings, got ${pings}`);
    assert.equal(server.accepted.length, 1);
    await stop(source);
  });

  test('a server gone for good: fails after the retry budget naming the URL (no password) and the cause', async (t) => {
    const url = await deadUrl('bob:topsecret@');
    const source = websocketSource({ url, retry: { retries: 2, minTimeoutMs: 10, maxTimeoutMs: 20 } });
    const reconnects: RetryEvent[] = [];
    source.on('reconnect', (e: RetryEvent) => reconnects.push(e));
    source.resume();
    const [error] = (await once(source, 'error')) as [ManifoldError];
    assert.equal(error.code, ErrorCodes.RETRIES_EXHAUSTED);
    assert.match(error.message, /websocketSource: connecting to ws:\/\/bob:\*\*\*@127\.0\.0\.1:\d+\/.* failed after 3 attempts: .*ECONNREFUSED/);
    assert.ok(!error.message.includes('topsecret'));
    assert.equal(((error.cause as Error).cause as NodeJS.ErrnoException).code, 'ECONNREFUSED');
    assert.deepEqual(reconnects.map((r) => r.attempt), [1, 2]);
    for (const r of reconnects) assert.ok(!r.error.message.includes('topsecret'));
    t.after(() => source.destroy());
  });

  test('a server that was up and then disappears: reconnects, then fails with the clear error', async (t) => {
    const server = await startWsServer({ onConnection: (ws) => ws.send('only') });
    const source = websocketSource({ url: server.url, retry: { retries: 2, minTimeoutMs: 10, maxTimeoutMs: 20 } });
    t.after(() => source.destroy());
    await collect(source, (g) => g.length === 1);
    const failed = once(source, 'error') as Promise<[ManifoldError]>;
    source.resume();
    await server.close();
    const [error] = await failed;
    assert.equal(error.code, ErrorCodes.RETRIES_EXHAUSTED);
    assert.ok(error.message.includes(server.url));
  });

  test('retry: false fails at the first lost connection', async (t) => {
    const server = await startWsServer({ onConnection: (ws) => setTimeout(() => ws.close(1011, 'boom'), 10) });
    t.after(() => server.close());
    const source = websocketSource({ url: server.url, retry: false });
    source.resume();
    const [error] = (await once(source, 'error')) as [ManifoldError];
    assert.equal(error.code, ErrorCodes.CONNECTION);
    assert.match(error.message, /connection to ws:\/\/127.*was lost: closed with code 1011 \(boom\)/);
  });

  test('HTTP 401 on the upgrade is fatal at once; 503 is retried', async (t) => {
    const denied = await startWsServer({ refuseWith: 401 });
    t.after(() => denied.close());
    const source = websocketSource({ url: denied.url, retry: fastRetry });
    source.on('reconnect', () => assert.fail('401 must not be retried'));
    source.resume();
    const [error] = (await once(source, 'error')) as [ManifoldError];
    assert.equal(error.code, ErrorCodes.AUTH);
    assert.equal(error.status, 401);
    assert.match(error.message, /websocketSource: ws:\/\/127.*refused the WebSocket upgrade with HTTP 401/);

    const busy = await startWsServer({ refuseWith: 503 });
    t.after(() => busy.close());
    const retried = websocketSource({ url: busy.url, retry: { retries: 1, minTimeoutMs: 5, maxTimeoutMs: 5 } });
    retried.resume();
    const [busyError] = (await once(retried, 'error')) as [ManifoldError];
    assert.equal(busyError.code, ErrorCodes.RETRIES_EXHAUSTED);
    assert.equal(busy.accepted.length, 0);
  });

  test('onOpen failing with a fatal error fails the stream, naming the connection', async (t) => {
    const server = await startWsServer();
    t.after(() => server.close());
    const source = websocketSource({
      url: server.url,
      retry: fastRetry,
      onOpen: () => {
        throw new TypeError('bad subscription');
      },
    });
    source.resume();
    const [error] = (await once(source, 'error')) as [ManifoldError];
    assert.match(error.message, /options\.onOpen failed on connection 1: bad subscription/);
    assert.equal(server.accepted.length, 1);
  });

  test('a slow consumer pauses the socket: the server is held back and memory stays bounded', async (t) => {
    const size = 1024;
    const { server, stats } = await startFloodServer({ size, bufferLimitBytes: 256 * 1024 });
    t.after(() => server.close());
    const highWaterMark = 64;
    const source = websocketSource({ url: server.url, highWaterMark });
    t.after(() => source.destroy());
    const rssBefore = process.memoryUsage.rss();
    let consumed = 0;
    let maxReadable = 0;
    let pausedSeen = false;
    // Read 20 messages every 10 ms (about 2 MB/s) for 2 s while the server could send hundreds of MB/s.
    const deadline = Date.now() + 2000;
    await once(source, 'readable');
    while (Date.now() < deadline) {
      for (let i = 0; i < 20; i++) {
        maxReadable = Math.max(maxReadable, source.readableLength);
        pausedSeen ||= source.socketsPaused;
        if (source.read() !== null) consumed += 1;
      }
      await sleep(10);
    }
    const rssGrowthMiB = (process.memoryUsage.rss() - rssBefore) / 1024 / 1024;
    // The server saw TCP backpressure: its buffer filled up and it had to wait, again and again.
    assert.ok(stats.stalls > 10, `server stalls: ${stats.stalls}`);
    assert.ok(stats.maxBufferedAmount >= 256 * 1024);
    assert.ok(pausedSeen, 'the source paused its socket');
    // What the server wrote is what we consumed plus kernel buffers, not the flood it could produce.
    const inFlightMiB = ((stats.written - consumed) * size) / 1024 / 1024;
    assert.ok(inFlightMiB < 64, `written ${stats.written}, consumed ${consumed}: ${inFlightMiB.toFixed(1)} MiB in flight`);
    // Our own buffer stays at the high-water mark plus what ws had already read when the socket was paused
    // (a 64 KiB socket read is 64 messages of 1 KiB; allow two).
    assert.ok(maxReadable <= highWaterMark + 128, `readableLength reached ${maxReadable}`);
    assert.ok(rssGrowthMiB < 150, `RSS grew ${rssGrowthMiB.toFixed(1)} MiB`);
    assert.ok(consumed > 100);
    t.diagnostic(`server stalls ${stats.stalls}, written ${stats.written}, consumed ${consumed}, max readableLength ${maxReadable}, RSS +${rssGrowthMiB.toFixed(1)} MiB`);
    await stop(source);
  });

  test('piped into a slow sink (flowing mode): every numbered message arrives once, in order, and the socket pauses', async (t) => {
    const total = 20_000;
    const size = 512;
    const server = await startWsServer({
      onConnection: (ws) => {
        let next = 0;
        const pump = (): void => {
          while (ws.readyState === WebSocket.OPEN && next < total) {
            // Held back by TCP once the client pauses: the buffered amount grows, and the server waits.
            if (ws.bufferedAmount >= 256 * 1024) {
              setTimeout(pump, 2);
              return;
            }
            const frame = Buffer.alloc(size, 0x61);
            frame.writeUInt32BE(next++, 0);
            ws.send(frame, { binary: true });
            if (next % 500 === 0) {
              setImmediate(pump);
              return;
            }
          }
        };
        pump();
      },
    });
    t.after(() => server.close());
    const highWaterMark = 64;
    const source = websocketSource({ url: server.url, highWaterMark, heartbeatIntervalMs: 0 });
    t.after(() => source.destroy());
    const seen: number[] = [];
    let pausedSeen = false;
    let maxReadable = 0;
    const sink = new Writable({
      objectMode: true,
      highWaterMark: 16,
      write(message: Message, _encoding, callback) {
        seen.push(message.data.readUInt32BE(0));
        pausedSeen ||= source.socketsPaused;
        maxReadable = Math.max(maxReadable, source.readableLength);
        if (seen.length === total) {
          callback();
          void source.close();
          return;
        }
        // A sink slower than the feed: a short wait every 200 messages.
        if (seen.length % 200 === 0) setTimeout(callback, 1);
        else callback();
      },
    });
    await pipeline(source, sink);
    assert.equal(seen.length, total);
    const gaps = seen.filter((n, i) => n !== i);
    assert.deepEqual(gaps.slice(0, 5), [], 'messages arrive once each, in order');
    assert.ok(pausedSeen, 'the slow sink paused the socket');
    assert.ok(maxReadable <= highWaterMark + 256, `readableLength reached ${maxReadable}`);
  });

  test('close() while connecting, and before the first read, end the stream without a connection', async (t) => {
    const url = await deadUrl();
    const idle = websocketSource({ url });
    const ended = once(idle, 'end');
    const closing = idle.close();
    idle.resume();
    await Promise.all([closing, ended]);

    const server = await startWsServer();
    t.after(() => server.close());
    // The upgrade is answered only after a delay: close() lands during the handshake.
    server.wss.options.verifyClient = (_info: unknown, done: (ok: boolean) => void) => setTimeout(() => done(true), 200);
    const connecting = websocketSource({ url: server.url });
    const connectingEnded = once(connecting, 'end');
    connecting.resume();
    await server.waitForConnections(0);
    await sleep(50);
    await connecting.close();
    await connectingEnded;
    assert.equal(connecting.connections, 0);
  });

  test('close() during the backoff after a loss stops reconnecting', async (t) => {
    const server = await startWsServer({ onConnection: (ws) => ws.close(1001, 'going away') });
    t.after(() => server.close());
    const source = websocketSource({ url: server.url, retry: { retries: 5, minTimeoutMs: 500, maxTimeoutMs: 500 } });
    source.resume();
    await once(source, 'reconnect');
    const accepted = server.accepted.length;
    await stop(source);
    await sleep(600);
    assert.equal(server.accepted.length, accepted);
    assert.equal(source.readableEnded, true);
  });

  test('close() sends a close frame (1000), delivers what arrived before it, and is idempotent', async (t) => {
    const server = await startEchoServer();
    t.after(() => server.close());
    const source = websocketSource({ url: server.url, onOpen: (ws) => ws.send('a') });
    await collect(source, (g) => g.length === 1);
    const serverSide = server.accepted[0]!.ws;
    const closed = once(serverSide, 'close');
    // Sent by the server before it sees our close frame: still delivered.
    serverSide.send('b');
    serverSide.send('c');
    const rest: string[] = [];
    source.on('data', (m: Message) => rest.push(m.data.toString()));
    source.resume();
    const p1 = source.close();
    const p2 = source.close();
    assert.equal(p1, p2);
    await p1;
    const [code] = await closed;
    assert.equal(code, 1000);
    assert.deepEqual(rest, ['b', 'c']);
    assert.equal(source.connections, 0);
    assert.equal(source.readableEnded, true);
  });

  test('destroy() and an aborted signal terminate the socket at once', async (t) => {
    const server = await startEchoServer();
    t.after(() => server.close());
    const controller = new AbortController();
    const source = websocketSource({ url: server.url, signal: controller.signal, onOpen: (ws) => ws.send('x') });
    await collect(source, (g) => g.length === 1);
    const closed = once(server.accepted[0]!.ws, 'close');
    controller.abort();
    const [error] = (await once(source, 'error')) as [Error];
    assert.equal(error.name, 'AbortError');
    const [code] = await closed;
    assert.equal(code, 1006);
  });
});

sourceConformance({
  name: 'websocket',
  // A WebSocket server cannot redeliver, and a client sees only what is sent while it is connected.
  redelivers: false,
  liveOnly: true,
  async setup() {
    const feed = await startFeed();
    return {
      source: (options) => websocketSource({ url: feed.server.url, ...(options?.signal ? { signal: options.signal } : {}) }),
      produce: (payloads) => feed.produce(payloads),
      cleanup: () => feed.server.close(),
    };
  },
});
