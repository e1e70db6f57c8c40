import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { S3Client } from '@aws-sdk/client-s3';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage } from '../../lib/core/message.js';
import { dynamoLeases, type DynamoLeasesOptions } from '../../lib/kinesis/dynamo-leases.js';
import { kinesisSink, type KinesisSinkOptions } from '../../lib/kinesis/sink.js';
import type { CommitEvent, RotateEvent } from '../../lib/s3/collector.js';
import type { UploadEvent } from '../../lib/s3/uploader.js';
import { s3Sink, type S3SinkOptions } from '../../lib/s3/sink.js';
import { sinkConformance } from '../conformance/suite.js';
import { childRecord } from '../fixtures/s3-child.js';
import { startBlackholeProxy, type SeenRequest } from '../fixtures/blackhole-proxy.js';
import { startS3, type S3Fixture } from '../fixtures/s3.js';

const FAST = {
  commitIntervalMs: 150,
  syncIntervalMs: 10,
  uploadIntervalMs: 100,
  retry: { retries: 2, minTimeoutMs: 20, maxTimeoutMs: 60 },
} satisfies Partial<S3SinkOptions>;

/** Every file left under bufferPath (committed or open), relative to it. */
async function filesLeft(bufferPath: string): Promise<string[]> {
  const out: string[] = [];
  for (const dir of await readdir(bufferPath).catch(() => [] as string[])) {
    if (dir === '.lock') continue;
    for (const name of await readdir(join(bufferPath, dir)).catch(() => [] as string[])) out.push(`${dir}/${name}`);
  }
  return out;
}

