/**
 * The lock that gives one live process a buffer folder (`bufferPath/.lock`), shared by
 * s3Collector and s3Sink: the sink holds it from the collector's start until its uploads end.
 */
import { randomUUID } from 'node:crypto';
import { readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCodes, ManifoldError } from '../core/errors.js';

const LOCK_FILE = '.lock';

/**
 * The lock file that gives one live process a buffer folder: `bufferPath/.lock`
 * holds `<pid>:<token>`. A lock whose pid is not alive (kill -9, power loss) is
 * stale and taken over. `take()` is idempotent.
 */
export class BufferLock {
  readonly #path: string;
  readonly #bufferPath: string;
  readonly #token = `${process.pid}:${randomUUID()}`;
  #taking: Promise<void> | undefined;
  #held = false;

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
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await writeFile(this.#path, this.#token, { flag: 'wx', mode: 0o600 });
        this.#held = true;
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const owner = await readFile(this.#path, 'utf8').catch(() => '');
      const pid = Number(owner.split(':')[0]);
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
        throw new ManifoldError(
          `s3Collector: the buffer folder ${this.#bufferPath} is in use by process ${pid}${pid === process.pid ? ' (another sink in this process)' : ''}; give each sink its own bufferPath`,
          { code: ErrorCodes.IO, details: { bufferPath: this.#bufferPath, pid } },
        );
      }
      // The owner died (kill -9, power loss): its lock is stale.
      await unlink(this.#path).catch(() => undefined);
    }
    /* c8 ignore next 2 -- only when other processes keep re-creating the lock in between */
    throw new ManifoldError(`s3Collector: could not take the lock ${this.#path}`, { code: ErrorCodes.IO });
  }

  /** Releases the lock if this instance holds it. Idempotent. */
  async release(): Promise<void> {
    if (!this.#held) return;
    this.#held = false;
    const owner = await readFile(this.#path, 'utf8').catch(() => '');
    if (owner === this.#token) await unlink(this.#path).catch(() => undefined);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
