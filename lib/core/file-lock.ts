/**
 * Lock files that name a live process, taken atomically even over a stale one: the lock that
 * gives one live process an S3 buffer folder (`bufferPath/.lock`, `BufferLock` in lib/s3/lock.ts),
 * and the short lock fileCheckpointer holds around each store ({@link takeFileLock}).
 *
 * Node has no flock(), so a lock is a file that holds its owner: `{ pid, start, boot, token }`.
 * It is created with link(2) from a complete temporary file, which fails when the name exists, so
 * the lock file always holds its whole content and only one taker can create it.
 *
 * A lock whose owner is dead (kill -9, power loss) is stale. Removing it by name was the race:
 * two takers saw it stale, the first removed it and took the lock, the second then removed the
 * first one's new lock and took it too. So a stale lock is removed only by whoever takes a second
 * lock named after its content, `<lock>.break-<hash of the content>` (by the same rule, which is
 * how a breaker that died while breaking is itself broken): exactly one taker breaks a given
 * stale lock, it checks under that lock that the content is still the stale one (nobody else
 * may remove it, and contents never repeat: the token is random), removes it, releases the
 * breaker, and then competes for the lock by link(2) like everyone else.
 *
 * A process is alive when its pid exists and, on Linux, when it is the same process: the boot id
 * and the process start time are recorded, so a pid reused after a reboot or a container restart
 * (where every run is pid 1) is not taken for the owner. Liveness is judged on this machine: do not
 * share a lock folder between machines.
 */
import { createHash, randomUUID } from 'node:crypto';
import { link, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { ErrorCodes, ManifoldError, describe } from './errors.js';

// A breaker of a breaker only exists when a breaker died while breaking; that nests rarely.
const MAX_BREAK_DEPTH = 6;
// A lock file without readable content (written without link(2), see below) younger than this is
// being written, not abandoned.
const UNREADABLE_GRACE_MS = 10_000;
// Filesystems without hard links: there the lock is created with O_EXCL and written after.
const NO_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV', 'EMLINK']);

/** Who holds a lock, as its file says. */
export interface LockOwner {
  pid: number;
  /** Process start time (clock ticks since boot, Linux), to tell a reused pid. */
  start?: string;
  /** Boot id (Linux), to tell a pid of an earlier boot. */
  boot?: string;
  token?: string;
}

/** The outcome of one attempt at a lock. */
export type LockAttempt = { taken: true; release(): Promise<void> } | { taken: false; owner: LockOwner | undefined };

let self: Promise<{ start?: string; boot?: string }> | undefined;

/** This process's start time and the boot id, where the system tells them (Linux /proc). */
function identity(): Promise<{ start?: string; boot?: string }> {
  self ??= (async () => {
    const [start, boot] = await Promise.all([startTime('self'), readFile('/proc/sys/kernel/random/boot_id', 'utf8').then((s) => s.trim(), () => undefined)]);
    return { ...(start !== undefined ? { start } : {}), ...(boot ? { boot } : {}) };
  })();
  return self;
}

/** Field 22 of /proc/<pid>/stat (starttime), and whether the process is a zombie; undefined where there is no /proc. */
async function procStat(pid: number | 'self'): Promise<{ start: string; zombie: boolean } | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 1).trim().split(' ');
  const start = fields[19];
  return start === undefined ? undefined : { start, zombie: fields[0] === 'Z' };
}

async function startTime(pid: number | 'self'): Promise<string | undefined> {
  return (await procStat(pid))?.start;
}

function parseOwner(text: string): LockOwner | undefined {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    try {
      const o = JSON.parse(trimmed) as Record<string, unknown>;
      if (!Number.isInteger(o.pid) || (o.pid as number) <= 0) return undefined;
      const owner: LockOwner = { pid: o.pid as number };
      if (typeof o.start === 'string') owner.start = o.start;
      if (typeof o.boot === 'string') owner.boot = o.boot;
      if (typeof o.token === 'string') owner.token = o.token;
      return owner;
    } catch {
      return undefined;
    }
  }
  // The format before: `<pid>:<token>`.
  const pid = Number(trimmed.split(':')[0]);
  return Number.isInteger(pid) && pid > 0 ? { pid } : undefined;
}

