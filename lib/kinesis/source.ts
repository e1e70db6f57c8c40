import { Readable, addAbortSignal } from 'node:stream';
import { DescribeStreamSummaryCommand, type KinesisClient, type KinesisClientConfig, type _Record as KinesisRecord } from '@aws-sdk/client-kinesis';
import { SHARD_END, type Checkpoint, type Checkpointer } from './checkpoint.js';
import { memoryCheckpointer } from './memory-checkpointer.js';
import { AckTracker, closeTimeoutError } from '../core/acks.js';
import { awsCall, type AwsConnection, type AwsTimeouts } from '../core/aws.js';
import { ErrorCodes, ManifoldError, describe, isRetryable, toError } from '../core/errors.js';
import { emitToFlowing } from '../core/hand-over.js';
import { nackReason, type Message } from '../core/message.js';
import { conflictingOptions } from '../core/options.js';
import { resolveRetry, withRetry, type ResolvedRetry, type RetryEvent } from '../core/retry.js';
import { kinesisError, resolveClient, resolveStream, type StreamRef } from './client.js';
import { openAggregate, type AggregateCursor, type MalformedFault } from './deaggregate.js';
import { deregisterConsumer, ensureConsumer, subscribeShard } from './fan-out.js';
import { kinesisSourceOptions, type KinesisSourceOptions } from './options.js';
import { checkpointKey, leaseStartParam, resumeFrom, type StartingPosition, type StartingPositionParam } from './positions.js';
import { pollShard } from './polling.js';
import { listShards, parentsDone, type ShardInfo } from './shards.js';
import type { CoordinatedSource, GrantedShard, LeaseEvent, NewShard, ShardCoordinator } from './coordinator.js';

export type { KinesisSourceOptions } from './options.js';

/** The `'checkpoint'` event: a shard's progress was stored. `sequenceNumber` is {@link SHARD_END} for a finished shard. */
export interface CheckpointEvent extends Checkpoint {
  shardId: string;
}

/** The `'lag'` event: how far a shard's reading is behind its newest record. */
export interface LagEvent {
  shardId: string;
  millisBehindLatest: number;
}

/**
 * The `'malformed'` event: a record starts with the KPL magic bytes but is not a valid aggregate
 * (too short, an MD5 digest that does not match, a protobuf that does not decode). With
 * `malformedAggregates: 'reject'` (the default) its bytes are delivered as one message whose
 * `meta.malformed` is `reason`, which flow() and the command hand to the error policy.
 */
export interface MalformedEvent {
  shardId: string;
  sequenceNumber: string;
  fault: MalformedFault;
  reason: string;
  /** Size of the record's data. */
  bytes: number;
}

/** The `'shard'` event: a shard started or finished being read. */
export interface ShardEvent {
  shardId: string;
  /** `'stopped'`: no longer read here (its lease was lost or handed over). */
  state: 'reading' | 'ended' | 'stopped';
  parents: string[];
}

const WHERE = 'kinesisSource';

/**
 * Reads a Kinesis stream as an object-mode Readable of Messages, every shard
 * at once, by polling (GetRecords) or, with `consumerName`, by enhanced
 * fan-out (SubscribeToShard).
 *
 * - A child shard is read only after its parents are read to their end, so
 *   per-key order survives splits and merges.
 * - Progress is checkpointed per shard at the highest contiguous acked record,
 *   every `checkpointIntervalMs` and on `close()`; a new source over the same
 *   checkpointer resumes after it (at-least-once: unacked messages come again).
 * - KPL aggregated records are split into their user records, one at a time as
 *   there is room: `maxInFlightPerShard` and `maxInFlightBytes` count user records.
 *   A record with the KPL magic bytes that does not decode is emitted as
 *   `'malformed'` ({@link MalformedEvent}) and delivered as one message with
 *   `meta.malformed` (the reason), unless `malformedAggregates: 'deliver'`.
 * - Memory: a shard stops fetching while it has `maxInFlightPerShard` messages
 *   past its checkpoint, or while the source holds `maxInFlightBytes` of
 *   unacked payload plus records fetched and not yet handed out.
 * - Each Message has `data`, `key` (partition key), `timestamp` (approximate
 *   arrival, ms) and `meta` `{ shardId, sequenceNumber, subSequenceNumber }`.
 *
 * Events: `'ready'` (shards found, reading), `'lag'` ({@link LagEvent}),
 * `'checkpoint'` ({@link CheckpointEvent}), `'shard'` ({@link ShardEvent}),
 * `'retry'` ({@link RetryEvent} plus `operation`), `'subscribe'` (enhanced fan-out: a
 * subscription started, `{ shardId, position, sequenceNumber }`), `'nack'` (a nacked message holds its shard's
 * checkpoint back until a restart redelivers it), `'malformed'` ({@link MalformedEvent}), `'warning'` (close timed out; with a coordinator, also a
 * lease table briefly unreachable), `'lease'` ({@link LeaseEvent}, with a coordinator).
 *
 * With `coordinator` (e.g. {@link dynamoLeases}), several processes share the
 * stream: each reads the shards leased to it and checkpoints into the leases;
 * `close()` stores the final checkpoints and then releases the leases.
 *
 * @example
 * ```ts
 * const source = kinesisSource({
 *   streamName: 'orders',
 *   startingPosition: 'TRIM_HORIZON',
 *   checkpointer: fileCheckpointer('./orders.checkpoints.json'),
 * });
 * await pipeline(source, map((m) => m.data.toString().toUpperCase()), stdoutSink());
 * ```
 */
export function kinesisSource(options: KinesisSourceOptions): KinesisSource {
  return new KinesisSource(options);
}

