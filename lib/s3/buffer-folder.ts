/**
 * What the collector and the uploader may touch in a buffer folder, and the checks before they do.
 *
 * They only touch names they write (`.lock`, `.active/<writerId>`, `YYYY-MM-DD/HHmmss.nnnnnnnnn-<writerId>`, and
 * with a keyTemplate `.parts/<partition folders>/.active-<writerId>` and `.parts/<partition folders>/HHmmss.nnnnnnnnn-<writerId>`),
 * only regular files with one link, opened with O_NOFOLLOW, in real folders (never through a
 * symbolic link), in a buffer folder that nobody but its owner can write to. Anything else found
 * there is left alone and reported once, as a `'warning'`.
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { lstat, mkdir, open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { ErrorCodes, ManifoldError, describe } from '../core/errors.js';

/** A day folder: `YYYY-MM-DD` (UTC). */
export const DAY_FOLDER = /^\d{4}-\d{2}-\d{2}$/;
/** A writer id, the name of an open buffer file in `.active`. */
export const WRITER_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** A committed file's name in its day folder: `HHmmss.nnnnnnnnn-<writerId>`. */
export const COMMITTED_NAME = /^\d{6}\.\d{9}-[A-Za-z0-9_-]{1,64}$/;
/** A committed file's path under the buffer folder. */
export const COMMITTED_PATH = /^\d{4}-\d{2}-\d{2}\/\d{6}\.\d{9}-[A-Za-z0-9_-]{1,64}$/;
export const ACTIVE_FOLDER = '.active';
/** With a keyTemplate: the folder holding one folder per partition path segment (`.parts/dt=2026-11-28/hour=04/...`). */
export const PARTS_FOLDER = '.parts';
/** A partition folder's name (a rendered keyTemplate segment): safe characters, never `.`, `..` or hidden. */
export const PARTITION_SEGMENT = /^[A-Za-z0-9_=-][A-Za-z0-9._=-]{0,254}$/;
/** Most levels of partition folders (keyTemplate segments). */
export const MAX_PARTITION_DEPTH = 16;
/** The open buffer file of a writer in its partition folder: `.active-<writerId>`. */
export const PARTITION_ACTIVE = /^\.active-([A-Za-z0-9_-]{1,64})$/;
/** A committed file's path under the buffer folder, with a keyTemplate: `.parts/<partition path>/HHmmss.nnnnnnnnn-<writerId>`. */
export const PARTITION_COMMITTED_PATH = /^\.parts(?:\/[A-Za-z0-9_=-][A-Za-z0-9._=-]{0,254}){1,16}\/\d{6}\.\d{9}-[A-Za-z0-9_-]{1,64}$/;

/** An entry found under `.parts` by {@link walkPartitions}. */
export interface PartitionEntry {
  /** `committed` (a committed file), `active` (an open buffer file), `folder` (a partition folder, seen after its contents), or an entry to leave alone. */
  kind: 'committed' | 'active' | 'folder' | 'ignored';
  /** Absolute path. */
  path: string;
  /** Path under the buffer folder, `/`-separated: `.parts/dt=2026-11-28/hour=04/041500.123456789-w`. */
  relativePath: string;
  /** The partition path (the folders under `.parts`). */
  partition: string;
  /** For `ignored`: why. For `folder`: whether it held nothing. */
  reason?: IgnoredReason;
  empty?: boolean;
}

/**
 * Every entry under `bufferPath/.parts`, depth first, never through a symbolic link (entries are judged by
 * their dirent, which does not follow links): committed and active files at any depth up to
 * {@link MAX_PARTITION_DEPTH}, folders only when named as a partition segment. Anything else is `ignored`.
 * Nothing when `.parts` is missing or is not a real folder.
 */
export async function* walkPartitions(bufferPath: string): AsyncGenerator<PartitionEntry> {
  const root = join(bufferPath, PARTS_FOLDER);
  if (!(await isRealFolder(root))) return;
  yield* walkFolder(root, PARTS_FOLDER, '', 0);
}

