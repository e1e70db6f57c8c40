/**
 * The sink's start-up check (verify: 'bucket' | 'write' | 'none') and the real nanoseconds of committed names,
 * against s3rver (test/fixtures/s3.ts).
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage } from '../../lib/core/message.js';
import { nowNanoseconds, s3Collector, type CommittedFile } from '../../lib/s3/collector.js';
import { s3Sink, type S3SinkOptions } from '../../lib/s3/sink.js';
import { s3rverClient, startS3, type S3Fixture } from '../fixtures/s3.js';

const FAST = {
  commitIntervalMs: 100,
  syncIntervalMs: 10,
  uploadIntervalMs: 100,
  retry: { retries: 1, minTimeoutMs: 20, maxTimeoutMs: 40 },
} satisfies Partial<S3SinkOptions>;

let s3: S3Fixture;
before(async () => {
  s3 = await startS3();
});
after(async () => {
  await s3.cleanup();
});

/** A client that records the name and key of every command it sends. */
function recordingClient(): { client: S3Client; sent: Array<{ command: string; key: string | undefined }> } {
  const client = s3rverClient(s3.endpoint);
  const sent: Array<{ command: string; key: string | undefined }> = [];
  client.middlewareStack.add(
    (next, context) => (args) => {
      sent.push({ command: String(context.commandName), key: (args.input as { Key?: string }).Key });
      return next(args);
    },
    { step: 'initialize' },
  );
  return { client, sent };
}

