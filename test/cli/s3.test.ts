/**
 * s3:// on the command line: keys read by the s3Sink declaration (usage errors through main() with a
 * fake io, before anything is made), every key the scheme took before still taken, and a round trip
 * into s3rver as a child process, the sink building its own client from endpoint=.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseEndpoint } from '../../lib/cli/endpoints.js';
import { S3Sink } from '../../lib/s3/sink.js';
import { startS3 } from '../fixtures/s3.js';
import { usage } from '../fixtures/cli.js';

const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');

describe('s3: on the command line, before anything is made', () => {
  const bad: Array<[string, string, RegExp]> = [
    ['a misspelt key', 's3://b/p?comitSize=1MiB', /s3:\/\/b\/p\?comitSize=1MiB: unknown option "comitSize" \(did you mean "commitSize"\?\); known options are region, endpoint, tls, forcePathStyle, bufferPath, commitSize, /],
    ['a query key that is no option', 's3://b/p?contentType=text/plain', /unknown option "contentType"/],
    ['the bucket as a key', 's3://b/p?bucket=other', /unknown option "bucket"/],
    ['a bad size', 's3://b/p?commitSize=lots', /commitSize must be a size such as 512KiB, 1MiB or 1048576, got "lots"/],
    ['a part below S3\'s minimum', 's3://b/p?partSize=1MiB', /partSize must be a size such as 512KiB, 1MiB or 1048576 of at least 5242880 bytes, got "1MiB"/],
    ['a bad duration', 's3://b/p?commitInterval=soon', /commitInterval must be a duration such as 500ms, 30s, 5m or 12h, got "soon"/],
    ['a count out of range', 's3://b/p?uploadConcurrency=65', /uploadConcurrency must be a whole number from 1 to 64, got "65"/],
    ['a bad enum', 's3://b/p?compression=brotli', /compression must be one of none, gzip, zstd, got "brotli"/],
    ['an endpoint that is not http(s)', 's3://b/p?endpoint=ftp://x', /endpoint must be an http:\/\/ or https:\/\/ URL, got "ftp:\/\/x"/],
    ['a bad boolean', 's3://b/p?forcePathStyle=maybe', /forcePathStyle must be true or false, got "maybe"/],
    ['no bucket', 's3:///p', /give the bucket as s3:\/\/<bucket>\/<prefix>/],
  ];
  for (const [name, uri, message] of bad) {
    it(`exits 2: ${name}`, async () => {
      const run = await usage(['stdin:', uri]);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, message);
      assert.doesNotMatch(run.stderr, /required/);
      assert.equal(run.stdout, '');
    });
  }

  it('a wrongly typed pipeline-file value says what it got and what it wants', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'manifold-s3-cli-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const cases: Array<[string, RegExp]> = [
      ['commitSize: true', /commitSize must be a size such as 512KiB, 1MiB or 1048576, got true/],
      ['uploadConcurrency: "4"', /uploadConcurrency must be a whole number from 1 to 64, got "4"/],
      ['forcePathStyle: "yes"', /forcePathStyle must be true or false, got "yes"/],
      ['comitInterval: 5m', /unknown option "comitInterval" \(did you mean "commitInterval"\?\)/],
      ['prefix: logs', /unknown option "prefix"/],
    ];
    for (const [line, message] of cases) {
      const file = join(dir, 'p.yaml');
      writeFileSync(file, `from: "stdin:"\nto: { uri: "s3://b/p", ${line} }\n`);
      const run = await usage(['run', file]);
      assert.equal(run.code, 2, line);
      assert.match(run.stderr, message, line);
      assert.doesNotMatch(run.stderr, /required/, line);
    }
  });

  it('takes every key the scheme took before its declaration, with units', async (t) => {
    const bufferPath = await mkdtemp(join(tmpdir(), 'manifold-s3-cli-keys-'));
    t.after(() => rm(bufferPath, { recursive: true, force: true }));
    const query = new URLSearchParams({
      commitSize: '1MiB',
      commitInterval: '5m',
      uploadInterval: '30s',
      syncInterval: '100ms',
      maxBuffer: '1GiB',
      bufferPath,
      delimiter: '\n',
      compression: 'gzip',
      ackOn: 'upload',
      uploadConcurrency: '2',
      closeTimeout: '10s',
      requestTimeout: '5s',
      connectTimeout: '1s',
      region: 'eu-west-1',
      endpoint: 'http://127.0.0.1:1',
      forcePathStyle: 'true',
      // No start-up HeadBucket: with no credentials given, the SDK's provider chain would fail it (fatal) before the destroy below.
      verify: 'none',
    });
    const endpoint = parseEndpoint(`s3://b/some%20logs?${query}`, 'sink');
    const sink = (await endpoint.create()) as S3Sink;
    t.after(() => {
      sink.destroy();
    });
    assert.ok(sink instanceof S3Sink);
    assert.equal(sink.bufferPath, bufferPath);
    // The prefix from the URI's path (decoded, as a folder) and compression=gzip reach the keys.
    assert.equal(sink.keyFor('2026-01-02/000000.000000001-w'), 'some logs/2026-01-02/000000.000000001-w.gz');
    await new Promise((resolve) => sink.on('close', resolve).destroy());
  });
});

describe('s3: on the command line, against s3rver', () => {
  it('stdin: -> s3:// with endpoint=: the sink builds its own client (path style, region us-east-1); every line is in the bucket', async (t) => {
    const s3 = await startS3();
    t.after(() => s3.cleanup());
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir('cli-s3');
    const lines = Array.from({ length: 500 }, (_, i) => JSON.stringify({ i }));
    const uri = `s3://${bucket}/in/?endpoint=${encodeURIComponent(s3.endpoint)}&commitSize=4KiB&bufferPath=${encodeURIComponent(bufferPath)}&ackOn=upload&uploadInterval=200ms`;
    // Credentials from the environment, as the SDK's chain finds them; no region given: us-east-1 for an endpoint.
    const env: NodeJS.ProcessEnv = { ...process.env, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
    delete env.AWS_REGION;
    delete env.AWS_DEFAULT_REGION;
    const proc = spawn(process.execPath, ['--import', 'tsx', bin, 'stdin:', uri, '-q'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    t.after(() => proc.kill('SIGKILL'));
    let stderr = '';
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
    proc.stdin.end(`${lines.join('\n')}\n`);
    assert.equal(await exited, 0, stderr);
    const objects = await s3.objects(bucket);
    assert.ok(objects.length > 1, `several 4 KiB files, got ${objects.length}`);
    assert.ok(objects.every((o) => o.key.startsWith('in/')), objects.map((o) => o.key).join(', '));
    assert.deepEqual(objects.flatMap((o) => o.body.toString().split('\n').filter(Boolean)), lines);
  });

  it('s3:// as a source replays the objects as lines into stdout:, from a URI and from a pipeline file, and resumes after its checkpoint', async (t) => {
    const s3 = await startS3();
    t.after(() => s3.cleanup());
    const bucket = await s3.createBucket();
    const dir = await s3.tempDir('cli-s3-source');
    const { PutObjectCommand } = await import('@aws-sdk/client-s3');
    const { gzipSync } = await import('node:zlib');
    await s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'arch/2026-11-29/1.gz', Body: gzipSync('a\nb\n') }));
    await s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'arch/2026-11-29/2', Body: 'c\n' }));
    const env: NodeJS.ProcessEnv = { ...process.env, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
    const checkpoint = join(dir, 'cp.json');
    const run = async (args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> => {
      const proc = spawn(process.execPath, ['--import', 'tsx', bin, ...args, '-q'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      t.after(() => proc.kill('SIGKILL'));
      let stdout = '';
      let stderr = '';
      proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
      return { code, stdout, stderr };
    };
    const uri = `s3://${bucket}/arch/?endpoint=${encodeURIComponent(s3.endpoint)}&checkpoint=${encodeURIComponent(checkpoint)}`;
    const first = await run([uri, 'stdout:']);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout, 'a\nb\nc\n');
    // Nothing new: the checkpoint says all was read.
    const again = await run([uri, 'stdout:']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, '');
    await s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'arch/2026-11-29/3', Body: 'd\n' }));
    const file = join(dir, 'replay.yaml');
    writeFileSync(file, `from: { uri: "s3://${bucket}/arch/", endpoint: "${s3.endpoint}", checkpoint: "${checkpoint}" }\nto: "stdout:"\n`);
    const fromFile = await run(['run', file]);
    assert.equal(fromFile.code, 0, fromFile.stderr);
    assert.equal(fromFile.stdout, 'd\n');
  });
});
