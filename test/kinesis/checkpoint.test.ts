/** The checkpoint contract: the validation every checkpointer applies to what it reads back. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isCheckpoint } from '../../lib/kinesis/checkpoint.js';

describe('isCheckpoint', () => {
  it('accepts a sequence number with an optional non-negative integer sub-sequence number, and nothing else', () => {
    assert.ok(isCheckpoint({ sequenceNumber: '1' }));
    assert.ok(isCheckpoint({ sequenceNumber: '1', subSequenceNumber: 0 }));
    for (const bad of [null, 'x', {}, { sequenceNumber: '' }, { sequenceNumber: 1 }, { sequenceNumber: '1', subSequenceNumber: -1 }, { sequenceNumber: '1', subSequenceNumber: 1.5 }]) {
      assert.equal(isCheckpoint(bad), false, JSON.stringify(bad));
    }
  });
});
