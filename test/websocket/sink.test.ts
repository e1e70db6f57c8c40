import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type WebSocket from 'ws';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import type { RetryEvent } from '../../lib/core/retry.js';
import { websocketSink, type WebSocketSinkOpenInfo } from '../../lib/websocket/sink.js';
import { sinkConformance } from '../conformance/suite.js';
import { deadUrl, startCollector, startWsServer } from '../fixtures/websocket.js';

const fastRetry = { retries: 3, minTimeoutMs: 10, maxTimeoutMs: 50 };

/** Messages whose acks and nacks are recorded. */
function tracked(payloads: Array<string | Buffer>): { messages: Message[]; acked: Set<number>; nacked: Map<number, Error> } {
  const acked = new Set<number>();
  const nacked = new Map<number, Error>();
  const messages = payloads.map((data, i) =>
    createMessage({ data, onAck: () => acked.add(i), onNack: (error) => nacked.set(i, error) }),
  );
  return { messages, acked, nacked };
}

describe('websocketSink options', () => {
  test('bad options throw synchronously, naming the option, the value and what is allowed', () => {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{}, /websocketSink: options\.url must be a ws:\/\/ or wss:\/\/ URL, got undefined/],
      [{ url: 'ws://x', messageType: 'json' }, /options\.messageType must be one of "binary", "text", got "json"/],
      [{ url: 'ws://x', maxBufferedBytes: 0 }, /options\.maxBufferedBytes must be a positive integer \(bytes\), got 0/],
      [{ url: 'ws://x', maxInFlight: 0 }, /options\.maxInFlight must be a positive integer, got 0/],
      [{ url: 'ws://x', closeTimeoutMs: -5 }, /options\.closeTimeoutMs must be a number of at least 1 \(milliseconds\), got -5/],
      [{ url: 'ws://x', retry: { retries: 1.5 } }, /websocketSink: options\.retry\.retries must be a non-negative integer/],
      [{ url: 'ws://x', onOpen: 1 }, /options\.onOpen must be a function/],
      [{ url: 'ws://x', signal: 'stop' }, /options\.signal must be an AbortSignal/],
      [{ url: 'ws://x', bufferSize: 1 }, /unknown option "bufferSize"/],
      [{ url: 'ws://x', mesageType: 'text' }, /unknown option "mesageType" \(did you mean "messageType"\?\)/],
      [{ url: 'ws://x', heartbeatIntervalMs: 0, heartbeatTimeoutMs: 5 }, /options\.heartbeatTimeoutMs and options\.heartbeatIntervalMs cannot be combined/],
    ];
    for (const [options, message] of bad) {
      assert.throws(
        () => websocketSink(options as never),
        (error: unknown) => error instanceof ManifoldError && error.code === ErrorCodes.INVALID_OPTION && message.test(error.message),
        `expected ${message} for ${JSON.stringify(options)}`,
      );
    }
  });
});

