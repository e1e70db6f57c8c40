/** The manifold command end to end, as a child process. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');

interface Run {
  code: Promise<number | null>;
  stdout(): string;
  stderr(): string;
  proc: ReturnType<typeof spawn>;
}

function manifold(args: string[], input?: string): Run {
  const proc = spawn(process.execPath, ['--import', 'tsx', bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
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
    ['not a URI', ['not a uri', 'stdout:'], /is not a URI/],
    ['wrong role', ['stdout:', 'stdin:'], /"stdout:" cannot be a source/],
    ['unknown option', ['stdin:?maxMessage=1MiB&bogus=1', 'stdout:'], /stdin:\?maxMessage=1MiB&bogus=1: unknown option "bogus"/],
    ['library option name for a URI key', ['stdin:?maxMessageBytes=1MiB', 'stdout:'], /unknown option "maxMessageBytes" \(did you mean "maxMessage"\?\)/],
    ['bad size', ['stdin:?maxMessage=lots', 'stdout:'], /maxMessage must be a size such as 512KiB, 1MiB or 1048576, got "lots"/],
    ['bad transform', ['stdin:', 'stdout:', '-t', 'gzip'], /unknown transform "gzip"/],
    ['transform without fields', ['stdin:', 'stdout:', '-t', 'json-append:'], /give at least one field/],
    ['bad log format', ['stdin:', 'stdout:', '--log-format', 'xml'], /--log-format must be text or json/],
    ['bad metrics port', ['stdin:', 'stdout:', '--metrics-port', 'http'], /--metrics-port must be a port number/],
    ['bad close timeout', ['stdin:', 'stdout:', '--close-timeout', 'later'], /must be a duration/],
    ['unknown flag', ['stdin:', 'stdout:', '--fast'], /Unknown option '--fast'/],
    ['missing pipeline file', ['run', '/nonexistent/p.yaml'], /cannot read pipeline file/],
  ];
  for (const [name, args, message] of bad) {
    it(`bad usage exits 2 with a clear message: ${name}`, async () => {
      const run = manifold(args, '');
      assert.equal(await run.code, 2);
      assert.match(run.stderr(), message);
      assert.doesNotMatch(run.stderr(), /hunter2/);
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
});
