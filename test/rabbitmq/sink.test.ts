import assert from 'node:assert/strict';
import { once } from 'node:events';
import amqp, { type ChannelModel } from 'amqplib';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import { coalesceWrites } from '../../lib/rabbitmq/connection.js';
import { rabbitmqSink, type RabbitmqSink, type RabbitmqSinkOptions } from '../../lib/rabbitmq/sink.js';
import { rabbitmqSource, type RabbitmqSource } from '../../lib/rabbitmq/source.js';
import { sinkConformance } from '../conformance/suite.js';
import {
  RABBITMQ_URL,
  RabbitFixture,
  closeConnectionsNamed,
  randomName,
  startBroker,
  stopBroker,
  until,
} from '../fixtures/rabbitmq.js';

const FAST_RETRY = { retries: 60, minTimeoutMs: 50, maxTimeoutMs: 1000 };

function fixture(t: TestContext): RabbitFixture {
  const f = new RabbitFixture();
  t.after(() => f.cleanup());
  return f;
}

function sink(t: TestContext, options: RabbitmqSinkOptions): RabbitmqSink {
  const s = rabbitmqSink({ url: RABBITMQ_URL, retry: FAST_RETRY, connectionName: randomName('sink'), ...options });
  t.after(() => {
    s.destroy();
  });
  return s;
}

/** Messages whose acks and nacks are recorded by index. */
function tracked(payloads: Array<Buffer | string>, extra: (i: number) => Partial<Message> = () => ({})) {
  const acked = new Set<number>();
  const nacked = new Map<number, Error>();
  const messages = payloads.map((data, i) =>
    createMessage({ data, ...extra(i), onAck: () => acked.add(i), onNack: (error) => nacked.set(i, error) }),
  );
  return { messages, acked, nacked };
}

function ids(n: number, prefix = 'm'): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
}

/** Until the test ends, every connection amqplib makes is given to `seen` (with connect()'s arguments) before it is returned. */
function onConnect(t: TestContext, seen: (model: ChannelModel, args: Parameters<typeof amqp.connect>) => void): void {
  const connect = amqp.connect;
  amqp.connect = (async (...args: Parameters<typeof amqp.connect>) => {
    const model = await connect(...args);
    seen(model, args);
    return model;
  }) as typeof amqp.connect;
  t.after(() => {
    amqp.connect = connect;
  });
}

/**
 * Until the test ends, the confirm channels amqplib makes report no listeners for 'ack' and 'nack' (amqplib's own
 * still run), so the sink takes a callback per publish, as with a client that does not emit confirms as events.
 */
function withoutConfirmEvents(t: TestContext): { channels: number } {
  const seen = { channels: 0 };
  onConnect(t, (model) => {
    const create = model.createConfirmChannel.bind(model);
    model.createConfirmChannel = async (...rest: Parameters<typeof model.createConfirmChannel>) => {
      const channel = await create(...rest);
      const count = channel.listenerCount.bind(channel);
      channel.listenerCount = (name: string | symbol, ...more: unknown[]) => (name === 'ack' || name === 'nack' ? 0 : count(name, ...(more as [])));
      seen.channels += 1;
      return channel;
    };
  });
  return seen;
}

describe('rabbitmqSink options', () => {
  test('bad options throw synchronously, naming the option, the value and what is allowed', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ url: 'amqp://guest:s3cret@' }, /options\.url must be an amqp:\/\/ or amqps:\/\/ URL/],
      [{ url: 'kafka://guest:s3cret@host' }, /options\.url must be an amqp:\/\/ or amqps:\/\/ URL with a host, got "kafka:\/\/guest:\*\*\*@host"/],
      [{ maxInFlight: 0 }, /options\.maxInFlight must be a positive integer, got 0/],
      [{ exchange: 7 }, /options\.exchange must be a string, got 7/],
      [{ persistent: 'yes' }, /options\.persistent must be true or false, got "yes"/],
      [{ mandatory: 1 }, /options\.mandatory must be true or false, got 1/],
      [{ properties: { contentTyp: 'x' } }, /options\.properties: unknown option "contentTyp" \(did you mean "contentType"\?\)/],
      [{ assert: { queues: 'q' } }, /options\.assert\.queues must be an array/],
      [{ assert: { queues: [{ options: {} }] } }, /options\.assert\.queues\[0\]\.name must be a non-empty string/],
      [{ assert: 'yes' }, /options\.assert must be true, false or an object \{ exchangeType, exchangeOptions, queues \}, got "yes"/],
      [{ assert: { exchangeTyp: 'topic' } }, /options\.assert: unknown option "exchangeTyp" \(did you mean "exchangeType"\?\)/],
      [{ routingKey: 7 }, /options\.routingKey must be a string, got 7/],
      [{ connectTimeoutMs: 0 }, /options\.connectTimeoutMs must be a number of at least 1 \(milliseconds\), got 0/],
      [{ persistant: false }, /unknown option "persistant" \(did you mean "persistent"\?\)/],
      [{ retry: { minTimeoutMs: 10, maxTimeoutMs: 5 } }, /rabbitmqSink: options\.retry\.maxTimeoutMs \(5\) must be at least/],
      [{ routingkey: 'a' }, /unknown option "routingkey" \(did you mean "routingKey"\?\)/],
    ];
    for (const [options, expected] of cases) {
      assert.throws(() => rabbitmqSink(options as RabbitmqSinkOptions), (err: ManifoldError) => {
        assert.equal(err.code, ErrorCodes.INVALID_OPTION, err.message);
        assert.match(err.message, expected);
        assert.doesNotMatch(err.message, /s3cret/);
        return true;
      });
    }
  });
});

