/**
 * The in-memory {@link Checkpointer}.
 */
import type { Checkpoint, Checkpointer } from './checkpoint.js';

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
