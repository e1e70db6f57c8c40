/** The manifold command against real servers: a WebSocket feed into S3 (s3rver). */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startS3 } from '../fixtures/s3.js';
import { startWsServer } from '../fixtures/websocket.js';

const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');

it('ws: -> s3: with a subscription and json-append; SIGTERM drains; every message is in the bucket', async (t) => {
  const s3 = await startS3();
  t.after(() => s3.cleanup());
  const bucket = await s3.createBucket();
  const bufferPath = await s3.tempDir('cli-buffer');
  let sent = 0;
  const subscriptions: string[] = [];
  const server = await startWsServer({
    onConnection(ws) {
      ws.on('message', (data) => {
        subscriptions.push(data.toString());
        // Start the feed once subscribed, as market-data servers do.
        const timer = setInterval(() => {
          if (sent >= 400) return;
          ws.send(JSON.stringify({ n: sent++ }));
        }, 2);
        ws.once('close', () => clearInterval(timer));
      });
    },
  });
  t.after(() => server.close());

  const feed = new URL(server.url);
  feed.searchParams.set('subscribe', '{"op":"subscribe","channel":"ticks"}');
  feed.searchParams.set('reconnectEvery', '1h');
  const sink = `s3://${bucket}/feed/?endpoint=${encodeURIComponent(s3.endpoint)}&commitInterval=500ms&uploadInterval=200ms&bufferPath=${encodeURIComponent(bufferPath)}`;
  const proc = spawn(process.execPath, ['--import', 'tsx', bin, feed.toString(), sink, '-t', 'json-append:via=manifold', '--log-format', 'json'], {
    env: { ...process.env, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  const exited = new Promise<number | null>((r) => proc.once('exit', r));
  for (let i = 0; sent < 400 && i < 1000; i++) await sleep(20);
  assert.equal(sent, 400, 'the server sent its whole feed');
  // Let the last messages reach the sink before the signal: after it, the source stops reading.
  await sleep(300);
  proc.kill('SIGTERM');
  assert.equal(await exited, 0, stderr);
  assert.deepEqual(subscriptions, ['{"op":"subscribe","channel":"ticks"}']);
  const records = (await s3.objects(bucket)).flatMap((o) => o.body.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l)));
  assert.deepEqual(records.map((r) => r.n).sort((a, b) => a - b), Array.from({ length: 400 }, (_, i) => i));
  assert.ok(records.every((r) => r.via === 'manifold'));
  const logs = stderr.trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(logs.some((l) => l.event === 'upload'), 'uploads were logged');
  assert.ok(logs.some((l) => l.event === 'done' && l.acks === 400));
});

it('amqp: (queue) -> stdout: delivers and acks every message; SIGTERM drains; the queue is left empty', async (t) => {
  const { RabbitFixture } = await import('../fixtures/rabbitmq.js');
  const rabbit = new RabbitFixture();
  t.after(() => rabbit.cleanup());
  const queue = await rabbit.queue('cli');
  await rabbit.produce(queue, Array.from({ length: 300 }, (_, i) => Buffer.from(`m${i}`)));
  const proc = spawn(process.execPath, ['--import', 'tsx', bin, `amqp://guest:guest@127.0.0.1:5672/?queue=${queue}&prefetch=50`, 'stdout:', '-q'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
  proc.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  const exited = new Promise<number | null>((r) => proc.once('exit', r));
  for (let i = 0; stdout.split('\n').length <= 300 && i < 1000; i++) await sleep(20);
  proc.kill('SIGTERM');
  assert.equal(await exited, 0, stderr);
  assert.deepEqual(stdout.trim().split('\n').sort(), Array.from({ length: 300 }, (_, i) => `m${i}`).sort());
  assert.equal(await rabbit.count(queue), 0, 'every message was acked to the broker');
});

it('amqp: with a wrong password fails fast with a clear error that hides the password', async () => {
  const proc = spawn(process.execPath, ['--import', 'tsx', bin, 'amqp://guest:wrong-secret@127.0.0.1:5672/?queue=nope', 'stdout:', '-q'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  const started = Date.now();
  const code = await new Promise<number | null>((r) => proc.once('exit', r));
  assert.equal(code, 1, stderr);
  assert.ok(Date.now() - started < 15_000, 'not retried for a long time');
  assert.match(stderr, /ACCESS_REFUSED|access refused|authentication/i);
  assert.doesNotMatch(stderr, /wrong-secret/);
});

it('stdin: -> kinesis: then kinesis: -> stdout: with a file checkpoint; a restart resumes after it', async (t) => {
  const { startKinesisServer, createStream, deleteStream } = await import('../fixtures/kinesis.js');
  const { mkdtempSync, rmSync, readFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const server = await startKinesisServer();
  t.after(() => server.stop());
  const client = server.client();
  const { streamName } = await createStream(client, 2);
  t.after(() => deleteStream(client, streamName).catch(() => undefined));
  const dir = mkdtempSync(join(tmpdir(), 'manifold-cli-kinesis-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const env = { ...process.env, AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local', AWS_REGION: 'us-east-1' };
  const run = (args: string[], input?: string) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', bin, ...args, '-q'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    proc.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    if (input !== undefined) proc.stdin.end(input);
    return { proc, exited: new Promise<number | null>((r) => proc.once('exit', r)), out: () => stdout, err: () => stderr };
  };
  const kinesisUri = (query: string) => `kinesis:${streamName}?endpoint=${encodeURIComponent(server.endpoint)}&${query}`;

  const first = Array.from({ length: 100 }, (_, i) => `first-${i}`);
  const put = run(['stdin:', kinesisUri('partitionKey=k')], `${first.join('\n')}\n`);
  assert.equal(await put.exited, 0, put.err());

  const checkpoint = join(dir, 'checkpoint.json');
  const read = async (count: number) => {
    const r = run([kinesisUri(`from=trim-horizon&checkpoint=${encodeURIComponent(checkpoint)}&checkpointInterval=200ms`), 'stdout:']);
    for (let i = 0; r.out().split('\n').length <= count && i < 1500; i++) await sleep(20);
    r.proc.kill('SIGTERM');
    assert.equal(await r.exited, 0, r.err());
    return r.out().trim().split('\n');
  };
  assert.deepEqual((await read(100)).sort(), [...first].sort());
  assert.ok(readFileSync(checkpoint, 'utf8').length > 0, 'the checkpoint file was written');

  const second = Array.from({ length: 20 }, (_, i) => `second-${i}`);
  const put2 = run(['stdin:', kinesisUri('partitionKey=k')], `${second.join('\n')}\n`);
  assert.equal(await put2.exited, 0, put2.err());
  // Resumed after the checkpoint: only the new records.
  assert.deepEqual((await read(20)).sort(), [...second].sort());

  // The same stream shared through a DynamoDB lease table: a new table reads from the start, a restart resumes from the leases.
  const { startDynamo } = await import('../fixtures/dynamodb.js');
  const dynamo = await startDynamo();
  t.after(() => dynamo.stop());
  const leased = kinesisUri(`from=trim-horizon&leaseTable=cli-leases&dynamoEndpoint=${encodeURIComponent(dynamo.endpoint)}&workerId=cli-1&leaseDuration=3s&checkpointInterval=200ms`);
  const readLeased = async (count: number): Promise<string[]> => {
    const r = run([leased, 'stdout:']);
    for (let i = 0; r.out().split('\n').length <= count && i < 1500; i++) await sleep(20);
    r.proc.kill('SIGTERM');
    assert.equal(await r.exited, 0, r.err());
    return r.out().trim().split('\n');
  };
  assert.deepEqual((await readLeased(120)).sort(), [...first, ...second].sort());
  const third = Array.from({ length: 10 }, (_, i) => `third-${i}`);
  const put3 = run(['stdin:', kinesisUri('partitionKey=k')], `${third.join('\n')}\n`);
  assert.equal(await put3.exited, 0, put3.err());
  assert.deepEqual((await readLeased(10)).sort(), [...third].sort());
  const refused = run([`${leased}&checkpoint=${encodeURIComponent(checkpoint)}`, 'stdout:']);
  assert.notEqual(await refused.exited, 0);
  assert.match(refused.err(), /checkpoint= and leaseTable= cannot be combined/);
});
