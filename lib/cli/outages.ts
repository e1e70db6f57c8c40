/**
 * Outages as log lines. A connector retrying through an outage emits a `'reconnect'` per
 * attempt (for ever, by the command's default); a line per attempt would bury the rest of the
 * log, and a line per attempt at a 30 s backoff still says nothing about how long it has lasted.
 * So an outage is told three times: when it begins (the first `'reconnect'` since the connector
 * was healthy: warn), every {@link OUTAGE_REPORT_MS} while it lasts (warn: how long, how many
 * attempts, the last error), and when it ends (its `'ready'`: info, with its duration).
 */
import type { EventEmitter } from 'node:events';
import type { RetryEvent } from '../core/retry.js';
import type { Logger } from './log.js';
import { formatDuration } from './units.js';

/** How often a lasting outage is logged again. */
export const OUTAGE_REPORT_MS = 60_000;

interface Outage {
  began: number;
  attempts: number;
  lastError: string;
  timer: NodeJS.Timeout;
}

/** Watches the source, the sink (and a dead-letter sink) for outages and logs them; `close()` when the pipeline ended. */
export class OutageLog {
  readonly #log: Logger;
  readonly #retries: Readonly<Record<string, number | undefined>>;
  readonly #reportEveryMs: number;
  readonly #outages = new Map<string, Outage>();
  readonly #detach: Array<() => void> = [];

  /**
   * `retries`: the retry budget per outage each connector was given (Infinity: for ever), for the
   * lines to say how long we keep trying.
   */
  constructor(
    streams: ReadonlyArray<readonly [role: 'source' | 'sink' | 'dead-letter', stream: EventEmitter]>,
    log: Logger,
    retries: Readonly<Record<string, number | undefined>>,
    reportEveryMs = OUTAGE_REPORT_MS,
  ) {
    this.#log = log;
    this.#retries = retries;
    this.#reportEveryMs = reportEveryMs;
    for (const [role, stream] of streams) {
      const onReconnect = (event: RetryEvent): void => this.#reconnect(role, event);
      const onReady = (): void => this.#ready(role);
      stream.on('reconnect', onReconnect);
      stream.on('ready', onReady);
      this.#detach.push(() => {
        stream.off('reconnect', onReconnect);
        stream.off('ready', onReady);
      });
    }
  }

  #retrying(role: string): string {
    const retries = this.#retries[role];
    if (retries === undefined) return 'retrying';
    return retries === Infinity ? 'retrying for ever' : `retrying up to ${retries} ${retries === 1 ? 'time' : 'times'}`;
  }

  #reconnect(role: string, event: RetryEvent): void {
    const error = event?.error?.message ?? 'unknown error';
    const outage = this.#outages.get(role);
    if (outage) {
      outage.attempts += 1;
      outage.lastError = error;
      return;
    }
    const began = Date.now();
    const timer = setInterval(() => {
      const o = this.#outages.get(role);
      if (!o) return;
      const durationMs = Date.now() - o.began;
      this.#log.warn(
        { role, event: 'outage', state: 'continues', durationMs, attempts: o.attempts, error: o.lastError },
        `${role} outage continues: ${formatDuration(durationMs)} so far, ${o.attempts} ${o.attempts === 1 ? 'attempt' : 'attempts'}; ${this.#retrying(role)}`,
      );
    }, this.#reportEveryMs);
    // An outage report must not keep a process alive that has nothing else to do.
    timer.unref();
    this.#outages.set(role, { began, attempts: 1, lastError: error, timer });
    this.#log.warn({ role, event: 'outage', state: 'began', error }, `${role} outage began; ${this.#retrying(role)}`);
  }

  #ready(role: string): void {
    const outage = this.#outages.get(role);
    if (!outage) return;
    clearInterval(outage.timer);
    this.#outages.delete(role);
    const durationMs = Date.now() - outage.began;
    this.#log.info(
      { role, event: 'outage', state: 'ended', durationMs, attempts: outage.attempts },
      `${role} outage ended after ${formatDuration(durationMs)} (${outage.attempts} ${outage.attempts === 1 ? 'attempt' : 'attempts'}): connected again`,
    );
  }

  /** Stops watching and reporting. */
  close(): void {
    for (const detach of this.#detach.splice(0)) detach();
    for (const outage of this.#outages.values()) clearInterval(outage.timer);
    this.#outages.clear();
  }
}
