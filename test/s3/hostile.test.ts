/**
 * The S3 sink against hostile input (issue 19): prefixes and buckets that would leave the bucket or
 * the prefix, a buffer folder holding what manifold did not write (foreign names, symbolic links,
 * hard links, FIFOs) or that others may write to, default buffer folders shared between prefixes,
 * the stale-lock race, and records that contain the delimiter. Against s3rver on loopback (path
 * style, as the escape needed).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { chmod, chown, link, lstat, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListBucketsCommand } from '@aws-sdk/client-s3';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { flow } from '../../lib/core/flow.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import { s3Collector } from '../../lib/s3/collector.js';
import { tryFileLock } from '../../lib/core/file-lock.js';
import { BufferLock } from '../../lib/s3/lock.js';
import { bucketProblem } from '../../lib/s3/options.js';
import { s3Sink, type S3SinkOptions } from '../../lib/s3/sink.js';
import { s3Uploader } from '../../lib/s3/uploader.js';
import { usage } from '../fixtures/cli.js';
import { startS3, type S3Fixture } from '../fixtures/s3.js';

const FAST = {
  commitIntervalMs: 100,
  syncIntervalMs: 5,
  uploadIntervalMs: 100,
  retry: { retries: 2, minTimeoutMs: 20, maxTimeoutMs: 60 },
} satisfies Partial<S3SinkOptions>;

const LOCK_MODULE = join(import.meta.dirname, '..', '..', 'lib', 'core', 'file-lock.ts');

let s3: S3Fixture;
before(async () => {
  s3 = await startS3();
});
after(async () => {
  await s3.cleanup();
});

/** Every object in every bucket of the server, as `bucket/key`. */
async function everyObject(): Promise<string[]> {
  const out: string[] = [];
  const { Buckets = [] } = await s3.client.send(new ListBucketsCommand({}));
  for (const { Name } of Buckets) for (const o of await s3.objects(Name!)) out.push(`${Name}/${o.key}`);
  return out.sort();
}

