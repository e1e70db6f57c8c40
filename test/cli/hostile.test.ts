/**
 * The command against hostile input and careless operators (issue 19): a distinct secret planted in
 * each place a secret can be given (URI userinfo holding / @ : # ?, secret query names, a nested
 * endpoint URL, `sasl=` in a query, wrongly typed pipeline-file values, a dead-letter URI, a server that
 * reflects a token), each failure path run (usage errors, run-time errors, logs in text and JSON,
 * /metrics, /readyz, the progress line), and every output grepped for the secret. Also: credentials
 * given and ignored are an error, Kafka takes them as SASL; the metrics server checks Host; the metrics
 * port is bound before anything connects; SIGTERM right after start exits; durations above 2^31 - 1 ms
 * are refused; control characters from data never reach a terminal raw.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { main, parseCommandLine } from '../../lib/cli/main.js';
import { usage } from '../fixtures/cli.js';
import { startKafka, type KafkaBroker } from '../fixtures/kafka.js';
import { startWsServer, type WsServer } from '../fixtures/websocket.js';
import { RabbitFixture, consumersOf, until } from '../fixtures/rabbitmq.js';

const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');

interface Run {
  proc: ReturnType<typeof spawn>;
  code: Promise<number | null>;
  stdout(): string;
  stderr(): string;
}

function manifold(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): Run {
  const proc = spawn(process.execPath, ['--import', 'tsx', bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: options.env ?? process.env });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (c: Buffer) => (out += c.toString('latin1')));
  proc.stderr!.on('data', (c: Buffer) => (err += c.toString('latin1')));
  proc.stdin!.on('error', () => {});
  if (options.input !== undefined) proc.stdin!.end(options.input);
  return { proc, code: new Promise((resolve) => proc.once('exit', (code) => resolve(code))), stdout: () => out, stderr: () => err };
}

async function waitFor(what: string, predicate: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** Fails naming the secret and where it was found. */
function assertHidden(outputs: Record<string, string>, secrets: readonly string[]): void {
  for (const [where, text] of Object.entries(outputs)) {
    for (const secret of secrets) assert.ok(!text.includes(secret), `${secret} appears in ${where}:\n${text}`);
  }
}

