/** attemptOf(): which delivery of a RabbitMQ message this is, from `redelivered` and a quorum queue's `x-delivery-count`. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { attemptOf } from '../../lib/rabbitmq/source.js';

describe('attemptOf', () => {
  it('is 1 for a first delivery and 2 for a redelivery when the broker keeps no count (classic queues)', () => {
    assert.equal(attemptOf(false, undefined), 1);
    assert.equal(attemptOf(true, undefined), 2);
    assert.equal(attemptOf(false, {}), 1);
    assert.equal(attemptOf(true, { other: 7 }), 2);
  });

  it('is x-delivery-count + 1 on a quorum queue, whether amqplib decodes the count as a number or a bigint', () => {
    assert.equal(attemptOf(true, { 'x-delivery-count': 1 }), 2);
    assert.equal(attemptOf(true, { 'x-delivery-count': 4 }), 5);
    assert.equal(attemptOf(true, { 'x-delivery-count': 4n }), 5);
    assert.equal(attemptOf(false, { 'x-delivery-count': 0 }), 1);
  });

  it('never says less than the redelivered flag does', () => {
    assert.equal(attemptOf(true, { 'x-delivery-count': 0 }), 2);
  });

  it('ignores a count that is not a non-negative integer (a header a publisher set, a replayed dead-letter record)', () => {
    for (const count of ['3', -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, null, { n: 3 }, Buffer.from('3')]) {
      assert.equal(attemptOf(false, { 'x-delivery-count': count }), 1, `first delivery with x-delivery-count ${String(count)}`);
      assert.equal(attemptOf(true, { 'x-delivery-count': count }), 2, `redelivery with x-delivery-count ${String(count)}`);
    }
  });
});