/** Whether the process that wrote `owner` is still running, as far as this machine can tell. */
export async function isOwnerAlive(owner: LockOwner): Promise<boolean> {
  const me = await identity();
  // Another boot: whatever runs under that pid now is someone else.
  if (owner.boot !== undefined && me.boot !== undefined && owner.boot !== me.boot) return false;
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const now = await procStat(owner.pid);
  // No /proc (or not readable): the pid exists, which is all we can know.
  if (now === undefined) return true;
  if (now.zombie) return false;
  return owner.start === undefined || owner.start === now.start;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * One attempt at the lock file `path`: takes it if it is free or stale, else says who holds it.
 * Never takes a lock whose owner is alive; two takers racing over a stale lock never both get it.
 */
export async function tryFileLock(path: string): Promise<LockAttempt> {
  const me = await identity();
  const content = `${JSON.stringify({ pid: process.pid, ...me, token: randomUUID() })}\n`;
  return attempt(path, content, 0);
}

async function attempt(path: string, content: string, depth: number): Promise<LockAttempt> {
  for (;;) {
    if (await create(path, content)) return { taken: true, release: () => release(path, content) };
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      // Released between our create and our read: try again.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    const owner = parseOwner(text);
    if (owner === undefined) {
      // Unreadable: being written (the no-link fallback writes after creating), or torn by a power loss.
      const info = await stat(path).catch(() => undefined);
      if (info === undefined) continue;
      if (Date.now() - info.mtimeMs < UNREADABLE_GRACE_MS) return { taken: false, owner: undefined };
    } else if (await isOwnerAlive(owner)) {
      return { taken: false, owner };
    }
    // Stale. Only the holder of the breaker named after this very content may remove it.
    if (depth >= MAX_BREAK_DEPTH) {
      throw new ManifoldError(`could not take the lock ${path}: too many abandoned ${path}.break-* files beside it; remove them`, {
        code: ErrorCodes.IO,
        details: { path },
      });
    }
    const breaker = `${path}.break-${createHash('sha256').update(text).digest('hex').slice(0, 16)}`;
    const broke = await attempt(breaker, content, depth + 1);
    if (!broke.taken) {
      // A live taker is breaking it right now: look again shortly.
      await sleep(2 + Math.random() * 8);
      continue;
    }
    try {
      // Still the stale content? Nobody else may have removed it, and a content never comes back.
      const now = await readFile(path, 'utf8').catch(() => undefined);
      if (now === text) await unlink(path).catch(() => undefined);
    } finally {
      await broke.release();
    }
  }
}

/** Creates `path` holding `content`, atomically; false when it exists. */
async function create(path: string, content: string): Promise<boolean> {
  const temp = `${path}.${randomUUID()}.tmp`;
  await writeFile(temp, content, { flag: 'wx', mode: 0o600 });
  try {
    await link(temp, path);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? '';
    if (code === 'EEXIST') return false;
    if (!NO_LINKS.has(code)) throw error;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
  // No hard links here: O_EXCL, then the content (a reader in between sees an unreadable, young lock).
  try {
    await writeFile(path, content, { flag: 'wx', mode: 0o600 });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

async function release(path: string, content: string): Promise<void> {
  // Only ours: nobody else removes a lock whose owner is alive, so what is there is still ours.
  const now = await readFile(path, 'utf8').catch(() => undefined);
  if (now === content) await unlink(path).catch(() => undefined);
}

/**
 * Takes the lock file `path`, waiting while a live process holds it (polling), up to `timeoutMs`;
 * resolves to its release function. `what` names the lock in the timeout error.
 */
export async function takeFileLock(path: string, what: string, timeoutMs: number): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  let pause = 2;
  for (;;) {
    const got = await tryFileLock(path);
    if (got.taken) return got.release;
    if (Date.now() >= deadline) {
      throw new ManifoldError(`${what}: the lock ${path} is held by process ${got.owner?.pid ?? '(unknown)'} for more than ${timeoutMs} ms`, {
        code: ErrorCodes.IO,
        retryable: true,
        details: { path, pid: got.owner?.pid },
      });
    }
    await sleep(pause + Math.random() * pause);
    pause = Math.min(pause * 2, 50);
  }
}