function records(bodies: Buffer[]): string[] {
  return bodies.flatMap((b) => b.toString().split('\n').slice(0, -1));
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('s3Sink options', () => {
  it('throws synchronously, naming the option, before any I/O', () => {
    assert.throws(() => s3Sink({} as S3SinkOptions), /s3Sink: options\.bucket must be a non-empty string, got undefined/);
    assert.throws(() => s3Sink({ bucket: 'bkt', commitSizeBytes: -1 }), /^ManifoldError: s3Sink: options\.commitSizeBytes must be a positive integer \(bytes\), got -1$/m);
    assert.throws(() => s3Sink({ bucket: 'bkt', client: new S3Client({}), region: 'eu-west-1' }), /s3Sink: options\.client and options\.region cannot be combined: configure the client you pass instead/);
    assert.throws(() => s3Sink({ bucket: 'bkt', client: new S3Client({}), forcePathStyle: true }), /s3Sink: options\.client and options\.forcePathStyle cannot be combined/);
    assert.throws(() => s3Sink({ bucket: 'bkt', folder: 'x' } as never), /s3Sink: unknown option "folder"/);
    assert.throws(() => s3Sink({ bucket: 'b', comitSizeBytes: 5 } as never), /^ManifoldError: s3Sink: unknown option "comitSizeBytes" \(did you mean "commitSizeBytes"\?\); known options are bucket, prefix, /m);
    assert.throws(() => s3Sink({ bucket: 'b', retry: 3 as never }), /s3Sink: options\.retry must be false or an object of retry settings \(retries, minTimeoutMs, maxTimeoutMs, factor, signal\), got 3/);
    assert.throws(() => s3Sink({ bucket: 'b', prefix: '/abs' }), /s3Sink: options\.prefix must be a key prefix without a leading "\/", got "\/abs"/);
    assert.throws(() => s3Sink({ bucket: 'b', writerId: 'a/b' }), /s3Sink: options\.writerId must be up to 64 letters, digits, "_" or "-", got "a\/b"/);
    assert.throws(() => s3Sink({ bucket: 'bkt', maxBufferBytes: 0 }), /options\.maxBufferBytes/);
    assert.throws(() => s3Sink({ bucket: 'bkt', closeTimeoutMs: -1 }), /options\.closeTimeoutMs/);
    assert.throws(() => s3Sink({ bucket: 'bkt', uploadIntervalMs: 0 }), /options\.uploadIntervalMs/);
    try {
      s3Sink({ bucket: 'bkt', compression: 'brotli' as 'gzip' });
      assert.fail('expected a throw');
    } catch (error) {
      assert.ok(error instanceof ManifoldError && error.code === ErrorCodes.INVALID_OPTION);
    }
  });

  it('judges the AWS connection options as kinesisSink and dynamoLeases do, in the same words', () => {
    const refused = (make: () => unknown): string => {
      try {
        make();
      } catch (error) {
        assert.ok(error instanceof ManifoldError && error.code === ErrorCodes.INVALID_OPTION, String(error));
        return error.message.replace(/^\w+: /, '');
      }
      return assert.fail('expected a throw');
    };
    const cases: Array<Record<string, unknown>> = [
      { endpoint: 'ftp://x' },
      { endpoint: 'not a url' },
      { region: '' },
      { credentials: 'hunter2' },
      { credentials: null },
      { client: { send: () => undefined }, region: 'eu-west-1' },
      { client: { send: () => undefined }, endpoint: 'http://127.0.0.1:1' },
      { client: { send: () => undefined }, credentials: {} },
      { requestTimeoutMs: 0 },
      { connectTimeoutMs: 'soon' },
    ];
    for (const connection of cases) {
      const s3 = refused(() => s3Sink({ bucket: 'b', ...connection } as S3SinkOptions));
      assert.equal(s3, refused(() => kinesisSink({ streamName: 's', ...connection } as KinesisSinkOptions)), `kinesisSink, ${JSON.stringify(connection)}`);
      assert.equal(s3, refused(() => dynamoLeases({ tableName: 'leases', ...connection } as DynamoLeasesOptions)), `dynamoLeases, ${JSON.stringify(connection)}`);
      assert.ok(!s3.includes('hunter2'), s3);
    }
    assert.match(refused(() => s3Sink({ bucket: 'b', endpoint: 'ftp://x' })), /^options\.endpoint must be an http:\/\/ or https:\/\/ URL, got "ftp:\/\/x"$/);
  });

  it('takes credentials as any object or provider, as the other AWS connectors do (the SDK checks their fields)', async (t) => {
    const bufferPath = await mkdtemp(join(tmpdir(), 'manifold-s3-credentials-'));
    t.after(() => rm(bufferPath, { recursive: true, force: true }));
    for (const credentials of [{}, async () => ({ accessKeyId: 'a', secretAccessKey: 'b' })]) {
      const sink = s3Sink({ bucket: 'b', bufferPath, region: 'us-east-1', credentials: credentials as S3SinkOptions['credentials'] });
      sink.destroy();
      await new Promise((resolve) => sink.on('close', resolve));
    }
  });

  it('defaults bufferPath to $XDG_STATE_HOME/manifold/s3/<bucket>/<prefix>-<hash>, per bucket and prefix, created with mode 0700', async (t) => {
    // Point XDG_STATE_HOME at a folder of our own so nothing is left in the real one.
    const scratch = await mkdtemp(join(tmpdir(), 'manifold-s3-state-'));
    const saved = process.env.XDG_STATE_HOME;
    process.env.XDG_STATE_HOME = scratch;
    t.after(async () => {
      if (saved === undefined) delete process.env.XDG_STATE_HOME;
      else process.env.XDG_STATE_HOME = saved;
      await rm(scratch, { recursive: true, force: true });
    });
    const bucket = `manifold-default-${process.pid}`;
    // verify: 'none': this client reaches no server (nothing leaves loopback), and the start-up check is not what is tested.
    const sink = s3Sink({ bucket, client: new S3Client({ region: 'us-east-1' }), verify: 'none' });
    assert.match(sink.bufferPath, new RegExp(`^${scratch}/manifold/s3/${bucket}/_-[0-9a-f]{12}$`));
    await new Promise((resolve) => sink.write('x', resolve));
    assert.equal((await stat(sink.bufferPath)).mode & 0o777, 0o700);
    sink.destroy();
    await new Promise((resolve) => sink.on('close', resolve));
    // Another prefix of the same bucket never shares it.
    const paths: string[] = [];
    for (const prefix of ['logs', 'logs/', 'logs/a', 'logs_a', 'other']) {
      const other = s3Sink({ bucket, prefix, client: new S3Client({ region: 'us-east-1' }), verify: 'none' });
      paths.push(other.bufferPath);
      await new Promise((resolve) => other.on('close', resolve).destroy());
    }
    assert.match(paths[0]!, new RegExp(`^${scratch}/manifold/s3/${bucket}/logs-[0-9a-f]{12}$`));
    assert.equal(paths[0], paths[1], '"logs" and "logs/" are one prefix');
    assert.equal(new Set([sink.bufferPath, ...paths]).size, 5, paths.join(', '));
  });
});

describe('s3Sink against s3rver', () => {
  let s3: S3Fixture;
  before(async () => {
    s3 = await startS3();
  });
  after(async () => {
    await s3.cleanup();
  });

  it('rotates by size, gzips, and writes keys as prefix/YYYY-MM-DD/HHmmss.nnnnnnnnn-writerId.gz; emits rotate, commit, upload', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const sink = s3Sink({ ...FAST, bucket, bufferPath, client: s3.client, prefix: 'events/', compression: 'gzip', commitSizeBytes: 1000, commitIntervalMs: 60_000 });
    const rotations: RotateEvent[] = [];
    const commits: CommitEvent[] = [];
    const uploads: UploadEvent[] = [];
    sink.on('rotate', (e: RotateEvent) => rotations.push(e));
    sink.on('commit', (e: CommitEvent) => commits.push(e));
    sink.on('upload', (e: UploadEvent) => uploads.push(e));
    const lines = Array.from({ length: 200 }, (_, i) => JSON.stringify({ i, at: `line-${i}` }));
    await pipeline(Readable.from(lines), sink);

    const objects = await s3.objects(bucket, { gunzip: true });
    const today = new Date().toISOString().slice(0, 10);
    const key = new RegExp(`^events/${today}/\\d{6}\\.\\d{9}-${sink.writerId}\\.gz$`);
    for (const o of objects) assert.match(o.key, key);
    assert.ok(objects.length >= 4, `200 lines of ~25 bytes in 1000-byte files, got ${objects.length} objects`);
    assert.deepEqual(records(objects.map((o) => o.body)), lines);
    assert.equal(commits.length, objects.length);
    assert.equal(uploads.length, objects.length);
    assert.ok(rotations.filter((r) => r.reason === 'size').length >= 3);
    assert.equal(rotations.at(-1)!.reason, 'end');
    assert.deepEqual(uploads.map((u) => u.key).sort(), objects.map((o) => o.key));
    assert.deepEqual(await filesLeft(bufferPath), [], 'nothing is left on disk');
  });

  it('with an endpoint, builds a client for a compatible server: path-style URLs and no checksums S3 does not require', async (t) => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const proxy = await startBlackholeProxy(s3.endpoint);
    t.after(() => proxy.stop());
    const seen: SeenRequest[] = [];
    // A rule that never matches: a spy on every request the sink sends.
    proxy.swallow((r) => (seen.push(r), false));
    const lines = Array.from({ length: 50 }, (_, i) => `line-${i}`);
    await pipeline(
      Readable.from(lines),
      s3Sink({ ...FAST, bucket, bufferPath, endpoint: proxy.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, commitSizeBytes: 100 }),
    );
    assert.ok(seen.length >= 3, `${seen.length} requests`);
    for (const r of seen) {
      assert.ok(r.url.startsWith(`/${bucket}/`), `path-style: ${r.url}`);
      assert.deepEqual(Object.keys(r.headers).filter((h) => /checksum/i.test(h)), [], `${r.method} ${r.url}`);
    }
    assert.deepEqual(records((await s3.objects(bucket)).map((o) => o.body)), lines);
  });

  it('rotates by time and uploads while the stream stays open', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const sink = s3Sink({ ...FAST, bucket, bufferPath, client: s3.client, commitIntervalMs: 100 });
    sink.write('first');
    const upload = await new Promise<UploadEvent>((resolve) => sink.once('upload', resolve));
    assert.equal((await s3.objects(bucket)).map((o) => o.body.toString()).join(''), 'first\n');
    assert.equal(upload.bytes, 6);
    sink.end('second');
    await new Promise((resolve) => sink.on('finish', resolve));
    assert.deepEqual(records((await s3.objects(bucket)).map((o) => o.body)), ['first', 'second']);
  });

  it('gives a buffer folder to one sink at a time, and frees it as soon as the sink finished', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const first = s3Sink({ ...FAST, bucket, bufferPath, client: s3.client });
    first.write('held');
    await new Promise((resolve) => first.once('commit', resolve).write('x', resolve));
    const second = s3Sink({ ...FAST, bucket, bufferPath, client: s3.client });
    const error = await new Promise<Error>((resolve) => second.on('error', resolve));
    assert.equal((error as ManifoldError).code, ErrorCodes.IO);
    assert.match(error.message, /in use by process \d+ \(another sink in this process\)/);
    first.end();
    await new Promise((resolve) => first.on('finish', resolve));
    // Right after 'finish' (before 'close'), the folder is free.
    await pipeline(Readable.from(['third']), s3Sink({ ...FAST, bucket, bufferPath, client: s3.client }));
    assert.deepEqual(records((await s3.objects(bucket)).map((o) => o.body)).sort(), ['held', 'third', 'x']);
  });

  it("acks with ackOn 'upload' only once the file holding the message is in S3", async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const sink = s3Sink({ ...FAST, bucket, bufferPath, client: s3.client, ackOn: 'upload', commitSizeBytes: 200 });
    const inS3 = new Set<string>();
    sink.on('upload', (e: UploadEvent) => inS3.add(e.relativePath));
    const early: number[] = [];
    let acked = 0;
    const messages = Array.from({ length: 50 }, (_, i) =>
      createMessage({
        data: `upload-ack-${i}`,
        onAck: () => {
          acked += 1;
          if (inS3.size === 0) early.push(i);
        },
      }),
    );
    await pipeline(Readable.from(messages), sink);
    assert.equal(acked, 50);
    assert.deepEqual(early, [], 'no ack came before the first upload');
    assert.equal(records((await s3.objects(bucket)).map((o) => o.body)).length, 50);
  });

  it('after a crash (destroyed, S3 down), the next sink on the same bufferPath uploads everything that was acked', async (t) => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    await s3.stop();
    t.after(() => s3.start());
    const first = s3Sink({ ...FAST, bucket, bufferPath, client: s3.client, commitSizeBytes: 300 });
    first.on('error', () => {});
    const acked = new Set<string>();
    for (let i = 0; i < 60; i++) {
      const data = `restart-${i}`;
      first.write(createMessage({ data, onAck: () => acked.add(data) }));
    }
    await until('the acks', () => acked.size === 60);
    first.destroy();
    await new Promise((resolve) => first.on('close', resolve));
    assert.ok((await filesLeft(bufferPath)).length > 1, 'committed files and an open buffer were left');
    await s3.start();

    const second = s3Sink({ ...FAST, bucket, bufferPath, client: s3.client });
    const commits: CommitEvent[] = [];
    second.on('commit', (e: CommitEvent) => commits.push(e));
    await pipeline(Readable.from([]), second);
    assert.ok(commits.some((c) => c.reason === 'recovery'), 'the open buffer of the first sink was recovered');
    const got = records((await s3.objects(bucket)).map((o) => o.body));
    assert.deepEqual([...acked].filter((a) => !got.includes(a)), [], 'every acked message is in the bucket');
    assert.equal(got.length, 60);
    assert.deepEqual(await filesLeft(bufferPath), []);
  });

  it('survives an S3 outage: everything arrives, nothing is lost, no key is written twice with different content', async (t) => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    t.after(() => s3.start());
    const sink = s3Sink({ ...FAST, bucket, bufferPath, client: s3.client, commitSizeBytes: 400, closeTimeoutMs: 20_000 });
    const etags = new Map<string, Set<string | undefined>>();
    sink.on('upload', (e: UploadEvent) => etags.set(e.key, (etags.get(e.key) ?? new Set()).add(e.etag)));
    let uploadErrors = 0;
    sink.on('uploaderror', () => (uploadErrors += 1));
    const sent: string[] = [];
    const write = async (from: number, to: number): Promise<void> => {
      for (let i = from; i < to; i++) {
        const data = `outage-${String(i).padStart(4, '0')}`;
        sent.push(data);
        if (!sink.write(data)) await new Promise((resolve) => sink.once('drain', resolve));
        if (i % 20 === 0) await sleep(5);
      }
    };
    await write(0, 100);
    await until('a first upload', () => etags.size > 0);
    await s3.stop();
    await write(100, 300);
    await until('uploads failing during the outage', () => uploadErrors > 0);
    const pendingDuringOutage = (await filesLeft(bufferPath)).length;
    assert.ok(pendingDuringOutage > 1, `files wait on disk during the outage (${pendingDuringOutage})`);
    await s3.start();
    await write(300, 400);
    sink.end();
    await new Promise((resolve) => sink.on('finish', resolve));

    const objects = await s3.objects(bucket);
    assert.deepEqual(records(objects.map((o) => o.body)), sent, 'every record arrived exactly once, in order');
    for (const [key, tags] of etags) assert.equal(tags.size, 1, `${key} was written with one content`);
    assert.deepEqual(await filesLeft(bufferPath), []);
  });

  it('applies backpressure at maxBufferBytes while S3 is down instead of growing the disk or memory, then delivers all', async (t) => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    await s3.stop();
    t.after(() => s3.start());
    const sink = s3Sink({ ...FAST, bucket, bufferPath, client: s3.client, maxBufferBytes: 2000, commitSizeBytes: 500, highWaterMark: 16 });
    let quota = 0;
    sink.on('quota', () => (quota += 1));
    const total = 1000;
    let pulled = 0;
    let maxQueued = 0;
    const source = new Readable({
      objectMode: true,
      highWaterMark: 16,
      read() {
        maxQueued = Math.max(maxQueued, sink.writableLength);
        this.push(pulled < total ? `quota-record-${String(pulled++).padStart(5, '0')}` : null); // 18 bytes + '\n'
      },
    });
    const done = pipeline(source, sink);
    await sleep(1500);
    const held = pulled;
    let onDisk = 0;
    for (const f of await filesLeft(bufferPath)) onDisk += (await stat(join(bufferPath, f))).size;
    assert.ok(quota >= 1, 'the quota event fired');
    assert.ok(onDisk <= 2000 + 19, `the buffer stayed within maxBufferBytes, saw ${onDisk} bytes`);
    // 2000 bytes is ~105 records; plus the sink's and the source's buffers (16 each) and one batch in the collector.
    assert.ok(held < 105 + 16 + 16 + 256 + 10, `the source was held back, pulled ${held}`);
    assert.ok(maxQueued <= 16 + 1, `the sink queued at most its highWaterMark, saw ${maxQueued}`);
    await s3.start();
    await done;
    assert.equal(pulled, total);
    const got = records((await s3.objects(bucket)).map((o) => o.body));
    assert.equal(got.length, total);
    assert.deepEqual(got, Array.from({ length: total }, (_, i) => `quota-record-${String(i).padStart(5, '0')}`));
  });

  it('kill -9 at a random moment, five times: every acked record is in the bucket and no object holds a torn record', async () => {
    const script = fileURLToPath(new URL('../fixtures/s3-child.ts', import.meta.url));
    const run = (mode: string, bucket: string, bufferPath: string) =>
      spawn(process.execPath, ['--import', 'tsx', script, mode, s3.endpoint, bucket, bufferPath], { stdio: ['ignore', 'pipe', 'pipe'] });

    for (let round = 0; round < 5; round++) {
      const bucket = await s3.createBucket();
      const bufferPath = await s3.tempDir(`kill-${round}`);
      const acked = new Set<number>();
      const child = run('write', bucket, bufferPath);
      let out = '';
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const lines = out.split('\n');
        out = lines.pop()!;
        for (const line of lines) {
          const m = /^ack (\d+)$/.exec(line);
          if (m) acked.add(Number(m[1]));
        }
      });
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
      await until('the child to ack its first records', () => acked.size > 0 || child.exitCode !== null, 30_000);
      assert.equal(child.exitCode, null, `the writer is running: ${err}`);
      await sleep(200 + Math.floor(Math.random() * 1300));
      child.kill('SIGKILL');
      assert.equal(await exited, 'SIGKILL');
      assert.ok(acked.size > 0);

      const drain = run('drain', bucket, bufferPath);
      let drainErr = '';
      drain.stderr.on('data', (d: Buffer) => (drainErr += d.toString()));
      const code = await new Promise<number | null>((resolve) => drain.on('exit', (c) => resolve(c)));
      assert.equal(code, 0, `the next process uploaded everything: ${drainErr}`);

      const objects = await s3.objects(bucket);
      const seen = new Set<number>();
      for (const o of objects) {
        const text = o.body.toString();
        assert.ok(text.endsWith('\n'), `${o.key} ends on a record boundary`);
        for (const rec of text.split('\n').slice(0, -1)) {
          const n = Number(rec.split(':')[0]);
          assert.equal(rec, childRecord(n), `${o.key} holds a whole record, not ${JSON.stringify(rec.slice(0, 80))}`);
          seen.add(n);
        }
      }
      const missing = [...acked].filter((n) => !seen.has(n));
      assert.deepEqual(missing, [], `round ${round}: every acked record is in the bucket (${acked.size} acked, ${seen.size} stored)`);
      assert.deepEqual(await filesLeft(bufferPath), [], 'the buffer folder is empty');
    }
  });
});

