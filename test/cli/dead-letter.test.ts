/**
 * The command's error policy: messages a transform or the sink refuses are redelivered, then
 * dead-lettered (--dead-letter, a file: sink or any other), else the command fails, with exit 4
 * when the source cannot deliver them again (stdin). The file: scheme, re-sending dead letters with
 * unwrap-dead-letter, the log lines (rate-limited, payload excerpt capped and escaped), the flags
 * and pipeline-file keys, and the metrics.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parseCommandLine } from '../../lib/cli/main.js';
import { pipelineSchema } from '../../lib/cli/schema.js';
import type { DeadLetterEnvelope } from '../../lib/core/error-policy.js';
import { usage } from '../fixtures/cli.js';
import { RabbitFixture } from '../fixtures/rabbitmq.js';

const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');
// By its location, so that the command may run in another working directory (file:dead.jsonl is relative to it).
const tsx = import.meta.resolve('tsx');
const BROKER = 'amqp://guest:guest@127.0.0.1:5672';

interface Run {
  code: Promise<number | null>;
  stdout(): string;
  stderr(): string;
  proc: ReturnType<typeof spawn>;
}

function manifold(t: TestContext, args: string[], input?: string, options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Run {
  const proc = spawn(process.execPath, ['--import', tsx, bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'], cwd: options.cwd, env: options.env ?? process.env });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  proc.stderr!.on('data', (c: Buffer) => { err += c.toString(); });
  proc.stdin!.on('error', () => {});
  if (input !== undefined) proc.stdin!.end(input);
  const code = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await code;
    }
  });
  return { proc, code, stdout: () => out, stderr: () => err };
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'manifold-cli-dl-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function envelopes(path: string): DeadLetterEnvelope[] {
  return readFileSync(path, 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line) as DeadLetterEnvelope);
}

async function waitFor(what: () => boolean, label: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!what()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${label}`);
    await sleep(20);
  }
}

// json-append refuses what is not JSON: a record at fault, given up on at once (no retries).
const REFUSE = ['--transform', 'json-append:x=1'];

describe('manifold: messages that cannot be delivered', () => {
  it('stdin: with a sink that refuses both lines and no dead-letter sink: exit 4, "2 messages lost", a line per lost message', async (t) => {
    const run = manifold(t, ['stdin:', 'stdout:', ...REFUSE], 'a\nb\n');
    assert.equal(await run.code, 4, run.stderr());
    assert.equal(run.stdout(), '', 'nothing was delivered');
    assert.match(run.stderr(), /error failed, 2 messages lost: flow: the message from line 1 could not be delivered after 1 attempt\(s\)/);
    assert.match(run.stderr(), / lost=2\n/);
    assert.match(run.stderr(), /set a dead-letter sink \(deadLetter, --dead-letter\)/);
    for (const line of [1, 2]) assert.match(run.stderr(), new RegExp(`warn lost the message from line ${line} \\(the source cannot deliver it again, and there is no dead-letter sink\\): .*code=MANIFOLD_ERR_INVALID_MESSAGE`));
  });

  it('the same with --dead-letter file:<path>: exit 0, the file holds both lines as JSON envelopes; a re-send with unwrap-dead-letter prints them as they were', async (t) => {
    const dir = tempDir(t);
    const dead = join(dir, 'dead.jsonl');
    const run = manifold(t, ['stdin:', 'stdout:', ...REFUSE, '--dead-letter', `file:${dead}`], 'a\n{"ok":true}\nb\n');
    assert.equal(await run.code, 0, run.stderr());
    assert.equal(run.stdout(), '{"ok":true,"x":1}\n', 'the good line is delivered');
    const records = envelopes(dead);
    assert.equal(records.length, 2);
    for (const [i, [data, line]] of ([['a', 1], ['b', 3]] as const).entries()) {
      const r = records[i]!;
      assert.equal(r.manifoldDeadLetter, 1);
      assert.equal(r.data, data);
      assert.deepEqual(r.position, { line });
      assert.equal(r.source, 'stdin:');
      assert.equal(r.attempts, 1);
      assert.equal(r.error.code, 'MANIFOLD_ERR_INVALID_MESSAGE');
      assert.match(r.error.message, /is not JSON/);
      assert.ok(!Number.isNaN(Date.parse(r.failedAt)));
    }
    assert.match(run.stderr(), /warn dead-lettered the message from line 1 after 1 attempt: .* attempts=1 code=MANIFOLD_ERR_INVALID_MESSAGE data=a\n/);
    assert.match(run.stderr(), /warn dead-lettered the message from line 3 after 1 attempt: .* data=b\n/);
    assert.match(run.stderr(), /info done: 3 messages, 1 acked, 0 nacked, 2 dead-lettered, 0 lost, 0 redeliveries .*deadLettered=2 lost=0/);
    assert.match(run.stderr(), new RegExp(`streaming stdin: -> stdout: \\(dead letters -> file:${dead.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)`));

    const resend = manifold(t, [`file:${dead}`, 'stdout:', '--transform', 'unwrap-dead-letter', '-q']);
    assert.equal(await resend.code, 0, resend.stderr());
    assert.equal(resend.stdout(), 'a\nb\n');
  });

  it('file:<relative path> is relative to the working directory and is appended to; a JSON log says the same in fields', async (t) => {
    const dir = tempDir(t);
    for (const input of ['one\n', 'two\nthree\n']) {
      const run = manifold(t, ['stdin:', 'stdout:', ...REFUSE, '--dead-letter', 'file:dead.jsonl', '--log-format', 'json'], input, { cwd: dir });
      assert.equal(await run.code, 0, run.stderr());
      const logs = run.stderr().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      const done = logs.find((l) => l.event === 'done')!;
      assert.equal(done.deadLettered, input.split('\n').length - 1);
      assert.equal(done.lost, 0);
      assert.equal(done.redeliveries, 0);
      assert.ok(logs.some((l) => l.event === 'deadletter' && (l.data === 'one' || l.data === 'two')));
    }
    assert.deepEqual(envelopes(join(dir, 'dead.jsonl')).map((r) => r.data), ['one', 'two', 'three']);
  });

  it('dead-letter log lines: at most 10 per 10 s, then one line with how many more; the payload excerpt is capped and its control characters escaped', async (t) => {
    const dir = tempDir(t);
    const dead = join(dir, 'dead.jsonl');
    const long = 'x'.repeat(500);
    const nasty = 'red\u001b[31m\u001b]0;title\u0007 over\rwritten \u009b2J';
    const lines = [long, nasty, ...Array.from({ length: 23 }, (_, i) => `bad ${i}`)];
    const run = manifold(t, ['stdin:', 'stdout:', ...REFUSE, '--dead-letter', `file:${dead}`], `${lines.join('\n')}\n`);
    assert.equal(await run.code, 0, run.stderr());
    assert.equal(envelopes(dead).length, 25, 'every record is dead-lettered, logged or not');
    const err = run.stderr();
    assert.equal(err.match(/warn dead-lettered /g)?.length, 10);
    assert.match(err, /warn \.\.\. and 15 more messages dead-lettered in the last 10s \(not logged one by one: at most 10 lines per 10s; manifold_dead_lettered_total counts them all\)/);
    assert.ok(err.indexOf('15 more') < err.indexOf('info done'), 'said before the done line');
    assert.match(err, new RegExp(` data="?x{120}\\.\\.\\. \\(500 bytes\\)"?\\n`), 'the first 120 bytes, and the size');
    assert.doesNotMatch(err, /x{121}/, 'never the whole payload');
    assert.doesNotMatch(err, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/, 'no raw control character reaches the terminal');
    assert.match(err, /data="red\\u001b\[31m\\u001b\]0;title\\u0007 over\\rwritten \\u009b2J"/);
  });

  it('bad values are usage errors (exit 2) naming the flag and what is allowed', async (t) => {
    const dir = tempDir(t);
    // A file source, not stdin: the command runs in this process, and the last cases create their streams.
    const source = `file:${join(dir, 'in.jsonl')}`;
    writeFileSync(join(dir, 'in.jsonl'), '');
    const bad: Array<[string[], RegExp]> = [
      [['--max-attempts', '0'], /^manifold: --max-attempts must be a whole number of at least 1, got "0"/],
      [['--max-attempts', 'lots'], /^manifold: --max-attempts must be a whole number of at least 1, got "lots"/],
      [['--retry-backoff', '30'], /^manifold: --retry-backoff must be a delay such as 500ms, or a range of delays such as 1s\.\.30s \(the first, and the largest\); "30" has no unit: write 30s or 30ms, got "30"/],
      [['--retry-backoff', '1s..30'], /--retry-backoff must be .*"30" has no unit/],
      [['--retry-backoff', 'soon'], /--retry-backoff must be .*, with units ms, s, m, h or d, got "soon"/],
      [['--retry-backoff', '30s..1s'], /--retry-backoff must be .*, whose largest delay is not less than its first, got "30s\.\.1s"/],
      [['--retry-backoff', '1s..2s..3s'], /--retry-backoff must be a delay such as 500ms, or a range/],
      [['--dead-letter-format', 'xml', '--dead-letter', 'file:x'], /^manifold: --dead-letter-format must be one of headers, json, got "xml"/],
      [['--dead-letter-format', 'json'], /^manifold: --dead-letter-format says how dead-letter records are written, but there is no dead-letter sink: add --dead-letter <uri>/],
      [['--dead-letter', 'stdin:'], /^manifold: --dead-letter "stdin:": "stdin:" cannot be a sink/],
      [['--dead-letter', 'ftp://user:hunter2@host/x'], /^manifold: --dead-letter "ftp:\/\/user:\*\*\*@host\/x" has an unknown scheme "ftp:"/],
      [['--dead-letter', `${BROKER.replace('guest@', 'hunter2@')}/?exchange=x&bogus=1`], /^manifold: --dead-letter: amqp:\/\/guest:\*\*\*@127\.0\.0\.1:5672\/\?exchange=x&bogus=1: unknown option "bogus"/],
      [['--dead-letter', 'file:'], /^manifold: --dead-letter: "file:": give the file: file:<path>/],
      [['--dead-letter', 'file://elsewhere/x.jsonl'], /^manifold: --dead-letter: file:\/\/elsewhere\/x\.jsonl: a file: URI names a local file; "elsewhere" is a host/],
      [['--dead-letter', 'file:x.jsonl?delimiter=%0A&colour=blue'], /^manifold: --dead-letter: file:x\.jsonl\?delimiter=%0A&colour=blue: unknown option "colour"/],
      [['--dead-letter', `file:${join(dir, 'no', 'such', 'dir', 'dead.jsonl')}`], /^manifold: --dead-letter: cannot open file:.*dead\.jsonl to append to it: ENOENT/],
      [['--dead-letter', `file:${join(dir, 'dead.jsonl')}`, '--dead-letter-format', 'headers'], /^manifold: --dead-letter-format headers needs a dead-letter sink that carries headers \(kafka:\/\/, amqp:\/\/\); file:.*dead\.jsonl would drop them, and with them what failed: use json/],
    ];
    for (const [flags, message] of bad) {
      const { code, stderr, stdout } = await usage([source, 'stdout:', ...flags]);
      assert.equal(code, 2, `${flags.join(' ')}: ${stderr}`);
      assert.match(stderr, message, flags.join(' '));
      assert.doesNotMatch(stderr, /hunter2/, 'the password is hidden');
      assert.equal(stdout, '');
    }
    const same = await usage([`file:${join(dir, 'in.jsonl')}`, 'stdout:', '--dead-letter', `file:${join(dir, 'in.jsonl')}`]);
    assert.equal(same.code, 2);
    assert.match(same.stderr, /--dead-letter "file:.*in\.jsonl" is the source itself/);
    const missing = await usage([`file:${join(dir, 'nothing.jsonl')}`, 'stdout:']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^manifold: cannot open file:.*nothing\.jsonl to read it: ENOENT/);
  });

  it('--help says the flags, their defaults and exit code 4', async () => {
    const { code, stdout } = await usage(['--help']);
    assert.equal(code, 0);
    assert.match(stdout, /--max-attempts <n> .*\n.*\(default 5; 1: no redelivery\)/);
    assert.match(stdout, /--retry-backoff <min>\[\.\.<max>\]\n.*\n.*\(default 1s\.\.30s, doubling each time\)/);
    assert.match(stdout, /--dead-letter <uri> /);
    assert.match(stdout, /--dead-letter-format headers\|json\n.*\n.*\(default headers for kafka:\/\/ and amqp:\/\//);
    assert.match(stdout, /\n {2}4 {4}messages were lost/);
    assert.match(stdout, /file:<path> /);
    assert.match(stdout, /unwrap-dead-letter /);
  });

  it('a pipeline file takes maxAttempts, retryBackoff, deadLetter (a URI or a mapping, ${ENV} filled in) and deadLetterFormat; the JSON Schema describes them', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'pipeline.yaml');
    writeFileSync(
      file,
      'from: "stdin:"\nto: "stdout:"\nmaxAttempts: 3\nretryBackoff: 200ms..5s\ndeadLetter: { uri: "file:${DL_DIR}/dead.jsonl", delimiter: "\\n" }\ndeadLetterFormat: json\n',
    );
    process.env.DL_DIR = dir;
    t.after(() => delete process.env.DL_DIR);
    const settings = parseCommandLine(['run', file]);
    assert.ok(typeof settings === 'object');
    assert.equal(settings.maxAttempts, 3);
    assert.deepEqual(settings.retryBackoff, { minTimeoutMs: 200, maxTimeoutMs: 5000 });
    assert.equal(settings.deadLetter?.display, `file:${dir}/dead.jsonl`);
    assert.equal(settings.deadLetterFormat, 'json');

    writeFileSync(file, 'from: "stdin:"\nto: "stdout:"\nretryBackoff: 500\n');
    const yamlNumber = parseCommandLine(['run', file]);
    assert.ok(typeof yamlNumber === 'object');
    assert.deepEqual(yamlNumber.retryBackoff, { minTimeoutMs: 500 }, 'a YAML number is the first delay in milliseconds');
    assert.equal(yamlNumber.maxAttempts, 5, 'the default');
    assert.equal(yamlNumber.deadLetter, undefined);

    for (const [text, message] of [
      ['retryBackoff: "30"', /retryBackoff must be .*"30" has no unit/],
      ['maxAttempts: "3"', /maxAttempts must be a whole number of at least 1, got "3"/],
      ['deadLetterFormat: xml\ndeadLetter: "file:x"', /deadLetterFormat must be one of headers, json, got "xml"/],
      ['deadLetterFormat: json', /deadLetterFormat says how dead-letter records are written, but there is no dead-letter sink/],
      ['deadLetter: { uri: "file:x", colour: blue }', /deadLetter: file:x: unknown option "colour"/],
      ['deadLetter: "stdin:"', /deadLetter "stdin:": "stdin:" cannot be a sink/],
      ['deadLeter: "file:x"', /unknown option "deadLeter" \(did you mean "deadLetter"\?\)/],
    ] as const) {
      writeFileSync(file, `from: "stdin:"\nto: "stdout:"\n${text}\n`);
      const { code, stderr } = await usage(['run', file]);
      assert.equal(code, 2, `${text}: ${stderr}`);
      assert.match(stderr, message, text);
    }

    const validate = new Ajv2020({ allErrors: true, strict: false }).compile(pipelineSchema());
    const good = { from: 'stdin:', to: 'stdout:' };
    for (const extra of [{ maxAttempts: 1 }, { retryBackoff: '1s..30s' }, { retryBackoff: '500ms' }, { retryBackoff: 250 }, { deadLetter: 'file:dead.jsonl' }, { deadLetter: { uri: 'kafka://h:9092/dead', acks: 'all' } }, { deadLetter: 'file:d', deadLetterFormat: 'json' }]) {
      assert.ok(validate({ ...good, ...extra }), `${JSON.stringify(extra)}: ${JSON.stringify(validate.errors)}`);
    }
    for (const extra of [{ maxAttempts: 0 }, { retryBackoff: '30' }, { retryBackoff: '1s..' }, { deadLetter: { uri: 'file:d', colour: 'blue' } }, { deadLetterFormat: 'xml' }]) {
      assert.equal(validate({ ...good, ...extra }), false, JSON.stringify(extra));
    }
    const properties = (pipelineSchema() as { properties: Record<string, { description?: string; default?: unknown }> }).properties;
    assert.equal(properties.maxAttempts?.default, 5);
    for (const key of ['maxAttempts', 'retryBackoff', 'deadLetter', 'deadLetterFormat']) assert.ok(properties[key]?.description, key);
  });

  it('RabbitMQ: a sink that refuses (unroutable) then recovers: the message is redelivered with backoff and delivered once; /metrics counts the redelivery', async (t) => {
    const rabbit = new RabbitFixture();
    t.after(() => rabbit.cleanup());
    const exchange = await rabbit.exchange('direct', 'cli-dl-x');
    const queue = await rabbit.queue('cli-dl-late');
    // Nothing is bound yet: the broker returns the publish (mandatory), the sink nacks it, the policy redelivers.
    const run = manifold(t, ['stdin:', `${BROKER}/?exchange=${exchange}&routingKey=late`, '--max-attempts', '5', '--retry-backoff', '1s..1s', '--metrics-port', '0']);
    await waitFor(() => /metrics on http:\/\/127\.0\.0\.1:\d+\/metrics/.test(run.stderr()), 'the metrics line');
    const port = Number(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(run.stderr())![1]);
    run.proc.stdin!.write('late but whole\n');
    await waitFor(() => run.stderr().includes('redelivering'), 'a redelivery');
    await rabbit.bind(queue, exchange, 'late');
    const got = await rabbit.drain(queue, 1);
    assert.deepEqual(got.map((m) => m.content.toString()), ['late but whole']);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(metrics, /^manifold_redeliveries_total [1-4]$/m);
    assert.match(metrics, /^manifold_dead_lettered_total 0$/m);
    assert.match(metrics, /^manifold_lost_total 0$/m);
    assert.match(metrics, /^manifold_nacks_total 0$/m);
    assert.match(metrics, /^manifold_acks_total 1$/m);
    assert.match(metrics, /^manifold_unacked_messages 0$/m);
    assert.match(metrics, /# HELP manifold_nacks_total Messages handed back unacked to a source that redelivers them/);
    run.proc.stdin!.end();
    assert.equal(await run.code, 0, run.stderr());
    assert.match(run.stderr(), /warn redelivering the message from line 1 in 1s \(attempt 2 of 5\): rabbitmqSink: exchange .* returned a message .* as unroutable .*code=MANIFOLD_ERR_DELIVERY/);
    assert.doesNotMatch(run.stderr(), /guest:guest/);
    assert.match(run.stderr(), /done: 1 messages, 1 acked, 0 nacked, 0 dead-lettered, 0 lost, [1-4] redeliver/);
  });

  it('RabbitMQ as the dead-letter sink: the record keeps its bytes, with x-manifold-dead-letter-* headers (the default format for amqp://); /metrics counts it', async (t) => {
    const rabbit = new RabbitFixture();
    t.after(() => rabbit.cleanup());
    const dlq = await rabbit.queue('cli-dlq');
    const run = manifold(t, ['stdin:', 'stdout:', ...REFUSE, '--dead-letter', `${BROKER}/?exchange=&routingKey=${dlq}`, '--metrics-port', '0']);
    await waitFor(() => /metrics on http:\/\/127\.0\.0\.1:\d+\/metrics/.test(run.stderr()), 'the metrics line');
    const port = Number(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(run.stderr())![1]);
    run.proc.stdin!.write('not json\n{"fine":1}\n');
    const got = await rabbit.drain(dlq, 1);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.content.toString(), 'not json');
    const headers = got[0]!.headers;
    assert.equal(headers['x-manifold-dead-letter-source'], 'stdin:');
    assert.deepEqual(JSON.parse(String(headers['x-manifold-dead-letter-position'])), { line: 1 });
    assert.equal(String(headers['x-manifold-dead-letter-attempts']), '1');
    assert.equal(headers['x-manifold-dead-letter-error-code'], 'MANIFOLD_ERR_INVALID_MESSAGE');
    await waitFor(() => run.stdout() === '{"fine":1,"x":1}\n', 'the good line');
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(metrics, /^manifold_dead_lettered_total 1$/m);
    assert.match(metrics, /^manifold_lost_total 0$/m);
    assert.match(metrics, /^manifold_unacked_messages 0$/m);
    assert.match(metrics, /^manifold_connector_ready\{role="dead-letter"\} 1$/m);
    const ready = (await (await fetch(`http://127.0.0.1:${port}/readyz`)).json()) as { connectors: Array<{ role: string; endpoint?: string }> };
    assert.deepEqual(ready.connectors.map((c) => c.role), ['source', 'sink', 'dead-letter']);
    assert.doesNotMatch(JSON.stringify(ready), /guest:guest/);
    run.proc.stdin!.end();
    assert.equal(await run.code, 0, run.stderr());
  });
});
