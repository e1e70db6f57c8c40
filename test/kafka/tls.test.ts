/**
 * kafkaSource and kafkaSink over TLS against the fixture's broker (test/fixtures/kafka.ts with a per-run
 * PKI from test/fixtures/tls.ts): an SSL listener that requires a client certificate, and a SASL_SSL
 * listener with SCRAM-SHA-512 and SCRAM-SHA-256 users made by `kafka-storage format --add-scram`. A
 * server the client must refuse (another CA, an expired certificate, a plaintext port) is a TLS proxy
 * in front of the broker: the handshake fails at the first bootstrap connection.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { promisify, inspect } from 'node:util';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage } from '../../lib/core/message.js';
import type { TlsOptions } from '../../lib/core/tls.js';
import { kafkaSink, type KafkaSinkOptions } from '../../lib/kafka/sink.js';
import { kafkaSource, type KafkaSourceOptions } from '../../lib/kafka/source.js';
import { sinkConformance, sourceConformance } from '../conformance/suite.js';
import { startKafka, type KafkaBroker } from '../fixtures/kafka.js';
import { makePki, tlsProxy, type Pki } from '../fixtures/tls.js';

const run = promisify(execFile);
let broker: KafkaBroker;
let pki: Pki;
/** Mutual TLS with the fixture's CA and client certificate, as file paths (read at every connect). */
let mtls: TlsOptions;

before(async () => {
  pki = makePki();
  broker = await startKafka({ pki });
  mtls = { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey };
});
after(async () => {
  await broker?.stop();
  pki?.remove();
});

function tlsBroker(): NonNullable<KafkaBroker['tls']> {
  assert.ok(broker.tls, 'the fixture started the TLS listeners');
  return broker.tls;
}

function fast(extra: Partial<KafkaSourceOptions> & Pick<KafkaSourceOptions, 'topics' | 'groupId' | 'brokers'>): KafkaSourceOptions {
  return { startFrom: 'earliest', commitIntervalMs: 100, sessionTimeoutMs: 6000, heartbeatIntervalMs: 500, maxWaitMs: 100, closeTimeoutMs: 5000, ...extra };
}

/** What `topic` holds, read with kcat (librdkafka) from the plaintext listener: an independent client. */
async function readWithKcat(topic: string): Promise<string[]> {
  const { stdout } = await run('kcat', ['-b', broker.bootstrap, '-C', '-t', topic, '-e', '-q', '-f', '%s\n'], { maxBuffer: 64 * 1024 * 1024 });
  return stdout.split('\n').filter((line) => line.length > 0);
}

/** Reads `count` messages from `topic` with kafkaSource(`options`), acking each, then closes it. */
async function consume(options: Omit<KafkaSourceOptions, 'topics' | 'groupId'>, topic: string, count: number): Promise<string[]> {
  const source = kafkaSource(fast({ ...options, topics: topic, groupId: `g-${randomUUID()}` } as KafkaSourceOptions));
  const got: string[] = [];
  try {
    for await (const message of source) {
      got.push(message.data.toString());
      message.ack();
      if (got.length === count) break;
    }
  } finally {
    source.destroy();
  }
  return got;
}

/** The first error of `stream` (a sink written to, or a source read), and how long after the call it came. */
async function firstError(start: () => Readable | Writable): Promise<{ error: Error; ms: number; reconnects: number }> {
  const t0 = performance.now();
  const stream = start();
  let reconnects = 0;
  stream.on('reconnect', () => reconnects++);
  const error = await new Promise<Error>((resolve) => {
    stream.once('error', resolve);
    if ('read' in stream) (stream as Readable).resume();
    else (stream as Writable).write('one message');
  });
  return { error, ms: performance.now() - t0, reconnects };
}

