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
import { RetryingSink } from '../core/retrying-sink.js';
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

interface Entry {
  message: Message;
  record: MessageToProduce<Buffer, Buffer, Buffer, Buffer>;
  bytes: number;
}

function headerMap(headers: Record<string, string> | undefined): Map<Buffer, Buffer> | undefined {
  if (!headers) return undefined;
  const entries = Object.entries(headers);
  if (entries.length === 0) return undefined;
  return new Map(entries.map(([k, v]) => [Buffer.from(k), Buffer.from(String(v))]));
}

const TOO_LARGE = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'CORRUPT_MESSAGE']);

/** One producer; failures end it with an error and the KafkaProducerSink around it makes a new one. */
class Producing extends Writable {
  readonly #o: Resolved;
  readonly #what: string;
  readonly #producer: Producer;
  #batch: Entry[] = [];
  #batchBytes = 0;
  #inFlight = new Set<Entry[]>();
  #flushTimer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  /** A write held back (its batch is full and no request slot is free). */
  #heldCallback: (() => void) | undefined;
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

  #entry(message: Message): Entry | undefined {
    const key = message.key === undefined ? undefined : Buffer.from(message.key);
    const headers = headerMap(message.headers);
    let bytes = message.data.length + (key?.length ?? 0);
    if (headers) for (const [k, v] of headers) bytes += k.length + v.length;
    if (bytes > this.#o.maxMessageBytes) {
      message.nack(
        new ManifoldError(`${this.#what}: a message of ${bytes} bytes (data, key and headers) is over maxMessageBytes (${this.#o.maxMessageBytes}); it was not produced`, {
          code: ErrorCodes.MESSAGE_TOO_LARGE,
          details: { bytes, topic: this.#o.topic },
        }),
      );
      return undefined;
    }
    const record: MessageToProduce<Buffer, Buffer, Buffer, Buffer> = { topic: this.#o.topic, value: message.data };
    if (key) record.key = key;
    if (headers) record.headers = headers;
    if (message.timestamp !== undefined && Number.isFinite(message.timestamp)) record.timestamp = BigInt(Math.trunc(message.timestamp));
    return { message, record, bytes };
  }

  #add(messages: Message[], callback: (error?: Error | null) => void): void {
    if (this.#failed) {
      callback(this.#failed);
      return;
    }
    for (const message of messages) {
      const entry = this.#entry(message);
      if (!entry) continue;
      // A message that would overflow the byte budget starts the next batch.
      if (this.#batch.length > 0 && this.#batchBytes + entry.bytes > this.#o.batchBytes) this.#sealBatch();
      this.#batch.push(entry);
      this.#batchBytes += entry.bytes;
      if (this.#batch.length >= this.#o.batchSize) this.#sealBatch();
    }
    if (this.#sealed.length > 0 && this.#inFlight.size >= this.#o.maxInFlightRequests) {
      // Full batches wait for a request slot; so does the writer.
      this.#heldCallback = () => callback();
      return;
    }
    this.#pump();
    this.#scheduleFlush();
    callback();
  }

  /** Full batches waiting for a request slot, oldest first. */
  #sealed: Entry[][] = [];

  #sealBatch(): void {
    if (this.#batch.length === 0) return;
    this.#sealed.push(this.#batch);
    this.#batch = [];
    this.#batchBytes = 0;
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

  #send(batch: Entry[]): void {
    this.#inFlight.add(batch);
    this.#producer
      .send({ messages: batch.map((e) => e.record) })
      .then(
        () => {
          for (const e of batch) e.message.ack();
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

  async #onSendError(batch: Entry[], error: unknown): Promise<void> {
    const apiId = kafkaApiId(error);
    if (apiId && TOO_LARGE.has(apiId) && batch.length > 1) {
      // The broker refuses the whole request for one bad record: send them one by one to find it.
      for (const entry of batch) {
        if (this.#failed) {
          entry.message.nack(this.#failed);
          continue;
        }
        try {
          await this.#producer.send({ messages: [entry.record] });
          entry.message.ack();
        } catch (single) {
          this.#nackOrFail([entry], single);
        }
      }
      return;
    }
    this.#nackOrFail(batch, error);
  }

  #nackOrFail(batch: Entry[], error: unknown): void {
    const apiId = kafkaApiId(error);
    if (apiId && TOO_LARGE.has(apiId)) {
      const wrapped = kafkaError(`${this.#what}: the broker refused the message`, error, { topic: this.#o.topic });
      for (const e of batch) e.message.nack(wrapped);
      return;
    }
    let wrapped = kafkaError(`${this.#what}: producing ${batch.length} message(s)`, error, { topic: this.#o.topic });
    if (isUnknownTopic(error) && !this.#o.autocreateTopics) {
      wrapped = new ManifoldError(`${this.#what}: topic ${JSON.stringify(this.#o.topic)} does not exist and autocreateTopics is off; create it or set autocreateTopics: true`, {
        code: ErrorCodes.NOT_FOUND,
        cause: error,
        details: { topic: this.#o.topic },
      });
    }
    for (const e of batch) e.message.nack(wrapped);
    this.#fail(wrapped);
  }

  #fail(error: Error): void {
    if (this.#failed) return;
    this.#failed = error;
    this.destroy(error);
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
    for (const batch of [this.#batch, ...this.#sealed]) for (const e of batch) e.message.nack(reason);
    this.#batch = [];
    this.#sealed = [];
    this.#failed ??= reason;
    const waiters = this.#settledWaiters;
    this.#settledWaiters = [];
    for (const w of waiters) w();
    this.#heldCallback = undefined;
    this.#producer.close(true).then(
      () => callback(error),
      () => callback(error),
    );
  }
}
