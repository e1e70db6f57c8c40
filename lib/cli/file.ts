/**
 * Files for the `file:` scheme: a path from the URI, a byte stream appending to a file that is
 * fsynced before it ends, and a byte stream reading one. The records are stdio's: the scheme
 * hands these streams to stdinSource (`input`) and stdoutSink (`output`).
 */
import { open, type FileHandle } from 'node:fs/promises';
import { Writable, type Readable } from 'node:stream';
import { UsageError, subject } from './errors.js';

/**
 * The path of a `file:` URI as written: `file:dead.jsonl` and `file:./x/y.jsonl` are relative to
 * the working directory, `file:/var/x.jsonl` and `file:///var/x.jsonl` absolute; `%` escapes
 * are decoded (`%20`, `%3F` for a `?`), and the query (`?delimiter=...`) is not part of it.
 */
export function filePath(uri: string): string {
  let rest = uri.slice(uri.indexOf(':') + 1);
  const end = rest.search(/[?#]/);
  if (end !== -1) rest = rest.slice(0, end);
  if (rest.startsWith('//')) {
    const slash = rest.indexOf('/', 2);
    const host = rest.slice(2, slash === -1 ? undefined : slash);
    if (host !== '' && host !== 'localhost') throw new UsageError(`${subject(uri)} a file: URI names a local file; "${host}" is a host (write file:///path, file:/path or file:relative/path)`);
    rest = slash === -1 ? '' : rest.slice(slash);
  }
  let path: string;
  try {
    path = decodeURIComponent(rest);
  } catch {
    throw new UsageError(`${subject(uri)} the path has a % that is not an escape such as %20; write a % in a path as %25`);
  }
  if (path === '') throw new UsageError(`${subject(uri)} give the file: file:<path>, e.g. file:dead.jsonl or file:///var/lib/manifold/dead.jsonl`);
  return path;
}

/** What an open() that failed says, with the path: `cannot open file:x.jsonl to append to it: ENOENT ...`. */
function openError(display: string, purpose: string, error: NodeJS.ErrnoException): UsageError {
  return new UsageError(`cannot open ${display} ${purpose}: ${error.message}`);
}

/**
 * A byte stream appending to `handle`. Its write callback fires when the bytes were written (handed
 * to the OS, as stdout's does); ending it fsyncs the file, then closes it, so what a flow counted as
 * delivered is on disk when the command exits.
 */
export class AppendFile extends Writable {
  readonly #handle: FileHandle;
  #closed = false;

  constructor(handle: FileHandle) {
    super({ highWaterMark: 64 * 1024 });
    this.#handle = handle;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#writeAll(chunk).then(() => callback(), callback);
  }

  async #writeAll(chunk: Buffer): Promise<void> {
    // A write to a regular file may write part of the buffer (a full disk, a signal): write the rest.
    let offset = 0;
    while (offset < chunk.length) {
      const { bytesWritten } = await this.#handle.write(chunk, offset, chunk.length - offset);
      offset += bytesWritten;
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#handle.sync().then(
      () => this.#close().then(() => callback(), callback),
      (error: Error) => this.#close().then(() => callback(error), () => callback(error)),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#close().then(
      () => callback(error),
      () => callback(error),
    );
  }

  async #close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#handle.close();
  }
}

/**
 * Opens `path` for appending (creating it), before anything connects: a directory that does not
 * exist or a file that may not be written is a usage error (exit 2), not a failure mid-flow.
 */
export async function appendFile(path: string, display: string): Promise<AppendFile> {
  try {
    return new AppendFile(await open(path, 'a'));
  } catch (error) {
    throw openError(display, 'to append to it', error as NodeJS.ErrnoException);
  }
}

/** Opens `path` for reading, before anything connects: a file that is not there is a usage error (exit 2). */
export async function readFile(path: string, display: string): Promise<Readable> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw openError(display, 'to read it', error as NodeJS.ErrnoException);
  }
  return handle.createReadStream();
}