/** An HTTP GET with a chosen Host header. */
function get(port: number, path: string, host?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: host === undefined ? {} : { host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function metricsPort(stderr: string): number | undefined {
  const m = /metrics on http:\/\/[^:]+:(\d+)\/metrics/.exec(stderr) ?? /"event":"metrics"[^}]*"port":(\d+)/.exec(stderr);
  return m ? Number(m[1]) : undefined;
}

/** A TCP server that counts connections and answers nothing (an AMQP broker that never says Connection.Start). */
async function blackHole(t: TestContext): Promise<{ port: number; connections(): number; open(): number }> {
  const sockets = new Set<Socket>();
  let connections = 0;
  const server: Server = createServer((socket) => {
    connections += 1;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    // Read (and drop) what the client sends: a paused socket would never see the client's FIN.
    socket.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as AddressInfo).port, connections: () => connections, open: () => sockets.size };
}

describe('secrets never print: usage errors', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'manifold-hostile-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function file(name: string, text: string): string {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  }

  // Each: a distinct secret, the argv that plants it, what the error must still say.
  const cases: Array<[string, string, () => string[], RegExp]> = [
    ['a password with / makes the URI "not a URI"', 'Slash-S01', () => ['amqp://app:Slash-S01/x@127.0.0.1/vh?queue=q', 'stdout:'], /"amqp:\/\/app:\*\*\*@127\.0\.0\.1\/vh\?queue=q" is not a URI; if the password holds/],
    ['a password with / in an extra argument', 'Slash-S02', () => ['stdin:', 'stdout:', 'amqp://app:Slash-S02/x@127.0.0.1/'], /too many arguments: "amqp:\/\/app:\*\*\*@127\.0\.0\.1\/"/],
    ['a password with # (a fragment to the URL parser)', 'Hash-S03', () => ['amqp://app:Hash-S03#x@127.0.0.1/?queue=q', 'stdout:'], /amqp:\/\/app:\*\*\*@127\.0\.0\.1\/\?queue=q/],
    ['a password with ? (a query to the URL parser)', 'Query-S04', () => ['amqp://app:Query-S04?x@127.0.0.1/?queue=q', 'stdout:'], /amqp:\/\/app:\*\*\*@127\.0\.0\.1\/\?queue=q/],
    ['a password with @, shown by an unknown-option error', 'At-S05', () => ['amqp://app:At-S05@x@127.0.0.1/?queue=q&bogus=1', 'stdout:'], /amqp:\/\/app:\*\*\*@127\.0\.0\.1\/\?queue=q&bogus=1: unknown option "bogus"/],
    ['a password with :, shown by an unknown-option error', 'Colon-S06', () => ['amqp://app:Colon-S06:x@127.0.0.1/?queue=q&bogus=1', 'stdout:'], /app:\*\*\*@127\.0\.0\.1/],
    ['a password that reads two ways (digits, then /)', 'Ss07', () => ['amqp://app:12/Ss07@127.0.0.1/?queue=q', 'stdout:'], /reads two ways.*percent-encode/],
    ['sasl= in a Kafka query holding credentials instead of a mechanism', 'Sasl-S08', () => ['kafka://127.0.0.1:9092/t?group=g&sasl=alice:Sasl-S08', 'stdout:'], /sasl=\*\*\*: sasl \(the SASL mechanism\) must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, AWS_MSK_IAM, got \(hidden\)/],
    ['a password in a nested endpoint URL', 'Nested-S09', () => ['stdin:', 's3://bucket/p?endpoint=http://minio:Nested-S09@127.0.0.1:9000&commitSize=-1'], /endpoint=http:\/\/minio:\*\*\*@127\.0\.0\.1:9000&commitSize=-1: commitSize must be/],
    ['a dead-letter URI with a / in its password', 'Dead-S10', () => ['stdin:', 'stdout:', '--dead-letter', 'amqp://app:Dead-S10/x@127.0.0.1/?exchange=x'], /--dead-letter "amqp:\/\/app:\*\*\*@127\.0\.0\.1\/\?exchange=x" is not a URI/],
    ['secret query values in a usage error', 'Q-S11', () => ['ws://127.0.0.1:1/f?auth=Q-S11a&sig=Q-S11b&signature=Q-S11c&jwt=Q-S11d&pwd=Q-S11e&routingKey=rk&maxPayload=lots', 'stdout:'], /auth=\*\*\*&sig=\*\*\*&signature=\*\*\*&jwt=\*\*\*&pwd=\*\*\*&routingKey=rk/],
    ['a secret inside a wrongly typed pipeline-file value', 'Typed-S12', () => ['run', file('typed.yaml', 'from: { uri: "stdin:", maxMessage: { token: "Typed-S12" } }\nto: "stdout:"\n')], /maxMessage must be a size .*, got a mapping/],
    ['a secret in a wrongly typed list', 'Typed-S13', () => ['run', file('list.yaml', 'from: "stdin:"\nto: "stdout:"\nmetricsHost: ["amqp://u:Typed-S13@h/"]\n')], /metricsHost must be a non-empty string, got a list of 1/],
    ['a secret in a wrongly typed subscribe', 'Typed-S14', () => ['run', file('sub.yaml', 'from: { uri: "ws://127.0.0.1:1/f", subscribe: { op: "auth", key: "Typed-S14" } }\nto: "stdout:"\n')], /subscribe must be .*, got a mapping/],
    ['a pipeline file that is a list of URIs', 'List-S15', () => ['run', file('notmap.yaml', '- "amqp://u:List-S15@h/"\n')], /must be a mapping of settings \(from, to, \.\.\.\), got a list of 1/],
    ['an unquoted URI ending in a colon (YAML error with a quoting hint)', 'Yaml-S16', () => ['run', file('colon.yaml', 'from: amqp://u:Yaml-S16@h/?queue=q:\nto: "stdout:"\n')], /not valid YAML/],
    ['a secret-named key of a pipeline-file endpoint given a wrong value', 'Key-S17', () => ['run', file('key.yaml', 'from: { uri: "amqp://127.0.0.1/?queue=q", password: "Key-S17" }\nto: "stdout:"\n')], /unknown option "password"/],
    ['an environment value in a pipeline file', 'Env-S18', () => ['run', file('env.yaml', 'from: "amqp://app:${HOSTILE_PW}@127.0.0.1/?queue=q&prefetch=lots"\nto: "stdout:"\n')], /prefetch must be/],
    ['Kafka credentials that would be ignored', 'Kafka-S19', () => ['kafka://alice:Kafka-S19@127.0.0.1:9092/t?group=g', 'stdout:'], /the user and password would be ignored: .*add saslMechanism=PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512/],
    ['Kinesis credentials that would be ignored', 'Kin-S20', () => ['kinesis://AKIAXX:Kin-S20@orders', 'stdout:'], /kinesis:\/\/AKIAXX:\*\*\*@orders: the user and password in the URI would be ignored: AWS credentials come from/],
    ['stdout: credentials that would be ignored', 'Std-S21', () => ['stdin:', 'stdout://u:Std-S21@localhost'], /would be ignored: standard input and output take none/],
    ['file: credentials (the URL parser refuses them)', 'File-S22', () => ['stdin:', 'file://u:File-S22@localhost/tmp/x.jsonl'], /"file:\/\/u:\*\*\*@localhost\/tmp\/x\.jsonl" is not a URI/],
  ];
  for (const [name, secret, argv, message] of cases) {
    it(`exits 2 without the secret: ${name}`, async () => {
      process.env.HOSTILE_PW = 'Env-S18';
      const run = await usage(argv());
      delete process.env.HOSTILE_PW;
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, message);
      assertHidden({ stderr: run.stderr, stdout: run.stdout }, [secret]);
      assert.doesNotMatch(run.stderr, /\x1b/);
    });
  }

  it('a control character in a URI does not reach the terminal raw', async () => {
    const run = await usage(['stdin:?bo\x1b[2Jgus\u009b=1', 'stdout:']);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /unknown option "bo\\u001b\[2Jgus\\u009b"/);
    assert.doesNotMatch(run.stderr, /[\x1b\u009b]/);
  });
});

