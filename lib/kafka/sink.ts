/**
 * Apache Kafka sink: produces each message with its key and headers through
 * @platformatic/kafka, in batches, and acks a message when the broker
 * acknowledged the produce request that carried it.
 */
import { Writable } from 'node:stream';
import { Producer, type MessageToProduce } from '@platformatic/kafka';
import { ErrorCodes, ManifoldError, toError } from '../core/errors.js';
import { toMessage, type Message, type MessageLike } from '../core/message.js';
import { conflictingOptions, invalidOption } from '../core/options.js';
import { RetryingSink, takeMessages, type TakesMessages } from '../core/retrying-sink.js';
import { TOPIC_NAME, isUnknownTopic, kafkaApiId, kafkaError, resolveConnection, watchTls, clientOptions, type ResolvedConnection } from './connection.js';
import { kafkaSinkOptions, type KafkaSinkOptions } from './options.js';

export type { KafkaSinkOptions } from './options.js';

const ACKS = { all: -1, leader: 1, none: 0 } as const;

/** The declared options, with what the factory derives from them. */
interface Resolved extends ReturnType<typeof kafkaSinkOptions.resolve> {
  connection: ResolvedConnection;
  topic: string;
  idempotent: boolean;
}

function resolve(options: KafkaSinkOptions): Resolved {
  const where = 'kafkaSink';
  const o = kafkaSinkOptions.resolve(options);
  // Required options are present once resolve() returned.
  const topic = o.topic!;
  if (!TOPIC_NAME.test(topic)) invalidOption(where, 'topic', 'a topic name of letters, digits, ".", "_" and "-" (at most 249)', topic);
  const idempotent = o.idempotent ?? o.acks === 'all';
  if (idempotent && o.acks !== 'all') conflictingOptions(where, 'idempotent', 'acks', `cannot be combined: an idempotent producer needs acks "all" (got ${JSON.stringify(o.acks)}); set idempotent: false`);
  return { ...o, connection: resolveConnection(where, o), topic, idempotent };
}

/**
 * Produces every message written to it to `topic`, with the message's `key`
 * (which picks the partition, so one key keeps its order) and `headers`, and
 * acks each one once the broker acknowledged it (`acks: 'all'` by default:
 * every in-sync replica has it).
 *
 * Messages are sent in batches (`batchSize`, `batchBytes`, `lingerMs`); while
 * a request is in flight the next batch fills, and `write()` applies
 * backpressure once it is full. What cannot be produced is nacked with a
 * ManifoldError that says why: a message over `maxMessageBytes` or refused
 * by the broker as too large (`MANIFOLD_ERR_MESSAGE_TOO_LARGE`, the sink
 * carries on), a topic that does not exist while `autocreateTopics` is off
 * (`MANIFOLD_ERR_NOT_FOUND`, the sink fails). A transient failure re-creates
 * the producer with backoff (`retry`) and re-sends every message not yet
 * acked; with `idempotent` the broker drops what it already had.
 *
 * Plain Buffers and strings are accepted and produced without a key.
 * Events: `'reconnect'`, `'ready'`.
 *
 * @example
 * ```ts
 * await pipeline(stdinSource(), kafkaSink({ brokers: 'localhost:9092', topic: 'lines' }));
 * ```
 */
export function kafkaSink(options: KafkaSinkOptions): KafkaProducerSink {
  return new KafkaProducerSink(options);
}

/** The stream {@link kafkaSink} returns: a producer re-created after a broker failure, re-sending what was not acknowledged. */
export class KafkaProducerSink extends RetryingSink {
  /** It carries message headers: flow() writes dead-letter records here with `x-manifold-dead-letter-*` headers. */
  readonly carriesHeaders = true;
  /** The topic produced to. */
  readonly topic: string;

  constructor(options: KafkaSinkOptions) {
    const resolved = resolve(options);
    super(() => new Producing(resolved), {
      retry: resolved.retry,
      what: `kafkaSink: producing to ${resolved.topic} on ${resolved.connection.brokers.join(',')}`,
      highWaterMark: resolved.highWaterMark,
      signal: resolved.signal,
    });
    this.topic = resolved.topic;
  }
}

type Record_ = MessageToProduce<Buffer, Buffer, Buffer, Buffer>;

/** One produce request's messages and the records made of them, side by side (no object per message beyond the record). */
class Batch {
  readonly messages: Message[] = [];
  readonly records: Record_[] = [];
  bytes = 0;
  get length(): number {
    return this.messages.length;
  }
}

/** Key Buffers of recent string keys: most topics have far fewer keys than messages. Cleared when full. */
const KEY_CACHE_SIZE = 1024;

function headerMap(headers: Record<string, string> | undefined): Map<Buffer, Buffer> | undefined {
  if (!headers) return undefined;
  const entries = Object.entries(headers);
  if (entries.length === 0) return undefined;
  return new Map(entries.map(([k, v]) => [Buffer.from(k), Buffer.from(String(v))]));
}

