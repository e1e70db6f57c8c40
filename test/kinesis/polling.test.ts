/**
 * pollShard's pacing against a scripted client: calls at least 200 ms apart, and after a page of
 * B bytes at least B / 2 MiB/s apart, each asking for the room the shard has (up to 10,000).
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { pollShard, SHARD_READ_BYTES_PER_SECOND } from '../../lib/kinesis/polling.js';

it('asks for the room up to 10,000 records, and paces the next call by the bytes of the last page', async () => {
  const MiB = 1024 * 1024;
  // Pages of 1 MiB, 1 KiB and 1.5 MiB, then the shard ends.
  const pages = [MiB, 1024, 1.5 * MiB];
  const calls: Array<{ at: number; limit: number | undefined }> = [];
  const client = {
    send: async (command: { constructor: { name: string }; input: { Limit?: number } }) => {
      if (command.constructor.name === 'GetShardIteratorCommand') return { ShardIterator: 'it-0' };
      calls.push({ at: performance.now(), limit: command.input.Limit });
      const size = pages[calls.length - 1]!;
      return { Records: [{ Data: new Uint8Array(size), SequenceNumber: String(calls.length), PartitionKey: 'k' }], NextShardIterator: calls.length < pages.length ? `it-${calls.length}` : undefined, MillisBehindLatest: 1000 };
    },
  } as unknown as KinesisClient;
  const rooms = [10_000, 10_000, 2_500];
  await pollShard({
    client,
    stream: { params: { StreamName: 's' } } as never,
    shardId: 'shardId-0',
    start: { Type: 'TRIM_HORIZON' },
    resumePosition: () => ({ Type: 'TRIM_HORIZON' }),
    maxRecordsPerCall: 10_000,
    room: () => rooms[calls.length] ?? 10_000,
    pollIntervalMs: 1000,
    requestTimeoutMs: 5000,
    signal: new AbortController().signal,
    gate: async () => {},
    call: (_operation, fn) => fn(),
    onOpen: () => {},
    onRecords: () => {},
  });
  assert.deepEqual(calls.map((c) => c.limit), [10_000, 10_000, 2_500]);
  const firstGap = calls[1]!.at - calls[0]!.at;
  const secondGap = calls[2]!.at - calls[1]!.at;
  // 1 MiB at 2 MiB/s: half a second, counted from the page's arrival, so the time the next call takes to
  // leave cannot shorten it (it did when the wait counted from the call: 493 ms once, on a busy CI machine).
  // The 2 ms allow for the event loop's millisecond timer clock.
  assert.ok(firstGap >= (MiB * 1000) / SHARD_READ_BYTES_PER_SECOND - 2, `after 1 MiB the next call came ${firstGap.toFixed(1)} ms later`);
  // 1 KiB: the 200 ms floor of 5 calls per second, not the byte budget (which would be under 1 ms).
  assert.ok(secondGap >= 150, `after 1 KiB the next call came ${secondGap.toFixed(0)} ms later`);
  assert.ok(secondGap < firstGap, `the 1 KiB page (${secondGap.toFixed(0)} ms) waited less than the 1 MiB page (${firstGap.toFixed(0)} ms)`);
});