async function* walkFolder(folder: string, relative: string, partition: string, depth: number): AsyncGenerator<PartitionEntry> {
  const entries = await readdir(folder, { withFileTypes: true }).catch(() => []);
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    const path = join(folder, entry.name);
    const relativePath = `${relative}/${entry.name}`;
    if (entry.isDirectory()) {
      if (depth >= MAX_PARTITION_DEPTH || !PARTITION_SEGMENT.test(entry.name)) {
        yield { kind: 'ignored', path, relativePath, partition, reason: 'name' };
        continue;
      }
      const inner = partition === '' ? entry.name : `${partition}/${entry.name}`;
      let seen = false;
      for await (const found of walkFolder(path, relativePath, inner, depth + 1)) {
        seen = true;
        yield found;
      }
      yield { kind: 'folder', path, relativePath, partition: inner, empty: !seen };
      continue;
    }
    if (depth > 0 && PARTITION_ACTIVE.test(entry.name)) yield { kind: 'active', path, relativePath, partition };
    else if (depth > 0 && COMMITTED_NAME.test(entry.name)) yield { kind: 'committed', path, relativePath, partition };
    else yield { kind: 'ignored', path, relativePath, partition, reason: entry.isSymbolicLink() ? 'symlink' : 'name' };
  }
}
/** The lock and what taking it leaves for a moment (its temporary file, a stale lock's breaker). */
export const LOCK_NAMES = /^\.lock(\..*)?$/;

// O_NONBLOCK: opening a FIFO planted under a buffer name must not hang a thread of the pool (a regular file ignores it).
const READ_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;
const RECOVER_FLAGS = fsConstants.O_RDWR | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;

/** Why an entry of a buffer folder was left alone. */
export type IgnoredReason = 'name' | 'symlink' | 'not a regular file' | 'not a folder' | 'hard link';

/** The `'warning'` error for an entry left alone: code IO, `details.path`, `details.reason`. */
export function ignoredEntry(where: string, path: string, reason: IgnoredReason): ManifoldError {
  const why =
    reason === 'name'
      ? 'its name is not one manifold writes'
      : reason === 'symlink'
        ? 'it is a symbolic link, which manifold never follows'
        : reason === 'hard link'
          ? 'it has other hard links'
          : reason === 'not a folder'
            ? 'it is named like a day folder but is not a folder'
            : 'it is not a regular file';
  return new ManifoldError(`${where}: left ${path} alone (not read, uploaded or deleted): ${why}`, {
    code: ErrorCodes.IO,
    details: { path, reason },
  });
}

/**
 * Reports each path once (bounded: after 10,000 it starts over, so an entry may be reported again,
 * never remembered without bound).
 */
export class OnceReporter {
  readonly #seen = new Set<string>();
  constructor(readonly report: (path: string, reason: IgnoredReason) => void) {}
  note(path: string, reason: IgnoredReason): void {
    if (this.#seen.has(path)) return;
    if (this.#seen.size >= 10_000) this.#seen.clear();
    this.#seen.add(path);
    this.report(path, reason);
  }
}

/** The default buffer folder of a sink: per user, per bucket and prefix. */
export function defaultBufferPath(bucket: string, prefix: string): string {
  return join(stateHome(), 'manifold', 's3', bufferFolderName(bucket, prefix));
}

/** The buffer folder a sink with these (resolved) options uses: `bufferPath`, else the default for its bucket and prefix. */
export function sinkBufferPath(options: { bucket: string; prefix: string; bufferPath?: string | undefined }): string {
  return options.bufferPath ?? defaultBufferPath(options.bucket, options.prefix);
}

/** `$XDG_STATE_HOME`, else `~/.local/state`; without a home, a per-user folder under the OS temp dir. */
function stateHome(): string {
  const xdg = process.env.XDG_STATE_HOME;
  // The XDG spec: a relative value is invalid and ignored.
  if (xdg && isAbsolute(xdg)) return xdg;
  let home: string | undefined;
  try {
    home = homedir();
    /* c8 ignore next 3 -- a user without a home folder */
  } catch {
    home = undefined;
  }
  if (home && isAbsolute(home) && home !== '/') return join(home, '.local', 'state');
  /* c8 ignore next -- a user without a home folder: the owner check refuses a folder someone else made there */
  return join(tmpdir(), `manifold-${process.getuid?.() ?? 'user'}`, 'state');
}

/**
 * `<bucket>/<prefix as a name>-<hash>`: readable, and distinct for every bucket and prefix (the
 * hash is of both, as given), so two sinks writing different prefixes of one bucket never share a
 * buffer, and leftovers of one are never uploaded under the other's prefix.
 */
export function bufferFolderName(bucket: string, prefix: string): string {
  const hash = createHash('sha256').update(`${bucket}\n${prefix}`).digest('hex').slice(0, 12);
  const slug = prefix
    .replace(/\/+$/, '')
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^\.+/, '_')
    .slice(0, 48);
  const bucketName = bucket.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^\.+/, '_').slice(0, 64);
  return join(bucketName, `${slug || '_'}-${hash}`);
}

