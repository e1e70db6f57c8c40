/**
 * The delivery half of the S3 sink: a Writable of committed buffer files that
 * uploads each to a deterministic key, deletes it only after S3 confirmed,
 * retries with backoff, and rescans the buffer folder for files an earlier run
 * or a failed upload left behind. It reads, uploads and deletes only the files
 * the collector writes (see buffer-folder.ts); anything else is left alone.
 */
import { randomBytes } from 'node:crypto';
import { lstat, readdir, rmdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable, addAbortSignal } from 'node:stream';
import { createGzip, createZstdCompress } from 'node:zlib';
import { DeleteObjectCommand, HeadBucketCommand, PutObjectCommand, S3Client, type PutObjectCommandInput, type S3ClientConfig } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { awsCall, awsConnection, awsError, type AwsClientSettings, type AwsConnection, type AwsTimeouts } from '../core/aws.js';
import { ErrorCodes, ManifoldError, describe, isRetryable, toError } from '../core/errors.js';
import { conflictingOptions, type ResolvedOptions } from '../core/options.js';
import { resolveRetry, withRetry, type ResolvedRetry, type RetryEvent } from '../core/retry.js';
import {
  COMMITTED_NAME,
  COMMITTED_PATH,
  DAY_FOLDER,
  OnceReporter,
  PARTITION_COMMITTED_PATH,
  PARTS_FOLDER,
  checkBufferFolder,
  ignoredEntry,
  openBufferFile,
  refusal,
  walkPartitions,
  type IgnoredReason,
} from './buffer-folder.js';
import type { AckPair, CommittedFile } from './collector.js';
import { checkBucket, s3UploaderOptions, type S3Credentials, type S3UploaderOptions } from './options.js';

export type { S3Credentials, S3UploaderOptions } from './options.js';

/** The uploader's options after validation, and what code derives from them. */
export interface UploaderSettings extends Omit<ResolvedOptions<typeof s3UploaderOptions.specs>, 'retry'> {
  /** The client passed, or the settings to build one from (SDK retries off, the timeouts' handler). */
  connection: { client: S3Client } | { settings: AwsClientSettings<S3Credentials> };
  retry: ResolvedRetry;
  timeouts: AwsTimeouts;
}

/** Payload of the `'upload'` event. */
export interface UploadEvent {
  bucket: string;
  key: string;
  /** The local file, now deleted. */
  path: string;
  relativePath: string;
  /** Size of the local file. */
  bytes: number;
  /** ETag S3 returned. */
  etag: string | undefined;
  /** Attempts it took (1 = first try). */
  attempts: number;
  durationMs: number;
}

/** Payload of the `'uploaderror'` event: retries ran out on a transient failure; the file stays for the next rescan. */
export interface UploadErrorEvent {
  key: string;
  path: string;
  error: Error;
}

/** Payload of the `'closetimeout'` event: files still on disk when `closeTimeoutMs` ran out. */
export interface CloseTimeoutEvent {
  files: number;
  bytes: number;
}

// How many uploaded keys to remember, so a file the rescan already uploaded is not taken for lost when the collector hands it over.
const REMEMBERED = 10_000;
// Files tracked in memory at once. A backlog beyond it (an outage, a restart) waits on disk, where a rescan finds it as
// these go: the write callback is never held for files, so only the disk quota (maxBufferBytes) holds the source.
const MAX_TRACKED = 10_000;
// The slowest transfer a request may make before its overall deadline ends it: 64 KiB/s (0.5 Mbit/s).
const MIN_BYTES_PER_SECOND = 64 * 1024;
// A partition folder found empty is removed once it has not changed for this long (the collector makes it again when
// a record needs it; removing one it is about to use only costs it a retry).
const EMPTY_PARTITION_AGE_MS = 10 * 60_000;

/**
 * What the declaration leaves to code, for options it validated (`where` names the
 * factory the caller called): the one AWS check of client against region, endpoint,
 * credentials and connectTimeoutMs, and of client against forcePathStyle. Does no I/O.
 */
