/**
 * s3Source(): reads the objects under a bucket prefix, in key order, as lines — what s3Sink
 * wrote (an archive, a dead-letter store) can be replayed into any sink.
 */
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, S3Client, type GetObjectCommandOutput, type ListObjectsV2CommandOutput } from '@aws-sdk/client-s3';
import { awsCall, awsConnection, awsError, type AwsConnection } from '../core/aws.js';
import { ErrorCodes, ManifoldError, describe, toError } from '../core/errors.js';
import { createMessage, type Message } from '../core/message.js';
import { resolveRetry, withRetry, type ResolvedRetry, type RetryEvent } from '../core/retry.js';
import type { Checkpointer } from '../kinesis/checkpoint.js';
import { fileCheckpointer } from '../kinesis/file-checkpointer.js';
import { checkBucket, s3SourceOptions, type S3Credentials, type S3SourceOptions } from './options.js';
import { clientConfig } from './uploader.js';

/** The one "shard" of an s3Source scope in its checkpointer: the last object whose every line was acked. */
export const S3_CHECKPOINT_ID = 'objects';

/** The facts of one line, in its message's `meta`. */
export type S3LineMeta = {
  bucket: string;
  key: string;
  /** 1 for the object's first line. */
  line: number;
};

/** `'checkpoint'`: every line of `key` and of the objects before it was acked, and that is stored. */
export interface S3CheckpointEvent {
  key: string;
}

/** `'object'`: an object was read to its end (its lines may still be in flight). */
export interface S3ObjectEvent {
  key: string;
  lines: number;
  bytes: number;
}

/** An object being read or whose lines are in flight, oldest first. */
interface ObjectState {
  key: string;
  pushed: number;
  acked: number;
  /** Read to its end: no line of it is still to come. */
  ended: boolean;
  /** A line of it was nacked: the checkpoint stays before it, and a restart reads it again. */
  failed: boolean;
}

/**
 * Reads every object under `bucket`/`prefix` in key order (S3 lists keys in UTF-8 binary order;
 * s3Sink's keys sort by the time of their first record), each as lines: one message per line,
 * without its newline, with `meta` {@link S3LineMeta} and `timestamp` the object's LastModified.
 * Objects ending in `.gz` or `.zst` (or sent with that Content-Encoding) are decompressed.
 *
 * Progress: when every line of an object and of every object before it is acked, its key is stored
 * through `checkpointer` (or `checkpointFile`), and a new source over the same bucket and prefix
 * starts after it; an object read in part is read again from its first line (at-least-once). A nacked
 * line keeps the checkpoint before its object for the rest of the run. `from` starts after a key
 * when nothing is stored. Without `watch` the source ends after the last object once its lines are
 * acked and the checkpoint is stored; with `watch` it lists again every `pollIntervalMs` for keys
 * after the last one read (an object uploaded later under a key that sorts before it is not seen).
 *
 * Listing pages by `StartAfter` (the last key of the page before), so a listing resumes from any key.
 *
 * @example
 * ```ts
 * await flow({ source: s3Source({ bucket: 'archive', prefix: 'orders/', checkpointFile: './replay.json' }), sink: kafkaSink({ brokers, topic: 'orders' }) });
 * ```
 */
export function s3Source(options: S3SourceOptions): S3Source {
  return new S3Source(options);
}

export class S3Source extends Readable {
  /** A nacked line is read again after a restart, from the checkpoint before its object. */
  readonly redelivers = true;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #client: S3Client;
  /** Built here (not passed in): destroyed with the source. */
  readonly #ownsClient: boolean;
  readonly #retry: ResolvedRetry;
  readonly #requestTimeoutMs: number;
  readonly #checkpointer: Checkpointer | undefined;
  readonly #scope: string;
  readonly #from: string | undefined;
  readonly #watch: boolean;
  readonly #pollIntervalMs: number;
  readonly #maxInFlight: number;
  readonly #readAhead: number;
  readonly #maxInFlightBytes: number;
  readonly #closeTimeoutMs: number;
  readonly #abort = new AbortController();
  readonly #objects: ObjectState[] = [];
  #inFlight = 0;
  #inFlightBytes = 0;
  /** Resolves a pump waiting for room (the consumer's `read()`, or acks under the in-flight bounds). */
  #wake: (() => void) | undefined;
  #wantMore = false;
  /** The last key stored, and the one to store next. */
  #stored: string | undefined;
  #toStore: string | undefined;
  #storing: Promise<void> | undefined;
  #settledWaiters: Array<() => void> = [];
  #started = false;
  #finished = false;
  #closing: Promise<void> | undefined;

