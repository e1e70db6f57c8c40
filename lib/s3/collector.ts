/**
 * The crash-safe half of the S3 sink: a Transform that appends messages to a
 * local buffer file and commits it (fsync, atomic rename into a per-day folder,
 * fsync of the folders) by size or by time, emitting each committed file.
 *
 * On disk, under `bufferPath` (created with mode 0700):
 *
 * ```
 * .lock                                   pid and token of the process that owns the folder
 * .active/<writerId>                      the open buffer file; never uploaded as is
 * YYYY-MM-DD/HHmmss.nnnnnnnnn-<writerId>  committed files (UTC), uploaded then deleted
 * ```
 *
 * Nothing else there is read, moved or deleted (see buffer-folder.ts).
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { lstat, open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform, addAbortSignal, type TransformCallback } from 'node:stream';
import { ErrorCodes, ManifoldError, describe, toError } from '../core/errors.js';
import { toMessage, type Message, type MessageLike } from '../core/message.js';
import type { ResolvedOptions } from '../core/options.js';
import { delimitedRecord, delimiterError, delimiterPolicy, type DelimiterPolicy, type DelimiterRejectEvent } from '../core/delimiter.js';
import {
  ACTIVE_FOLDER,
  COMMITTED_NAME,
  DAY_FOLDER,
  LOCK_NAMES,
  OnceReporter,
  PARTS_FOLDER,
  WRITER_ID,
  checkBufferFolder,
  ignoredEntry,
  openBufferFile,
  ownFolder,
  refusal,
  walkPartitions,
} from './buffer-folder.js';
import { KeyTemplate } from './key-template.js';
import { BufferLock } from './lock.js';
import { s3CollectorOptions, type S3CollectorOptions } from './options.js';

export type { S3CollectorOptions } from './options.js';
export type { DelimiterRejectEvent } from '../core/delimiter.js';

/** The settle functions of one message. Kept instead of the message so its bytes can be collected once written. */
export interface AckPair {
  ack(): void;
  nack(error?: Error): void;
}

/** What the collector emits downstream for each committed buffer file. */
export interface CommittedFile {
  /** Absolute path of the committed file. */
  path: string;
  /** Path under `bufferPath`, with `/` separators: `2026-11-28/041500.123456789-4711-9f2c1a0b`. The S3 key is `prefix` + this. */
  relativePath: string;
  /** Size of the file in bytes. */
  bytes: number;
  /** Records in the file (delimiter-terminated). */
  records: number;
  /** With `ackOn: 'upload'`: the acks of the messages in the file, for the uploader to settle. */
  acks?: AckPair[];
}

/** Why a buffer file was closed, as carried by `'rotate'` and `'commit'` events. */
export type CommitReason = 'size' | 'time' | 'end' | 'quota' | 'recovery' | 'partitions';

/** Payload of the collector's `'rotate'` event: the open buffer file is being closed. */
export interface RotateEvent {
  reason: CommitReason;
  /** The buffer file being closed. */
  path: string;
  bytes: number;
  records: number;
}

/** Payload of the `'commit'` event: a buffer file is durable under its committed name. */
export interface CommitEvent extends Omit<CommittedFile, 'acks'> {
  reason: CommitReason;
}

/** Payload of the `'quota'` event: writes are held because the buffer folder is full. */
export interface QuotaEvent {
  /** Bytes in the buffer folder when writes were held. */
  diskBytes: number;
  maxBufferBytes: number;
}

/** The collector's options after validation, with defaults filled in. */
type Settings = ResolvedOptions<typeof s3CollectorOptions.specs> & { writerId: string; policy: DelimiterPolicy };

// Unsynced messages beyond which a write waits for the fsync in flight: a memory bound on the ack closures
// held, reached only when a disk's fsync takes far longer than syncIntervalMs.
const MAX_UNSYNCED = 50_000;
// How often a write held by the disk quota looks again at the folder.
const QUOTA_POLL_MS = 100;
// Bytes accepted (their write callback called) but not yet written: while one write is at the disk, the
// next batches gather in memory and go as one write after it. Above this, write callbacks wait for that write.
const WRITE_AHEAD_BYTES = 256 * 1024;

/**
 * The partitions of a batch in the order of their last record, so the open files are touched in the order
 * they were last written and the cap on open partitions commits the least recently written one.
 */
function byLastWrite(partitions: string[], groups: Map<string, unknown>): string[] {
  if (groups.size === 1) return [...groups.keys()];
  const seen = new Set<string>();
  for (let k = partitions.length - 1; k >= 0 && seen.size < groups.size; k--) seen.add(partitions[k]!);
  return [...seen].reverse();
}

/**
 * A Transform from messages to committed buffer files. Each message and the
 * `delimiter` are appended to the open buffer file; the file is committed when
 * it reaches `commitSizeBytes` or `commitIntervalMs` after its first record.
 * Commit = fsync, atomic rename to `YYYY-MM-DD/HHmmss.nnnnnnnnn-<writerId>`
 * (UTC), fsync of both folders; a file is never visible under its committed
 * name half-written.
 *
 * At start it takes `bufferPath/.lock` (a live process holding it is an error),
 * cuts any open buffer left by a crash back to its last complete record and
 * commits it (those files are emitted first).
 *
 * Events: `'rotate'` ({@link RotateEvent}), `'commit'` ({@link CommitEvent}),
 * `'quota'` ({@link QuotaEvent}). Acks: see `ackOn`.
 *
 * @example
 * ```ts
 * const collector = s3Collector({ bufferPath: '/var/spool/orders', commitSizeBytes: 1 << 20 });
 * collector.on('data', (file: CommittedFile) => console.log('committed', file.relativePath));
 * ```
 */