interface ShardState extends ShardInfo {
  /** `'idle'`: known, not leased to us (coordinated); `'draining'`: being handed over. */
  status: 'idle' | 'waiting' | 'reading' | 'draining' | 'ended' | 'finished';
  /** Aborted to stop this shard's reader (the source stopping aborts every one). */
  abort: AbortController;
  /** The running reader, if any. */
  reader: Promise<void> | undefined;
  /** Aborted when this shard's reader or the whole source stops. */
  signal: AbortSignal;
  /** Where to start when the shard is first opened. */
  start: StartingPositionParam;
  /** Resuming inside an aggregated record: skip its user records up to this one. */
  skipThrough: Checkpoint | undefined;
  /** The last record (or user record) handed out: an iterator refresh resumes after it. */
  lastDelivered: Checkpoint | undefined;
  /** Key of the checkpoint last stored, to store only changes. */
  storedKey: string | undefined;
  /** Resolves once the reader holds its first iterator or subscription (or has stopped): records put after that are read. */
  opened: Promise<void>;
  markOpened: () => void;
  /**
   * The records of the last GetRecords page or fan-out event, handed out from `next` on as there is room;
   * the reader fetches again only once they are all out. Handed-out slots are cleared to let them go.
   */
  pending: Array<KinesisRecord | undefined>;
  next: number;
  /** The aggregate at `pending[next]`, handed out one user record at a time. */
  cursor: AggregateCursor | undefined;
  /** Data bytes of `pending` from `next` on. */
  pendingBytes: number;
}

export class KinesisSource extends Readable {
  /** It delivers again what it is nacked (from its checkpoint or the broker's queue): flow()'s error policy relies on it. */
  readonly redelivers = true;
  readonly #stream: StreamRef;
  readonly #client: KinesisClient;
  readonly #ownsClient: boolean;
  readonly #timeouts: AwsTimeouts;
  readonly #startingPosition: StartingPosition;
  readonly #shardIds: ReadonlySet<string> | undefined;
  readonly #checkpointer: Checkpointer;
  readonly #coordinator: ShardCoordinator | undefined;
  readonly #checkpointIntervalMs: number;
  readonly #consumerName: string | undefined;
  readonly #deregisterOnClose: boolean;
  readonly #retry: ResolvedRetry;
  readonly #pollIntervalMs: number;
  readonly #maxRecordsPerCall: number;
  readonly #discoveryIntervalMs: number;
  readonly #resubscribeAfterMs: number;
  readonly #closeTimeoutMs: number;
  readonly #maxInFlightBytes: number;
  readonly #rejectMalformed: boolean;
  readonly #tracker: AckTracker<Checkpoint>;
  /** Aborted to stop every reader (close or destroy); in-flight requests are cancelled with it. */
  readonly #stop = new AbortController();
  readonly #stopped = new Promise<void>((resolve) => this.#stop.signal.addEventListener('abort', () => resolve(), { once: true }));
  readonly #shards = new Map<string, ShardState>();
  readonly #readers = new Set<Promise<void>>();
  #started = false;
  /** push() has not said "full" since the last _read: messages are made only while it has not, so none waits outside the Readable. */
  #flowing = true;
  #ending = false;
  /** Payload bytes of the messages pushed and not yet settled. */
  #inFlightBytes = 0;
  /** Data bytes fetched and not yet handed out, every shard together. */
  #pendingBytes = 0;
  /** Shards with fetched records to hand out, in turn: one that had to stop goes to the back. */
  readonly #feeding = new Set<ShardState>();
  #pumping = false;
  #pumpAgain = false;
  #wakeScheduled = false;
  /** Readers waiting in #gate or for their records to be handed out: woken when anything that bounds them changes. */
  #waiters: Array<() => void> = [];
  #discoveryTimer: NodeJS.Timeout | undefined;
  #checkpointTimer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #discovering: Promise<void> | undefined;
  #rediscover = false;
  #consumerARN: string | undefined;
  #closed: Promise<void> | undefined;
  #clientReleased = false;

