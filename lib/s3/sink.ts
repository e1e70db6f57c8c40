/**
 * s3Sink: what users pipe into. A Writable in front of an s3Collector
 * (messages -> crash-safe local buffer files) piped into an s3Uploader
 * (committed files -> S3).
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable, addAbortSignal } from 'node:stream';
import { toError } from '../core/errors.js';
import type { MessageLike } from '../core/message.js';
import { checkOptions, numberOption, signalOption, stringOption } from '../core/options.js';
import { COLLECTOR_KEYS, S3Collector, resolveCollectorOptions, type S3CollectorOptions } from './collector.js';
import { BufferLock } from './lock.js';
import { S3Uploader, UPLOADER_KEYS, resolveUploaderOptions, type S3UploaderOptions } from './uploader.js';

/**
 * Options of {@link s3Sink}: the collector's and the uploader's, with
 * `bufferPath` defaulting to `<os temp dir>/manifold/s3/<bucket>`.
 */
export interface S3SinkOptions extends Omit<S3CollectorOptions, 'signal' | 'highWaterMark'>, Omit<S3UploaderOptions, 'signal'> {
  /** Destroys the sink (and both parts) when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark of the sink. Default 256 messages. */
  highWaterMark?: number;
}

const SINK_KEYS = [...new Set([...COLLECTOR_KEYS, ...UPLOADER_KEYS])];
// Collector and uploader events the sink re-emits.
const COLLECTOR_EVENTS = ['rotate', 'commit', 'quota'] as const;
const UPLOADER_EVENTS = ['upload', 'retry', 'uploaderror', 'closetimeout'] as const;

function pick<T extends object>(options: object, keys: readonly string[]): T {
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const value = (options as Record<string, unknown>)[key];
    if (value !== undefined) out[key] = value;
  }
  return out as T;
}

/**
 * A fault-tolerant S3 sink: each message (plus `delimiter`) is appended to a
 * local buffer file, committed by size (`commitSizeBytes`) or time
 * (`commitIntervalMs`), uploaded to `s3://bucket/prefix/YYYY-MM-DD/HHmmss.nnnnnnnnn-<writerId>`
 * and deleted once S3 confirmed. Data survives a crash, a restart and an S3
 * outage: the next start on the same `bufferPath` commits the torn-off buffer
 * and uploads whatever is left.
 *
 * Acks: `ackOn: 'disk'` (default) after the group-commit fsync (every
 * `syncIntervalMs`); `ackOn: 'upload'` once the file holding the message is in S3.
 * Backpressure: when `maxBufferBytes` is reached, writes wait; nothing is dropped.
 *
 * `end()` commits the open buffer and finishes once uploads are done or
 * `closeTimeoutMs` ran out (the rest stays on disk for the next start).
 *
 * Events: `'rotate'`, `'commit'`, `'quota'` (from the collector), `'upload'`,
 * `'retry'`, `'uploaderror'`, `'closetimeout'` (from the uploader).
 *
 * @example
 * ```ts
 * await pipeline(
 *   kinesisSource({ streamName: 'orders' }),
 *   s3Sink({ bucket: 'archive', prefix: 'orders', region: 'eu-west-1', commitSizeBytes: 64 << 20, compression: 'gzip' }),
 * );
 * ```
 */
export function s3Sink(options: S3SinkOptions): S3Sink {
  return new S3Sink(options);
}

export class S3Sink extends Writable {
  readonly #collector: S3Collector;
  readonly #uploader: S3Uploader;
  /** Held from the collector's start until the uploader is done, so no second sink uploads the same files meanwhile. */
  readonly #lock: BufferLock;
  #finishing: ((error?: Error | null) => void) | undefined;

