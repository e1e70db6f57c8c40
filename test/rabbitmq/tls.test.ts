/**
 * RabbitMQ over TLS, against a second RabbitMQ node started for this file (test/fixtures/rabbitmq-tls.ts):
 * a TLS listener with verify_peer and fail_if_no_peer_cert, EXTERNAL login by client certificate, and this
 * run's private CA (test/fixtures/tls.ts). Servers with a bad certificate are TLS proxies in front of the
 * node's plaintext port.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { after, before, describe, test, type TestContext } from 'node:test';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import { rabbitmqSink, type RabbitmqSinkOptions } from '../../lib/rabbitmq/sink.js';
import { rabbitmqSource, type RabbitmqSourceOptions } from '../../lib/rabbitmq/source.js';
import { sinkConformance, sourceConformance } from '../conformance/suite.js';
import { startTlsBroker, type TlsBroker } from '../fixtures/rabbitmq-tls.js';
import { randomName, until } from '../fixtures/rabbitmq.js';
import { makePki, plaintextServer, tlsProxy, type Pki } from '../fixtures/tls.js';

const FAST_RETRY = { retries: 40, minTimeoutMs: 50, maxTimeoutMs: 500 };

/** One PKI and one TLS node for the whole file, made at first use (about 10 s) and removed after it. */
let started: Promise<{ pki: Pki; broker: TlsBroker }> | undefined;
function tlsNode(): Promise<{ pki: Pki; broker: TlsBroker }> {
  started ??= (async () => {
    const pki = makePki();
    try {
      return { pki, broker: await startTlsBroker(pki) };
    } catch (error) {
      pki.remove();
      throw error;
    }
  })();
  return started;
}
// Started before any test, so that the conformance suite's count of open handles already includes the node's process.
before(() => tlsNode().then(() => undefined));
after(async () => {
  if (!started) return;
  const { pki, broker } = await started;
  await broker.stop();
  pki.remove();
});

async function fixtureOn(t: TestContext, broker: TlsBroker) {
  const f = broker.fixture();
  t.after(() => f.cleanup());
  return f;
}

function payloads(n: number, prefix = 'm'): Buffer[] {
  return Array.from({ length: n }, (_, i) => Buffer.from(`${prefix}-${i}`));
}

/** Resolves with the first error `stream` emits, and how long after `since` it came. */
function firstError(stream: Readable | Writable, since = performance.now()): Promise<{ error: ManifoldError; ms: number }> {
  return new Promise((resolve) => stream.once('error', (error: ManifoldError) => resolve({ error, ms: performance.now() - since })));
}

/** Writes `messages` and resolves once each is acked or nacked. */
function settled(messages: readonly Message[], acked: Set<number>, nacked: Map<number, Error>): Promise<void> {
  return until('every message settled', () => acked.size + nacked.size === messages.length, 20_000);
}

function tracked(data: Buffer[]) {
  const acked = new Set<number>();
  const nacked = new Map<number, Error>();
  const messages = data.map((d, i) => createMessage({ data: d, onAck: () => acked.add(i), onNack: (e) => nacked.set(i, e) }));
  return { messages, acked, nacked };
}

