/**
 * The Checkpointer interface that checkpointing sources (Kinesis) store their
 * progress through, and the in-memory implementation.
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

function copy(checkpoint: Checkpoint): Checkpoint {
  return checkpoint.subSequenceNumber === undefined
    ? { sequenceNumber: checkpoint.sequenceNumber }
    : { sequenceNumber: checkpoint.sequenceNumber, subSequenceNumber: checkpoint.subSequenceNumber };
}

/** A {@link Checkpointer} that keeps checkpoints in memory, with a view for tests and tooling. */
export interface MemoryCheckpointer extends Checkpointer {
  /** A copy of what is stored for `scope`. */
  snapshot(scope: string): Record<string, Checkpoint>;
}

/**
 * Keeps checkpoints in this process's memory: a restarted source in the same
 * process resumes, a restarted process starts over. The default of
 * `kinesisSource`; for restarts across processes use {@link fileCheckpointer}
 * (one process) or a shared store.
 *
 * @example
 * ```ts
 * const checkpointer = memoryCheckpointer();
 * const source = kinesisSource({ streamName: 'orders', checkpointer });
 * ```
 */
export function memoryCheckpointer(): MemoryCheckpointer {
  const scopes = new Map<string, Map<string, Checkpoint>>();
  return {
    async load(scope) {
      return this.snapshot(scope);
    },
    async store(scope, checkpoints) {
      let shards = scopes.get(scope);
      if (!shards) {
        shards = new Map();
        scopes.set(scope, shards);
      }
      for (const [shardId, checkpoint] of Object.entries(checkpoints)) shards.set(shardId, copy(checkpoint));
    },
    snapshot(scope) {
      const out: Record<string, Checkpoint> = {};
      for (const [shardId, checkpoint] of scopes.get(scope) ?? []) out[shardId] = copy(checkpoint);
      return out;
    },
  };
}
