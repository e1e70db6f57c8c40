import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { lines } from '../../lib/transforms/lines.js';
import { run } from './helpers.js';

describe('lines', () => {
  async function frame(chunks: Array<string | Buffer>, options = {}) {
    const out = await run(chunks.map((c) => Buffer.from(c)), lines(options));
    return out.map((m) => m.data.toString());
  }

  it('splits on newlines across chunks, handles CRLF and keeps a last line without newline', async () => {
    assert.deepEqual(await frame(['a\nb', 'c\r\n', '\nd\r', '\ne']), ['a', 'bc', '', 'd', 'e']);
    const out = await run([Buffer.from('x\ny\n')], lines());
    assert.deepEqual(out.map((m) => m.meta?.['line']), [1, 2]);
  });

  it('supports multi-byte delimiters split across chunks', async () => {
    assert.deepEqual(await frame(['one|', '|two||th', 'ree|', '|'], { delimiter: '||' }), ['one', 'two', 'three']);
    assert.deepEqual(await frame(['a\rb'], { delimiter: '\r' }), ['a', 'b']);
  });

  it('fails on a line over maxMessageBytes naming the line, without buffering it all', async () => {
    await assert.rejects(frame(['ok\n', 'x'.repeat(40), 'y'.repeat(40), '\n'], { maxMessageBytes: 50, label: 'stdin' }), (e: unknown) => {
      assert.ok(e instanceof ManifoldError);
      assert.equal(e.code, ErrorCodes.MESSAGE_TOO_LARGE);
      assert.match(e.message, /record 2 of stdin is longer than maxMessageBytes \(\d+ > 50 bytes\)/);
      return true;
    });
    await assert.rejects(frame([`${'z'.repeat(60)}\n`], { maxMessageBytes: 50 }), /record 1 of input/);
  });

  it('skips oversized lines with onOversize: skip and counts lines right', async () => {
    const stage = lines({ maxMessageBytes: 5, onOversize: 'skip' });
    const skipped: unknown[] = [];
    stage.on('skip', (s) => skipped.push(s));
    const out = await run(['ab\n', 'c'.repeat(20), 'c'.repeat(20), '\nde\n', 'f'.repeat(9), '\n', 'last'].map((c) => Buffer.from(c)), stage);
    assert.deepEqual(out.map((m) => [m.data.toString(), m.meta?.['line']]), [['ab', 1], ['de', 3], ['last', 5]]);
    assert.equal(skipped.length, 2);
  });

  it('does not pin a large chunk in memory for a small remainder', async () => {
    const stage = lines();
    const big = Buffer.alloc(1 << 20, 'a');
    big[big.length - 3] = 0x0a;
    stage.write(big);
    await sleep(1);
    stage.destroy();
  });
});
