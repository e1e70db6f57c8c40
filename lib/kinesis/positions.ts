/**
 * Where reading a shard starts: the `startingPosition` option, the position as
 * GetShardIterator and SubscribeToShard take it, and the positions that
 * checkpoints and leases lead to.
 */
import type { ShardIteratorType } from '@aws-sdk/client-kinesis';
import type { Checkpoint } from './checkpoint.js';
import type { LeaseStart } from './coordinator.js';

/**
 * Where reading starts in a shard that has no checkpoint:
 * - `'LATEST'`: records put after the source starts (closed shards are skipped);
 * - `'TRIM_HORIZON'`: the oldest record kept;
 * - `{ timestamp }`: records arriving at or after that time (a Date or ms since the epoch);
 * - `{ afterSequenceNumber }`: after that record (sequence numbers belong to one shard, so this needs exactly one `shardIds` entry).
 *
 * Shards discovered later (children of a split or merge) are always read from their start.
 */
export type StartingPosition = 'LATEST' | 'TRIM_HORIZON' | { timestamp: Date | number } | { afterSequenceNumber: string };

/** A starting position as GetShardIterator and SubscribeToShard both take it. */
export interface StartingPositionParam {
  Type: ShardIteratorType;
  SequenceNumber?: string;
  Timestamp?: Date;
}

/** What `startingPosition` takes, as messages say it. */
export const STARTING_POSITIONS = "'LATEST', 'TRIM_HORIZON', { timestamp: Date | ms } or { afterSequenceNumber: '<digits>' }";

/** A `startingPosition` value with a timestamp as ms since the epoch; undefined when it is none of {@link STARTING_POSITIONS}. */
export function toStartingPosition(value: unknown): StartingPosition | undefined {
  if (value === 'LATEST' || value === 'TRIM_HORIZON') return value;
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const keys = Object.keys(value);
    const v = value as Record<string, unknown>;
    if (keys.length === 1 && keys[0] === 'timestamp') {
      const ms = v.timestamp instanceof Date ? v.timestamp.getTime() : v.timestamp;
      if (typeof ms === 'number' && Number.isFinite(ms)) return { timestamp: ms };
    }
    if (keys.length === 1 && keys[0] === 'afterSequenceNumber' && typeof v.afterSequenceNumber === 'string' && /^\d+$/.test(v.afterSequenceNumber)) {
      return { afterSequenceNumber: v.afterSequenceNumber };
    }
  }
  return undefined;
}

/** A checkpoint as one string, to tell whether it moved since it was stored. */
export function checkpointKey(checkpoint: Checkpoint | undefined): string | undefined {
  if (checkpoint === undefined) return undefined;
  return checkpoint.subSequenceNumber === undefined ? checkpoint.sequenceNumber : `${checkpoint.sequenceNumber}/${checkpoint.subSequenceNumber}`;
}

/** Where a shard resumes after its checkpoint, and the user records of an aggregate to skip there. */
export function resumeFrom(checkpoint: Checkpoint): { start: StartingPositionParam; skipThrough: Checkpoint | undefined } {
  if (checkpoint.subSequenceNumber === undefined) {
    return { start: { Type: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: checkpoint.sequenceNumber }, skipThrough: undefined };
  }
  // Inside an aggregate: read it again and skip the user records already processed.
  return { start: { Type: 'AT_SEQUENCE_NUMBER', SequenceNumber: checkpoint.sequenceNumber }, skipThrough: checkpoint };
}

/** Where a leased shard without a checkpoint starts: the start fixed in its lease. */
export function leaseStartParam(start: LeaseStart): StartingPositionParam {
  return start.type === 'AT_TIMESTAMP' ? { Type: 'AT_TIMESTAMP', Timestamp: new Date(start.timestamp) } : { Type: 'TRIM_HORIZON' };
}