/**
 * Makes sure `bufferPath` is a folder that only its owner, this process's user, can write to:
 * created with mode 0700 (and its missing parents) when `create`, else it may be missing (then
 * false). Refused with INVALID_OPTION naming `bufferPath` when group or others may write to it or it
 * belongs to another user, unless `allowShared`; whoever can write there can have files uploaded.
 */
export async function checkBufferFolder(where: string, bufferPath: string, options: { create: boolean; allowShared: boolean }): Promise<boolean> {
  if (options.create) await mkdir(bufferPath, { recursive: true, mode: 0o700 });
  let info;
  try {
    info = await stat(bufferPath);
  } catch (error) {
    if (!options.create && (error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
  const refuse = (why: string, fix: string): never => {
    throw new ManifoldError(
      `${where}: options.bufferPath ${bufferPath} ${why}: whoever can write there can plant files that get uploaded; ${fix}, or set allowSharedBufferPath: true if that is meant`,
      { code: ErrorCodes.INVALID_OPTION, details: { option: 'bufferPath', bufferPath } },
    );
  };
  if (!info.isDirectory()) refuse('is not a folder', 'give a folder');
  // Windows has no owner uid nor group/other bits to judge (its ACLs are another matter).
  if (options.allowShared || process.platform === 'win32') return true;
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid) refuse(`belongs to another user (uid ${info.uid}, this process runs as ${uid})`, 'give a folder of your own');
  if ((info.mode & 0o022) !== 0) refuse(`is writable by ${writers(info.mode)} (mode 0${(info.mode & 0o7777).toString(8)})`, `chmod 700 ${bufferPath}`);
  // A folder above it that anyone may write to without the sticky bit (which /tmp has) lets anyone rename it away and put theirs in its place.
  for (let folder = dirname(resolve(bufferPath)); ; folder = dirname(folder)) {
    const above = await stat(folder).catch(() => undefined);
    if (above && (above.mode & 0o002) !== 0 && (above.mode & 0o1000) === 0) {
      refuse(`is inside ${folder}, which others may write to without the sticky bit (mode 0${(above.mode & 0o7777).toString(8)}): they could replace it`, `chmod o-w,+t ${folder} or choose another place`);
    }
    if (dirname(folder) === folder) break;
  }
  return true;
}

function writers(mode: number): string {
  if ((mode & 0o022) === 0o022) return 'its group and others';
  return mode & 0o020 ? 'its group' : 'others';
}

/**
 * Makes the folder `path` (a day folder, `.active`) with mode 0700, or checks that the one there is a
 * real folder and not a symbolic link; throws IO otherwise. Returns whether it was created.
 */
export async function ownFolder(where: string, path: string): Promise<boolean> {
  const created = await mkdir(path, { mode: 0o700 }).then(
    () => true,
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'EEXIST') return false;
      throw error;
    },
  );
  if (created) return true;
  const info = await lstat(path);
  if (!info.isDirectory()) {
    throw new ManifoldError(`${where}: ${path} is ${info.isSymbolicLink() ? 'a symbolic link' : 'not a folder'}; manifold does not write through it: remove it`, {
      code: ErrorCodes.IO,
      details: { path },
    });
  }
  return false;
}

/** Whether `path` is a real folder (not a link to one); false when it is missing. */
export async function isRealFolder(path: string): Promise<boolean> {
  const info = await lstat(path).catch(() => undefined);
  return info?.isDirectory() ?? false;
}

/** Why a path (with its lstat) may not be read as a buffer file, or undefined when it may. */
export function refusal(info: { isFile(): boolean; isSymbolicLink(): boolean; nlink: number }): IgnoredReason | undefined {
  if (info.isSymbolicLink()) return 'symlink';
  if (!info.isFile()) return 'not a regular file';
  if (info.nlink > 1) return 'hard link';
  return undefined;
}

/**
 * Opens a buffer file without following a symbolic link, and checks what was opened (a link or a
 * FIFO may have replaced what was looked at). Resolves to the handle, or to the reason it was refused.
 */
export async function openBufferFile(path: string, mode: 'read' | 'recover'): Promise<FileHandle | IgnoredReason> {
  let handle: FileHandle;
  try {
    handle = await open(path, mode === 'read' ? READ_FLAGS : RECOVER_FLAGS);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOOP') return 'symlink';
    throw error;
  }
  try {
    // fstat of what was opened: O_NOFOLLOW refused a link, this refuses a FIFO, a device or a hard link.
    const why = refusal(await handle.stat());
    if (why === undefined) return handle;
    await handle.close();
    return why;
  } catch (error) {
    await handle.close().catch(() => undefined);
    throw new ManifoldError(`reading ${path} failed: ${describe(error)}`, { code: ErrorCodes.IO, cause: error });
  }
}
