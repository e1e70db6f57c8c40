/**
 * Apache Kafka source: a consumer-group member on @platformatic/kafka that commits, per
 * partition, only the offset after the highest contiguous acked message.
 */
import { Readable } from 'node:stream';
import { Consumer, type MessagesStream, type Message as KafkaMessage } from '@platformatic/kafka';
import { AckTracker, closeTimeoutError, type Delivery } from '../core/acks.js';
import { ErrorCodes, ManifoldError, toError } from '../core/errors.js';
import { emitToFlowing } from '../core/hand-over.js';
import type { Message } from '../core/message.js';
import { invalidOption } from '../core/options.js';
import { RetryingSource } from '../core/retrying-source.js';
import { TOPIC_NAME, kafkaError, resolveConnection, watchTls, clientOptions, type ResolvedConnection } from './connection.js';
import { kafkaSourceOptions, type KafkaSourceOptions } from './options.js';

export type { KafkaSourceOptions } from './options.js';

/** The declared options, with what the factory derives from them. */
interface Resolved extends ReturnType<typeof kafkaSourceOptions.resolve> {
  connection: ResolvedConnection;
  topics: string[];
  groupId: string;
  heartbeatIntervalMs: number;
}

/** A committed position event (`'checkpoint'`). Offsets are the next offset to read, as Kafka stores them. */
export interface KafkaCheckpointEvent {
  reason: 'interval' | 'rebalance' | 'close';
  offsets: Array<{ topic: string; partition: number; offset: string }>;
}

/**
 * How far the group is behind on one partition (`'lag'`, after each interval commit): the partition's
 * end offset (high watermark) minus the group's committed offset, in messages. Without a committed
 * offset yet, the lag counts from where the group starts reading (`startFrom`).
 */
export interface KafkaLagEvent {
  topic: string;
  partition: number;
  lag: number;
  /** The partition's end offset: the offset the next produced record gets. */
  highWatermark: string;
  /** The group's committed offset (the next offset to read), or `'-1'` when it has none. */
  committed: string;
}

/** A nack seen by the source (`'nack'`): the partition's commits stop before it until it is redelivered. */
export interface KafkaNackEvent {
  topic: string;
  partition: number;
  offset: string;
  error: Error | undefined;
}

function resolve(options: KafkaSourceOptions): Resolved {
  const where = 'kafkaSource';
  const o = kafkaSourceOptions.resolve(options);
  // Required options are present once resolve() returned.
  const topics = o.topics!;
  for (const topic of topics) {
    if (!TOPIC_NAME.test(topic)) invalidOption(where, 'topics', 'topic names of letters, digits, ".", "_" and "-" (at most 249)', topic);
  }
  const heartbeatIntervalMs = o.heartbeatIntervalMs ?? Math.min(3000, Math.floor(o.sessionTimeoutMs / 3));
  if (heartbeatIntervalMs >= o.sessionTimeoutMs) {
    throw new ManifoldError(
      `${where}: options.heartbeatIntervalMs (${heartbeatIntervalMs}) must be below options.sessionTimeoutMs (${o.sessionTimeoutMs}), or the group evicts a healthy member`,
      { code: ErrorCodes.INVALID_OPTION, details: { option: 'heartbeatIntervalMs', conflictsWith: 'sessionTimeoutMs' } },
    );
  }
  return {
    ...o,
    connection: resolveConnection(where, o),
    topics: [...new Set(topics)],
    groupId: o.groupId!,
    heartbeatIntervalMs,
  };
}

