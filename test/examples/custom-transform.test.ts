/** examples/custom-transform runs as it is: an async-generator stage between stdin and stdout. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { it } from 'node:test';

it('masks card numbers, drops heartbeats and acks everything', async () => {
  const script = join(import.meta.dirname, '..', '..', 'examples', 'custom-transform', 'index.ts');
  const proc = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
  proc.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  proc.stdin.end('{"card":"4111111111111111","n":1}\n{"type":"heartbeat"}\n{"card":"5500000000000004","n":2}\n');
  assert.equal(await new Promise((r) => proc.once('exit', r)), 0, stderr);
  assert.deepEqual(stdout.trim().split('\n').map((l) => JSON.parse(l)), [
    { card: '4111********1111', n: 1 },
    { card: '5500********0004', n: 2 },
  ]);
  assert.equal(stderr.trim(), '3 in, 3 acked');
});
