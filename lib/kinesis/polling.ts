/**
 * Polling: reads one shard with GetShardIterator and GetRecords in a loop,
 * paced to what Kinesis allows a shard (5 calls and 2 MB per second), until the shard
 * ends or the signal aborts. An iterator that expires under a slow consumer
 * is replaced by one after the last record delivered.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { GetRecordsCommand, GetShardIteratorCommand, type GetShardIteratorCommandInput, type KinesisClient, type _Record as KinesisRecord } from '@aws-sdk/client-kinesis';
import { awsCall, awsErrorName } from '../core/aws.js';
import { ErrorCodes, ManifoldError } from '../core/errors.js';
import type { StreamRef } from './client.js';
import { MIN_CALL_GAP_MS } from './options.js';
import type { StartingPositionParam } from './positions.js';

/** What one shard serves its readers per second (GetRecords), shared by every reader of the shard. */
export const SHARD_READ_BYTES_PER_SECOND = 2 * 1024 * 1024;

/** What {@link pollShard} needs from the source. */
export interface PollOptions {
  client: KinesisClient;
  stream: StreamRef;
  shardId: string;
  /** Position of the first iterator. */
  start: StartingPositionParam;
  /** Position of a new iterator after the old one expired: after the last record delivered, or the start when none was. */
  resumePosition(): StartingPositionParam;
  /** Most records per GetRecords call. */
  maxRecordsPerCall: number;
  /** How many more records the shard may take now (its maxInFlightPerShard less its unacked messages). */
  room(): number;
  /** Wait between calls of a shard that is caught up. */
  pollIntervalMs: number;
  /** Longest one call may take (the source's requestTimeoutMs). */
  requestTimeoutMs: number;
  /** Stops reading the shard. */
  signal: AbortSignal;
  /** Resolves when the source may take more records from this shard (backpressure). */
  gate(): Promise<void>;
  /** Runs one Kinesis call with the source's retry and error translation. */
  call<T>(operation: string, fn: () => Promise<T>): Promise<T>;
  /**
   * The first iterator is held: records put from now on are read. `start` is where the shard
   * starts from now on: `LATEST` pinned to the time the iterator was asked for, so a
   * resumption before any record was delivered skips nothing.
   */
  onOpen(start: StartingPositionParam): void;
  /** The records of one GetRecords call, in order, and how far the shard is behind. */
  onRecords(records: readonly KinesisRecord[], millisBehindLatest: number | undefined): void;
}

/** Reads one shard by GetRecords until it ends (no next iterator) or `signal` aborts. */
export async function pollShard(o: PollOptions): Promise<void> {
  const { signal, shardId } = o;
  const openedAt = new Date();
  let iterator = await shardIterator(o, o.start);
  // LATEST means "from when this source started": should the iterator expire before a record comes, the new one
  // starts at that time, not at a later LATEST that would skip what arrived in between.
  o.onOpen(o.start.Type === 'LATEST' ? { Type: 'AT_TIMESTAMP', Timestamp: openedAt } : o.start);
  // Monotonic times (performance.now()): a wall clock set back or forward would stretch or skip a wait.
  let lastCall = 0;
  // A shard gives 2 MB/s to its readers: after a page of B bytes the next call waits B / 2 MB/s (a 10 MB page,
  // 5 s), as Kinesis would otherwise refuse the calls of those seconds with ProvisionedThroughputExceeded. Counted
  // from the page's arrival, not from the call: the time a call takes to leave (signing, a busy event loop) then
  // cannot bring the next one closer to it than the budget, as Kinesis sees them.
  let budgetUntil = 0;
  while (iterator !== undefined && !signal.aborted) {
    await o.gate();
    if (signal.aborted) return;
    const gap = Math.max(lastCall + MIN_CALL_GAP_MS, budgetUntil) - performance.now();
    if (gap > 0) await pause(gap, signal);
    if (signal.aborted) return;
    // Never fetch far past maxInFlightPerShard: that is what bounds memory under a slow consumer.
    const limit = Math.min(o.maxRecordsPerCall, Math.max(1, o.room()));
    const out = await o.call('GetRecords', async () => {
      lastCall = performance.now();
      try {
        return await awsCall({ what: `kinesisSource: GetRecords of ${shardId}`, timeoutMs: o.requestTimeoutMs, signal }, (abortSignal) =>
          o.client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: limit }), { abortSignal }),
        );
      } catch (error) {
        // Iterators live 5 minutes (a slow consumer can outlast one): get a new one where we are, and try again.
        if (awsErrorName(error) !== 'ExpiredIteratorException') throw error;
        iterator = await shardIterator(o, o.resumePosition());
        throw new ManifoldError(`kinesisSource: the shard iterator of ${shardId} expired; reading on with a new one`, {
          code: ErrorCodes.CONNECTION,
          retryable: true,
          cause: error,
          details: { shardId },
        });
      }
    });
    if (signal.aborted) return;
    const records = out.Records ?? [];
    let bytes = 0;
    for (const record of records) bytes += record.Data?.length ?? 0;
    budgetUntil = performance.now() + (bytes * 1000) / SHARD_READ_BYTES_PER_SECOND;
    o.onRecords(records, out.MillisBehindLatest);
    iterator = out.NextShardIterator ?? undefined;
    if (iterator !== undefined && records.length === 0 && (out.MillisBehindLatest ?? 0) === 0) await pause(o.pollIntervalMs, signal);
  }
}

async function shardIterator(o: PollOptions, position: StartingPositionParam): Promise<string | undefined> {
  const input: GetShardIteratorCommandInput = {
    ...o.stream.params,
    ShardId: o.shardId,
    ShardIteratorType: position.Type,
  };
  if (position.SequenceNumber !== undefined) input.StartingSequenceNumber = position.SequenceNumber;
  if (position.Timestamp !== undefined) input.Timestamp = position.Timestamp;
  const out = await o.call('GetShardIterator', () =>
    awsCall({ what: `kinesisSource: GetShardIterator of ${o.shardId}`, timeoutMs: o.requestTimeoutMs, signal: o.signal }, (abortSignal) =>
      o.client.send(new GetShardIteratorCommand(input), { abortSignal }),
    ),
  );
  return out.ShardIterator;
}

async function pause(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch {
    // Stopped: the caller checks the signal.
  }
}