describe('secrets never print: run time, in text and JSON logs, /metrics, /readyz and the progress line', () => {
  // A hostile feed: it checks nothing, sends a message, then closes with a reason that reflects the token
  // it was given (with a terminal escape), over and over as the source reconnects.
  async function hostileFeed(t: TestContext): Promise<WsServer> {
    const server = await startWsServer({
      onConnection: (ws, req) => {
        const token = new URL(req.url ?? '/', 'http://x').searchParams.get('token') ?? '';
        ws.send('hello');
        setTimeout(() => ws.close(1011, `bad token ${token} \x1b[31m\r`), 50);
      },
    });
    t.after(() => server.close());
    return server;
  }

  const planted = ['Wpw-R01', 'Wauth-R02', 'Wsig-R03', 'Wsign-R04', 'Wjwt-R05', 'Wpwd-R06', 'Wtok-R07'];
  const feedUri = (server: WsServer): string =>
    `${server.url.replace('ws://', 'ws://feeduser:Wpw-R01%2Fx@')}?auth=Wauth-R02&sig=Wsig-R03&signature=Wsign-R04&jwt=Wjwt-R05&pwd=Wpwd-R06&token=Wtok-R07&symbol=BTC&routingKey=rk-visible`;

  for (const format of ['text', 'json'] as const) {
    it(`a reconnecting WebSocket feed, logs in ${format}: nothing planted shows in stderr, /metrics or /readyz`, async (t) => {
      const server = await hostileFeed(t);
      const run = manifold([feedUri(server), 'stdout:', '--metrics-port', '0', '--log-format', format]);
      t.after(() => run.proc.kill('SIGKILL'));
      await waitFor('the metrics line', () => metricsPort(run.stderr()) !== undefined);
      await server.waitForConnections(3, 60_000);
      await waitFor('an outage line', () => /outage/.test(run.stderr()));
      const port = metricsPort(run.stderr())!;
      const metrics = await get(port, '/metrics');
      const readyz = await get(port, '/readyz');
      assert.equal(metrics.status, 200);
      assert.match(readyz.body, /WebSocket close 1011 bad token \*\*\*/, 'the reason the server gave, its token hidden');
      run.proc.kill('SIGTERM');
      await run.code;
      // The credentials were used (ws sends them as Basic auth), and the feed's own query reached it.
      assert.equal(server.accepted[0]!.req.headers.authorization, `Basic ${Buffer.from('feeduser:Wpw-R01/x').toString('base64')}`);
      assert.match(server.accepted[0]!.req.url!, /token=Wtok-R07/);
      assertHidden({ stderr: run.stderr(), stdout: run.stdout(), metrics: metrics.body, readyz: readyz.body }, planted);
      assert.match(run.stderr(), /auth=\*\*\*&sig=\*\*\*&signature=\*\*\*&jwt=\*\*\*&pwd=\*\*\*&token=\*\*\*&symbol=BTC&routingKey=rk-visible/);
      assert.match(run.stderr(), /feeduser:\*\*\*@127\.0\.0\.1/);
      assert.doesNotMatch(run.stderr(), /[\x1b\r]/, 'control characters from the server are escaped');
      if (format === 'json') for (const line of run.stderr().trim().split('\n')) JSON.parse(line);
    });
  }

  it('the progress line (stderr a terminal) hides them too', async (t) => {
    const server = await hostileFeed(t);
    let stderr = '';
    const tty = Object.assign(
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          stderr += chunk.toString();
          callback();
        },
      }),
      { isTTY: true },
    );
    const stdout = new Writable({ write: (_c, _e, cb) => cb() });
    const done = main([feedUri(server), 'stdout:?delimiter=%0A', '--close-timeout', '2s'], { stdout, stderr: tty });
    await server.waitForConnections(3, 60_000);
    await waitFor('a progress line naming the reconnecting source', () => /\r\x1b\[K[^\r]*source (re)?connecting/.test(stderr));
    // What SIGTERM does, without signalling the test process: the flow's handler runs.
    process.emit('SIGTERM', 'SIGTERM');
    await done;
    assertHidden({ stderr }, planted);
    const progress = stderr.split('\r\x1b[K').slice(1).join('\n');
    assert.match(progress, /WebSocket close 1011 bad token \*\*\*/);
    assert.doesNotMatch(progress, /[\x1b\r]/, 'escapes from the server are escaped in the progress line');
  });

  for (const format of ['text', 'json'] as const) {
    it(`a refused login (${format}): the password, holding / and #, is in no line`, async () => {
      const run = manifold([`amqp://guest:Amqp-R08%2Fx%23y@127.0.0.1:5672/?queue=${randomUUID()}`, 'stdout:', '--log-format', format]);
      assert.equal(await run.code, 1, run.stderr());
      assert.match(run.stderr(), /ACCESS_REFUSED|refused|auth/i);
      assertHidden({ stderr: run.stderr(), stdout: run.stdout() }, ['Amqp-R08']);
    });
  }

  it('a dead letter that cannot be written, with a secret-named query value: not in any line', async () => {
    const run = manifold(['stdin:', 'stdout:', '-t', 'json-append:x=1', '--dead-letter', 'ws://127.0.0.1:1/dead?apikey=Dl-R09&api_key=Dl-R10&retry=0'], { input: 'not json\n' });
    const code = await run.code;
    assert.ok(code === 1 || code === 4, run.stderr());
    assertHidden({ stderr: run.stderr() }, ['Dl-R09', 'Dl-R10']);
  });

  it('control characters from data (V8 quoting a JSON parse error) are escaped in text and JSON lines', async () => {
    for (const format of ['text', 'json'] as const) {
      const run = manifold(['stdin:', 'stdout:', '-t', 'json-append:x=1', '--log-format', format], { input: '\x1b[31mred\r\x1b]0;title\x07 \u009b2J\n' });
      assert.equal(await run.code, 4, run.stderr());
      assert.match(run.stderr(), /not valid JSON|Unexpected token/);
      assert.doesNotMatch(run.stderr(), /[\x1b\r\x07\u009b]/);
      assert.ok(run.stderr().includes('\\u001b'), run.stderr());
    }
  });
});