// The shared conformance suite, with ackOn 'disk': an acked message is on the local disk, so
// readBack() first runs the documented recovery — a new sink on the same bufferPath, ended at once —
// and then reads the bucket (objects in key order, split into records).
sinkConformance({
  name: 's3',
  timeoutMs: 30_000,
  async setup() {
    const s3 = await startS3();
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const sinks: Writable[] = [];
    return {
      sink(options) {
        const sink = s3Sink({ ...FAST, bucket, bufferPath, client: s3.client, commitSizeBytes: 64 * 1024, ...(options?.signal ? { signal: options.signal } : {}) });
        sinks.push(sink);
        return sink;
      },
      async readBack() {
        for (const sink of sinks) if (!sink.closed) await new Promise((resolve) => sink.once('close', resolve));
        if ((await filesLeft(bufferPath)).length > 0) await pipeline(Readable.from([]), s3Sink({ ...FAST, bucket, bufferPath, client: s3.client }));
        return records((await s3.objects(bucket)).map((o) => o.body)).map((r) => Buffer.from(r));
      },
      async cleanup() {
        for (const sink of sinks) sink.destroy();
        await s3.cleanup();
      },
    };
  },
});


describe('s3Sink gauges', () => {
  it('reports files waiting, buffer bytes and the oldest waiting file\'s age while S3 is down', async (t) => {
    const { startS3 } = await import('../fixtures/s3.js');
    const { s3Sink } = await import('../../lib/s3/sink.js');
    const { Readable } = await import('node:stream');
    const { pipeline } = await import('node:stream/promises');
    const s3 = await startS3();
    t.after(() => s3.cleanup());
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir('gauges');
    await s3.stop();
    const sink = s3Sink({ bucket, client: s3.client, bufferPath, commitSizeBytes: 100, uploadIntervalMs: 60_000, closeTimeoutMs: 200, retry: { retries: 0 } });
    const idle = sink.gauges();
    assert.equal(idle.s3_buffer_files, 0);
    assert.equal(idle.s3_buffer_oldest_age_seconds, 0);
    await pipeline(Readable.from(Array.from({ length: 10 }, (_, i) => `record-${i}-${'x'.repeat(40)}`)), sink);
    const g = sink.gauges();
    assert.ok(g.s3_buffer_files! >= 1, JSON.stringify(g));
    assert.ok(g.s3_buffer_bytes! > 0, JSON.stringify(g));
    assert.ok(g.s3_buffer_oldest_age_seconds! >= 0 && g.s3_buffer_oldest_age_seconds! < 60, JSON.stringify(g));
  });
});