/**
 * Consumes `topics` as a member of consumer group `groupId` and emits one
 * Message per record, with `key`, `headers` (UTF-8), `timestamp` (ms) and
 * `meta` `{ topic, partition, offset }` (offset as a decimal string: Kafka
 * offsets are 64-bit).
 *
 * Delivery is at-least-once. Per partition, the source commits the offset
 * after the highest *contiguous* acked message (acks may come in any order),
 * every `commitIntervalMs`, when a rebalance starts (before partitions are
 * revoked), and on `close()`. It never commits past an unacked or nacked
 * message: a nack holds that partition's commits until the message is read
 * again by a later consumer of the group (after a restart or a rebalance),
 * and is reported as a `'nack'` event.
 *
 * Backpressure: fetching pauses while the stream's buffer is full, any
 * partition has `maxInFlightPerPartition` unacked messages, or the unacked
 * messages hold `maxInFlightBytes` of payload. A fetch is handed
 * on in batches with a turn of the event loop between them, so commits and
 * group heartbeats keep their schedule under a sink that works synchronously.
 *
 * A failure of the broker connection re-creates the consumer with backoff
 * (`retry`); the group resumes at the committed offsets, so messages in
 * flight may be delivered again. Events: `'ready'`, `'reconnect'`,
 * `'checkpoint'` ({@link KafkaCheckpointEvent}), `'checkpointerror'`, `'lag'` ({@link KafkaLagEvent},
 * per assigned partition every `commitIntervalMs`),
 * `'rebalance'` (`{ assignments }`), `'nack'` ({@link KafkaNackEvent}).
 *
 * @example
 * ```ts
 * const source = kafkaSource({ brokers: 'localhost:9092', topics: 'orders', groupId: 'archiver', startFrom: 'earliest' });
 * await pipeline(source, s3Sink({ bucket: 'archive' }));
 * ```
 */
export function kafkaSource(options: KafkaSourceOptions): KafkaConsumerSource {
  return new KafkaConsumerSource(options);
}

/** The stream {@link kafkaSource} returns: a group membership re-created after a broker failure. */
export class KafkaConsumerSource extends RetryingSource {
  /** It delivers again what it is nacked (from its checkpoint or the broker's queue): flow()'s error policy relies on it. */
  readonly redelivers = true;
  /** The topics consumed. */
  readonly topics: readonly string[];
  /** The consumer group. */
  readonly groupId: string;

  constructor(options: KafkaSourceOptions) {
    const resolved = resolve(options);
    super(() => new GroupMember(resolved), {
      retry: resolved.retry,
      what: `kafkaSource: consuming ${resolved.topics.join(', ')} from ${resolved.connection.brokers.join(',')} as group ${resolved.groupId}`,
      forwardEvents: ['checkpoint', 'checkpointerror', 'rebalance', 'nack', 'lag'],
      highWaterMark: resolved.highWaterMark,
      signal: resolved.signal,
    });
    this.topics = resolved.topics;
    this.groupId = resolved.groupId;
  }
}

/** Where a delivered record sits, for the AckTracker. */
interface Position {
  offset: bigint;
  leaderEpoch: number;
}

const EMPTY = Buffer.alloc(0);

function partitionKey(topic: string, partition: number): string {
  // Topic names cannot contain ':' (letters, digits, '.', '_', '-').
  return `${topic}:${partition}`;
}

function splitKey(key: string): { topic: string; partition: number } {
  const at = key.lastIndexOf(':');
  return { topic: key.slice(0, at), partition: Number(key.slice(at + 1)) };
}

/**
 * A fetch hands over thousands of records at once, and a sink that works synchronously
 * processes each inside push(). Reading stops once a run took this long (or, as a backstop,
 * after this many records) and goes on in a setImmediate, so the commit timer, the group
 * heartbeats and the responses to both get their turn. At most a quarter of the shorter of
 * the commit and heartbeat intervals, and at most YIELD_MAX_MS: a heartbeat is late by at most
 * that much. Not shorter: a yield pauses the library's stream in the middle of a fetch response,
 * and the rest of the response waits in its buffer, is read back one by one and outlives the
 * young generation. A 3 MiB response of 100 B records takes more than 50 ms to hand over at full
 * speed: yielding every 50 ms split 6 to 8 of the responses of a 500,000-record backlog, and cost
 * about a seventh of the CPU per record (Kafka consume, 7 alternating rounds: 4.08 -> 3.50 us a
 * record, 323k -> 362k msg/s; the first 5-round attempt at this was lost in the machine's noise).
 */
const YIELD_EVERY_RECORDS = 100_000;
const YIELD_MAX_MS = 500;
const YIELD_MIN_MS = 10;
/** The clock is read every this many records (a power of two), not at each: reading it costs more than a record's own bookkeeping. */
const CLOCK_EVERY_RECORDS = 8;

/**
 * One consumer-group membership. Failures end it with an error; the
 * KafkaConsumerSource around it makes a new one.
 */