describe('Kafka takes URI credentials as SASL, with the mechanism named', () => {
  let broker: KafkaBroker;
  before(async () => {
    broker = await startKafka();
  });
  after(async () => {
    await broker?.stop();
  });

  it('kafka://user:password@host/topic?saslMechanism=PLAIN reads through the SASL listener; the password shows nowhere', async (t) => {
    const topic = await broker.createTopic({ partitions: 1 });
    await broker.produce(topic, ['a', 'b', 'c'].map((value) => ({ value })));
    const { username, password } = broker.sasl;
    const uri = `kafka://${username}:${encodeURIComponent(password)}@${broker.saslBootstrap}/${topic}?group=g-${topic}&from=earliest&saslMechanism=PLAIN`;
    const run = manifold([uri, 'stdout:', '--log-format', 'json']);
    t.after(() => run.proc.kill('SIGKILL'));
    await waitFor('three lines', () => run.stdout().split('\n').length > 3, 120_000);
    run.proc.kill('SIGTERM');
    assert.equal(await run.code, 0, run.stderr());
    assert.deepEqual(run.stdout().trimEnd().split('\n'), ['a', 'b', 'c']);
    assertHidden({ stderr: run.stderr() }, [password]);
    assert.match(run.stderr(), new RegExp(`${username}:\\*\\*\\*@`));
  });

  it('a wrong password fails with the broker\'s refusal, and shows nowhere', async (t) => {
    const topic = await broker.createTopic({ partitions: 1 });
    const run = manifold([`kafka://${broker.sasl.username}:Wrong-K01%2Fpw@${broker.saslBootstrap}/${topic}?group=g&saslMechanism=PLAIN&retry=0`, 'stdout:']);
    t.after(() => run.proc.kill('SIGKILL'));
    assert.equal(await run.code, 1, run.stderr());
    assertHidden({ stderr: run.stderr() }, ['Wrong-K01']);
  });
});