describe('rabbitmq TLS options', () => {
  test('tls with an amqp:// (plaintext) URL is refused, not silently ignored', () => {
    for (const factory of [
      () => rabbitmqSource({ url: 'amqp://guest:s3cret@localhost', queue: 'q', tls: true }),
      () => rabbitmqSink({ url: 'amqp://guest:s3cret@localhost', tls: { rejectUnauthorized: false } }),
    ]) {
      assert.throws(factory, (err: ManifoldError) => {
        assert.equal(err.code, ErrorCodes.INVALID_OPTION);
        assert.match(err.message, /options\.tls is given but options\.url "amqp:\/\/guest:\*\*\*@localhost" is amqp:\/\/ \(plaintext\); write amqps:\/\//);
        assert.doesNotMatch(err.message, /s3cret/);
        return true;
      });
    }
  });

  test('EXTERNAL needs amqps://, a client certificate, and no user or password in the URL', () => {
    const pki = makePki();
    try {
      const tls = { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey };
      const cases: Array<[RabbitmqSourceOptions, RegExp]> = [
        [{ url: 'amqp://localhost', queue: 'q', authMechanism: 'EXTERNAL' }, /authMechanism EXTERNAL logs in as the TLS client certificate: give an amqps:\/\/ URL and options\.tls with cert and key/],
        [{ url: 'amqps://localhost', queue: 'q', authMechanism: 'EXTERNAL', tls: { ca: pki.ca } }, /authMechanism EXTERNAL logs in as the TLS client certificate/],
        [{ url: 'amqps://guest:s3cret@localhost', queue: 'q', authMechanism: 'EXTERNAL', tls }, /EXTERNAL takes the user from the client certificate: remove the user and password from options\.url "amqps:\/\/guest:\*\*\*@localhost"/],
        [{ url: 'amqps://localhost', queue: 'q', authMechanism: 'KERBEROS' as never, tls }, /options\.authMechanism must be one of PLAIN, EXTERNAL|options\.authMechanism must be/],
      ];
      for (const [options, message] of cases) {
        assert.throws(() => rabbitmqSource(options), (err: ManifoldError) => {
          assert.equal(err.code, ErrorCodes.INVALID_OPTION, err.message);
          assert.match(err.message, message);
          assert.doesNotMatch(err.message, /s3cret/);
          return true;
        });
      }
      // Accepted, without connecting.
      rabbitmqSink({ url: 'amqps://localhost:1', authMechanism: 'EXTERNAL', tls, retry: false }).destroy();
    } finally {
      pki.remove();
    }
  });

  test('a tls file that cannot be read is named at construction', () => {
    assert.throws(
      () => rabbitmqSource({ url: 'amqps://localhost', queue: 'q', tls: { ca: '/nonexistent/ca.pem' } }),
      (err: ManifoldError) => err.code === ErrorCodes.INVALID_OPTION && /tls\.ca/.test(err.message) && /nonexistent/.test(err.message),
    );
  });
});

sourceConformance({
  name: 'rabbitmq over TLS with a client certificate',
  redelivers: true,
  async setup() {
    const { broker } = await tlsNode();
    const f = broker.fixture();
    const queue = await f.queue('tls-conf-src');
    return {
      source: (options) =>
        rabbitmqSource({ url: broker.url(), tls: broker.clientTls(), queue, prefetch: 64, ...(options?.signal ? { signal: options.signal } : {}) }),
      produce: (data) => f.produce(queue, data),
      cleanup: () => f.cleanup(),
    };
  },
});

sinkConformance({
  name: 'rabbitmq over TLS with a client certificate',
  maxUnacked: 1000 + 3 * 16 + 2,
  async setup() {
    const { broker } = await tlsNode();
    const f = broker.fixture();
    const queue = await f.queue('tls-conf-sink');
    const arrived: Buffer[] = [];
    return {
      sink: (options) => rabbitmqSink({ url: broker.url(), tls: broker.clientTls(), routingKey: queue, ...(options?.signal ? { signal: options.signal } : {}) }),
      async readBack() {
        for (const m of await f.drain(queue, 0, { quietMs: 100 })) arrived.push(m.content);
        return [...arrived];
      },
      cleanup: () => f.cleanup(),
    };
  },
});

describe('rabbitmq over TLS', { timeout: 60_000 }, () => {
  test('the broker sees TLS and the client certificate of a PLAIN login', async (t) => {
    const { broker } = await tlsNode();
    const f = await fixtureOn(t, broker);
    const queue = await f.queue('tls-plain');
    const connectionName = randomName('tls-plain');
    const source = rabbitmqSource({ url: broker.url(), tls: broker.clientTls(), queue, connectionName, retry: FAST_RETRY });
    t.after(() => source.destroy());
    const got: string[] = [];
    source.on('data', (m: Message) => {
      got.push(m.data.toString());
      m.ack();
    });
    const seen = await broker.waitForConnection(connectionName);
    assert.deepEqual({ user: seen.user, ssl: seen.ssl, peer: seen.peerCertSubject }, { user: 'guest', ssl: true, peer: 'CN=manifold-client' });
    await f.produce(queue, payloads(5));
    await until('5 messages', () => got.length === 5);
    assert.deepEqual(got, payloads(5).map(String));
  });

  test('EXTERNAL: sink and source log in as the client certificate (user manifold-client), round trip', async (t) => {
    const { broker } = await tlsNode();
    const f = await fixtureOn(t, broker);
    const queue = await f.queue('tls-external');
    const sinkName = randomName('tls-ext-sink');
    const sourceName = randomName('tls-ext-src');
    const sink = rabbitmqSink({ url: broker.url({ external: true }), authMechanism: 'EXTERNAL', tls: broker.clientTls(), routingKey: queue, connectionName: sinkName, retry: FAST_RETRY });
    t.after(() => sink.destroy());
    const { messages, acked, nacked } = tracked(payloads(20, 'ext'));
    for (const m of messages) sink.write(m);
    await settled(messages, acked, nacked);
    assert.equal(nacked.size, 0, [...nacked.values()].map(String).join('; '));
    assert.equal((await broker.waitForConnection(sinkName)).user, 'manifold-client');

    const source = rabbitmqSource({ url: broker.url({ external: true }), authMechanism: 'EXTERNAL', tls: broker.clientTls(), queue, connectionName: sourceName, retry: FAST_RETRY });
    t.after(() => source.destroy());
    const got: string[] = [];
    source.on('data', (m: Message) => {
      got.push(m.data.toString());
      m.ack();
    });
    await until('20 messages', () => got.length === 20);
    assert.deepEqual(got, payloads(20, 'ext').map(String));
    const seen = await broker.waitForConnection(sourceName);
    assert.deepEqual({ user: seen.user, peer: seen.peerCertSubject }, { user: 'manifold-client', peer: 'CN=manifold-client' });
  });

  test('EXTERNAL with a certificate whose name is no user is MANIFOLD_ERR_AUTH, not retried', async (t) => {
    const { broker, pki } = await tlsNode();
    const stranger = pki.issue('stranger', { cn: 'nobody-here' });
    const source = rabbitmqSource({ url: broker.url({ external: true }), authMechanism: 'EXTERNAL', tls: { ca: pki.ca, ...stranger }, queue: 'q', retry: FAST_RETRY });
    t.after(() => source.destroy());
    let reconnects = 0;
    source.on('reconnect', () => reconnects++);
    const { error } = await firstError(source.resume());
    assert.equal(error.code, ErrorCodes.AUTH, error.message);
    assert.equal(reconnects, 0);
  });
});

describe('rabbitmq TLS failures are MANIFOLD_ERR_TLS within a second, not retried', { timeout: 60_000 }, () => {
  /** A source and a sink at `url` with `tls`, both with retries on: each fails once, fast, naming host and reason. */
  async function bothRefuse(t: TestContext, url: string, tls: RabbitmqSourceOptions['tls'], reason: RegExp, host: string): Promise<void> {
    const common = { url, tls, retry: { retries: 10, minTimeoutMs: 50, maxTimeoutMs: 200 } };
    // Made one at a time, each with its listeners at once: a sink starts connecting as it is made.
    const streams: Array<[string, () => Readable | Writable]> = [
      ['source', () => rabbitmqSource({ ...common, queue: 'q' } as RabbitmqSourceOptions)],
      ['sink', () => rabbitmqSink({ ...common, routingKey: 'q' } as RabbitmqSinkOptions)],
    ];
    for (const [what, make] of streams) {
      const since = performance.now();
      const stream = make();
      t.after(() => stream.destroy());
      const failed = firstError(stream, since);
      let reconnects = 0;
      stream.on('reconnect', () => reconnects++);
      if (what === 'source') (stream as Readable).resume();
      else (stream as Writable).write(Buffer.from('x'), () => {});
      const { error, ms } = await failed;
      assert.equal(error.code, ErrorCodes.TLS, `${what}: ${error.message}`);
      assert.equal(error.retryable, false);
      assert.match(error.message, new RegExp(`TLS with ${host.replace(/\./g, '\\.')} failed`), `${what}: ${error.message}`);
      assert.match(error.message, reason, `${what}: ${error.message}`);
      assert.doesNotMatch(error.message, /guest:guest/);
      assert.ok(ms < 1000, `${what} failed in ${Math.round(ms)} ms`);
      assert.equal(reconnects, 0, `${what} did not retry`);
    }
  }

  test('a server certificate signed by another CA', async (t) => {
    const { broker, pki } = await tlsNode();
    const proxy = await tlsProxy({ upstreamPort: broker.plainPort, cert: pki.otherServerCert, key: pki.otherServerKey });
    t.after(() => proxy.close());
    await bothRefuse(t, `amqps://guest:guest@localhost:${proxy.port}`, broker.clientTls(), /unknown CA/, `localhost:${proxy.port}`);
  });

  test('an expired server certificate', async (t) => {
    const { broker, pki } = await tlsNode();
    const proxy = await tlsProxy({ upstreamPort: broker.plainPort, cert: pki.expiredServerCert, key: pki.expiredServerKey });
    t.after(() => proxy.close());
    await bothRefuse(t, `amqps://guest:guest@localhost:${proxy.port}`, broker.clientTls(), /expired/, `localhost:${proxy.port}`);
  });

  test('a server certificate for another name', async (t) => {
    const { broker, pki } = await tlsNode();
    const proxy = await tlsProxy({ upstreamPort: broker.plainPort, cert: pki.wrongNameServerCert, key: pki.wrongNameServerKey });
    t.after(() => proxy.close());
    await bothRefuse(t, `amqps://guest:guest@localhost:${proxy.port}`, broker.clientTls(), /name mismatch/, `localhost:${proxy.port}`);
  });

  test('no client certificate: the broker (fail_if_no_peer_cert) refuses the handshake', async (t) => {
    const { broker, pki } = await tlsNode();
    await bothRefuse(t, broker.url(), { ca: pki.ca }, /refused the handshake or the client certificate/, `localhost:${broker.tlsPort}`);
  });

  test('a client certificate from a CA the broker does not trust', async (t) => {
    const { broker, pki } = await tlsNode();
    await bothRefuse(t, broker.url(), { ca: pki.ca, cert: pki.otherClientCert, key: pki.otherClientKey }, /refused the handshake or the client certificate/, `localhost:${broker.tlsPort}`);
  });

  test("amqps:// to the broker's plaintext port", async (t) => {
    const { broker, pki } = await tlsNode();
    await bothRefuse(t, `amqps://guest:guest@127.0.0.1:${broker.plainPort}`, { ca: pki.ca }, /plaintext port/, `127.0.0.1:${broker.plainPort}`);
  });

  test('amqps:// to a server that answers in plain text', async (t) => {
    const server = await plaintextServer();
    t.after(() => server.close());
    await bothRefuse(t, `amqps://127.0.0.1:${server.port}`, true, /plaintext port/, `127.0.0.1:${server.port}`);
  });
});

describe('rabbitmq TLS files are read again at every reconnect', { timeout: 60_000 }, () => {
  test('a client certificate replaced on disk is the one the broker sees after a reconnect (source and sink)', async (t) => {
    const { broker, pki } = await tlsNode();
    const f = await fixtureOn(t, broker);
    const queue = await f.queue('tls-rotate');
    // The files the connectors are given: copies, replaced below as a certificate rotation would.
    const dir = mkdtempSync(join(tmpdir(), 'manifold-tls-rotate-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const cert = join(dir, 'client.pem');
    const key = join(dir, 'client.key');
    copyFileSync(pki.clientCert, cert);
    copyFileSync(pki.clientKey, key);
    const tls = { ca: pki.ca, cert, key };

    const sourceName = randomName('tls-rotate-src');
    const sinkName = randomName('tls-rotate-sink');
    const source = rabbitmqSource({ url: broker.url(), tls, queue, connectionName: sourceName, retry: FAST_RETRY });
    const sink = rabbitmqSink({ url: broker.url(), tls, routingKey: queue, connectionName: sinkName, retry: FAST_RETRY });
    t.after(() => {
      source.destroy();
      sink.destroy();
    });
    const got: string[] = [];
    source.on('data', (m: Message) => {
      got.push(m.data.toString());
      m.ack();
    });
    const before = tracked(payloads(3, 'before'));
    for (const m of before.messages) sink.write(m);
    await settled(before.messages, before.acked, before.nacked);
    assert.equal((await broker.waitForConnection(sourceName)).peerCertSubject, 'CN=manifold-client');
    assert.equal((await broker.waitForConnection(sinkName)).peerCertSubject, 'CN=manifold-client');

    const rotated = pki.issue('rotated-client', { cn: 'manifold-rotated' });
    copyFileSync(rotated.cert, cert);
    copyFileSync(rotated.key, key);
    let reconnects = 0;
    source.on('reconnect', () => reconnects++);
    await broker.closeAllConnections();

    const rotatedPeer = (c: { peerCertSubject: string }) => c.peerCertSubject === 'CN=manifold-rotated';
    await broker.waitForConnection(sourceName, 20_000, rotatedPeer);
    const after = tracked(payloads(3, 'after'));
    for (const m of after.messages) sink.write(m);
    await settled(after.messages, after.acked, after.nacked);
    assert.equal(after.nacked.size, 0);
    await broker.waitForConnection(sinkName, 20_000, rotatedPeer);
    await until('6 messages', () => got.length >= 6);
    assert.deepEqual([...new Set(got)].sort(), [...payloads(3, 'after'), ...payloads(3, 'before')].map(String).sort());
    assert.ok(reconnects >= 1, 'the source reconnected');
    // No connection of either is left with the old certificate.
    const left = (await broker.connections()).filter((c) => c.name === sourceName || c.name === sinkName);
    assert.deepEqual(left.map((c) => c.peerCertSubject), ['CN=manifold-rotated', 'CN=manifold-rotated']);
  });

  test('a CA file replaced by one that does not sign the broker: the next reconnect fails with MANIFOLD_ERR_TLS, not retried', async (t) => {
    const { broker, pki } = await tlsNode();
    const f = await fixtureOn(t, broker);
    const queue = await f.queue('tls-rotate-ca');
    const dir = mkdtempSync(join(tmpdir(), 'manifold-tls-rotate-ca-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const ca = join(dir, 'ca.pem');
    copyFileSync(pki.ca, ca);
    const connectionName = randomName('tls-rotate-ca');
    const source = rabbitmqSource({ url: broker.url(), tls: { ca, cert: pki.clientCert, key: pki.clientKey }, queue, connectionName, retry: FAST_RETRY });
    t.after(() => source.destroy());
    let reconnects = 0;
    source.on('reconnect', () => reconnects++);
    const failed = firstError(source);
    source.resume();
    await broker.waitForConnection(connectionName);
    copyFileSync(pki.otherCa, ca);
    const since = performance.now();
    await broker.closeAllConnections();
    const { error } = await failed;
    assert.equal(error.code, ErrorCodes.TLS, error.message);
    assert.match(error.message, /unknown CA/);
    // One reconnect is announced for the lost connection; the TLS failure of that attempt ends it.
    assert.ok(reconnects <= 1, `reconnects: ${reconnects}`);
    assert.ok(performance.now() - since < 5_000, 'failed at the first reconnect, not after a retry budget');
  });
});
