import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { batch, type BatchMessage } from '../../lib/transforms/batch.js';
import { tracked, run } from './helpers.js';

describe('batch', () => {
  it('groups by count, and acking the batch acks every member', async () => {
    const { messages, acked } = tracked(Array.from({ length: 7 }, (_, i) => `m${i}`));
    const out = (await run(messages, batch({ maxCount: 3 }))) as BatchMessage[];
    assert.deepEqual(out.map((b) => b.messages.length), [3, 3, 1]);
    assert.equal(out[0]!.data.toString(), 'm0\nm1\nm2\n');
    out[0]!.ack();
    assert.deepEqual(acked, [0, 1, 2]);
  });

  it('groups by bytes; a single large message forms its own batch', async () => {
    const out = (await run(['aaaa', 'bbbb', 'x'.repeat(50), 'cc'], batch({ maxBytes: 12, delimiter: ',' }))) as BatchMessage[];
    assert.deepEqual(out.map((b) => b.data.toString()), ['aaaa,bbbb,', `${'x'.repeat(50)},`, 'cc,']);
  });

  it('emits a partial batch after maxWaitMs', async () => {
    const stage = batch({ maxCount: 100, maxWaitMs: 20 });
    const out: BatchMessage[] = [];
    stage.on('data', (b: BatchMessage) => out.push(b));
    stage.write('a');
    stage.write('b');
    await sleep(60);
    assert.equal(out.length, 1);
    assert.equal(out[0]!.messages.length, 2);
    stage.end();
  });

  it('nacking the batch nacks every member; destroy nacks what was held', async () => {
    const { messages, nacked } = tracked(['a', 'b', 'c']);
    const out = (await run(messages.slice(0, 2), batch({ maxCount: 2 }))) as BatchMessage[];
    out[0]!.nack(new Error('sink refused'));
    assert.deepEqual([...nacked.keys()], [0, 1]);
    const stage = batch({ maxCount: 10 });
    stage.write(messages[2]);
    stage.destroy();
    await sleep(5);
    assert.ok(nacked.has(2));
  });

  it('rejects bad options', () => {
    assert.throws(() => batch({ maxCount: 0 }), /batch: options\.maxCount must be a positive integer, got 0/);
    assert.throws(() => batch({ maxWait: 5 } as never), /unknown option "maxWait" \(did you mean "maxWaitMs"\?\)/);
  });
});
