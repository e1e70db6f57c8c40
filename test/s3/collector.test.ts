import assert from 'node:assert/strict';
import { readFileSync, unlinkSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage } from '../../lib/core/message.js';
import { s3Collector, type CommitEvent, type CommittedFile, type RotateEvent } from '../../lib/s3/collector.js';

const dirs: string[] = [];
after(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'manifold-collector-'));
  dirs.push(dir);
  return join(dir, 'buffer');
}

const NAME = /^\d{4}-\d{2}-\d{2}\/\d{6}\.\d{9}-[A-Za-z0-9_-]+$/;

/** Runs the collector over `inputs` and returns the committed files it emitted. */
async function collect(inputs: unknown[], options: Parameters<typeof s3Collector>[0]): Promise<CommittedFile[]> {
  const collector = s3Collector(options);
  const files: CommittedFile[] = [];
  collector.on('data', (f: CommittedFile) => files.push(f));
  await pipeline(Readable.from(inputs, { objectMode: true }), collector);
  return files;
}

describe('s3Collector options', () => {
  it('throws synchronously, naming the option, the value and what is allowed', () => {
    assert.throws(() => s3Collector({} as never), /s3Collector: options\.bufferPath must be a non-empty string/);
    assert.throws(() => s3Collector({ bufferPath: '/tmp/x', commitSizeBytes: -1 }), /options\.commitSizeBytes must be a positive integer \(bytes\), got -1/);
    assert.throws(() => s3Collector({ bufferPath: '/tmp/x', ackOn: 'never' as 'disk' }), /options\.ackOn must be one of "disk", "upload", got "never"/);
    assert.throws(() => s3Collector({ bufferPath: '/tmp/x', syncIntervalMs: -5 }), /options\.syncIntervalMs/);
    assert.throws(() => s3Collector({ bufferPath: '/tmp/x', writerId: 'a/b' }), /options\.writerId/);
    assert.throws(() => s3Collector({ bufferPath: '/tmp/x', commitSize: 5 } as never), /unknown option "commitSize" \(did you mean "commitSizeBytes"\?\)/);
    try {
      s3Collector({ bufferPath: '/tmp/x', delimiter: '' });
      assert.fail('expected a throw');
    } catch (error) {
      assert.ok(error instanceof ManifoldError);
      assert.equal(error.code, ErrorCodes.INVALID_OPTION);
    }
  });
});

