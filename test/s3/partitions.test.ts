/**
 * keyTemplate: partition paths from the event time and message fields, one rotating buffer file per
 * partition (maxOpenPartitions), crash-safe; against s3rver (test/fixtures/s3.ts).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { lstat, mkdir, readdir, readFile, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage } from '../../lib/core/message.js';
import { s3Collector, type CommittedFile, type RotateEvent } from '../../lib/s3/collector.js';
import { KeyTemplate, sanitizeValue } from '../../lib/s3/key-template.js';
import { s3Sink, type S3SinkOptions } from '../../lib/s3/sink.js';
import { expectedPartition, partitionRecord, TEMPLATE } from '../fixtures/s3-partitions-child.js';
import { startS3, type S3Fixture } from '../fixtures/s3.js';
import { usage } from '../fixtures/cli.js';

const FAST = {
  commitIntervalMs: 150,
  syncIntervalMs: 10,
  uploadIntervalMs: 100,
  retry: { retries: 2, minTimeoutMs: 20, maxTimeoutMs: 60 },
} satisfies Partial<S3SinkOptions>;

let s3: S3Fixture;
before(async () => {
  s3 = await startS3();
});
after(async () => {
  await s3.cleanup();
});

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Every regular file under `folder`, relative to it (not following links). */
async function filesUnder(folder: string, relative = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(folder, relative), { withFileTypes: true }).catch(() => [])) {
    const path = relative === '' ? entry.name : `${relative}/${entry.name}`;
    if (entry.isDirectory()) out.push(...(await filesUnder(folder, path)));
    else if (entry.name !== '.lock') out.push(path);
  }
  return out;
}

/**
 * Writes `to <key>` with that key; resolved at its ack (written and fsynced), since the write callback only says the
 * collector took the record.
 */
function writeAcked(collector: Writable, key: string): Promise<void> {
  return new Promise<void>((resolve, reject) => collector.write(createMessage({ data: `to ${key}`, key, onAck: resolve, onNack: reject }), (e) => e && reject(e)));
}

const render = (template: string, message: Parameters<KeyTemplate['render']>[0], timeZone = 'UTC', arrival = Date.UTC(2026, 0, 2, 3, 4, 5)): string =>
  new KeyTemplate('test', template, timeZone).render(message, arrival);
const msg = (data: string, extra: { key?: string; headers?: Record<string, string>; timestamp?: number } = {}) => ({ data: Buffer.from(data), ...extra });

