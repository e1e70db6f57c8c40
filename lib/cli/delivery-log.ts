/**
 * The error policy's events as log lines: a message redelivered, dead-lettered, lost (its source
 * cannot deliver it again) or handed back to its source. Each names the message's position and the
 * cause; a dead-lettered or lost one shows an excerpt of its payload. One poison record makes a few
 * lines, but a sink refusing everything would make one per message, so each kind is rate-limited:
 * at most {@link LINES_PER_WINDOW} lines per {@link WINDOW_MS}, then one line saying how many more
 * there were (the metrics count them all).
 */
import { isUtf8 } from 'node:buffer';
import type { EventEmitter } from 'node:events';
import { ErrorCodes } from '../core/errors.js';
import { describePosition } from '../core/error-policy.js';
import type { DeadLetterEvent, RedeliverEvent } from '../core/flow.js';
import type { Message } from '../core/message.js';
import type { Logger } from './log.js';
import { errorFacts } from './monitor.js';
import { formatDuration } from './units.js';

/** Lines of one kind logged per window; the rest are counted in one line at the window's end. */
export const LINES_PER_WINDOW = 10;
export const WINDOW_MS = 10_000;
/** Bytes of a payload shown in a line. */
export const EXCERPT_BYTES = 120;

/** Allows `limit` lines per `windowMs`; what it refuses is reported once, when the window ends. */
class LineBudget {
  #windowStart = -Infinity;
  #used = 0;
  #skipped = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    readonly limit: number,
    readonly windowMs: number,
    readonly report: (skipped: number) => void,
  ) {}

  take(): boolean {
    const now = performance.now();
    if (now - this.#windowStart >= this.windowMs) {
      this.flush();
      this.#windowStart = now;
      this.#used = 0;
    }
    if (this.#used < this.limit) {
      this.#used += 1;
      return true;
    }
    this.#skipped += 1;
    if (!this.#timer) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.flush();
      }, Math.max(1, this.#windowStart + this.windowMs - now));
      // A summary line must not keep alive a process that has nothing else to do: close() says it.
      this.#timer.unref();
    }
    return false;
  }

  /** Reports what was refused so far, if anything. */
  flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#skipped === 0) return;
    const skipped = this.#skipped;
    this.#skipped = 0;
    this.report(skipped);
  }
}

/**
 * The first {@link EXCERPT_BYTES} bytes of a payload as text, `...` and the size when there is more;
 * bytes that are not UTF-8 in hex. Control characters stay as they are here: the logger escapes them.
 */
export function payloadExcerpt(data: Buffer, maxBytes = EXCERPT_BYTES): string {
  const more = data.length > maxBytes ? `... (${data.length} bytes)` : '';
  if (!isUtf8(data)) return `0x${data.subarray(0, Math.floor(maxBytes / 2)).toString('hex')}${data.length > maxBytes / 2 ? `... (${data.length} bytes, not UTF-8)` : ' (not UTF-8)'}`;
  let cut = Math.min(data.length, maxBytes);
  // Not in the middle of a character: back up over its continuation bytes (10xxxxxx).
  if (cut < data.length) while (cut > 0 && (data[cut]! & 0xc0) === 0x80) cut -= 1;
  return `${data.subarray(0, cut).toString('utf8')}${more}`;
}

export interface DeliveryLogOptions {
  /** The flow's maxAttempts, for the redelivery lines to say "attempt 2 of 5". */
  maxAttempts: number;
  /** Whether there is a dead-letter sink: a message is then lost only when it refused it (or was gone). */
  deadLetter?: boolean;
  /** Hides what the environment gave a pipeline file in an error's text. */
  conceal?: (text: string) => string;
  linesPerWindow?: number;
  windowMs?: number;
}

type Kind = 'redeliver' | 'deadletter' | 'lost' | 'nack';

const SUMMARY: Record<Kind, (n: number) => string> = {
  redeliver: (n) => `${n} more ${n === 1 ? 'redelivery' : 'redeliveries'}`,
  deadletter: (n) => `${n} more ${n === 1 ? 'message' : 'messages'} dead-lettered`,
  lost: (n) => `${n} more ${n === 1 ? 'message' : 'messages'} lost`,
  nack: (n) => `${n} more ${n === 1 ? 'message' : 'messages'} handed back to the source`,
};

const METRIC: Record<Kind, string> = {
  redeliver: 'manifold_redeliveries_total',
  deadletter: 'manifold_dead_lettered_total',
  lost: 'manifold_lost_total',
  nack: 'manifold_nacks_total',
};

