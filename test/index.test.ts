/**
 * The public entry exports what the README documents; each subpath (manifold/kafka, ...) names its
 * exports one by one, and the root only gathers the subpaths.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import * as manifold from '../lib/index.js';

const SUBPATHS = ['core', 'stdio', 's3', 'websocket', 'kafka', 'kinesis', 'rabbitmq'];

it('exports the documented API from one entry point', () => {
  for (const name of [
    'ManifoldError', 'ErrorCodes', 'isRetryable', 'redactUrl',
    'createMessage', 'toMessage', 'derive', 'isMessage', 'settleAll',
    'AckTracker', 'withRetry', 'resolveRetry', 'retryingSource', 'retryingSink', 'flow',
    'map', 'filter', 'batch', 'lines', 'jsonAppend', 'stdinSource', 'stdoutSink',
    'kinesisSource', 'fileCheckpointer', 'memoryCheckpointer', 'dynamoLeases',
  ]) {
    assert.ok(name in manifold, `${name} is exported`);
  }
  const source = readFileSync(join(import.meta.dirname, '..', 'lib', 'index.ts'), 'utf8');
  const gathered = [...source.matchAll(/^export \* from '\.\/([a-z0-9]+)\/index\.js';$/gm)].map((m) => m[1]);
  assert.deepEqual(gathered, SUBPATHS, 'the root gathers every subpath');
  assert.equal(source.replace(/\/\*\*[\s\S]*?\*\//, '').replace(/^export \* from .*$/gm, '').trim(), '', 'the root holds nothing else');
});

it('each subpath names its exports one by one, and together they are the root', async () => {
  const union = new Set<string>();
  for (const subpath of SUBPATHS) {
    const source = readFileSync(join(import.meta.dirname, '..', 'lib', subpath, 'index.ts'), 'utf8');
    assert.doesNotMatch(source, /export \*/, `lib/${subpath}/index.ts: explicit named exports only`);
    for (const name of Object.keys(await import(`../lib/${subpath}/index.js`))) {
      assert.ok(!union.has(name), `${name} is exported by one subpath only`);
      union.add(name);
    }
  }
  assert.deepEqual([...union].sort(), Object.keys(manifold).sort());
});

it('has an exports map so deep imports are not part of the API', () => {
  const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8'));
  assert.deepEqual(Object.keys(pkg.exports), ['.', ...SUBPATHS.map((s) => `./${s}`), './package.json']);
  for (const subpath of SUBPATHS) assert.deepEqual(pkg.exports[`./${subpath}`], { types: `./dist/lib/${subpath}/index.d.ts`, import: `./dist/lib/${subpath}/index.js` });
  assert.equal(pkg.type, 'module');
  assert.match(pkg.engines.node, />=\s*22/);
});
