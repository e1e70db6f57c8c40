/** The public entry exports what the README documents, and nothing by `export *`. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import * as manifold from '../lib/index.js';

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
  assert.doesNotMatch(source, /export \*/, 'explicit named exports only');
});

it('has an exports map so deep imports are not part of the API', () => {
  const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8'));
  assert.deepEqual(Object.keys(pkg.exports), ['.', './package.json']);
  assert.equal(pkg.type, 'module');
  assert.match(pkg.engines.node, />=\s*22/);
});
