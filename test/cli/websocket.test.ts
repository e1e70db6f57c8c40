/** ws:// and wss:// on the command line: our keys are read by the declarations, the rest of the query goes to the server. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { deadUrl, startCollector, startWsServer } from '../fixtures/websocket.js';

const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');

function manifold(args: string[], input?: string) {
  const proc = spawn(process.execPath, ['--import', 'tsx', bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  proc.stderr.on('data', (c: Buffer) => { err += c.toString(); });
  proc.stdin.on('error', () => {});
  if (input !== undefined) proc.stdin.end(input);
  return { proc, code: new Promise<number | null>((r) => proc.once('exit', (c) => r(c))), stdout: () => out, stderr: () => err };
}

function pipelineFile(t: TestContext, yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'manifold-cli-ws-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'pipeline.yaml');
  writeFileSync(file, yaml);
  return file;
}

/** A feed that sends `count` messages once it has received `subscriptions` messages, recording the upgrade URL and what it received. */
async function startSubscribedFeed(t: TestContext, subscriptions: number, count: number) {
  const requests: URL[] = [];
  const received: string[] = [];
  const server = await startWsServer({
    onConnection(ws, req) {
      requests.push(new URL(req.url ?? '/', 'ws://x'));
      ws.on('message', (data) => {
        received.push(data.toString());
        if (received.length === subscriptions) for (let i = 0; i < count; i++) ws.send(`m${i}`);
      });
    },
  });
  t.after(() => server.close());
  return { server, requests, received };
}

async function readUntil(run: ReturnType<typeof manifold>, lines: number): Promise<string[]> {
  for (let i = 0; run.stdout().split('\n').length <= lines && i < 500; i++) await sleep(20);
  run.proc.kill('SIGTERM');
  assert.equal(await run.code, 0, run.stderr());
  return run.stdout().trim().split('\n');
}

describe('ws: on the command line', { timeout: 60_000 }, () => {
  it('source: query keys that are not ours reach the server; ours (subscribe, repeated) do not', async (t) => {
    const feed = await startSubscribedFeed(t, 2, 3);
    const uri = new URL(feed.server.url);
    uri.searchParams.append('token', 'abc');
    uri.searchParams.append('subscribe', '{"op":"subscribe","channel":"a,b"}');
    uri.searchParams.append('channel', 'ticks');
    uri.searchParams.append('subscribe', 'second');
    uri.searchParams.append('reconnectEvery', '1h');
    uri.searchParams.append('heartbeatInterval', '0');
    uri.searchParams.append('maxPayload', '1MiB');
    const run = manifold([uri.toString(), 'stdout:', '-q']);
    assert.deepEqual(await readUntil(run, 3), ['m0', 'm1', 'm2']);
    assert.deepEqual(feed.received, ['{"op":"subscribe","channel":"a,b"}', 'second'], 'each subscribe= sent once, in order, whole');
    assert.equal(feed.requests.length, 1);
    assert.deepEqual([...feed.requests[0]!.searchParams], [['token', 'abc'], ['channel', 'ticks']]);
  });

  it('source from a pipeline file: subscribe as one text, durations with units, the URI query still the server\'s', async (t) => {
    const feed = await startSubscribedFeed(t, 1, 2);
    const file = pipelineFile(
      t,
      `from:\n  uri: "${feed.server.url}?token=abc"\n  subscribe: '{"op":"subscribe"}'\n  heartbeatInterval: 30s\n  connectTimeout: 2s\nto: "stdout:"\nquiet: true\n`,
    );
    const run = manifold(['run', file]);
    assert.deepEqual(await readUntil(run, 2), ['m0', 'm1']);
    assert.deepEqual(feed.received, ['{"op":"subscribe"}']);
    assert.deepEqual([...feed.requests[0]!.searchParams], [['token', 'abc']]);
  });

  it('sink: messageType and maxBuffered are ours, the rest of the query reaches the server', async (t) => {
    const collector = await startCollector();
    t.after(() => collector.server.close());
    const requests: string[] = [];
    collector.server.wss.on('connection', (_ws, req) => requests.push(req.url ?? ''));
    const run = manifold(['stdin:', `${collector.server.url}?key=v&messageType=text&maxBuffered=64KiB&maxInFlight=10`, '-q'], 'a\nb\nc\n');
    assert.equal(await run.code, 0, run.stderr());
    assert.deepEqual(collector.received.map(String), ['a', 'b', 'c']);
    assert.deepEqual(collector.binary, [false, false, false], 'sent as text frames');
    assert.deepEqual([...new URL(requests[0]!, 'ws://x').searchParams], [['key', 'v']]);
  });

  const bad: Array<[string, (dead: string) => string, RegExp]> = [
    ['a wrong type in a pipeline file says what it got and what it wants', (dead) => `from: { uri: "${dead}", reconnectEvery: true }\nto: "stdout:"\n`, /reconnectEvery must be a duration such as 500ms, 30s, 5m or 12h, got true/],
    ['a misspelt pipeline-file key gets a hint and is not sent to the server', (dead) => `from: { uri: "${dead}", reconectEvery: 1h }\nto: "stdout:"\n`, /unknown option "reconectEvery" \(did you mean "reconnectEvery"\?\)/],
    ['a sink key in a source gets refused in a pipeline file', (dead) => `from: { uri: "${dead}", messageType: text }\nto: "stdout:"\n`, /unknown option "messageType"; known options are .*reconnectEvery/],
    ['subscribe must be text', (dead) => `from: { uri: "${dead}", subscribe: { op: 1 } }\nto: "stdout:"\n`, /subscribe must be the text to send, or a list of texts, got a mapping/],
    ['a number in quotes is not a number in a pipeline file', (dead) => `from: "stdin:"\nto: { uri: "${dead}", maxInFlight: "10" }\n`, /maxInFlight must be a whole number of at least 1, got "10"/],
  ];
  for (const [name, yaml, message] of bad) {
    it(`exits 2: ${name}`, async (t) => {
      const file = pipelineFile(t, yaml(await deadUrl()));
      const run = manifold(['run', file], '');
      assert.equal(await run.code, 2, run.stderr());
      assert.match(run.stderr(), message);
    });
  }

  const badUris: Array<[string, string, RegExp]> = [
    ['a bad duration in the query', '?reconnectEvery=soon', /reconnectEvery must be a duration such as 500ms, 30s, 5m or 12h, got "soon"/],
    ['a heartbeat timeout with heartbeats off, naming both', '?heartbeatInterval=0&heartbeatTimeout=5s', /options\.heartbeatTimeoutMs and options\.heartbeatIntervalMs cannot be combined/],
  ];
  for (const [name, query, message] of badUris) {
    it(`exits 2: ${name}`, async () => {
      const run = manifold([`${await deadUrl()}${query}`, 'stdout:'], '');
      assert.equal(await run.code, 2, run.stderr());
      assert.match(run.stderr(), message);
    });
  }
});