describe('keyTemplate validation', () => {
  const bad: Array<[string, RegExp]> = [
    ['{yyyy}/{nope}', /unknown token \{nope\}/],
    ['{yyyy', /"\{" without its "\}"/],
    ['yyyy}', /"\}" without its "\{"/],
    ['{{yyyy}}', /"\{" inside a token/],
    ['a//b', /empty segment/],
    ['/a', /must not start or end with "\/"/],
    ['a/', /must not start or end with "\/"/],
    ['', /is empty/],
    ['../{yyyy}', /segment starting with "\."/],
    ['./{yyyy}', /segment starting with "\."/],
    ['.hidden/{yyyy}', /segment starting with "\."/],
    ['a b/{yyyy}', /"a b" outside a token/],
    ['a\\b/{yyyy}', /outside a token/],
    ['x\u0000/{yyyy}', /outside a token/],
    ['{json.}', /JSON field path/],
    ['{json.a..b}', /JSON field path/],
    ['{header.}', /header name/],
    ['{header.a/b}', /"\/" inside a token/],
    ['{header.a.b}', /header name/],
    [Array.from({ length: 17 }, () => 'a').join('/'), /17 segments; at most 16/],
  ];
  for (const [template, pattern] of bad) {
    it(`refuses ${JSON.stringify(template)} with INVALID_OPTION naming keyTemplate (s3Sink and s3Collector)`, () => {
      for (const make of [() => s3Sink({ bucket: 'b', bufferPath: '/tmp/manifold-never', keyTemplate: template }), () => s3Collector({ bufferPath: '/tmp/manifold-never', keyTemplate: template })]) {
        assert.throws(make, (error: ManifoldError) => {
          assert.equal(error.code, ErrorCodes.INVALID_OPTION);
          assert.match(error.message, /options\.keyTemplate/);
          assert.match(error.message, pattern);
          assert.equal((error as ManifoldError & { option?: string }).option, 'keyTemplate');
          return true;
        });
      }
    });
  }

  it('refuses an unknown timeZone naming it, and a template with a long prefix whose keys could pass 1,024 bytes', () => {
    assert.throws(
      () => s3Sink({ bucket: 'b', bufferPath: '/tmp/manifold-never', keyTemplate: '{HH}', timeZone: 'Mars/Olympus' }),
      (error: ManifoldError) => error.code === ErrorCodes.INVALID_OPTION && /options\.timeZone/.test(error.message) && /Mars\/Olympus/.test(error.message),
    );
    const prefix = 'p'.repeat(800);
    assert.throws(
      () => s3Sink({ bucket: 'b', bufferPath: '/tmp/manifold-never', prefix, keyTemplate: '{json.a}/{json.b}/{json.c}/{json.d}' }),
      (error: ManifoldError) => error.code === ErrorCodes.INVALID_OPTION && /options\.keyTemplate .* 1,024/.test(error.message),
    );
    assert.doesNotThrow(() => s3Sink({ bucket: 'b', bufferPath: '/tmp/manifold-never', prefix, keyTemplate: 'dt={yyyy}-{MM}-{dd}' }).destroy());
  });

  it('takes the documented forms', () => {
    for (const template of ['{yyyy}/{MM}/{dd}/{HH}', 'dt={yyyy}-{MM}-{dd}/hour={HH}', 'region={json.customer.region}/{key}', 'x-{header.tenant_id}.v1/{mm}', 'archive']) {
      assert.doesNotThrow(() => new KeyTemplate('test', template, 'UTC'), template);
    }
  });
});

describe('keyTemplate rendering', () => {
  it('time tokens from message.timestamp, else the arrival time, in UTC', () => {
    const ts = Date.UTC(2025, 6, 9, 8, 7, 6);
    assert.equal(render('dt={yyyy}-{MM}-{dd}/hour={HH}/{mm}', msg('x', { timestamp: ts })), 'dt=2025-07-09/hour=08/07');
    assert.equal(render('{yyyy}/{MM}/{dd}/{HH}/{mm}', msg('x')), '2026/01/02/03/04');
    // A timestamp that is no time (NaN, negative, past year 9999) is not used.
    assert.equal(render('{yyyy}', msg('x', { timestamp: Number.NaN })), '2026');
    assert.equal(render('{yyyy}', msg('x', { timestamp: -5 })), '2026');
  });

  it('timeZone: the parts in a named IANA zone, half-hour offsets and summer time included', () => {
    const ts = Date.UTC(2026, 0, 31, 20, 45); // 02:15 on Feb 1st in Kolkata (+05:30)
    assert.equal(render('{yyyy}-{MM}-{dd}/{HH}{mm}', msg('x', { timestamp: ts }), 'Asia/Kolkata'), '2026-02-01/0215');
    assert.equal(render('{dd}/{HH}', msg('x', { timestamp: Date.UTC(2026, 6, 1, 3, 0) }), 'America/New_York'), '30/23'); // EDT, -4
    assert.equal(render('{dd}/{HH}', msg('x', { timestamp: Date.UTC(2026, 0, 1, 3, 0) }), 'America/New_York'), '31/22'); // EST, -5
    assert.equal(render('{HH}', msg('x', { timestamp: Date.UTC(2026, 0, 1, 0, 0) }), 'Europe/Paris'), '01');
    // Midnight is 00, not 24.
    assert.equal(render('{HH}', msg('x', { timestamp: Date.UTC(2026, 0, 1, 23, 0) }), 'Europe/Paris'), '00');
  });

  it('fields: key, header, nested JSON; a missing field or a payload that is not JSON gives _unknown, an empty value _empty', () => {
    const t = 'k={key}/h={header.tenant}/r={json.customer.region}';
    assert.equal(render(t, msg('{"customer":{"region":"eu-west-1"}}', { key: 'order-1', headers: { tenant: 'acme' } })), 'k=order-1/h=acme/r=eu-west-1');
    assert.equal(render(t, msg('not json')), 'k=_unknown/h=_unknown/r=_unknown');
    assert.equal(render(t, msg('{"customer":{}}', { key: '', headers: { tenant: '' } })), 'k=_empty/h=_unknown/r=_unknown'.replace('h=_unknown', 'h=_empty'));
    assert.equal(render('{json.a}/{json.b}/{json.c}/{json.d}/{json.e}', msg('{"a":12.5,"b":true,"c":null,"d":{"x":1},"e":[1]}')), '12.5/true/_unknown/_unknown/_unknown');
    // A header of the prototype is no header.
    assert.equal(render('{header.constructor}', msg('x', { headers: {} })), '_unknown');
    assert.equal(render('{json.constructor}', msg('{}')), '_unknown');
  });

  it('sanitizes hostile values: no "/", no "." or ".." segment, no control characters, at most 64 characters', () => {
    const hostile: Array<[string, string]> = [
      ['../', '_._'],
      ['..', '_.'],
      ['.', '_'],
      ['/', '_'],
      ['a/../../b', 'a_.._.._b'],
      ['', '_empty'],
      ['\u0000\n\r\u001b[31m', '_____31m'],
      ['é中😀', '___'],
      ['C:\\x', 'C__x'],
      ['%2e%2e%2f', '_2e_2e_2f'],
      ['x'.repeat(500), 'x'.repeat(64)],
    ];
    for (const [value, expected] of hostile) {
      assert.equal(sanitizeValue(value), expected, JSON.stringify(value));
      const path = render('a/{json.v}/{key}', msg(JSON.stringify({ v: value }), { key: value }));
      const segments = path.split('/');
      assert.equal(segments.length, 3, path);
      for (const segment of segments) {
        assert.match(segment, /^[A-Za-z0-9_=-][A-Za-z0-9._=-]*$/, `${JSON.stringify(value)} -> ${path}`);
        assert.ok(segment.length <= 200);
      }
    }
  });
});