class GroupMember extends Readable {
  readonly #o: Resolved;
  readonly #what: string;
  /** How long a synchronous run of records may take before it yields (see YIELD_MAX_MS). */
  readonly #yieldEveryMs: number;
  readonly #consumer: Consumer;
  readonly #tracker: AckTracker<Position>;
  #stream: MessagesStream<Buffer, Buffer, Buffer, Buffer> | undefined;
  /** Highest offset delivered in the current lane of each partition: what the library re-reads after a rejoin is skipped. */
  readonly #lastOffset = new Map<string, bigint>();
  /** Generation at which each partition was (re)assigned: records fetched under an older one are stale. */
  readonly #assignedAt = new Map<string, number>();
  /** Offsets the broker has from us, so an unchanged partition is not committed again. */
  readonly #sent = new Map<string, bigint>();
  /** First offset delivered in this membership, per partition: where a group without a committed offset began (startFrom 'latest'). */
  readonly #firstOffset = new Map<string, bigint>();
  #lagging = false;
  #assigned = new Set<string>();
  #generation = -1;
  #commitTimer: NodeJS.Timeout | undefined;
  #committing: Promise<void> | undefined;
  #commitAgain = false;
  /** Node asked for data (`_read`) and no push() has said "full" since. */
  #wanted = false;
  #pullScheduled = false;
  #pulling = false;
  /** Partitions at `maxInFlightPerPartition`: nothing more is read until their acks make room. */
  readonly #full = new Set<string>();
  /** Payload bytes of the messages pushed and not yet settled, against `maxInFlightBytes`. */
  #inFlightBytes = 0;
  /** The client's stream is paused by us: it delivers nothing until #pull() resumes it. */
  #clientPaused = false;
  /** Paused by the library's own pause(), which also stops its fetch loop (backpressure, not a yield). */
  #fetchPaused = false;
  #pullOnSettle = false;
  #yield: NodeJS.Immediate | undefined;
  #readSinceYield = 0;
  #yieldedAt = performance.now();
  /** Set from a run's first record until its end (a microtask): records in one synchronous run count towards one yield. */
  #inRun = false;
  /** The partition of the last record and its key: records come in runs of one partition, so the key string is made once a run. */
  #recentTopic: string | undefined;
  #recentPartition = -1;
  #recentKey = '';
  /** Set before close() ends the stream: a push after that would throw. */
  #ending = false;
  #closing: Promise<void> | undefined;
  #shutdown: Promise<void> | undefined;