/** A pid that was alive a moment ago and is not any more. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid!;
}

function refusedOption(make: () => unknown, option: string): ManifoldError {
  try {
    make();
  } catch (error) {
    assert.ok(error instanceof ManifoldError, String(error));
    assert.equal(error.code, ErrorCodes.INVALID_OPTION, error.message);
    assert.equal((error as ManifoldError & { option?: string }).option, option, error.message);
    assert.match(error.message, new RegExp(`options\\.${option} must be`));
    return error;
  }
  return assert.fail('expected a throw');
}

async function closed(stream: Writable): Promise<void> {
  if (stream.closed) return;
  await new Promise((resolve) => stream.once('close', resolve));
}

describe('s3: keys cannot leave the bucket or the prefix', () => {
  const hostilePrefixes = (other: string): string[] => [
    `../${other}/planted/`,
    `..`,
    `../`,
    `.`,
    `./x/`,
    `a/../../${other}/x/`,
    `a/./b/`,
    `a/..`,
    `/abs/`,
    `a//b/`,
    `a\0b/`,
    `\0`,
    `a\nb/`,
    `a\rb`,
    `\u001b[31mred/`,
    `a\u007fb`,
    `a\u0085b`,
    `..\\${other}\\x/`,
    `a\ud800b`,
    'x'.repeat(901),
  ];

  it('refuses every hostile prefix with INVALID_OPTION naming options.prefix, before any I/O (s3Sink, s3Uploader); nothing reaches the server', async () => {
    const bucket = await s3.createBucket();
    const other = await s3.createBucket();
    const before = await everyObject();
    for (const prefix of hostilePrefixes(other)) {
      const bufferPath = join(tmpdir(), `manifold-never-made-${process.pid}`);
      const error = refusedOption(() => s3Sink({ bucket, prefix, bufferPath, endpoint: s3.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } }), 'prefix');
      // The value is quoted with its control characters escaped: a terminal shows what was refused.
      assert.doesNotMatch(error.message, /[\u0000-\u0008\u000a-\u001f\u007f]/, JSON.stringify(error.message));
      refusedOption(() => s3Uploader({ bucket, prefix, bufferPath, client: s3.client }), 'prefix');
      await assert.rejects(stat(bufferPath), { code: 'ENOENT' }, 'no buffer folder was made');
    }
    assert.deepEqual(await everyObject(), before, 'no object anywhere on the server');
  });

  it('refuses a bucket name a URL or a path would resolve, and takes names and access point ARNs', () => {
    for (const bucket of ['..', '.', '../other', 'a/b', 'a/../b', 'a\0b', 'a\nb', 'a b', '%2e%2e', 'a?b', 'a#b']) {
      refusedOption(() => s3Sink({ bucket, bufferPath: '/tmp/never', client: s3.client }), 'bucket');
    }
    for (const bucket of ['logs', 'my.bucket-1', 'Legacy_Bucket', 'arn:aws:s3:eu-west-1:123456789012:accesspoint/my-ap']) {
      assert.equal(bucketProblem(bucket), undefined, bucket);
    }
    assert.notEqual(bucketProblem('arn:aws:s3:eu-west-1:123456789012:accesspoint/../x'), undefined);
  });

  it('odd but harmless prefixes stay exactly where they say, in the bucket: a literal %2e%2e, dots inside names, spaces, non-ASCII', async () => {
    const bucket = await s3.createBucket();
    const other = await s3.createBucket();
    const prefixes = ['%2e%2e/', '%2E%2E%2F/', '..a/', 'a../', '.../', '.hidden/', 'sp ace/', 'ü/日本/', `${other}/`];
    for (const prefix of prefixes) {
      const bufferPath = await s3.tempDir('odd');
      const keys: string[] = [];
      const sink = s3Sink({ ...FAST, bucket, prefix, bufferPath, endpoint: s3.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
      sink.on('upload', (e: { bucket: string; key: string }) => keys.push(`${e.bucket}/${e.key}`));
      await pipeline(Readable.from([`record under ${prefix}`]), sink);
      assert.equal(keys.length, 1);
      assert.ok(keys[0]!.startsWith(`${bucket}/${prefix}`), keys[0]);
    }
    const all = await everyObject();
    assert.equal(all.length, prefixes.length, all.join('\n'));
    for (const prefix of prefixes) assert.equal(all.filter((k) => k.startsWith(`${bucket}/${prefix}`)).length, 1, `${prefix}: ${all.join(', ')}`);
    assert.deepEqual(await s3.objects(other), [], 'nothing in the other bucket');
  });

  it('the command: s3://b/..%2F<other>%2Fplanted/, a NUL and credentials in the URI exit 2; nothing reaches the server', async () => {
    const bucket = await s3.createBucket();
    const other = await s3.createBucket();
    const bufferPath = await s3.tempDir('cli');
    const q = `?endpoint=${encodeURIComponent(s3.endpoint)}&bufferPath=${encodeURIComponent(bufferPath)}`;
    const cases: Array<[string, RegExp]> = [
      [`s3://${bucket}/..%2F${other}%2Fplanted/${q}`, /the key prefix "\.\.\/manifold-[^"]+\/planted\/" \(the URI's path, decoded\) must be a key prefix without "\." or "\.\." segments/],
      [`s3://${bucket}/a/..%2F..%2F${other}/${q}`, /without "\." or "\.\." segments/],
      [`s3://${bucket}/%2e%2e/${other}/${q}`, /without "\." or "\.\." segments/],
      [`s3://${bucket}/../${other}/${q}`, /without "\." or "\.\." segments/],
      [`s3://${bucket}/a%00b/${q}`, /the key prefix "a\\u0000b\/" .* without NUL or other control characters/],
      [`s3://${bucket}/a%0Ab/${q}`, /without NUL or other control characters/],
      [`s3://${bucket}/100%/${q}`, /not valid percent-encoding/],
      [`s3://..%2F${other}/x/${q}`, /the bucket "\.\.%2F/],
    ];
    for (const [uri, message] of cases) {
      const run = await usage(['stdin:', uri]);
      assert.equal(run.code, 2, `${uri}: ${run.stderr}`);
      assert.match(run.stderr, message, uri);
      assert.doesNotMatch(run.stderr, /[\u0000\u000a\u001b](?!$)/, 'no raw control character in the message');
    }
    const secret = await usage(['stdin:', `s3://AKIAPLANTEDKEYID:planted-secret-value@${bucket}/logs/${q}`]);
    assert.equal(secret.code, 2, secret.stderr);
    assert.match(secret.stderr, /credentials in the URI are not used; give them through the environment \(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
    assert.ok(!secret.stderr.includes('planted-secret-value') && !secret.stderr.includes('AKIAPLANTEDKEYID'), secret.stderr);
    const user = await usage(['stdin:', `s3://someone@${bucket}/logs/`]);
    assert.equal(user.code, 2, user.stderr);
    assert.match(user.stderr, /credentials in the URI are not used/);
    assert.deepEqual(await s3.objects(bucket), []);
    assert.deepEqual(await s3.objects(other), []);
  });
});

describe('s3: the buffer folder holds only what manifold wrote', () => {
  /** A fresh bucket and buffer folder, and a sink over them that records its warnings. */
  async function sinkOver(t: TestContext, bufferPath: string, extra: Partial<S3SinkOptions> = {}) {
    const bucket = await s3.createBucket();
    const warnings: ManifoldError[] = [];
    const sink = s3Sink({ ...FAST, bucket, bufferPath, client: s3.client, ...extra });
    sink.on('warning', (w: ManifoldError) => warnings.push(w));
    t.after(() => sink.destroy());
    return { bucket, sink, warnings };
  }

  it('uploads and deletes only files under the names it writes; anything else is left alone and reported once', async (t) => {
    const bufferPath = await s3.tempDir('foreign');
    const day = join(bufferPath, '2020-01-01');
    await mkdir(day);
    await mkdir(join(bufferPath, '.active'));
    await writeFile(join(day, '000000.000000001-old'), 'ours, left by an earlier run\n');
    const foreign = {
      [join(day, 'notes.txt')]: 'not ours\n',
      [join(day, '000000.000000001-old.bak')]: 'a backup\n',
      [join(day, '.hidden')]: 'hidden\n',
      [join(day, '000000.000000002-a b')]: 'a space in the writer id\n',
      [join(day, '120000.1-short')]: 'too few digits\n',
      [join(bufferPath, 'README')]: 'someone put this here\n',
      [join(bufferPath, '.active', 'not a writer')]: 'torn record without newline',
    };
    for (const [path, body] of Object.entries(foreign)) await writeFile(path, body);
    const { bucket, sink, warnings } = await sinkOver(t, bufferPath);
    await sink.rescan();
    await sink.rescan();
    sink.write('new record');
    await sink.rescan();
    await new Promise<void>((resolve, reject) => sink.end((error?: Error | null) => (error ? reject(error) : resolve())));
    const objects = await s3.objects(bucket);
    assert.deepEqual(
      objects.map((o) => o.body.toString()).sort(),
      ['new record\n', 'ours, left by an earlier run\n'],
      objects.map((o) => o.key).join(', '),
    );
    for (const [path, body] of Object.entries(foreign)) assert.equal(await readFile(path, 'utf8'), body, `${path} is untouched`);
    // One warning per foreign entry, however many scans saw it.
    const reported = warnings.map((w) => (w as ManifoldError & { path: string }).path).sort();
    assert.deepEqual(reported, Object.keys(foreign).sort());
    for (const w of warnings) {
      assert.equal(w.code, ErrorCodes.IO);
      assert.equal((w as ManifoldError & { reason: string }).reason, 'name');
      assert.match(w.message, /left .* alone \(not read, uploaded or deleted\): its name is not one manifold writes/);
    }
  });

  it('never follows a link or reads a FIFO: a link in a day folder, a day folder that is a link, a link in .active, a hard link', async (t) => {
    const bufferPath = await s3.tempDir('links');
    const outside = await s3.tempDir('outside');
    await writeFile(join(outside, 'secret'), 'secret-1\n');
    await mkdir(join(outside, 'dir'));
    await writeFile(join(outside, 'dir', '000000.000000002-x'), 'secret-2\n');
    await writeFile(join(outside, 'torn'), 'secret-3\nno newline at the end');
    await writeFile(join(outside, 'hard'), 'secret-4\n');
    const day = join(bufferPath, '2020-01-01');
    await mkdir(day);
    await mkdir(join(bufferPath, '.active'));
    const planted: Record<string, string> = {
      [join(day, '000000.000000001-link')]: 'symlink',
      [join(bufferPath, '2020-01-02')]: 'symlink',
      [join(bufferPath, '.active', 'deadwriter')]: 'symlink',
      [join(day, '000000.000000003-hard')]: 'hard link',
    };
    await symlink(join(outside, 'secret'), join(day, '000000.000000001-link'));
    await symlink(join(outside, 'dir'), join(bufferPath, '2020-01-02'));
    await symlink(join(outside, 'torn'), join(bufferPath, '.active', 'deadwriter'));
    await link(join(outside, 'hard'), join(day, '000000.000000003-hard'));
    let fifo = false;
    try {
      execFileSync('mkfifo', [join(day, '000000.000000004-fifo')]);
      planted[join(day, '000000.000000004-fifo')] = 'not a regular file';
      fifo = true;
    } catch {
      // No mkfifo here: the other cases still run.
    }
    const { bucket, sink, warnings } = await sinkOver(t, bufferPath);
    await sink.rescan();
    await pipeline(Readable.from(['the only record']), sink);
    assert.deepEqual((await s3.objects(bucket)).map((o) => o.body.toString()), ['the only record\n'], 'nothing from outside was uploaded');
    // Nothing outside was changed (the torn file was not cut back to its last newline), nothing planted was deleted.
    assert.equal(await readFile(join(outside, 'secret'), 'utf8'), 'secret-1\n');
    assert.equal(await readFile(join(outside, 'dir', '000000.000000002-x'), 'utf8'), 'secret-2\n');
    assert.equal(await readFile(join(outside, 'torn'), 'utf8'), 'secret-3\nno newline at the end');
    assert.equal(await readFile(join(outside, 'hard'), 'utf8'), 'secret-4\n');
    assert.ok((await lstat(join(day, '000000.000000001-link'))).isSymbolicLink());
    assert.ok((await lstat(join(bufferPath, '2020-01-02'))).isSymbolicLink());
    assert.ok((await lstat(join(bufferPath, '.active', 'deadwriter'))).isSymbolicLink());
    assert.equal((await stat(join(outside, 'hard'))).nlink, 2, 'the hard link is still there');
    if (fifo) assert.ok((await lstat(join(day, '000000.000000004-fifo'))).isFIFO());
    const reported = Object.fromEntries(warnings.map((w) => [(w as ManifoldError & { path: string }).path, (w as ManifoldError & { reason: string }).reason]));
    assert.deepEqual(reported, planted);
  });

  it("fails, writing nothing through it, when the day folder it commits into is a link to elsewhere", async (t) => {
    const bufferPath = await s3.tempDir('daylink');
    const outside = await s3.tempDir('outside-day');
    // Today's, and the days around it in case the test runs across midnight (UTC).
    for (const offset of [-1, 0, 1]) {
      const day = new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
      await symlink(outside, join(bufferPath, day));
    }
    const { sink } = await sinkOver(t, bufferPath, { commitSizeBytes: 1 });
    const failed = new Promise<Error>((resolve) => sink.once('error', resolve));
    sink.write('would be committed through the link');
    const error = await failed;
    assert.equal((error as ManifoldError).code, ErrorCodes.IO);
    assert.match(error.message, /is a symbolic link; manifold does not write through it: remove it/);
    assert.deepEqual(await readdir(outside), [], 'nothing written outside');
  });

  it('refuses a buffer folder the group or others may write to, or that another user owns, unless allowSharedBufferPath', async (t) => {
    for (const mode of [0o777, 0o770, 0o722, 0o1777]) {
      const bufferPath = await s3.tempDir('shared');
      await chmod(bufferPath, mode);
      const { sink } = await sinkOver(t, bufferPath);
      const error = await new Promise<Error>((resolve) => sink.once('error', resolve));
      assert.ok(error instanceof ManifoldError);
      assert.equal(error.code, ErrorCodes.INVALID_OPTION);
      assert.equal((error as ManifoldError & { option?: string }).option, 'bufferPath');
      assert.match(error.message, new RegExp(`options\\.bufferPath ${bufferPath} is writable by (its group|others|its group and others) \\(mode 0${mode.toString(8)}\\): .*chmod 700 .*allowSharedBufferPath: true`));
      await closed(sink);
      // Left as it was: neither fixed nor used.
      assert.equal((await stat(bufferPath)).mode & 0o7777, mode);
      assert.deepEqual(await readdir(bufferPath), [], 'no lock, no buffer file');
    }
    // The standalone parts refuse it too; a file planted there is not uploaded.
    const shared = await s3.tempDir('shared-parts');
    await chmod(shared, 0o777);
    await mkdir(join(shared, '2020-01-01'));
    await writeFile(join(shared, '2020-01-01', '000000.000000001-planted'), 'planted\n');
    const bucket = await s3.createBucket();
    const uploader = s3Uploader({ bucket, bufferPath: shared, client: s3.client });
    const uploaderError = await new Promise<Error>((resolve) => uploader.once('error', resolve));
    assert.equal((uploaderError as ManifoldError).code, ErrorCodes.INVALID_OPTION);
    const collector = s3Collector({ bufferPath: shared });
    const collectorError = await new Promise<Error>((resolve) => collector.once('error', resolve));
    assert.equal((collectorError as ManifoldError).code, ErrorCodes.INVALID_OPTION);
    assert.deepEqual(await s3.objects(bucket), []);
    assert.equal(await readFile(join(shared, '2020-01-01', '000000.000000001-planted'), 'utf8'), 'planted\n');
    // Told so, it is used.
    const { bucket: allowed, sink } = await sinkOver(t, shared, { allowSharedBufferPath: true });
    await pipeline(Readable.from(['meant']), sink);
    assert.deepEqual((await s3.objects(allowed)).map((o) => o.body.toString()).sort(), ['meant\n', 'planted\n']);
    // Inside a folder anyone may write to without the sticky bit: anyone could rename it away and put theirs there.
    const open = await s3.tempDir('open-parent');
    await chmod(open, 0o777);
    const inside = join(open, 'buffer');
    const { sink: replaceable } = await sinkOver(t, inside);
    const replaceableError = await new Promise<Error>((resolve) => replaceable.once('error', resolve));
    assert.equal((replaceableError as ManifoldError).code, ErrorCodes.INVALID_OPTION);
    assert.match(replaceableError.message, new RegExp(`options\\.bufferPath ${inside} is inside ${open}, which others may write to without the sticky bit \\(mode 0777\\)`));
    await closed(replaceable);
    // With the sticky bit (as /tmp has), fine.
    await chmod(open, 0o1777);
    const { bucket: stickyBucket, sink: sticky } = await sinkOver(t, inside);
    await pipeline(Readable.from(['under a sticky folder']), sticky);
    assert.deepEqual((await s3.objects(stickyBucket)).map((o) => o.body.toString()), ['under a sticky folder\n']);
    // Another user's folder (needs root to make one).
    if (process.getuid?.() === 0) {
      const theirs = await s3.tempDir('theirs');
      await chown(theirs, 65534, 65534);
      const { sink: refused } = await sinkOver(t, theirs);
      const error = await new Promise<Error>((resolve) => refused.once('error', resolve));
      assert.equal((error as ManifoldError).code, ErrorCodes.INVALID_OPTION);
      assert.match(error.message, /belongs to another user \(uid 65534, this process runs as 0\)/);
    }
  });

  it('the command: bufferPath= a folder others may write to exits 2 naming it, before anything connects', async () => {
    const bucket = await s3.createBucket();
    const shared = await s3.tempDir('cli-shared');
    await chmod(shared, 0o777);
    const run = await usage(['stdin:', `s3://${bucket}/logs/?endpoint=${encodeURIComponent(s3.endpoint)}&bufferPath=${encodeURIComponent(shared)}`]);
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, new RegExp(`options\\.bufferPath ${shared} is writable by its group and others \\(mode 0777\\)`));
    assert.deepEqual(await s3.objects(bucket), []);
  });

  it('the default buffer folder is per user and per bucket and prefix: leftovers of one prefix are never uploaded under another', async (t) => {
    const state = await s3.tempDir('state');
    const saved = process.env.XDG_STATE_HOME;
    process.env.XDG_STATE_HOME = state;
    t.after(() => {
      if (saved === undefined) delete process.env.XDG_STATE_HOME;
      else process.env.XDG_STATE_HOME = saved;
    });
    const bucket = await s3.createBucket();
    // Sink "a" cannot reach S3: its acked records stay in its buffer folder.
    const down = { endpoint: 'http://127.0.0.1:9', region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, retry: { retries: 0 }, closeTimeoutMs: 0 };
    const a = s3Sink({ ...FAST, ...down, bucket, prefix: 'a' });
    await pipeline(Readable.from(['a-1', 'a-2']), a);
    assert.ok(a.bufferPath.startsWith(`${state}/manifold/s3/${bucket}/a-`), a.bufferPath);
    const b = s3Sink({ ...FAST, bucket, prefix: 'b', client: s3.client });
    assert.notEqual(b.bufferPath, a.bufferPath);
    await pipeline(Readable.from(['b-1']), b);
    const afterB = await s3.objects(bucket);
    assert.deepEqual(afterB.map((o) => [o.key.split('/')[0], o.body.toString()]), [['b', 'b-1\n']], 'only b\'s record, under b/');
    // Its own next start uploads a's leftovers, under a/.
    await pipeline(Readable.from([]), s3Sink({ ...FAST, bucket, prefix: 'a', client: s3.client }));
    const all = await s3.objects(bucket);
    assert.deepEqual(all.filter((o) => o.key.startsWith('a/')).map((o) => o.body.toString()).join(''), 'a-1\na-2\n');
    assert.equal((await stat(a.bufferPath)).mode & 0o777, 0o700);
  });
});

