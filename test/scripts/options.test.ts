/** The generated option interfaces and docs tables match the declarations (scripts/options.ts). */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { cliKey } from '../../lib/core/options.js';
import { DECLARATIONS } from '../../scripts/declarations.js';
import { generate } from '../../scripts/options.js';

describe('option declarations', () => {
  it('every generated interface and docs table is current (run `npm run options` after changing a declaration)', async () => {
    assert.deepEqual(await generate(false), []);
  });

  it("every docs table lists each declared option with its key and default, and nothing else", async () => {
    for (const { declaration, docs } of DECLARATIONS) {
      const text = await readFile(new URL(`../../${docs}`, import.meta.url), 'utf8');
      const table = text.slice(text.indexOf(`<!-- options ${declaration.where} -->`), text.indexOf('<!-- /options -->', text.indexOf(`<!-- options ${declaration.where} -->`)));
      const rows = table.split('\n').filter((line) => line.startsWith('| `'));
      assert.deepEqual(
        rows.map((row) => row.split(' | ')[0]!.slice(3, -1)),
        [...declaration.names],
        `${docs}: the options of ${declaration.where}`,
      );
      for (const row of rows) {
        const name = row.split(' | ')[0]!.slice(3, -1);
        const key = cliKey(name, declaration.specs[name]!);
        assert.equal(row.split(' | ')[1], key === undefined ? '—' : `\`${key}\``, `${docs}: the key of ${declaration.where}.${name}`);
      }
    }
  });

  it('every declared option has a one-line doc, and no two options of a factory share a key', () => {
    for (const { declaration } of DECLARATIONS) {
      const keys = new Set<string>();
      for (const name of declaration.names) {
        const spec = declaration.specs[name]!;
        assert.ok(spec.doc.length > 10 && !spec.doc.includes('\n'), `${declaration.where}.${name} has a one-line doc`);
        const key = cliKey(name, spec);
        if (key === undefined) continue;
        assert.ok(!keys.has(key), `${declaration.where}: key ${key} used twice`);
        keys.add(key);
      }
    }
  });
});
