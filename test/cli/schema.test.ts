/** The JSON Schema of pipeline files (`manifold schema`): it accepts every example pipeline file and refuses misspelt keys. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse } from 'yaml';
import { parseCommandLine } from '../../lib/cli/main.js';
import { pipelineSchema } from '../../lib/cli/schema.js';

const root = join(import.meta.dirname, '..', '..');
const examples = join(root, 'examples', 'pipelines');
const files = readdirSync(examples).filter((f) => f.endsWith('.yaml'));

function validator() {
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  return ajv.compile(pipelineSchema());
}

describe('pipeline file JSON Schema', () => {
  it('there are example pipeline files', () => {
    assert.ok(files.length >= 3, `found ${files.join(', ')}`);
  });

  for (const file of files) {
    it(`accepts examples/pipelines/${file}, as the command does`, () => {
      const validate = validator();
      const document = parse(readFileSync(join(examples, file), 'utf8'));
      assert.ok(validate(document), JSON.stringify(validate.errors));
      const settings = parseCommandLine(['run', join(examples, file)]);
      assert.equal(typeof settings, 'object');
    });
  }

  it('refuses a misspelt key at the top and inside a declared connector, as the command does', () => {
    const validate = validator();
    const good = { from: { uri: 'stdin:', maxMessage: '1MiB' }, to: 'stdout:', metricsPort: 9464 };
    assert.ok(validate(good), JSON.stringify(validate.errors));
    assert.equal(validate({ ...good, metricPort: 9464 }), false, 'a misspelt top-level key');
    assert.equal(validate({ ...good, from: { uri: 'stdin:', maxMesage: '1MiB' } }), false, 'a misspelt connector key');
    assert.equal(validate({ ...good, metricsPort: '9464' }), false, 'a number written as text');
    assert.equal(validate({ ...good, from: { uri: 'stdin:', maxMessage: 'lots' } }), false, 'a size that is not one');
  });

  it('takes durations with a unit (a number is milliseconds), the retry budget, and an endpoint\'s own retry', () => {
    const validate = validator();
    const good = { from: { uri: 'amqp://h/', queue: 'q' }, to: 'stdout:' };
    for (const closeTimeout of ['30s', '1m30s', 30, '0']) assert.ok(validate({ ...good, closeTimeout }), `closeTimeout ${closeTimeout}`);
    assert.equal(validate({ ...good, closeTimeout: '30' }), false, 'text without a unit');
    for (const retries of [0, 5, 'forever']) assert.ok(validate({ ...good, retries }), `retries ${retries}`);
    assert.equal(validate({ ...good, retries: 'lots' }), false);
    for (const retry of [false, '5', 'forever', { retries: 3, maxTimeoutMs: 5000 }]) {
      assert.ok(validate({ ...good, from: { ...good.from, retry } }), JSON.stringify(validate.errors));
    }
    assert.equal(validate({ ...good, from: { ...good.from, retry: { retires: 3 } } }), false, 'a misspelt retry field');
  });

  it('describes every key with its doc and default', () => {
    const schema = pipelineSchema() as { properties: Record<string, { description?: string; default?: unknown }> };
    for (const [key, property] of Object.entries(schema.properties)) assert.ok(property.description, `${key} has a description`);
    assert.equal(schema.properties.closeTimeout?.default, 30_000);
  });
});
