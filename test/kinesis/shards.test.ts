/** Shard listing (with pages) and the parent-before-child rule. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { listShards, parentsDone, type ShardInfo } from '../../lib/kinesis/shards.js';
import { createStream, deleteStream, startKinesisServer, type KinesisServer } from '../fixtures/kinesis.js';

describe('parentsDone', () => {
  const child: ShardInfo = { shardId: 'c', parents: ['p1', 'p2'], closed: false };
  it('waits for every known parent, and not for unknown ones', () => {
    const known = new Set(['p1', 'p2']);
    assert.equal(parentsDone(child, (id) => known.has(id), (id) => id === 'p1'), false);
    assert.equal(parentsDone(child, (id) => known.has(id), () => true), true);
    assert.equal(parentsDone(child, (id) => id === 'p1', (id) => id === 'p1'), true, 'p2 expired or outside shardIds');
    assert.equal(parentsDone({ shardId: 'root', parents: [], closed: false }, () => true, () => false), true);
  });
});

describe('listShards', () => {
  let server: KinesisServer;
  before(async () => {
    server = await startKinesisServer();
  });
  after(() => server.stop());

  it('lists every shard of a stream by name or ARN', async () => {
    const raw = server.client();
    const { streamName, streamARN } = await createStream(raw, 3);
    try {
      const byName = await listShards(raw, { name: streamName, params: { StreamName: streamName }, label: streamName });
      assert.deepEqual(byName.map((s) => s.shardId), ['shardId-000000000000', 'shardId-000000000001', 'shardId-000000000002']);
      assert.ok(byName.every((s) => s.parents.length === 0 && !s.closed));
      const byArn = await listShards(raw, { name: streamName, params: { StreamARN: streamARN }, label: streamARN });
      assert.equal(byArn.length, 3);
    } finally {
      await deleteStream(raw, streamName);
    }
  });
});