describe('s3: the buffer lock is taken atomically', () => {
  it('three takers at once over a stale lock: exactly one takes it, in 300 of 300 trials', async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'manifold-lock-race-'));
    t.after(() => rm(root, { recursive: true, force: true }));
    const dead = await deadPid();
    const failures: string[] = [];
    for (let trial = 0; trial < 300; trial++) {
      const dir = join(root, String(trial));
      await mkdir(dir);
      // Both the format written now and the one before.
      await writeFile(join(dir, '.lock'), trial % 2 ? JSON.stringify({ pid: dead, token: `t${trial}` }) : `${dead}:stale-${trial}`);
      const locks = [new BufferLock(dir), new BufferLock(dir), new BufferLock(dir)];
      const results = await Promise.allSettled(locks.map((lock) => lock.take()));
      const won = results.filter((r) => r.status === 'fulfilled').length;
      const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => String(r.reason?.message));
      if (won !== 1 || !refused.every((m) => /is in use by process \d+ \(another sink in this process\)/.test(m))) failures.push(`trial ${trial}: ${won} took it; ${refused.join(' | ')}`);
      const owner = JSON.parse(await readFile(join(dir, '.lock'), 'utf8')) as { pid: number };
      assert.equal(owner.pid, process.pid);
      assert.deepEqual(await readdir(dir), ['.lock'], 'no breaker or temporary file left');
      for (const lock of locks) await lock.release();
      assert.deepEqual(await readdir(dir), [], 'released');
    }
    assert.deepEqual(failures, []);
  });

  it('two processes at once over a stale lock: exactly one takes it, in 150 of 150 rounds', async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'manifold-lock-procs-'));
    t.after(() => rm(root, { recursive: true, force: true }));
    // Each child takes the lock of every folder named on its stdin and says whether it got it; it keeps what it took (it stays alive).
    const code = `
      import { createInterface } from 'node:readline';
      import { tryFileLock } from ${JSON.stringify(LOCK_MODULE)};
      for await (const dir of createInterface({ input: process.stdin })) {
        try {
          const got = await tryFileLock(dir + '/.lock');
          process.stdout.write(dir + ' ' + (got.taken ? 'won' : 'lost:' + got.owner?.pid) + '\\n');
        } catch (error) {
          process.stdout.write(dir + ' error:' + error.message + '\\n');
        }
      }`;
    const children = [0, 1].map(() => spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] }));
    t.after(() => {
      for (const child of children) child.kill('SIGKILL');
    });
    const lines = children.map((child) => createInterface({ input: child.stdout! })[Symbol.asyncIterator]());
    const dead = await deadPid();
    const failures: string[] = [];
    for (let round = 0; round < 150; round++) {
      const dir = join(root, String(round));
      await mkdir(dir);
      await writeFile(join(dir, '.lock'), JSON.stringify({ pid: dead, token: `r${round}` }));
      for (const child of children) child.stdin!.write(`${dir}\n`);
      const answers = await Promise.all(lines.map(async (it) => (await it.next()).value as string));
      const won = answers.filter((a) => a.endsWith(' won'));
      const lost = answers.filter((a) => / lost:\d+$/.test(a));
      if (won.length !== 1 || lost.length !== 1) failures.push(`round ${round}: ${answers.join(' | ')}`);
      else {
        const winner = children[answers.indexOf(won[0]!)]!.pid;
        assert.equal(Number(lost[0]!.split('lost:')[1]), winner, 'the loser names the winner');
        assert.equal((JSON.parse(await readFile(join(dir, '.lock'), 'utf8')) as { pid: number }).pid, winner);
      }
    }
    for (const child of children) child.stdin!.end();
    assert.deepEqual(failures, []);
  });

  it('a lock of a pid now reused by another process, of another boot, or unreadable and old is stale; a live one is refused', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'manifold-lock-stale-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const lockPath = join(dir, '.lock');
    const linux = await readFile('/proc/self/stat', 'utf8').then(
      () => true,
      () => false,
    );
    // A live process that is not the lock's owner: the pid is ours, the start time is not (a container restart where every run is pid 1).
    const stale: string[] = [JSON.stringify({ pid: await deadPid() })];
    if (linux) {
      stale.push(JSON.stringify({ pid: process.pid, start: '1', token: 'reused pid' }));
      stale.push(JSON.stringify({ pid: process.pid, boot: '00000000-0000-0000-0000-000000000000', token: 'earlier boot' }));
    }
    for (const content of stale) {
      await writeFile(lockPath, content);
      const got = await tryFileLock(lockPath);
      assert.ok(got.taken, content);
      await got.release();
    }
    // Unreadable (torn by a power loss): stale once it is old, in use while it may be being written.
    await writeFile(lockPath, '');
    assert.equal((await tryFileLock(lockPath)).taken, false);
    const old = new Date(Date.now() - 60_000);
    const { utimes } = await import('node:fs/promises');
    await utimes(lockPath, old, old);
    const got = await tryFileLock(lockPath);
    assert.ok(got.taken);
    // Live: refused, naming the owner.
    const again = await tryFileLock(lockPath);
    assert.deepEqual(again.taken ? 'taken' : again.owner?.pid, process.pid);
    await got.release();
    assert.deepEqual(await readdir(dir), []);
  });

  it('a taker that died while breaking a stale lock does not block the next ones', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'manifold-lock-breaker-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const lockPath = join(dir, '.lock');
    const content = JSON.stringify({ pid: await deadPid(), token: 'stale' });
    await writeFile(lockPath, content);
    const { createHash } = await import('node:crypto');
    const breaker = `${lockPath}.break-${createHash('sha256').update(content).digest('hex').slice(0, 16)}`;
    // The breaker of a taker that was killed in the middle.
    await writeFile(breaker, JSON.stringify({ pid: await deadPid(), token: 'killed breaker' }));
    const results = await Promise.allSettled([new BufferLock(dir).take(), new BufferLock(dir).take()]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    assert.deepEqual(await readdir(dir), ['.lock']);
  });

  it('two sinks started at once on a folder with a stale lock: one runs, the other is refused (never both, never ENOENT)', async (t) => {
    const bucket = await s3.createBucket();
    const dead = await deadPid();
    for (let trial = 0; trial < 20; trial++) {
      const bufferPath = await s3.tempDir('sink-race');
      await writeFile(join(bufferPath, '.lock'), `${dead}:stale`);
      const sinks = [0, 1].map(() => s3Sink({ ...FAST, bucket, bufferPath, client: s3.client }));
      t.after(() => {
        for (const sink of sinks) sink.destroy();
      });
      // Neither ends before one is refused: the one that holds the lock cannot let go of it in between, so a
      // second sink running after the first had finished (legitimate, and seen on a busy CI machine) is not
      // taken for both running at once; two sinks holding the lock together would leave no refusal.
      const errors: Array<string | undefined> = [undefined, undefined];
      sinks.forEach((sink, i) => {
        sink.once('error', (error: Error) => (errors[i] = error.message));
        sink.write(`trial ${trial} sink ${i}`);
      });
      const deadline = Date.now() + 15_000;
      while (errors.every((e) => e === undefined)) {
        assert.ok(Date.now() < deadline, `trial ${trial}: neither sink was refused the buffer folder`);
        await sleep(5);
      }
      await sleep(50);
      const refused = errors.findIndex((e) => e !== undefined);
      assert.equal(errors.filter((e) => e !== undefined).length, 1, errors.join(' | '));
      assert.match(errors[refused]!, /is in use by process \d+ \(another sink in this process\); give each sink its own bufferPath/);
      const running = sinks[1 - refused]!;
      await new Promise<void>((resolve, reject) => running.end((error?: Error | null) => (error ? reject(error) : resolve())));
      for (const sink of sinks) await closed(sink);
    }
    assert.equal((await s3.objects(bucket)).length, 20);
  });
});