const TOO_LARGE = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'CORRUPT_MESSAGE']);

/** One producer; failures end it with an error and the KafkaProducerSink around it makes a new one. */
class Producing extends Writable implements TakesMessages {
  readonly #o: Resolved;
  readonly #what: string;
  readonly #producer: Producer;
  #batch = new Batch();
  #inFlight = new Set<Batch>();
  #flushTimer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  /** A write held back (its batch is full and no request slot is free). */
  #heldCallback: ((error?: Error) => void) | undefined;
  /** Resolves waiters when a request settles. */
  #settledWaiters: Array<() => void> = [];
  #failed: Error | undefined;

  constructor(options: Resolved) {
    super({ objectMode: true, highWaterMark: options.highWaterMark });
    this.#o = options;
    this.#what = `kafkaSink (topic ${options.topic})`;
    this.#producer = new Producer({
      ...clientOptions(options.connection, this.#what, (error) => this.#fail(error)),
      // The library's retries cover a leader moving; longer outages are the retry option's.
      retries: 3,
      idempotent: options.idempotent,
      acks: ACKS[options.acks],
      compression: options.compression,
      autocreateTopics: options.autocreateTopics,
    });
    this.#producer.on('error', (error: Error) => this.#fail(kafkaError(this.#what, error)));
    watchTls(this.#producer, this.#what, (error) => this.#fail(error));
  }

  readonly #keys = new Map<string, Buffer>();

  #keyBuffer(key: string): Buffer {
    let buffer = this.#keys.get(key);
    if (buffer === undefined) {
      if (this.#keys.size >= KEY_CACHE_SIZE) this.#keys.clear();
      buffer = Buffer.from(key);
      this.#keys.set(key, buffer);
    }
    return buffer;
  }

