/**
 * fileCheckpointer against hostile input (issue 19): streams and shards named like Object.prototype's
 * properties are keys like any other, and several instances or processes storing to one file at
 * once never lose a store (each store reads, merges and writes under an atomic lock file).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { fileCheckpointer } from '../../lib/kinesis/file-checkpointer.js';

const MODULE = join(import.meta.dirname, '..', '..', 'lib', 'kinesis', 'file-checkpointer.ts');

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'manifold-checkpoint-hostile-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const NAMES = ['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', 'valueOf', '__defineGetter__'];

describe('fileCheckpointer: hostile names and concurrent instances', () => {
  it('stores and reads back a stream or shard named __proto__, constructor, toString ... and pollutes nothing', async (t) => {
    const path = join(await tempDir(t), 'cp.json');
    const cp = fileCheckpointer(path);
    for (const [i, scope] of NAMES.entries()) {
      await cp.store(scope, Object.fromEntries(NAMES.map((shard, k) => [shard, { sequenceNumber: `${i}-${k}` }])));
    }
    const again = fileCheckpointer(path);
    for (const [i, scope] of NAMES.entries()) {
      const loaded = await again.load(scope);
      assert.deepEqual(Object.keys(loaded).sort(), [...NAMES].sort(), scope);
      for (const [k, shard] of NAMES.entries()) {
        assert.ok(Object.hasOwn(loaded, shard), `${scope} ${shard}`);
        assert.deepEqual(Object.getOwnPropertyDescriptor(loaded, shard)!.value, { sequenceNumber: `${i}-${k}` });
      }
    }
    // A scope never stored is empty, whatever its name.
    const fresh = fileCheckpointer(join(await tempDir(t), 'other.json'));
    for (const scope of NAMES) assert.deepEqual(Object.keys(await fresh.load(scope)), []);
    // The file holds them as plain keys, and nothing leaked into Object.prototype.
    const file = JSON.parse(await readFile(path, 'utf8')) as { scopes: object };
    assert.deepEqual(Object.keys(file.scopes).sort(), [...NAMES].sort());
    assert.equal(({} as Record<string, unknown>).sequenceNumber, undefined);
    assert.equal(Object.getPrototypeOf({}), Object.prototype);
  });

  it('a file written by hand with a __proto__ scope is read as one scope, not as a prototype', async (t) => {
    const path = join(await tempDir(t), 'cp.json');
    await writeFile(path, '{"version":1,"scopes":{"__proto__":{"__proto__":{"sequenceNumber":"7"}},"s":{"a":{"sequenceNumber":"1"}}}}');
    const cp = fileCheckpointer(path);
    assert.deepEqual(Object.getOwnPropertyDescriptor(await cp.load('__proto__'), '__proto__')!.value, { sequenceNumber: '7' });
    assert.deepEqual(Object.keys(await cp.load('a')), [], 'a shard of scope "s" is not a scope');
    await cp.store('s', { b: { sequenceNumber: '2' } });
    assert.deepEqual(Object.keys(await fileCheckpointer(path).load('__proto__')), ['__proto__'], 'kept through a store of another scope');
  });

  it('two instances on one file storing at once lose nothing: 50 rounds, every store present after each', async (t) => {
    const dir = await tempDir(t);
    for (let round = 0; round < 50; round++) {
      const path = join(dir, `cp-${round}.json`);
      const a = fileCheckpointer(path);
      const b = fileCheckpointer(path);
      // Same scope and different scopes, several stores each, all at once.
      await Promise.all([
        a.store('s', { 'shard-a': { sequenceNumber: `a${round}` } }),
        b.store('s', { 'shard-b': { sequenceNumber: `b${round}` } }),
        a.store('only-a', { x: { sequenceNumber: '1' } }),
        b.store('only-b', { y: { sequenceNumber: '2' } }),
        a.store('s', { 'shard-c': { sequenceNumber: `c${round}` } }),
        b.store('__proto__', { z: { sequenceNumber: '3' } }),
      ]);
      const check = fileCheckpointer(path);
      assert.deepEqual(await check.load('s'), { 'shard-a': { sequenceNumber: `a${round}` }, 'shard-b': { sequenceNumber: `b${round}` }, 'shard-c': { sequenceNumber: `c${round}` } }, `round ${round}`);
      assert.deepEqual(await check.load('only-a'), { x: { sequenceNumber: '1' } });
      assert.deepEqual(await check.load('only-b'), { y: { sequenceNumber: '2' } });
      assert.deepEqual(await check.load('__proto__'), { z: { sequenceNumber: '3' } });
    }
    assert.deepEqual((await readdir(dir)).filter((name) => !/^cp-\d+\.json$/.test(name)), [], 'no lock or temporary file left');
  });

  it('two processes storing to one file at once lose nothing (2 x 60 stores)', async (t) => {
    const path = join(await tempDir(t), 'cp.json');
    const code = `
      import { fileCheckpointer } from ${JSON.stringify(MODULE)};
      const cp = fileCheckpointer(process.argv[1]);
      const who = process.argv[2];
      for (let i = 0; i < 60; i++) await cp.store('s', { [who + '-' + i]: { sequenceNumber: String(i) } });`;
    const run = (who: string): Promise<number | null> => {
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code, path, who], { stdio: 'inherit' });
      t.after(() => child.kill('SIGKILL'));
      return new Promise((resolve) => child.once('exit', resolve));
    };
    assert.deepEqual(await Promise.all([run('p'), run('q')]), [0, 0]);
    const loaded = await fileCheckpointer(path).load('s');
    assert.equal(Object.keys(loaded).length, 120, Object.keys(loaded).join(' '));
    for (let i = 0; i < 60; i++) {
      assert.deepEqual(loaded[`p-${i}`], { sequenceNumber: String(i) });
      assert.deepEqual(loaded[`q-${i}`], { sequenceNumber: String(i) });
    }
  });

  it('a lock left by a process that died (kill -9 in the middle of a store) is taken over', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'cp.json');
    const child = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => child.once('exit', resolve));
    await writeFile(join(dir, '.cp.json.lock'), JSON.stringify({ pid: child.pid, token: 'killed' }));
    const cp = fileCheckpointer(path);
    await cp.store('s', { a: { sequenceNumber: '1' } });
    assert.deepEqual(await cp.load('s'), { a: { sequenceNumber: '1' } });
    assert.deepEqual((await readdir(dir)).sort(), ['cp.json']);
  });
});