describe('rabbitmqSink', () => {
  test('publishes persistent messages with key, headers, timestamp and properties; acks after the confirm', async (t) => {
    const f = fixture(t);
    const exchange = await f.exchange('direct');
    const a = await f.queue('a');
    const b = await f.queue('b');
    await f.bind(a, exchange, 'to-a');
    await f.bind(b, exchange, 'to-b');
    const s = sink(t, { exchange, routingKey: 'to-a', properties: { contentType: 'application/json', appId: 'manifold-test' } });
    const { messages, acked, nacked } = tracked(['{"n":0}', '{"n":1}', '{"n":2}'], (i) =>
      i === 1 ? { key: 'to-b', headers: { trace: 't-1' }, timestamp: 1_700_000_000_123 } : {},
    );
    await pipeline(Readable.from(messages), s);
    assert.deepEqual([...acked].sort(), [0, 1, 2]);
    assert.equal(nacked.size, 0);
    const inA = await f.drain(a, 2);
    const inB = await f.drain(b, 1);
    assert.deepEqual(inA.map((m) => m.content.toString()), ['{"n":0}', '{"n":2}']);
    assert.deepEqual(inB.map((m) => m.content.toString()), ['{"n":1}']);
    assert.equal(inB[0]!.routingKey, 'to-b');
    assert.equal(inB[0]!.headers.trace, 't-1');
    assert.equal(inB[0]!.timestamp, 1_700_000_000, 'AMQP timestamps are seconds');
    assert.ok(inA.every((m) => m.persistent));
    assert.deepEqual(s.stats, { connections: 1, published: 3, confirmed: 3, returned: 0, unconfirmed: 0, peakInFlight: s.stats.peakInFlight, drainWaits: 0 });
  });

  test('persistent: false publishes transient messages; plain strings and Buffers are accepted', async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    const s = sink(t, { routingKey: queue, persistent: false });
    await pipeline(Readable.from(['text', Buffer.from('bytes')]), s);
    const got = await f.drain(queue, 2);
    assert.deepEqual(got.map((m) => [m.content.toString(), m.persistent]), [['text', false], ['bytes', false]]);
  });

  test('an unroutable message is nacked naming the exchange and routing key; the sink carries on', async (t) => {
    const f = fixture(t);
    const exchange = await f.exchange('direct');
    const queue = await f.queue();
    await f.bind(queue, exchange, 'bound');
    const s = sink(t, { exchange, routingKey: 'bound' });
    const unroutable: ManifoldError[] = [];
    s.on('unroutable', (e: ManifoldError) => unroutable.push(e));
    const { messages, acked, nacked } = tracked(['ok-0', 'lost', 'ok-1'], (i) => (i === 1 ? { key: 'nowhere' } : {}));
    await pipeline(Readable.from(messages), s);
    assert.deepEqual([...acked].sort(), [0, 2]);
    const err = nacked.get(1) as ManifoldError;
    assert.equal(err.code, ErrorCodes.DELIVERY);
    assert.equal(err.retryable, false);
    assert.match(err.message, new RegExp(`exchange "${exchange}" returned a message with routing key "nowhere" as unroutable \\(312 NO_ROUTE\\)`));
    assert.equal(err.exchange, exchange);
    assert.equal(err.routingKey, 'nowhere');
    assert.equal(unroutable.length, 1);
    assert.equal(s.stats.returned, 1);
    assert.deepEqual((await f.drain(queue, 2)).map((m) => m.content.toString()), ['ok-0', 'ok-1']);
  });

  // Confirms are read from the channel's 'ack'/'nack' events by delivery tag when amqplib's channel emits them (it does);
  // otherwise from a callback per publish. Both ways are run: the second by hiding the events' listeners from the check.
  for (const mode of ['delivery tags', 'callbacks'] as const) {
    test(`confirms read by ${mode}: what the broker nacks (a full queue that rejects publishes) is kept and published again until it is confirmed`, async (t) => {
      const f = fixture(t);
      const queue = await f.queue('full', { arguments: { 'x-max-length': 3, 'x-overflow': 'reject-publish' } });
      if (mode === 'callbacks') withoutConfirmEvents(t);
      const s = sink(t, { routingKey: queue });
      const sent = ids(7);
      const { messages, acked, nacked } = tracked(sent);
      const done = pipeline(Readable.from(messages), s);
      // The queue takes 3; the broker nacks the other 4. A nack says nothing about the message: it is not passed on,
      // the sink keeps it and publishes it again.
      await until('3 publishes confirmed and 4 nacked', () => acked.size >= 3 && s.stats.unconfirmed >= 4);
      assert.deepEqual([...acked].sort(), [0, 1, 2]);
      assert.equal(nacked.size, 0);
      // A consumer makes room in the queue: the re-sends are confirmed.
      const drained = f.drain(queue, sent.length, { timeoutMs: 30_000 });
      await done;
      const got = await drained;
      assert.deepEqual([...acked].sort(), [0, 1, 2, 3, 4, 5, 6]);
      assert.equal(nacked.size, 0);
      assert.deepEqual(got.map((m) => m.content.toString()), sent);
    });
  }

  test('confirms read by callbacks (a channel without confirm events): 2,000 messages and an unroutable one, each settled once', async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    const hidden = withoutConfirmEvents(t);
    const s = sink(t, { maxInFlight: 50 });
    const sent = ids(2000);
    const { messages, acked, nacked } = tracked([...sent, 'lost'], (i) => ({ key: i === sent.length ? randomName('missing') : queue }));
    await pipeline(Readable.from(messages), s);
    assert.ok(hidden.channels >= 1, 'the confirm events were hidden from the sink');
    assert.equal(acked.size, sent.length);
    assert.deepEqual([...nacked.keys()], [sent.length]);
    assert.equal(s.stats.confirmed, sent.length);
    assert.deepEqual((await f.drain(queue, sent.length)).map((m) => m.content.toString()), sent);
  });

  test('identical messages, one routable and one not, are told apart by routing key', async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    const s = sink(t, {});
    const { messages, acked, nacked } = tracked(['same', 'same', 'same'], (i) => ({ key: i === 1 ? randomName('missing') : queue }));
    await pipeline(Readable.from(messages), s);
    assert.deepEqual([...acked].sort(), [0, 2]);
    assert.match(nacked.get(1)!.message, /the default exchange returned a message with routing key "manifold-test-missing-/);
    assert.equal((await f.drain(queue, 2)).length, 2);
  });

  test('with mandatory: false an unroutable message is acked and dropped by the broker', async (t) => {
    const f = fixture(t);
    const exchange = await f.exchange('direct');
    const s = sink(t, { exchange, routingKey: 'nowhere', mandatory: false });
    const { messages, acked, nacked } = tracked(['dropped']);
    await pipeline(Readable.from(messages), s);
    assert.deepEqual([...acked], [0]);
    assert.equal(nacked.size, 0);
  });

  test('maxInFlight caps unconfirmed publishes, and every message arrives in order', async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    const s = sink(t, { routingKey: queue, maxInFlight: 8 });
    const sent = ids(500);
    const { messages, acked } = tracked(sent);
    await pipeline(Readable.from(messages), s);
    assert.equal(acked.size, sent.length);
    assert.ok(s.stats.peakInFlight <= 8, `peak in flight ${s.stats.peakInFlight}`);
    assert.ok(s.stats.peakInFlight >= 2, 'publishes were pipelined');
    assert.deepEqual((await f.drain(queue, sent.length)).map((m) => m.content.toString()), sent);
  });

  test("a burst of publishes goes to the socket in a few writes, not one a message (amqplib's frames coalesced), with Nagle off", async (t) => {
    // Count the writes the sink's socket makes: amqplib alone writes each publish to the socket by itself.
    const writes = { single: 0, vectored: 0, frames: 0 };
    const name = randomName('sink');
    const noDelay: unknown[] = [];
    onConnect(t, (model, args) => {
      const socketOptions = args[1] as { noDelay?: unknown; clientProperties?: { connection_name?: string } } | undefined;
      if (socketOptions?.clientProperties?.connection_name === name) noDelay.push(socketOptions.noDelay);
      const socket = (model as unknown as { connection: { stream: Writable } }).connection.stream;
      const write = socket._write.bind(socket);
      const writev = socket._writev?.bind(socket);
      socket._write = (chunk, encoding, callback) => {
        writes.single += 1;
        writes.frames += 1;
        write(chunk, encoding, callback);
      };
      if (writev) {
        socket._writev = (chunks, callback) => {
          writes.vectored += 1;
          writes.frames += chunks.length;
          writev(chunks, callback);
        };
      }
    });
    const f = fixture(t);
    const queue = await f.queue();
    const s = sink(t, { routingKey: queue, maxInFlight: 1000, connectionName: name });
    const sent = ids(5000);
    const { messages, acked } = tracked(sent);
    await pipeline(Readable.from(messages), s);
    assert.equal(acked.size, sent.length);
    assert.ok(writes.frames >= sent.length, `every publish went through the counted socket (${writes.frames} buffers)`);
    const calls = writes.single + writes.vectored;
    assert.ok(calls * 10 < sent.length, `${calls} socket writes (${writes.single} single, ${writes.vectored} vectored) for ${sent.length} publishes`);
    // Nagle's algorithm off: it has nothing left to merge, and would hold a burst's last segment back.
    assert.deepEqual(noDelay, [true]);
    assert.deepEqual((await f.drain(queue, sent.length)).map((m) => m.content.toString()), sent);
  });

  test('coalesceWrites leaves a connection it does not recognise alone', () => {
    assert.equal(coalesceWrites({} as ChannelModel), false);
    const model = { connection: { muxer: { _readIncoming: 'not a function', out: {} } } };
    assert.equal(coalesceWrites(model as unknown as ChannelModel), false);
    assert.equal(model.connection.muxer._readIncoming, 'not a function');
  });

  test('waits for drain when the channel buffer is full (publish() returned false)', async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    // A small frameMax splits each message into many frames, so the channel's frame buffer fills quickly.
    const s = sink(t, { url: `${RABBITMQ_URL}?frameMax=4096`, routingKey: queue, maxInFlight: 5000 });
    const body = Buffer.alloc(64 * 1024, 'x');
    const sent = Array.from({ length: 200 }, (_, i) => Buffer.concat([Buffer.from(`${i}:`), body]));
    const { messages, acked } = tracked(sent);
    await pipeline(Readable.from(messages), s);
    assert.equal(acked.size, sent.length);
    assert.ok(s.stats.drainWaits > 0, 'publish() returned false at least once');
    const got = await f.drain(queue, sent.length);
    assert.deepEqual(got.map((m) => m.content.subarray(0, 8).toString().split(':')[0]), sent.map((_, i) => String(i)));
  });

  test('assert declares the exchange and binds the queues on connect', async (t) => {
    const f = fixture(t);
    const exchange = randomName('asserted-x');
    const queue = randomName('asserted-q');
    f.track({ queues: [queue], exchanges: [exchange] });
    const s = sink(t, { exchange, routingKey: 'ev.created', assert: { exchangeType: 'topic', queues: [{ name: queue, routingKey: 'ev.*' }] } });
    await pipeline(Readable.from(['hello']), s);
    const got = await f.drain(queue, 1);
    assert.deepEqual(got.map((m) => [m.content.toString(), m.routingKey, m.exchange]), [['hello', 'ev.created', exchange]]);
  });

  test('a missing exchange without assert fails with NOT_FOUND, is not retried, and nacks what was written', async (t) => {
    const exchange = randomName('missing-x');
    const s = sink(t, { exchange });
    let reconnects = 0;
    s.on('reconnect', () => reconnects++);
    const { messages, acked, nacked } = tracked(['a', 'b']);
    const err = (await pipeline(Readable.from(messages), s).then(() => undefined, (e: unknown) => e)) as ManifoldError;
    assert.equal(err.code, ErrorCodes.NOT_FOUND);
    assert.match(err.message, new RegExp(`publishing to exchange "${exchange}" at amqp://guest:\\*\\*\\*@127\\.0\\.0\\.1:5672.*NOT_FOUND`));
    assert.equal(reconnects, 0);
    assert.equal(acked.size, 0);
    assert.equal(nacked.size, 2);
  });

  test('a wrong password fails with AUTH, is not retried, and hides the password', async (t) => {
    const url = new URL(RABBITMQ_URL);
    url.password = 'wrong-s3cret';
    const s = sink(t, { url: url.toString() });
    let reconnects = 0;
    s.on('reconnect', () => reconnects++);
    const err = (await pipeline(Readable.from(['x']), s).then(() => undefined, (e: unknown) => e)) as ManifoldError;
    assert.equal(err.code, ErrorCodes.AUTH);
    assert.doesNotMatch(err.message, /wrong-s3cret/);
    assert.doesNotMatch(String(err.stack), /wrong-s3cret/);
    assert.match(err.message, /guest:\*\*\*@/);
    assert.equal(reconnects, 0);
  });

  test("'ready' on every (re)connect; the reconnect error carries the broker's reason (320 CONNECTION_FORCED and its text)", async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    const connectionName = randomName('sink-reason');
    const s = sink(t, { routingKey: queue, connectionName });
    const ready: unknown[] = [];
    const reconnects: Error[] = [];
    s.on('ready', (info: unknown) => ready.push(info));
    s.on('reconnect', (event: { error: Error }) => reconnects.push(event.error));
    const { messages, acked } = tracked(['before', 'after']);
    s.write(messages[0]);
    await until('first ack', () => acked.has(0));
    assert.equal(ready.length, 1, "'ready' after the first connection");
    const reason = `manifold test ${randomName('reason')}`;
    assert.equal(await closeConnectionsNamed(connectionName, reason), 1);
    await until('ready again', () => ready.length === 2);
    s.write(messages[1]);
    await until('second ack', () => acked.has(1));
    assert.equal(reconnects.length, 1);
    const error = reconnects[0]! as ManifoldError;
    assert.match(error.message, /320/);
    assert.match(error.message, /CONNECTION_FORCED/);
    assert.ok(error.message.includes(reason), error.message);
    assert.equal(error.code, ErrorCodes.CONNECTION);
    assert.equal(error.replyCode, 320);
    assert.equal(error.replyText, `CONNECTION_FORCED - ${reason}`);
    assert.deepEqual(ready[1], { exchange: '' });
    s.end();
    await once(s, 'finish');
    assert.deepEqual((await f.drain(queue, 2)).map((m) => m.content.toString()), ['before', 'after']);
  });

  test('a broker-side connection kill mid-stream: every message arrives at least once, duplicates bounded by maxInFlight', async (t) => {
    const f = fixture(t);
    const queue = await f.queue();
    const connectionName = randomName('sink-kill');
    const maxInFlight = 100;
    const s = sink(t, { routingKey: queue, maxInFlight, connectionName });
    const sent = ids(4000);
    const { messages, acked, nacked } = tracked(sent);
    let reconnects = 0;
    s.on('reconnect', () => reconnects++);
    let killed = false;
    const writing = pipeline(
      Readable.from(
        (async function* () {
          for (const [i, m] of messages.entries()) {
            yield m;
            // Trickle after the first quarter until the kill is done, so it lands mid-stream.
            if (!killed && i >= sent.length / 4) await sleep(1);
          }
        })(),
      ),
      s,
    );
    await until('a quarter acked', () => acked.size >= sent.length / 4);
    assert.equal(await closeConnectionsNamed(connectionName), 1);
    killed = true;
    await writing;
    assert.ok(acked.size > sent.length / 4 && acked.size === sent.length);
    assert.equal(acked.size, sent.length);
    assert.equal(nacked.size, 0);
    assert.ok(reconnects >= 1);
    assert.equal(s.stats.connections, 2);
    const got = (await f.drain(queue, sent.length)).map((m) => m.content.toString());
    const unique = new Set(got);
    assert.deepEqual(sent.filter((id) => !unique.has(id)), [], 'every message arrived');
    const duplicates = got.length - unique.size;
    t.diagnostic(`duplicates after the kill: ${duplicates}; republished ${s.stats.published - sent.length}`);
    assert.ok(duplicates <= maxInFlight, `duplicates ${duplicates} <= maxInFlight ${maxInFlight}`);
  });
});