/** A TCP relay on 127.0.0.1 to `port` that counts the connections it took. */
async function countingRelay(port: number): Promise<{ port: number; readonly connections: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = createServer((client) => {
    connections++;
    const upstream = connect(port, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
      socket.on('close', () => sockets.delete(socket));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    get connections() {
      return connections;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('kafka over TLS with a client certificate', () => {
  it('produces with kafkaSink and consumes with kafkaSource on the SSL listener (client certificate required)', async () => {
    const topic = await broker.createTopic({ partitions: 2 });
    const lines = Array.from({ length: 50 }, (_, i) => `m-${i}`);
    await pipeline(Readable.from(lines), kafkaSink({ brokers: tlsBroker().bootstrap, topic, tls: mtls }));
    assert.deepEqual((await readWithKcat(topic)).sort(), [...lines].sort());
    assert.deepEqual((await consume({ brokers: tlsBroker().bootstrap, tls: mtls }, topic, 50)).sort(), [...lines].sort());
  });

  it('takes the certificates as PEM text too', async () => {
    const { readFileSync } = await import('node:fs');
    const topic = await broker.createTopic();
    const tls = { ca: readFileSync(pki.ca, 'utf8'), cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey, 'utf8') };
    await pipeline(Readable.from(['pem']), kafkaSink({ brokers: tlsBroker().bootstrap, topic, tls }));
    assert.deepEqual(await readWithKcat(topic), ['pem']);
  });
});

describe('kafka refuses a server it cannot verify, with MANIFOLD_ERR_TLS within a second', () => {
  const cases: Array<[string, () => { cert: string; key: string }, RegExp]> = [
    ['signed by another CA', () => ({ cert: pki.otherServerCert, key: pki.otherServerKey }), /unknown CA/],
    ['with an expired certificate', () => ({ cert: pki.expiredServerCert, key: pki.expiredServerKey }), /expired/],
    ['with a certificate for another name', () => ({ cert: pki.wrongNameServerCert, key: pki.wrongNameServerKey }), /name mismatch/],
  ];
  for (const [name, server, reason] of cases) {
    for (const role of ['sink', 'source'] as const) {
      it(`${role}: a server ${name}`, async (t) => {
        const proxy = await tlsProxy({ upstreamPort: broker.port, ...server() });
        t.after(() => proxy.close());
        const brokers = `127.0.0.1:${proxy.port}`;
        const topic = `t-${randomUUID()}`;
        const { error, ms, reconnects } = await firstError(() =>
          role === 'sink' ? kafkaSink({ brokers, topic, tls: { ca: pki.ca } }) : kafkaSource(fast({ brokers, topics: topic, groupId: 'g', tls: { ca: pki.ca } })),
        );
        assert.ok(error instanceof ManifoldError, inspect(error));
        assert.equal(error.code, ErrorCodes.TLS, error.message);
        assert.equal(error.retryable, false);
        assert.match(error.message, reason);
        assert.match(error.message, new RegExp(`TLS with 127\\.0\\.0\\.1:${proxy.port} failed`));
        assert.equal(reconnects, 0, 'not retried');
        assert.equal(proxy.accepted, 0, 'no handshake completed');
        assert.ok(ms < 1000, `failed after ${Math.round(ms)} ms`);
      });
    }
  }

  it('a client without a certificate, refused by the SSL listener after the TLS 1.3 handshake', async () => {
    for (const role of ['sink', 'source'] as const) {
      const brokers = tlsBroker().bootstrap;
      const { error, ms, reconnects } = await firstError(() =>
        role === 'sink' ? kafkaSink({ brokers, topic: `t-${randomUUID()}`, tls: { ca: pki.ca } }) : kafkaSource(fast({ brokers, topics: `t-${randomUUID()}`, groupId: 'g', tls: { ca: pki.ca } })),
      );
      assert.equal((error as ManifoldError).code, ErrorCodes.TLS, `${role}: ${error.message}`);
      assert.match(error.message, /client certificate/);
      assert.equal(reconnects, 0);
      assert.ok(ms < 1000, `${role} failed after ${Math.round(ms)} ms`);
    }
  });

  it('a client certificate signed by another CA', async () => {
    const { error, ms } = await firstError(() => kafkaSink({ brokers: tlsBroker().bootstrap, topic: `t-${randomUUID()}`, tls: { ca: pki.ca, cert: pki.otherClientCert, key: pki.otherClientKey } }));
    assert.equal((error as ManifoldError).code, ErrorCodes.TLS, error.message);
    assert.ok(ms < 1000, `failed after ${Math.round(ms)} ms`);
  });

  it('a plaintext port where TLS was asked for', async () => {
    const { error, ms } = await firstError(() => kafkaSink({ brokers: broker.bootstrap, topic: `t-${randomUUID()}`, tls: { ca: pki.ca } }));
    assert.equal((error as ManifoldError).code, ErrorCodes.TLS, error.message);
    assert.match(error.message, new RegExp(`TLS with ${broker.bootstrap.replace(/\./g, '\\.')} failed`));
    assert.ok(ms < 1000, `failed after ${Math.round(ms)} ms`);
  });
});

describe('kafka SASL over TLS (SASL_SSL)', () => {
  for (const mechanism of ['SCRAM-SHA-512', 'SCRAM-SHA-256'] as const) {
    it(`${mechanism}: a round trip through kafkaSink and kafkaSource`, async () => {
      const topic = await broker.createTopic();
      const { saslBootstrap: brokers, scram } = tlsBroker();
      const sasl = { mechanism, ...scram };
      await pipeline(Readable.from(['a', 'b', 'c']), kafkaSink({ brokers, topic, tls: { ca: pki.ca }, sasl }));
      assert.deepEqual(await consume({ brokers, tls: { ca: pki.ca }, sasl }, topic, 3), ['a', 'b', 'c']);
    });
  }

  it('a wrong password is MANIFOLD_ERR_AUTH, not retried, and the password is nowhere in the error', async (t) => {
    const { scram } = tlsBroker();
    // Every connection to the SASL_SSL listener passes this TCP relay, which counts them (the certificate is for 127.0.0.1, any port).
    const relay = await countingRelay(Number(tlsBroker().saslBootstrap.split(':')[1]));
    t.after(() => relay.close());
    const brokers = `127.0.0.1:${relay.port}`;
    const password = `wrong-${randomUUID()}`;
    for (const role of ['sink', 'source'] as const) {
      const connectionsBefore = relay.connections;
      const sasl = { mechanism: 'SCRAM-SHA-512' as const, username: scram.username, password };
      const { error, reconnects, ms } = await firstError(() =>
        role === 'sink' ? kafkaSink({ brokers, topic: `t-${randomUUID()}`, tls: { ca: pki.ca }, sasl }) : kafkaSource(fast({ brokers, topics: `t-${randomUUID()}`, groupId: 'g', tls: { ca: pki.ca }, sasl })),
      );
      assert.ok(error instanceof ManifoldError, inspect(error));
      assert.equal(error.code, ErrorCodes.AUTH, error.message);
      assert.equal(error.retryable, false);
      assert.equal(reconnects, 0, 'no reconnect');
      assert.match(error.message, /SASL authentication failed/);
      assert.ok(ms < 2000, `${role} failed after ${Math.round(ms)} ms`);
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(relay.connections - connectionsBefore, 1, `${role}: one authentication attempt, no retry`);
      const everything = `${error.message}\n${error.stack}\n${inspect(error, { depth: 20, showHidden: true })}\n${JSON.stringify(error)}`;
      assert.ok(!everything.includes(password), `${role}: the password appears in the error`);
      assert.ok(!everything.includes(scram.password));
    }
  });
});

sinkConformance({
  name: 'kafka over mutual TLS',
  maxUnacked: 2 * 1000 + 2 * 1024,
  timeoutMs: 30_000,
  async setup() {
    const topic = await broker.createTopic({ partitions: 1 });
    return {
      sink: (options) => kafkaSink({ brokers: tlsBroker().bootstrap, topic, tls: mtls, ...(options?.signal ? { signal: options.signal } : {}) }),
      readBack: async () => (await readWithKcat(topic)).map((line) => Buffer.from(line)),
      async cleanup() {},
    };
  },
});

sourceConformance({
  name: 'kafka over mutual TLS',
  redelivers: true,
  timeoutMs: 30_000,
  async setup() {
    const topic = await broker.createTopic({ partitions: 3 });
    const groupId = `g-${randomUUID()}`;
    return {
      source: (options) => kafkaSource(fast({ brokers: tlsBroker().bootstrap, tls: mtls, topics: topic, groupId, ...(options?.signal ? { signal: options.signal } : {}) })),
      produce: (payloads) => broker.produce(topic, payloads.map((value) => ({ value }))),
      async cleanup() {},
    };
  },
});

// Last: it restarts the broker.
describe('kafka certificate rotation', () => {
  it('reads a client certificate replaced on disk at the next connect (after the broker restarts)', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'manifold-kafka-rotate-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const cert = join(dir, 'client.pem');
    const key = join(dir, 'client.key');
    copyFileSync(pki.clientCert, cert);
    copyFileSync(pki.clientKey, key);
    const topic = await broker.createTopic();
    const options: KafkaSinkOptions = { brokers: tlsBroker().bootstrap, topic, tls: { ca: pki.ca, cert, key }, retry: { retries: 100, minTimeoutMs: 100, maxTimeoutMs: 500 } };
    const sink = kafkaSink(options);
    const errors: Error[] = [];
    sink.on('error', (error) => errors.push(error));
    const acked = (data: string) =>
      new Promise<void>((resolve, reject) => {
        sink.write(createMessage({ data, onAck: resolve, onNack: (error) => reject(error ?? new Error('nacked')) }));
      });
    await acked('before rotation');

    // A certificate the broker refuses replaces the good one on disk: had the sink kept what it read at
    // start, it would reconnect with the old (accepted) certificate and go on producing.
    copyFileSync(pki.otherClientCert, cert);
    copyFileSync(pki.otherClientKey, key);
    await broker.restart();
    const failed = new Promise<Error>((resolve) => sink.once('error', resolve));
    sink.write('after rotation');
    const error = await failed;
    assert.equal((error as ManifoldError).code, ErrorCodes.TLS, error.message);
    assert.match(error.message, /client certificate/);
    assert.deepEqual(await readWithKcat(topic), ['before rotation']);

    // And a good certificate written there is what the next sink's connection presents.
    const fresh = pki.issue('rotated-client', { cn: 'manifold-client-2' });
    copyFileSync(fresh.cert, cert);
    copyFileSync(fresh.key, key);
    await pipeline(Readable.from(['after the fix']), kafkaSink(options));
    assert.deepEqual(await readWithKcat(topic), ['before rotation', 'after the fix']);
  });
});
