/**
 * retryingSource(): a source that survives its inner source failing, re-creating
 * it with the retry policy while the outer stream stays open.
 */
import { Readable, addAbortSignal } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, ManifoldError, isRetryable, toError } from './errors.js';
import { emitToFlowing } from './hand-over.js';
import type { Message } from './message.js';
import { checkOptions, numberOption, signalOption } from './options.js';
import { RETRYING_KEYS, backoffDelay, finalError, resolveRetry, withRetry, type FactoryContext, type ResolvedRetry, type RetryEvent, type RetryingOptions } from './retry.js';

/** A readable that can be stopped gracefully, as manifold sources can. */
export interface Closable {
  close(): Promise<void>;
}

function hasClose(stream: unknown): stream is Closable {
  return typeof (stream as Partial<Closable>).close === 'function';
}


/**
 * A source that survives its inner source failing: after a retryable error it
 * creates a new one with backoff and carries on, so the outer stream stays
 * open. Redelivery of what was in flight comes from the system itself
 * (unacked AMQP messages are requeued, Kinesis/Kafka resume at the checkpoint).
 *
 * The retry budget covers one outage: it starts afresh once a new inner source
 * emits `'ready'` or its first message. Events: `'reconnect'` ({@link RetryEvent}),
 * `'ready'` on every healthy (re)connection.
 *
 * @example
 * ```ts
 * const source = retryingSource(() => connectToFeed(url), { retry: { retries: 5 } });
 * ```
 */
export function retryingSource(factory: (context: FactoryContext) => Readable, options: RetryingOptions = {}): RetryingSource {
  return new RetryingSource(factory, options);
}

/**
 * A connection that delivered nothing and failed sooner than this after it became healthy does not end the outage
 * it recovered from: its delay keeps growing and its budget runs out.
 */
export const SHORT_LIVED_MS = 10_000;

export class RetryingSource extends Readable implements Closable {
  readonly #factory: (context: FactoryContext) => Readable;
  readonly #retry: ResolvedRetry;
  readonly #what: string;
  readonly #forward: readonly string[];
  readonly #abort = new AbortController();
  #inner: Readable | undefined;
  #attempt = 0;
  /** The retry number of the outage now: 1 after a connection that lived, one more per short-lived one after it. */
  #flaps = 0;
  #started = false;
  #closing = false;
  #closed: Promise<void> | undefined;

  constructor(factory: (context: FactoryContext) => Readable, options: RetryingOptions = {}) {
    // Checked before super(): a Writable schedules _construct() as soon as it exists.
    if (typeof factory !== 'function') {
      throw new ManifoldError(`retryingSource: factory must be a function returning a Readable, got ${typeof factory}`, {
        code: ErrorCodes.INVALID_OPTION,
      });
    }
    const o = checkOptions('retryingSource', options, RETRYING_KEYS);
    super({ objectMode: true, highWaterMark: numberOption('retryingSource', 'highWaterMark', o.highWaterMark, 16, { min: 1, integer: true }) });
    this.#factory = factory;
    this.#retry = resolveRetry('retryingSource', o.retry);
    this.#what = o.what ?? 'source';
    this.#forward = o.forwardEvents ?? [];
    const signal = signalOption('retryingSource', 'signal', o.signal);
    if (signal) addAbortSignal(signal, this);
  }

  override _read(): void {
    if (!this.#started) {
      this.#started = true;
      this.#run().then(
        () => this.push(null),
        (error: unknown) => {
          // Aborting the retry wait is how close() interrupts a reconnect: that is an end, not a failure.
          if (this.#closing) this.push(null);
          else this.destroy(toError(error));
        },
      );
      return;
    }
    this.#inner?.resume();
  }

