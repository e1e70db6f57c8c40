/**
 * Kafka over TLS and SASL on the command line (issue 17): `kafkas://`, `kafka://...?tls=true`,
 * `tls.ca=`/`tls.cert=`/`tls.key=` file paths, `sasl.mechanism=`/`sasl.username=`/`sasl.password=`, the
 * URI's credentials with `sasl=`, and `tls:`/`sasl:` mappings in a pipeline file with the password from
 * `${ENV}`; each way round trips through the fixture's broker (SSL listener with a client certificate,
 * SASL_SSL listener with SCRAM users) as child processes. Mistakes exit 2 before connecting, never
 * showing the password.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { usage } from '../fixtures/cli.js';
import { startKafka, type KafkaBroker } from '../fixtures/kafka.js';
import { makePki, tlsProxy, type Pki } from '../fixtures/tls.js';

const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');
const SECRET = 'Kafka-Secret-T17';

describe('kafka TLS and SASL on the command line, before connecting', () => {
  let pki: Pki;
  before(() => {
    pki = makePki();
  });
  after(() => pki?.remove());

  const bad: Array<[string, () => string[], RegExp]> = [
    ['kafkas:// with tls=false', () => ['stdin:', 'kafkas://127.0.0.1:9093/t?tls=false'], /kafkas:\/\/ is Kafka over TLS, and tls=false says plain TCP: use kafka:\/\//],
    ['a CA file that is not there', () => ['stdin:', 'kafkas://127.0.0.1:9093/t?tls.ca=/nonexistent/ca.pem'], /cannot read tls\.ca from "\/nonexistent\/ca\.pem"/],
    ['a certificate without its key', () => ['stdin:', `kafkas://127.0.0.1:9093/t?tls.ca=${pki.ca}&tls.cert=${pki.clientCert}`], /tls\.key must be given with tls\.cert/],
    ['a misspelt tls key', () => ['stdin:', `kafka://127.0.0.1:9093/t?tls.cafile=${pki.ca}`], /unknown option "tls\.cafile" \(did you mean "tls\.ca"\?\)/],
    ['a misspelt sasl key', () => ['stdin:', `kafkas://127.0.0.1:9093/t?sasl.mechanism=PLAIN&sasl.username=u&sasl.pasword=${SECRET}`], /unknown option "sasl\.pasword" \(did you mean "sasl\.password"\?\)/],
    ['a password without a mechanism', () => ['stdin:', `kafkas://127.0.0.1:9093/t?sasl.username=u&sasl.password=${SECRET}`], /SASL needs its mechanism: add sasl\.mechanism=PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM/],
    ['a mechanism without a password', () => ['stdin:', 'kafkas://127.0.0.1:9093/t?sasl.mechanism=SCRAM-SHA-512&sasl.username=u'], /SASL with this mechanism needs a user and a password: sasl\.username= and sasl\.password=/],
    ['an unknown mechanism (its value not shown: sasl= may hold credentials)', () => ['stdin:', `kafkas://127.0.0.1:9093/t?sasl=u:${SECRET}`], /sasl \(the SASL mechanism\) must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, AWS_MSK_IAM, got \(hidden\)/],
    ['credentials both in the URI and as keys', () => ['stdin:', `kafkas://u:${SECRET}@127.0.0.1:9093/t?sasl=PLAIN&sasl.username=u&sasl.password=${SECRET}`], /the user and password are given both in the URI and as sasl\.username\/sasl\.password/],
    ['AWS_MSK_IAM without TLS', () => ['stdin:', 'kafka://b-1.c.x.c2.kafka.eu-west-1.amazonaws.com:9098/t?sasl.mechanism=AWS_MSK_IAM'], /options\.tls must be given with sasl\.mechanism AWS_MSK_IAM/],
  ];
  for (const [name, argv, message] of bad) {
    it(`exits 2: ${name}`, async () => {
      const run = await usage(argv());
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, message);
      assert.ok(!run.stderr.includes(SECRET), `the password shows: ${run.stderr}`);
      assert.equal(run.stdout, '');
    });
  }

  it('a pipeline file with a misspelt sasl key or a tls mapping of the wrong shape exits 2', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'manifold-kafka-tls-cli-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const cases: Array<[string, RegExp]> = [
      [`sasl: { mechanism: SCRAM-SHA-512, username: u, pasword: "${SECRET}" }`, /unknown option "pasword"/],
      ['tls: { ca: 7 }', /tls\.ca must be PEM text, PEM bytes or the path of a PEM file, got 7/],
      ['tls: [a]', /tls must be true, false or \{ ca, cert, key/],
    ];
    for (const [line, message] of cases) {
      const file = join(dir, 'p.yaml');
      writeFileSync(file, `from: "stdin:"\nto: { uri: "kafkas://127.0.0.1:9093/t", ${line} }\n`);
      const run = await usage(['run', file]);
      assert.equal(run.code, 2, line);
      assert.match(run.stderr, message, line);
      assert.ok(!run.stderr.includes(SECRET), run.stderr);
    }
  });
});

describe('kafka TLS and SASL on the command line, against the broker', () => {
  let broker: KafkaBroker;
  let pki: Pki;
  let dir: string;
  before(async () => {
    pki = makePki();
    broker = await startKafka({ pki });
    dir = mkdtempSync(join(tmpdir(), 'manifold-kafka-tls-cli-'));
  });
  after(async () => {
    await broker?.stop();
    pki?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function manifold(args: string[], input?: string, env: NodeJS.ProcessEnv = {}) {
    const proc = spawn(process.execPath, ['--import', 'tsx', bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
    proc.stdin.on('error', () => {});
    if (input !== undefined) proc.stdin.end(input);
    const code = new Promise<number | null>((resolve) => proc.once('exit', resolve));
    return { proc, code, stdout: () => out, stderr: () => err };
  }

  /** What `topic` holds, read with kcat from the plaintext listener. */
  async function kcat(topic: string): Promise<string[]> {
    const { stdout } = await promisify(execFile)('kcat', ['-b', broker.bootstrap, '-C', '-t', topic, '-e', '-q', '-f', '%s\n']);
    return stdout.split('\n').filter(Boolean);
  }

  /** Runs `source` -> stdout: until `count` lines arrived, then SIGTERM; returns the lines and stderr. */
  async function readLines(args: string[], count: number, env: NodeJS.ProcessEnv = {}): Promise<{ lines: string[]; stderr: string }> {
    const run = manifold([...args, '-q'], undefined, env);
    try {
      for (let i = 0; run.stdout().split('\n').length <= count && i < 3000; i++) {
        if (run.proc.exitCode !== null) break;
        await sleep(20);
      }
      run.proc.kill('SIGTERM');
      assert.equal(await run.code, 0, run.stderr());
      return { lines: run.stdout().trimEnd().split('\n'), stderr: run.stderr() };
    } finally {
      run.proc.kill('SIGKILL');
    }
  }

  async function produce(uri: string, lines: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
    const run = manifold(['stdin:', uri, '-q'], `${lines.join('\n')}\n`, env);
    try {
      assert.equal(await run.code, 0, run.stderr());
      return run.stderr();
    } finally {
      run.proc.kill('SIGKILL');
    }
  }

  const lines = Array.from({ length: 20 }, (_, i) => `line-${i}`);
  const mtlsQuery = () => `tls.ca=${pki.ca}&tls.cert=${pki.clientCert}&tls.key=${pki.clientKey}`;

  it('kafkas:// with tls.ca, tls.cert and tls.key (mutual TLS), both directions', async () => {
    const topic = await broker.createTopic();
    await produce(`kafkas://${broker.tls!.bootstrap}/${topic}?${mtlsQuery()}`, lines);
    assert.deepEqual(await kcat(topic), lines);
    const { lines: got } = await readLines([`kafkas://${broker.tls!.bootstrap}/${topic}?group=g-${topic}&from=earliest&${mtlsQuery()}`, 'stdout:'], lines.length);
    assert.deepEqual(got, lines);
  });

  it('kafka:// with tls=true, both directions', async () => {
    const topic = await broker.createTopic();
    await produce(`kafka://${broker.tls!.bootstrap}/${topic}?tls=true&${mtlsQuery()}`, lines);
    const { lines: got } = await readLines([`kafka://${broker.tls!.bootstrap}/${topic}?tls=true&group=g-${topic}&from=earliest&${mtlsQuery()}`, 'stdout:'], lines.length);
    assert.deepEqual(got, lines);
  });

  it('SCRAM-SHA-512 round trip: kafkas:// with sasl.mechanism, sasl.username, sasl.password; the password shows nowhere', async () => {
    const topic = await broker.createTopic();
    const { username, password } = broker.tls!.scram;
    const auth = `sasl.mechanism=SCRAM-SHA-512&sasl.username=${username}&sasl.password=${encodeURIComponent(password)}&tls.ca=${pki.ca}`;
    const producing = manifold(['stdin:', `kafkas://${broker.tls!.saslBootstrap}/${topic}?${auth}`], `${lines.join('\n')}\n`);
    assert.equal(await producing.code, 0, producing.stderr());
    assert.deepEqual(await kcat(topic), lines);
    const run = manifold([`kafkas://${broker.tls!.saslBootstrap}/${topic}?group=g-${topic}&from=earliest&${auth}`, 'stdout:', '--log-format', 'json']);
    try {
      for (let i = 0; run.stdout().split('\n').length <= lines.length && i < 3000; i++) await sleep(20);
      run.proc.kill('SIGTERM');
      assert.equal(await run.code, 0, run.stderr());
      assert.deepEqual(run.stdout().trimEnd().split('\n'), lines);
    } finally {
      run.proc.kill('SIGKILL');
    }
    for (const text of [producing.stderr(), run.stderr(), run.stdout()]) assert.ok(!text.includes(password), `the password shows: ${text}`);
    assert.match(run.stderr(), /sasl\.password=\*\*\*/, 'the URI is shown with the password hidden');
  });

  it('SCRAM-SHA-512 round trip from a pipeline file: tls and sasl mappings, the password from ${KAFKA_PASSWORD}', async () => {
    const topic = await broker.createTopic();
    const { username, password } = broker.tls!.scram;
    const endpoint = (extra: string) =>
      `{ uri: "kafkas://${broker.tls!.saslBootstrap}/${topic}", ${extra}tls: { ca: "${pki.ca}" }, sasl: { mechanism: SCRAM-SHA-512, username: ${username}, password: "\${KAFKA_PASSWORD}" } }`;
    const sinkFile = join(dir, `sink-${topic}.yaml`);
    writeFileSync(sinkFile, `from: "stdin:"\nto: ${endpoint('')}\n`);
    const env = { KAFKA_PASSWORD: password };
    const producing = manifold(['run', sinkFile], `${lines.join('\n')}\n`, env);
    assert.equal(await producing.code, 0, producing.stderr());
    assert.deepEqual(await kcat(topic), lines);
    const sourceFile = join(dir, `source-${topic}.yaml`);
    writeFileSync(sourceFile, `from: ${endpoint(`group: g-${topic}, from: earliest, `)}\nto: "stdout:"\n`);
    const { lines: got, stderr } = await readLines(['run', sourceFile], lines.length, env);
    assert.deepEqual(got, lines);
    for (const text of [producing.stderr(), stderr]) assert.ok(!text.includes(password), text);
  });

  it('the URI credentials with sasl=SCRAM-SHA-256 (and saslMechanism= as before)', async () => {
    const topic = await broker.createTopic();
    const { username, password } = broker.tls!.scram;
    const base = `kafkas://${username}:${encodeURIComponent(password)}@${broker.tls!.saslBootstrap}/${topic}?tls.ca=${pki.ca}`;
    await produce(`${base}&sasl=SCRAM-SHA-256`, lines);
    const { lines: got, stderr } = await readLines([`${base}&saslMechanism=SCRAM-SHA-512&group=g-${topic}&from=earliest`, 'stdout:'], lines.length);
    assert.deepEqual(got, lines);
    assert.ok(!stderr.includes(password));
  });

  it('a wrong SASL password: MANIFOLD_ERR_AUTH at once (no retry, though the command retries for ever), the password nowhere', async () => {
    const topic = await broker.createTopic();
    const wrong = `Wrong-${SECRET}`;
    for (const args of [
      ['stdin:', `kafkas://${broker.tls!.saslBootstrap}/${topic}?sasl.mechanism=SCRAM-SHA-512&sasl.username=${broker.tls!.scram.username}&sasl.password=${wrong}&tls.ca=${pki.ca}`],
      [`kafkas://${broker.tls!.saslBootstrap}/${topic}?group=g&sasl.mechanism=SCRAM-SHA-512&sasl.username=${broker.tls!.scram.username}&sasl.password=${wrong}&tls.ca=${pki.ca}`, 'stdout:'],
    ]) {
      const started = Date.now();
      const run = manifold([...args, '--log-format', 'json'], 'x\n');
      try {
        assert.equal(await run.code, 1, run.stderr());
      } finally {
        run.proc.kill('SIGKILL');
      }
      assert.ok(Date.now() - started < 15_000, 'it did not retry');
      assert.match(run.stderr(), /MANIFOLD_ERR_AUTH/);
      assert.match(run.stderr(), /SASL authentication failed/);
      assert.doesNotMatch(run.stderr(), /"reconnect"|reconnecting/i);
      assert.ok(!run.stderr().includes(wrong) && !run.stdout().includes(wrong), run.stderr());
    }
  });

  it('a server signed by another CA: MANIFOLD_ERR_TLS naming the host and the reason, exit 1', async (t) => {
    const proxy = await tlsProxy({ upstreamPort: broker.port, cert: pki.otherServerCert, key: pki.otherServerKey });
    t.after(() => proxy.close());
    const run = manifold(['stdin:', `kafkas://127.0.0.1:${proxy.port}/t?tls.ca=${pki.ca}`], 'x\n');
    try {
      assert.equal(await run.code, 1, run.stderr());
    } finally {
      run.proc.kill('SIGKILL');
    }
    assert.match(run.stderr(), /MANIFOLD_ERR_TLS/);
    assert.match(run.stderr(), new RegExp(`TLS with 127\\.0\\.0\\.1:${proxy.port} failed: unknown CA`));
  });
});