  constructor(options: S3SourceOptions) {
    const o = s3SourceOptions.resolve(options);
    super({ objectMode: true, highWaterMark: o.highWaterMark, autoDestroy: false });
    const where = 's3Source';
    checkBucket(where, o.bucket);
    const connection = awsConnection(where, o as AwsConnection<S3Client, S3Credentials>, 'an S3Client', {}, { idle: true });
    this.#ownsClient = !('client' in connection);
    this.#client = 'client' in connection ? connection.client : new S3Client(clientConfig(connection.settings, o.forcePathStyle));
    this.#requestTimeoutMs = connection.timeouts.requestTimeoutMs;
    this.#bucket = o.bucket;
    this.#prefix = o.prefix;
    this.#retry = resolveRetry(where, o.retry);
    if (o.checkpointer !== undefined && o.checkpointFile !== undefined) {
      throw new ManifoldError(`${where}: options.checkpointer and options.checkpointFile cannot be combined: give one place to store progress`, { code: ErrorCodes.INVALID_OPTION });
    }
    this.#checkpointer = o.checkpointer ?? (o.checkpointFile === undefined ? undefined : fileCheckpointer(o.checkpointFile));
    this.#scope = `s3://${o.bucket}/${o.prefix}`;
    this.#from = o.from;
    this.#watch = o.watch;
    this.#pollIntervalMs = o.pollIntervalMs;
    this.#maxInFlight = o.maxInFlight;
    this.#readAhead = o.readAhead;
    this.#maxInFlightBytes = o.maxInFlightBytes;
    this.#closeTimeoutMs = o.closeTimeoutMs;
    if (o.signal) {
      if (o.signal.aborted) queueMicrotask(() => this.destroy(toError(o.signal!.reason)));
      else o.signal.addEventListener('abort', () => this.destroy(toError(o.signal!.reason)), { once: true });
    }
  }