describe('s3: one record is one line', () => {
  it("refuses a message containing the delimiter: nacked with INVALID_MESSAGE, a 'reject' event, nothing split in the object", async (t) => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir('delimiter');
    const sink = s3Sink({ ...FAST, bucket, bufferPath, client: s3.client });
    t.after(() => sink.destroy());
    const rejects: Array<{ error: ManifoldError; bytes: number }> = [];
    sink.on('reject', (e: { error: ManifoldError; bytes: number }) => rejects.push(e));
    const settled: Record<string, string> = {};
    const messages = ['one', 'two\nlines', 'three', 'ends with\n', 'four'].map((data) =>
      createMessage({ data, onAck: () => (settled[data] = 'ack'), onNack: (error) => (settled[data] = (error as ManifoldError).code) }),
    );
    await pipeline(Readable.from(messages), sink);
    assert.deepEqual(settled, {
      one: 'ack',
      'two\nlines': ErrorCodes.INVALID_MESSAGE,
      three: 'ack',
      'ends with\n': ErrorCodes.INVALID_MESSAGE,
      four: 'ack',
    });
    assert.deepEqual(
      rejects.map((r) => [r.bytes, r.error.message]),
      [
        [9, `s3Collector: the message contains the delimiter "\\n" (at byte 3), so it would be read back as more than one record; refused (onDelimiter: 'escape' writes it escaped)`],
        [10, `s3Collector: the message contains the delimiter "\\n" (at byte 9), so it would be read back as more than one record; refused (onDelimiter: 'escape' writes it escaped)`],
      ],
    );
    assert.equal((await s3.objects(bucket)).map((o) => o.body.toString()).join(''), 'one\nthree\nfour\n');
  });

  it('through flow(), the refused message is dead-lettered at once (no retry) and the rest is delivered', async (t) => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir('delimiter-flow');
    const sink = s3Sink({ ...FAST, bucket, bufferPath, client: s3.client });
    t.after(() => sink.destroy());
    const dead: Message[] = [];
    const deadLetter = new Writable({
      objectMode: true,
      write(message: Message, _encoding, callback) {
        dead.push(message);
        message.ack();
        callback();
      },
    });
    const stats = await flow({ source: Readable.from(['a', 'b\nc', 'd']), sink, deadLetter, deadLetterFormat: 'json', maxAttempts: 5, retryBackoff: { minTimeoutMs: 1, maxTimeoutMs: 2 } });
    assert.equal(stats.deadLettered, 1);
    assert.equal(stats.redeliveries, 0);
    const envelope = JSON.parse(dead[0]!.data.toString()) as { attempts: number; error: { code: string }; data?: string };
    assert.equal(envelope.attempts, 1);
    assert.equal(envelope.error.code, ErrorCodes.INVALID_MESSAGE);
    assert.equal((await s3.objects(bucket)).map((o) => o.body.toString()).join(''), 'a\nd\n');
  });

  it("onDelimiter 'escape': every record on one line, reversibly", async (t) => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir('escape');
    const sink = s3Sink({ ...FAST, bucket, bufferPath, client: s3.client, onDelimiter: 'escape' });
    t.after(() => sink.destroy());
    const records = ['plain', 'two\nlines', 'back\\slash and \\n literally', '{"json":"with \\"quotes\\""}', '\n', '', 'crlf\r\n', 'ü\u0000'];
    await pipeline(Readable.from(records), sink);
    const body = (await s3.objects(bucket)).map((o) => o.body.toString()).join('');
    const lines = body.split('\n').slice(0, -1);
    assert.equal(lines.length, records.length);
    const unescape = (line: string): string => line.replace(/\\(\\|n|r|t|u00[0-9a-f]{2})/g, (_, e: string) => (e === '\\' ? '\\' : e === 'n' ? '\n' : e === 'r' ? '\r' : e === 't' ? '\t' : String.fromCharCode(parseInt(e.slice(3), 16))));
    assert.deepEqual(lines.map(unescape), records);
    assert.equal(lines[1], 'two\\nlines');
  });
});