  async #run(): Promise<void> {
    for (;;) {
      const inner = await withRetry(
        this.#what,
        async () => {
          const candidate = this.#create();
          await candidate.healthy;
          return candidate;
        },
        this.#retry,
        (event) => this.emit('reconnect', event),
        this.#abort.signal,
      );
      this.emit('ready', { attempt: this.#attempt });
      const readyAt = performance.now();
      const outcome = await inner.done;
      if (outcome === 'end' || this.#closing || this.destroyed) return;
      if (!isRetryable(outcome) || this.#retry.retries === 0) throw finalError(this.#what, outcome, 1);
      // The inner source was healthy and then failed: a new outage with a fresh budget, after a short jittered wait.
      // A connection that dies soon after it was made (a peer that accepts and drops, a broker that closes it at
      // once) is no recovery: it continues the outage, whose delay keeps growing and whose budget runs out.
      this.#flaps = !inner.delivered() && performance.now() - readyAt < SHORT_LIVED_MS ? this.#flaps + 1 : 1;
      if (this.#flaps > this.#retry.retries) throw finalError(this.#what, outcome, this.#flaps);
      const attempt = this.#flaps;
      const delayMs = backoffDelay(this.#retry, attempt);
      this.emit('reconnect', { attempt, delayMs, error: outcome } satisfies RetryEvent);
      await sleep(delayMs, undefined, { signal: this.#abort.signal });
      if (this.#closing) return;
    }
  }

  #create(): { healthy: Promise<void>; done: Promise<Error | 'end'>; delivered: () => boolean } {
    this.#attempt += 1;
    const inner = this.#factory({ attempt: this.#attempt, signal: this.#abort.signal });
    this.#inner = inner;
    let markHealthy!: () => void;
    let failEarly!: (e: Error) => void;
    let healthyDone = false;
    let delivered = false;
    const healthy = new Promise<void>((resolve, reject) => {
      markHealthy = () => {
        if (!healthyDone) {
          healthyDone = true;
          resolve();
        }
      };
      failEarly = (e) => {
        if (!healthyDone) {
          healthyDone = true;
          reject(e);
        }
      };
    });
    const done = new Promise<Error | 'end'>((resolve) => {
      inner.on('data', (message: Message) => {
        if (!delivered) {
          delivered = true;
          markHealthy();
        }
        // A consumer that keeps up gets it without a second push() (see emitToFlowing).
        if (this.#inner === inner && !emitToFlowing(this, message) && !this.push(message)) inner.pause();
      });
      inner.once('ready', markHealthy);
      inner.once('end', () => {
        markHealthy();
        resolve('end');
      });
      inner.on('error', (error: Error) => {
        // Keep listening: a destroyed inner may report more errors, and none of them may crash the process.
        if (this.#inner === inner) this.#inner = undefined;
        failEarly(error);
        resolve(error);
      });
      inner.once('close', () => {
        if (!inner.readableEnded && !inner.errored) {
          const error = new ManifoldError(`${this.#what}: the source closed without ending`, { code: ErrorCodes.CONNECTION, retryable: true });
          failEarly(error);
          resolve(error);
        }
      });
    });
    for (const event of this.#forward) inner.on(event, (...args: unknown[]) => this.emit(event, ...args));
    // Healthy failures are reported through `done`; an unhealthy one must not also leave a rejected promise unobserved.
    healthy.catch(() => inner.destroy());
    return { healthy, done, delivered: () => delivered };
  }

  /** The inner source now in use, if any. */
  get inner(): Readable | undefined {
    return this.#inner;
  }

  /**
   * Graceful stop: closes the inner source (its own `close()` when it has one),
   * stops reconnecting, and ends after what the inner source delivered.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#closing = true;
      const inner = this.#inner;
      if (inner && hasClose(inner)) await inner.close();
      else if (inner) inner.destroy();
      this.#abort.abort(new ManifoldError('source closed', { code: ErrorCodes.ABORTED }));
      if (!this.#started) this.push(null);
      if (!this.readableEnded && !this.destroyed) {
        await new Promise<void>((resolve) => {
          const done = (): void => resolve();
          this.once('end', done);
          this.once('close', done);
        });
      }
    })();
    return this.#closed;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#abort.abort(error ?? new ManifoldError('source destroyed', { code: ErrorCodes.ABORTED }));
    // After a normal end the outer stream is auto-destroyed once read, but the inner source may still be
    // settling acks of what it delivered (a graceful close): it finishes on its own. Anything else is cut now.
    const inner = this.#inner;
    if (inner && (error || !inner.readableEnded)) inner.destroy();
    this.#inner = undefined;
    callback(error);
  }
}
