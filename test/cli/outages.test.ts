/**
 * The command as a long-running service: outages are logged once when they begin, every minute
 * while they last and once when they end, and it retries for ever unless told otherwise; it
 * survives a RabbitMQ outage of minutes (a child process of the CLI against the real broker).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../lib/cli/log.js';
import { OUTAGE_REPORT_MS, OutageLog } from '../../lib/cli/outages.js';
import { RabbitFixture, startBroker, stopBroker, until } from '../fixtures/rabbitmq.js';

const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');
const BROKER = 'amqp://guest:guest@127.0.0.1:5672';
/** The outage issue 16 names: the command exited after 128-140 s of it. */
const OUTAGE_MS = 3 * 60_000;

function manifold(t: TestContext, args: string[]) {
  const proc = spawn(process.execPath, ['--import', 'tsx', bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  proc.stdout.resume();
  proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
  proc.stdin.on('error', () => {});
  const code = new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await code;
    }
  });
  return { proc, code, stderr: () => err };
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function recorder(): { log: Logger; lines: Array<{ level: string; fields: Record<string, unknown>; message: string }> } {
  const lines: Array<{ level: string; fields: Record<string, unknown>; message: string }> = [];
  const at = (level: string) => (fields: Record<string, unknown>, message: string) => lines.push({ level, fields, message });
  return { lines, log: { info: at('info'), warn: at('warn'), error: at('error'), flush: () => {} } };
}

describe('OutageLog', () => {
  it('tells an outage when it begins, while it lasts, and when it ends, not once per attempt', async () => {
    const sink = new EventEmitter();
    const { log, lines } = recorder();
    const outages = new OutageLog([['sink', sink]], log, { sink: Infinity }, 100);
    sink.emit('ready');
    assert.equal(lines.length, 0, 'a first connection is no outage');
    for (let attempt = 1; attempt <= 3; attempt++) sink.emit('reconnect', { attempt, delayMs: 10, error: new Error(`refused ${attempt}`) });
    assert.deepEqual(lines.map((l) => [l.level, l.message]), [['warn', 'sink outage began; retrying for ever']]);
    assert.equal(lines[0]!.fields.error, 'refused 1');
    await sleep(250);
    const continuing = lines.filter((l) => l.fields.state === 'continues');
    assert.ok(continuing.length >= 2, `a line per period: ${continuing.length}`);
    assert.match(continuing[0]!.message, /^sink outage continues: \d+ms so far, 3 attempts; retrying for ever$/);
    assert.equal(continuing[0]!.fields.error, 'refused 3', 'the last error');
    sink.emit('ready');
    const ended = lines.at(-1)!;
    assert.equal(ended.level, 'info');
    assert.match(ended.message, /^sink outage ended after \d+ms \(3 attempts\): connected again$/);
    const count = lines.length;
    await sleep(250);
    sink.emit('ready');
    assert.equal(lines.length, count, 'nothing more once it ended');
    outages.close();
  });

  it('says the budget it has, and its timers do not outlive close()', () => {
    const source = new EventEmitter();
    const { log, lines } = recorder();
    const outages = new OutageLog([['source', source]], log, { source: 1 });
    source.emit('reconnect', { attempt: 1, delayMs: 10, error: new Error('down') });
    assert.equal(lines[0]!.message, 'source outage began; retrying up to 1 time');
    outages.close();
    assert.equal(source.listenerCount('reconnect'), 0);
    assert.equal(OUTAGE_REPORT_MS, 60_000);
  });
});

describe('the command retries outages for ever unless bounded', () => {
  it('--retries, a pipeline-file retries or ?retry= bound it: the command gives up and exits 1', async (t) => {
    const port = await closedPort();
    const uri = `amqp://guest:guest@127.0.0.1:${port}/?queue=q`;
    const bounded = manifold(t, [uri, 'stdout:', '--retries', '1']);
    assert.equal(await bounded.code, 1, bounded.stderr());
    assert.match(bounded.stderr(), /streaming .* retries=1\n/);
    assert.match(bounded.stderr(), /warn source outage began; retrying up to 1 time state=began error=".*ECONNREFUSED/);
    assert.match(bounded.stderr(), /failed after 2 attempts/);
    const own = manifold(t, [`${uri}&retry=false`, 'stdout:', '--retries', '5']);
    assert.equal(await own.code, 1, own.stderr());
    assert.doesNotMatch(own.stderr(), /outage/, "the endpoint's own retry wins: no retry at all");
    const dir = mkdtempSync(join(tmpdir(), 'manifold-outages-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'p.yaml'), `from: "${uri}"\nto: "stdout:"\nretries: 0\n`);
    const file = manifold(t, ['run', join(dir, 'p.yaml')]);
    assert.equal(await file.code, 1, file.stderr());
    assert.match(file.stderr(), /retries=0\n/);
    assert.match(file.stderr(), /error failed: /);
  });

  it('by default it keeps trying, and says so', async (t) => {
    const port = await closedPort();
    const run = manifold(t, [`amqp://guest:guest@127.0.0.1:${port}/?queue=q`, 'stdout:']);
    await until('the outage line', () => run.stderr().includes('outage began'), 20_000);
    assert.match(run.stderr(), /streaming .* retries=forever\n/);
    assert.match(run.stderr(), /warn source outage began; retrying for ever/);
    // Several attempts (200 ms, 400 ms, 800 ms... apart), one line. The outage test below shows it outlasts the library's 10 retries.
    await sleep(3000);
    assert.equal(run.proc.exitCode, null, run.stderr());
    assert.equal(run.stderr().match(/reconnect|outage/g)?.length, 1, 'no line per attempt');
    run.proc.kill('SIGTERM');
    assert.equal(await run.code, 0, run.stderr());
  });

  it(`survives a ${OUTAGE_MS / 60_000}-minute RabbitMQ outage and delivers every message, exactly as sent, after it`, { timeout: OUTAGE_MS + 4 * 60_000 }, async (t) => {
    const rabbit = new RabbitFixture();
    t.after(() => rabbit.cleanup());
    const queue = await rabbit.queue('cli-outage');
    const run = manifold(t, ['stdin:', `${BROKER}/?routingKey=${queue}`]);
    const batch = (first: number) => Array.from({ length: 100 }, (_, i) => `message ${first + i} ${'x'.repeat(i)}`);
    const [before, during, after] = [batch(0), batch(100), batch(200)];
    run.proc.stdin.write(`${before.join('\n')}\n`);
    await until('the first messages in the queue', async () => (await rabbit.count(queue)) === before.length, 30_000);
    // Their confirms reach the sink just after the queue has them: let them, so none is published twice.
    await sleep(1000);
    try {
      await stopBroker();
      run.proc.stdin.write(`${during.join('\n')}\n`);
      await sleep(OUTAGE_MS);
      assert.equal(run.proc.exitCode, null, `still running after the outage:\n${run.stderr()}`);
    } finally {
      await startBroker();
    }
    await until('the end of the outage', () => run.stderr().includes('sink outage ended'), 90_000);
    run.proc.stdin.end(`${after.join('\n')}\n`);
    assert.equal(await run.code, 0, run.stderr());
    const log = run.stderr();
    assert.match(log, /warn sink outage began; retrying for ever/);
    assert.ok((log.match(/warn sink outage continues: \d+m/g) ?? []).length >= 1, log);
    assert.match(log, /info sink outage ended after [3-9]m/);
    assert.match(log, /done: 300 messages, 300 acked, 0 nacked/);
    const got = await rabbit.drain(queue, 300);
    assert.deepEqual(got.map((m) => m.content.toString()), [...before, ...during, ...after]);
  });
});
