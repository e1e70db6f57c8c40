/**
 * The manifold command reaching RabbitMQ over TLS: amqps:// URIs with tls.ca=, tls.cert=, tls.key= (file
 * paths) and a `tls:` mapping in a pipeline file, against the TLS node of test/fixtures/rabbitmq-tls.ts
 * (verify_peer, fail_if_no_peer_cert, EXTERNAL). The command runs as a child process, as a user runs it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { startTlsBroker, type TlsBroker } from '../fixtures/rabbitmq-tls.js';
import { randomName, until } from '../fixtures/rabbitmq.js';
import { makePki, type Pki } from '../fixtures/tls.js';

const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');

let pki: Pki;
let broker: TlsBroker;
before(async () => {
  pki = makePki();
  broker = await startTlsBroker(pki);
});
after(async () => {
  await broker?.stop();
  pki?.remove();
});

interface Run {
  code: Promise<number | null>;
  stdout(): string;
  stderr(): string;
  proc: ReturnType<typeof spawn>;
}

function manifold(t: TestContext, args: string[], input = ''): Run {
  const proc = spawn(process.execPath, ['--import', 'tsx', bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  proc.stderr!.on('data', (c: Buffer) => {
    err += c.toString();
  });
  proc.stdin!.on('error', () => {});
  proc.stdin!.end(input);
  const code = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await code;
    }
  });
  return { proc, code, stdout: () => out, stderr: () => err };
}

function pipelineFile(t: TestContext, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'manifold-cli-amqps-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'pipeline.yaml');
  writeFileSync(file, text);
  return file;
}

/** `tls.ca=...&tls.cert=...&tls.key=...` with this run's CA and client certificate. */
function tlsQuery(): string {
  const tls = broker.clientTls();
  return `tls.ca=${encodeURIComponent(tls.ca)}&tls.cert=${encodeURIComponent(tls.cert)}&tls.key=${encodeURIComponent(tls.key)}`;
}

function lines(n: number, prefix: string): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
}