export function uploaderSettings(where: string, o: ResolvedOptions<typeof s3UploaderOptions.specs>): UploaderSettings {
  checkBucket(where, o.bucket);
  // An idle timeout on the client we build, not a whole-request one: how long an upload may take grows with its size.
  const connection = awsConnection(where, o as AwsConnection<S3Client, S3Credentials>, 'an S3Client', {}, { idle: true });
  if ('client' in connection && o.forcePathStyle !== undefined) {
    conflictingOptions(where, 'client', 'forcePathStyle', 'cannot be combined: configure the client you pass instead');
  }
  if (o.sseKmsKeyId !== undefined && o.serverSideEncryption !== 'aws:kms') {
    conflictingOptions(where, 'sseKmsKeyId', 'serverSideEncryption', "go together: a KMS key id needs serverSideEncryption: 'aws:kms'");
  }
  return { ...o, connection, retry: resolveRetry(where, o.retry), timeouts: connection.timeouts };
}

/**
 * Uploads committed buffer files (from {@link s3Collector}) to
 * `bucket`/`prefix` + the file's path under `bufferPath` (`.gz` added with
 * gzip), `uploadConcurrency` at a time, as a multipart upload streamed from
 * disk. The key is deterministic, so a re-upload after a crash overwrites the
 * same object instead of duplicating it. The local file is deleted only after
 * S3 confirmed; then the acks attached to it (`ackOn: 'upload'`) are acked.
 *
 * Transient failures are retried with backoff; when retries run out the file
 * stays on disk and the rescan every `uploadIntervalMs` tries it again, so an
 * S3 outage delays delivery without failing the stream. A fatal failure
 * (missing bucket, access denied) destroys the stream.
 *
 * `end()` waits for uploads up to `closeTimeoutMs`, then finishes anyway:
 * what is left stays on disk for the next start and its acks are nacked.
 *
 * Events: `'upload'` ({@link UploadEvent}), `'retry'` ({@link RetryEvent} plus `key`),
 * `'uploaderror'` ({@link UploadErrorEvent}), `'closetimeout'` ({@link CloseTimeoutEvent}).
 *
 * @example
 * ```ts
 * await pipeline(source, s3Collector({ bufferPath }), s3Uploader({ bucket: 'logs', bufferPath, region: 'eu-west-1' }));
 * ```
 */
export function s3Uploader(options: S3UploaderOptions): S3Uploader {
  return new S3Uploader(options);
}

interface Entry {
  relativePath: string;
  path: string;
  bytes: number;
  acks: AckPair[];
  state: 'queued' | 'uploading' | 'failed';
  /** For a partition file (keyTemplate), whose name carries no day: when it was committed or found. */
  at?: number;
}

function isCommittedFile(value: unknown): value is CommittedFile {
  const v = value as CommittedFile;
  return typeof v === 'object' && v !== null && typeof v.path === 'string' && typeof v.relativePath === 'string' && typeof v.bytes === 'number';
}

/**
 * The config of the client the uploader builds. With `endpoint` it talks to an S3-compatible server
 * (s3rver, MinIO, Ceph): path-style URLs unless `forcePathStyle: false`, and checksums
 * only where S3 requires them, since several such servers refuse or mis-store the SDK's default ones.
 */
/** The key's ending per compression. */
const EXTENSION = { none: '', gzip: '.gz', zstd: '.zst' } as const;

/**
 * What each object is stored with. A compressed file is a file of that format (`.gz` is
 * `application/gzip`, `.zst` `application/zstd`), not a text sent with a Content-Encoding that
 * clients would undo on download; an uncompressed one is lines of bytes (`application/octet-stream`).
 */
type ObjectParams = Pick<PutObjectCommandInput, 'ContentType' | 'StorageClass' | 'ServerSideEncryption' | 'SSEKMSKeyId' | 'Metadata'>;

function objectParams(o: UploaderSettings): ObjectParams {
  const params: ObjectParams = { ContentType: CONTENT_TYPE[o.compression] };
  if (o.storageClass !== undefined) params.StorageClass = o.storageClass as PutObjectCommandInput['StorageClass'];
  if (o.serverSideEncryption !== undefined) params.ServerSideEncryption = o.serverSideEncryption;
  if (o.sseKmsKeyId !== undefined) params.SSEKMSKeyId = o.sseKmsKeyId;
  if (o.metadata !== undefined) params.Metadata = { ...o.metadata };
  return params;
}

