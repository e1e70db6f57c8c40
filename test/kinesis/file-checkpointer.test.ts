/** fileCheckpointer: atomic replacement, serialized stores, clear errors for bad files. */
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { fileCheckpointer } from '../../lib/kinesis/file-checkpointer.js';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'manifold-checkpoint-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe('fileCheckpointer', () => {
  it('starts empty, stores, merges and survives a new instance over the same file', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'cp.json');
    const cp = fileCheckpointer(path);
    assert.equal(cp.path, path);
    assert.deepEqual(await cp.load('orders'), {});
    await cp.store('orders', { a: { sequenceNumber: '1' } });
    await cp.store('orders', { b: { sequenceNumber: '2', subSequenceNumber: 3 } });
    await cp.store('users', { a: { sequenceNumber: '9' } });
    const again = fileCheckpointer(path);
    assert.deepEqual(await again.load('orders'), { a: { sequenceNumber: '1' }, b: { sequenceNumber: '2', subSequenceNumber: 3 } });
    assert.deepEqual(await again.load('users'), { a: { sequenceNumber: '9' } });
    const file = JSON.parse(await readFile(path, 'utf8'));
    assert.equal(file.version, 1);
    assert.deepEqual(await readdir(dir), ['cp.json'], 'no temporary file left behind');
  });

  it('serializes concurrent stores: none is lost', async (t) => {
    const dir = await tempDir(t);
    const cp = fileCheckpointer(join(dir, 'cp.json'));
    await Promise.all(Array.from({ length: 20 }, (_, i) => cp.store('s', { [`shard-${i}`]: { sequenceNumber: String(i) } })));
    const loaded = await cp.load('s');
    assert.equal(Object.keys(loaded).length, 20);
    assert.deepEqual(loaded['shard-7'], { sequenceNumber: '7' });
  });

  it('replaces the file by rename: a reader never sees a partial file', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'cp.json');
    const cp = fileCheckpointer(path);
    await cp.store('s', { a: { sequenceNumber: '0' } });
    let stop = false;
    let reads = 0;
    const reader = (async () => {
      while (!stop) {
        JSON.parse(await readFile(path, 'utf8'));
        reads++;
      }
    })();
    for (let i = 1; i <= 30; i++) await cp.store('s', { a: { sequenceNumber: String(i) }, pad: { sequenceNumber: 'x'.repeat(5000) } });
    stop = true;
    await reader;
    assert.ok(reads > 0);
    assert.deepEqual((await cp.load('s')).a, { sequenceNumber: '30' });
  });

  it('fails with IO errors that name the file and what to do', async (t) => {
    const dir = await tempDir(t);
    const corrupt = join(dir, 'corrupt.json');
    await writeFile(corrupt, '{"scopes": {');
    await assert.rejects(fileCheckpointer(corrupt).load('s'), (e: ManifoldError) => e.code === ErrorCodes.IO && /is not valid JSON .*fix or remove it/.test(e.message) && e.path === corrupt);
    const foreign = join(dir, 'foreign.json');
    await writeFile(foreign, '{"hello": 1}');
    await assert.rejects(fileCheckpointer(foreign).store('s', { a: { sequenceNumber: '1' } }), /does not hold manifold checkpoints/);
    const invalid = join(dir, 'invalid.json');
    await writeFile(invalid, JSON.stringify({ version: 1, scopes: { s: { a: { sequenceNumber: 5 } } } }));
    await assert.rejects(fileCheckpointer(invalid).load('s'), /has an invalid checkpoint for s a/);
    await assert.rejects(fileCheckpointer(join(dir, 'missing-dir', 'cp.json')).store('s', { a: { sequenceNumber: '1' } }), (e: ManifoldError) => e.code === ErrorCodes.IO && /writing checkpoint file/.test(e.message));
    if (process.getuid?.() !== 0) {
      const locked = join(dir, 'locked.json');
      await writeFile(locked, '{}');
      await chmod(locked, 0);
      await assert.rejects(fileCheckpointer(locked).load('s'), /reading checkpoint file/);
    }
    assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.tmp')), [], 'a failed write leaves no temporary file');
  });

  it('rejects a missing path at construction', () => {
    assert.throws(() => fileCheckpointer(''), (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && /options\.path must be a non-empty file path/.test(e.message));
  });
});
