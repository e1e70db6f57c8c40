import { randomUUID } from 'node:crypto';
import { Writable, addAbortSignal } from 'node:stream';
import { PutRecordsCommand, type KinesisClient, type KinesisClientConfig, type PutRecordsRequestEntry } from '@aws-sdk/client-kinesis';
import { awsCall, type AwsConnection, type AwsTimeouts } from '../core/aws.js';
import { ErrorCodes, ManifoldError, describe, isRetryable, toError } from '../core/errors.js';
import { toMessage, type Message, type MessageLike } from '../core/message.js';
import { backoffDelay, resolveRetry, withRetry, type ResolvedRetry, type RetryEvent } from '../core/retry.js';
import { kinesisError, resolveClient, resolveStream, type StreamRef } from './client.js';
import { MAX_KEY_LENGTH, MAX_RECORD_BYTES, kinesisSinkOptions, type KinesisSinkOptions } from './options.js';

export type { KinesisSinkOptions } from './options.js';

/** The `'retry'` event of a partial failure: these entries are sent again after `delayMs`. */
export interface PartialRetryEvent {
  /** Entries that failed in this request. */
  failed: number;
  /** Entries in the request. */
  sent: number;
  /** Error codes and how many entries had each, e.g. `{ ProvisionedThroughputExceededException: 3 }`. */
  errorCodes: Record<string, number>;
  /** The largest retry number among the failed entries (1 for their first retry). */
  attempt: number;
  delayMs: number;
}

/** The `'reject'` event: a record that can never be put, nacked with `error`. */
export interface RejectEvent {
  error: ManifoldError;
  /** Its size, data plus partition key, in bytes. */
  bytes: number;
  key: string;
}

const WHERE = 'kinesisSink';

interface Entry {
  message: Message;
  key: string;
  /** Data plus partition key, what counts toward the request limit. */
  bytes: number;
  /** Retries of this entry so far. */
  attempts: number;
}

/**
 * Writes Messages to a Kinesis stream with batched PutRecords. A request is
 * sent when it is full (`maxBatchRecords`, or `maxBatchBytes` counting
 * partition keys) or `lingerMs` after its first record. Each message is acked
 * when PutRecords reports it in; after a partial failure only the failed
 * entries are sent again, with backoff. A record over `maxRecordBytes` is
 * nacked with an error giving its size (and reported as `'reject'`); it never
 * blocks the others.
 *
 * The partition key is `message.key`, else `partitionKey`, else random.
 * Per-key order holds with the default `maxInFlightRequests: 1`, except that an
 * entry retried after a partial failure lands after the entries of its request
 * that succeeded (as with the KPL).
 *
 * When retries run out, or on a fatal error (missing stream, refused
 * credentials), every buffered message is nacked and the sink is destroyed
 * with a ManifoldError. Events: `'retry'` (a whole request, {@link RetryEvent};
 * or a partial failure, {@link PartialRetryEvent}), `'reject'` ({@link RejectEvent}).
 *
 * @example
 * ```ts
 * await pipeline(stdinSource(), kinesisSink({ streamName: 'events', partitionKey: (m) => JSON.parse(m.data.toString()).userId }));
 * ```
 */
export function kinesisSink(options: KinesisSinkOptions): KinesisSink {
  return new KinesisSink(options);
}

export class KinesisSink extends Writable {
  readonly #stream: StreamRef;
  readonly #client: KinesisClient;
  readonly #ownsClient: boolean;
  readonly #timeouts: AwsTimeouts;
  readonly #partitionKey: string | ((message: Message) => string) | undefined;
  readonly #maxBatchRecords: number;
  readonly #maxBatchBytes: number;
  readonly #maxRecordBytes: number;
  readonly #lingerMs: number;
  readonly #maxInFlightRequests: number;
  readonly #retry: ResolvedRetry;
  readonly #abort = new AbortController();
  /** Entries waiting for a request, oldest first. */
  #queue: Entry[] = [];
  #queueBytes = 0;
  /** Entries waiting out their backoff before going back to the queue. */
  #retrying = new Set<Entry[]>();
  #retryTimers = new Set<NodeJS.Timeout>();
  #requests = 0;
  /** Entries in the queue, in requests, or waiting to be retried. */
  #buffered = 0;
  #lingerTimer: NodeJS.Timeout | undefined;
  #lingerExpired = false;
  #ending = false;
  #writeWaiter: (() => void) | undefined;
  #idleWaiters: Array<() => void> = [];
  #fatal: Error | undefined;

