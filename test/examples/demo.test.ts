/** `npm start` runs the demo to completion: ticker -> websocketSource -> jsonAppend -> s3Sink -> s3rver, all in-process. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';

it('the demo streams quotes into S3 and prints the uploaded keys and a sample record', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'manifold-demo-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const demo = join(import.meta.dirname, '..', '..', 'examples', 'demo', 'index.ts');
  const proc = spawn(process.execPath, ['--import', 'tsx', demo], {
    env: { ...process.env, DEMO_SECONDS: '5', DEMO_DIR: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
  proc.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  const code = await new Promise((r) => proc.once('exit', r));
  assert.equal(code, 0, stderr);
  const summary = /(\d+) messages, (\d+) acked, 0 nacked/.exec(stdout);
  assert.ok(summary, stdout);
  assert.ok(Number(summary[1]) > 50, 'quotes flowed for the whole run');
  assert.equal(summary[1], summary[2], 'every message was acked before the demo ended');
  const objects = Number(/uploaded objects \((\d+)\)/.exec(stdout)?.[1]);
  assert.ok(objects >= 1, stdout);
  const sample = JSON.parse(/sample record: (.*)$/m.exec(stdout)![1]!);
  assert.equal(sample.seq, 0);
  assert.equal(typeof sample.receivedAt, 'number');
  assert.ok(sample.receivedAt >= sample.ts);
});
