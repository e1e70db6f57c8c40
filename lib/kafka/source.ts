/**
 * Apache Kafka source: a consumer-group member on @platformatic/kafka that commits, per
 * partition, only the offset after the highest contiguous acked message.
 */
import { Readable } from 'node:stream';
import {
  Consumer,
  findErrorBy,
  protocolErrors,
  type ClusterMetadata,
  type KafkaRecord,
  type RecordsBatch,
} from '@platformatic/kafka';
import { AckTracker, closeTimeoutError, type Delivery } from '../core/acks.js';
import { ErrorCodes, ManifoldError, toError } from '../core/errors.js';
import { emitToFlowing } from '../core/hand-over.js';
import { nackReason, type Message } from '../core/message.js';
import { invalidOption } from '../core/options.js';
import { RetryingSource } from '../core/retrying-source.js';
import { TOPIC_NAME, kafkaError, resolveConnection, watchTls, clientOptions, type ResolvedConnection } from './connection.js';
import { kafkaSourceOptions, type KafkaSourceOptions } from './options.js';

export type { KafkaSourceOptions } from './options.js';

/** A parsed Fetch response, and one topic of a Fetch request (the library exports their types only by API version). */
type FetchResponse = Awaited<ReturnType<Consumer['fetch']>>;
type FetchRequestTopic = Parameters<Consumer['fetch']>[0]['topics'][number];

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

/** Partition numbers by topic, as the client's offset lookups take them. */
function byTopic(partitions: ReadonlyArray<{ topic: string; partition: number }>): Record<string, number[]> {
  const grouped: Record<string, number[]> = {};
  for (const { topic, partition } of partitions) (grouped[topic] ??= []).push(partition);
  return grouped;
}

function splitKey(key: string): { topic: string; partition: number } {
  const at = key.lastIndexOf(':');
  return { topic: key.slice(0, at), partition: Number(key.slice(at + 1)) };
}

/**
 * A fetch hands over thousands of records at once, and a sink that works synchronously
 * processes each inside push(). Handing over stops once a run took this long (or, as a backstop,
 * after this many records) and goes on in a setImmediate, so the commit timer, the group
 * heartbeats and the responses to both get their turn. At most a quarter of the shorter of
 * the commit and heartbeat intervals, and at most YIELD_MAX_MS: a heartbeat is late by at most
 * that much. Not shorter: records waiting to be handed over outlive the young generation, and
 * every scavenge copies them (yielding every 50 ms cost about a seventh of the CPU per record).
 */
const YIELD_EVERY_RECORDS = 100_000;
const YIELD_MAX_MS = 500;
const YIELD_MIN_MS = 10;
/** The clock is read every this many records (a power of two), not at each: reading it costs more than a record's own bookkeeping. */
const CLOCK_EVERY_RECORDS = 8;
/** Most bytes one partition contributes to a fetch response (Kafka's max.partition.fetch.bytes default): no partition starves the others. */
const PARTITION_MAX_BYTES = 1024 * 1024;
/**
 * Fetches go out while fewer fetch responses than this wait to be handed over in full (and, past the first, only
 * while the consumer wants records): the next is fetched while one is handed over, so the network and the consumer
 * work at the same time. Each broker has its own fetch, so with several brokers one response each can come on top.
 */
const MAX_QUEUED_RESPONSES = 2;
/** A record batch of control records (transaction markers): it moves the offset on but holds no messages. */
const IS_CONTROL = 1 << 5;
/** How soon a partition without a leader is looked up again. */
const LEADER_RETRY_MS = 200;

/** Where fetching goes on in one partition: replaced (not changed) when the group's offsets are read again, so a fetch sent before that is known stale. */
interface FetchPosition {
  readonly topic: string;
  readonly partition: number;
  /** The offset the next fetch asks for. */
  next: bigint;
}

