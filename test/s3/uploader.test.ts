import assert from 'node:assert/strict';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { S3Client } from '@aws-sdk/client-s3';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage } from '../../lib/core/message.js';
import { s3Collector } from '../../lib/s3/collector.js';
import { s3Uploader, type CloseTimeoutEvent, type UploadEvent } from '../../lib/s3/uploader.js';
import { s3rverClient, startS3, type S3Fixture } from '../fixtures/s3.js';

let s3: S3Fixture;
before(async () => {
  s3 = await startS3();
});
after(async () => {
  await s3.cleanup();
});

const FAST_RETRY = { retries: 2, minTimeoutMs: 20, maxTimeoutMs: 50 };

describe('s3Uploader options', () => {
  it('throws synchronously, naming the option, and never shows credentials', () => {
    assert.throws(() => s3Uploader({ bufferPath: '/tmp/x' } as never), /s3Uploader: options\.bucket must be a non-empty string, got undefined/);
    assert.throws(() => s3Uploader({ bucket: 'b' } as never), /options\.bufferPath/);
    assert.throws(
      () => s3Uploader({ bucket: 'bkt', bufferPath: '/tmp/x', client: new S3Client({}), endpoint: 'http://127.0.0.1:1' }),
      /s3Uploader: options\.client and options\.endpoint cannot be combined: configure the client you pass instead/,
    );
    assert.throws(() => s3Uploader({ bucket: 'bkt', bufferPath: '/tmp/x', partSizeBytes: 1024 }), /options\.partSizeBytes must be an integer of at least 5242880/);
    assert.throws(() => s3Uploader({ bucket: 'bkt', bufferPath: '/tmp/x', uploadConcurrency: 0 }), /options\.uploadConcurrency/);
    assert.throws(() => s3Uploader({ bucket: 'bkt', bufferPath: '/tmp/x', endpoint: 'not a url' }), /s3Uploader: options\.endpoint must be an http:\/\/ or https:\/\/ URL, got "not a url"/);
    assert.throws(() => s3Uploader({ bucket: 'bkt', bufferPath: '/tmp/x', compression: 'brotli' as 'gzip' }), /options\.compression must be one of "none", "gzip", "zstd"/);
    assert.throws(() => s3Uploader({ bucket: 'bkt', bufferPath: '/tmp/x', prefix: '/abs' }), /options\.prefix/);
    assert.throws(
      () => s3Uploader({ bucket: 'bkt', bufferPath: '/tmp/x', credentials: 'hunter2-secret' as never }),
      (error: Error) => error instanceof ManifoldError && error.code === ErrorCodes.INVALID_OPTION && !error.message.includes('hunter2'),
    );
    assert.throws(() => s3Uploader({ bucket: 'bkt', bufferPath: '/tmp/x', retry: { retries: -1 } }), /options\.retry\.retries/);
  });

  it('makes and destroys its own client from region/endpoint/credentials', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const uploader = s3Uploader({
      bucket,
      bufferPath,
      region: 'us-east-1',
      endpoint: s3.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
    await mkdir(join(bufferPath, '2020-01-02'), { recursive: true });
    await writeFile(join(bufferPath, '2020-01-02', '000000.000000001-old'), 'from own client\n');
    uploader.end();
    await new Promise((resolve) => uploader.on('finish', resolve));
    const objects = await s3.objects(bucket);
    assert.deepEqual(
      objects.map((o) => [o.key, o.body.toString()]),
      [['2020-01-02/000000.000000001-old', 'from own client\n']],
    );
  });
});

describe('s3Uploader', () => {
  it('uploads each committed file to prefix + its path, deletes it after S3 confirmed, then acks (ackOn upload)', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    let acked = 0;
    const messages = Array.from({ length: 40 }, (_, i) => createMessage({ data: `line-${String(i).padStart(3, '0')}`, onAck: () => (acked += 1) }));
    const uploads: UploadEvent[] = [];
    const uploader = s3Uploader({ bucket, prefix: 'logs', bufferPath, client: s3.client, uploadConcurrency: 2 });
    uploader.on('upload', (e: UploadEvent) => uploads.push(e));
    await pipeline(Readable.from(messages), s3Collector({ bufferPath, commitSizeBytes: 100, ackOn: 'upload', writerId: 'up' }), uploader);

    assert.equal(acked, 40, 'every message acked once its file was in S3');
    const objects = await s3.objects(bucket);
    assert.equal(objects.length, uploads.length);
    assert.ok(objects.length >= 4);
    for (const o of objects) assert.match(o.key, /^logs\/\d{4}-\d{2}-\d{2}\/\d{6}\.\d{9}-up$/);
    assert.equal(objects.map((o) => o.body.toString()).join(''), messages.map((m) => `${m.data}\n`).join(''));
    for (const e of uploads) {
      assert.equal(e.key, `logs/${e.relativePath}`);
      assert.equal(e.attempts, 1);
      await assert.rejects(stat(e.path), { code: 'ENOENT' }, 'the local file was deleted');
    }
  });

  it('gzips on the way up: the key ends in .gz and the object decompresses to the input', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const lines = Array.from({ length: 500 }, (_, i) => `{"n":${i},"pad":"${'z'.repeat(50)}"}`);
    await pipeline(Readable.from(lines), s3Collector({ bufferPath }), s3Uploader({ bucket, bufferPath, client: s3.client, compression: 'gzip' }));
    const raw = await s3.objects(bucket);
    assert.equal(raw.length, 1);
    assert.match(raw[0]!.key, /\.gz$/);
    assert.ok(raw[0]!.body.length < 5000, 'the object is compressed');
    const [object] = await s3.objects(bucket, { gunzip: true });
    assert.equal(object!.body.toString(), lines.map((l) => `${l}\n`).join(''));
  });

  it('sends a file larger than a part as a multipart upload streamed from disk', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const commands: string[] = [];
    const client = s3rverClient(s3.endpoint);
    client.middlewareStack.add(
      (next, context) => async (args) => {
        commands.push(String(context.commandName));
        return next(args);
      },
      { step: 'initialize', name: 'countCommands' },
    );
    const record = Buffer.alloc(64 * 1024 - 1, 'm');
    const records = Array.from({ length: 180 }, () => record); // ~11.3 MiB
    await pipeline(Readable.from(records), s3Collector({ bufferPath, commitSizeBytes: 16 * 1024 * 1024 }), s3Uploader({ bucket, bufferPath, client, partSizeBytes: 5 * 1024 * 1024 }));
    client.destroy();
    assert.deepEqual(
      commands.filter((c) => c !== 'PutObjectCommand'),
      // The start-up check (verify: 'bucket', the default) first.
      ['HeadBucketCommand', 'CreateMultipartUploadCommand', 'UploadPartCommand', 'UploadPartCommand', 'UploadPartCommand', 'CompleteMultipartUploadCommand'],
    );
    const [object] = await s3.objects(bucket);
    assert.equal(object!.body.length, records.length * 64 * 1024);
    assert.ok(object!.body.every((b, i) => (i % (64 * 1024) === 64 * 1024 - 1 ? b === 10 : b === 109)));
  });

  it('uploads files an earlier run left behind, found by the rescan, and removes old empty day folders', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    await mkdir(join(bufferPath, '2021-03-04'), { recursive: true });
    await mkdir(join(bufferPath, '2021-03-05'), { recursive: true });
    await writeFile(join(bufferPath, '2021-03-04', '101010.000000001-dead'), 'left\n');
    await writeFile(join(bufferPath, '2021-03-04', '101010.000000002-dead'), 'behind\n');
    const uploader = s3Uploader({ bucket, bufferPath, client: s3.client, uploadIntervalMs: 50 });
    const uploads: UploadEvent[] = [];
    uploader.on('upload', (e: UploadEvent) => uploads.push(e));
    while (uploads.length < 2) await new Promise((resolve) => uploader.once('upload', resolve));
    // A file that appears later is found by the periodic rescan, without any write.
    await writeFile(join(bufferPath, '2021-03-04', '101011.000000003-dead'), 'later\n');
    while (uploads.length < 3) await new Promise((resolve) => uploader.once('upload', resolve));
    await uploader.rescan();
    uploader.end();
    await new Promise((resolve) => uploader.on('finish', resolve));
    const objects = await s3.objects(bucket);
    assert.deepEqual(
      objects.map((o) => [o.key, o.body.toString()]),
      [
        ['2021-03-04/101010.000000001-dead', 'left\n'],
        ['2021-03-04/101010.000000002-dead', 'behind\n'],
        ['2021-03-04/101011.000000003-dead', 'later\n'],
      ],
    );
    assert.deepEqual((await readdir(bufferPath)).sort(), [], 'uploaded files and empty old folders are gone');
  });

  it('fails with NOT_FOUND at the start-up check when the bucket does not exist, and keeps the file', async () => {
    const bufferPath = await s3.tempDir();
    await mkdir(join(bufferPath, '2022-01-01'), { recursive: true });
    await writeFile(join(bufferPath, '2022-01-01', '000000.000000001-x'), 'kept\n');
    const uploader = s3Uploader({ bucket: 'manifold-no-such-bucket', bufferPath, client: s3.client, retry: FAST_RETRY });
    const retries: unknown[] = [];
    uploader.on('retry', (e) => retries.push(e));
    const error = await new Promise<Error>((resolve) => uploader.on('error', resolve));
    // Through awsError(), the one AWS mapping: fatal at once (no retry), naming the call, the bucket and what to do.
    assert.ok(error instanceof ManifoldError);
    assert.equal(error.code, ErrorCodes.NOT_FOUND);
    assert.equal(error.retryable, false);
    // HeadBucket at start (verify: 'bucket', the default), before any upload: no key, no file.
    assert.match(error.message, /^s3Uploader: HeadBucket failed: bucket "manifold-no-such-bucket" does not exist \(create it, or fix options\.bucket\): /);
    assert.equal((error.cause as Error).name, 'NotFound');
    assert.equal(error.bucket, 'manifold-no-such-bucket');
    assert.equal(error.key, undefined);
    assert.deepEqual(retries, []);
    assert.ok((await stat(join(bufferPath, '2022-01-01', '000000.000000001-x'))).isFile());
  });

  it('fails with AUTH at the start-up check when S3 refuses the credentials, and keeps the file', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    await mkdir(join(bufferPath, '2022-01-01'), { recursive: true });
    await writeFile(join(bufferPath, '2022-01-01', '000000.000000001-x'), 'kept\n');
    const uploader = s3Uploader({
      bucket,
      bufferPath,
      endpoint: s3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'NOT-S3RVER', secretAccessKey: 'wrong-secret' },
      retry: FAST_RETRY,
    });
    const error = await new Promise<Error>((resolve) => uploader.on('error', resolve));
    assert.ok(error instanceof ManifoldError);
    assert.equal(error.code, ErrorCodes.AUTH, error.message);
    assert.equal(error.retryable, false);
    assert.match(error.message, new RegExp(`^s3Uploader: HeadBucket on s3://${bucket}/ was refused \\(\\w+\\): check the credentials`));
    assert.ok(!error.message.includes('wrong-secret'));
    assert.ok((await stat(join(bufferPath, '2022-01-01', '000000.000000001-x'))).isFile());
  });

  it('fails with AUTH naming what to give when no credentials are found anywhere, before any request', async () => {
    const bufferPath = await s3.tempDir();
    // What the SDK's default provider chain throws when the environment, profiles and roles have nothing.
    const client = new S3Client({
      endpoint: s3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: () => Promise.reject(Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' })),
    });
    const uploader = s3Uploader({ bucket: 'any', bufferPath, client, retry: FAST_RETRY });
    const error = await new Promise<Error>((resolve) => uploader.on('error', resolve));
    assert.ok(error instanceof ManifoldError);
    assert.equal(error.code, ErrorCodes.AUTH, error.message);
    assert.equal(error.retryable, false);
    assert.match(error.message, /^s3Uploader: HeadBucket on s3:\/\/any\/ failed: no AWS credentials found \(Could not load credentials from any providers\): give them \(AWS_ACCESS_KEY_ID/);
    client.destroy();
  });

  it('rejects input that is not a committed file', async () => {
    const bufferPath = await s3.tempDir();
    // A bucket that exists, so the start-up check passes and the input is what fails.
    const uploader = s3Uploader({ bucket: await s3.createBucket(), bufferPath, client: s3.client });
    uploader.write('nope' as never);
    const error = await new Promise<Error>((resolve) => uploader.on('error', resolve));
    assert.equal((error as ManifoldError).code, ErrorCodes.INVALID_MESSAGE);
  });

  it('finishes after closeTimeoutMs while S3 is down, leaves the file on disk and nacks its messages', async (t) => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    await s3.stop();
    t.after(() => s3.start());
    let nacked: Error | undefined;
    const retries: unknown[] = [];
    const uploadErrors: unknown[] = [];
    const uploader = s3Uploader({ bucket, bufferPath, client: s3.client, closeTimeoutMs: 400, retry: FAST_RETRY });
    uploader.on('retry', (e) => retries.push(e));
    uploader.on('uploaderror', (e) => uploadErrors.push(e));
    let timeout: CloseTimeoutEvent | undefined;
    uploader.on('closetimeout', (e: CloseTimeoutEvent) => (timeout = e));
    const started = Date.now();
    await pipeline(
      Readable.from([createMessage({ data: 'during outage', onNack: (e) => (nacked = e) })]),
      s3Collector({ bufferPath, ackOn: 'upload' }),
      uploader,
    );
    const took = Date.now() - started;
    assert.ok(took >= 350 && took < 3000, `finished after about closeTimeoutMs, took ${took} ms`);
    assert.deepEqual(timeout, { files: 1, bytes: 'during outage\n'.length });
    assert.equal((nacked as ManifoldError | undefined)?.code, ErrorCodes.CLOSE_TIMEOUT);
    assert.ok(retries.length > 0, 'retried');
    assert.ok(uploadErrors.length > 0, 'reported the exhausted retries');
    const days = await readdir(bufferPath);
    const left = (await Promise.all(days.filter((d) => !d.startsWith('.')).map((d) => readdir(join(bufferPath, d))))).flat();
    assert.equal(left.length, 1, 'the file stays on disk for the next start');
  });
});