function firstError(stream: NodeJS.EventEmitter, timeoutMs: number): Promise<Error> {
  return new Promise<Error>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no error within ${timeoutMs} ms`)), timeoutMs);
    stream.once('error', (error: Error) => {
      clearTimeout(timer);
      resolve(error);
    });
  });
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('s3Sink start-up check', () => {
  it('a missing bucket fails the sink within a second with NOT_FOUND, before anything is written', async () => {
    const bufferPath = await s3.tempDir();
    const started = Date.now();
    const sink = s3Sink({ bucket: 'manifold-no-such-bucket-startup', bufferPath, client: s3.client, ...FAST });
    const error = await firstError(sink, 1000);
    assert.ok(Date.now() - started < 1000);
    assert.ok(error instanceof ManifoldError, String(error));
    assert.equal(error.code, ErrorCodes.NOT_FOUND);
    assert.equal(error.retryable, false);
    assert.match(error.message, /HeadBucket failed: bucket "manifold-no-such-bucket-startup" does not exist \(create it, or fix options\.bucket\)/);
  });

  it('refused credentials fail the sink within a second with AUTH, never showing the secret', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const started = Date.now();
    const sink = s3Sink({
      bucket,
      bufferPath,
      endpoint: s3.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'NOT-S3RVER', secretAccessKey: 'startup-secret-value' },
      ...FAST,
    });
    const error = await firstError(sink, 1000);
    assert.ok(Date.now() - started < 1000);
    assert.ok(error instanceof ManifoldError, String(error));
    assert.equal(error.code, ErrorCodes.AUTH);
    assert.match(error.message, /HeadBucket on s3:\/\/[^ ]+ was refused/);
    assert.ok(!error.message.includes('startup-secret-value'));
  });

  it("verify: 'none' sends no HeadBucket (a missing bucket is found at the first upload, as before)", async () => {
    const bufferPath = await s3.tempDir();
    const { client, sent } = recordingClient();
    const sink = s3Sink({ bucket: 'manifold-no-such-bucket-none', bufferPath, client, verify: 'none', ...FAST });
    const failed = firstError(sink, 10_000);
    sink.write(createMessage({ data: 'one' }));
    const error = await failed;
    assert.equal((error as ManifoldError).code, ErrorCodes.NOT_FOUND);
    assert.match(error.message, /PutObject failed/);
    assert.ok(!sent.some((s) => s.command === 'HeadBucketCommand'), JSON.stringify(sent));
    client.destroy();
  });

  it("verify: 'write' writes a probe under the prefix and deletes it: no probe object is left", async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const { client, sent } = recordingClient();
    const sink = s3Sink({ bucket, prefix: 'orders', bufferPath, client, verify: 'write', ...FAST });
    await pipeline(Readable.from([createMessage({ data: 'a' }), createMessage({ data: 'b' })]), sink);
    const commands = sent.map((s) => s.command);
    assert.equal(commands[0], 'HeadBucketCommand');
    const probe = sent.find((s) => s.command === 'PutObjectCommand' && s.key?.includes('_manifold-verify-'));
    assert.ok(probe, JSON.stringify(sent));
    assert.match(probe.key!, new RegExp(`^orders/_manifold-verify-${process.pid}-[0-9a-f]{8}$`));
    assert.ok(sent.some((s) => s.command === 'DeleteObjectCommand' && s.key === probe.key));
    const objects = await s3.objects(bucket);
    assert.equal(objects.length, 1, objects.map((o) => o.key).join());
    assert.match(objects[0]!.key, /^orders\/\d{4}-\d{2}-\d{2}\/\d{6}\.\d{9}-/);
    assert.equal(objects[0]!.body.toString(), 'a\nb\n');
    client.destroy();
  });

  it("verify: 'write' fails with NOT_FOUND for a missing bucket too", async () => {
    const bufferPath = await s3.tempDir();
    const sink = s3Sink({ bucket: 'manifold-no-such-bucket-write', bufferPath, client: s3.client, verify: 'write', ...FAST });
    const error = await firstError(sink, 1000);
    assert.equal((error as ManifoldError).code, ErrorCodes.NOT_FOUND);
  });

  it('S3 down at start is a warning, not a failure: records are acked on disk and uploaded once S3 is back', async (t) => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    await s3.stop();
    t.after(() => s3.start());
    const client = s3rverClient(s3.endpoint);
    t.after(() => client.destroy());
    const sink = s3Sink({ bucket, bufferPath, client, ackOn: 'disk', closeTimeoutMs: 20_000, ...FAST });
    const warnings: ManifoldError[] = [];
    sink.on('warning', (w: ManifoldError) => warnings.push(w));
    let failed: Error | undefined;
    sink.on('error', (error: Error) => (failed = error));
    await until('the start-up warning', () => warnings.length > 0, 5000);
    assert.equal(warnings[0]!.code, ErrorCodes.CONNECTION);
    assert.match(warnings[0]!.message, /start-up check \(HeadBucket on s3:\/\/[^)]+\) could not reach S3: .*going on: messages are kept in /);
    let acked = 0;
    for (let i = 0; i < 50; i++) sink.write(createMessage({ data: `r${i}`, onAck: () => (acked += 1) }));
    await until('50 acks on disk with S3 down', () => acked === 50, 5000);
    assert.equal(failed, undefined);
    assert.deepEqual(await s3.objects(bucket).catch(() => 'down'), 'down');
    await s3.start();
    const ended = new Promise<void>((resolve, reject) => {
      sink.once('finish', resolve);
      sink.once('error', reject);
    });
    sink.end();
    await ended;
    assert.equal(failed, undefined);
    const lines = (await s3.objects(bucket)).flatMap((o) => o.body.toString().split('\n').slice(0, -1));
    assert.deepEqual(lines.sort(), Array.from({ length: 50 }, (_, i) => `r${i}`).sort());
  });
});

describe('committed names', () => {
  it('carry real nanoseconds (not a microsecond clock times 1000), strictly increasing, near the wall clock', async () => {
    const near = nowNanoseconds() - BigInt(Date.now()) * 1_000_000n;
    assert.ok(near > -5_000_000n && near < 5_000_000n, `within 5 ms of Date.now(): ${near} ns`);
    const bufferPath = await s3.tempDir();
    const collector = s3Collector({ bufferPath, commitSizeBytes: 1, writerId: 'ns' });
    const files: CommittedFile[] = [];
    collector.on('data', (f: CommittedFile) => files.push(f));
    await pipeline(Readable.from(Array.from({ length: 40 }, (_, i) => `r${i}`)), collector);
    assert.equal(files.length, 40);
    const names = files.map((f) => f.relativePath);
    for (let i = 1; i < names.length; i++) assert.ok(names[i - 1]! < names[i]!, `${names[i - 1]} < ${names[i]}`);
    const fractions = names.map((n) => /\/\d{6}\.(\d{9})-ns$/.exec(n)![1]!);
    const notThousands = fractions.filter((f) => !f.endsWith('000'));
    // A microsecond clock gives 0 of 40; a nanosecond one ends in 000 about once in a thousand.
    assert.ok(notThousands.length >= 30, `fractions: ${fractions.join(' ')}`);
  });
});
