import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { filter } from '../../lib/transforms/filter.js';
import { type Message } from '../../lib/core/message.js';
import { tracked, run } from './helpers.js';

describe('filter', () => {
  it('passes what matches and acks what it drops', async () => {
    const { messages, acked } = tracked(['keep', 'drop', 'keep']);
    const out = await run(messages, filter(async (m) => m.data.toString() === 'keep'));
    assert.equal(out.length, 2);
    assert.deepEqual(acked, [1]);
  });

  it('nacks when the predicate throws', async () => {
    const { messages, nacked } = tracked(['x']);
    await run(messages, filter(() => { throw new Error('pred'); }));
    assert.match(nacked.get(0)!.message, /filter: the predicate failed on message 0: pred/);
    await assert.rejects(run([5], filter(() => true)), /expected a Message/);
  });
});
