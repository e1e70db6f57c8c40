/** KPL de-aggregation against records made by the fixture's encoder. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { deaggregate, isAggregated, KPL_MAGIC } from '../../lib/kinesis/deaggregate.js';
import { aggregate } from '../fixtures/kinesis.js';

function wrap(proto: Buffer): Buffer {
  return Buffer.concat([KPL_MAGIC, proto, createHash('md5').update(proto).digest()]);
}

describe('deaggregate', () => {
  it('returns the user records in order with their partition and explicit hash keys, skipping tags', () => {
    const records = [
      { data: Buffer.from('one'), key: 'a' },
      { data: Buffer.from('two'), key: 'b', hashKey: '12345' },
      { data: Buffer.alloc(300, 7), key: 'a' },
      { data: Buffer.alloc(0), key: 'c' },
    ];
    const out = deaggregate(aggregate(records, { tags: true }))!;
    assert.deepEqual(
      out.map((r) => [r.data.toString('hex'), r.partitionKey, r.explicitHashKey]),
      records.map((r) => [r.data.toString('hex'), r.key, r.hashKey]),
    );
  });

  it('handles many records (multi-byte varints for indexes and lengths)', () => {
    const records = Array.from({ length: 300 }, (_, i) => ({ data: Buffer.from(`r${i}`), key: `key-${i}` }));
    const out = deaggregate(aggregate(records))!;
    assert.equal(out.length, 300);
    assert.equal(out[299]!.partitionKey, 'key-299');
    assert.equal(out[299]!.data.toString(), 'r299');
  });

  it('returns undefined for anything that is not a valid aggregate, so it is delivered as it is', () => {
    const good = aggregate([{ data: Buffer.from('x'), key: 'k' }]);
    const badMd5 = Buffer.from(good);
    badMd5[badMd5.length - 1]! ^= 0xff;
    assert.equal(deaggregate(Buffer.from('plain record')), undefined);
    assert.equal(deaggregate(KPL_MAGIC), undefined, 'too short');
    assert.equal(deaggregate(badMd5), undefined);
    // Well-formed MD5 around broken protobufs.
    assert.equal(deaggregate(wrap(Buffer.from([0x1a, 0x05, 0x08]))), undefined, 'truncated field');
    assert.equal(deaggregate(wrap(Buffer.from([0x1a, 0x02, 0x08, 0x00]))), undefined, 'record without data');
    assert.equal(deaggregate(wrap(Buffer.from([0x1a, 0x04, 0x08, 0x03, 0x1a, 0x00]))), undefined, 'partition key index out of range');
    assert.equal(deaggregate(wrap(Buffer.from([0x0a, 0x01, 0x6b, 0x1a, 0x06, 0x08, 0x00, 0x10, 0x04, 0x1a, 0x00]))), undefined, 'hash key index out of range');
    assert.equal(deaggregate(wrap(Buffer.from([0x0b]))), undefined, 'unsupported wire type');
    assert.equal(deaggregate(wrap(Buffer.from([0x08, 0xff]))), undefined, 'truncated varint');
    assert.equal(deaggregate(wrap(Buffer.from([0x08, ...Array(10).fill(0xff), 0x01]))), undefined, 'varint too long');
    assert.equal(deaggregate(wrap(Buffer.from([0x21, 1, 2]))), undefined, 'truncated fixed64');
  });

  it('skips unknown fields of every wire type', () => {
    // field 9 varint, field 10 fixed64, field 11 fixed32, then a key and one record.
    const proto = Buffer.concat([
      Buffer.from([0x48, 0x96, 0x01]),
      Buffer.from([0x51, 1, 2, 3, 4, 5, 6, 7, 8]),
      Buffer.from([0x5d, 1, 2, 3, 4]),
      Buffer.from([0x0a, 0x01, 0x6b]),
      Buffer.from([0x1a, 0x05, 0x08, 0x00, 0x1a, 0x01, 0x78]),
    ]);
    assert.deepEqual(deaggregate(wrap(proto)), [{ data: Buffer.from('x'), partitionKey: 'k', explicitHashKey: undefined }]);
  });

  it('isAggregated looks only at the magic bytes and the length', () => {
    assert.equal(isAggregated(aggregate([{ data: Buffer.from('x'), key: 'k' }])), true);
    assert.equal(isAggregated(Buffer.concat([KPL_MAGIC, Buffer.alloc(15)])), false);
  });
});