describe('the metrics server answers loopback names and its own address only (DNS rebinding)', () => {
  it('Host: attacker.example gets 421; localhost, 127.0.0.1 and [::1], with any port, get the metrics', async (t) => {
    const run = manifold(['stdin:', 'stdout:', '--metrics-port', '0']);
    t.after(() => run.proc.kill('SIGKILL'));
    await waitFor('the metrics line', () => metricsPort(run.stderr()) !== undefined);
    const port = metricsPort(run.stderr())!;
    for (const host of ['attacker.example', `attacker.example:${port}`, 'localhost.attacker.example', `127.0.0.1.nip.io:${port}`, '10.1.2.3', `[::2]:${port}`]) {
      for (const path of ['/metrics', '/readyz', '/healthz']) {
        const res = await get(port, path, host);
        assert.equal(res.status, 421, `${host} ${path}`);
        assert.doesNotMatch(res.body, /manifold_/);
      }
    }
    for (const host of [`localhost:${port}`, 'localhost', `127.0.0.1:${port}`, '127.0.0.1', `[::1]:${port}`, 'LOCALHOST:8080']) {
      const res = await get(port, '/metrics', host);
      assert.equal(res.status, 200, host);
      assert.match(res.body, /manifold_messages_in_total/);
    }
    run.proc.stdin!.end();
    assert.equal(await run.code, 0, run.stderr());
  });

  it('--metrics-host 0.0.0.0 (a container) answers any IP address, still not a name', async (t) => {
    const run = manifold(['stdin:', 'stdout:', '--metrics-port', '0', '--metrics-host', '0.0.0.0']);
    t.after(() => run.proc.kill('SIGKILL'));
    await waitFor('the metrics line', () => metricsPort(run.stderr()) !== undefined);
    const port = metricsPort(run.stderr())!;
    assert.equal((await get(port, '/metrics', `10.1.2.3:${port}`)).status, 200);
    assert.equal((await get(port, '/metrics', `[fd00::5]:${port}`)).status, 200);
    assert.equal((await get(port, '/metrics', `rebind.attacker.example:${port}`)).status, 421);
    run.proc.stdin!.end();
    assert.equal(await run.code, 0, run.stderr());
  });
});