describe('s3Sink gauges against the buffer folder', () => {
  let s3: S3Fixture;
  before(async () => {
    s3 = await startS3();
  });
  after(async () => {
    await s3.cleanup();
  });

  /** What is really in the buffer folder: committed files waiting, and the bytes of every buffer file (the open one too). */
  async function onDisk(bufferPath: string): Promise<{ files: number; bytes: number }> {
    let files = 0;
    let bytes = 0;
    for (const dir of await readdir(bufferPath).catch(() => [] as string[])) {
      if (dir === '.lock') continue;
      for (const name of await readdir(join(bufferPath, dir)).catch(() => [] as string[])) {
        // Uploaded and deleted between readdir and stat: no longer there.
        const info = await stat(join(bufferPath, dir, name)).catch(() => undefined);
        if (!info) continue;
        bytes += info.size;
        if (dir !== '.active') files += 1;
      }
    }
    return { files, bytes };
  }

  it('s3_buffer_files and s3_buffer_bytes equal what is in bufferPath during a run: up during an outage, back down after uploads', async (t) => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir('true-gauges');
    t.after(() => s3.start());
    const sink = s3Sink({ ...FAST, bucket, bufferPath, client: s3.client, commitSizeBytes: 300, commitIntervalMs: 200 });
    t.after(() => sink.destroy());
    let uploads = 0;
    sink.on('upload', () => (uploads += 1));
    const write = async (label: string, n: number): Promise<void> => {
      for (let i = 0; i < n; i++) await new Promise((resolve) => sink.write(`${label}-${String(i).padStart(3, '0')}-${'x'.repeat(30)}`, resolve));
    };
    const gauges = (): { files: number; bytes: number } => {
      const g = sink.gauges();
      return { files: g.s3_buffer_files!, bytes: g.s3_buffer_bytes! };
    };
    // Quiescent moments only: nothing written, committed or uploaded while the folder is read.
    const settled = async (what: string, check: (disk: { files: number; bytes: number }) => boolean): Promise<{ files: number; bytes: number }> => {
      let disk = await onDisk(bufferPath);
      await until(what, async () => {
        disk = await onDisk(bufferPath);
        return check(disk) && JSON.stringify(gauges()) === JSON.stringify(disk);
      }).catch((error: Error) => {
        throw new Error(`${error.message}: on disk ${JSON.stringify(disk)}, gauges ${JSON.stringify(gauges())}`);
      });
      return disk;
    };

    // S3 up: everything goes, and the gauges go back to zero with the folder.
    await write('a', 40);
    await settled('batch a uploaded', (d) => d.files === 0 && d.bytes === 0);
    assert.ok(uploads >= 5, `uploads ${uploads}`);
    assert.deepEqual(gauges(), { files: 0, bytes: 0 });

    // S3 down: files pile up, and the gauges say exactly what is on disk (before, bytes counted batch a too).
    await s3.stop();
    await write('b', 40);
    // 40 records of 36 bytes and a newline.
    const down = await settled('batch b committed and waiting', (d) => d.files >= 4 && d.bytes === 40 * 37);
    assert.deepEqual(gauges(), down);
    assert.ok(sink.gauges().s3_buffer_oldest_age_seconds! >= 0);

    // S3 back: the waiting files go, and the gauges come down with them.
    const before = uploads;
    await s3.start();
    await sink.rescan();
    await settled('batch b uploaded', (d) => d.files === 0 && d.bytes === 0);
    assert.ok(uploads >= before + down.files, `uploads ${uploads - before} of ${down.files}`);
    assert.deepEqual(gauges(), { files: 0, bytes: 0 });
    sink.end();
    await new Promise((resolve) => sink.on('finish', resolve));
    assert.equal(records((await s3.objects(bucket)).map((o) => o.body)).length, 80);
  });
});