  /** Adds `message` to the open batch (sealing it first when the message would overflow its bytes), or nacks it when too large. */
  #append(message: Message): void {
    const key = message.key === undefined ? undefined : this.#keyBuffer(message.key);
    const headers = headerMap(message.headers);
    let bytes = message.data.length;
    if (key !== undefined) bytes += key.length;
    if (headers) for (const [k, v] of headers) bytes += k.length + v.length;
    if (bytes > this.#o.maxMessageBytes) {
      message.nack(
        new ManifoldError(`${this.#what}: a message of ${bytes} bytes (data, key and headers) is over maxMessageBytes (${this.#o.maxMessageBytes}); it was not produced`, {
          code: ErrorCodes.MESSAGE_TOO_LARGE,
          details: { bytes, topic: this.#o.topic },
        }),
      );
      return;
    }
    const record: Record_ = { topic: this.#o.topic, value: message.data };
    if (key !== undefined) record.key = key;
    if (headers) record.headers = headers;
    if (message.timestamp !== undefined && Number.isFinite(message.timestamp)) record.timestamp = BigInt(Math.trunc(message.timestamp));
    // A message that would overflow the byte budget starts the next batch.
    if (this.#batch.length > 0 && this.#batch.bytes + bytes > this.#o.batchBytes) this.#sealBatch();
    const batch = this.#batch;
    batch.messages.push(message);
    batch.records.push(record);
    batch.bytes += bytes;
    if (batch.length >= this.#o.batchSize) this.#sealBatch();
  }

  #add(messages: Message[], callback: (error?: Error | null) => void): void {
    if (this.#failed) {
      callback(this.#failed);
      return;
    }
    for (let i = 0; i < messages.length; i++) this.#append(messages[i]!);
    if (this.#sealed.length > 0 && this.#inFlight.size >= this.#o.maxInFlightRequests) {
      // Full batches wait for a request slot; so does the writer.
      this.#heldCallback = (error) => callback(error);
      return;
    }
    this.#pump();
    this.#scheduleFlush();
    callback();
  }

  /** Full batches waiting for a request slot, oldest first. */
  #sealed: Batch[] = [];

  #sealBatch(): void {
    if (this.#batch.length === 0) return;
    this.#sealed.push(this.#batch);
    this.#batch = new Batch();
  }

  /** Sends sealed batches while request slots are free. */
  #pump(): void {
    while (this.#sealed.length > 0 && this.#inFlight.size < this.#o.maxInFlightRequests && !this.#failed) {
      this.#send(this.#sealed.shift()!);
    }
    if (this.#heldCallback && (this.#sealed.length === 0 || this.#inFlight.size < this.#o.maxInFlightRequests)) {
      const held = this.#heldCallback;
      this.#heldCallback = undefined;
      held();
    }
  }

  #scheduleFlush(): void {
    if (this.#flushTimer || this.#batch.length === 0) return;
    const flush = (): void => {
      this.#flushTimer = undefined;
      if (this.#batch.length === 0) return;
      // Only when a slot is free: while a request is in flight the batch keeps filling (natural batching).
      if (this.#inFlight.size >= this.#o.maxInFlightRequests) return;
      this.#sealBatch();
      this.#pump();
    };
    this.#flushTimer = this.#o.lingerMs > 0 ? setTimeout(flush, this.#o.lingerMs) : setImmediate(flush);
  }

  #send(batch: Batch): void {
    this.#inFlight.add(batch);
    this.#producer
      .send({ messages: batch.records })
      .then(
        () => {
          const { messages } = batch;
          for (let i = 0; i < messages.length; i++) messages[i]!.ack();
          this.emit('ready');
        },
        (error: unknown) => this.#onSendError(batch, error),
      )
      .finally(() => {
        this.#inFlight.delete(batch);
        if (this.#failed) return;
        this.#pump();
        // What filled up while this request was in flight goes now.
        if (this.#inFlight.size < this.#o.maxInFlightRequests && this.#batch.length > 0) {
          this.#sealBatch();
          this.#pump();
        }
        const waiters = this.#settledWaiters;
        this.#settledWaiters = [];
        for (const w of waiters) w();
      });
  }

  async #onSendError(batch: Batch, error: unknown): Promise<void> {
    const apiId = kafkaApiId(error);
    if (apiId && TOO_LARGE.has(apiId) && batch.length > 1) {
      // The broker refuses the whole request for one bad record: send them one by one to find it.
      for (let i = 0; i < batch.length; i++) {
        const message = batch.messages[i]!;
        if (this.#failed) {
          message.nack(this.#failed);
          continue;
        }
        try {
          await this.#producer.send({ messages: [batch.records[i]!] });
          message.ack();
        } catch (single) {
          this.#nackOrFail([message], single);
        }
      }
      return;
    }
    this.#nackOrFail(batch.messages, error);
  }

  #nackOrFail(messages: Message[], error: unknown): void {
    const apiId = kafkaApiId(error);
    if (apiId && TOO_LARGE.has(apiId)) {
      const wrapped = kafkaError(`${this.#what}: the broker refused the message`, error, { topic: this.#o.topic });
      for (const m of messages) m.nack(wrapped);
      return;
    }
    let wrapped = kafkaError(`${this.#what}: producing ${messages.length} message(s)`, error, { topic: this.#o.topic });
    if (isUnknownTopic(error) && !this.#o.autocreateTopics) {
      wrapped = new ManifoldError(`${this.#what}: topic ${JSON.stringify(this.#o.topic)} does not exist and autocreateTopics is off; create it or set autocreateTopics: true`, {
        code: ErrorCodes.NOT_FOUND,
        cause: error,
        details: { topic: this.#o.topic },
      });
    }
    for (const m of messages) m.nack(wrapped);
    this.#fail(wrapped);
  }

  #fail(error: Error): void {
    if (this.#failed) return;
    this.#failed = error;
    this.destroy(error);
  }

  /** RetryingSink's direct hand-over (see TakesMessages): what _writev does. */
  [takeMessages](messages: Message[], callback: (error?: Error | null) => void): boolean {
    if (this.#failed || this.destroyed || this.writableEnded) return false;
    this.#add(messages, callback);
    return true;
  }

  override _write(chunk: MessageLike, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    let message: Message;
    try {
      message = toMessage(chunk);
    } catch (error) {
      callback(toError(error));
      return;
    }
    this.#add([message], callback);
  }

  override _writev(chunks: Array<{ chunk: MessageLike }>, callback: (error?: Error | null) => void): void {
    let messages: Message[];
    try {
      messages = chunks.map((c) => toMessage(c.chunk));
    } catch (error) {
      callback(toError(error));
      return;
    }
    this.#add(messages, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    const finish = async (): Promise<void> => {
      this.#sealBatch();
      for (;;) {
        if (this.#failed) throw this.#failed;
        this.#pump();
        if (this.#inFlight.size === 0 && this.#sealed.length === 0) break;
        await new Promise<void>((resolveSettled) => this.#settledWaiters.push(resolveSettled));
      }
      await this.#producer.close();
    };
    finish().then(
      () => callback(),
      (error: unknown) => callback(toError(error)),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.#flushTimer) {
      clearTimeout(this.#flushTimer as NodeJS.Timeout);
      clearImmediate(this.#flushTimer as NodeJS.Immediate);
      this.#flushTimer = undefined;
    }
    const reason = error ?? new ManifoldError(`${this.#what}: destroyed before the message was produced`, { code: ErrorCodes.ABORTED });
    // Batches not yet sent are reported now; requests in flight settle by themselves (their acks still count).
    for (const batch of [this.#batch, ...this.#sealed]) for (const m of batch.messages) m.nack(reason);
    this.#batch = new Batch();
    this.#sealed = [];
    this.#failed ??= reason;
    const waiters = this.#settledWaiters;
    this.#settledWaiters = [];
    for (const w of waiters) w();
    // A write held for a request slot is released with the reason (RetryingSink's hand-over waits for it).
    const held = this.#heldCallback;
    this.#heldCallback = undefined;
    held?.(reason);
    this.#producer.close(true).then(
      () => callback(error),
      () => callback(error),
    );
  }
}