describe('the command binds its metrics port before it connects anything', () => {
  it('a busy --metrics-port exits 2 and no connection was made', async (t) => {
    const broker = await blackHole(t);
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => busy.close(() => resolve())));
    const busyPort = (busy.address() as AddressInfo).port;
    const run = manifold([`amqp://guest:guest@127.0.0.1:${broker.port}/?queue=q`, 'stdout:', '--metrics-port', String(busyPort)]);
    assert.equal(await run.code, 2, run.stderr());
    assert.match(run.stderr(), new RegExp(`^manifold: cannot serve metrics on 127\\.0\\.0\\.1 port ${busyPort}: .*EADDRINUSE.*; give another --metrics-port`));
    assert.doesNotMatch(run.stderr(), /streaming/);
    await sleep(200);
    assert.equal(broker.connections(), 0, 'nothing connected');
  });
});

describe('SIGTERM right after start exits within the close timeout', () => {
  it('while the source is still connecting (a broker that never answers)', async (t) => {
    const broker = await blackHole(t);
    const run = manifold([`amqp://guest:guest@127.0.0.1:${broker.port}/?queue=q`, 'stdout:', '--close-timeout', '1s']);
    t.after(() => run.proc.kill('SIGKILL'));
    await waitFor('the connection attempt', () => broker.connections() > 0);
    run.proc.kill('SIGTERM');
    const code = await run.code;
    assert.ok(code === 0 || code === 1, `exit ${code}: ${run.stderr()}`);
    await waitFor('the connection to go', () => broker.open() === 0);
  });

  it('before the pipeline started (signal while connectors load)', async (t) => {
    const broker = await blackHole(t);
    const run = manifold([`amqp://guest:guest@127.0.0.1:${broker.port}/?queue=q`, 'stdout:', '--close-timeout', '1s']);
    t.after(() => run.proc.kill('SIGKILL'));
    // As soon as the process runs at all: before, or while, the connector module loads.
    await waitFor('the process to start', () => run.proc.pid !== undefined);
    await sleep(300);
    run.proc.kill('SIGTERM');
    const code = await run.code;
    assert.ok(code === 0 || code === 1 || code === null, `exit ${code}: ${run.stderr()}`);
    await waitFor('the connection to go', () => broker.open() === 0);
  });
});

