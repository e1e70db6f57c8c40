/** The manifold command end to end, as a child process. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseCommandLine } from '../../lib/cli/main.js';

const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');

interface Run {
  code: Promise<number | null>;
  stdout(): string;
  stderr(): string;
  proc: ReturnType<typeof spawn>;
}

function manifold(args: string[], input?: string, env: NodeJS.ProcessEnv = process.env): Run {
  const proc = spawn(process.execPath, ['--import', 'tsx', bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  proc.stderr!.on('data', (c: Buffer) => { err += c.toString(); });
  proc.stdin!.on('error', () => {});
  if (input !== undefined) proc.stdin!.end(input);
  return { proc, code: new Promise((r) => proc.once('exit', (c) => r(c))), stdout: () => out, stderr: () => err };
}

describe('manifold command', () => {
  it('stdin: -> stdout: with a json-append transform', async () => {
    const lines = Array.from({ length: 500 }, (_, i) => JSON.stringify({ i }));
    const run = manifold(['stdin:', 'stdout:', '--transform', 'json-append:source=cli,n=5', '-q'], `${lines.join('\n')}\n`);
    assert.equal(await run.code, 0, run.stderr());
    const out = run.stdout().trimEnd().split('\n').map((l) => JSON.parse(l));
    assert.equal(out.length, 500);
    assert.deepEqual(out[42], { i: 42, source: 'cli', n: 5 });
    assert.equal(run.stderr(), '', 'quiet: nothing on stderr');
  });

  it('runs a pipeline file with the same settings', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'manifold-cli-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'pipeline.yaml');
    writeFileSync(file, 'from: "stdin:"\nto: { uri: "stdout:", delimiter: "|" }\ntransforms: ["json-append:x=1"]\nlogFormat: json\n');
    const run = manifold(['run', file], '{"a":1}\n{"a":2}\n');
    assert.equal(await run.code, 0, run.stderr());
    assert.equal(run.stdout(), '{"a":1,"x":1}|{"a":2,"x":1}|');
    const logs = run.stderr().trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(logs.some((l) => l.event === 'done' && l.messages === 2 && l.acks === 2));
  });

  const bad: Array<[string, string[], RegExp]> = [
    ['no arguments', [], /give a source and a sink/],
    ['one argument', ['stdin:'], /give a source and a sink/],
    ['unknown scheme, password hidden', ['ftp://user:hunter2@host/x', 'stdout:'], /unknown scheme "ftp:"/],
    ['unknown scheme of a URI that is only a scheme', ['stdn:', 'stdout:'], /^manifold: source "stdn:" has an unknown scheme "stdn:"; known schemes are stdin:, stdout:/],
    ['a URI that is only a scheme and wants more', ['kinesis:', 'stdout:'], /^manifold: "kinesis:": give the stream as kinesis:<stream>/],
    ['not a URI', ['not a uri', 'stdout:'], /is not a URI/],
    ['wrong role', ['stdout:', 'stdin:'], /"stdout:" cannot be a source/],
    ['unknown option', ['stdin:?maxMessage=1MiB&bogus=1', 'stdout:'], /stdin:\?maxMessage=1MiB&bogus=1: unknown option "bogus"/],
    ['library option name for a URI key', ['stdin:?maxMessageBytes=1MiB', 'stdout:'], /unknown option "maxMessageBytes" \(did you mean "maxMessage"\?\)/],
    ['bad size', ['stdin:?maxMessage=lots', 'stdout:'], /maxMessage must be a size such as 512KiB, 1MiB or 1048576, got "lots"/],
    ['bad transform', ['stdin:', 'stdout:', '-t', 'gzip'], /unknown transform "gzip"/],
    ['transform without fields', ['stdin:', 'stdout:', '-t', 'json-append:'], /give at least one field/],
    ['bad log format', ['stdin:', 'stdout:', '--log-format', 'xml'], /--log-format must be text or json/],
    ['bad metrics port', ['stdin:', 'stdout:', '--metrics-port', 'http'], /--metrics-port must be a port number/],
    ['bad close timeout', ['stdin:', 'stdout:', '--close-timeout', 'later'], /^manifold: --close-timeout must be a duration such as 500ms, 30s, 5m or 12h, got "later" \(units: ms, s, m, h or d\)/],
    ['a close timeout without a unit (it meant 30 ms)', ['stdin:', 'stdout:', '--close-timeout', '30'], /^manifold: --close-timeout must be a duration .*, got "30", which has no unit: write 30s or 30ms \(units: ms, s, m, h or d\)/],
    ['a URI duration without a unit', ['amqp://guest:hunter2@127.0.0.1:5672/?queue=q&closeTimeout=30', 'stdout:'], /closeTimeout must be a duration .*, got "30", which has no unit/],
    ['bad retries', ['stdin:', 'stdout:', '--retries', 'lots'], /--retries must be a whole number of retries \(0 or more\) or forever, got "lots"/],
    ['a URI retry that is none', ['amqp://guest:hunter2@127.0.0.1:5672/?queue=q&retry=often', 'stdout:'], /retry must be false, a number of retries or forever, got "often"/],
    ['unknown flag', ['stdin:', 'stdout:', '--fast'], /Unknown option '--fast'/],
    ['missing pipeline file', ['run', '/nonexistent/p.yaml'], /cannot read pipeline file/],
  ];
  for (const [name, args, message] of bad) {
    it(`bad usage exits 2 with a clear message: ${name}`, async () => {
      const run = manifold(args, '');
      assert.equal(await run.code, 2);
      assert.match(run.stderr(), message);
      assert.doesNotMatch(run.stderr(), /hunter2/);
      assert.doesNotMatch(run.stderr(), /::/, 'no doubled colons');
      assert.equal(run.stdout(), '');
    });
  }

  it('a pipeline file with a bad key exits 2 naming it', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'manifold-cli-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'p.yaml');
    writeFileSync(file, 'from: "stdin:"\nto: "stdout:"\nmetricPort: 9\n');
    const run = manifold(['run', file]);
    assert.equal(await run.code, 2);
    assert.match(run.stderr(), /unknown option "metricPort"/);
  });

  it('a pipeline file with a wrongly typed or misspelt key says what it got and what it wants', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'manifold-cli-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const cases: Array<[string, RegExp]> = [
      ['metricsPort: "9464"\n', /metricsPort must be a whole number from 0 to 65535, got "9464"/],
      ['quiet: "yes"\n', /quiet must be true or false, got "yes"/],
      ['closeTimeout: later\n', /closeTimeout must be a duration such as 500ms, 30s, 5m or 12h, got "later"/],
      ['closeTimeout: "30"\n', /pipeline file .*p\.yaml: closeTimeout must be a duration .*, got "30", which has no unit: write 30s or 30ms/],
      ['retries: -1\n', /retries must be a whole number of retries \(0 or more\), or forever, got -1/],
      ['metricPort: 9\n', /unknown option "metricPort" \(did you mean "metricsPort"\?\)/],
      ['logFormat: xml\n', /logFormat must be one of text, json, got "xml"/],
    ];
    for (const [line, message] of cases) {
      const file = join(dir, 'p.yaml');
      writeFileSync(file, `from: "stdin:"\nto: "stdout:"\n${line}`);
      const run = manifold(['run', file]);
      assert.equal(await run.code, 2, line);
      assert.match(run.stderr(), message);
      assert.doesNotMatch(run.stderr(), /required/);
      assert.doesNotMatch(run.stderr(), /::/, 'no doubled colons');
    }
    writeFileSync(join(dir, 'p.yaml'), 'from: 7\nto: "stdout:"\n');
    const run = manifold(['run', join(dir, 'p.yaml')]);
    assert.equal(await run.code, 2);
    assert.match(run.stderr(), /from must be a URI, or a mapping with a uri key/);
  });

  it('prints help and the version', async () => {
    const help = manifold(['--help']);
    assert.equal(await help.code, 0);
    assert.match(help.stdout(), /Exit codes:/);
    assert.match(help.stdout(), /stdin:/);
    const version = manifold(['--version']);
    assert.equal(await version.code, 0);
    assert.match(version.stdout(), /^\d+\.\d+\.\d+\n$/);
  });

  it('SIGTERM drains and exits 0; /metrics counters match what flowed; /healthz answers', async () => {
    const run = manifold(['stdin:', 'stdout:', '--metrics-port', '0']);
    const port = await (async () => {
      for (;;) {
        const m = /metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(run.stderr());
        if (m) return Number(m[1]);
        await sleep(20);
      }
    })();
    for (let i = 0; i < 300; i++) run.proc.stdin!.write(`line ${i}\n`);
    while (run.stdout().split('\n').length < 301) await sleep(20);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(health.status, 200);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(metrics, /^manifold_messages_in_total 300$/m);
    assert.match(metrics, /^manifold_acks_total 300$/m);
    assert.match(metrics, /^manifold_nacks_total 0$/m);
    assert.match(metrics, /^manifold_unacked_messages 0$/m);
    assert.match(metrics, /^manifold_bytes_in_total 2290$/m);
    run.proc.kill('SIGTERM');
    assert.equal(await run.code, 0, run.stderr());
    assert.match(run.stderr(), /draining/);
    assert.match(run.stderr(), /done: 300 messages, 300 acked, 0 nacked/);
  });

  it('stdout closed early (| head -3): exit 0, no warning per message not written, no "signal received"', async () => {
    const input = Array.from({ length: 200_000 }, (_, i) => `line ${i}`).join('\n');
    for (const quiet of [false, true]) {
      const run = manifold(['stdin:', 'stdout:', ...(quiet ? ['-q'] : [])], input);
      // What head -3 does: read three lines, then close its end of the pipe.
      while (run.stdout().split('\n').length <= 3) await sleep(1);
      run.proc.stdout!.destroy();
      assert.equal(await run.code, 0, run.stderr());
      assert.doesNotMatch(run.stderr(), /nack:|warn/, 'no warning, let alone one per message');
      assert.doesNotMatch(run.stderr(), /signal/);
      if (quiet) {
        assert.equal(run.stderr(), '', '-q: nothing to warn about');
      } else {
        assert.match(run.stderr(), /info the output was closed \(write EPIPE\): stopping/);
        assert.match(run.stderr(), /done: \d+ messages/);
      }
    }
  });

  /** A command whose graceful stop cannot finish while its stdout is not read: stdout's pipe is full. */
  async function stuckOnOutput(t: TestContext): Promise<Run> {
    const run = manifold(['stdin:', 'stdout:']);
    t.after(() => {
      if (run.proc.exitCode === null && run.proc.signalCode === null) run.proc.kill('SIGKILL');
    });
    run.proc.stdout!.pause();
    run.proc.stdin!.write(`${'x'.repeat(100)}\n`.repeat(20_000));
    while (!run.stderr().includes('streaming')) await sleep(10);
    await sleep(300);
    return run;
  }

  it('two SIGINTs within 1 s are one Ctrl-C passed on twice (npx tsx does): the stop stays graceful, exit 0', async (t) => {
    const run = await stuckOnOutput(t);
    run.proc.kill('SIGINT');
    await sleep(100);
    run.proc.kill('SIGINT');
    await sleep(1500);
    assert.equal(run.proc.exitCode, null, 'still draining: nothing aborted it');
    run.proc.stdout!.resume();
    assert.equal(await run.code, 0, run.stderr());
    assert.match(run.stderr(), /SIGINT received: draining/);
    assert.doesNotMatch(run.stderr(), /second signal;|stopped at once/);
    const done = /done: (\d+) messages, (\d+) acked, 0 nacked/.exec(run.stderr());
    assert.ok(done, run.stderr());
    assert.equal(done[1], done[2], 'everything read was delivered');
    assert.equal(run.stdout().split('\n').length - 1, Number(done[2]));
  });

  it('a second signal more than 1 s after the first stops at once: exit 130', async (t) => {
    const run = await stuckOnOutput(t);
    run.proc.kill('SIGINT');
    await sleep(1300);
    run.proc.kill('SIGINT');
    while (!run.stderr().includes('stopped at once by a second signal')) await sleep(10);
    // What was written to stdout before the abort still has to leave the process before it exits.
    run.proc.stdout!.resume();
    assert.equal(await run.code, 130, run.stderr());
  });

  it('durations on the command line need a unit; a pipeline file\'s YAML number is milliseconds', async (t) => {
    const run = manifold(['stdin:', 'stdout:', '--close-timeout', '30s', '-q'], 'a\n');
    assert.equal(await run.code, 0, run.stderr());
    assert.equal(run.stdout(), 'a\n');
    assert.equal((parseCommandLine(['stdin:', 'stdout:', '--close-timeout', '1m30s']) as { closeTimeoutMs: number }).closeTimeoutMs, 90_000);
    const dir = mkdtempSync(join(tmpdir(), 'manifold-cli-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'p.yaml');
    writeFileSync(file, 'from: "stdin:"\nto: "stdout:"\ncloseTimeout: 30\n');
    assert.equal((parseCommandLine(['run', file]) as { closeTimeoutMs: number }).closeTimeoutMs, 30);
  });

  it('an unquoted URI that ends with a colon in a pipeline file gets a hint to quote it', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'manifold-cli-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'p.yaml');
    const cases: Array<[string, RegExp]> = [
      ['from: stdin:\nto: "stdout:"\n', /^manifold: pipeline file .*p\.yaml, line 1, column 7 is not valid YAML: nested mappings are not allowed in compact mappings; quote the URI: from: "stdin:"/],
      ['from: "stdin:"\nto: { uri: stdout: }\n', /line 2, column 12 is not valid YAML: .*; quote the URI: uri: "stdout:"/],
    ];
    for (const [text, message] of cases) {
      writeFileSync(file, text);
      const run = manifold(['run', file]);
      assert.equal(await run.code, 2);
      assert.match(run.stderr(), message);
      assert.doesNotMatch(run.stderr(), /::/);
    }
  });

  it('a pipeline file takes ${NAME} and ${NAME:-default} from the environment', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'manifold-cli-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'p.yaml');
    writeFileSync(
      file,
      [
        'from: "stdin:"',
        'to: { uri: "stdout:", delimiter: "${MANIFOLD_TEST_DELIMITER}" }',
        'transforms: ["json-append:env=${MANIFOLD_TEST_UNSET:-fallback},set=${MANIFOLD_TEST_SET:-unused},cost=$${5}"]',
        'quiet: ${MANIFOLD_TEST_QUIET}',
        'closeTimeout: ${MANIFOLD_TEST_CLOSE_TIMEOUT:-5s}',
        '',
      ].join('\n'),
    );
    const env: NodeJS.ProcessEnv = { ...process.env, MANIFOLD_TEST_DELIMITER: '|', MANIFOLD_TEST_SET: 'yes', MANIFOLD_TEST_QUIET: 'true' };
    delete env.MANIFOLD_TEST_UNSET;
    const run = manifold(['run', file], '{"a":1}\n', env);
    assert.equal(await run.code, 0, run.stderr());
    assert.equal(run.stdout(), '{"a":1,"env":"fallback","set":"yes","cost":"${5}"}|');
    assert.equal(run.stderr(), '', 'quiet: ${MANIFOLD_TEST_QUIET} unquoted is the boolean true');
  });

  it('an environment variable that is not set is exit 2 naming it; no value from the environment is ever shown', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'manifold-cli-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'p.yaml');
    const secret = `s3cret-${randomUUID()}`;
    const env: NodeJS.ProcessEnv = { ...process.env, MANIFOLD_TEST_SECRET: secret, MANIFOLD_TEST_NUMBER: '987654321' };
    delete env.MANIFOLD_TEST_PASSWORD;
    const uri = 'amqp://guest:${MANIFOLD_TEST_PASSWORD}@127.0.0.1:5672/?queue=q';
    writeFileSync(file, `from: "${uri}"\nto: "stdout:"\n`);
    const missing = manifold(['run', file], '', env);
    assert.equal(await missing.code, 2);
    assert.match(missing.stderr(), /^manifold: pipeline file .*p\.yaml: from uses the environment variable MANIFOLD_TEST_PASSWORD, which is not set: set it, or give a default with \$\{MANIFOLD_TEST_PASSWORD:-default\}\n$/);

    const cases: Array<[string, number, RegExp]> = [
      ['from: "stdin:"\nto: "stdout:"\ncloseTimeout: "${MANIFOLD_TEST_SECRET}"\n', 2, /closeTimeout must be a duration .*, got "\$\{MANIFOLD_TEST_SECRET\}"/],
      ['from: "stdin:"\nto: "stdout:"\nmetricsPort: ${MANIFOLD_TEST_NUMBER}\n', 2, /metricsPort must be a whole number from 0 to 65535, got "\$\{MANIFOLD_TEST_NUMBER\}"/],
      ['from: { uri: "stdin:", maxMessage: "${MANIFOLD_TEST_SECRET}" }\nto: "stdout:"\n', 2, /maxMessage must be a size .*, got "\$\{MANIFOLD_TEST_SECRET\}"/],
      // The password reaches the broker, which refuses it; the logs show the URI, the error says why.
      ['from: "amqp://guest:${MANIFOLD_TEST_SECRET}@127.0.0.1:5672/?queue=q"\nto: "stdout:"\nlogFormat: json\n', 1, /ACCESS_REFUSED/],
    ];
    for (const [text, code, message] of cases) {
      writeFileSync(file, text);
      const run = manifold(['run', file], '', env);
      assert.equal(await run.code, code, run.stderr());
      assert.match(run.stderr(), message);
      for (const output of [run.stdout(), run.stderr()]) {
        assert.ok(!output.includes(secret), `the secret is not shown: ${output}`);
        assert.ok(!output.includes('987654321'), `the number is not shown: ${output}`);
      }
    }
  });
});