  override _read(): void {
    this.#wantMore = true;
    if (!this.#started) {
      this.#started = true;
      this.#run().then(
        () => undefined,
        (error: unknown) => {
          if (!this.destroyed) this.destroy(toError(error));
        },
      );
      return;
    }
    this.#poke();
  }

  #poke(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Waits until the consumer wants more and the in-flight bounds have room, or the source stops. */
  async #room(): Promise<void> {
    while (!this.#abort.signal.aborted && (!this.#wantMore || this.#inFlight >= this.#maxInFlight || this.#inFlightBytes >= this.#maxInFlightBytes)) {
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  async #call<T>(operation: string, resource: string, missing: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    return withRetry(
      `s3Source: ${operation} ${resource}`,
      async () => {
        try {
          return await awsCall({ what: `s3Source: ${operation} of ${resource}`, timeoutMs: this.#requestTimeoutMs, signal: this.#abort.signal }, fn);
        } catch (error) {
          throw awsError({ where: 's3Source', operation, resource, missing }, error);
        }
      },
      this.#retry,
      (event: RetryEvent) => this.emit('retry', event),
      this.#abort.signal,
    );
  }

  async #run(): Promise<void> {
    let after = this.#from;
    if (this.#checkpointer) {
      const stored = (await this.#checkpointer.load(this.#scope))[S3_CHECKPOINT_ID];
      if (stored) {
        after = stored.sequenceNumber;
        this.#stored = after;
      }
    }
    if (after !== undefined && after < this.#prefix) after = undefined;
    this.emit('ready', { bucket: this.#bucket, prefix: this.#prefix, after });
    for (;;) {
      const page: ListObjectsV2CommandOutput = await this.#call('ListObjectsV2', `s3://${this.#bucket}/${this.#prefix}`, `bucket ${JSON.stringify(this.#bucket)} does not exist`, (abortSignal) =>
        this.#client.send(new ListObjectsV2Command({ Bucket: this.#bucket, Prefix: this.#prefix, ...(after === undefined ? {} : { StartAfter: after }), MaxKeys: 1000 }), { abortSignal }),
      );
      if (this.#abort.signal.aborted) return;
      const contents = page.Contents ?? [];
      const keys: string[] = [];
      for (const object of contents) {
        const key = object.Key;
        if (key === undefined || (after !== undefined && key <= after)) continue;
        after = key;
        // A "folder" placeholder holds no lines.
        if (!(key.endsWith('/') && (object.Size ?? 0) === 0)) keys.push(key);
      }
      // GetObject of the next `readAhead` objects is under way while one is read: small objects are latency bound.
      const fetching: Array<Promise<GetObjectCommandOutput>> = [];
      const fetch = (key: string): Promise<GetObjectCommandOutput> => {
        const response = this.#get(key);
        response.catch(() => {});
        return response;
      };
      for (let i = 0; i < Math.min(this.#readAhead, keys.length); i++) fetching.push(fetch(keys[i]!));
      for (let i = 0; i < keys.length; i++) {
        const response = fetching.shift()!;
        if (i + this.#readAhead < keys.length) fetching.push(fetch(keys[i + this.#readAhead]!));
        try {
          await this.#readObject(keys[i]!, response);
        } finally {
          if (this.#abort.signal.aborted) for (const pending of fetching) void pending.then((out) => (out.Body as Readable | undefined)?.destroy(), () => {});
        }
        if (this.#abort.signal.aborted) return;
      }
      if (page.IsTruncated && contents.length > 0) continue;
      if (!this.#watch) break;
      try {
        await sleep(this.#pollIntervalMs, undefined, { signal: this.#abort.signal });
      } catch {
        return;
      }
    }
    // Read to the end: end once every line is settled and the checkpoint stored.
    this.#finished = true;
    this.push(null);
    await this.#whenSettled(Infinity);
    await this.#flushCheckpoint();
    if (!this.destroyed) this.destroy();
  }

  #get(key: string): Promise<GetObjectCommandOutput> {
    const resource = `s3://${this.#bucket}/${key}`;
    return this.#call('GetObject', resource, `${resource} does not exist`, (abortSignal) =>
      this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: key }), { abortSignal }),
    );
  }

  async #readObject(key: string, response: Promise<GetObjectCommandOutput>): Promise<void> {
    const resource = `s3://${this.#bucket}/${key}`;
    const state: ObjectState = { key, pushed: 0, acked: 0, ended: false, failed: false };
    this.#objects.push(state);
    const out = await response;
    const timestamp = out.LastModified?.getTime();
    const encoding = (out.ContentEncoding ?? '').toLowerCase();
    let body = out.Body as Readable;
    if (key.endsWith('.gz') || encoding === 'gzip') body = body.pipe(createGunzip());
    else if (key.endsWith('.zst') || encoding === 'zstd') body = body.pipe(createZstdDecompress());
    let rest: Buffer | undefined;
    let line = 0;
    let bytes = 0;
    const emit = (data: Buffer): void => {
      line += 1;
      const size = data.length;
      state.pushed += 1;
      this.#inFlight += 1;
      this.#inFlightBytes += size;
      const meta: S3LineMeta = { bucket: this.#bucket, key, line };
      const message: Message = createMessage({
        data,
        meta,
        ...(timestamp === undefined ? {} : { timestamp }),
        onAck: () => this.#settle(state, size, undefined),
        onNack: (error) => this.#settle(state, size, error),
      });
      if (!this.push(message)) this.#wantMore = false;
    };
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        bytes += chunk.length;
        const data = rest ? Buffer.concat([rest, chunk]) : chunk;
        rest = undefined;
        let start = 0;
        for (let at = data.indexOf(10, start); at !== -1; at = data.indexOf(10, start)) {
          await this.#room();
          if (this.#abort.signal.aborted) return;
          emit(Buffer.from(data.subarray(start, at)));
          start = at + 1;
        }
        if (start < data.length) rest = Buffer.from(data.subarray(start));
      }
      if (rest !== undefined && rest.length > 0) {
        // A last line without its newline is a line all the same.
        await this.#room();
        if (this.#abort.signal.aborted) return;
        emit(rest);
      }
    } catch (error) {
      if (this.#abort.signal.aborted) return;
      throw new ManifoldError(`s3Source: reading ${resource} failed at line ${line + 1}: ${describe(error)}`, {
        code: /incorrect header check|unexpected end|zstd|invalid/i.test(describe(error)) ? ErrorCodes.INVALID_MESSAGE : ErrorCodes.CONNECTION,
        cause: error,
        details: { bucket: this.#bucket, key, line: line + 1 },
      });
    } finally {
      body.destroy();
    }
    state.ended = true;
    this.emit('object', { key, lines: line, bytes } satisfies S3ObjectEvent);
    this.#advance();
  }

  #settle(state: ObjectState, size: number, error: Error | undefined): void {
    this.#inFlight -= 1;
    this.#inFlightBytes -= size;
    if (error) {
      state.failed = true;
      this.emit('nack', { key: state.key, error });
    } else {
      state.acked += 1;
    }
    this.#advance();
    if (this.#inFlight === 0) {
      const waiters = this.#settledWaiters;
      this.#settledWaiters = [];
      for (const done of waiters) done();
    }
    this.#poke();
  }

  /** Moves the checkpoint past every leading object read to its end with each line acked. */
  #advance(): void {
    let done: string | undefined;
    while (this.#objects.length > 0) {
      const head = this.#objects[0]!;
      if (!head.ended || head.failed || head.acked < head.pushed) break;
      done = head.key;
      this.#objects.shift();
    }
    if (done === undefined) return;
    this.#toStore = done;
    this.#storeSoon();
  }

  /** One store at a time; the newest key wins. */
  #storeSoon(): void {
    if (this.#storing || !this.#checkpointer) return;
    this.#storing = (async () => {
      try {
        while (this.#toStore !== undefined && this.#toStore !== this.#stored) {
          const key = this.#toStore;
          await this.#checkpointer!.store(this.#scope, { [S3_CHECKPOINT_ID]: { sequenceNumber: key } });
          this.#stored = key;
          this.emit('checkpoint', { key } satisfies S3CheckpointEvent);
        }
      } catch (error) {
        if (!this.destroyed) this.destroy(toError(error));
      } finally {
        this.#storing = undefined;
      }
    })();
  }

  async #flushCheckpoint(): Promise<void> {
    while (this.#storing) await this.#storing;
    if (this.#toStore !== undefined && this.#toStore !== this.#stored) {
      this.#storeSoon();
      while (this.#storing) await this.#storing;
    }
  }

  #whenSettled(timeoutMs: number): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = Number.isFinite(timeoutMs) ? setTimeout(done, timeoutMs) : undefined;
      function done(): void {
        if (timer) clearTimeout(timer);
        resolve();
      }
      this.#settledWaiters.push(done);
    });
  }

  /**
   * Stops reading, waits up to `closeTimeoutMs` for the lines in flight to be settled, stores the
   * checkpoint, and destroys the stream ('close' comes after the store).
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#abort.abort(new ManifoldError('s3Source closed', { code: ErrorCodes.ABORTED }));
      this.#poke();
      await this.#whenSettled(this.#closeTimeoutMs);
      await this.#flushCheckpoint();
      if (!this.destroyed) {
        if (!this.#finished) this.push(null);
        this.destroy();
      }
    })();
    return this.#closing;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#abort.abort(error ?? new ManifoldError('s3Source destroyed', { code: ErrorCodes.ABORTED }));
    this.#poke();
    // Its sockets go with it; the checkpoint store (close()) is done by now or does not need the client.
    if (this.#ownsClient) this.#client.destroy();
    callback(error);
  }
}
