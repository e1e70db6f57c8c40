/** memoryCheckpointer. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SHARD_END } from '../../lib/kinesis/checkpoint.js';
import { memoryCheckpointer } from '../../lib/kinesis/memory-checkpointer.js';

describe('memoryCheckpointer', () => {
  it('stores per scope and shard, merging stores and returning copies', async () => {
    const cp = memoryCheckpointer();
    assert.deepEqual(await cp.load('orders'), {});
    await cp.store('orders', { 'shardId-0': { sequenceNumber: '10' }, 'shardId-1': { sequenceNumber: '20', subSequenceNumber: 2 } });
    await cp.store('orders', { 'shardId-0': { sequenceNumber: '11' } });
    await cp.store('other', { 'shardId-0': { sequenceNumber: SHARD_END } });
    const loaded = await cp.load('orders');
    assert.deepEqual(loaded, { 'shardId-0': { sequenceNumber: '11' }, 'shardId-1': { sequenceNumber: '20', subSequenceNumber: 2 } });
    loaded['shardId-0']!.sequenceNumber = 'changed';
    assert.equal(cp.snapshot('orders')['shardId-0']!.sequenceNumber, '11', 'callers get copies');
    assert.deepEqual(cp.snapshot('other'), { 'shardId-0': { sequenceNumber: 'SHARD_END' } });
  });
});