  constructor(options: KinesisSourceOptions) {
    const o = kinesisSourceOptions.resolve(options);
    super({ objectMode: true, highWaterMark: o.highWaterMark });
    this.#stream = resolveStream(WHERE, o.streamName, o.streamARN);
    this.#startingPosition = o.startingPosition;
    if (o.shardIds !== undefined) this.#shardIds = new Set(o.shardIds);
    if (typeof this.#startingPosition === 'object' && 'afterSequenceNumber' in this.#startingPosition && this.#shardIds?.size !== 1) {
      conflictingOptions(WHERE, 'startingPosition', 'shardIds', 'must go together: a sequence number belongs to one shard, so afterSequenceNumber needs exactly one shardIds entry');
    }
    this.#checkpointer = o.checkpointer ?? memoryCheckpointer();
    if (o.coordinator !== undefined) {
      if (o.checkpointer !== undefined) conflictingOptions(WHERE, 'coordinator', 'checkpointer', 'cannot be combined: the coordinator stores the checkpoints (in its leases)');
      if (o.shardIds !== undefined) conflictingOptions(WHERE, 'coordinator', 'shardIds', 'cannot be combined: the coordinator decides which shards this source reads');
      this.#coordinator = o.coordinator;
    }
    this.#checkpointIntervalMs = o.checkpointIntervalMs;
    this.#tracker = new AckTracker<Checkpoint>({
      maxInFlight: o.maxInFlightPerShard,
      onNack: (record) => this.emit('nack', { shardId: record.partition, ...record.position, error: record.error }),
    });
    this.#consumerName = o.consumerName;
    this.#deregisterOnClose = o.deregisterOnClose;
    if (this.#deregisterOnClose && this.#consumerName === undefined) {
      conflictingOptions(WHERE, 'deregisterOnClose', 'consumerName', 'go together: only an enhanced fan-out consumer can be deregistered');
    }
    this.#retry = resolveRetry(WHERE, o.retry);
    this.#pollIntervalMs = o.pollIntervalMs;
    this.#maxRecordsPerCall = o.maxRecordsPerCall;
    this.#discoveryIntervalMs = o.shardDiscoveryIntervalMs;
    this.#resubscribeAfterMs = o.resubscribeAfterMs;
    this.#closeTimeoutMs = o.closeTimeoutMs;
    this.#maxInFlightBytes = o.maxInFlightBytes;
    this.#rejectMalformed = o.malformedAggregates === 'reject';
    // The client comes last: nothing may throw after we built one, or it would leak.
    const { client, owned, timeouts } = resolveClient(WHERE, o as AwsConnection<KinesisClient, KinesisClientConfig['credentials']>);
    this.#client = client;
    this.#ownsClient = owned;
    this.#timeouts = timeouts;
    if (o.signal) addAbortSignal(o.signal, this);
  }

  /** The checkpointer scope: checkpoints of a stream are kept under its name. */
  get scope(): string {
    return this.#stream.name;
  }

  /** Acks and nacks ignored because their shard was no longer ours (lease lost or handed over) when they came; its next owner reads those records again. */
  get lateSettles(): number {
    return this.#tracker.lateSettles;
  }

  /** Unacked messages, per shard or in total. */
  inFlight(shardId?: string): number {
    return this.#tracker.inFlight(shardId);
  }

  /** Payload bytes of the unacked messages (what `maxInFlightBytes` bounds, with {@link pendingBytes}). */
  get inFlightBytes(): number {
    return this.#inFlightBytes;
  }

  /** Data bytes fetched from Kinesis and not yet handed out as messages. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /**
   * Figures for monitoring (the CLI's /metrics and /readyz): shards this source is reading
   * (`kinesis_shards_reading`) and, with a coordinator that can tell (such as {@link dynamoLeases}),
   * the shard leases this process holds (`kinesis_leases_held`).
   */
  gauges(): Record<string, number> {
    let reading = 0;
    for (const shard of this.#shards.values()) if (shard.status === 'reading') reading += 1;
    const out: Record<string, number> = { kinesis_shards_reading: reading, kinesis_in_flight_bytes: this.#inFlightBytes + this.#pendingBytes };
    const held = (this.#coordinator as { held?: () => string[] } | undefined)?.held;
    if (typeof held === 'function') out.kinesis_leases_held = held.call(this.#coordinator).length;
    return out;
  }

  override _read(): void {
    this.#flowing = true;
    this.#pump();
    if (this.#flowing) this.#wakeWaiters();
    if (!this.#started) {
      this.#started = true;
      this.#start().catch((error: unknown) => this.#fail(error));
    }
  }

  #wakeWaiters(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** After a settle (or a lease change): room may have opened. Once per turn, not once per ack. */
  #scheduleWake(): void {
    if (this.#wakeScheduled) return;
    this.#wakeScheduled = true;
    queueMicrotask(() => {
      this.#wakeScheduled = false;
      this.#pump();
      this.#wakeWaiters();
    });
  }

  /** Ends the stream once closing (what was handed out is in the Readable's buffer). */
  #end(): void {
    if (this.#ending && !this.destroyed && !this.readableEnded) this.push(null);
  }

  #fail(error: unknown): void {
    if (this.#stop.signal.aborted && !this.destroyed && this.#closed) return;
    if (!this.destroyed) this.destroy(toError(error));
  }

  get #stopping(): boolean {
    return this.#stop.signal.aborted;
  }

  async #call<T>(operation: string, fn: () => Promise<T>, details: Record<string, unknown> = {}, signal = this.#stop.signal): Promise<T> {
    return withRetry(
      `${WHERE}: ${operation} on ${JSON.stringify(this.#stream.label)}`,
      async () => {
        try {
          return await fn();
        } catch (error) {
          throw kinesisError(WHERE, operation, this.#stream, error, details);
        }
      },
      this.#retry,
      (event: RetryEvent) => this.emit('retry', { ...event, operation, ...details }),
      signal,
    );
  }

  async #start(): Promise<void> {
    const summary = await this.#call('DescribeStreamSummary', () =>
      awsCall({ what: `${WHERE}: DescribeStreamSummary of ${JSON.stringify(this.#stream.label)}`, timeoutMs: this.#timeouts.requestTimeoutMs, signal: this.#stop.signal }, (abortSignal) => this.#client.send(new DescribeStreamSummaryCommand({ ...this.#stream.params }), { abortSignal })),
    );
    const streamARN = summary.StreamDescriptionSummary?.StreamARN;
    const coordinator = this.#coordinator;
    if (coordinator) await this.#call('lease table setup', () => coordinator.start(this.#coordinated()));
    const loaded = this.#coordinator ? {} : await this.#checkpointer.load(this.scope).catch((error: unknown) => {
      throw new ManifoldError(`${WHERE}: loading checkpoints of ${JSON.stringify(this.scope)} failed: ${describe(error)}`, {
        code: ErrorCodes.IO,
        cause: error,
      });
    });
    if (this.#stopping) return;
    if (this.#consumerName !== undefined) {
      if (!streamARN) throw new ManifoldError(`${WHERE}: DescribeStreamSummary gave no StreamARN for ${JSON.stringify(this.#stream.label)}`, { code: ErrorCodes.DELIVERY });
      this.#consumerARN = await ensureConsumer({
        client: this.#client,
        streamARN,
        consumerName: this.#consumerName,
        call: (operation, fn) => this.#call(operation, fn),
        signal: this.#stop.signal,
        requestTimeoutMs: this.#timeouts.requestTimeoutMs,
      });
    }
    await this.#discover(loaded, true);
    // 'ready' promises that reading has begun: with LATEST, a record put after it must be read, so every shard
    // started now must hold its iterator (or subscription) first.
    const opening = [...this.#shards.values()].filter((s) => s.status === 'reading').map((s) => s.opened);
    await Promise.race([Promise.all(opening), this.#stopped]);
    if (this.#stopping) return;
    this.#discoveryTimer = setInterval(() => this.#requestDiscovery(), this.#discoveryIntervalMs);
    this.#checkpointTimer = setInterval(() => this.#flushInBackground(), this.#checkpointIntervalMs);
    this.emit('ready', { shards: [...this.#shards.values()].filter((s) => s.status === 'reading').map((s) => s.shardId) });
    this.#maybeEndRestricted();
  }

  #requestDiscovery(): void {
    if (this.#stopping) return;
    if (this.#discovering) {
      this.#rediscover = true;
      return;
    }
    this.#discovering = this.#discover(undefined, false)
      .catch((error: unknown) => this.#fail(error))
      .finally(() => {
        this.#discovering = undefined;
        if (this.#rediscover) {
          this.#rediscover = false;
          this.#requestDiscovery();
        }
      });
  }

  /** Lists the shards, adds the new ones, and starts every shard whose parents are done. */
  async #discover(loaded: Record<string, Checkpoint> | undefined, initial: boolean): Promise<void> {
    const listed = await this.#call('ListShards', () => listShards(this.#client, this.#stream, this.#stop.signal, this.#timeouts.requestTimeoutMs));
    if (this.#stopping) return;
    if (initial && this.#shardIds) {
      const missing = [...this.#shardIds].filter((id) => !listed.some((s) => s.shardId === id));
      if (missing.length > 0) {
        throw new ManifoldError(`${WHERE}: options.shardIds names shard(s) ${missing.join(', ')} that stream ${JSON.stringify(this.#stream.label)} does not have`, {
          code: ErrorCodes.NOT_FOUND,
          details: { option: 'shardIds', shardIds: missing },
        });
      }
    }
    // Coordinated: every listed shard goes to sync(), which creates the leases missing (a failed sync is made up next time).
    const listedIds = new Set(listed.map((s) => s.shardId));
    const byId = new Map(listed.map((s) => [s.shardId, s]));
    // Whether a shard's parent is read by this source, from a stored checkpoint or (transitively) from its start because its
    // own parent was: then the shard must be read from its start too, or the records between the two are skipped.
    const readMemo = new Map<string, boolean>();
    const isRead = (shardId: string): boolean => {
      const known = readMemo.get(shardId);
      if (known !== undefined) return known;
      readMemo.set(shardId, false);
      const info = byId.get(shardId);
      const read = loaded?.[shardId] !== undefined || (info !== undefined && readParent(info));
      readMemo.set(shardId, read);
      return read;
    };
    const readParent = (info: ShardInfo): boolean => info.parents.some(isRead);
    const leased: NewShard[] = this.#coordinator ? listed.map((info) => this.#leaseStart(info, info.parents.some((p) => listedIds.has(p)))) : [];
    for (const info of listed) {
      const known = this.#shards.get(info.shardId);
      if (known) {
        // A split or merge closes a shard we are reading: enhanced fan-out needs to know to find its end.
        known.closed = info.closed;
        continue;
      }
      if (this.#shardIds && !this.#shardIds.has(info.shardId)) continue;
      if (this.#coordinator) {
        this.#shards.set(info.shardId, { ...this.#newState(info), status: 'idle' });
        continue;
      }
      const checkpoint = loaded?.[info.shardId];
      const state: ShardState = { ...this.#newState(info), storedKey: checkpointKey(checkpoint) };
      if (checkpoint?.sequenceNumber === SHARD_END) state.status = 'finished';
      else if (checkpoint) {
        Object.assign(state, resumeFrom(checkpoint));
        this.#tracker.setCommitted(info.shardId, checkpoint);
      } else if (initial && readParent(info)) {
        // A child of a shard this source has read (or will read from a checkpoint) continues where the parent ended:
        // its first record follows the parent's last, whatever startingPosition says about shards seen for the first time.
        state.start = { Type: 'TRIM_HORIZON' };
      } else if (initial) {
        const position = this.#startingPosition;
        if (position === 'LATEST') {
          // A closed shard gets no new records: under LATEST there is nothing in it to read.
          if (info.closed) state.status = 'finished';
          else state.start = { Type: 'LATEST' };
        } else if (position === 'TRIM_HORIZON') state.start = { Type: 'TRIM_HORIZON' };
        else if ('timestamp' in position) state.start = { Type: 'AT_TIMESTAMP', Timestamp: new Date(position.timestamp) };
        else state.start = { Type: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: position.afterSequenceNumber };
      }
      this.#shards.set(info.shardId, state);
    }
    const coordinator = this.#coordinator;
    if (coordinator) {
      await this.#call('lease table sync', () => coordinator.sync(leased));
    } else this.#startReady();
  }

  #newState(info: ShardInfo): ShardState {
    return {
      ...info,
      status: 'waiting',
      abort: new AbortController(),
      reader: undefined,
      signal: this.#stop.signal,
      start: { Type: 'TRIM_HORIZON' },
      skipThrough: undefined,
      lastDelivered: undefined,
      storedKey: undefined,
      opened: Promise.resolve(),
      markOpened: () => {},
      pending: [],
      next: 0,
      cursor: undefined,
      pendingBytes: 0,
    };
  }

  /**
   * Where a shard leased for the first time starts, fixed in its lease: a child
   * of a listed shard at its start; others by startingPosition, with 'LATEST'
   * pinned to now so a lease changing hands skips nothing.
   */
  #leaseStart(info: ShardInfo, isChild: boolean): NewShard {
    const position = this.#startingPosition;
    if (isChild || position === 'TRIM_HORIZON') return { ...info, start: { type: 'TRIM_HORIZON' }, finished: false };
    if (position === 'LATEST') return { ...info, start: { type: 'AT_TIMESTAMP', timestamp: Date.now() }, finished: info.closed };
    // afterSequenceNumber needs shardIds, which a coordinator excludes.
    return { ...info, start: { type: 'AT_TIMESTAMP', timestamp: (position as { timestamp: number }).timestamp }, finished: false };
  }

  #startReady(): void {
    if (this.#stopping || this.#coordinator) return;
    const isKnown = (id: string): boolean => this.#shards.has(id);
    const isDone = (id: string): boolean => {
      const status = this.#shards.get(id)?.status;
      return status === 'ended' || status === 'finished';
    };
    for (const shard of this.#shards.values()) {
      if (shard.status === 'waiting' && parentsDone(shard, isKnown, isDone)) this.#startReader(shard);
    }
  }

  #startReader(shard: ShardState): void {
    shard.status = 'reading';
    shard.abort = new AbortController();
    const stopped = AbortSignal.any([this.#stop.signal, shard.abort.signal]);
    shard.signal = stopped;
    stopped.addEventListener('abort', () => this.#wakeWaiters(), { once: true });
    let markOpened!: () => void;
    shard.opened = new Promise<void>((resolve) => {
      markOpened = resolve;
    });
    shard.markOpened = markOpened;
    this.emit('shard', { shardId: shard.shardId, state: 'reading', parents: shard.parents } satisfies ShardEvent);
    const reader = (this.#consumerARN === undefined ? this.#poll(shard) : this.#subscribe(shard)).then(
      () => {
        markOpened();
        if (stopped.aborted) return;
        shard.status = 'ended';
        this.emit('shard', { shardId: shard.shardId, state: 'ended', parents: shard.parents } satisfies ShardEvent);
        // Its children may exist already (start them) or be about to be listed.
        this.#startReady();
        this.#requestDiscovery();
        this.#maybeEndRestricted();
        // Coordinated: the SHARD_END checkpoint is what lets any worker take the children.
        if (this.#coordinator) this.#flushInBackground();
      },
      (error: unknown) => {
        markOpened();
        if (!stopped.aborted) this.#fail(error);
      },
    );
    shard.reader = reader;
    this.#readers.add(reader);
    reader.finally(() => this.#readers.delete(reader)).catch(() => {});
  }

  #flushInBackground(): void {
    this.#flush().catch((error: unknown) => {
      // Coordinated, a lease table that is briefly unreachable is not fatal: the next flush tries again.
      if (this.#coordinator && isRetryable(error)) this.emit('warning', toError(error));
      else this.#fail(error);
    });
  }

  /** The face this source shows its coordinator. */
  #coordinated(): CoordinatedSource {
    const isActive = (): boolean => !this.#stopping && !this.destroyed;
    return {
      streamName: this.#stream.name,
      get active() {
        return isActive();
      },
      acquire: (shard) => this.#acquire(shard),
      revoke: (shardId) => this.#revoke(shardId),
      drain: (shardId, timeoutMs) => this.#drainShard(shardId, timeoutMs),
      lease: (event: LeaseEvent) => this.emit('lease', event),
      warn: (error) => this.emit('warning', error),
      fail: (error) => this.#fail(error),
    };
  }

  /** Coordinated: a lease was gained; read the shard from its checkpoint (or its lease's start). */
  #acquire(granted: GrantedShard): void {
    if (this.#stopping) return;
    let shard = this.#shards.get(granted.shardId);
    if (!shard) {
      // Leased before this worker listed it (a child another worker found first).
      shard = { ...this.#newState({ shardId: granted.shardId, parents: granted.parents, closed: false }), status: 'idle' };
      this.#shards.set(granted.shardId, shard);
    }
    if (shard.status === 'reading' || shard.status === 'draining') return;
    // Whatever this worker tracked of the shard before is stale: the lease row holds the truth.
    this.#tracker.remove(shard.shardId);
    shard.lastDelivered = undefined;
    shard.skipThrough = undefined;
    shard.storedKey = checkpointKey(granted.checkpoint);
    if (granted.checkpoint?.sequenceNumber === SHARD_END) {
      shard.status = 'finished';
      return;
    }
    if (granted.checkpoint) {
      Object.assign(shard, resumeFrom(granted.checkpoint));
      this.#tracker.setCommitted(shard.shardId, granted.checkpoint);
    } else {
      shard.start = leaseStartParam(granted.start);
    }
    this.#startReader(shard);
  }

  /** Stops a shard's reader; the shard is no longer ours to read or checkpoint. */
  #stopShard(shard: ShardState): void {
    shard.abort.abort(new ManifoldError(`${WHERE}: stopped reading ${shard.shardId}`, { code: ErrorCodes.ABORTED }));
    this.#dropPending(shard);
    shard.status = 'idle';
    this.emit('shard', { shardId: shard.shardId, state: 'stopped', parents: shard.parents } satisfies ShardEvent);
  }

  /** Coordinated: the lease is gone; stop at once (another worker reads the shard from its checkpoint). */
  #revoke(shardId: string): void {
    const shard = this.#shards.get(shardId);
    if (!shard || shard.status === 'idle' || shard.status === 'finished') return;
    this.#stopShard(shard);
    this.#tracker.remove(shardId);
    // Not handed out yet: nobody has seen these, and the next owner reads them again.
    this.#dropPending(shard);
    this.#scheduleWake();
  }

  /** Coordinated handoff: stop reading, let what was delivered be acked, return the checkpoint to hand over. */
  async #drainShard(shardId: string, timeoutMs: number): Promise<Checkpoint | undefined> {
    const shard = this.#shards.get(shardId);
    if (!shard) return undefined;
    if (shard.status === 'reading' || shard.status === 'ended') {
      shard.abort.abort(new ManifoldError(`${WHERE}: handing ${shardId} over`, { code: ErrorCodes.ABORTED }));
      shard.status = 'draining';
      await shard.reader?.catch(() => {});
      // Fetched but not handed out: drop them and let the next owner read them, rather than wait for the consumer to get to them.
      // They are the newest of the shard, so the checkpoint can still reach every message pushed before them.
      this.#dropPending(shard);
      if (!(await this.#tracker.whenIdle(timeoutMs, shardId))) {
        this.emit('warning', closeTimeoutError(`${WHERE}: handing ${shardId} over`, timeoutMs, this.#tracker.inFlight(shardId)));
      }
    }
    const checkpoint = this.#tracker.remove(shardId);
    this.#scheduleWake();
    if (shard.status === 'draining') {
      shard.status = 'idle';
      this.emit('shard', { shardId, state: 'stopped', parents: shard.parents } satisfies ShardEvent);
    }
    return checkpoint;
  }

  /** With `shardIds`, the source ends once each of its shards is read to its end. */
  #maybeEndRestricted(): void {
    if (!this.#shardIds || this.#stopping) return;
    for (const shard of this.#shards.values()) if (shard.status === 'waiting' || shard.status === 'reading') return;
    this.close().catch((error: unknown) => this.#fail(error));
  }

  /**
   * Resolves when the shard may fetch again, or on stop: the consumer wants more, the records of the
   * last fetch are all handed out, the shard is below `maxInFlightPerShard`, and the source holds less
   * than `maxInFlightBytes` (unacked plus fetched).
   */
  async #gate(shard: ShardState): Promise<void> {
    while (!shard.signal.aborted && !this.#mayFetch(shard)) await this.#wait();
  }

  #mayFetch(shard: ShardState): boolean {
    return (
      this.#flowing &&
      shard.next >= shard.pending.length &&
      this.#tracker.room(shard.shardId) > 0 &&
      this.#inFlightBytes + this.#pendingBytes < this.#maxInFlightBytes
    );
  }

  /**
   * Until the next wake: a settle, a _read, a shard done handing out, or a stop (each reader's signal wakes
   * the waiters when it aborts). Not raced against a promise of the stop: every race would leave a reaction
   * on that long-lived promise, one per wake, for as long as the shard is read.
   */
  #wait(): Promise<void> {
    return new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  /**
   * Resolves once every record the reader fetched is handed out (or on stop). A reader that found
   * its shard's end waits for it: the shard counts as ended (its children start, SHARD_END may be
   * stored) only then.
   */
  async #handedOut(shard: ShardState): Promise<void> {
    while (!shard.signal.aborted && shard.next < shard.pending.length) await this.#wait();
  }

  /** Takes the records of one GetRecords page or fan-out event; they are handed out as there is room. */
  #deliver(shard: ShardState, records: readonly KinesisRecord[]): void {
    if (shard.signal.aborted || records.length === 0) return;
    for (const record of records) {
      shard.pending.push(record);
      const size = record.Data?.length ?? 0;
      shard.pendingBytes += size;
      this.#pendingBytes += size;
    }
    this.#feeding.add(shard);
    this.#pump();
  }

  /**
   * Hands out fetched records, shard by shard, while the consumer wants more and each shard has room:
   * below `maxInFlightPerShard` messages past its checkpoint and the source below `maxInFlightBytes`
   * of unacked payload. Only as many messages are made as can be pushed, so what a GetRecords page
   * or an aggregate holds is never all in memory as messages at once.
   */
  #pump(): void {
    if (this.#pumping) {
      this.#pumpAgain = true;
      return;
    }
    this.#pumping = true;
    try {
      do {
        this.#pumpAgain = false;
        for (const shard of [...this.#feeding]) {
          if (!this.#flowing || this.#ending || this.destroyed) return;
          this.#feed(shard);
        }
      } while (this.#pumpAgain);
    } finally {
      this.#pumping = false;
    }
  }

  #feed(shard: ShardState): void {
    if (shard.signal.aborted) {
      this.#dropPending(shard);
      return;
    }
    while (this.#flowing && !this.#ending && this.#tracker.room(shard.shardId) > 0 && this.#inFlightBytes < this.#maxInFlightBytes) {
      if (!this.#handOut(shard)) break;
    }
    this.#feeding.delete(shard);
    if (shard.next < shard.pending.length) this.#feeding.add(shard);
    else {
      shard.pending = [];
      shard.next = 0;
      // Its reader may fetch again.
      this.#wakeWaiters();
    }
  }

  /** Hands out the shard's next message (a plain record, a user record, a malformed record); false when nothing is left. */
  #handOut(shard: ShardState): boolean {
    for (;;) {
      const record = shard.pending[shard.next];
      if (record === undefined) return false;
      const sequenceNumber = record.SequenceNumber!;
      const timestamp = record.ApproximateArrivalTimestamp?.getTime();
      const cursor = shard.cursor;
      if (cursor !== undefined) {
        const index = cursor.index;
        const user = cursor.next();
        if (user === undefined) {
          // No user record left to hand out (an empty aggregate, or all of them processed before a restart).
          shard.lastDelivered = { sequenceNumber };
          this.#finishRecord(shard, record);
          continue;
        }
        // The last user record completes the aggregate: its checkpoint resumes after the whole record.
        const last = cursor.done;
        const checkpoint: Checkpoint = last ? { sequenceNumber } : { sequenceNumber, subSequenceNumber: index };
        // A copy: a view would keep the whole aggregate alive for as long as this one message is unacked.
        this.#emitMessage(shard, checkpoint, Buffer.from(user.data), user.partitionKey, timestamp, index, undefined);
        if (last) this.#finishRecord(shard, record);
        return true;
      }
      const raw = record.Data ?? new Uint8Array(0);
      const view = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
      const opened = openAggregate(view);
      if (opened === undefined || opened.malformed) {
        if (opened !== undefined) {
          this.emit('malformed', { shardId: shard.shardId, sequenceNumber, fault: opened.fault, reason: opened.reason, bytes: view.length } satisfies MalformedEvent);
        }
        shard.skipThrough = undefined;
        this.#emitMessage(shard, { sequenceNumber }, Buffer.from(view), record.PartitionKey, timestamp, 0, this.#rejectMalformed ? opened?.reason : undefined);
        this.#finishRecord(shard, record);
        return true;
      }
      const skip = shard.skipThrough;
      if (skip && skip.sequenceNumber === sequenceNumber) opened.skip(skip.subSequenceNumber! + 1);
      shard.skipThrough = undefined;
      shard.cursor = opened;
    }
  }

  /** The record at `next` is handed out: let it go. */
  #finishRecord(shard: ShardState, record: KinesisRecord): void {
    const size = record.Data?.length ?? 0;
    shard.pendingBytes -= size;
    this.#pendingBytes -= size;
    shard.pending[shard.next] = undefined;
    shard.next += 1;
    shard.cursor = undefined;
  }

  /** Forgets what the shard fetched and did not hand out (stopped, revoked, handed over, closing): nobody saw it, and it is read again. */
  #dropPending(shard: ShardState): void {
    this.#pendingBytes -= shard.pendingBytes;
    shard.pendingBytes = 0;
    shard.pending = [];
    shard.next = 0;
    shard.cursor = undefined;
    this.#feeding.delete(shard);
  }

  #emitMessage(
    shard: ShardState,
    checkpoint: Checkpoint,
    data: Buffer,
    key: string | undefined,
    timestamp: number | undefined,
    subSequenceNumber: number,
    malformed: string | undefined,
  ): void {
    const ticket = this.#tracker.track(shard.shardId, checkpoint);
    shard.lastDelivered = checkpoint;
    const size = data.length;
    this.#inFlightBytes += size;
    const meta: Record<string, unknown> = { shardId: shard.shardId, sequenceNumber: checkpoint.sequenceNumber, subSequenceNumber };
    if (malformed !== undefined) meta.malformed = malformed;
    // A literal with settle-once closures, as createMessage() makes, but one pair that also gives the bytes back:
    // this is the per-user-record path, and a KPL aggregate can hold 100,000 of them.
    let settled = false;
    const message: Message = {
      data,
      key,
      timestamp,
      meta,
      ack: () => {
        if (settled) return;
        settled = true;
        ticket.ack();
        this.#settled(size);
      },
      nack: (error?: Error) => {
        if (settled) return;
        settled = true;
        ticket.nack(nackReason(error));
        this.#settled(size);
      },
    };
    if (!emitToFlowing(this, message) && !this.push(message)) this.#flowing = false;
  }

  #settled(size: number): void {
    this.#inFlightBytes -= size;
    this.#scheduleWake();
  }

  /** Where a reader picks up after an interruption (expired iterator, ended subscription). */
  #resumePosition(shard: ShardState): StartingPositionParam {
    const last = shard.lastDelivered;
    if (last === undefined) return shard.start;
    // A reader asks only once every record it fetched is handed out, so the last one handed out is complete.
    return { Type: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: last.sequenceNumber };
  }

  /** Polling: GetRecords in a loop, paced, until the shard ends or the source stops. */
  async #poll(shard: ShardState): Promise<void> {
    await pollShard({
      client: this.#client,
      stream: this.#stream,
      shardId: shard.shardId,
      start: shard.start,
      resumePosition: () => this.#resumePosition(shard),
      maxRecordsPerCall: this.#maxRecordsPerCall,
      room: () => this.#tracker.room(shard.shardId),
      pollIntervalMs: this.#pollIntervalMs,
      requestTimeoutMs: this.#timeouts.requestTimeoutMs,
      signal: shard.signal,
      gate: () => this.#gate(shard),
      call: (operation, fn) => this.#call(operation, fn, { shardId: shard.shardId }, shard.signal),
      onOpen: (start) => {
        // LATEST is pinned to when the iterator was asked for: a resumption before any record was delivered goes there.
        shard.start = start;
        shard.markOpened();
      },
      onRecords: (records, millisBehindLatest) => {
        this.#deliver(shard, records);
        if (millisBehindLatest !== undefined) this.emit('lag', { shardId: shard.shardId, millisBehindLatest } satisfies LagEvent);
      },
    });
    await this.#handedOut(shard);
  }

  /** Enhanced fan-out: one subscription after another until the shard ends or the source stops. */
  async #subscribe(shard: ShardState): Promise<void> {
    await subscribeShard({
      client: this.#client,
      consumerARN: this.#consumerARN!,
      shardId: shard.shardId,
      start: shard.start,
      resumePosition: () => this.#resumePosition(shard),
      retry: this.#retry,
      resubscribeAfterMs: this.#resubscribeAfterMs,
      requestTimeoutMs: this.#timeouts.requestTimeoutMs,
      signal: shard.signal,
      gate: () => this.#gate(shard),
      isClosed: () => shard.closed,
      onEvent: (records, millisBehindLatest) => {
        this.#deliver(shard, records);
        if (millisBehindLatest !== undefined) this.emit('lag', { shardId: shard.shardId, millisBehindLatest } satisfies LagEvent);
      },
      onRetry: (event) => this.emit('retry', { ...event, operation: 'SubscribeToShard', shardId: shard.shardId }),
      onSubscribe: (position) => {
        shard.markOpened();
        this.emit('subscribe', { shardId: shard.shardId, position: position.Type, sequenceNumber: position.SequenceNumber });
      },
      toError: (error) => kinesisError(WHERE, 'SubscribeToShard', this.#stream, error, { shardId: shard.shardId }),
    });
    await this.#handedOut(shard);
  }

  /** Stores every shard's checkpoint that moved since the last store (one at a time). */
  #flush(): Promise<void> {
    if (this.#flushing) return this.#flushing.then(() => this.#flush());
    const updates: Record<string, Checkpoint> = {};
    for (const shard of this.#shards.values()) {
      // A finished shard holds SHARD_END (or was skipped): its last sequence number must not overwrite that.
      if (shard.status === 'finished') continue;
      // Coordinated, only shards held here are ours to checkpoint (a draining one goes over with its handoff).
      if (this.#coordinator && shard.status !== 'reading' && shard.status !== 'ended') continue;
      let checkpoint = this.#tracker.committed(shard.shardId);
      // A shard read to its end, everything acked: mark it so a restart goes straight to its children.
      if (shard.status === 'ended' && this.#tracker.inFlight(shard.shardId) === 0 && !this.#tracker.isBlocked(shard.shardId)) {
        checkpoint = { sequenceNumber: SHARD_END };
      }
      const key = checkpointKey(checkpoint);
      if (checkpoint !== undefined && key !== shard.storedKey) updates[shard.shardId] = checkpoint;
    }
    const entries = Object.entries(updates);
    if (entries.length === 0) return Promise.resolve();
    this.#flushing = this.#store(updates)
      .then(
        (stored) => {
          for (const [shardId, checkpoint] of entries) {
            if (!stored.has(shardId)) continue;
            const shard = this.#shards.get(shardId)!;
            shard.storedKey = checkpointKey(checkpoint);
            if (checkpoint.sequenceNumber === SHARD_END) shard.status = 'finished';
            this.emit('checkpoint', { shardId, ...checkpoint } satisfies CheckpointEvent);
          }
        },
        (error: unknown) => {
          throw new ManifoldError(`${WHERE}: storing checkpoints of ${JSON.stringify(this.scope)} failed: ${describe(error)}`, {
            code: ErrorCodes.IO,
            retryable: isRetryable(error),
            cause: error,
          });
        },
      )
      .finally(() => {
        this.#flushing = undefined;
      });
    return this.#flushing;
  }

  /** Stores checkpoints through the checkpointer, or the coordinator's leases; resolves the shards stored. */
  async #store(updates: Record<string, Checkpoint>): Promise<Set<string>> {
    const coordinator = this.#coordinator;
    if (!coordinator) {
      await this.#checkpointer.store(this.scope, updates);
      return new Set(Object.keys(updates));
    }
    const stored = new Set<string>();
    const results = await Promise.allSettled(
      Object.entries(updates).map(async ([shardId, checkpoint]) => {
        // False: the lease is gone (the coordinator revoked the shard); its next owner carries on.
        if (await coordinator.checkpoint(shardId, checkpoint)) stored.add(shardId);
      }),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return stored;
  }

  #clearTimers(): void {
    clearInterval(this.#discoveryTimer);
    clearInterval(this.#checkpointTimer);
    this.#discoveryTimer = undefined;
    this.#checkpointTimer = undefined;
  }

  #releaseClient(): void {
    if (this.#clientReleased) return;
    this.#clientReleased = true;
    if (this.#ownsClient) this.#client.destroy();
  }

  /**
   * Graceful stop: stops fetching, ends the stream after what was fetched,
   * waits up to `closeTimeoutMs` for outstanding acks, stores the final
   * checkpoints, deregisters the consumer when `deregisterOnClose`, and
   * releases the client we made. Idempotent. A close that times out emits
   * `'warning'` with a CLOSE_TIMEOUT error; the unacked messages come again
   * after a restart.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#stop.abort(new ManifoldError(`${WHERE}: closed`, { code: ErrorCodes.ABORTED }));
      this.#clearTimers();
      this.#wakeWaiters();
      await Promise.allSettled([...this.#readers, this.#discovering]);
      // The stream ends after what was handed out; what was fetched and not handed out is read again after a restart.
      for (const shard of this.#shards.values()) this.#dropPending(shard);
      this.#ending = true;
      this.#end();
      try {
        const idle = await this.#tracker.whenIdle(this.#closeTimeoutMs);
        if (!idle) this.emit('warning', closeTimeoutError(WHERE, this.#closeTimeoutMs, this.#tracker.inFlight()));
        if (this.#started) await this.#flush();
        // Released only after the final checkpoints, so the next owner starts where we stopped.
        await this.#coordinator?.stop();
        if (this.#deregisterOnClose && this.#consumerARN !== undefined) {
          await deregisterConsumer(this.#client, this.#consumerARN, this.#timeouts.requestTimeoutMs);
        }
      } finally {
        this.#releaseClient();
      }
    })();
    return this.#closed;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // After a graceful close() the stream auto-destroys on 'end' while the final checkpoints are still being stored:
    // 'close' comes after them, so pipeline() and finished() resolve only once they are stored.
    const closing = this.#closed;
    if (closing && !error) {
      closing.then(
        () => callback(null),
        () => callback(null),
      );
      return;
    }
    this.#stop.abort(error ?? new ManifoldError(`${WHERE}: destroyed`, { code: ErrorCodes.ABORTED }));
    this.#clearTimers();
    this.#wakeWaiters();
    for (const shard of this.#shards.values()) this.#dropPending(shard);
    // What is acked is safe to store even now; a failure here must not hide the error that destroyed us.
    const final =
      this.#started && !this.#closed
        ? this.#flush()
            .catch(() => {})
            .then(() => this.#coordinator?.stop())
            .catch(() => {})
        : Promise.resolve();
    final.finally(() => {
      if (!this.#closed) this.#releaseClient();
      callback(error);
    });
  }
}