  constructor(options: KinesisSinkOptions) {
    const o = kinesisSinkOptions.resolve(options);
    super({ objectMode: true, highWaterMark: o.highWaterMark });
    this.#stream = resolveStream(WHERE, o.streamName, o.streamARN);
    this.#partitionKey = o.partitionKey;
    this.#maxBatchRecords = o.maxBatchRecords;
    this.#maxBatchBytes = o.maxBatchBytes;
    this.#maxRecordBytes = o.maxRecordBytes ?? Math.min(MAX_RECORD_BYTES, this.#maxBatchBytes);
    if (this.#maxRecordBytes > this.#maxBatchBytes) {
      throw new ManifoldError(`${WHERE}: options.maxRecordBytes (${this.#maxRecordBytes}) must not exceed options.maxBatchBytes (${this.#maxBatchBytes})`, {
        code: ErrorCodes.INVALID_OPTION,
        details: { option: 'maxRecordBytes', conflictsWith: 'maxBatchBytes' },
      });
    }
    this.#lingerMs = o.lingerMs;
    this.#maxInFlightRequests = o.maxInFlightRequests;
    this.#retry = resolveRetry(WHERE, o.retry);
    // The client comes last: nothing may throw after we built one, or it would leak.
    const { client, owned, timeouts } = resolveClient(WHERE, o as AwsConnection<KinesisClient, KinesisClientConfig['credentials']>);
    this.#client = client;
    this.#ownsClient = owned;
    this.#timeouts = timeouts;
    if (o.signal) addAbortSignal(o.signal, this);
  }

  /** Messages accepted and not yet acked or nacked. */
  get pending(): number {
    return this.#buffered;
  }

  #keyOf(message: Message): string {
    if (message.key !== undefined) return message.key;
    if (typeof this.#partitionKey === 'string') return this.#partitionKey;
    if (this.#partitionKey) return this.#partitionKey(message);
    return randomUUID();
  }

  #reject(message: Message, error: ManifoldError, bytes: number, key: string): void {
    message.nack(error);
    this.emit('reject', { error, bytes, key } satisfies RejectEvent);
  }

