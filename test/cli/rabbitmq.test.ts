/** The manifold command with amqp:// URIs: keys read by the RabbitMQ declarations, amqplib's URL parameters passed on, anything else refused. */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { pipelineSchema } from '../../lib/cli/schema.js';
import { RabbitFixture, randomName, waitForConnection } from '../fixtures/rabbitmq.js';

const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');
const BROKER = 'amqp://guest:guest@127.0.0.1:5672';

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
  proc.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  proc.stderr!.on('data', (c: Buffer) => { err += c.toString(); });
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
  const dir = mkdtempSync(join(tmpdir(), 'manifold-cli-amqp-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'pipeline.yaml');
  writeFileSync(file, text);
  return file;
}

/** The heartbeat (seconds) the broker negotiated with the connection named `name`, as `rabbitmqctl list_connections` shows it. */
async function negotiatedHeartbeat(name: string): Promise<number | undefined> {
  await waitForConnection(name);
  const { stdout } = await promisify(execFile)('rabbitmqctl', ['list_connections', '-q', '--no-table-headers', 'timeout', 'client_properties'], { timeout: 60_000 });
  const line = stdout.split('\n').find((l) => l.includes(`{"connection_name","${name}"}`));
  return line === undefined ? undefined : Number(line.split('\t')[0]);
}

describe('manifold with amqp:// URIs', () => {
  const refused: Array<[string, string[], RegExp]> = [
    ['a misspelt sink key (the issue: it ran with routing key "" and nacked everything)', ['stdin:', `${BROKER}/?routingkey=Q`], /unknown option "routingkey" \(did you mean "routingKey"\?\)/],
    ['a misspelt source key', [`${BROKER}/?queue=q&prefech=5`, 'stdout:'], /unknown option "prefech" \(did you mean "prefetch"\?\)/],
    ['a misspelt boolean sink key', ['stdin:', `${BROKER}/?exchange=x&persistant=false`], /unknown option "persistant" \(did you mean "persistent"\?\)/],
    ['another client library\'s name for prefetch', [`${BROKER}/?queue=q&prefetchCount=5`, 'stdout:'], /unknown option "prefetchCount" \(did you mean "prefetch"\?\)/],
    ['a key that is nobody\'s', [`${BROKER}/?queue=q&colour=blue`, 'stdout:'], /unknown option "colour"; known options are .*queue.*heartbeat/],
    ['a source key on a sink', ['stdin:', `${BROKER}/?queue=q`], /unknown option "queue"/],
    ['no queue for a source', [`${BROKER}/`, 'stdout:'], /queue is required \(the queue to consume\)/],
    ['a prefetch out of range', [`${BROKER}/?queue=q&prefetch=70000`, 'stdout:'], /prefetch must be a whole number from 1 to 65535, got "70000"/],
    ['a duration without a unit it knows', [`${BROKER}/?queue=q&closeTimeout=soon`, 'stdout:'], /closeTimeout must be a duration such as 500ms/],
    ['assert that is not a boolean', [`${BROKER}/?queue=q&assert=maybe`, 'stdout:'], /assert must be true, false or an object \{ queue, bindings \}, got "maybe"/],
    ['an amqplib parameter that is not a number', [`${BROKER}/?queue=q&heartbeat=often`, 'stdout:'], /heartbeat must be a whole number of at least 0, got "often"/],
  ];
  for (const [name, args, message] of refused) {
    it(`refuses with exit 2, before connecting: ${name}`, async (t) => {
      const run = manifold(t, [...args, '-q']);
      assert.equal(await run.code, 2, run.stderr());
      assert.match(run.stderr(), message);
      assert.doesNotMatch(run.stderr(), /guest:guest/, 'the password is hidden');
      assert.equal(run.stdout(), '');
    });
  }

  it('a pipeline file with a wrong type says what it got and what it wants', async (t) => {
    const file = pipelineFile(t, `from: { uri: "${BROKER}/", queue: 7 }\nto: "stdout:"\n`);
    const run = manifold(t, ['run', file]);
    assert.equal(await run.code, 2, run.stderr());
    assert.match(run.stderr(), /queue must be a non-empty string, got 7/);
    assert.doesNotMatch(run.stderr(), /is required/);
  });

  it('a pipeline file takes typed values: a quoted number is not a number', async (t) => {
    const file = pipelineFile(t, `from: { uri: "${BROKER}/", queue: q, prefetch: "5" }\nto: "stdout:"\n`);
    const run = manifold(t, ['run', file]);
    assert.equal(await run.code, 2, run.stderr());
    assert.match(run.stderr(), /prefetch must be a whole number from 1 to 65535, got "5"/);
  });

  it("the pipeline file's JSON Schema takes the amqp keys and amqplib's parameters, and refuses a misspelt key", () => {
    const validate = new Ajv2020({ allErrors: true, strict: false }).compile(pipelineSchema());
    const from = { uri: `${BROKER}/`, queue: 'orders', prefetch: 500, closeTimeout: '5s', assert: true, heartbeat: 30 };
    const to = { uri: `${BROKER}/`, exchange: 'logs', routingKey: '', persistent: false };
    assert.ok(validate({ from, to }), JSON.stringify(validate.errors));
    assert.equal(validate({ from: { ...from, prefech: 5 }, to }), false, 'a misspelt source key');
    assert.equal(validate({ from, to: { ...to, persistant: false } }), false, 'a misspelt sink key');
    assert.equal(validate({ from: { ...from, queue: 7 }, to }), false, 'a queue that is not a string');
  });

  it('?heartbeat= stays in the URL and reaches amqplib, which proposes it to the broker', async (t) => {
    const rabbit = new RabbitFixture();
    t.after(() => rabbit.cleanup());
    const queue = await rabbit.queue('cli-heartbeat');
    const connectionName = randomName('cli-heartbeat');
    const run = manifold(t, [`${BROKER}/?queue=${queue}&heartbeat=7&connectionName=${connectionName}&closeTimeout=2s`, 'stdout:', '-q']);
    assert.equal(await negotiatedHeartbeat(connectionName), 7);
    run.proc.kill('SIGTERM');
    assert.equal(await run.code, 0, run.stderr());
  });

  it('a pipeline file may give amqplib parameters next to the uri; they reach amqplib too', async (t) => {
    const rabbit = new RabbitFixture();
    t.after(() => rabbit.cleanup());
    const queue = await rabbit.queue('cli-heartbeat-file');
    const connectionName = randomName('cli-heartbeat-file');
    const file = pipelineFile(t, `from: { uri: "${BROKER}/", queue: "${queue}", heartbeat: 9, connectionName: "${connectionName}" }\nto: "stdout:"\nquiet: true\n`);
    const run = manifold(t, ['run', file]);
    assert.equal(await negotiatedHeartbeat(connectionName), 9);
    run.proc.kill('SIGTERM');
    assert.equal(await run.code, 0, run.stderr());
  });

  it('stdin: -> amqp: publishes with the sink keys (routingKey, persistent, assert) and exits 0', async (t) => {
    const rabbit = new RabbitFixture();
    t.after(() => rabbit.cleanup());
    const exchange = randomName('cli-x');
    const queue = await rabbit.queue('cli-sink');
    rabbit.track({ exchanges: [exchange] });
    // Bound before anything is published, so nothing is unroutable; assert=true declares the exchange again, with the same arguments.
    await rabbit.withChannel(async (ch) => {
      await ch.assertExchange(exchange, 'topic', { durable: true });
      await ch.bindQueue(queue, exchange, 'lines');
    });
    const lines = Array.from({ length: 50 }, (_, i) => `line-${i}`);
    const run = manifold(t, ['stdin:', `${BROKER}/?exchange=${exchange}&routingKey=lines&persistent=no&assert=true&maxInFlight=10`, '-q'], `${lines.join('\n')}\n`);
    assert.equal(await run.code, 0, run.stderr());
    const got = await rabbit.drain(queue, lines.length);
    assert.deepEqual(got.map((m) => m.content.toString()), lines);
    assert.ok(got.every((m) => m.routingKey === 'lines'));
    assert.ok(got.every((m) => !m.persistent), 'persistent=no publishes transient messages');
  });
});