export function s3Collector(options: S3CollectorOptions): S3Collector {
  return new S3Collector(options);
}

/** Formats the committed name parts for a time given in nanoseconds since the epoch (UTC). */
function committedName(ns: bigint, writerId: string): { day: string; name: string } {
  const ms = Number(ns / 1_000_000n);
  const iso = new Date(ms).toISOString(); // 2026-11-28T04:15:00.123Z
  const fraction = String(ns % 1_000_000_000n).padStart(9, '0');
  return { day: iso.slice(0, 10), name: `${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}.${fraction}-${writerId}` };
}

// The time of a commit in nanoseconds: the wall clock (Date.now(), ms) read at an anchor, plus the monotonic
// nanoseconds since (process.hrtime.bigint()), so the last digits are real (not a microsecond clock times 1000).
// The two clocks drift apart (NTP slews the wall clock; a VM's clocks jump): when they differ by more than 2 ms
// the anchor is taken again. Names stay strictly increasing whatever the clocks do (see #publish).
let wallAnchorNs = BigInt(Date.now()) * 1_000_000n;
let hrAnchor = process.hrtime.bigint();
const MAX_DRIFT_NS = 2_000_000n;

/** Nanoseconds since the epoch: the monotonic clock offset against the wall clock, within 2 ms of Date.now(). */
export function nowNanoseconds(): bigint {
  const hr = process.hrtime.bigint();
  const ns = wallAnchorNs + (hr - hrAnchor);
  const wall = BigInt(Date.now()) * 1_000_000n;
  const drift = ns - wall;
  if (drift > MAX_DRIFT_NS || drift < -MAX_DRIFT_NS) {
    wallAnchorNs = wall;
    hrAnchor = hr;
    return wall;
  }
  return ns;
}

function ioError(what: string, error: unknown): ManifoldError {
  return new ManifoldError(`s3Collector: ${what} failed: ${describe(error)}`, { code: ErrorCodes.IO, cause: error });
}

/** Fsyncs a folder so a rename or create inside it survives a power loss. */
async function syncFolder(path: string): Promise<void> {
  const handle = await open(path, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * The byte length of `handle`'s content up to and including the last
 * `delimiter`, reading backwards in blocks so a large file is not read whole.
 */
async function lastCompleteLength(handle: FileHandle, size: number, delimiter: Buffer): Promise<number> {
  const block = 64 * 1024;
  let end = size;
  while (end > 0) {
    // Overlap by delimiter.length - 1 so a delimiter across two blocks is found.
    const start = Math.max(0, end - block);
    const length = Math.min(size, end + delimiter.length - 1) - start;
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, start);
    const at = buffer.subarray(0, bytesRead).lastIndexOf(delimiter);
    if (at >= 0) return start + at + delimiter.length;
    end = start;
  }
  return 0;
}

function countDelimited(data: Buffer, delimiter: Buffer): number {
  let count = 0;
  let at = data.indexOf(delimiter);
  while (at >= 0) {
    count += 1;
    at = data.indexOf(delimiter, at + delimiter.length);
  }
  return count;
}

/** Sums the bytes of committed and open buffer files under `bufferPath`. */
export async function bufferedBytes(bufferPath: string): Promise<number> {
  return (await bufferedFiles(bufferPath)).total;
}

/**
 * The bytes of committed and open buffer files under `bufferPath`, and each committed file's size by its path
 * under it: only regular files under the names the collector writes, in real folders (nothing else is ours).
 */
async function bufferedFiles(bufferPath: string): Promise<{ total: number; committed: Map<string, number>; committedAt: Map<string, number> }> {
  let total = 0;
  const committed = new Map<string, number>();
  // Partition files' names carry no day: their age is their last change.
  const committedAt = new Map<string, number>();
  // withFileTypes does not follow links: a link to a folder is not a directory here.
  const entries = await readdir(bufferPath, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const active = entry.name === ACTIVE_FOLDER;
    if (!entry.isDirectory() || (!DAY_FOLDER.test(entry.name) && !active)) continue;
    const folder = join(bufferPath, entry.name);
    for (const name of await readdir(folder).catch(() => [] as string[])) {
      if (!(active ? WRITER_ID : COMMITTED_NAME).test(name)) continue;
      // A file may be uploaded and deleted between readdir and lstat.
      const info = await lstat(join(folder, name)).catch(() => undefined);
      if (!info || refusal(info) !== undefined) continue;
      total += info.size;
      if (!active) committed.set(`${entry.name}/${name}`, info.size);
    }
  }
  for await (const entry of walkPartitions(bufferPath)) {
    if (entry.kind !== 'committed' && entry.kind !== 'active') continue;
    const info = await lstat(entry.path).catch(() => undefined);
    if (!info || refusal(info) !== undefined) continue;
    total += info.size;
    if (entry.kind === 'committed') {
      committed.set(entry.relativePath, info.size);
      committedAt.set(entry.relativePath, info.mtimeMs);
    }
  }
  return { total, committed, committedAt };
}

/**
 * The commit time (ms since the epoch) a committed file's path carries
 * (`YYYY-MM-DD/HHmmss.nnnnnnnnn-<writerId>`, UTC), to the second; undefined for any other name.
 */
export function committedAtMs(relativePath: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})\/(\d{2})(\d{2})(\d{2})\./.exec(relativePath);
  if (!m) return undefined;
  return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

