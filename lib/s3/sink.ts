/**
 * s3Sink: what users pipe into. A Writable in front of an s3Collector
 * (messages -> crash-safe local buffer files) piped into an s3Uploader
 * (committed files -> S3).
 */
import { Writable, addAbortSignal } from 'node:stream';
import { ErrorCodes, ManifoldError, toError } from '../core/errors.js';
import type { MessageLike } from '../core/message.js';
import type { OptionDeclaration, OptionSpecs, ResolvedOptions } from '../core/options.js';
import { sinkBufferPath } from './buffer-folder.js';
import { S3Collector } from './collector.js';
import { KeyTemplate } from './key-template.js';
import { BufferLock } from './lock.js';
import { checkBucket, s3CollectorOptions, s3SinkOptions, s3UploaderOptions, type S3SinkOptions, type S3UploaderOptions } from './options.js';
import { S3Uploader, uploaderSettings, type UploadEvent } from './uploader.js';

export type { S3SinkOptions } from './options.js';

// Collector and uploader events the sink re-emits.
const COLLECTOR_EVENTS = ['rotate', 'commit', 'quota', 'reject', 'warning'] as const;
const UPLOADER_EVENTS = ['upload', 'retry', 'uploaderror', 'closetimeout', 'warning'] as const;

/**
 * Refuses a prefix and keyTemplate whose longest key would pass S3's 1,024 bytes: prefix, partition path,
 * `/HHmmss.nnnnnnnnn-<writerId up to 64>` and `.zst` at most.
 */
function checkKeyLength(prefix: string, template: KeyTemplate): void {
  const longest = Buffer.byteLength(prefix) + template.maxLength + 1 + 17 + 64 + 4;
  if (longest <= 1024) return;
  throw new ManifoldError(
    `s3Sink: options.keyTemplate ${JSON.stringify(template.source)} with options.prefix of ${Buffer.byteLength(prefix)} bytes can make keys of ${longest} bytes, and S3 takes at most 1,024: shorten the prefix or the template (each field value takes up to 64 characters)`,
    { code: ErrorCodes.INVALID_OPTION, details: { option: 'keyTemplate' } },
  );
}

/** The options a part's declaration names, taken from the sink's validated ones. */
function pick<D extends OptionSpecs>(declaration: OptionDeclaration<D>, from: object): ResolvedOptions<D> {
  const out: Record<string, unknown> = {};
  for (const name of declaration.names) out[name] = (from as Record<string, unknown>)[name];
  return out as ResolvedOptions<D>;
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
 * One record is one line: a message containing `delimiter` is nacked with
 * `MANIFOLD_ERR_INVALID_MESSAGE` (`onDelimiter: 'refuse'`, the default) or every
 * record is escaped (`onDelimiter: 'escape'`).
 *
 * The buffer folder must be this user's and not writable by group or others
 * (`allowSharedBufferPath` to accept one that is); its default is per user and per
 * bucket and prefix. Only files the sink writes there are read, uploaded or deleted.
 *
 * Events: `'rotate'`, `'commit'`, `'quota'`, `'reject'` (from the collector), `'upload'`,
 * `'retry'`, `'uploaderror'`, `'closetimeout'` (from the uploader), `'warning'` (from
 * both: an entry of the buffer folder left alone, once per entry).
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
    const o = s3SinkOptions.resolve(options);
    // Checked before it names the default folder.
    checkBucket('s3Sink', o.bucket);
    const bufferPath = sinkBufferPath(o);
    // Each part takes what its own declaration names; the sink's signal is the sink's.
    const collectorOptions = { ...pick(s3CollectorOptions, o), bufferPath, signal: undefined };
    const uploaderOptions = { ...pick(s3UploaderOptions, o), bufferPath, signal: undefined };
    // Validate everything before constructing anything, so a bad option never leaves a half-made sink:
    // the cross-option checks too, under this factory's name.
    const settings = uploaderSettings('s3Sink', uploaderOptions);
    if (o.keyTemplate !== undefined) checkKeyLength(o.prefix, new KeyTemplate('s3Sink', o.keyTemplate, o.timeZone));
    super({ objectMode: true, highWaterMark: o.highWaterMark });
    this.#lock = new BufferLock(bufferPath);
    this.#collector = new S3Collector(collectorOptions, this.#lock);
    // Validated above (the declaration types `client` as unknown: its check is by shape).
    this.#uploader = new S3Uploader(uploaderOptions as S3UploaderOptions, settings);
    this.#collector.pipe(this.#uploader);
    for (const name of COLLECTOR_EVENTS) this.#collector.on(name, (event: unknown) => this.emit(name, event));
    for (const name of UPLOADER_EVENTS) this.#uploader.on(name, (event: unknown) => this.emit(name, event));
    // Uploaded and deleted: its bytes leave the buffer's count, and a write held by the quota may go on.
    this.#uploader.on('upload', (event: UploadEvent) => {
      this.#collector.released(event.relativePath);
      this.#collector.recheckQuota();
    });
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
    if (o.signal) addAbortSignal(o.signal, this);
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
   * Buffer figures for monitoring (the CLI's /metrics and /readyz), kept by the collector as it
   * writes and commits and as the uploader deletes what S3 confirmed: committed files waiting for
   * upload (`s3_buffer_files`), bytes in the buffer folder, the open buffer file included
   * (`s3_buffer_bytes`), and the age of the oldest waiting file (`s3_buffer_oldest_age_seconds`, to the second).
   */
  gauges(): Record<string, number> {
    return {
      s3_buffer_files: this.#collector.committedFiles,
      s3_buffer_bytes: this.#collector.diskBytes,
      s3_buffer_oldest_age_seconds: this.#collector.oldestCommittedAgeMs() / 1000,
    };
  }

  /** Looks for leftover committed files now rather than at the next `uploadIntervalMs`. */
  rescan(): Promise<void> {
    return this.#uploader.rescan();
  }

  override _write(chunk: MessageLike, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    // The collector calls back once it took the record (write-behind, bounded): that is the sink's backpressure.
    this.#collector.writeOne(chunk, callback);
  }

  override _writev(chunks: Array<{ chunk: MessageLike; encoding: BufferEncoding }>, callback: (error?: Error | null) => void): void {
    // Handed over as one batch, past the collector's own write buffer.
    this.#collector.writeMany(chunks, callback);
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
