/**
 * How s3Sink stores each object: zstd (read back by the Debian `zstd` command, byte for byte), gzip
 * and plain content types, storage class, metadata and tags as s3rver keeps them, and the
 * options that go together. Server-side encryption is sent as a header (s3rver ignores it; a
 * recording proxy test would add nothing the SDK's own tests do not), so only its checks are here.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand, GetObjectTaggingCommand, HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { ErrorCodes, type ManifoldError } from '../../lib/core/errors.js';
import { createMessage } from '../../lib/core/message.js';
import { parseEndpoint } from '../../lib/cli/endpoints.js';
import { S3Sink, s3Sink } from '../../lib/s3/sink.js';
import { usage } from '../fixtures/cli.js';
import { startS3, type S3Fixture } from '../fixtures/s3.js';

describe('s3Sink: how objects are stored', () => {
  let s3: S3Fixture;
  before(async () => {
    s3 = await startS3();
  });
  after(async () => {
    await s3.cleanup();
  });

  async function write(bucket: string, lines: string[], options: Record<string, unknown>): Promise<string[]> {
    const bufferPath = await s3.tempDir();
    await pipeline(Readable.from(lines.map((data) => createMessage({ data }))), s3Sink({ bucket, client: s3.client, bufferPath, uploadIntervalMs: 200, ...options }));
    const listed = await s3.client.send(new ListObjectsV2Command({ Bucket: bucket }));
    return (listed.Contents ?? []).map((o) => o.Key!).sort();
  }

  it("compression: 'zstd' stores .zst objects that the zstd command decodes to exactly the lines written (application/zstd)", async () => {
    const bucket = await s3.createBucket();
    const lines = Array.from({ length: 5000 }, (_, i) => `{"i":${i},"name":"ünïcödé ${'z'.repeat(i % 70)}"}`);
    const keys = await write(bucket, lines, { compression: 'zstd', commitSizeBytes: 64 * 1024 });
    assert.ok(keys.length > 1 && keys.every((k) => k.endsWith('.zst')), keys.join(', '));
    const decoded: Buffer[] = [];
    for (const key of keys) {
      const got = await s3.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      assert.equal(got.ContentType, 'application/zstd');
      const body = Buffer.from(await got.Body!.transformToByteArray());
      decoded.push(execFileSync('zstd', ['-d', '-c', '-q'], { input: body }));
    }
    assert.deepEqual(Buffer.concat(decoded), Buffer.from(lines.map((l) => `${l}\n`).join('')));
  });

  it('content types: application/gzip for .gz, application/octet-stream for plain lines', async () => {
    const bucket = await s3.createBucket();
    const [gz] = await write(bucket, ['a'], { compression: 'gzip', prefix: 'g' });
    const plain = (await write(bucket, ['b'], { prefix: 'p' })).find((key) => key.startsWith('p/'));
    assert.equal((await s3.client.send(new HeadObjectCommand({ Bucket: bucket, Key: gz! }))).ContentType, 'application/gzip');
    assert.equal((await s3.client.send(new HeadObjectCommand({ Bucket: bucket, Key: plain! }))).ContentType, 'application/octet-stream');
  });

  it('storage class, metadata and tags on every object', async () => {
    const bucket = await s3.createBucket();
    const keys = await write(bucket, ['x', 'y'], { storageClass: 'STANDARD_IA', metadata: { source: 'orders', run: '7' }, tags: { team: 'data', env: 'test' } });
    for (const key of keys) {
      const head = await s3.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      assert.equal(head.StorageClass, 'STANDARD_IA');
      assert.deepEqual(head.Metadata, { source: 'orders', run: '7' });
      const tagging = await s3.client.send(new GetObjectTaggingCommand({ Bucket: bucket, Key: key }));
      assert.deepEqual(Object.fromEntries((tagging.TagSet ?? []).map((t) => [t.Key, t.Value])), { team: 'data', env: 'test' });
    }
  });

  it('options that do not go together, or are malformed, are refused by name', () => {
    const refused = (options: Record<string, unknown>, pattern: RegExp): void => {
      assert.throws(() => s3Sink({ bucket: 'b', bufferPath: '/tmp/manifold-never', ...options }), (error: ManifoldError) => error.code === ErrorCodes.INVALID_OPTION && pattern.test(error.message));
    };
    refused({ sseKmsKeyId: 'alias/x' }, /sseKmsKeyId.*serverSideEncryption/);
    refused({ sseKmsKeyId: 'alias/x', serverSideEncryption: 'AES256' }, /sseKmsKeyId.*serverSideEncryption/);
    refused({ serverSideEncryption: 'DES' }, /serverSideEncryption must be one of/);
    refused({ storageClass: 'COLD' }, /storageClass must be one of/);
    refused({ tags: { 'bad\nname': 'x' } }, /tags must be/);
    refused({ tags: [] }, /tags must be/);
    refused({ metadata: { ok: 42 } }, /metadata must be/);
    refused({ compression: 'brotli' }, /compression must be one of/);
    assert.doesNotThrow(() => s3Sink({ bucket: 'b', bufferPath: '/tmp/manifold-never-2', serverSideEncryption: 'aws:kms', sseKmsKeyId: 'alias/archive' }).destroy());
  });

  it('the command takes them from a URI: compression=zstd, storageClass=, serverSideEncryption=, tags=k:v,k2:v2, and refuses a malformed one', async () => {
    const bad = await usage(['stdin:', 's3://b/p?storageClass=COLD']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /storageClass must be one of/);
    const badTags = await usage(['stdin:', 's3://b/p?tags=']);
    assert.equal(badTags.code, 2);
    const bufferPath = await s3.tempDir('cli');
    // verify=none: no start-up HeadBucket. With no credentials given, the SDK's provider chain fails it at once, and that
    // fatal error could come before the destroy() below (the sink is only parsed and made here).
    const query = new URLSearchParams({ compression: 'zstd', storageClass: 'GLACIER_IR', serverSideEncryption: 'aws:kms', sseKmsKeyId: 'alias/x', tags: 'team:data,env:prod', metadata: 'source:cli', bufferPath, endpoint: s3.endpoint, verify: 'none' });
    const sink = (await parseEndpoint(`s3://b/p?${query}`, 'sink').create()) as S3Sink;
    assert.equal(sink.keyFor('2026-01-02/000000.000000001-w'), 'p/2026-01-02/000000.000000001-w.zst');
    await new Promise((resolve) => sink.on('close', resolve).destroy());
  });
});