  override _write(chunk: MessageLike, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#fatal) {
      callback(this.#fatal);
      return;
    }
    let message: Message;
    let key: string;
    try {
      message = toMessage(chunk);
      key = this.#keyOf(message);
    } catch (error) {
      callback(new ManifoldError(`${WHERE}: cannot write this chunk: ${describe(error)}`, { code: ErrorCodes.INVALID_MESSAGE, cause: error }));
      return;
    }
    const keyBytes = typeof key === 'string' ? Buffer.byteLength(key) : 0;
    const bytes = message.data.length + keyBytes;
    if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
      this.#reject(
        message,
        new ManifoldError(`${WHERE}: partition key must be a string of 1 to ${MAX_KEY_LENGTH} characters, got ${typeof key === 'string' ? `${key.length} characters` : typeof key}`, {
          code: ErrorCodes.INVALID_MESSAGE,
        }),
        bytes,
        String(key),
      );
      callback();
      return;
    }
    if (bytes > this.#maxRecordBytes) {
      this.#reject(
        message,
        new ManifoldError(
          `${WHERE}: record of ${bytes} bytes (data ${message.data.length} + partition key ${keyBytes}) exceeds the stream's record limit of ${this.#maxRecordBytes} bytes; not sent`,
          { code: ErrorCodes.MESSAGE_TOO_LARGE, details: { bytes, limit: this.#maxRecordBytes } },
        ),
        bytes,
        key,
      );
      callback();
      return;
    }
    this.#queue.push({ message, key, bytes, attempts: 0 });
    this.#queueBytes += bytes;
    this.#buffered += 1;
    this.#pump();
    // Hold the callback while our own buffer is full: that is how the sink's backpressure reaches the writer.
    if (this.#buffered < this.#maxBatchRecords * (this.#maxInFlightRequests + 1)) callback();
    else this.#writeWaiter = () => callback();
  }

  /** Sends every batch that is ready, as far as `maxInFlightRequests` allows. */
  #pump(): void {
    while (this.#requests < this.#maxInFlightRequests && this.#queue.length > 0 && !this.#fatal) {
      const full = this.#queue.length >= this.#maxBatchRecords || this.#queueBytes >= this.#maxBatchBytes;
      if (!full && !this.#ending && !this.#lingerExpired) {
        this.#lingerTimer ??= setTimeout(() => {
          this.#lingerTimer = undefined;
          this.#lingerExpired = true;
          this.#pump();
        }, this.#lingerMs);
        return;
      }
      const batch: Entry[] = [];
      let bytes = 0;
      while (batch.length < this.#maxBatchRecords && this.#queue.length > 0 && bytes + this.#queue[0]!.bytes <= this.#maxBatchBytes) {
        const entry = this.#queue.shift()!;
        bytes += entry.bytes;
        batch.push(entry);
      }
      this.#queueBytes -= bytes;
      // The linger applies to the batch just taken; what is left starts its own wait.
      this.#lingerExpired = false;
      if (this.#lingerTimer) {
        clearTimeout(this.#lingerTimer);
        this.#lingerTimer = undefined;
      }
      this.#requests += 1;
      this.#send(batch).finally(() => {
        this.#requests -= 1;
        this.#pump();
        this.#checkIdle();
      });
    }
  }

  async #send(batch: Entry[]): Promise<void> {
    const records: PutRecordsRequestEntry[] = batch.map((e) => ({ Data: e.message.data, PartitionKey: e.key }));
    const what = `${WHERE}: PutRecords to ${JSON.stringify(this.#stream.label)}`;
    let out;
    try {
      out = await withRetry(
        what,
        async () => {
          try {
            // A request nobody answers is aborted after requestTimeoutMs and retried like any transient failure.
            return await awsCall({ what, timeoutMs: this.#timeouts.requestTimeoutMs, signal: this.#abort.signal }, (abortSignal) =>
              this.#client.send(new PutRecordsCommand({ ...this.#stream.params, Records: records }), { abortSignal }),
            );
          } catch (error) {
            throw kinesisError(WHERE, 'PutRecords', this.#stream, error, { records: batch.length });
          }
        },
        this.#retry,
        (event: RetryEvent) => this.emit('retry', event),
        this.#abort.signal,
      );
    } catch (error) {
      this.#settle(batch, toError(error));
      this.#failFatal(toError(error));
      return;
    }
    const results = out.Records ?? [];
    const failed: Entry[] = [];
    const errorCodes: Record<string, number> = {};
    let firstFatal: { entry: Entry; code: string; message: string } | undefined;
    batch.forEach((entry, i) => {
      const result = results[i];
      if (result !== undefined && result.ErrorCode === undefined && result.SequenceNumber !== undefined) {
        this.#done(entry);
        entry.message.ack();
        return;
      }
      const code = result?.ErrorCode ?? 'MissingResult';
      errorCodes[code] = (errorCodes[code] ?? 0) + 1;
      if (!isRetryable({ name: code })) {
        firstFatal ??= { entry, code, message: result?.ErrorMessage ?? '' };
        this.#done(entry);
        entry.message.nack(
          new ManifoldError(`${WHERE}: Kinesis refused a record for ${JSON.stringify(this.#stream.label)}: ${code} ${result?.ErrorMessage ?? ''}`.trim(), {
            code: ErrorCodes.DELIVERY,
            details: { errorCode: code },
          }),
        );
        return;
      }
      entry.attempts += 1;
      failed.push(entry);
    });
    if (firstFatal) this.emit('reject', { error: new ManifoldError(`${WHERE}: ${firstFatal.code} ${firstFatal.message}`, { code: ErrorCodes.DELIVERY }), bytes: firstFatal.entry.bytes, key: firstFatal.entry.key });
    if (failed.length === 0) return;
    const attempt = Math.max(...failed.map((e) => e.attempts));
    if (attempt > this.#retry.retries) {
      const error = new ManifoldError(
        `${WHERE}: ${failed.length} record(s) could not be put to ${JSON.stringify(this.#stream.label)} after ${attempt} attempts (${Object.keys(errorCodes).join(', ')})`,
        { code: ErrorCodes.RETRIES_EXHAUSTED, retryable: true, details: { errorCodes } },
      );
      this.#settle(failed, error);
      this.#failFatal(error);
      return;
    }
    const delayMs = backoffDelay(this.#retry, attempt);
    this.emit('retry', { failed: failed.length, sent: batch.length, errorCodes, attempt, delayMs } satisfies PartialRetryEvent);
    // Only the failed entries go again, ahead of newer records so they are not starved.
    this.#retrying.add(failed);
    const timer = setTimeout(() => {
      this.#retryTimers.delete(timer);
      if (!this.#retrying.delete(failed)) return;
      this.#queue.unshift(...failed);
      for (const e of failed) this.#queueBytes += e.bytes;
      this.#lingerExpired = true;
      this.#pump();
    }, delayMs);
    this.#retryTimers.add(timer);
  }

  #done(_entry: Entry): void {
    this.#buffered -= 1;
    if (this.#writeWaiter && this.#buffered < this.#maxBatchRecords * (this.#maxInFlightRequests + 1)) {
      const waiter = this.#writeWaiter;
      this.#writeWaiter = undefined;
      waiter();
    }
  }

  #settle(entries: Entry[], error: Error): void {
    for (const entry of entries) {
      this.#done(entry);
      entry.message.nack(error);
    }
  }

  /** Nacks everything still buffered and destroys the sink with `error`. */
  #failFatal(error: Error): void {
    if (this.#fatal) return;
    this.#fatal = error;
    this.#nackAll(error);
    this.destroy(error);
  }

  #nackAll(error: Error): void {
    const queued = this.#queue;
    this.#queue = [];
    this.#queueBytes = 0;
    this.#settle(queued, error);
    for (const group of this.#retrying) this.#settle(group, error);
    this.#retrying.clear();
    for (const timer of this.#retryTimers) clearTimeout(timer);
    this.#retryTimers.clear();
    this.#checkIdle();
  }

  #checkIdle(): void {
    if (this.#buffered === 0 && this.#requests === 0 && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#ending = true;
    this.#pump();
    const finish = (): void => {
      if (this.#lingerTimer) clearTimeout(this.#lingerTimer);
      this.#lingerTimer = undefined;
      callback(this.#fatal ?? null);
    };
    if (this.#buffered === 0 && this.#requests === 0) finish();
    else this.#idleWaiters.push(finish);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const reason = error ?? new ManifoldError(`${WHERE}: destroyed before the record was put`, { code: ErrorCodes.ABORTED });
    this.#abort.abort(reason);
    if (this.#lingerTimer) clearTimeout(this.#lingerTimer);
    this.#lingerTimer = undefined;
    this.#fatal ??= reason;
    // Records in flight are nacked by their request's failure (it is aborted); the rest now.
    this.#nackAll(reason);
    const waiter = this.#writeWaiter;
    this.#writeWaiter = undefined;
    waiter?.();
    if (this.#ownsClient) this.#client.destroy();
    callback(error);
  }
}