describe('websocketSink', { timeout: 60_000 }, () => {
  test('sends every message in order and acks each after its send callback', async (t) => {
    const collector = await startCollector();
    t.after(() => collector.server.close());
    const payloads = Array.from({ length: 200 }, (_, i) => `msg-${i}`);
    const { messages, acked, nacked } = tracked(payloads);
    const sink = websocketSink({ url: collector.server.url });
    const opened: WebSocketSinkOpenInfo[] = [];
    sink.on('open', (info: WebSocketSinkOpenInfo) => opened.push(info));
    await pipeline(Readable.from([...messages, 'plain string', Buffer.from([1, 2, 3])]), sink);
    await collector.waitFor(202);
    assert.deepEqual(collector.received.slice(0, 200).map(String), payloads);
    assert.equal(String(collector.received[200]), 'plain string');
    assert.deepEqual([...collector.received[201]!], [1, 2, 3]);
    assert.ok(collector.binary.every((b) => b), 'binary frames by default');
    assert.equal(acked.size, 200);
    assert.equal(nacked.size, 0);
    assert.deepEqual(opened.map((o) => [o.connectionId, o.url]), [[1, collector.server.url]]);
    assert.equal(sink.url, collector.server.url);
  });

  test('ends with a close frame (1000) after the last send', async (t) => {
    const collector = await startCollector();
    t.after(() => collector.server.close());
    const sink = websocketSink({ url: collector.server.url, messageType: 'text' });
    sink.write('last words');
    sink.end();
    await collector.server.waitForConnections(1);
    const [code] = await once(collector.server.accepted[0]!.ws, 'close');
    assert.equal(code, 1000);
    await once(sink, 'finish');
    assert.deepEqual(collector.received.map(String), ['last words']);
    assert.deepEqual(collector.binary, [false]);
  });

  test('headers, credentials, subprotocols, and onOpen before the first message', async (t) => {
    const collector = await startCollector({ protocols: ['ingest.v1'] });
    t.after(() => collector.server.close());
    const url = collector.server.url.replace('ws://', 'ws://svc:pa55@');
    const sink = websocketSink({
      url,
      headers: { 'X-Tenant': 't1' },
      protocols: 'ingest.v1',
      messageType: 'text',
      onOpen: async (ws, info) => {
        assert.equal(info.protocol, 'ingest.v1');
        ws.send('auth');
        await sleep(10);
      },
    });
    await pipeline(Readable.from(['a', 'b']), sink);
    await collector.waitFor(3);
    assert.deepEqual(collector.received.map(String), ['auth', 'a', 'b']);
    const { req } = collector.server.accepted[0]!;
    assert.equal(req.headers['x-tenant'], 't1');
    assert.equal(req.headers.authorization, `Basic ${Buffer.from('svc:pa55').toString('base64')}`);
    assert.ok(!sink.url.includes('pa55'));
  });

  test('backpressure: a server that stops reading holds the sink at maxBufferedBytes; all arrives when it reads again', async (t) => {
    let serverSide: WebSocket | undefined;
    const collector = await startCollector({
      onConnection: (ws) => {
        serverSide = ws;
        ws.pause();
      },
    });
    t.after(() => collector.server.close());
    const maxBufferedBytes = 256 * 1024;
    const sink = websocketSink({ url: collector.server.url, maxBufferedBytes, highWaterMark: 8 });
    const payload = Buffer.alloc(16 * 1024, 0x62);
    const total = 2000; // 32 MiB: far more than the kernel buffers hold
    const { messages, acked } = tracked(Array.from({ length: total }, () => payload));
    let written = 0;
    let maxBuffered = 0;
    let refused = false;
    // Write until the sink refuses, then keep checking that it stays bounded while the server is not reading.
    while (written < total) {
      const ok = sink.write(messages[written++]!);
      maxBuffered = Math.max(maxBuffered, sink.bufferedAmount);
      if (!ok) {
        refused = true;
        const drained = once(sink, 'drain');
        const stalled = await Promise.race([drained.then(() => false), sleep(300).then(() => true)]);
        if (stalled) break;
      }
    }
    assert.ok(refused, 'write() returned false');
    assert.ok(written < total, `the sink took all ${written} messages while the server read nothing`);
    for (let i = 0; i < 10; i++) {
      maxBuffered = Math.max(maxBuffered, sink.bufferedAmount);
      await sleep(10);
    }
    // One frame may be queued past the limit before the sink holds back.
    assert.ok(maxBuffered <= maxBufferedBytes + payload.length + 64, `bufferedAmount reached ${maxBuffered}`);
    assert.ok(sink.writableLength <= 8 + 1, `sink buffered ${sink.writableLength} messages`);
    const ackedWhileStalled = acked.size;
    assert.ok(ackedWhileStalled < written, 'messages still in our buffer are not acked');
    serverSide!.resume();
    for (; written < total; written++) {
      if (!sink.write(messages[written]!)) await once(sink, 'drain');
    }
    sink.end();
    await once(sink, 'finish');
    await collector.waitFor(total, 20_000);
    assert.equal(collector.received.length, total);
    assert.equal(acked.size, total);
  });

  test('a lost connection: reconnects and re-sends every message not acked, in order', async (t) => {
    let connections = 0;
    const perConnection: Buffer[][] = [];
    const server = await startWsServer({
      onConnection: (ws) => {
        const index = connections++;
        const got: Buffer[] = [];
        perConnection.push(got);
        ws.on('message', (data) => got.push(data as Buffer));
        // The first connection stops reading, so messages pile up unacked in the client; then it is dropped.
        if (index === 0) ws.pause();
      },
    });
    t.after(() => server.close());
    const sink = websocketSink({ url: server.url, retry: fastRetry, maxBufferedBytes: 128 * 1024 });
    const total = 1500;
    const payloads = Array.from({ length: total }, (_, i) => Buffer.concat([Buffer.from(`${String(i).padStart(6, '0')}:`), Buffer.alloc(16 * 1024, 0x63)]));
    const { messages, acked, nacked } = tracked(payloads);
    let ackedAtReconnect: Set<number> | undefined;
    const reconnects: RetryEvent[] = [];
    sink.on('reconnect', (e: RetryEvent) => {
      reconnects.push(e);
      ackedAtReconnect ??= new Set(acked);
    });
    const done = pipeline(Readable.from(messages), sink);
    // Wait until the client is stalled on the paused first connection, then drop it.
    await server.waitForConnections(1);
    let last = -1;
    while (acked.size !== last) {
      last = acked.size;
      await sleep(100);
    }
    assert.ok(acked.size < total, 'the first connection must stall');
    server.accepted[0]!.ws.terminate();
    await done;
    assert.equal(nacked.size, 0);
    assert.equal(acked.size, total, 'every message acked in the end');
    assert.ok(reconnects.length >= 1);
    const unackedAtDrop = payloads.map((_, i) => i).filter((i) => !ackedAtReconnect!.has(i));
    assert.ok(unackedAtDrop.length > 0, 'some messages were in flight when the connection was lost');
    const later = perConnection.slice(1).flat().map((b) => Number(b.subarray(0, 6).toString()));
    const laterSet = new Set(later);
    const missing = unackedAtDrop.filter((i) => !laterSet.has(i));
    assert.deepEqual(missing, [], 'unacked messages were re-sent on the new connection');
    // Re-sent in the original order.
    assert.deepEqual(later, [...later].sort((a, b) => a - b));
    t.diagnostic(`${unackedAtDrop.length} unacked at the drop, ${later.length} sent on later connections`);
  });

  test("a server closing with 4001 and a reason: the reconnect error names both, during and after onOpen; 'ready' on every connect", async (t) => {
    let connections = 0;
    const got: string[] = [];
    const server = await startWsServer({
      onConnection: (ws) => {
        const index = connections++;
        ws.on('message', (data) => {
          const text = String(data);
          // The first connection is refused while onOpen still runs; the second once it was established.
          if (index === 0) ws.close(4001, 'token expired');
          else if (index === 1) setTimeout(() => ws.close(4001, 'session revoked'), 300);
          else if (text !== 'hello') got.push(text);
        });
      },
    });
    t.after(() => server.close());
    const sink = websocketSink({
      url: server.url,
      messageType: 'text',
      onOpen: async (ws) => {
        ws.send('hello');
        await sleep(100);
      },
      retry: fastRetry,
    });
    const reconnects: RetryEvent[] = [];
    let ready = 0;
    sink.on('reconnect', (e: RetryEvent) => reconnects.push(e));
    sink.on('ready', () => ready++);
    const writing = pipeline(
      Readable.from(
        (async function* () {
          // The sink connects when it is made; the messages wait for the third connection.
          while (ready < 2) await sleep(10);
          yield 'a';
          yield 'b';
        })(),
      ),
      sink,
    );
    await writing;
    assert.equal(ready, 2, 'connections 2 and 3');
    assert.deepEqual(got, ['a', 'b']);
    assert.equal(reconnects.length, 2);
    const [during, after] = reconnects.map((r) => r.error as ManifoldError);
    assert.match(during!.message, /closed with code 4001 \(token expired\)/);
    assert.equal(during!.closeCode, 4001);
    assert.equal(during!.closeReason, 'token expired');
    assert.match(after!.message, /was lost: closed with code 4001 \(session revoked\)/);
    assert.equal(after!.closeCode, 4001);
    assert.equal(after!.closeReason, 'session revoked');
  });

  test('a server gone for good: fails after the retry budget naming the URL (no password), nacks what it holds', async () => {
    const url = await deadUrl('me:hush@');
    const sink = websocketSink({ url, retry: { retries: 2, minTimeoutMs: 10, maxTimeoutMs: 20 } });
    const reconnects: RetryEvent[] = [];
    sink.on('reconnect', (e: RetryEvent) => reconnects.push(e));
    const { messages, acked, nacked } = tracked(['a', 'b']);
    sink.write(messages[0]!);
    sink.write(messages[1]!);
    const [error] = (await once(sink, 'error')) as [ManifoldError];
    assert.equal(error.code, ErrorCodes.RETRIES_EXHAUSTED);
    assert.match(error.message, /websocketSink: sending to ws:\/\/me:\*\*\*@127\.0\.0\.1:\d+\/.* failed after 3 attempts: .*ECONNREFUSED/);
    assert.ok(!error.message.includes('hush'));
    assert.equal(reconnects.length, 2);
    // What the sink had taken is nacked (a message still queued in the Writable would be neither acked nor nacked).
    assert.ok(nacked.has(0));
    assert.equal(acked.size, 0);
  });

  test('HTTP 403 on the upgrade is fatal at once, with the URL in the message', async (t) => {
    const server = await startWsServer({ refuseWith: 403 });
    t.after(() => server.close());
    const sink = websocketSink({ url: server.url, retry: fastRetry });
    sink.on('reconnect', () => assert.fail('403 must not be retried'));
    sink.write('x');
    const [error] = (await once(sink, 'error')) as [ManifoldError];
    assert.equal(error.code, ErrorCodes.AUTH);
    assert.ok(error.message.includes(server.url), error.message);
  });

  test('retry: false fails at the first lost connection, naming the URL', async (t) => {
    const server = await startWsServer({ onConnection: (ws) => setTimeout(() => ws.close(1011, 'overloaded'), 20) });
    t.after(() => server.close());
    const sink = websocketSink({ url: server.url, retry: false });
    sink.write('x');
    const [error] = (await once(sink, 'error')) as [ManifoldError];
    assert.match(error.message, /websocketSink: the connection to ws:\/\/127.* was lost: closed with code 1011 \(overloaded\)/);
  });

  test('a server that stops answering pings is dropped and the sink reconnects', async (t) => {
    const collector = await startCollector({ autoPong: false });
    t.after(() => collector.server.close());
    const sink = websocketSink({ url: collector.server.url, heartbeatIntervalMs: 50, heartbeatTimeoutMs: 100, retry: fastRetry });
    t.after(() => sink.destroy());
    sink.write('before');
    const [event] = (await once(sink, 'reconnect')) as [RetryEvent];
    assert.match(event.error.message, /no pong within 100 ms/);
    await collector.server.waitForConnections(2);
    sink.write('after');
    await collector.waitFor(2);
    assert.deepEqual(collector.received.map(String), ['before', 'after']);
  });

  test('destroy() terminates the connection', async (t) => {
    const collector = await startCollector();
    t.after(() => collector.server.close());
    const sink = websocketSink({ url: collector.server.url });
    sink.write('x');
    await collector.waitFor(1);
    const closed = once(collector.server.accepted[0]!.ws, 'close');
    sink.destroy();
    const [code] = await closed;
    assert.equal(code, 1006);
  });
});

sinkConformance({
  name: 'websocket',
  async setup() {
    const collector = await startCollector();
    return {
      sink: (options) => websocketSink({ url: collector.server.url, ...(options?.signal ? { signal: options.signal } : {}) }),
      readBack: async () => [...collector.received],
      cleanup: () => collector.server.close(),
    };
  },
});