interface ActiveFile {
  handle: FileHandle;
  path: string;
  /** With a keyTemplate: its partition path; undefined for the default layout (`.active/<writerId>`). */
  partition: string | undefined;
  /** The commitIntervalMs timer of this file. */
  timer: NodeJS.Timeout | undefined;
  generation: number;
  bytes: number;
  records: number;
  /** With ackOn 'upload': acks of every message in the file. */
  acks: AckPair[];
}

export class S3Collector extends Transform {
  readonly #o: Settings;
  readonly #activeFolder: string;
  readonly #lock: BufferLock;
  /** Whether this collector made the lock (standalone) and so releases it; s3Sink holds its own until uploads end. */
  readonly #ownLock: boolean;
  /**
   * The open buffer files, least recently written first: one under '' for the default layout; one per
   * partition path with a keyTemplate (at most maxOpenPartitions).
   */
  readonly #actives = new Map<string, ActiveFile>();
  /** Open files written since their last fsync. */
  readonly #dirty = new Set<ActiveFile>();
  readonly #template: KeyTemplate | undefined;
  /** Commit times of committed partition files (their names carry no day), by path under bufferPath. */
  #committedAt = new Map<string, number>();
  #generation = 0;
  /** Acks of messages written but not yet fsynced (ackOn 'disk'). */
  #unsynced: AckPair[] = [];
  /** The group-commit fsync in flight. */
  #syncing: Promise<void> | undefined;
  #syncTimer: NodeJS.Timeout | undefined;
  /** Every file operation runs on this chain, so a timer's commit never interleaves with a write. */
  #chain: Promise<void> = Promise.resolve();
  /** Bytes in the buffer folder: what was found at start (or at the last quota check), plus what was written since, minus what was uploaded. */
  #diskBytes = 0;
  /** Committed files in the buffer folder, by path under it, with their sizes: what `released()` subtracts. */
  #committed = new Map<string, number>();
  /** Set while the folder is being measured: files released meanwhile, which the measurement may still have counted. */
  #releasedDuringScan: Set<string> | undefined;
  #lastNs = 0n;
  #quotaWake: (() => void) | undefined;
  #stopped = false;
  /** Why it stopped (the destroy error, or an abort): what unwritten messages are nacked with. */
  #stopReason: Error | undefined;
  /** Whether _construct is done (the lock taken, leftovers committed): until then writes take the Writable path. */
  #ready = false;
  /** Messages accepted and not yet written (write-behind), with their partition paths under a keyTemplate. */
  #pending: Message[] = [];
  #pendingPartitions: string[] = [];
  #pendingBytes = 0;
  /** Whether a write of #pending is on the chain and not yet started. */
  #pendingQueued = false;
  /** Write callbacks held until the pending bytes are written (over WRITE_AHEAD_BYTES, or the quota). */
  #held: Array<(error?: Error | null) => void> = [];
  /** Entries of the buffer folder left alone, each reported once. */
  readonly #ignored = new OnceReporter((path, reason) => this.emit('warning', ignoredEntry('s3Collector', path, reason)));

  /** `lock`: the sink's, which it holds until its uploads end; a collector on its own makes and releases one. */
  constructor(options: S3CollectorOptions, lock?: BufferLock) {
    const resolved = s3CollectorOptions.resolve(options);
    const o: Settings = {
      ...resolved,
      writerId: resolved.writerId ?? `${process.pid}-${randomBytes(4).toString('hex')}`,
      policy: delimiterPolicy('s3Collector', resolved.delimiter, resolved.onDelimiter),
    };
    super({ writableObjectMode: true, readableObjectMode: true, writableHighWaterMark: o.highWaterMark, readableHighWaterMark: 64 });
    this.#o = o;
    this.#activeFolder = join(o.bufferPath, ACTIVE_FOLDER);
    this.#ownLock = lock === undefined;
    this.#lock = lock ?? new BufferLock(o.bufferPath);
    this.#template = o.keyTemplate === undefined ? undefined : new KeyTemplate('s3Collector', o.keyTemplate, o.timeZone);
    if (o.signal) addAbortSignal(o.signal, this);
  }

  /** The buffer folder. */
  get bufferPath(): string {
    return this.#o.bufferPath;
  }

  /** This process's writer id, the suffix of its committed file names. */
  get writerId(): string {
    return this.#o.writerId;
  }

  /**
   * Bytes in the buffer folder: the open buffer file and the committed files not yet uploaded. True
   * when whoever uploads the files reports each deletion through {@link released} (s3Sink does);
   * otherwise it only grows until the next quota check measures the folder again.
   */
  get diskBytes(): number {
    return this.#diskBytes;
  }

  /** Committed files in the buffer folder, not yet uploaded (see {@link diskBytes} for when this is true). */
  get committedFiles(): number {
    return this.#committed.size;
  }