describe('manifold with amqps:// URIs', { timeout: 90_000 }, () => {
  it('amqps: -> stdout: with tls.ca=, tls.cert=, tls.key= in the URI: the broker sees the client certificate', async (t) => {
    const f = broker.fixture();
    t.after(() => f.cleanup());
    const queue = await f.queue('cli-tls-src');
    const connectionName = randomName('cli-tls-src');
    await f.produce(queue, lines(5, 'uri').map((l) => Buffer.from(l)));
    const run = manifold(t, [`${broker.url()}/?queue=${queue}&connectionName=${connectionName}&${tlsQuery()}&closeTimeout=2s`, 'stdout:', '-q']);
    await until('5 lines on stdout', () => run.stdout().split('\n').filter(Boolean).length >= 5 || run.proc.exitCode !== null, 30_000);
    assert.deepEqual(run.stdout().split('\n').filter(Boolean), lines(5, 'uri'), run.stderr());
    const seen = await broker.waitForConnection(connectionName);
    assert.deepEqual({ ssl: seen.ssl, peer: seen.peerCertSubject, user: seen.user }, { ssl: true, peer: 'CN=manifold-client', user: 'guest' });
    run.proc.kill('SIGTERM');
    assert.equal(await run.code, 0, run.stderr());
    assert.equal(await f.count(queue), 0, 'every message was acked');
  });

  it('stdin: -> amqps: with tls.* keys publishes every line and exits 0', async (t) => {
    const f = broker.fixture();
    t.after(() => f.cleanup());
    const queue = await f.queue('cli-tls-sink');
    const sent = lines(20, 'stdin');
    const run = manifold(t, ['stdin:', `${broker.url()}/?routingKey=${queue}&${tlsQuery()}`, '-q'], `${sent.join('\n')}\n`);
    assert.equal(await run.code, 0, run.stderr());
    assert.deepEqual((await f.drain(queue, sent.length)).map((m) => m.content.toString()), sent);
  });

  it('a pipeline file with a tls: mapping and authMechanism EXTERNAL, both directions: the broker logs in the certificate user', async (t) => {
    const f = broker.fixture();
    t.after(() => f.cleanup());
    const queue = await f.queue('cli-tls-yaml');
    const tls = broker.clientTls();
    const tlsYaml = `tls: { ca: "${tls.ca}", cert: "${tls.cert}", key: "${tls.key}" }`;
    const sent = lines(10, 'yaml');
    const sinkName = randomName('cli-tls-yaml-sink');
    const sinkFile = pipelineFile(
      t,
      `from: "stdin:"\nto: { uri: "${broker.url({ external: true })}/", routingKey: "${queue}", authMechanism: EXTERNAL, connectionName: "${sinkName}", ${tlsYaml} }\nquiet: true\n`,
    );
    const publish = manifold(t, ['run', sinkFile], `${sent.join('\n')}\n`);
    assert.equal(await publish.code, 0, publish.stderr());

    const sourceName = randomName('cli-tls-yaml-src');
    const sourceFile = pipelineFile(
      t,
      `from: { uri: "${broker.url({ external: true })}/", queue: "${queue}", authMechanism: EXTERNAL, connectionName: "${sourceName}", closeTimeout: 2s, ${tlsYaml} }\nto: "stdout:"\nquiet: true\n`,
    );
    const consume = manifold(t, ['run', sourceFile]);
    await until('10 lines on stdout', () => consume.stdout().split('\n').filter(Boolean).length >= sent.length || consume.proc.exitCode !== null, 30_000);
    assert.deepEqual(consume.stdout().split('\n').filter(Boolean), sent, consume.stderr());
    const seen = await broker.waitForConnection(sourceName);
    assert.deepEqual({ user: seen.user, peer: seen.peerCertSubject }, { user: 'manifold-client', peer: 'CN=manifold-client' });
    consume.proc.kill('SIGTERM');
    assert.equal(await consume.code, 0, consume.stderr());
  });

  it('a TLS failure exits 1 at once with MANIFOLD_ERR_TLS, though the command retries connections for ever', async (t) => {
    const f = broker.fixture();
    t.after(() => f.cleanup());
    const queue = await f.queue('cli-tls-refused');
    // No client certificate: the broker (fail_if_no_peer_cert) refuses the handshake.
    const started = performance.now();
    const run = manifold(t, [`${broker.url()}/?queue=${queue}&tls.ca=${encodeURIComponent(pki.ca)}&tls.passphrase=hunter2-secret`, 'stdout:']);
    assert.equal(await run.code, 1, run.stderr());
    const ms = performance.now() - started;
    assert.match(run.stderr(), /MANIFOLD_ERR_TLS|TLS with localhost:\d+ failed/);
    assert.match(run.stderr(), /client certificate/);
    assert.doesNotMatch(run.stderr(), /guest:guest/);
    assert.doesNotMatch(run.stderr(), /hunter2/, 'tls.passphrase is never shown');
    assert.doesNotMatch(run.stderr(), /reconnect|retrying/i, 'no retry was logged');
    // The process start (tsx compiling) takes most of this; a retried failure would take seconds more.
    assert.ok(ms < 15_000, `exited after ${Math.round(ms)} ms`);
  });

  const refused: Array<[string, string[], RegExp]> = [
    ['tls.* with amqp:// (plaintext where TLS was asked)', ['stdin:', `amqp://guest:guest@127.0.0.1:5672/?routingKey=q&tls.ca=/etc/hostname`], /options\.tls is given but options\.url "amqp:\/\/guest:\*\*\*@127\.0\.0\.1:5672\/" is amqp:\/\/ \(plaintext\); write amqps:\/\//],
    ['a misspelt tls key', ['stdin:', `amqps://guest:guest@127.0.0.1:5671/?routingKey=q&tls.cafile=/etc/hostname`], /unknown option "tls\.cafile" \(did you mean "tls\.ca"\?\)/],
    ['a tls file that is not there', ['stdin:', `amqps://guest:guest@127.0.0.1:5671/?routingKey=q&tls.ca=/nonexistent/ca.pem`], /cannot read tls\.ca from "\/nonexistent\/ca\.pem"/],
    ['EXTERNAL without a client certificate', [`amqps://127.0.0.1:5671/?queue=q&authMechanism=EXTERNAL&tls.ca=/etc/hostname`, 'stdout:'], /authMechanism EXTERNAL logs in as the TLS client certificate/],
  ];
  for (const [name, args, message] of refused) {
    it(`refuses with exit 2, before connecting: ${name}`, async (t) => {
      const run = manifold(t, [...args, '-q']);
      assert.equal(await run.code, 2, run.stderr());
      assert.match(run.stderr(), message);
      assert.doesNotMatch(run.stderr(), /guest:guest/);
    });
  }
});