describe('s3Sink with keyTemplate against s3rver', () => {
  it('puts each record in the partition of its timestamp and fields: keys <prefix><partition>/<HHmmss.nnnnnnnnn-writer>.gz', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const sink = s3Sink({ ...FAST, client: s3.client, bucket, prefix: 'orders', bufferPath, compression: 'gzip', writerId: 'w1', keyTemplate: 'dt={yyyy}-{MM}-{dd}/hour={HH}/region={json.region}' });
    const inputs = [];
    for (let i = 0; i < 300; i++) {
      const region = i % 7 === 6 ? undefined : `eu-${i % 3}`;
      const data = i % 50 === 49 ? `not json ${i}` : JSON.stringify(region === undefined ? { i } : { i, region });
      inputs.push(createMessage({ data, timestamp: Date.UTC(2026, 4, 1 + (i % 2), i % 4, 0, 0) }));
    }
    await pipeline(Readable.from(inputs), sink);
    const objects = await s3.objects(bucket, { gunzip: true });
    let count = 0;
    for (const object of objects) {
      const m = /^orders\/(dt=\d{4}-\d{2}-\d{2}\/hour=\d{2}\/region=[^/]+)\/\d{6}\.\d{9}-w1\.gz$/.exec(object.key);
      assert.ok(m, object.key);
      for (const line of object.body.toString().split('\n').slice(0, -1)) {
        const i = Number(/(\d+)/.exec(line)![1]);
        const region = line.startsWith('not json') ? '_unknown' : ((JSON.parse(line) as { region?: string }).region ?? '_unknown');
        assert.equal(m[1], `dt=2026-05-0${1 + (i % 2)}/hour=0${i % 4}/region=${region}`, `record ${i} in ${object.key}`);
        count += 1;
      }
    }
    assert.equal(count, 300);
    assert.deepEqual(await filesUnder(bufferPath), [], 'nothing left on disk');
  });

  it('maxOpenPartitions: one partition more commits the least recently written one', async () => {
    const bufferPath = await s3.tempDir();
    const collector = s3Collector({ bufferPath, keyTemplate: '{key}', maxOpenPartitions: 2, commitIntervalMs: 60_000, syncIntervalMs: 5, writerId: 'cap' });
    const rotations: RotateEvent[] = [];
    const files: CommittedFile[] = [];
    collector.on('rotate', (e: RotateEvent) => rotations.push(e));
    collector.on('data', (f: CommittedFile) => files.push(f));
    const write = (key: string) => writeAcked(collector, key);
    await write('a');
    await write('b');
    await write('a'); // a is now the most recently written
    assert.equal(rotations.length, 0);
    await write('c'); // a third partition: b, least recently written, is committed
    assert.equal(rotations.length, 1);
    assert.equal(rotations[0]?.reason, 'partitions');
    assert.match(rotations[0]!.path, /\/\.parts\/b\/\.active-cap$/);
    await until('the committed file of b', () => files.length === 1);
    assert.match(files[0]!.relativePath, /^\.parts\/b\/\d{6}\.\d{9}-cap$/);
    assert.equal(await readFile(files[0]!.path, 'utf8'), 'to b\n');
    await write('d'); // then a
    assert.match(rotations[1]!.path, /\/\.parts\/a\/\.active-cap$/);
    collector.end();
    await new Promise((resolve) => collector.on('finish', resolve));
    const committed = files.map((f) => f.relativePath.split('/')[1]).sort();
    assert.deepEqual(committed, ['a', 'b', 'c', 'd']);
    assert.equal(await readFile(files.find((f) => f.relativePath.startsWith('.parts/a/'))!.path, 'utf8'), 'to a\nto a\n');
  });

  it('maxOpenPartitions within one batch: the partition written last in the batch stays open', async () => {
    const bufferPath = await s3.tempDir();
    const collector = s3Collector({ bufferPath, keyTemplate: '{key}', maxOpenPartitions: 2, commitIntervalMs: 60_000, syncIntervalMs: 5, writerId: 'lru' });
    const rotations: RotateEvent[] = [];
    collector.on('rotate', (e: RotateEvent) => rotations.push(e));
    collector.resume();
    const acked = (key: string) => writeAcked(collector, key);
    collector.cork();
    const batch = [acked('a'), acked('b'), acked('a')]; // one batch: b's last record is older than a's
    collector.uncork();
    await Promise.all(batch);
    assert.equal(rotations.length, 0);
    await acked('c');
    assert.equal(rotations.length, 1);
    assert.match(rotations[0]!.path, /\/\.parts\/b\/\.active-lru$/);
    collector.end();
    await new Promise((resolve) => collector.on('finish', resolve));
  });

  it('each partition rotates by size and by time on its own', async () => {
    const bufferPath = await s3.tempDir();
    const collector = s3Collector({ bufferPath, keyTemplate: 'p={key}', commitSizeBytes: 26, commitIntervalMs: 200, syncIntervalMs: 5, writerId: 'rot' });
    const rotations: RotateEvent[] = [];
    collector.on('rotate', (e: RotateEvent) => rotations.push(e));
    collector.resume();
    for (let i = 0; i < 6; i++) collector.write(createMessage({ data: `big-record-${i}`, key: 'big' })); // 13 bytes each: two per file, committed by size
    collector.write(createMessage({ data: 'small', key: 'small' }));
    await until('time commit of small', () => rotations.some((r) => r.reason === 'time' && r.path.includes('/p=small/')), 3000);
    assert.equal(rotations.filter((r) => r.reason === 'size' && r.path.includes('/p=big/')).length, 3);
    collector.end();
    await new Promise((resolve) => collector.on('finish', resolve));
  });

  it('after a crash, the open files of every partition are recovered into their partitions and uploaded', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const first = s3Sink({ ...FAST, client: s3.client, bucket, bufferPath, commitIntervalMs: 60_000, keyTemplate: 'r={json.r}', writerId: 'dead' });
    let acked = 0;
    for (let i = 0; i < 30; i++) first.write(createMessage({ data: JSON.stringify({ r: i % 3, i }), onAck: () => (acked += 1) }));
    await until('30 acks on disk', () => acked === 30);
    // A torn record at the end of one of them, as a kill -9 mid-write leaves it.
    const active = join(bufferPath, '.parts', 'r=1', '.active-dead');
    assert.ok((await lstat(active)).isFile());
    first.destroy();
    await new Promise((resolve) => first.on('close', resolve));
    await writeFile(active, `${await readFile(active, 'utf8')}{"r":1,"i":9`);
    const second = s3Sink({ ...FAST, client: s3.client, bucket, bufferPath, keyTemplate: 'r={json.r}', writerId: 'next' });
    await pipeline(Readable.from([]), second);
    const objects = await s3.objects(bucket);
    assert.deepEqual(objects.map((o) => o.key.split('/')[0]).sort(), ['r=0', 'r=1', 'r=2']);
    for (const object of objects) {
      const r = object.key.split('/')[0]!.slice(2);
      const lines = object.body.toString().split('\n').slice(0, -1);
      assert.equal(lines.length, 10, object.key);
      for (const line of lines) assert.equal(String((JSON.parse(line) as { r: number }).r), r);
      assert.match(object.key, /^r=\d\/\d{6}\.\d{9}-next$/);
    }
    assert.deepEqual(await filesUnder(bufferPath), []);
  });

  it('never follows a link under .parts, and leaves what it did not write alone (reported once)', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const outside = await s3.tempDir('outside');
    await writeFile(join(outside, '000000.000000001-x'), 'secret\n');
    await mkdir(join(bufferPath, '.parts', 'ok'), { recursive: true, mode: 0o700 });
    await symlink(outside, join(bufferPath, '.parts', 'linked'));
    await symlink(join(outside, '000000.000000001-x'), join(bufferPath, '.parts', 'ok', '000000.000000002-x'));
    await writeFile(join(bufferPath, '.parts', 'ok', 'planted.txt'), 'planted\n');
    await mkdir(join(bufferPath, '.parts', '..dots'), { mode: 0o700 });
    await writeFile(join(bufferPath, '.parts', 'ok', '000000.000000003-x'), 'left by a run\n');
    const warnings: ManifoldError[] = [];
    const sink = s3Sink({ ...FAST, client: s3.client, bucket, bufferPath, keyTemplate: '{key}' });
    sink.on('warning', (w: ManifoldError) => warnings.push(w));
    await pipeline(Readable.from([]), sink);
    // A record for the partition whose folder is a link: the stream fails (IO), nothing is written through it.
    const writer = s3Sink({ ...FAST, client: s3.client, bucket, bufferPath, keyTemplate: '{key}' });
    const failed = await pipeline(Readable.from([createMessage({ data: 'linked', key: 'linked' })]), writer).then(
      () => undefined,
      (error: unknown) => error as ManifoldError,
    );
    assert.equal(failed?.code, ErrorCodes.IO, String(failed));
    assert.match(failed.message, /symbolic link/);
    const keys = (await s3.objects(bucket)).map((o) => o.key);
    assert.ok(keys.includes('ok/000000.000000003-x'), keys.join());
    assert.ok(!keys.some((k) => k.includes('000000.000000001-x') || k.includes('000000.000000002-x') || k.includes('planted')), keys.join());
    assert.equal(await readFile(join(outside, '000000.000000001-x'), 'utf8'), 'secret\n', 'the file outside is untouched');
    assert.deepEqual(await readdir(outside), ['000000.000000001-x'], 'nothing was written through the link');
    const reported = warnings.map((w) => String((w as ManifoldError & { path?: string }).path));
    for (const name of ['linked', 'ok/000000.000000002-x', 'ok/planted.txt', '..dots']) {
      assert.equal(reported.filter((p) => p === join(bufferPath, '.parts', name)).length, 1, `${name} reported once: ${reported.join(', ')}`);
    }
  });

  it('a .parts that is a link is neither walked nor written through', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const outside = await s3.tempDir('outside-parts');
    await mkdir(join(outside, 'p'), { mode: 0o700 });
    await writeFile(join(outside, 'p', '000000.000000001-x'), 'secret\n');
    await writeFile(join(outside, 'p', '.active-x'), 'secret-active\n');
    await symlink(outside, join(bufferPath, '.parts'));
    const sink = s3Sink({ ...FAST, client: s3.client, bucket, bufferPath, keyTemplate: '{key}' });
    const warnings: ManifoldError[] = [];
    sink.on('warning', (w: ManifoldError) => warnings.push(w));
    const failed = await pipeline(Readable.from([createMessage({ data: 'x', key: 'p' })]), sink).then(
      () => undefined,
      (error: unknown) => error as ManifoldError,
    );
    assert.equal(failed?.code, ErrorCodes.IO, String(failed));
    assert.match(failed.message, /\.parts is a symbolic link/);
    assert.deepEqual(await s3.objects(bucket), []);
    assert.deepEqual((await readdir(join(outside, 'p'))).sort(), ['.active-x', '000000.000000001-x']);
    assert.equal(await readFile(join(outside, 'p', '.active-x'), 'utf8'), 'secret-active\n', 'never recovered (truncated) through the link');
    assert.ok(warnings.some((w) => (w as ManifoldError & { path?: string }).path === join(bufferPath, '.parts')), warnings.map(String).join('; '));
  });

  it("ackOn 'upload': each record is acked once the object of its partition is in S3", async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const sink = s3Sink({ ...FAST, client: s3.client, bucket, bufferPath, ackOn: 'upload', keyTemplate: 'k={key}' });
    const uploaded = new Set<string>();
    sink.on('upload', (e: { key: string }) => uploaded.add(e.key));
    const ackedWhen: Array<{ key: string; seen: string[] }> = [];
    const inputs = Array.from({ length: 40 }, (_, i) =>
      createMessage({ data: `m${i}`, key: `p${i % 4}`, onAck: () => ackedWhen.push({ key: `p${i % 4}`, seen: [...uploaded] }) }),
    );
    await pipeline(Readable.from(inputs), sink);
    assert.equal(ackedWhen.length, 40);
    for (const { key, seen } of ackedWhen) assert.ok(seen.some((k) => k.startsWith(`k=${key}/`)), `acked after an object of k=${key} was uploaded`);
  });

  it('maxBufferBytes counts every partition: with S3 down writes are held at the quota (quota event), then all are delivered', async (t) => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    await s3.stop();
    t.after(() => s3.start());
    const sink = s3Sink({ ...FAST, client: s3.client, bucket, bufferPath, verify: 'none', maxBufferBytes: 4000, keyTemplate: 'k={key}', closeTimeoutMs: 30_000 });
    let quota = 0;
    sink.on('quota', () => (quota += 1));
    let pulled = 0;
    const total = 600;
    const source = Readable.from(
      (function* () {
        for (let i = 0; i < total; i++) {
          pulled += 1;
          yield createMessage({ data: `quota-${String(i).padStart(5, '0')}`, key: `p${i % 5}` });
        }
      })(),
    );
    const done = pipeline(source, sink);
    await until('the quota event', () => quota > 0, 10_000);
    await sleep(300);
    const onDisk = (await filesUnder(bufferPath)).length;
    assert.ok(pulled < total, `the source was held, pulled ${pulled}`);
    assert.ok(onDisk > 0);
    await s3.start();
    await done;
    const lines = (await s3.objects(bucket)).flatMap((o) => {
      const k = o.key.split('/')[0]!;
      return o.body
        .toString()
        .split('\n')
        .slice(0, -1)
        .map((line) => {
          assert.equal(k, `k=p${Number(line.slice(6)) % 5}`, `${line} in ${o.key}`);
          return line;
        });
    });
    assert.deepEqual(lines.sort(), Array.from({ length: total }, (_, i) => `quota-${String(i).padStart(5, '0')}`));
  });

  it('gauges count partition files while S3 is down, with their age; an empty partition folder is removed once old, a recent one stays', async (t) => {
    const own = await startS3();
    t.after(() => own.cleanup());
    const bucket = await own.createBucket();
    const bufferPath = await own.tempDir('parts-gauges');
    // Empty partition folders left by an earlier run: one untouched for 20 minutes, one just made.
    const old = join(bufferPath, '.parts', 'region=gone');
    const fresh = join(bufferPath, '.parts', 'region=fresh');
    await mkdir(old, { recursive: true, mode: 0o700 });
    await mkdir(fresh, { recursive: true, mode: 0o700 });
    const past = new Date(Date.now() - 20 * 60_000);
    await utimes(old, past, past);
    await own.stop();
    const sink = s3Sink({
      ...FAST,
      client: own.client,
      bucket,
      bufferPath,
      verify: 'none',
      keyTemplate: 'region={key}',
      commitSizeBytes: 10,
      uploadIntervalMs: 200,
      retry: { retries: 0 },
    });
    const acked: string[] = [];
    for (const region of ['eu', 'us', 'ap']) sink.write(createMessage({ data: `record of ${region}`, key: region, onAck: () => acked.push(region) }));
    await until('three acks (on disk)', () => acked.length === 3);
    await until('the empty folder untouched for 20 minutes is removed', async () => !(await lstat(old).then(() => true, () => false)));
    assert.ok((await lstat(fresh)).isDirectory(), 'a recently made empty folder stays');
    await until('three committed partition files waiting', () => sink.gauges().s3_buffer_files === 3);
    await sleep(1100);
    const waiting = sink.gauges();
    assert.ok(waiting.s3_buffer_bytes! >= 3 * 'record of eu\n'.length, JSON.stringify(waiting));
    assert.ok(waiting.s3_buffer_oldest_age_seconds! >= 1 && waiting.s3_buffer_oldest_age_seconds! < 60, JSON.stringify(waiting));
    await own.start();
    await sink.rescan();
    await until('every file uploaded', () => sink.gauges().s3_buffer_files === 0);
    assert.deepEqual(sink.gauges(), { s3_buffer_files: 0, s3_buffer_bytes: 0, s3_buffer_oldest_age_seconds: 0 });
    sink.end();
    await new Promise((resolve) => sink.once('finish', resolve));
    const keys = (await own.objects(bucket)).map((o) => o.key.split('/')[0]).sort();
    assert.deepEqual(keys, ['region=ap', 'region=eu', 'region=us']);
  });

  it('without keyTemplate nothing changes: no .parts folder, keys <prefix>YYYY-MM-DD/HHmmss.nnnnnnnnn-writer', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    await pipeline(Readable.from([createMessage({ data: 'plain', key: 'k', timestamp: 0 })]), s3Sink({ ...FAST, client: s3.client, bucket, bufferPath, writerId: 'plain' }));
    const [object] = await s3.objects(bucket);
    assert.match(object!.key, /^\d{4}-\d{2}-\d{2}\/\d{6}\.\d{9}-plain$/);
    assert.deepEqual((await readdir(bufferPath)).filter((n) => n === '.parts'), []);
  });
});