  constructor(options: Resolved) {
    super({ objectMode: true, highWaterMark: options.highWaterMark });
    this.#o = options;
    this.#what = `kafkaSource (group ${options.groupId}, topics ${options.topics.join(', ')})`;
    this.#yieldEveryMs = Math.max(YIELD_MIN_MS, Math.min(YIELD_MAX_MS, Math.floor(Math.min(options.commitIntervalMs, options.heartbeatIntervalMs) / 4)));
    this.#tracker = new AckTracker<Position>({
      maxInFlight: options.maxInFlightPerPartition,
      onNack: ({ partition, position, error }) => {
        this.emit('nack', { ...splitKey(partition), offset: position.offset.toString(), error } satisfies KafkaNackEvent);
      },
    });
    this.#consumer = new Consumer({
      ...clientOptions(options.connection, this.#what, (error) => {
        if (!this.destroyed) this.destroy(error);
      }),
      groupId: options.groupId,
      // The library's retries cover one request's blips (a coordinator moving); the retry option covers outages.
      retries: 3,
      autocreateTopics: options.autocreateTopics,
      autocommit: false,
      sessionTimeout: options.sessionTimeoutMs,
      rebalanceTimeout: Math.max(options.sessionTimeoutMs, 30_000),
      heartbeatInterval: options.heartbeatIntervalMs,
      maxWaitTime: options.maxWaitMs,
      maxBytes: options.fetchMaxBytes,
      // The library fetches ahead only while its buffer is below this mark (plus the one fetch that crossed it).
      highWaterMark: 1024,
    });
    // A client 'error' without a listener would throw; it ends this membership instead.
    this.#consumer.on('error', (error: Error) => this.destroy(kafkaError(this.#what, error)));
    watchTls(this.#consumer, this.#what, (error) => {
      if (!this.destroyed) this.destroy(error);
    });
    this.#consumer.on('consumer:group:rebalance', this.#onRebalance);
    this.#consumer.on('consumer:group:join', this.#onJoin);
    void this.#start();
  }

  async #start(): Promise<void> {
    let stream: MessagesStream<Buffer, Buffer, Buffer, Buffer>;
    try {
      stream = await this.#consumer.consume({
        topics: this.#o.topics,
        mode: 'committed',
        fallbackMode: this.#o.startFrom,
        autocommit: false,
        sessionTimeout: this.#o.sessionTimeoutMs,
        heartbeatInterval: this.#o.heartbeatIntervalMs,
        rebalanceTimeout: Math.max(this.#o.sessionTimeoutMs, 30_000),
      });
    } catch (error) {
      if (!this.destroyed) this.destroy(kafkaError(`${this.#what}: joining the group`, error));
      return;
    }
    if (this.destroyed || this.#closing) {
      await stream.close().catch(() => undefined);
      return;
    }
    this.#stream = stream;
    // Flowing while we want records, so a record goes from the fetch response to the consumer at once and dies
    // young (pulled, a whole fetch of records waited in the library's buffer and was promoted by the garbage
    // collector). Paused first: nothing is fetched or delivered until #pull() finds that the consumer wants it.
    stream.pause();
    this.#clientPaused = true;
    this.#fetchPaused = true;
    stream.on('data', this.#onData);
    stream.on('error', (error: Error) => this.destroy(kafkaError(this.#what, error)));
    stream.once('close', () => {
      if (!this.#closing && !this.destroyed) {
        this.destroy(new ManifoldError(`${this.#what}: the consumer stream closed unexpectedly`, { code: ErrorCodes.CONNECTION, retryable: true }));
      }
    });
    this.#commitTimer = setInterval(() => {
      void this.#commit('interval').then(() => this.#reportLag());
    }, this.#o.commitIntervalMs);
    this.#noteAssignments();
    this.emit('ready');
  }

  override _read(): void {
    this.#wanted = true;
    // Not read here: what _read pushes is buffered (Node's sync flag), and Node's flow loop then hands the
    // buffer to the consumer in one synchronous run that the yield below cannot see. Pushed a tick later,
    // a record goes straight to a flowing consumer, so the consumer's work counts towards the yield.
    if (this.#pullScheduled) return;
    this.#pullScheduled = true;
    process.nextTick(this.#scheduledPull);
  }

  readonly #scheduledPull = (): void => {
    this.#pullScheduled = false;
    this.#pull();
  };

  /**
   * Lets records flow from the library into this stream while it wants them. Every way of
   * stopping pauses the library's stream and has its own way back: a full buffer -> _read; a full
   * partition -> its whenRoom(); the bytes bound -> the settle that brings them under; a yield -> its
   * setImmediate.
   */
  readonly #pull = (): void => {
    const stream = this.#stream;
    // A consumer reacting to a record may land here again; the loop below re-checks everything on its next turn.
    if (!stream || this.#pulling || this.#ending || this.destroyed) return;
    this.#pulling = true;
    try {
      while (this.#clientPaused && this.#yield === undefined && this.#mayRead()) {
        // Resumed only once its buffer is below its own high-water mark: resume() starts a fetch whatever the
        // buffer holds, and a fetch forced on every resume would let the buffer grow past the mark without end.
        // Above it, records are taken one at a time (read() hands each to #onData).
        if (stream.readableLength < stream.readableHighWaterMark) {
          this.#clientPaused = false;
          if (this.#fetchPaused) {
            // The library's resume() restarts its fetch loop.
            this.#fetchPaused = false;
            stream.resume();
          } else Readable.prototype.resume.call(stream);
          return;
        }
        if (stream.read() === null) return;
      }
    } finally {
      this.#pulling = false;
    }
  };

  /**
   * Stops the library's stream. For a yield (`stopFetching` false) only the flow stops, Node's pause(): the
   * library goes on fetching up to its buffer's mark, as it does for a consumer that keeps up, and its
   * resume() does not force a fetch each time. For backpressure its own pause() also stops its fetch loop
   * (it fetches ahead while its buffer is below 1,024 records, whatever their size).
   */
  #pauseClient(stopFetching: boolean): void {
    const stream = this.#stream;
    if (!stream) return;
    if (stopFetching && !this.#fetchPaused) {
      this.#fetchPaused = true;
      this.#clientPaused = true;
      stream.pause();
      return;
    }
    if (this.#clientPaused) return;
    this.#clientPaused = true;
    Readable.prototype.pause.call(stream);
  }

  readonly #endRun = (): void => {
    this.#inRun = false;
  };

  /** A record from the library (flowing, or read() by #pull). */
  readonly #onData = (record: KafkaMessage<Buffer, Buffer, Buffer, Buffer>): void => {
    // Closing: what is not delivered is read again by the group from the committed offset.
    if (this.#ending || this.destroyed) {
      this.#pauseClient(true);
      return;
    }
    if (!this.#inRun) {
      // The first record of a synchronous run (a fetch response, a resumed flow): the yield counts from here.
      this.#inRun = true;
      this.#readSinceYield = 0;
      this.#yieldedAt = performance.now();
      queueMicrotask(this.#endRun);
    }
    this.#onRecord(record);
    if (!this.#mayRead()) {
      // Backpressure: checked after every record, so not one more is delivered past a bound.
      this.#pauseClient(true);
      return;
    }
    const read = ++this.#readSinceYield;
    if (read >= YIELD_EVERY_RECORDS || ((read & (CLOCK_EVERY_RECORDS - 1)) === 0 && performance.now() - this.#yieldedAt >= this.#yieldEveryMs)) {
      this.#pauseClient(false);
      this.#yield ??= setImmediate(this.#afterYield);
    }
  };

  /** Whether records may be moved now: the consumer wants them, no partition is full, the bytes are under the bound. */
  #mayRead(): boolean {
    return this.#wanted && this.#full.size === 0 && this.#inFlightBytes < this.#o.maxInFlightBytes && !this.#ending && !this.destroyed;
  }

  #settled(size: number): void {
    const wasOver = this.#inFlightBytes >= this.#o.maxInFlightBytes;
    this.#inFlightBytes -= size;
    if (wasOver && this.#inFlightBytes < this.#o.maxInFlightBytes && !this.#pullOnSettle) {
      // Once per turn rather than inside the sink's ack.
      this.#pullOnSettle = true;
      queueMicrotask(() => {
        this.#pullOnSettle = false;
        this.#pull();
      });
    }
  }

  readonly #afterYield = (): void => {
    this.#yield = undefined;
    this.#readSinceYield = 0;
    this.#yieldedAt = performance.now();
    this.#pull();
  };

  #keyOf(topic: string, partition: number): string {
    if (topic === this.#recentTopic && partition === this.#recentPartition) return this.#recentKey;
    this.#recentTopic = topic;
    this.#recentPartition = partition;
    return (this.#recentKey = partitionKey(topic, partition));
  }

  #onRecord(record: KafkaMessage<Buffer, Buffer, Buffer, Buffer>): void {
    const key = this.#keyOf(record.topic, record.partition);
    // A record fetched before this partition was (re)assigned to us, or for one we no longer own, is stale:
    // the current owner reads it again from the committed offset.
    const fetchedIn = (record.metadata?.consumer as { generationId?: number } | undefined)?.generationId;
    if (!this.#assigned.has(key) || (typeof fetchedIn === 'number' && fetchedIn < (this.#assignedAt.get(key) ?? 0))) return;
    // After a rejoin the library rewinds to the committed offset; what we delivered already is still tracked.
    const last = this.#lastOffset.get(key);
    if (last !== undefined && record.offset <= last) return;
    this.#lastOffset.set(key, record.offset);
    if (last === undefined && !this.#firstOffset.has(key)) this.#firstOffset.set(key, record.offset);
    const delivery = this.#tracker.open(key, { offset: record.offset, leaderEpoch: record.leaderEpoch });
    const data = record.value ?? EMPTY;
    const size = data.length;
    this.#inFlightBytes += size;
    // Built here rather than by createMessage(): two closures over the delivery are all a record costs (the
    // tracker ignores a second settle and says whether this one was the first).
    const message: { -readonly [K in keyof Message]: Message[K] } = {
      data,
      ack: () => this.#settle(delivery, size, false, undefined),
      nack: (error?: Error) => this.#settle(delivery, size, true, error ?? new ManifoldError('message was nacked', { code: ErrorCodes.DELIVERY })),
    };
    if (record.key !== undefined && record.key !== null) message.key = record.key.toString();
    if (record.headers.size > 0) {
      const headers: Record<string, string> = {};
      for (const [k, v] of record.headers) headers[k.toString()] = v === undefined || v === null ? '' : v.toString();
      message.headers = headers;
    }
    message.timestamp = Number(record.timestamp);
    message.meta = { topic: record.topic, partition: record.partition, offset: record.offset.toString() };
    // Node calls _read again once the consumer has taken from the full buffer.
    if (!emitToFlowing(this, message) && !this.push(message)) this.#wanted = false;
    if (!this.#full.has(key) && this.#tracker.isFull(key)) {
      this.#full.add(key);
      // Also settled when the partition is revoked (the tracker releases its waiters).
      void this.#tracker.whenRoom(key).then(() => {
        this.#full.delete(key);
        this.#pull();
      });
    }
  }

  /** A message's ack or nack: the first settles its delivery and frees its bytes; later ones do nothing. */
  #settle(delivery: Delivery<Position>, size: number, nacked: boolean, error: Error | undefined): void {
    let first = true;
    try {
      first = this.#tracker.settle(delivery, nacked, error);
    } catch {
      // A 'nack' listener threw after the delivery was settled: it counts as settled; the group redelivers it.
    }
    if (first) this.#settled(size);
  }

  /** A rebalance is starting: every partition may be revoked, so what is acked is committed now. */
  readonly #onRebalance = (): void => {
    void this.#commit('rebalance');
  };

  /** A (re)join completed: forget revoked partitions, note new ones. */
  readonly #onJoin = (): void => {
    this.#noteAssignments();
  };

  #noteAssignments(): void {
    const generation = this.#consumer.generationId;
    const now = new Set<string>();
    for (const { topic, partitions } of this.#consumer.assignments ?? []) {
      for (const partition of partitions) now.add(partitionKey(topic, partition));
    }
    for (const key of this.#assigned) {
      if (now.has(key)) continue;
      // Revoked: its late acks must not commit over the new owner's progress.
      this.#tracker.remove(key);
      this.#lastOffset.delete(key);
      this.#firstOffset.delete(key);
      this.#sent.delete(key);
      this.#assignedAt.delete(key);
    }
    for (const key of now) if (!this.#assigned.has(key)) this.#assignedAt.set(key, generation);
    const changed = now.size !== this.#assigned.size || [...now].some((k) => !this.#assigned.has(k));
    this.#assigned = now;
    this.#generation = generation;
    if (changed) {
      this.emit('rebalance', { generation, assignments: [...now].map(splitKey) });
    }
    this.#pull();
  }

  /** Commits every partition's contiguous acked position that the broker does not have yet. One at a time. */
  #commit(reason: KafkaCheckpointEvent['reason']): Promise<void> {
    if (this.#committing) {
      this.#commitAgain = true;
      return this.#committing.then(() => (this.#commitAgain ? this.#commit(reason) : undefined));
    }
    const offsets: Array<{ topic: string; partition: number; offset: bigint; leaderEpoch: number }> = [];
    for (const key of this.#tracker.partitions()) {
      const position = this.#tracker.committed(key);
      if (!position || !this.#assigned.has(key)) continue;
      const next = position.offset + 1n;
      if ((this.#sent.get(key) ?? -1n) >= next) continue;
      offsets.push({ ...splitKey(key), offset: next, leaderEpoch: position.leaderEpoch });
    }
    this.#commitAgain = false;
    if (offsets.length === 0) return Promise.resolve();
    const generation = this.#generation;
    this.#committing = this.#consumer
      .commit({ offsets })
      .then(
        () => {
          for (const { topic, partition, offset } of offsets) {
            const key = partitionKey(topic, partition);
            // A rebalance in between may have revoked it; the entry would be stale.
            if (this.#assigned.has(key) && (this.#sent.get(key) ?? -1n) < offset) this.#sent.set(key, offset);
          }
          this.emit('checkpoint', {
            reason,
            offsets: offsets.map(({ topic, partition, offset }) => ({ topic, partition, offset: offset.toString() })),
          } satisfies KafkaCheckpointEvent);
        },
        (error: unknown) => {
          // Not fatal: the offsets stay uncommitted and go with the next commit (after the rejoin, if that was it).
          this.emit('checkpointerror', kafkaError(`${this.#what}: committing offsets (generation ${generation})`, error));
        },
      )
      .finally(() => {
        this.#committing = undefined;
      });
    return this.#committing;
  }

  /**
   * Emits `'lag'` for every assigned partition: its end offset from the broker (ListOffsets) minus the
   * committed offset, ours when we committed it, else the group's as the broker has it (OffsetFetch).
   * Best effort, one at a time: a failure leaves the last figures until the next interval.
   */
  async #reportLag(): Promise<void> {
    if (this.#lagging || this.#assigned.size === 0 || this.#closing || this.destroyed) return;
    this.#lagging = true;
    try {
      const keys = [...this.#assigned];
      const partitions: Record<string, number[]> = {};
      for (const key of keys) {
        const { topic, partition } = splitKey(key);
        (partitions[topic] ??= []).push(partition);
      }
      const topics = Object.keys(partitions);
      const ends = await this.#consumer.listOffsets({ topics, partitions });
      const unknown = keys.filter((key) => !this.#sent.has(key));
      const group =
        unknown.length === 0
          ? undefined
          : await this.#consumer.listCommittedOffsets({ topics: topics.map((topic) => ({ topic, partitions: partitions[topic]! })) });
      let earliest: Map<string, bigint[]> | undefined;
      const noCommit = (key: string): boolean => {
        const { topic, partition } = splitKey(key);
        return !this.#sent.has(key) && (group?.get(topic)?.[partition] ?? -1n) < 0n;
      };
      // A group with no committed offset starts at the log start (earliest) or at the end (latest).
      if (this.#o.startFrom === 'earliest' && keys.some(noCommit)) earliest = await this.#consumer.listOffsets({ topics, partitions, timestamp: -2n });
      if (this.#closing || this.destroyed) return;
      for (const key of keys) {
        // Revoked while we asked: its lag is the new owner's business.
        if (!this.#assigned.has(key)) continue;
        const { topic, partition } = splitKey(key);
        const end = ends.get(topic)?.[partition];
        if (end === undefined) continue;
        const committed = this.#sent.get(key) ?? group?.get(topic)?.[partition] ?? -1n;
        const from = committed >= 0n ? committed : this.#o.startFrom === 'earliest' ? (earliest?.get(topic)?.[partition] ?? 0n) : (this.#firstOffset.get(key) ?? end);
        const lag = end > from ? end - from : 0n;
        this.emit('lag', { topic, partition, lag: Number(lag), highWatermark: end.toString(), committed: committed.toString() } satisfies KafkaLagEvent);
      }
    } catch {
      // Lag is a measurement: the next interval tries again.
    } finally {
      this.#lagging = false;
    }
  }

  /**
   * Graceful stop: stops fetching, ends after what was already emitted, waits
   * up to `closeTimeoutMs` for the outstanding acks, commits, and leaves the
   * group. Rejects with a `MANIFOLD_ERR_CLOSE_TIMEOUT` error if acks were
   * still missing (those messages are redelivered to the group).
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      // What the library still holds is read again by the group later.
      this.#ending = true;
      if (!this.readableEnded) this.push(null);
      const idle = await this.#tracker.whenIdle(this.#o.closeTimeoutMs);
      await this.#commit('close');
      await this.#release(false);
      if (!idle) throw closeTimeoutError(this.#what, this.#o.closeTimeoutMs, this.#tracker.inFlight());
    })();
    return this.#closing;
  }

  /** Closes the stream and the consumer (leaving the group) once. */
  #release(force: boolean): Promise<void> {
    this.#shutdown ??= (async () => {
      clearInterval(this.#commitTimer);
      this.#commitTimer = undefined;
      clearImmediate(this.#yield);
      this.#yield = undefined;
      this.#consumer.off('consumer:group:rebalance', this.#onRebalance);
      this.#consumer.off('consumer:group:join', this.#onJoin);
      const stream = this.#stream;
      if (stream) {
        stream.off('data', this.#onData);
        stream.pause();
        await stream.close().catch(() => undefined);
      }
      await this.#consumer.close(force).catch(() => this.#consumer.close(true).catch(() => undefined));
      this.#tracker.takeNacks();
    })();
    return this.#shutdown;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // After a graceful close() the stream auto-destroys on 'end' while acks and the final commit may still be pending.
    const closing = this.#closing;
    if (closing && !error) {
      closing.then(
        () => callback(null),
        () => callback(null),
      );
      return;
    }
    this.#release(true).then(
      () => callback(error),
      (releaseError: unknown) => callback(error ?? toError(releaseError)),
    );
  }
}