/** A record batch fetched and not yet handed over in full. */
interface Chunk {
  readonly key: string;
  readonly topic: string;
  readonly partition: number;
  readonly batch: RecordsBatch;
  /** Records before this offset were asked for by no one (a compressed batch starts before the fetch offset). */
  readonly from: bigint;
  /** The group generation the fetch was sent in: records fetched before their partition was (re)assigned are stale. */
  readonly generation: number;
  /** The last chunk of its response (marked once the whole response is queued): handing it over frees a response slot. */
  last: boolean;
  /** The next record of `batch.records` to hand over. */
  index: number;
}

/**
 * One consumer-group membership. Failures end it with an error; the
 * KafkaConsumerSource around it makes a new one.
 *
 * The group (join, heartbeats, assignments, commits) is the library's Consumer; fetching is this
 * class's own loop over `Consumer.fetch()`, which builds each Message straight from the parsed
 * record batch. The library's messages stream would build an object of its own for every record
 * first (a copy, a headers Map and array, a diagnostic context, a bound commit function), which
 * cost more than a third of the CPU per record (bench/analysis.md).
 */
class GroupMember extends Readable {
  readonly #o: Resolved;
  readonly #what: string;
  /** How long a synchronous run of records may take before it yields (see YIELD_MAX_MS). */
  readonly #yieldEveryMs: number;
  readonly #consumer: Consumer;
  readonly #tracker: AckTracker<Position>;
  /** Joined, assignments noted: fetching may start. */
  #joined = false;
  /** Where the next fetch of each assigned partition starts, once the group's offsets were read. */
  readonly #positions = new Map<string, FetchPosition>();
  /** Brokers (node ids) with a fetch in flight: one each. */
  readonly #fetching = new Set<number>();
  /** Record batches fetched and not yet handed over, oldest first; #queueHead is the first live one. */
  #queue: Array<Chunk | undefined> = [];
  #queueHead = 0;
  /** Responses in the queue not yet handed over in full. */
  #queuedResponses = 0;
  /** The group's offsets are being read (after a join); a second join meanwhile reads them again. */
  #refreshing = false;
  #refreshAgain = false;
  /** Rotates which partition comes first in a fetch request. */
  #fetchTurn = 0;
  /** A partition had no leader in the client's metadata: the next fetch reads it afresh. */
  #staleMetadata = false;
  #metadataTimer: NodeJS.Timeout | undefined;
  /** Highest offset delivered in the current lane of each partition: what is fetched again after a rejoin is skipped. */
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
  #draining = false;
  /** Partitions at `maxInFlightPerPartition`: nothing more is read until their acks make room. */
  readonly #full = new Set<string>();
  /** Payload bytes of the messages pushed and not yet settled, against `maxInFlightBytes`. */
  #inFlightBytes = 0;
  #pullOnSettle = false;
  #yield: NodeJS.Immediate | undefined;
  #readSinceYield = 0;
  #yieldedAt = 0;
  /** Set from a run's first record until the event loop turns: the records of one run count towards one yield. */
  #runEnd: NodeJS.Immediate | undefined;
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
    try {
      // The topics must exist (or be created, autocreateTopics) before the group assigns their partitions.
      await this.#consumer.metadata({ topics: this.#o.topics, autocreateTopics: this.#o.autocreateTopics });
      this.#consumer.topics.trackAll(...this.#o.topics);
      await this.#consumer.joinGroup({
        sessionTimeout: this.#o.sessionTimeoutMs,
        heartbeatInterval: this.#o.heartbeatIntervalMs,
        rebalanceTimeout: Math.max(this.#o.sessionTimeoutMs, 30_000),
      });
    } catch (error) {
      if (!this.destroyed) this.destroy(kafkaError(`${this.#what}: joining the group`, error));
      return;
    }
    if (this.destroyed || this.#closing) return;
    this.#joined = true;
    this.#commitTimer = setInterval(() => {
      void this.#commit('interval').then(() => this.#reportLag());
    }, this.#o.commitIntervalMs);
    this.#noteAssignments();
    this.emit('ready');
  }

  override _read(): void {
    this.#wanted = true;
    // Not handed over here: what _read pushes is buffered (Node's sync flag), and Node's flow loop then hands the
    // buffer to the consumer in one synchronous run that the yield cannot see. Pushed a tick later, a record goes
    // straight to a flowing consumer, so the consumer's work counts towards the yield.
    if (this.#pullScheduled) return;
    this.#pullScheduled = true;
    process.nextTick(this.#scheduledPull);
  }

  readonly #scheduledPull = (): void => {
    this.#pullScheduled = false;
    this.#pull();
  };

  /** Hands over what is fetched while the consumer wants it, and fetches more while there is room. */
  readonly #pull = (): void => {
    this.#drain();
    this.#fetchMore();
  };

  readonly #endRun = (): void => {
    this.#runEnd = undefined;
  };

  /**
   * Hands the fetched records over, oldest first, while the consumer wants them. Every way of stopping has its
   * own way back: a full buffer -> _read; a full partition -> its whenRoom(); the bytes bound -> the settle that
   * brings them under; a yield -> its setImmediate.
   */
  #drain(): void {
    // A consumer reacting to a record may land here again; the loop below goes on where it was.
    if (this.#draining || this.#yield !== undefined || this.#ending || this.destroyed) return;
    this.#draining = true;
    try {
      if (this.#runEnd === undefined) {
        // The first record of a run (a response, a resumed flow): the yield counts from here until the event loop turns.
        this.#readSinceYield = 0;
        this.#yieldedAt = performance.now();
        this.#runEnd = setImmediate(this.#endRun);
      }
      const queue = this.#queue;
      while (this.#queueHead < queue.length) {
        const chunk = queue[this.#queueHead]!;
        const records = chunk.batch.records;
        while (chunk.index < records.length) {
          // Backpressure: checked before every record, so not one more is delivered past a bound.
          if (!this.#mayRead()) return;
          this.#onRecord(chunk, records[chunk.index++]!);
          const read = ++this.#readSinceYield;
          if (read >= YIELD_EVERY_RECORDS || ((read & (CLOCK_EVERY_RECORDS - 1)) === 0 && performance.now() - this.#yieldedAt >= this.#yieldEveryMs)) {
            this.#yield = setImmediate(this.#afterYield);
            return;
          }
        }
        queue[this.#queueHead++] = undefined;
        if (chunk.last) {
          this.#queuedResponses -= 1;
          // A response slot is free: the next fetch goes out while this one's records are consumed.
          this.#fetchMore();
        }
      }
      this.#queue = [];
      this.#queueHead = 0;
    } finally {
      this.#draining = false;
    }
  }

  readonly #afterYield = (): void => {
    this.#yield = undefined;
    this.#readSinceYield = 0;
    this.#yieldedAt = performance.now();
    this.#pull();
  };

  /**
   * Sends a fetch to every broker leading an assigned partition that has none in flight, while fewer than
   * MAX_QUEUED_RESPONSES responses wait to be handed over.
   */
  #fetchMore(): void {
    // While the positions are read again after a join, nothing is fetched: a partition this member lost and got
    // back must start at the offset its interim owner committed, not where this member was.
    if (!this.#joined || this.#refreshing || this.#ending || this.destroyed || this.#positions.size === 0) return;
    if (!this.#mayFetch()) return;
    const forceUpdate = this.#staleMetadata;
    this.#staleMetadata = false;
    this.#consumer.metadata({ topics: this.#o.topics, forceUpdate }, (error, metadata) => {
      if (this.#ending || this.destroyed) return;
      if (error || !metadata) {
        this.destroy(kafkaError(`${this.#what}: reading the topics' metadata`, error));
        return;
      }
      this.#sendFetches(metadata);
    });
  }

  /** Whether another fetch may go out: no response waits to be handed over, or one does and the consumer wants records. */
  #mayFetch(): boolean {
    return this.#queuedResponses === 0 || (this.#queuedResponses < MAX_QUEUED_RESPONSES && this.#mayRead());
  }

  #sendFetches(metadata: ClusterMetadata): void {
    if (!this.#mayFetch()) return;
    const byNode = new Map<number, Array<{ position: FetchPosition; key: string; topicId: string }>>();
    const positions = [...this.#positions];
    const turn = this.#fetchTurn++ % Math.max(1, positions.length);
    let leaderless = false;
    for (let i = 0; i < positions.length; i++) {
      const [key, position] = positions[(turn + i) % positions.length]!;
      const topic = metadata.topics.get(position.topic);
      const leader = topic?.partitions[position.partition]?.leader;
      if (topic === undefined || leader === undefined || leader < 0) {
        leaderless = true;
        continue;
      }
      if (this.#fetching.has(leader)) continue;
      let list = byNode.get(leader);
      if (!list) byNode.set(leader, (list = []));
      list.push({ position, key, topicId: topic.id });
    }
    if (leaderless && this.#metadataTimer === undefined) {
      // A partition without a leader (an election under way) is asked about again, with fresh metadata, shortly.
      this.#staleMetadata = true;
      this.#metadataTimer = setTimeout(() => {
        this.#metadataTimer = undefined;
        this.#fetchMore();
      }, LEADER_RETRY_MS);
    }
    for (const [node, list] of byNode) {
      const requested = new Map<string, { position: FetchPosition; offset: bigint }>();
      const topics = new Map<string, FetchRequestTopic>();
      const names = new Map<string, string>();
      for (const { position, key, topicId } of list) {
        requested.set(key, { position, offset: position.next });
        names.set(topicId, position.topic);
        let topic = topics.get(topicId);
        if (!topic) topics.set(topicId, (topic = { topicId, partitions: [] }));
        topic.partitions.push({
          partition: position.partition,
          fetchOffset: position.next,
          partitionMaxBytes: Math.min(PARTITION_MAX_BYTES, this.#o.fetchMaxBytes),
          // Unknown epochs: the broker then checks none (as the library does after a broker disconnect).
          currentLeaderEpoch: -1,
          lastFetchedEpoch: -1,
        });
      }
      const generation = this.#generation;
      this.#fetching.add(node);
      this.#consumer.fetch({ node, topics: [...topics.values()], maxWaitTime: this.#o.maxWaitMs, maxBytes: this.#o.fetchMaxBytes }, (error, response) => {
        this.#fetching.delete(node);
        if (this.#ending || this.destroyed) return;
        if (error || !response) {
          this.#onFetchError(error, names, requested);
          return;
        }
        this.#onFetched(response, names, requested, generation);
      });
    }
  }

  /** A fetch response: its record batches join the queue; each partition's next fetch starts after its last batch. */
  #onFetched(response: FetchResponse, names: Map<string, string>, requested: Map<string, { position: FetchPosition; offset: bigint }>, generation: number): void {
    const start = this.#queue.length;
    for (const topicResponse of response.responses) {
      const topic = names.get(topicResponse.topicId);
      if (topic === undefined) continue;
      for (const { partitionIndex: partition, records } of topicResponse.partitions) {
        const key = partitionKey(topic, partition);
        const asked = requested.get(key);
        // Not asked for (a partition lingering in an incremental fetch session), or its offsets were read again
        // since (a rejoin), or moved by another response: stale.
        if (!asked || this.#positions.get(key) !== asked.position || asked.position.next !== asked.offset || !records) continue;
        for (const batch of records) {
          const after = batch.firstOffset + BigInt(batch.lastOffsetDelta) + 1n;
          if (after > asked.position.next) asked.position.next = after;
          if (batch.attributes & IS_CONTROL || batch.records.length === 0) continue;
          this.#queue.push({ key, topic, partition, batch, from: asked.offset, generation, last: false, index: 0 });
        }
      }
    }
    if (this.#queue.length > start) {
      this.#queue[this.#queue.length - 1]!.last = true;
      this.#queuedResponses += 1;
    }
    this.#drain();
    this.#fetchMore();
  }

  /** A fetch failed: an offset out of range starts its partition again per `startFrom`; anything else ends the membership. */
  #onFetchError(error: unknown, names: Map<string, string>, requested: Map<string, { position: FetchPosition; offset: bigint }>): void {
    const response = (error as { response?: FetchResponse }).response;
    if (!findErrorBy(error as Error, 'apiId', 'OFFSET_OUT_OF_RANGE') || !response) {
      this.destroy(kafkaError(`${this.#what}: fetching`, error));
      return;
    }
    const reset: Array<{ key: string; position: FetchPosition; offset: bigint | undefined }> = [];
    for (const topicResponse of response.responses) {
      const topic = names.get(topicResponse.topicId);
      if (topic === undefined) continue;
      for (const p of topicResponse.partitions) {
        if (p.errorCode === 0) continue;
        const key = partitionKey(topic, p.partitionIndex);
        const asked = requested.get(key);
        if (p.errorCode !== protocolErrors.OFFSET_OUT_OF_RANGE.code) {
          this.destroy(kafkaError(`${this.#what}: fetching`, error));
          return;
        }
        if (!asked || this.#positions.get(key) !== asked.position) continue;
        const offset = this.#o.startFrom === 'earliest' ? p.logStartOffset : p.highWatermark;
        reset.push({ key, position: asked.position, offset: offset >= 0n ? offset : undefined });
      }
    }
    void (async () => {
      const unknown = reset.filter((r) => r.offset === undefined);
      if (unknown.length > 0) {
        const offsets = await this.#startOffsets(unknown.map((r) => r.position));
        for (const r of unknown) r.offset = offsets.get(r.position.topic)?.[r.position.partition];
      }
      for (const { key, position, offset } of reset) {
        if (offset === undefined || offset < 0n) throw new ManifoldError(`${this.#what}: partition ${key} has its offset out of range and no ${this.#o.startFrom} offset to start again from`, { code: ErrorCodes.CONNECTION, retryable: true });
        // The records in between are gone from the log (retention): reading goes on at the log's start (or end).
        if (this.#positions.get(key) === position) this.#positions.set(key, { topic: position.topic, partition: position.partition, next: offset });
      }
    })().then(
      () => this.#fetchMore(),
      (resetError: unknown) => {
        if (!this.destroyed) this.destroy(kafkaError(`${this.#what}: fetching`, resetError));
      },
    );
  }

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

  #onRecord(chunk: Chunk, record: KafkaRecord): void {
    const { key, batch } = chunk;
    const offset = batch.firstOffset + BigInt(record.offsetDelta);
    // Before the offset fetched (a compressed batch starts earlier): not asked for.
    if (offset < chunk.from) return;
    // A record fetched before this partition was (re)assigned to us, or for one we no longer own, is stale:
    // the current owner reads it again from the committed offset.
    if (!this.#assigned.has(key) || chunk.generation < (this.#assignedAt.get(key) ?? 0)) return;
    // After a rejoin fetching starts again at the committed offset; what we delivered already is still tracked.
    const last = this.#lastOffset.get(key);
    if (last !== undefined && offset <= last) return;
    this.#lastOffset.set(key, offset);
    if (last === undefined && !this.#firstOffset.has(key)) this.#firstOffset.set(key, offset);
    const delivery = this.#tracker.open(key, { offset, leaderEpoch: batch.partitionLeaderEpoch });
    const data = record.value ?? EMPTY;
    const size = data.length;
    this.#inFlightBytes += size;
    // Built here rather than by createMessage(): two closures over the delivery are all a record costs (the
    // tracker ignores a second settle and says whether this one was the first).
    const message: { -readonly [K in keyof Message]: Message[K] } = {
      data,
      ack: () => this.#settle(delivery, size, false, undefined),
      nack: (error?: Error) => this.#settle(delivery, size, true, nackReason(error)),
    };
    if (record.key !== undefined && record.key !== null) message.key = record.key.toString();
    const { headers } = record;
    if (headers.length > 0) {
      const strings: Record<string, string> = {};
      for (let i = 0; i < headers.length; i++) {
        const [k, v] = headers[i]!;
        strings[k === null ? '' : k.toString()] = v === null ? '' : v.toString();
      }
      message.headers = strings;
    }
    message.timestamp = Number(batch.firstTimestamp + record.timestampDelta);
    message.meta = { topic: chunk.topic, partition: chunk.partition, offset: offset.toString() };
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
      // Revoked: its late acks must not commit over the new owner's progress, and a fetch in flight for it is stale.
      this.#positions.delete(key);
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
    void this.#refreshPositions();
    this.#pull();
  }

  /** Where `startFrom` starts each of `partitions`: the log's start (earliest) or its end (latest). */
  #startOffsets(partitions: ReadonlyArray<{ topic: string; partition: number }>): Promise<Map<string, bigint[]>> {
    const grouped = byTopic(partitions);
    return this.#consumer.listOffsets({ topics: Object.keys(grouped), partitions: grouped, timestamp: this.#o.startFrom === 'earliest' ? -2n : -1n });
  }

  /**
   * After every join: each assigned partition is fetched from the group's committed offset (what was delivered
   * since is skipped, see #onRecord); one without a committed offset goes on where it was, or starts per
   * `startFrom`. One at a time; a join meanwhile reads them again.
   */
  async #refreshPositions(): Promise<void> {
    if (this.#refreshing) {
      this.#refreshAgain = true;
      return;
    }
    this.#refreshing = true;
    try {
      do {
        this.#refreshAgain = false;
        const assigned = [...this.#assigned].map(splitKey);
        if (assigned.length === 0) continue;
        const partitions = byTopic(assigned);
        const topics = Object.keys(partitions);
        const committed = await this.#consumer.listCommittedOffsets({ topics: topics.map((topic) => ({ topic, partitions: partitions[topic]! })) });
        const fresh = assigned.filter(({ topic, partition }) => (committed.get(topic)?.[partition] ?? -1n) < 0n && !this.#positions.has(partitionKey(topic, partition)));
        const start = fresh.length > 0 ? await this.#startOffsets(fresh) : undefined;
        if (this.#refreshAgain || this.#ending || this.destroyed) continue;
        for (const { topic, partition } of assigned) {
          const key = partitionKey(topic, partition);
          if (!this.#assigned.has(key)) continue;
          const group = committed.get(topic)?.[partition] ?? -1n;
          const next = group >= 0n ? group : (this.#positions.get(key)?.next ?? start?.get(topic)?.[partition]);
          if (next === undefined || next < 0n) {
            throw new ManifoldError(`${this.#what}: no ${this.#o.startFrom} offset to start partition ${key} from`, { code: ErrorCodes.CONNECTION, retryable: true });
          }
          // A new object: a fetch sent before this is stale (see #onFetched).
          this.#positions.set(key, { topic, partition, next });
        }
      } while (this.#refreshAgain && !this.#ending && !this.destroyed);
    } catch (error) {
      if (!this.destroyed && !this.#ending) this.destroy(kafkaError(`${this.#what}: reading the group's offsets`, error));
      return;
    } finally {
      this.#refreshing = false;
    }
    this.#fetchMore();
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
      const partitions = byTopic(keys.map(splitKey));
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
      clearImmediate(this.#runEnd);
      this.#runEnd = undefined;
      clearTimeout(this.#metadataTimer);
      this.#metadataTimer = undefined;
      this.#queue = [];
      this.#queueHead = 0;
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
