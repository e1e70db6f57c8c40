/**
 * The lock file that gives one live process an S3 buffer folder, on the atomic lock files of
 * lib/core/file-lock.ts.
 */
import { join } from 'node:path';
import { ErrorCodes, ManifoldError, describe } from '../core/errors.js';
import { tryFileLock, type LockAttempt } from '../core/file-lock.js';

const LOCK_FILE = '.lock';

/**
 * The lock file that gives one live process a buffer folder: `bufferPath/.lock`. A lock whose
 * process is not alive (kill -9, power loss) is stale and taken over, atomically (see the top of
 * this file). `take()` is idempotent.
 */
export class BufferLock {
  readonly #path: string;
  readonly #bufferPath: string;
  #taking: Promise<void> | undefined;
  #release: (() => Promise<void>) | undefined;

  constructor(bufferPath: string) {
    this.#bufferPath = bufferPath;
    this.#path = join(bufferPath, LOCK_FILE);
  }

  /** Takes the lock (the folder must exist); rejects with an IO ManifoldError naming the live owner. */
  take(): Promise<void> {
    this.#taking ??= this.#take();
    return this.#taking;
  }

  async #take(): Promise<void> {
    let got: LockAttempt;
    try {
      got = await tryFileLock(this.#path);
    } catch (error) {
      if (error instanceof ManifoldError) throw error;
      throw new ManifoldError(`s3Collector: taking the lock ${this.#path} failed: ${describe(error)}`, { code: ErrorCodes.IO, cause: error, details: { bufferPath: this.#bufferPath } });
    }
    if (got.taken) {
      this.#release = got.release;
      return;
    }
    const pid = got.owner?.pid;
    throw new ManifoldError(
      `s3Collector: the buffer folder ${this.#bufferPath} is in use by process ${pid ?? '(starting)'}${pid === process.pid ? ' (another sink in this process)' : ''}; give each sink its own bufferPath`,
      { code: ErrorCodes.IO, details: { bufferPath: this.#bufferPath, pid } },
    );
  }

  /** Releases the lock if this instance holds it. Idempotent. */
  async release(): Promise<void> {
    const release = this.#release;
    this.#release = undefined;
    await release?.();
  }
}
