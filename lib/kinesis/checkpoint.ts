/**
 * The contract between checkpointing sources (Kinesis) and where they store
 * their progress: the Checkpoint of a shard, the Checkpointer that stores
 * them, and the SHARD_END mark of a shard read to its end.
 */

/**
 * Where a shard's reading resumes. `sequenceNumber` is the last record
 * processed; `subSequenceNumber` is present only when that record was a KPL
 * aggregate of which some user records are still to come (resume inside it).
 * The sequence number {@link SHARD_END} marks a shard read to its end, so its
 * children may be read at once after a restart.
 */
export interface Checkpoint {
  sequenceNumber: string;
  subSequenceNumber?: number;
}

/** The sequence number of a checkpoint that marks a closed shard read to its end. */
export const SHARD_END = 'SHARD_END';

/**
 * Stores per-shard checkpoints. `scope` names what is being read (the stream,
 * plus the consumer when one is given), so one checkpointer can serve several
 * sources. Implementations must make `store` durable before resolving: a
 * source treats a resolved store as committed.
 *
 * @example
 * ```ts
 * const checkpointer: Checkpointer = {
 *   async load(scope) { return JSON.parse((await redis.get(scope)) ?? '{}'); },
 *   async store(scope, checkpoints) { await redis.set(scope, JSON.stringify({ ...(await this.load(scope)), ...checkpoints })); },
 * };
 * ```
 */
export interface Checkpointer {
  /** Every checkpoint stored for `scope`, keyed by shard id (empty when there are none). */
  load(scope: string): Promise<Record<string, Checkpoint>>;
  /** Stores these shards' checkpoints (others of the scope are kept), durably, before resolving. */
  store(scope: string, checkpoints: Readonly<Record<string, Checkpoint>>): Promise<void>;
}

/** Validates a checkpoint read back from storage. */
export function isCheckpoint(value: unknown): value is Checkpoint {
  if (value === null || typeof value !== 'object') return false;
  const { sequenceNumber, subSequenceNumber } = value as Partial<Checkpoint>;
  return (
    typeof sequenceNumber === 'string' &&
    sequenceNumber.length > 0 &&
    (subSequenceNumber === undefined || (Number.isInteger(subSequenceNumber) && subSequenceNumber >= 0))
  );
}