describe('keyTemplate on the command line', () => {
  const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');

  it('exits 2 for a bad keyTemplate or timeZone in the URI, naming it, before anything connects', async () => {
    for (const [query, pattern] of [
      [`keyTemplate=${encodeURIComponent('{yyyy}/{nope}')}`, /keyTemplate .*unknown token \{nope\}/],
      [`keyTemplate=${encodeURIComponent('../{yyyy}')}`, /keyTemplate .*segment starting with "\."/],
      ['keyTemplate=%7BHH%7D&timeZone=Nowhere%2FLand', /timeZone must be an IANA time zone name .*Nowhere\/Land/],
      ['keyTemplate=%7BHH%7D&maxOpenPartitions=0', /maxOpenPartitions/],
    ] as const) {
      const run = await usage(['stdin:', `s3://b/p?${query}`]);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, pattern);
    }
  });

  it('stdin: -> s3://...?keyTemplate=...&timeZone=...: each line in its partition', async (t) => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir('cli-parts');
    const lines = Array.from({ length: 60 }, (_, i) => JSON.stringify({ i, region: `r${i % 3}` }));
    const template = encodeURIComponent('region={json.region}/{yyyy}');
    const uri = `s3://${bucket}/in/?endpoint=${encodeURIComponent(s3.endpoint)}&bufferPath=${encodeURIComponent(bufferPath)}&keyTemplate=${template}&timeZone=Europe%2FParis&uploadInterval=200ms`;
    const env: NodeJS.ProcessEnv = { ...process.env, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
    const proc = spawn(process.execPath, ['--import', 'tsx', bin, 'stdin:', uri, '-q'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    t.after(() => proc.kill('SIGKILL'));
    let stderr = '';
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
    proc.stdin.end(`${lines.join('\n')}\n`);
    assert.equal(await exited, 0, stderr);
    const objects = await s3.objects(bucket);
    assert.equal(objects.length, 3, objects.map((o) => o.key).join());
    const year = new Intl.DateTimeFormat('en-US', { timeZone: 'Europe/Paris', year: 'numeric' }).format(new Date());
    for (const object of objects) {
      const m = /^in\/region=(r\d)\/(\d{4})\/\d{6}\.\d{9}-\d+-[0-9a-f]{8}$/.exec(object.key);
      assert.ok(m, object.key);
      assert.equal(m[2], year);
      for (const line of object.body.toString().split('\n').filter(Boolean)) assert.equal((JSON.parse(line) as { region: string }).region, m[1]);
    }
  });
});

describe('s3Sink with keyTemplate: kill -9', () => {
  it('kill -9 at a random moment, five times, 20 partitions (Hive style): every acked record is in the bucket, whole, in the partition its timestamp and region name', async () => {
    const script = fileURLToPath(new URL('../fixtures/s3-partitions-child.ts', import.meta.url));
    const run = (mode: string, bucket: string, bufferPath: string) =>
      spawn(process.execPath, ['--import', 'tsx', script, mode, s3.endpoint, bucket, bufferPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    assert.equal(TEMPLATE, 'dt={yyyy}-{MM}-{dd}/hour={HH}/region={json.region}');
    let leftOpen = 0;
    for (let round = 0; round < 5; round++) {
      const bucket = await s3.createBucket();
      const bufferPath = await s3.tempDir(`pkill-${round}`);
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
      await sleep(500 + Math.floor(Math.random() * 1500));
      child.kill('SIGKILL');
      assert.equal(await exited, 'SIGKILL');
      // The open files the kill left in their partition folders, for the next process to recover.
      leftOpen += (await filesUnder(join(bufferPath, '.parts'))).filter((f) => /(^|\/)\.active-/.test(f)).length;

      const drain = run('drain', bucket, bufferPath);
      let drainErr = '';
      drain.stderr.on('data', (d: Buffer) => (drainErr += d.toString()));
      const code = await new Promise<number | null>((resolve) => drain.on('exit', (c) => resolve(c)));
      assert.equal(code, 0, `the next process uploaded everything: ${drainErr}`);

      const objects = await s3.objects(bucket);
      const seen = new Set<number>();
      const partitions = new Set<string>();
      for (const o of objects) {
        const m = /^(dt=\d{4}-\d{2}-\d{2}\/hour=\d{2}\/region=r\d)\/\d{6}\.\d{9}-\d+-[0-9a-f]{8}$/.exec(o.key);
        assert.ok(m, `a key of the template: ${o.key}`);
        partitions.add(m[1]!);
        const text = o.body.toString();
        assert.ok(text.endsWith('\n'), `${o.key} ends on a record boundary`);
        for (const rec of text.split('\n').slice(0, -1)) {
          const n = Number(/^\{"n":(\d+),/.exec(rec)?.[1]);
          assert.equal(rec, partitionRecord(n), `${o.key} holds a whole record, not ${JSON.stringify(rec.slice(0, 80))}`);
          assert.equal(m[1], expectedPartition(n), `record ${n} is in its partition`);
          seen.add(n);
        }
      }
      const missing = [...acked].filter((n) => !seen.has(n));
      assert.deepEqual(missing, [], `round ${round}: every acked record is in the bucket (${acked.size} acked, ${seen.size} stored)`);
      assert.equal(partitions.size, 20, [...partitions].join(' '));
      assert.deepEqual(
        (await filesUnder(bufferPath)).filter((f) => !f.startsWith('.active')),
        [],
        'no file left in the buffer folder',
      );
    }
    assert.ok(leftOpen > 0, 'the kills left open partition files to recover');
  });
});