describe('rabbitmqSink and rabbitmqSource together', () => {
  test('round trip: 10,000 messages through the sink then the source, same content and headers', async (t) => {
    const f = fixture(t);
    const exchange = await f.exchange('topic');
    const queue = await f.queue('rt');
    await f.bind(queue, exchange, 'rt.#');
    const total = 10_000;
    const sent = Array.from({ length: total }, (_, i) => ({ data: `payload-${i}-${'z'.repeat(i % 50)}`, headers: { seq: String(i), kind: i % 2 ? 'odd' : 'even' } }));
    const { messages, acked } = tracked(
      sent.map((m) => m.data),
      (i) => ({ headers: sent[i]!.headers, key: `rt.${i % 7}` }),
    );
    await pipeline(Readable.from(messages), sink(t, { exchange }));
    assert.equal(acked.size, total);

    const source = rabbitmqSource({ url: RABBITMQ_URL, queue, prefetch: 500 });
    t.after(() => {
      source.destroy();
    });
    const received: Message[] = [];
    source.on('data', (m: Message) => {
      received.push(m);
      m.ack();
    });
    await until('every message', () => received.length === total, 60_000);
    await source.close();
    const byData = new Map(received.map((m) => [m.data.toString(), m]));
    assert.equal(byData.size, total);
    for (const [i, m] of sent.entries()) {
      const got = byData.get(m.data);
      assert.ok(got, `message ${i} arrived`);
      assert.deepEqual(got.headers, m.headers);
      assert.equal(got.key, `rt.${i % 7}`);
    }
    assert.deepEqual(received.map((m) => m.data.toString()), sent.map((m) => m.data), 'in order');
    assert.equal(await f.count(queue), 0);
  });

  test('a broker restart (stop_app / start_app) while both run: every message arrives at least once', async (t) => {
    const f = fixture(t);
    // Whatever happens in this test, the broker is running again afterwards.
    t.after(() => startBroker());
    const queue = await f.queue('restart');
    const total = 3000;
    const prefetch = 100;
    const maxInFlight = 100;
    const sent = ids(total, 'r');
    const { messages, acked, nacked } = tracked(sent);
    const s = sink(t, { routingKey: queue, maxInFlight });
    const source: RabbitmqSource = rabbitmqSource({ url: RABBITMQ_URL, queue, prefetch, retry: FAST_RETRY });
    source.on('error', () => {});
    t.after(() => {
      source.destroy();
    });
    const seen = new Map<string, number>();
    source.on('data', (m: Message) => {
      const id = m.data.toString();
      seen.set(id, (seen.get(id) ?? 0) + 1);
      setTimeout(() => m.ack(), 1);
    });
    let restarted = false;
    const writing = pipeline(
      Readable.from(
        (async function* () {
          for (const [i, m] of messages.entries()) {
            yield m;
            // Trickle after the first third until the broker is back, so the restart lands mid-stream for both.
            if (!restarted && i >= total / 3) await sleep(2);
          }
        })(),
      ),
      s,
    );
    await until('a third consumed', () => seen.size >= total / 3, 30_000);
    await stopBroker();
    await sleep(500);
    await startBroker();
    restarted = true;
    await writing;
    assert.equal(acked.size, total, 'the sink acked every message');
    assert.equal(nacked.size, 0);
    await until('every message consumed', () => seen.size === total, 60_000);
    await source.close();
    const deliveries = [...seen.values()].reduce((a, b) => a + b, 0);
    const duplicates = deliveries - total;
    t.diagnostic(`duplicates after the restart: ${duplicates}; sink republished ${s.stats.published - total}; source saw ${source.stats.redelivered} redelivered`);
    assert.ok(duplicates <= prefetch + maxInFlight, `duplicates ${duplicates} <= prefetch + maxInFlight (${prefetch + maxInFlight})`);
    assert.ok(source.stats.connections >= 2 && s.stats.connections >= 2, 'both reconnected');
    assert.equal(await f.count(queue), 0);
  });
});

sinkConformance({
  name: 'rabbitmq',
  // maxInFlight (1000) plus what the stream buffers hold: the suite's producer, the sink and its inner publisher (16 each).
  maxUnacked: 1000 + 3 * 16 + 2,
  async setup() {
    const f = new RabbitFixture();
    const queue = await f.queue('conf-sink');
    const arrived: Buffer[] = [];
    return {
      sink: (options) => rabbitmqSink({ url: RABBITMQ_URL, routingKey: queue, ...(options?.signal ? { signal: options.signal } : {}) }),
      async readBack() {
        for (const m of await f.drain(queue, 0, { quietMs: 100 })) arrived.push(m.content);
        return [...arrived];
      },
      cleanup: () => f.cleanup(),
    };
  },
});