/** Logs a flow's redeliveries, dead letters, losses and nacks, rate-limited per kind; `close()` when the flow ended. */
export class DeliveryLog {
  readonly #log: Logger;
  readonly #o: Required<Omit<DeliveryLogOptions, 'conceal' | 'deadLetter'>> & Pick<DeliveryLogOptions, 'conceal' | 'deadLetter'>;
  readonly #budgets: Record<Kind, LineBudget>;
  readonly #detach: Array<() => void> = [];

  constructor(events: EventEmitter, log: Logger, options: DeliveryLogOptions) {
    this.#log = log;
    this.#o = { linesPerWindow: LINES_PER_WINDOW, windowMs: WINDOW_MS, ...options };
    const budget = (kind: Kind): LineBudget =>
      new LineBudget(this.#o.linesPerWindow, this.#o.windowMs, (n) => {
        const window = formatDuration(this.#o.windowMs);
        this.#log.warn(
          { event: `${kind}-summary`, count: n },
          `... and ${SUMMARY[kind](n)} in the last ${window} (not logged one by one: at most ${this.#o.linesPerWindow} lines per ${window}; ${METRIC[kind]} counts them all)`,
        );
      });
    this.#budgets = { redeliver: budget('redeliver'), deadletter: budget('deadletter'), lost: budget('lost'), nack: budget('nack') };
    const on = (name: string, listener: (...args: any[]) => void): void => { // eslint-disable-line @typescript-eslint/no-explicit-any
      events.on(name, listener);
      this.#detach.push(() => events.off(name, listener));
    };
    on('redeliver', (e: RedeliverEvent) => this.#redeliver(e));
    on('deadletter', (e: DeadLetterEvent) => this.#deadLetter(e));
    on('lost', (message: Message, error: Error) => this.#lost(message, error));
    on('nack', (message: Message, error: Error | undefined) => this.#nack(message, error));
  }

  #cause(error: Error | undefined): { code: string | undefined; text: string } {
    if (!error) return { code: undefined, text: 'no reason given' };
    const facts = errorFacts(error);
    const own = (error as { code?: unknown }).code;
    const code = facts.code ?? (typeof own === 'string' ? own : undefined);
    return { code, text: this.#o.conceal ? this.#o.conceal(facts.message) : facts.message };
  }

  #redeliver({ message, error, attempt, delayMs }: RedeliverEvent): void {
    if (!this.#budgets.redeliver.take()) return;
    const { code, text } = this.#cause(error);
    this.#log.warn(
      { event: 'redeliver', attempt, maxAttempts: this.#o.maxAttempts, delayMs: Math.round(delayMs), ...(code ? { code } : {}) },
      `redelivering the message from ${describePosition(message)} in ${formatDuration(delayMs)} (attempt ${attempt} of ${this.#o.maxAttempts}): ${text}`,
    );
  }

  #deadLetter({ message, error, attempts }: DeadLetterEvent): void {
    if (!this.#budgets.deadletter.take()) return;
    const { code, text } = this.#cause(error);
    this.#log.warn(
      { event: 'deadletter', attempts, ...(code ? { code } : {}), data: payloadExcerpt(message.data) },
      `dead-lettered the message from ${describePosition(message)} after ${attempts} ${attempts === 1 ? 'attempt' : 'attempts'}: ${text}`,
    );
  }

  #lost(message: Message, error: Error): void {
    if (!this.#budgets.lost.take()) return;
    const { code, text } = this.#cause(error);
    this.#log.warn(
      { event: 'lost', ...(code ? { code } : {}), data: payloadExcerpt(message.data) },
      `lost the message from ${describePosition(message)} (the source cannot deliver it again, and ${this.#o.deadLetter ? 'the dead-letter sink did not take it' : 'there is no dead-letter sink'}): ${text}`,
    );
  }

  #nack(message: Message, error: Error | undefined): void {
    // The reader of stdout went away (`manifold ... | head`): the 'stopping' line said so, and the done line counts them.
    if ((error as { code?: unknown } | undefined)?.code === ErrorCodes.OUTPUT_CLOSED) return;
    if (!this.#budgets.nack.take()) return;
    const { code, text } = this.#cause(error);
    this.#log.warn(
      { event: 'nack', ...(code ? { code } : {}) },
      `handed the message from ${describePosition(message)} back to the source unacked (it delivers it again): ${text}`,
    );
  }

  /** Says what the rate limit held back, and stops listening. */
  close(): void {
    for (const detach of this.#detach.splice(0)) detach();
    for (const budget of Object.values(this.#budgets)) budget.flush();
  }
}