describe('s3Collector', () => {
  it('rotates by size, never splits a record, and lays files out as YYYY-MM-DD/HHmmss.nnnnnnnnn-writerId in a 0700 folder', async () => {
    const bufferPath = await tempDir();
    const inputs = Array.from({ length: 60 }, (_, i) => `record-${String(i).padStart(4, '0')}`); // 11 bytes + '\n'
    const rotations: RotateEvent[] = [];
    const collector = s3Collector({ bufferPath, commitSizeBytes: 100, writerId: 'w1' });
    collector.on('rotate', (e: RotateEvent) => rotations.push(e));
    const files: CommittedFile[] = [];
    collector.on('data', (f: CommittedFile) => files.push(f));
    await pipeline(Readable.from(inputs), collector);

    assert.ok(files.length >= 7, `60 x 12 bytes at 100 bytes per file is at least 8 files, got ${files.length}`);
    let joined = '';
    for (const f of files) {
      assert.match(f.relativePath, NAME);
      assert.ok(f.relativePath.endsWith('-w1'));
      const body = await readFile(f.path, 'utf8');
      assert.equal(body.length, f.bytes);
      assert.ok(f.bytes <= 100, `file of ${f.bytes} bytes exceeds commitSizeBytes`);
      assert.ok(body.endsWith('\n'), 'every file ends on a record boundary');
      assert.equal(body.split('\n').length - 1, f.records);
      joined += body;
    }
    assert.equal(joined, inputs.map((s) => `${s}\n`).join(''));
    assert.deepEqual([...new Set(files.map((f) => f.relativePath))].length, files.length, 'names are unique');
    assert.deepEqual([...files.map((f) => f.relativePath)].sort(), files.map((f) => f.relativePath), 'names sort in commit order');
    assert.ok(rotations.slice(0, -1).every((r) => r.reason === 'size'));
    assert.equal((await stat(bufferPath)).mode & 0o777, 0o700);
    assert.deepEqual(await readdir(join(bufferPath, '.active')), [], 'no open buffer is left');
    await assert.rejects(stat(join(bufferPath, '.lock')), { code: 'ENOENT' }, 'the lock is released on end');
  });

  it('commits by time while the stream is idle', async () => {
    const bufferPath = await tempDir();
    const collector = s3Collector({ bufferPath, commitIntervalMs: 150 });
    const commits: CommitEvent[] = [];
    collector.on('commit', (e: CommitEvent) => commits.push(e));
    const files: CommittedFile[] = [];
    collector.on('data', (f: CommittedFile) => files.push(f));
    collector.write('one');
    collector.write(Buffer.from('two'));
    const deadline = Date.now() + 5000;
    while (files.length === 0 && Date.now() < deadline) await sleep(20);
    assert.equal(files.length, 1, 'an idle buffer was committed by the timer');
    assert.equal(commits[0]!.reason, 'time');
    assert.equal(await readFile(files[0]!.path, 'utf8'), 'one\ntwo\n');
    collector.end();
    await new Promise((resolve) => collector.on('end', resolve));
    assert.equal(files.length, 1, 'end() with nothing open commits no empty file');
  });

  it("acks with ackOn 'disk' only after the group-commit fsync", async () => {
    const bufferPath = await tempDir();
    const collector = s3Collector({ bufferPath, syncIntervalMs: 300 });
    collector.resume();
    let ackedAt = 0;
    const written = Date.now();
    const message = createMessage({ data: 'durable', onAck: () => (ackedAt = Date.now()) });
    await new Promise<void>((resolve, reject) => collector.write(message, (e) => (e ? reject(e) : resolve())));
    assert.equal(ackedAt, 0, 'not acked when merely written');
    const deadline = Date.now() + 5000;
    while (ackedAt === 0 && Date.now() < deadline) await sleep(20);
    assert.ok(ackedAt - written >= 250, `acked after the fsync interval, took ${ackedAt - written} ms`);
    collector.end();
    await new Promise((resolve) => collector.on('end', resolve));
  });

  it('fsyncs after every write with syncIntervalMs 0, and uses a custom delimiter', async () => {
    const bufferPath = await tempDir();
    let acked = 0;
    const messages = ['a', 'b', 'c'].map((d) => createMessage({ data: d, onAck: () => (acked += 1) }));
    const files = await collect(messages, { bufferPath, syncIntervalMs: 0, delimiter: '|#|' });
    assert.equal(acked, 3);
    assert.equal(await readFile(files[0]!.path, 'utf8'), 'a|#|b|#|c|#|');
    assert.equal(files[0]!.records, 3);
  });

  it("with ackOn 'upload' attaches the acks to the committed file instead of acking", async () => {
    const bufferPath = await tempDir();
    let acked = 0;
    const messages = Array.from({ length: 5 }, (_, i) => createMessage({ data: `m${i}`, onAck: () => (acked += 1) }));
    const files = await collect(messages, { bufferPath, ackOn: 'upload', syncIntervalMs: 0 });
    assert.equal(acked, 0);
    assert.equal(files.length, 1);
    assert.equal(files[0]!.acks?.length, 5);
    for (const pair of files[0]!.acks!) pair.ack();
    assert.equal(acked, 5);
  });

  it('recovers a buffer left by a crash: cuts the torn last record and commits the rest first', async () => {
    const bufferPath = await tempDir();
    await mkdir(join(bufferPath, '.active'), { recursive: true });
    await writeFile(join(bufferPath, '.active', 'dead-writer'), 'first\nsecond\nthird-torn');
    await writeFile(join(bufferPath, '.active', 'empty-writer'), 'only-a-torn-record');
    const commits: CommitEvent[] = [];
    const collector = s3Collector({ bufferPath, writerId: 'new' });
    collector.on('commit', (e: CommitEvent) => commits.push(e));
    const files: CommittedFile[] = [];
    collector.on('data', (f: CommittedFile) => files.push(f));
    await pipeline(Readable.from(['after']), collector);
    assert.equal(files.length, 2);
    assert.equal(commits[0]!.reason, 'recovery');
    assert.equal(await readFile(files[0]!.path, 'utf8'), 'first\nsecond\n');
    assert.equal(files[0]!.records, 2);
    assert.equal(await readFile(files[1]!.path, 'utf8'), 'after\n');
    assert.deepEqual(await readdir(join(bufferPath, '.active')), []);
  });

  it('finds the last record boundary across read blocks in a large torn buffer', async () => {
    const bufferPath = await tempDir();
    await mkdir(join(bufferPath, '.active'), { recursive: true });
    const records = Array.from({ length: 3000 }, (_, i) => `${String(i).padStart(5, '0')}${'x'.repeat(60)}\n`).join('');
    // A tail longer than the 64 KiB read block, without a delimiter.
    await writeFile(join(bufferPath, '.active', 'dead'), records + 'y'.repeat(70 * 1024));
    const files = await collect([], { bufferPath });
    assert.equal(files.length, 1);
    assert.equal(files[0]!.records, 3000);
    assert.equal(await readFile(files[0]!.path, 'utf8'), records);
  });

  it('refuses a buffer folder locked by a live process, and takes over a dead one', async () => {
    const bufferPath = await tempDir();
    const first = s3Collector({ bufferPath });
    first.write('held');
    await sleep(50);
    const second = s3Collector({ bufferPath });
    const error = await new Promise<Error>((resolve) => second.on('error', resolve));
    assert.ok(error instanceof ManifoldError);
    assert.equal(error.code, ErrorCodes.IO);
    assert.match(error.message, /in use by process \d+/);
    first.destroy();
    await new Promise((resolve) => first.on('close', resolve));

    // A lock left by a process that no longer exists is stale.
    await writeFile(join(bufferPath, '.lock'), '2147483646:stale');
    const files = await collect(['x'], { bufferPath });
    // The first collector's unsynced 'held' was recovered from its open buffer, then 'x'.
    assert.deepEqual(await Promise.all(files.map((f) => readFile(f.path, 'utf8'))), ['held\n', 'x\n']);
  });

  it('holds writes at maxBufferBytes (backpressure, nothing dropped) and resumes when space is freed', async () => {
    const bufferPath = await tempDir();
    const collector = s3Collector({ bufferPath, maxBufferBytes: 300, commitSizeBytes: 100, highWaterMark: 4 });
    const files: CommittedFile[] = [];
    collector.on('data', (f: CommittedFile) => files.push(f));
    let quota = 0;
    collector.on('quota', () => (quota += 1));
    const inputs = Array.from({ length: 100 }, (_, i) => `quota-${String(i).padStart(3, '0')}!`); // 10 bytes + '\n'
    let pulled = 0;
    const source = Readable.from(
      (function* () {
        for (const s of inputs) {
          pulled += 1;
          yield s;
        }
      })(),
    );
    const done = pipeline(source, collector);
    await sleep(600);
    assert.equal(quota, 1, 'the quota event fired');
    assert.ok(collector.diskBytes <= 300 + 11, `disk use stayed at the quota, saw ${collector.diskBytes}`);
    assert.ok(pulled < 60, `the source was held (pulled ${pulled} of 100)`);
    // Play the uploader: take each committed file's content, delete it, and say so.
    let text = '';
    const take = (f: CommittedFile): void => {
      text += readFileSync(f.path, 'utf8');
      unlinkSync(f.path);
      collector.recheckQuota();
    };
    for (const f of files.splice(0)) take(f);
    collector.on('data', take);
    await done;
    assert.equal(pulled, 100);
    assert.equal(text, inputs.map((s) => `${s}\n`).join(''), 'every record arrived once, in order');
  });

  it('rejects what is not a message, and nacks unsynced messages when destroyed', async () => {
    const bufferPath = await tempDir();
    const bad = s3Collector({ bufferPath });
    bad.write(42 as never);
    const error = await new Promise<Error>((resolve) => bad.on('error', resolve));
    assert.equal((error as ManifoldError).code, ErrorCodes.INVALID_MESSAGE);

    const collector = s3Collector({ bufferPath, syncIntervalMs: 60_000 });
    let nacked: Error | undefined;
    await new Promise<void>((resolve) => collector.write(createMessage({ data: 'x', onNack: (e) => (nacked = e) }), () => resolve()));
    collector.destroy();
    await new Promise((resolve) => collector.on('close', resolve));
    assert.equal((nacked as ManifoldError | undefined)?.code, ErrorCodes.ABORTED);
  });
});

