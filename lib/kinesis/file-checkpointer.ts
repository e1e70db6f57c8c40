/**
 * A Checkpointer that keeps checkpoints in one JSON file, replaced atomically
 * on every store, so a crash leaves either the old file or the new one. Each
 * store reads, merges and writes the file under a lock file beside it, so
 * several instances or processes on one file never lose a store.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ErrorCodes, ManifoldError, describe } from '../core/errors.js';
import { invalidOption } from '../core/options.js';
// The atomic lock file the S3 buffer folder uses too (pid liveness, stale locks broken by one taker).
import { takeFileLock } from '../core/file-lock.js';
import { isCheckpoint, type Checkpoint, type Checkpointer } from './checkpoint.js';

interface FileContents {
  version: 1;
  /** Null-prototype objects at both levels: a stream or shard named `__proto__` or `constructor` is a key like any other. */
  scopes: Record<string, Record<string, Checkpoint>>;
}

// How long a store waits for another instance's store (each holds the lock for one read-merge-write).
const LOCK_TIMEOUT_MS = 30_000;

/** A null-prototype copy of `value`'s own enumerable properties. */
function dictionary<T>(value: object): Record<string, T> {
  const out = Object.create(null) as Record<string, T>;
  for (const [key, item] of Object.entries(value)) out[key] = item as T;
  return out;
}

/** A {@link Checkpointer} backed by a file. */
export interface FileCheckpointer extends Checkpointer {
  /** The absolute path of the file. */
  readonly path: string;
}

/**
 * Stores checkpoints in the JSON file at `path` (created on the first store;
 * its directory must exist). Each store writes a temporary file next to it,
 * fsyncs it, renames it over the old one and fsyncs the directory: a crash at
 * any point leaves a complete file. Stores are serialized, and each one reads,
 * merges and writes the file holding the lock file `.<name>.lock` beside it
 * (taken atomically; a lock left by a dead process is taken over), so several
 * instances or processes storing to one file never lose a store. Stream and
 * shard names are keys like any other, `__proto__` included.
 *
 * @example
 * ```ts
 * const source = kinesisSource({ streamName: 'orders', checkpointer: fileCheckpointer('./orders.checkpoints.json') });
 * ```
 */
export function fileCheckpointer(path: string): FileCheckpointer {
  if (typeof path !== 'string' || path.length === 0) invalidOption('fileCheckpointer', 'path', 'a non-empty file path', path);
  const file = resolve(path);
  let queue: Promise<unknown> = Promise.resolve();
  // Each operation waits for the previous one, whatever its outcome.
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => {});
    return run;
  };

  const read = async (): Promise<FileContents> => {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, scopes: Object.create(null) as FileContents['scopes'] };
      throw ioError(`reading checkpoint file ${file} failed: ${describe(error)}`, error, file);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw ioError(`checkpoint file ${file} is not valid JSON (${describe(error)}); fix or remove it to start over`, error, file);
    }
    const scopes = (parsed as Partial<FileContents> | null)?.scopes;
    if (scopes === null || typeof scopes !== 'object' || Array.isArray(scopes)) {
      throw ioError(`checkpoint file ${file} does not hold manifold checkpoints (no "scopes" object)`, undefined, file);
    }
    // JSON.parse makes "__proto__" an own property; plain objects would then hand it to the prototype setter.
    const out = Object.create(null) as FileContents['scopes'];
    for (const [scope, shards] of Object.entries(scopes)) {
      if (shards === null || typeof shards !== 'object' || Array.isArray(shards)) {
        throw ioError(`checkpoint file ${file} has an invalid entry for ${JSON.stringify(scope)}: ${JSON.stringify(shards)}`, undefined, file);
      }
      out[scope] = dictionary<Checkpoint>(shards);
    }
    return { version: 1, scopes: out };
  };

  const lockPath = join(dirname(file), `.${basename(file)}.lock`);
  /** Runs `fn` holding the file's lock, so no other instance or process reads or replaces it meanwhile. */
  const locked = async <T>(fn: () => Promise<T>): Promise<T> => {
    let release: () => Promise<void>;
    try {
      release = await takeFileLock(lockPath, `fileCheckpointer: writing checkpoint file ${file}`, LOCK_TIMEOUT_MS);
    } catch (error) {
      if (error instanceof ManifoldError) throw error;
      throw ioError(`writing checkpoint file ${file} failed: taking its lock ${lockPath}: ${describe(error)}`, error, file);
    }
    try {
      return await fn();
    } finally {
      await release();
    }
  };

  const write = async (contents: FileContents): Promise<void> => {
    const temp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      const handle = await open(temp, 'w', 0o600);
      try {
        await handle.writeFile(`${JSON.stringify(contents, null, 2)}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, file);
    } catch (error) {
      await unlink(temp).catch(() => {});
      throw ioError(`writing checkpoint file ${file} failed: ${describe(error)}`, error, file);
    }
    // The rename is durable only once the directory entry is: fsync the directory (not possible on every platform).
    try {
      const dir = await open(dirname(file), 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
      /* c8 ignore next 3 -- platforms that cannot fsync a directory (Windows) */
    } catch {
      // The file content is synced; only the rename may be lost on power failure there.
    }
  };

  return {
    path: file,
    load(scope) {
      return serial(async () => {
        const scopes = (await read()).scopes;
        const shards = Object.hasOwn(scopes, scope) ? scopes[scope]! : {};
        const out: Array<[string, Checkpoint]> = [];
        for (const [shardId, checkpoint] of Object.entries(shards)) {
          if (!isCheckpoint(checkpoint)) {
            throw ioError(`checkpoint file ${file} has an invalid checkpoint for ${scope} ${shardId}: ${JSON.stringify(checkpoint)}`, undefined, file);
          }
          out.push([shardId, checkpoint]);
        }
        // fromEntries defines own properties: a shard named __proto__ is one, not the prototype.
        return Object.fromEntries(out);
      });
    },
    store(scope, checkpoints) {
      return serial(() =>
        locked(async () => {
          // Read under the lock: what another instance stored since is kept.
          const contents = await read();
          const shards = Object.hasOwn(contents.scopes, scope) ? contents.scopes[scope]! : (Object.create(null) as Record<string, Checkpoint>);
          for (const [shardId, checkpoint] of Object.entries(checkpoints)) {
            shards[shardId] =
              checkpoint.subSequenceNumber === undefined
                ? { sequenceNumber: checkpoint.sequenceNumber }
                : { sequenceNumber: checkpoint.sequenceNumber, subSequenceNumber: checkpoint.subSequenceNumber };
          }
          contents.scopes[scope] = shards;
          await write(contents);
        }),
      );
    },
  };
}

function ioError(message: string, cause: unknown, path: string): ManifoldError {
  return new ManifoldError(`fileCheckpointer: ${message}`, { code: ErrorCodes.IO, cause, details: { path } });
}
