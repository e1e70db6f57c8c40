/**
 * A Checkpointer that keeps checkpoints in one JSON file, replaced atomically
 * on every store, so a crash leaves either the old file or the new one.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ErrorCodes, ManifoldError, describe } from '../core/errors.js';
import { invalidOption } from '../core/options.js';
import { isCheckpoint, type Checkpoint, type Checkpointer } from './checkpoint.js';

interface FileContents {
  version: 1;
  scopes: Record<string, Record<string, Checkpoint>>;
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
 * any point leaves a complete file. Stores are serialized, so concurrent
 * callers never interleave. One process per file: two processes storing to
 * the same file overwrite each other's scopes.
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
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, scopes: {} };
      throw ioError(`reading checkpoint file ${file} failed: ${describe(error)}`, error, file);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw ioError(`checkpoint file ${file} is not valid JSON (${describe(error)}); fix or remove it to start over`, error, file);
    }
    const scopes = (parsed as Partial<FileContents> | null)?.scopes;
    if (scopes === null || typeof scopes !== 'object') {
      throw ioError(`checkpoint file ${file} does not hold manifold checkpoints (no "scopes" object)`, undefined, file);
    }
    return { version: 1, scopes };
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
        const shards = (await read()).scopes[scope] ?? {};
        const out: Record<string, Checkpoint> = {};
        for (const [shardId, checkpoint] of Object.entries(shards)) {
          if (!isCheckpoint(checkpoint)) {
            throw ioError(`checkpoint file ${file} has an invalid checkpoint for ${scope} ${shardId}: ${JSON.stringify(checkpoint)}`, undefined, file);
          }
          out[shardId] = checkpoint;
        }
        return out;
      });
    },
    store(scope, checkpoints) {
      return serial(async () => {
        const contents = await read();
        const shards = { ...(contents.scopes[scope] ?? {}) };
        for (const [shardId, checkpoint] of Object.entries(checkpoints)) {
          shards[shardId] =
            checkpoint.subSequenceNumber === undefined
              ? { sequenceNumber: checkpoint.sequenceNumber }
              : { sequenceNumber: checkpoint.sequenceNumber, subSequenceNumber: checkpoint.subSequenceNumber };
        }
        contents.scopes[scope] = shards;
        await write(contents);
      });
    },
  };
}

function ioError(message: string, cause: unknown, path: string): ManifoldError {
  return new ManifoldError(`fileCheckpointer: ${message}`, { code: ErrorCodes.IO, cause, details: { path } });
}