  constructor(options: S3SinkOptions) {
    const where = 's3Sink';
    const o = checkOptions<S3SinkOptions>(where, options, SINK_KEYS);
    const bucket = stringOption(where, 'bucket', o.bucket, { required: true });
    const defaultBufferPath = join(tmpdir(), 'manifold', 's3', bucket);
    const highWaterMark = numberOption(where, 'highWaterMark', o.highWaterMark, 256, { min: 1, integer: true });
    const signal = signalOption(where, 'signal', o.signal);
    // Validate everything before constructing anything, so a bad option never leaves a half-made sink.
    const collectorOptions = pick<S3CollectorOptions>(o, COLLECTOR_KEYS.filter((k) => k !== 'signal'));
    const uploaderOptions = pick<S3UploaderOptions>(o, UPLOADER_KEYS.filter((k) => k !== 'signal'));
    resolveCollectorOptions(where, collectorOptions, defaultBufferPath);
    resolveUploaderOptions(where, uploaderOptions, defaultBufferPath);
    super({ objectMode: true, highWaterMark });
    this.#lock = new BufferLock(collectorOptions.bufferPath ?? defaultBufferPath);
    this.#collector = new S3Collector(collectorOptions, where, defaultBufferPath, this.#lock);
    this.#uploader = new S3Uploader({ ...uploaderOptions, bufferPath: this.#collector.bufferPath }, where);
    this.#collector.pipe(this.#uploader);
    for (const name of COLLECTOR_EVENTS) this.#collector.on(name, (event: unknown) => this.emit(name, event));
    for (const name of UPLOADER_EVENTS) this.#uploader.on(name, (event: unknown) => this.emit(name, event));
    // Space freed in S3's favour: a write held by the quota may go on.
    this.#uploader.on('upload', () => this.#collector.recheckQuota());
    const onError = (error: Error): void => {
      this.destroy(error);
    };
    this.#collector.on('error', onError);
    this.#uploader.on('error', onError);
    this.#uploader.once('finish', () => {
      // Released before 'finish', so a sink made right after `await pipeline(...)` can take the folder.
      void this.#lock.release().then(() => {
        const done = this.#finishing;
        this.#finishing = undefined;
        done?.();
      });
    });
    if (signal) addAbortSignal(signal, this);
  }

  /** The buffer folder. */
  get bufferPath(): string {
    return this.#collector.bufferPath;
  }

  /** This process's writer id (the suffix of its file names and keys). */
  get writerId(): string {
    return this.#collector.writerId;
  }

  /** The S3 key a committed file under `bufferPath` goes to. */
  keyFor(relativePath: string): string {
    return this.#uploader.keyFor(relativePath);
  }

  /**
   * Buffer figures for monitoring (the CLI's /metrics): committed files waiting for
   * upload, bytes in the buffer folder, and the age of the oldest waiting file.
   */
  gauges(): Record<string, number> {
    return {
      s3_buffer_files: this.#uploader.pendingFiles,
      s3_buffer_bytes: this.#collector.diskBytes,
      s3_buffer_oldest_age_seconds: this.#uploader.oldestPendingAgeMs() / 1000,
    };
  }

  /** Looks for leftover committed files now rather than at the next `uploadIntervalMs`. */
  rescan(): Promise<void> {
    return this.#uploader.rescan();
  }

  override _write(chunk: MessageLike, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    // The collector's callback fires once the bytes are written: that is the sink's backpressure.
    this.#collector.write(chunk, encoding, (error) => callback(error ? toError(error) : null));
  }

  override _writev(chunks: Array<{ chunk: MessageLike; encoding: BufferEncoding }>, callback: (error?: Error | null) => void): void {
    // Cork so the collector gets them as one batch (one write syscall).
    this.#collector.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.#collector.write(chunks[i]!.chunk);
    this.#collector.write(chunks[chunks.length - 1]!.chunk, (error) => callback(error ? toError(error) : null));
    this.#collector.uncork();
  }

  override _final(callback: (error?: Error | null) => void): void {
    // Finished = the open buffer is committed and uploads ran until done or closeTimeoutMs.
    this.#finishing = callback;
    this.#collector.end();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // A pending _final callback is dropped: destroy ends the stream, and a late 'finish' from the uploader is ignored.
    this.#finishing = undefined;
    // The collector first: it closes its buffer file and lock; the uploader aborts uploads (files stay on disk).
    let open = 2;
    const done = (): void => {
      open -= 1;
      if (open === 0) void this.#lock.release().then(() => callback(error));
    };
    for (const part of [this.#collector, this.#uploader]) {
      if (part.closed) done();
      else {
        part.once('close', done);
        part.destroy();
      }
    }
  }
}