const CONTENT_TYPE = { none: 'application/octet-stream', gzip: 'application/gzip', zstd: 'application/zstd' } as const;

/** The S3 client config of settings we validated: path-style and checksums only where required for an endpoint (s3rver, MinIO). */
export function clientConfig(settings: AwsClientSettings<S3Credentials>, forcePathStyle: boolean | undefined): S3ClientConfig {
  if (settings.endpoint === undefined) return { ...settings, forcePathStyle: forcePathStyle ?? false };
  return { ...settings, forcePathStyle: forcePathStyle ?? true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' };
}

/** The bytes an S3 request carries (a part's body) or completes (every part of the object), for its deadline. */
function carriedBytes(input: unknown, partSizeBytes: number): number {
  const { Body: body, MultipartUpload: multipart } = (input ?? {}) as { Body?: unknown; MultipartUpload?: { Parts?: unknown[] } };
  if (body instanceof Uint8Array) return body.byteLength;
  if (typeof body === 'string') return Buffer.byteLength(body);
  // A body of unknown length: Upload cuts bodies into parts, so at most one part.
  if (body !== undefined && body !== null) return partSizeBytes;
  return (multipart?.Parts?.length ?? 0) * partSizeBytes;
}

export class S3Uploader extends Writable {
  readonly #o: UploaderSettings;
  readonly #client: S3Client;
  readonly #ownClient: boolean;
  readonly #files = new Map<string, Entry>();
  readonly #queue: Entry[] = [];
  readonly #uploaded = new Set<string>();
  readonly #abort = new AbortController();
  readonly #uploads = new Set<Upload>();
  #active = 0;
  #rescanTimer: NodeJS.Timeout | undefined;
  #rescanning: Promise<void> | undefined;
  #waiters: Array<() => void> = [];
  /** Files were left on disk untracked (past MAX_TRACKED): rescan once the tracked ones have gone down. */
  #overflow = false;
  /** Entries of the buffer folder left alone, each reported once. */
  readonly #ignored = new OnceReporter((path, reason) => this.emit('warning', ignoredEntry('s3Uploader', path, reason)));
  /** What every object is stored with: content type, storage class, encryption, metadata. */
  readonly #objectParams: ObjectParams;
  readonly #tags: Array<{ Key: string; Value: string }> | undefined;

  /** `settings`: what s3Sink validated already, under its own name (then `options` is not read). */
  constructor(options: S3UploaderOptions, settings?: UploaderSettings) {
    const o = settings ?? uploaderSettings('s3Uploader', s3UploaderOptions.resolve(options));
    super({ objectMode: true, highWaterMark: 16 });
    this.#o = o;
    this.#ownClient = !('client' in o.connection);
    this.#client = 'client' in o.connection ? o.connection.client : new S3Client(clientConfig(o.connection.settings, o.forcePathStyle));
    this.#objectParams = objectParams(o);
    this.#tags = o.tags === undefined ? undefined : Object.entries(o.tags).map(([Key, Value]) => ({ Key, Value }));
    if (o.signal) addAbortSignal(o.signal, this);
  }

  /** The S3 key a committed file goes to. */
  keyFor(relativePath: string): string {
    // A partition file (keyTemplate): `.parts/<partition path>/<name>` goes to `<prefix><partition path>/<name>`.
    const path = relativePath.startsWith(`${PARTS_FOLDER}/`) ? relativePath.slice(PARTS_FOLDER.length + 1) : relativePath;
    return `${this.#o.prefix}${path}${EXTENSION[this.#o.compression]}`;
  }

  /** Files known and not yet uploaded (queued, uploading, or waiting for the next rescan); at most 10,000 are tracked at once, a larger backlog waits on disk. */
  get pendingFiles(): number {
    return this.#files.size;
  }

  /**
   * Age in milliseconds of the oldest file not yet uploaded, from the commit time its
   * name carries (`YYYY-MM-DD/HHmmss.nnnnnnnnn-<writer>`, UTC); 0 when nothing waits.
   */
  oldestPendingAgeMs(now = Date.now()): number {
    let oldest: string | undefined;
    let at: number | undefined;
    for (const [name, entry] of this.#files) {
      if (entry.at !== undefined) {
        if (at === undefined || entry.at < at) at = entry.at;
      } else if (oldest === undefined || name < oldest) {
        oldest = name;
      }
    }
    const m = oldest === undefined ? null : /^(\d{4})-(\d{2})-(\d{2})\/(\d{2})(\d{2})(\d{2})\./.exec(oldest);
    if (m) {
      const committed = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
      if (at === undefined || committed < at) at = committed;
    }
    return at === undefined ? 0 : Math.max(0, now - at);
  }

  override _construct(callback: (error?: Error | null) => void): void {
    this.#verify().then(
      () => {
        // Housekeeping only: it must not keep a process alive whose work is done.
        this.#rescanTimer = setInterval(() => void this.rescan(), this.#o.uploadIntervalMs).unref();
        callback();
        void this.rescan();
      },
      // _destroy follows, and stops the client.
      (error: unknown) => callback(toError(error)),
    );
  }

  /**
   * The start-up check (`verify`): one HeadBucket (and with `'write'` a probe object written and deleted), no
   * retries. A fatal answer (missing bucket, refused credentials) rejects, so the stream fails before any upload;
   * a transient one (S3 unreachable) is a `'warning'`: the files wait on disk and the uploads retry as always.
   */
  async #verify(): Promise<void> {
    const { verify, bucket, prefix } = this.#o;
    // Destroyed right after it was made (before this tick): nothing to check, and no request should go out.
    if (verify === 'none' || this.destroyed) return;
    const probe = `${prefix}_manifold-verify-${process.pid}-${randomBytes(4).toString('hex')}`;
    const client = this.#timed('', '');
    let step = 'HeadBucket';
    try {
      await client.send(new HeadBucketCommand({ Bucket: bucket }));
      if (verify !== 'write') return;
      step = 'PutObject';
      await this.#timed(probe, '').send(new PutObjectCommand({ Bucket: bucket, Key: probe, Body: 'manifold write check\n', ...this.#objectParams }));
    } catch (error) {
      if (isRetryable(error) && !this.#abort.signal.aborted) {
        this.emit(
          'warning',
          new ManifoldError(
            `s3Uploader: the start-up check (${step} on s3://${bucket}/${step === 'PutObject' ? probe : ''}) could not reach S3: ${describe(error)}; going on: messages are kept in ${this.#o.bufferPath} and uploaded when S3 answers`,
            { code: ErrorCodes.CONNECTION, retryable: true, cause: error, details: { bucket, operation: step } },
          ),
        );
        return;
      }
      throw error;
    }
    try {
      await this.#timed(probe, '').send(new DeleteObjectCommand({ Bucket: bucket, Key: probe }));
    } catch (error) {
      // Writing works, which is what the check is for; a pipeline may lack s3:DeleteObject.
      this.emit(
        'warning',
        new ManifoldError(`s3Uploader: the start-up check left its probe object s3://${bucket}/${probe} behind (DeleteObject failed: ${describe(error)}); delete it by hand`, {
          code: error instanceof ManifoldError ? error.code : ErrorCodes.DELIVERY,
          cause: error,
          details: { bucket, key: probe },
        }),
      );
    }
  }

  /**
   * Looks for committed files in `bufferPath` that are not queued (left by an
   * earlier run, or whose upload failed) and queues them. Runs every
   * `uploadIntervalMs`; resolves when the scan is done (not the uploads).
   */
  rescan(): Promise<void> {
    this.#rescanning ??= this.#scan().finally(() => {
      this.#rescanning = undefined;
    });
    return this.#rescanning;
  }

  async #scan(): Promise<void> {
    const root = this.#o.bufferPath;
    try {
      // Missing: the collector has not made it yet, nothing to upload.
      if (!(await checkBufferFolder('s3Uploader', root, { create: false, allowShared: this.#o.allowSharedBufferPath }))) return;
    } catch (error) {
      this.destroy(toError(error));
      return;
    }
    // Dirents do not follow links: a link named like a day folder is not a directory here, and is left alone.
    const entries = await readdir(root, { withFileTypes: true }).catch(() => []);
    const days: string[] = [];
    for (const entry of entries) {
      if (!DAY_FOLDER.test(entry.name)) continue;
      if (entry.isDirectory()) days.push(entry.name);
      else this.#ignored.note(join(root, entry.name), entry.isSymbolicLink() ? 'symlink' : 'not a folder');
    }
    // Only folders before yesterday: the collector may be committing into yesterday's around midnight.
    const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
    days: for (const day of days.sort()) {
      if (this.destroyed) return;
      const names = (await readdir(join(root, day)).catch(() => [] as string[])).sort();
      if (names.length === 0 && day < yesterday) {
        await rmdir(join(root, day)).catch(() => undefined);
        continue;
      }
      for (const name of names) {
        const path = join(root, day, name);
        if (!COMMITTED_NAME.test(name)) {
          this.#ignored.note(path, 'name');
          continue;
        }
        const relativePath = `${day}/${name}`;
        const known = this.#files.get(relativePath);
        if (known?.state === 'failed') this.#requeue(known);
        if (known || this.#uploaded.has(relativePath)) continue;
        if (this.#files.size >= MAX_TRACKED) {
          // The rest waits on disk: oldest first, taken as these go (#pump rescans).
          this.#overflow = true;
          break days;
        }
        const info = await lstat(path).catch(() => undefined);
        if (!info) continue;
        const why = refusal(info);
        if (why !== undefined) {
          this.#ignored.note(path, why);
          continue;
        }
        this.#add(relativePath, path, info.size, []);
      }
    }
    if (!this.#overflow) await this.#scanPartitions();
    this.#pump();
  }

  /** The partition files (keyTemplate) under `.parts`, as #scan does the day folders; removes partition folders long empty. */
  async #scanPartitions(): Promise<void> {
    const root = this.#o.bufferPath;
    for await (const entry of walkPartitions(root)) {
      if (this.destroyed) return;
      if (entry.kind === 'ignored') {
        this.#ignored.note(entry.path, entry.reason ?? 'name');
        continue;
      }
      if (entry.kind === 'active') continue;
      if (entry.kind === 'folder') {
        if (!entry.empty) continue;
        const info = await stat(entry.path).catch(() => undefined);
        // rmdir refuses a folder that is no longer empty: a file the collector just put there stays.
        if (info && Date.now() - info.mtimeMs > EMPTY_PARTITION_AGE_MS) await rmdir(entry.path).catch(() => undefined);
        continue;
      }
      const { relativePath, path } = entry;
      const known = this.#files.get(relativePath);
      if (known?.state === 'failed') this.#requeue(known);
      if (known || this.#uploaded.has(relativePath)) continue;
      if (this.#files.size >= MAX_TRACKED) {
        this.#overflow = true;
        return;
      }
      const info = await lstat(path).catch(() => undefined);
      if (!info) continue;
      const why = refusal(info);
      if (why !== undefined) {
        this.#ignored.note(path, why);
        continue;
      }
      this.#add(relativePath, path, info.size, [], info.mtimeMs);
    }
  }

  #add(relativePath: string, path: string, bytes: number, acks: AckPair[], at?: number): void {
    if (this.#uploaded.has(relativePath)) {
      // The rescan found and uploaded it before the collector handed it over.
      for (const pair of acks) pair.ack();
      return;
    }
    const known = this.#files.get(relativePath);
    if (known) {
      known.acks.push(...acks);
      if (known.state === 'failed') this.#requeue(known);
      return;
    }
    // A file whose acks wait for its upload is always tracked (the source's window bounds those); others may wait on disk.
    if (this.#files.size >= MAX_TRACKED && acks.length === 0) {
      this.#overflow = true;
      return;
    }
    const entry: Entry = { relativePath, path, bytes, acks, state: 'queued' };
    if (relativePath.startsWith(`${PARTS_FOLDER}/`)) entry.at = at ?? Date.now();
    this.#files.set(relativePath, entry);
    this.#queue.push(entry);
  }

  #requeue(entry: Entry): void {
    entry.state = 'queued';
    this.#queue.push(entry);
  }

  override _write(file: CommittedFile, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (!isCommittedFile(file)) {
      callback(new ManifoldError(`s3Uploader: expected a committed file ({ path, relativePath, bytes }) from s3Collector, got ${typeof file}`, { code: ErrorCodes.INVALID_MESSAGE }));
      return;
    }
    // Its path decides the key and what is deleted after the upload: only a name the collector writes, in this folder.
    const named = COMMITTED_PATH.test(file.relativePath) || PARTITION_COMMITTED_PATH.test(file.relativePath);
    if (!named || file.path !== join(this.#o.bufferPath, file.relativePath)) {
      callback(
        new ManifoldError(
          `s3Uploader: expected a committed file of ${this.#o.bufferPath} (relativePath YYYY-MM-DD/HHmmss.nnnnnnnnn-<writerId>, path under bufferPath), got ${JSON.stringify(file.relativePath)} at ${JSON.stringify(file.path)}`,
          { code: ErrorCodes.INVALID_MESSAGE },
        ),
      );
      return;
    }
    this.#add(file.relativePath, file.path, file.bytes, file.acks ?? []);
    this.#pump();
    callback();
  }

  #pump(): void {
    while (this.#active < this.#o.uploadConcurrency && this.#queue.length > 0 && !this.destroyed && !this.#abort.signal.aborted) {
      const entry = this.#queue.shift()!;
      if (entry.state !== 'queued') continue;
      this.#active += 1;
      entry.state = 'uploading';
      void this.#upload(entry).finally(() => {
        this.#active -= 1;
        this.#pump();
        this.#notify();
      });
    }
    if (this.#overflow && this.#files.size <= MAX_TRACKED / 2 && !this.destroyed) {
      this.#overflow = false;
      void this.rescan();
    }
  }

  #notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  async #upload(entry: Entry): Promise<void> {
    const key = this.keyFor(entry.relativePath);
    const started = performance.now();
    let attempts = 0;
    try {
      const result = await withRetry(
        `uploading ${entry.path} to s3://${this.#o.bucket}/${key}`,
        async (attempt) => {
          attempts = attempt;
          return this.#put(entry, key);
        },
        this.#o.retry,
        (event: RetryEvent) => this.emit('retry', { ...event, key }),
        this.#abort.signal,
      );
      // Only now, with S3's confirmation, may the local copy go.
      await unlink(entry.path).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
      });
      this.#files.delete(entry.relativePath);
      this.#remember(entry.relativePath);
      const acks = entry.acks;
      entry.acks = [];
      this.emit('upload', {
        bucket: this.#o.bucket,
        key,
        path: entry.path,
        relativePath: entry.relativePath,
        bytes: entry.bytes,
        etag: result.ETag,
        attempts,
        durationMs: performance.now() - started,
      } satisfies UploadEvent);
      // After the event, so a listener sees the object before the source hears of it.
      for (const pair of acks) pair.ack();
    } catch (error) {
      entry.state = 'failed';
      if (this.destroyed || this.#abort.signal.aborted) return;
      const refused = (error as { refusedReason?: IgnoredReason }).refusedReason;
      if (refused !== undefined) {
        // Replaced by a link, a FIFO or a hard link since the scan: never read; left alone, said once.
        this.#files.delete(entry.relativePath);
        this.#ignored.note(entry.path, refused);
        for (const pair of entry.acks) pair.nack(toError(error));
        return;
      }
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (toError(error).cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
        // Someone removed the file (another uploader on the same folder): nothing left to send from here.
        this.#files.delete(entry.relativePath);
        const gone = new ManifoldError(`s3Uploader: ${entry.path} disappeared before it was uploaded`, { code: ErrorCodes.IO, cause: error });
        for (const pair of entry.acks) pair.nack(gone);
        this.emit('uploaderror', { key, path: entry.path, error: gone } satisfies UploadErrorEvent);
        return;
      }
      const cause = error instanceof ManifoldError && error.code === ErrorCodes.RETRIES_EXHAUSTED ? error.cause : error;
      if (isRetryable(cause)) {
        // An outage: keep the file; the next rescan tries again.
        this.emit('uploaderror', { key, path: entry.path, error: toError(error) } satisfies UploadErrorEvent);
        return;
      }
      // Not retryable (missing bucket, refused credentials, a bad request): the stream fails, the file stays on disk.
      this.destroy(this.#awsError('upload', key, entry.path, cause));
    }
  }

  async #put(entry: Entry, key: string): Promise<{ ETag?: string | undefined }> {
    // Open first, so a missing file fails as ENOENT instead of inside the SDK; never through a link.
    const opened = await openBufferFile(entry.path, 'read');
    if (typeof opened === 'string') throw Object.assign(ignoredEntry('s3Uploader', entry.path, opened), { refusedReason: opened });
    const file = opened.createReadStream();
    const { compression } = this.#o;
    const body = compression === 'gzip' ? file.pipe(createGzip()) : compression === 'zstd' ? file.pipe(createZstdCompress()) : file;
    if (body !== file) file.once('error', (error) => body.destroy(error));
    const upload = new Upload({
      client: this.#timed(key, entry.path),
      params: { Bucket: this.#o.bucket, Key: key, Body: body, ...this.#objectParams },
      ...(this.#tags ? { tags: this.#tags } : {}),
      partSize: this.#o.partSizeBytes,
      // One part in flight per upload: memory stays near uploadConcurrency x 2 parts whatever the file size.
      queueSize: 1,
      leavePartsOnError: false,
    });
    this.#uploads.add(upload);
    try {
      return await upload.done();
    } finally {
      this.#uploads.delete(upload);
      file.destroy();
      if (body !== file) body.destroy();
    }
  }

  /**
   * The client as an Upload sees it: every request it sends (Upload passes no abort signal of its own)
   * gets a deadline that grows with what it carries, and stops when the uploader does.
   */
  #timed(key: string, path: string): S3Client {
    const client = this.#client;
    const { bucket, partSizeBytes, timeouts } = this.#o;
    const send = (command: { input?: unknown }, options?: { abortSignal?: AbortSignal }): Promise<unknown> => {
      const operation = command.constructor.name.replace(/Command$/, '') || 'request';
      const timeoutMs = timeouts.requestTimeoutMs + Math.ceil((carriedBytes(command.input, partSizeBytes) * 1000) / MIN_BYTES_PER_SECOND);
      // Aborting a multipart upload is the cleanup after a failure or a stop: it still goes out (within its deadline).
      const cleanup = operation === 'AbortMultipartUpload';
      const stop = cleanup ? undefined : this.#abort.signal;
      const signal = options?.abortSignal && stop ? AbortSignal.any([options.abortSignal, stop]) : (options?.abortSignal ?? stop);
      const sent = awsCall({ what: `s3Uploader: ${operation} to s3://${bucket}/${key}`, timeoutMs, signal }, (abortSignal) =>
        client.send(command as Parameters<S3Client['send']>[0], { ...options, abortSignal }),
      ).catch((error: unknown) => {
        // Mapped here, per request, so the retry decides on the one AWS classification and its events name the operation.
        throw this.#awsError(operation, key, path, error);
      });
      // Upload throws the cleanup's error in place of the part's: a refused abort (no s3:AbortMultipartUpload permission,
      // a server without it) would turn a part that timed out, retryable, into a fatal failure. The parts left behind
      // are the bucket's lifecycle rule's business.
      return cleanup ? sent.catch(() => ({})) : sent;
    };
    return new Proxy(client, { get: (target, property) => (property === 'send' ? send : Reflect.get(target, property, target)) });
  }

  /** An S3 failure as a ManifoldError, through the one AWS mapping: a missing bucket is NOT_FOUND, refused credentials AUTH (both fatal). */
  #awsError(operation: string, key: string, path: string, error: unknown): Error {
    const bucket = this.#o.bucket;
    return awsError(
      {
        where: 's3Uploader',
        operation,
        resource: `s3://${bucket}/${key}`,
        missing: `bucket ${JSON.stringify(bucket)} does not exist (create it, or fix options.bucket)`,
        // The start-up check has no key or file.
        details: { bucket, ...(key === '' ? {} : { key }), ...(path === '' ? {} : { path }) },
      },
      error,
    );
  }

  #remember(relativePath: string): void {
    this.#uploaded.add(relativePath);
    if (this.#uploaded.size > REMEMBERED) {
      const oldest = this.#uploaded.values().next().value;
      if (oldest !== undefined) this.#uploaded.delete(oldest);
    }
  }

  /** Resolves when nothing is queued or uploading (failed files wait for a rescan). */
  #whenIdle(): Promise<void> {
    if (this.#active === 0 && !this.#queue.some((e) => e.state === 'queued')) return Promise.resolve();
    return new Promise<void>((resolve) => this.#waiters.push(resolve)).then(() => this.#whenIdle());
  }

  override _final(callback: (error?: Error | null) => void): void {
    const deadline = Date.now() + this.#o.closeTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.#o.closeTimeoutMs);
    });
    const drain = async (): Promise<'done'> => {
      await this.rescan();
      for (;;) {
        await this.#whenIdle();
        if (this.destroyed) return 'done';
        if (this.#overflow) {
          this.#overflow = false;
          await this.rescan();
          continue;
        }
        if (this.#files.size === 0) return 'done';
        // Failed uploads (an outage): keep trying until the deadline, pausing like the retry would.
        await new Promise((resolve) => setTimeout(resolve, Math.min(this.#o.retry.minTimeoutMs || 100, Math.max(0, deadline - Date.now()))));
        for (const entry of this.#files.values()) if (entry.state === 'failed') this.#requeue(entry);
        this.#pump();
      }
    };
    Promise.race([drain(), timedOut])
      .then(async (outcome) => {
        clearTimeout(timer);
        if (outcome === 'timeout') await this.#giveUp();
        this.#stop();
        callback();
      })
      .catch((error: unknown) => {
        clearTimeout(timer);
        callback(toError(error));
      });
  }

  /** closeTimeoutMs ran out: stop uploading, leave the files for the next start, nack their acks. */
  async #giveUp(): Promise<void> {
    this.#abort.abort(new ManifoldError('s3Uploader: closeTimeoutMs ran out', { code: ErrorCodes.CLOSE_TIMEOUT }));
    await Promise.allSettled([...this.#uploads].map((u) => u.abort()));
    while (this.#active > 0) await new Promise<void>((resolve) => this.#waiters.push(resolve));
    let bytes = 0;
    const error = new ManifoldError(
      `s3Uploader: not uploaded within closeTimeoutMs (${this.#o.closeTimeoutMs} ms); the file stays in ${this.#o.bufferPath} for the next start`,
      { code: ErrorCodes.CLOSE_TIMEOUT, retryable: true },
    );
    for (const entry of this.#files.values()) {
      bytes += entry.bytes;
      for (const pair of entry.acks) pair.nack(error);
      entry.acks = [];
    }
    this.emit('closetimeout', { files: this.#files.size, bytes } satisfies CloseTimeoutEvent);
  }

  #stop(): void {
    clearInterval(this.#rescanTimer);
    this.#rescanTimer = undefined;
    if (this.#ownClient) this.#client.destroy();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#abort.abort(error ?? new ManifoldError('s3Uploader destroyed', { code: ErrorCodes.ABORTED }));
    for (const upload of this.#uploads) void upload.abort().catch(() => undefined);
    const reason = error ?? new ManifoldError('s3Uploader: destroyed before the file was uploaded; it stays on disk for the next start', { code: ErrorCodes.ABORTED });
    for (const entry of this.#files.values()) {
      for (const pair of entry.acks) pair.nack(reason);
      entry.acks = [];
    }
    this.#notify();
    this.#stop();
    callback(error);
  }
}
