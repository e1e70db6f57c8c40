/**
 * The contract between the Kinesis source and a shard coordinator: something
 * that decides which of a stream's shards this process reads, and where their
 * checkpoints live, when several processes share one stream.
 * {@link dynamoLeases} (a DynamoDB lease table) is the implementation we ship.
 */
import type { Checkpoint } from './checkpoint.js';
import type { ShardInfo } from './shards.js';

/**
 * Where a shard without a checkpoint starts, fixed when its lease is created,
 * so every worker that ever holds it starts at the same place. `'LATEST'` is
 * stored as the time the lease was created, so records put while the lease
 * changes hands are not skipped.
 */
export type LeaseStart = { type: 'TRIM_HORIZON' } | { type: 'AT_TIMESTAMP'; timestamp: number };

/** A shard as the source hands it to {@link ShardCoordinator.sync}: its lineage and where it starts. */
export interface NewShard extends ShardInfo {
  start: LeaseStart;
  /** Nothing will ever be read in it (a closed shard under `'LATEST'`): its lease is created finished. */
  finished: boolean;
}

/** A shard this worker now holds: read it from `checkpoint`, or from `start` when there is none. */
export interface GrantedShard {
  shardId: string;
  parents: string[];
  checkpoint: Checkpoint | undefined;
  start: LeaseStart;
}

/** The `'lease'` event of the source (and of the coordinator). */
export interface LeaseEvent {
  /**
   * - `'gained'`: this worker now holds the shard; `reason` is `'free'` (unowned or released), `'expired'` (its owner
   *   stopped renewing), `'handoff'` (given at our request), `'forced'` (asked for, never handed over, taken) or
   *   `'recovered'` (the table already named this worker: a restart with the same workerId, or a lease it failed to renew in time);
   * - `'stolen'`: this worker handed the shard over to `otherWorker`, who asked for it to balance the load;
   * - `'lost'`: the shard was taken from this worker without a handoff, or its lease could not be renewed in time;
   * - `'released'`: `close()` gave the lease up so another worker can take it at once.
   */
  type: 'gained' | 'stolen' | 'lost' | 'released';
  shardId: string;
  /** This worker. */
  workerId: string;
  /** The previous owner (`'gained'`), the new one (`'stolen'`, and `'lost'` when known). */
  otherWorker?: string;
  reason?: string;
}

/** What a coordinator may ask of the source it serves. */
export interface CoordinatedSource {
  /** The stream's name: a lease table can hold several streams. */
  readonly streamName: string;
  /** False once the source is closing: take no more shards. */
  readonly active: boolean;
  /** Start reading a shard this worker now holds. */
  acquire(shard: GrantedShard): void;
  /** Stop reading a shard at once: its lease is gone. Unacked messages of it are forgotten (their acks are ignored). */
  revoke(shardId: string): void;
  /**
   * Stop reading a shard, wait up to `timeoutMs` for its delivered messages to
   * be acked, and return the checkpoint to hand over with it (undefined: none yet).
   */
  drain(shardId: string, timeoutMs: number): Promise<Checkpoint | undefined>;
  /** Reports a lease event. */
  lease(event: LeaseEvent): void;
  /** Reports a problem the coordinator works around (it keeps going). */
  warn(error: Error): void;
  /** Reports a problem the coordinator cannot work around (the source is destroyed with it). */
  fail(error: Error): void;
}

/**
 * Shares a stream's shards among processes. The source calls `start` once,
 * `sync` whenever it lists the shards, `checkpoint` to store progress of a
 * shard it holds, and `stop` on close or destroy (after its final checkpoints).
 */
export interface ShardCoordinator {
  /** Prepares storage and starts taking shards for `source`. One source per coordinator. */
  start(source: CoordinatedSource): Promise<void>;
  /** Makes sure every listed shard can be leased (new ones get a lease with their start). */
  sync(shards: readonly NewShard[]): Promise<void>;
  /**
   * Stores the checkpoint of a shard this worker holds. Resolves false when
   * the shard is no longer held (the source was told through `revoke`); a
   * {@link SHARD_END} checkpoint finishes the lease and lets its children be taken.
   */
  checkpoint(shardId: string, checkpoint: Checkpoint): Promise<boolean>;
  /** Stops taking and renewing, and releases every lease held. Idempotent. */
  stop(): Promise<void>;
}