  /** Age in ms of the oldest committed file not yet uploaded, from the commit time its name carries; 0 when none waits. */
  oldestCommittedAgeMs(now = Date.now()): number {
    let oldest: string | undefined;
    for (const name of this.#committed.keys()) if (!name.startsWith(PARTS_FOLDER) && (oldest === undefined || name < oldest)) oldest = name;
    let at = oldest === undefined ? undefined : committedAtMs(oldest);
    for (const time of this.#committedAt.values()) if (at === undefined || time < at) at = time;
    return at === undefined ? 0 : Math.max(0, now - at);
  }

  /**
   * Tells the collector that the committed file at `relativePath` (as emitted) was uploaded and deleted,
   * so its bytes leave {@link diskBytes}. A path it does not know (deleted before it was measured) changes nothing.
   */
  released(relativePath: string): void {
    this.#releasedDuringScan?.add(relativePath);
    const bytes = this.#committed.get(relativePath);
    if (bytes === undefined) return;
    this.#committed.delete(relativePath);
    this.#committedAt.delete(relativePath);
    this.#diskBytes -= bytes;
  }

  /** Measures the buffer folder: the true figures, replacing the running count. */
  async #measure(): Promise<void> {
    this.#releasedDuringScan = new Set();
    try {
      const { total, committed, committedAt } = await bufferedFiles(this.#o.bufferPath);
      let bytes = total;
      // A file uploaded while the folder was read may have been counted before its deletion.
      for (const path of this.#releasedDuringScan) {
        const size = committed.get(path);
        if (size === undefined) continue;
        committed.delete(path);
        committedAt.delete(path);
        bytes -= size;
      }
      this.#diskBytes = bytes;
      this.#committed = committed;
      this.#committedAt = committedAt;
    } finally {
      this.#releasedDuringScan = undefined;
    }
  }

  /** Asks a write held by the disk quota to look at the folder again now (the uploader just freed space). */
  recheckQuota(): void {
    const wake = this.#quotaWake;
    this.#quotaWake = undefined;
    wake?.();
  }

  override _construct(callback: (error?: Error | null) => void): void {
    this.#start().then(
      () => {
        this.#ready = true;
        callback();
      },
      (error: unknown) => callback(error instanceof ManifoldError ? error : ioError(`opening the buffer folder ${this.#o.bufferPath}`, error)),
    );
  }

  async #start(): Promise<void> {
    const root = this.#o.bufferPath;
    await checkBufferFolder('s3Collector', root, { create: true, allowShared: this.#o.allowSharedBufferPath });
    await this.#lock.take();
    await ownFolder('s3Collector', this.#activeFolder);
    // What is not ours is left alone, and said once.
    for (const entry of await readdir(root, { withFileTypes: true })) {
      if (entry.name === ACTIVE_FOLDER || LOCK_NAMES.test(entry.name)) continue;
      // Partition folders (keyTemplate) are walked below and by the uploader; never through a link.
      if (entry.name === PARTS_FOLDER) {
        if (!entry.isDirectory()) this.#ignored.note(join(root, entry.name), entry.isSymbolicLink() ? 'symlink' : 'not a folder');
        continue;
      }
      // Day folders (and what pretends to be one) are the uploader's to look into.
      if (DAY_FOLDER.test(entry.name)) continue;
      this.#ignored.note(join(root, entry.name), 'name');
    }
    // Buffers left by a crash: cut back to the last complete record (a torn record was never acked), commit.
    for (const name of await readdir(this.#activeFolder)) {
      const path = join(this.#activeFolder, name);
      if (!WRITER_ID.test(name)) {
        this.#ignored.note(path, 'name');
        continue;
      }
      await this.#recover(path, undefined);
    }
    // And those of partition files (keyTemplate, of this run's template or an earlier one), in their folders.
    for await (const entry of walkPartitions(root)) {
      if (entry.kind === 'active') await this.#recover(entry.path, entry.partition);
    }
    await this.#measure();
  }

  async #recover(path: string, partition: string | undefined): Promise<void> {
    const opened = await openBufferFile(path, 'recover');
    if (typeof opened === 'string') {
      this.#ignored.note(path, opened);
      return;
    }
    const handle = opened;
    let size: number;
    let records: number;
    try {
      const info = await handle.stat();
      size = await lastCompleteLength(handle, info.size, this.#o.delimiter);
      if (size < info.size) await handle.truncate(size);
      records = 0;
      if (size > 0) {
        // Count records block by block, carrying the tail after the last delimiter into the next block.
        let position = 0;
        let carry = Buffer.alloc(0);
        while (position < size) {
          const chunk = Buffer.alloc(Math.min(1024 * 1024, size - position));
          const { bytesRead } = await handle.read(chunk, 0, chunk.length, position);
          position += bytesRead;
          const data = Buffer.concat([carry, chunk.subarray(0, bytesRead)]);
          const last = data.lastIndexOf(this.#o.delimiter);
          records += countDelimited(last >= 0 ? data.subarray(0, last + this.#o.delimiter.length) : Buffer.alloc(0), this.#o.delimiter);
          carry = last >= 0 ? data.subarray(last + this.#o.delimiter.length) : data;
        }
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (size === 0) {
      await unlink(path);
      await syncFolder(dirname(path));
      return;
    }
    this.emit('rotate', { reason: 'recovery', path, bytes: size, records } satisfies RotateEvent);
    await this.#publish(path, partition, size, records, [], 'recovery');
  }

  /** Renames a synced, closed buffer file to its committed name, makes that durable, and emits it. */
  async #publish(path: string, partition: string | undefined, bytes: number, records: number, acks: AckPair[], reason: CommitReason): Promise<void> {
    // Strictly increasing per process, so two commits in the same nanosecond still get two names.
    const nowNs = nowNanoseconds();
    this.#lastNs = nowNs > this.#lastNs ? nowNs : this.#lastNs + 1n;
    const { day, name } = committedName(this.#lastNs, this.#o.writerId);
    if (partition !== undefined) {
      // Committed in its own partition folder, beside the open file: one rename, one folder to sync.
      const folder = dirname(path);
      const target = join(folder, name);
      await rename(path, target);
      await syncFolder(folder);
      const relativePath = `${PARTS_FOLDER}/${partition}/${name}`;
      // Its bytes are in #diskBytes since they were written (or measured, for a recovered file).
      this.#committed.set(relativePath, bytes);
      this.#committedAt.set(relativePath, Date.now());
      this.#emitCommitted({ path: target, relativePath, bytes, records }, acks, reason);
      return;
    }
    const folder = join(this.#o.bufferPath, day);
    // Never through a link: a day folder that is a symbolic link to elsewhere fails the stream instead.
    if (await ownFolder('s3Collector', folder)) await syncFolder(this.#o.bufferPath);
    const target = join(folder, name);
    await rename(path, target);
    // Both folders: the new name must survive a power loss, and the old one must not come back as a second copy.
    await syncFolder(folder);
    await syncFolder(this.#activeFolder);
    const file: CommittedFile = { path: target, relativePath: `${day}/${name}`, bytes, records };
    // Its bytes are in #diskBytes since they were written (or measured, for a recovered file).
    this.#committed.set(file.relativePath, bytes);
    this.#emitCommitted(file, acks, reason);
  }

  #emitCommitted(file: CommittedFile, acks: AckPair[], reason: CommitReason): void {
    if (this.#o.ackOn === 'upload') file.acks = acks;
    const { acks: _acks, ...event } = file;
    this.emit('commit', { ...event, reason } satisfies CommitEvent);
    this.push(file);
  }

  /** Runs `op` after every earlier file operation; failures destroy the stream. */
  #enqueue(op: () => Promise<void>): Promise<void> {
    const run = this.#chain.then(async () => {
      if (this.#stopped) return;
      await op();
    });
    this.#chain = run.catch((error: unknown) => {
      this.destroy(error instanceof ManifoldError ? error : ioError(`writing the buffer in ${this.#o.bufferPath}`, error));
    });
    return run;
  }

  override _transform(chunk: MessageLike, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#acceptOne(chunk, callback);
  }

  override _writev(chunks: Array<{ chunk: MessageLike }>, callback: (error?: Error | null) => void): void {
    this.#acceptMany(chunks, callback);
  }

  /**
   * Whether a write may skip this stream's write buffer (s3Sink's writes, below): once started, and while
   * nothing waits in that buffer, which it would overtake. Otherwise it goes through write() as any other,
   * whose errors (ended, destroyed) apply.
   */
  #direct(): boolean {
    return this.#ready && !this.writableEnded && !this.destroyed && this.writableLength === 0;
  }

  /**
   * One write taken straight from s3Sink's own _write, past this stream's write buffer: a second buffer of
   * the same messages costs as much as the rest of the path.
   */
  writeOne(chunk: MessageLike, callback: (error?: Error | null) => void): void {
    if (this.#direct()) this.#acceptOne(chunk, callback);
    else this.write(chunk, (error) => callback(error ? toError(error) : null));
  }

  /** A batch of writes taken straight from s3Sink's own _writev (see writeOne). */
  writeMany(chunks: Array<{ chunk: MessageLike }>, callback: (error?: Error | null) => void): void {
    if (this.#direct()) {
      this.#acceptMany(chunks, callback);
      return;
    }
    this.cork();
    for (let k = 0; k < chunks.length - 1; k++) this.write(chunks[k]!.chunk);
    this.write(chunks[chunks.length - 1]!.chunk, (error) => callback(error ? toError(error) : null));
    this.uncork();
  }

  #acceptOne(chunk: MessageLike, callback: (error?: Error | null) => void): void {
    let bytes: number;
    try {
      bytes = this.#take(chunk, this.#template ? Date.now() : 0);
    } catch (error) {
      callback(error as Error);
      return;
    }
    this.#taken(bytes, callback);
  }

  #acceptMany(chunks: Array<{ chunk: MessageLike }>, callback: (error?: Error | null) => void): void {
    const arrival = this.#template ? Date.now() : 0;
    let bytes = 0;
    try {
      for (let k = 0; k < chunks.length; k++) bytes += this.#take(chunks[k]!.chunk, arrival);
    } catch (error) {
      // The records before this one are taken (and will be written); this one fails the stream, naming it.
      this.#taken(bytes, () => undefined);
      callback(error as Error);
      return;
    }
    this.#taken(bytes, callback);
  }

  /**
   * Takes one record into the pending batch (write-behind) and returns its bytes, delimiter included; 0 for
   * a record refused for its delimiter (nacked, with a 'reject' event). Throws for what is not a message.
   */
  #take(chunk: MessageLike, arrival: number): number {
    const message = toMessage(chunk);
    const policy = this.#o.policy;
    const record = delimitedRecord(message.data, policy);
    if (typeof record === 'number') {
      // One record is one line: written as is, this message would be read back (and recovered) as two.
      const error = delimiterError('s3Collector', policy, record);
      message.nack(error);
      this.emit('reject', { error, bytes: message.data.length } satisfies DelimiterRejectEvent);
      return 0;
    }
    if (this.#template) this.#pendingPartitions.push(this.#template.render(message, arrival));
    // Escaped: its settle functions are closures that do not use `this` (see Message), so this copy settles the original.
    this.#pending.push(record === message.data ? message : ({ data: record, ack: message.ack, nack: message.nack } as Message));
    return record.length + this.#o.delimiter.length;
  }

  /**
   * After records were taken: makes sure a write of the pending batch is on the chain, and calls back at once
   * while little is waiting (the batch goes after the write in flight, in one write with whatever else arrives
   * meanwhile); over WRITE_AHEAD_BYTES, or past what the quota leaves, the callback waits for that write.
   * Nothing is acked before its fsync either way.
   */
  #taken(bytes: number, callback: (error?: Error | null) => void): void {
    if (this.#pending.length === 0) {
      callback();
      return;
    }
    this.#pendingBytes += bytes;
    if (!this.#pendingQueued) {
      this.#pendingQueued = true;
      this.#enqueue(() => this.#writePending()).catch(() => undefined);
    }
    if (this.#pendingBytes < WRITE_AHEAD_BYTES && this.#diskBytes + this.#pendingBytes <= this.#o.maxBufferBytes) callback();
    else this.#held.push(callback);
  }

  /** Writes every message accepted so far (one write per open file), then lets held write callbacks go. */
  async #writePending(): Promise<void> {
    this.#pendingQueued = false;
    const messages = this.#pending;
    const partitions = this.#pendingPartitions;
    const held = this.#held;
    this.#pending = [];
    this.#pendingPartitions = [];
    this.#pendingBytes = 0;
    this.#held = [];
    try {
      await this.#append(messages, this.#template ? partitions : undefined);
    } catch (error) {
      for (const callback of held) callback(error as Error);
      throw error;
    }
    for (const callback of held) callback();
  }

  async #append(messages: Message[], partitions: string[] | undefined): Promise<void> {
    if (!partitions) return this.#appendTo(messages, undefined);
    // One write per partition per batch, not per run: records of one partition keep their order, and
    // records of different partitions go to different files anyway.
    const groups = new Map<string, Message[]>();
    for (let k = 0; k < messages.length; k++) {
      const partition = partitions[k]!;
      const group = groups.get(partition);
      if (group) group.push(messages[k]!);
      else groups.set(partition, [messages[k]!]);
    }
    // The partitions whose open file takes their records as they are (the common case) are written at once, in
    // parallel (different files); the others (a file to open, to rotate, the quota near) one by one after them.
    const delimiter = this.#o.delimiter;
    const fast: Array<{ active: ActiveFile; group: Message[]; buffer: Buffer; at: number }> = [];
    const slow: Array<[string, Message[]]> = [];
    for (const partition of byLastWrite(partitions, groups)) {
      const group = groups.get(partition)!;
      const active = this.#actives.get(partition);
      let bytes = 0;
      for (const message of group) bytes += message.data.length + delimiter.length;
      if (!active || active.bytes + bytes >= this.#o.commitSizeBytes || this.#diskBytes + bytes > this.#o.maxBufferBytes) {
        slow.push([partition, group]);
        continue;
      }
      const buffer = Buffer.allocUnsafe(bytes);
      let offset = 0;
      for (const message of group) {
        offset += message.data.copy(buffer, offset);
        offset += delimiter.copy(buffer, offset);
      }
      // Its place in the file and its bytes in the quota are taken now; the records count (and may be acked) only once written.
      fast.push({ active, group, buffer, at: active.bytes });
      active.bytes += bytes;
      this.#diskBytes += bytes;
      this.#actives.delete(partition);
      this.#actives.set(partition, active);
    }
    if (fast.length > 0) {
      await Promise.all(
        fast.map(async ({ active, buffer, at }) => {
          let written = 0;
          while (written < buffer.length) {
            const { bytesWritten } = await active.handle.write(buffer, written, buffer.length - written, at + written);
            written += bytesWritten;
          }
        }),
      );
      for (const { active, group } of fast) {
        active.records += group.length;
        this.#dirty.add(active);
        if (this.#o.ackOn === 'upload') for (const message of group) active.acks.push({ ack: message.ack, nack: message.nack });
        else for (const message of group) this.#unsynced.push(message);
      }
      if (this.#o.syncIntervalMs === 0) await this.#startSync();
      else if (this.#unsynced.length >= MAX_UNSYNCED && this.#syncing) await this.#syncing;
      else this.#armSync();
    }
    for (let g = 0; g < slow.length; g++) {
      if (this.#stopped) {
        for (let rest = g; rest < slow.length; rest++) this.#abandon(slow[rest]![1], 0);
        return;
      }
      await this.#appendTo(slow[g]![1], slow[g]![0]);
    }
  }

  /** Messages from `from` on, accepted but not written when the collector stopped: not on disk, so not acked. */
  #abandon(messages: Message[], from: number): void {
    // Set with #stopped, in _destroy.
    const reason = this.#stopReason!;
    for (let k = from; k < messages.length; k++) messages[k]!.nack(reason);
  }

  /** Appends messages of one partition (undefined: the default layout's one file). */
  async #appendTo(messages: Message[], partition: string | undefined): Promise<void> {
    const delimiter = this.#o.delimiter;
    const key = partition ?? '';
    let i = 0;
    while (i < messages.length) {
      if (this.#stopped) {
        this.#abandon(messages, i);
        return;
      }
      // Fill the open file up to commitSizeBytes (at least one record per file), write once, rotate.
      const first = messages[i]!.data.length + delimiter.length;
      await this.#roomFor(first);
      if (this.#stopped) {
        this.#abandon(messages, i);
        return;
      }
      let active = this.#actives.get(key);
      if (active && active.bytes > 0 && active.bytes + first > this.#o.commitSizeBytes) {
        // Records are never split: a file goes over commitSizeBytes only when a single record is larger.
        await this.#commit(active, 'size');
        active = undefined;
      }
      if (active) {
        // Most recently written last: the cap on open partitions commits the first.
        if (partition !== undefined) {
          this.#actives.delete(key);
          this.#actives.set(key, active);
        }
      } else {
        active = await this.#openActive(partition);
      }
      const room = this.#o.commitSizeBytes - active.bytes;
      const from = i;
      let bytes = 0;
      while (i < messages.length) {
        const size = messages[i]!.data.length + delimiter.length;
        // The first record got room from #roomFor; later ones stop at the file size or the quota, and go round again.
        if (i > from && (bytes + size > room || this.#diskBytes + bytes + size > this.#o.maxBufferBytes)) break;
        bytes += size;
        i += 1;
      }
      // One copy into one buffer, one write: small records are the common case and the syscall is the cost.
      const buffer = Buffer.allocUnsafe(bytes);
      let offset = 0;
      for (let k = from; k < i; k++) {
        offset += messages[k]!.data.copy(buffer, offset);
        offset += delimiter.copy(buffer, offset);
      }
      let written = 0;
      while (written < buffer.length) {
        const { bytesWritten } = await active.handle.write(buffer, written, buffer.length - written, active.bytes + written);
        written += bytesWritten;
      }
      active.bytes += bytes;
      active.records += i - from;
      this.#dirty.add(active);
      this.#diskBytes += bytes;
      if (this.#o.ackOn === 'upload') {
        // Held until the upload: keep only the settle functions, so the payloads can be collected.
        for (let k = from; k < i; k++) active.acks.push({ ack: messages[k]!.ack, nack: messages[k]!.nack });
      } else {
        // Held for at most syncIntervalMs: the message itself is its AckPair, no allocation per record.
        for (let k = from; k < i; k++) this.#unsynced.push(messages[k]!);
      }
      if (active.bytes >= this.#o.commitSizeBytes) {
        await this.#commit(active, 'size');
      } else if (this.#o.syncIntervalMs === 0) {
        await this.#startSync();
      } else if (this.#unsynced.length >= MAX_UNSYNCED && this.#syncing) {
        await this.#syncing;
      } else {
        this.#armSync();
      }
    }
  }

  /** Waits while the buffer folder is at its quota (the write callback is held: backpressure). */
  async #roomFor(bytes: number): Promise<void> {
    const max = this.#o.maxBufferBytes;
    if (this.#diskBytes + bytes <= max) return;
    let announced = false;
    for (;;) {
      await this.#measure();
      // An empty folder takes any record, however large, or a big record would wait for ever.
      if (this.#diskBytes === 0 || this.#diskBytes + bytes <= max || this.#stopped) return;
      // The open files themselves may be what fills the quota: commit them so the uploader can free the space.
      const written = [...this.#actives.values()].filter((active) => active.bytes > 0);
      if (written.length > 0) {
        for (const active of written) await this.#commit(active, 'quota');
        continue;
      }
      if (!announced) {
        announced = true;
        this.emit('quota', { diskBytes: this.#diskBytes, maxBufferBytes: max } satisfies QuotaEvent);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.#quotaWake = undefined;
          resolve();
        }, QUOTA_POLL_MS);
        this.#quotaWake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Opens the buffer file of the default layout (`partition` undefined) or of a partition path. */
  async #openActive(partition: string | undefined): Promise<ActiveFile> {
    let handle: FileHandle;
    let path: string;
    if (partition === undefined) {
      path = join(this.#activeFolder, this.#o.writerId);
      // 'wx': a leftover under our own name would be a bug (writerIds are per process); never append to it blindly.
      handle = await open(path, 'wx', 0o600);
    } else {
      // At the cap: the least recently written partition's file is committed first.
      for (const oldest of [...this.#actives.values()]) {
        if (this.#actives.size < this.#o.maxOpenPartitions) break;
        await this.#commit(oldest, 'partitions');
      }
      ({ handle, path } = await this.#openPartitionFile(partition));
    }
    this.#generation += 1;
    const active: ActiveFile = { handle, path, partition, timer: undefined, generation: this.#generation, bytes: 0, records: 0, acks: [] };
    const key = partition ?? '';
    this.#actives.set(key, active);
    active.timer = setTimeout(() => {
      active.timer = undefined;
      void this.#enqueue(async () => {
        if (this.#actives.get(key) === active) await this.#commit(active, 'time');
      }).catch(() => undefined);
    }, this.#o.commitIntervalMs);
    return active;
  }

  /**
   * Makes the partition's folders (mode 0700, never through a link: see ownFolder), each made durable in
   * its parent, and opens `.active-<writerId>` there (O_EXCL, O_NOFOLLOW). The uploader removes partition
   * folders it found empty for a while, so a folder may go between its check and the open: then it is made again.
   */
  async #openPartitionFile(partition: string): Promise<{ handle: FileHandle; path: string }> {
    for (let attempt = 1; ; attempt++) {
      let folder = this.#o.bufferPath;
      for (const segment of [PARTS_FOLDER, ...partition.split('/')]) {
        const parent = folder;
        folder = join(folder, segment);
        if (await ownFolder('s3Collector', folder)) await syncFolder(parent);
      }
      const path = join(folder, `.active-${this.#o.writerId}`);
      try {
        const handle = await open(path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
        // The new name survives a power loss with the records fsynced into it.
        await syncFolder(folder);
        return { handle, path };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 5) throw error;
      }
    }
  }

  #armSync(): void {
    if (this.#syncTimer !== undefined || this.#syncing !== undefined || this.#unsynced.length === 0) return;
    this.#syncTimer = setTimeout(() => {
      this.#syncTimer = undefined;
      void this.#startSync();
    }, this.#o.syncIntervalMs);
  }

  /**
   * Group commit: one fdatasync, then ack everything written before it. It runs
   * beside the writes (not on the chain): writes go on while the disk syncs, and
   * only #commit, which closes the handle, waits for it.
   */
  #startSync(): Promise<void> {
    clearTimeout(this.#syncTimer);
    this.#syncTimer = undefined;
    if (this.#syncing || this.#dirty.size === 0 || this.#unsynced.length === 0 || this.#stopped) return this.#syncing ?? Promise.resolve();
    const synced = this.#unsynced;
    this.#unsynced = [];
    const files = [...this.#dirty];
    this.#dirty.clear();
    this.#syncing = Promise.all(files.map((file) => file.handle.datasync())).then(
      () => {
        this.#syncing = undefined;
        for (const pair of synced) pair.ack();
        this.#armSync();
      },
      (error: unknown) => {
        this.#syncing = undefined;
        // Not durable, so not acked; the stream fails and the next start recovers what reached the disk.
        for (const pair of synced) pair.nack(toError(error));
        this.destroy(ioError(`fsync of ${files.map((file) => file.path).join(', ')}`, error));
      },
    );
    return this.#syncing;
  }

  async #commit(active: ActiveFile, reason: CommitReason): Promise<void> {
    const key = active.partition ?? '';
    if (this.#actives.get(key) !== active) return;
    clearTimeout(active.timer);
    active.timer = undefined;
    this.emit('rotate', { reason, path: active.path, bytes: active.bytes, records: active.records } satisfies RotateEvent);
    // Taken before waiting, so no timer starts another sync on the handle we are about to close.
    clearTimeout(this.#syncTimer);
    this.#syncTimer = undefined;
    const synced = this.#unsynced;
    this.#unsynced = [];
    // The acks taken may be of records in other open files (partitions): those are synced too before any ack.
    const others = [...this.#dirty].filter((file) => file !== active);
    this.#dirty.clear();
    await this.#syncing;
    try {
      // fsync (not fdatasync): the rename must never expose a name whose size is not yet durable.
      await active.handle.sync();
      await Promise.all(others.map((file) => file.handle.datasync()));
    } catch (error) {
      // Not durable, so not acked (the stream fails; the next start recovers what reached the disk).
      for (const pair of synced) pair.nack(toError(error));
      throw error;
    }
    for (const pair of synced) pair.ack();
    await active.handle.close();
    this.#actives.delete(key);
    await this.#publish(active.path, active.partition, active.bytes, active.records, active.acks, reason);
  }

  override _flush(callback: TransformCallback): void {
    this.#enqueue(async () => {
      for (const active of [...this.#actives.values()]) await this.#commit(active, 'end');
      if (this.#ownLock) await this.#lock.release();
    }).then(
      () => callback(),
      (error: unknown) => callback(error as Error),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const reason = error ?? new ManifoldError('s3Collector: destroyed before the write was synced to disk', { code: ErrorCodes.ABORTED });
    this.#stopped = true;
    this.#stopReason = reason;
    clearTimeout(this.#syncTimer);
    for (const active of this.#actives.values()) clearTimeout(active.timer);
    this.recheckQuota();
    const actives = [...this.#actives.values()];
    this.#actives.clear();
    this.#dirty.clear();
    // Wait for the operation in progress (a write or fsync) before closing its handle under it.
    Promise.all([this.#chain, this.#syncing])
      .then(async () => {
        // Not synced, so not acked: the next start recovers the bytes, the source redelivers (at-least-once).
        for (const pair of this.#unsynced) pair.nack(reason);
        this.#unsynced = [];
        // Accepted and never written (write-behind): not on disk, so not acked either.
        for (const message of this.#pending) message.nack(reason);
        this.#pending = [];
        for (const active of actives) {
          for (const pair of active.acks) pair.nack(reason);
          await active.handle.close().catch(() => undefined);
        }
        if (this.#ownLock) await this.#lock.release();
      })
      .then(
        () => callback(error),
        (closeError: unknown) => callback(error ?? (closeError as Error)),
      );
  }
}