describe('SIGTERM at any moment of a RabbitMQ connect, against the real broker', () => {
  it('exits within the close timeout; no consumer is left on the queue and every message is printed or back in the queue', async (t) => {
    const f = new RabbitFixture();
    t.after(() => f.cleanup());
    const total = 5000;
    const queue = await f.queue('sigterm');
    await f.produce(queue, Array.from({ length: total }, (_, i) => Buffer.from(`m${i}`)));
    let remaining = total;
    const seen: string[] = [];
    // Counted from the command's start line, which comes before the connect: from before the connection exists to
    // after the consumer holds its prefetch.
    for (const delayMs of [0, 2, 5, 10, 20, 40, 80, 160]) {
      const run = manifold([`amqp://guest:guest@127.0.0.1:5672/?queue=${queue}&prefetch=256`, 'stdout:', '--close-timeout', '2s']);
      t.after(() => run.proc.kill('SIGKILL'));
      await waitFor('the start line', () => run.stderr().includes('streaming'));
      await sleep(delayMs);
      const signalled = performance.now();
      run.proc.kill('SIGTERM');
      const code = await run.code;
      const tookMs = performance.now() - signalled;
      assert.equal(code, 0, `SIGTERM ${delayMs} ms after the start line: exit ${code}: ${run.stderr()}`);
      assert.ok(tookMs < 2000 + 5000 + 3000, `exited ${Math.round(tookMs)} ms after SIGTERM`);
      await until('no consumer on the queue', async () => (await consumersOf(queue)).length === 0, 10_000);
      const printed = run.stdout().split('\n').filter(Boolean).length;
      // What was printed was acked (at-least-once: printed, then acked); the rest went back to the queue.
      await until('every message printed or back in the queue', async () => printed + (await f.count(queue)) >= remaining, 10_000);
      // What was printed was acked and is gone: the next run starts from what is left.
      remaining = await f.count(queue);
      seen.push(`${delayMs} ms: exit ${code}, ${printed} printed`);
    }
    t.diagnostic(seen.join('; '));
    assert.ok(seen.some((line) => / 0 printed/.test(line)), `some run was stopped before it consumed: ${seen.join('; ')}`);
    assert.ok(seen.some((line) => /exit 0, [1-9]/.test(line)), `some run was stopped while consuming: ${seen.join('; ')}`);
  });
});

describe('durations are capped at 2^31 - 1 ms on the command line', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'manifold-hostile-d-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const limit = /must be a duration of at most 2147483647 ms \(about 24\.8 days: Node runs a longer timer after 1 ms\)/;

  const cases: Array<[string, () => string[], RegExp]> = [
    ['--close-timeout 25d', () => ['stdin:', 'stdout:', '--close-timeout', '25d'], new RegExp(`^manifold: --close-timeout ${limit.source}, got "25d"`)],
    ['--retry-backoff 1s..25d', () => ['stdin:', 'stdout:', '--retry-backoff', '1s..25d'], /--retry-backoff must be .*each of at most 2147483647 ms/],
    ['s3 commitInterval=25d', () => ['stdin:', 's3://bucket/p?commitInterval=25d'], new RegExp(`commitInterval ${limit.source}, got "25d"`)],
    ['ws reconnectEvery=25d', () => ['ws://127.0.0.1:1/feed?reconnectEvery=25d', 'stdout:'], new RegExp(`reconnectEvery ${limit.source}`)],
    ['kafka commitInterval=2147483648ms', () => ['kafka://127.0.0.1:9092/t?group=g&commitInterval=2147483648ms', 'stdout:'], limit],
    ['a pipeline file closeTimeout: 2147483648', () => {
      writeFileSync(join(dir, 'p.yaml'), 'from: "stdin:"\nto: "stdout:"\ncloseTimeout: 2147483648\n');
      return ['run', join(dir, 'p.yaml')];
    }, new RegExp(`closeTimeout ${limit.source}, got 2147483648`)],
    ['a pipeline file retryBackoff: 25d', () => {
      writeFileSync(join(dir, 'q.yaml'), 'from: "stdin:"\nto: "stdout:"\nretryBackoff: 25d\n');
      return ['run', join(dir, 'q.yaml')];
    }, /retryBackoff must be .*at most 2147483647 ms/],
  ];
  for (const [name, argv, message] of cases) {
    it(`refused, exit 2: ${name}`, async () => {
      const run = await usage(argv());
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, message);
    });
  }

  it('2^31 - 1 ms itself is taken', () => {
    const settings = parseCommandLine(['stdin:', 'stdout:', '--close-timeout', '2147483647ms']);
    assert.ok(typeof settings === 'object');
    assert.equal(settings.closeTimeoutMs, 2_147_483_647);
  });
});
