/**
 * s3Source against s3rver: round trip from s3Sink, gzip and zstd objects, more than one listing page,
 * checkpoints that move per object, a restart after kill -9, watch mode, errors, and the conformance suite.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { ErrorCodes, type ManifoldError } from '../../lib/core/errors.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import { memoryCheckpointer } from '../../lib/kinesis/memory-checkpointer.js';
import { s3Sink } from '../../lib/s3/sink.js';
import { s3Source, S3_CHECKPOINT_ID, type S3LineMeta } from '../../lib/s3/source.js';
import { sourceConformance } from '../conformance/suite.js';
import { repoRoot as root } from '../fixtures/root.js';
import { startS3, type S3Fixture } from '../fixtures/s3.js';

/** Reads the source to its end, acking each line; returns the lines with their meta. */
async function readAll(source: Readable): Promise<Array<{ data: string; meta: S3LineMeta }>> {
  const got: Array<{ data: string; meta: S3LineMeta }> = [];
  await pipeline(
    source,
    new Writable({
      objectMode: true,
      write(message: Message, _e, callback) {
        got.push({ data: message.data.toString(), meta: message.meta as S3LineMeta });
        message.ack();
        callback();
      },
    }),
  );
  return got;
}

describe('s3Source', () => {
  let s3: S3Fixture;
  before(async () => {
    s3 = await startS3();
  });
  after(async () => {
    await s3.cleanup();
  });

  const put = (bucket: string, key: string, body: Buffer | string, encoding?: string): Promise<unknown> =>
    s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ...(encoding ? { ContentEncoding: encoding } : {}) }));

  it('reads back what s3Sink wrote (gzip, several files): every record once, each file in order, and ends', async () => {
    const bucket = await s3.createBucket();
    const records = Array.from({ length: 3000 }, (_, i) => `{"n":${i},"text":"héllo ${'x'.repeat(i % 40)}"}`);
    const bufferPath = await s3.tempDir();
    await pipeline(
      Readable.from(records.map((data) => createMessage({ data }))),
      s3Sink({ bucket, prefix: 'orders', client: s3.client, bufferPath, commitSizeBytes: 16 * 1024, compression: 'gzip', uploadIntervalMs: 100 }),
    );
    const objects = await s3.objects(bucket);
    assert.ok(objects.length > 3, `${objects.length} objects`);
    const checkpointer = memoryCheckpointer();
    const source = s3Source({ bucket, prefix: 'orders/', client: s3.client, checkpointer });
    const got = await readAll(source);
    assert.deepEqual(got.map((l) => l.data).sort(), [...records].sort());
    // Within an object, lines come in order, numbered from 1.
    for (const object of objects) {
      const lines = got.filter((l) => l.meta.key === object.key);
      assert.deepEqual(lines.map((l) => l.meta.line), lines.map((_, i) => i + 1));
      assert.equal(lines[0]!.meta.bucket, bucket);
    }
    assert.deepEqual((await checkpointer.load(`s3://${bucket}/orders/`))[S3_CHECKPOINT_ID], { sequenceNumber: objects.at(-1)!.key });
  });

  it('more than one listing page (2,500 objects): every object read in key order, and the fixture lists them all', async () => {
    const bucket = await s3.createBucket();
    const keys = Array.from({ length: 2500 }, (_, i) => `p/${String(i).padStart(5, '0')}.txt`);
    for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((key) => put(bucket, key, `${key}\n`)));
    assert.equal((await s3.objects(bucket)).length, 2500);
    const got = await readAll(s3Source({ bucket, prefix: 'p', client: s3.client }));
    assert.deepEqual(got.map((l) => l.data), keys);
  });

  it('gzip and zstd by extension or Content-Encoding, a last line without newline, empty lines kept, folder markers skipped', async () => {
    const bucket = await s3.createBucket();
    await put(bucket, 'd/', '');
    await put(bucket, 'd/1.gz', gzipSync('a\nb\n'));
    await put(bucket, 'd/2.zst', zstdCompressSync(Buffer.from('c\n\nd')));
    await put(bucket, 'd/3.log', gzipSync('e\n'), 'gzip');
    await put(bucket, 'd/4.log', zstdCompressSync(Buffer.from('f\n')), 'zstd');
    const got = await readAll(s3Source({ bucket, prefix: 'd/', client: s3.client }));
    assert.deepEqual(got.map((l) => `${l.meta.key}:${l.meta.line}:${l.data}`), ['d/1.gz:1:a', 'd/1.gz:2:b', 'd/2.zst:1:c', 'd/2.zst:2:', 'd/2.zst:3:d', 'd/3.log:1:e', 'd/4.log:1:f']);
  });

  it('an object that does not decompress fails with MANIFOLD_ERR_INVALID_MESSAGE naming the key', async () => {
    const bucket = await s3.createBucket();
    await put(bucket, 'bad/1.gz', 'not gzip at all\n');
    await assert.rejects(readAll(s3Source({ bucket, prefix: 'bad/', client: s3.client, retry: false })), (error: ManifoldError) => {
      assert.equal(error.code, ErrorCodes.INVALID_MESSAGE);
      assert.match(error.message, /bad\/1\.gz/);
      return true;
    });
  });

  it('a missing bucket is MANIFOLD_ERR_NOT_FOUND, not retried', async () => {
    const started = Date.now();
    await assert.rejects(readAll(s3Source({ bucket: 'no-such-bucket-here', client: s3.client })), (error: ManifoldError) => error.code === ErrorCodes.NOT_FOUND);
    assert.ok(Date.now() - started < 5000);
  });

  it('the checkpoint moves per object only when all its lines are acked; a nacked line holds it, and a new source starts after it', async () => {
    const bucket = await s3.createBucket();
    await put(bucket, 'c/1', 'a\nb\n');
    await put(bucket, 'c/2', 'poison\nc\n');
    await put(bucket, 'c/3', 'd\n');
    const checkpointer = memoryCheckpointer();
    const seen: string[] = [];
    await pipeline(
      s3Source({ bucket, prefix: 'c/', client: s3.client, checkpointer }),
      new Writable({
        objectMode: true,
        write(message: Message, _e, callback) {
          seen.push(message.data.toString());
          if (message.data.toString() === 'poison') message.nack(new Error('refused'));
          else message.ack();
          callback();
        },
      }),
    );
    assert.deepEqual(seen, ['a', 'b', 'poison', 'c', 'd']);
    assert.equal((await checkpointer.load(`s3://${bucket}/c/`))[S3_CHECKPOINT_ID]?.sequenceNumber, 'c/1');
    // A restart reads the object of the nacked line again, and what follows.
    const again = await readAll(s3Source({ bucket, prefix: 'c/', client: s3.client, checkpointer }));
    assert.deepEqual(again.map((l) => l.data), ['poison', 'c', 'd']);
    assert.equal((await checkpointer.load(`s3://${bucket}/c/`))[S3_CHECKPOINT_ID]?.sequenceNumber, 'c/3');
    // `from` is for when nothing is stored.
    const fresh = await readAll(s3Source({ bucket, prefix: 'c/', client: s3.client, from: 'c/2' }));
    assert.deepEqual(fresh.map((l) => l.data), ['d']);
  });

  it('watch: lists again and reads an object put after the first listing', async () => {
    const bucket = await s3.createBucket();
    await put(bucket, 'w/1', 'one\n');
    const source = s3Source({ bucket, prefix: 'w/', client: s3.client, watch: true, pollIntervalMs: 100 });
    const got: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      source.on('error', reject);
      source.on('data', (message: Message) => {
        got.push(message.data.toString());
        message.ack();
        if (got.length === 2) resolve();
      });
    });
    await once(source, 'object');
    await put(bucket, 'w/2', 'two\n');
    await done;
    await source.close();
    assert.deepEqual(got, ['one', 'two']);
  });

  it('kill -9 while reading 10,000 objects (ten listing pages), then a restart: every line delivered at least once, checkpoint at the last object', async () => {
    const bucket = await s3.createBucket();
    const OBJECTS = 10_000;
    const LINES = 2;
    const keys = Array.from({ length: OBJECTS }, (_, i) => `k/${String(i).padStart(5, '0')}`);
    for (let i = 0; i < keys.length; i += 100) await Promise.all(keys.slice(i, i + 100).map((key) => put(bucket, key, Array.from({ length: LINES }, (_, n) => `${key}#${n}`).join('\n') + '\n')));
    const dir = await s3.tempDir('checkpoint');
    const checkpointFile = join(dir, 'cp.json');
    const child = join(root, 'test', 'fixtures', 's3-source-child.ts');
    const run = (killAfterLines?: number): Promise<{ lines: Set<string>; code: number | null; signal: NodeJS.Signals | null }> => {
      const proc = spawn(process.execPath, ['--import', 'tsx', child, s3.endpoint, bucket, 'k/', checkpointFile], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
      const lines = new Set<string>();
      let buffered = '';
      let stderr = '';
      proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      proc.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        const parts = buffered.split('\n');
        buffered = parts.pop()!;
        for (const part of parts) lines.add(part.split(' ')[2]!);
        if (killAfterLines !== undefined && lines.size >= killAfterLines) proc.kill('SIGKILL');
      });
      return new Promise((resolve) => proc.once('close', (code, signal) => {
        if (code !== 0 && signal === null) console.error(stderr);
        resolve({ lines, code, signal });
      }));
    };
    const first = await run((OBJECTS * LINES) / 3);
    assert.equal(first.signal, 'SIGKILL');
    const stored = JSON.parse(await readFile(checkpointFile, 'utf8').catch(() => '{}')) as unknown;
    const second = await run();
    assert.equal(second.code, 0);
    const all = new Set([...first.lines, ...second.lines]);
    assert.equal(all.size, OBJECTS * LINES, 'every line delivered');
    // The restart began after the stored checkpoint, not from the start (unless none was stored yet).
    assert.ok(second.lines.size < OBJECTS * LINES || JSON.stringify(stored) === '{}', `the restart re-read ${second.lines.size} lines`);
    const final = JSON.parse(await readFile(checkpointFile, 'utf8')) as { scopes: Record<string, Record<string, { sequenceNumber: string }>> };
    assert.equal(final.scopes[`s3://${bucket}/k/`]?.[S3_CHECKPOINT_ID]?.sequenceNumber, keys.at(-1));
  });
});

describe('s3Source conformance', () => {
  let s3: S3Fixture;
  before(async () => {
    s3 = await startS3();
  });
  after(async () => {
    await s3.cleanup();
  });
  sourceConformance({
    name: 's3Source (watch)',
    redelivers: true,
    async setup() {
      const bucket = await s3.createBucket();
      const checkpointer = memoryCheckpointer();
      let n = 0;
      return {
        source: (options) => s3Source({ bucket, prefix: 'c/', client: s3.client, checkpointer, watch: true, pollIntervalMs: 100, ...(options?.signal ? { signal: options.signal } : {}) }),
        produce: async (payloads) => {
          n += 1;
          await s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: `c/${String(n).padStart(6, '0')}`, Body: Buffer.concat(payloads.flatMap((p) => [p, Buffer.from('\n')])) }));
        },
        cleanup: async () => {},
      };
    },
  });
});
