/** Starting positions: the startingPosition values, and where checkpoints and leases make a shard start. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkpointKey, leaseStartParam, resumeFrom, toStartingPosition } from '../../lib/kinesis/positions.js';

describe('toStartingPosition', () => {
  it('takes the documented values, a timestamp as ms since the epoch, and nothing else', () => {
    const at = new Date('2025-01-31T12:00:00Z');
    assert.equal(toStartingPosition('LATEST'), 'LATEST');
    assert.equal(toStartingPosition('TRIM_HORIZON'), 'TRIM_HORIZON');
    assert.deepEqual(toStartingPosition({ timestamp: at }), { timestamp: at.getTime() });
    assert.deepEqual(toStartingPosition({ timestamp: 5 }), { timestamp: 5 });
    assert.deepEqual(toStartingPosition({ afterSequenceNumber: '123' }), { afterSequenceNumber: '123' });
    for (const bad of ['latest', 'EARLIEST', null, [], {}, { timestamp: NaN }, { timestamp: 'now' }, { afterSequenceNumber: 'x1' }, { timestamp: 1, afterSequenceNumber: '1' }]) {
      assert.equal(toStartingPosition(bad), undefined, JSON.stringify(bad));
    }
  });
});

describe('checkpoints and leases', () => {
  it('a checkpoint resumes after its record, or inside its aggregate skipping the user records done', () => {
    assert.deepEqual(resumeFrom({ sequenceNumber: '7' }), { start: { Type: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: '7' }, skipThrough: undefined });
    assert.deepEqual(resumeFrom({ sequenceNumber: '7', subSequenceNumber: 2 }), {
      start: { Type: 'AT_SEQUENCE_NUMBER', SequenceNumber: '7' },
      skipThrough: { sequenceNumber: '7', subSequenceNumber: 2 },
    });
    assert.equal(checkpointKey(undefined), undefined);
    assert.equal(checkpointKey({ sequenceNumber: '7' }), '7');
    assert.equal(checkpointKey({ sequenceNumber: '7', subSequenceNumber: 0 }), '7/0');
  });

  it("a lease's start becomes the position Kinesis takes", () => {
    assert.deepEqual(leaseStartParam({ type: 'TRIM_HORIZON' }), { Type: 'TRIM_HORIZON' });
    assert.deepEqual(leaseStartParam({ type: 'AT_TIMESTAMP', timestamp: 1000 }), { Type: 'AT_TIMESTAMP', Timestamp: new Date(1000) });
  });
});
