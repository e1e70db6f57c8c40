/**
 * The one retry and reconnect mechanism, on p-retry: jittered exponential
 * backoff, a retry budget, abort by signal, and `isRetryable()` to tell a
 * transient failure from a fatal one. Connectors compose `withRetry()` for
 * one-shot operations and `retryingSource()` / `retryingSink()` for
 * long-lived connections.
 */
import { Readable, Writable, addAbortSignal } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import pRetry, { AbortError } from 'p-retry';
import { ErrorCodes, ManifoldError, describe, isRetryable, toError } from './errors.js';
import { relay, toMessage, type Message, type MessageLike } from './message.js';
import { checkOptions, durationOption, numberOption, signalOption } from './options.js';

/** How a connector retries. `retry: false` turns retrying off. */
export interface RetryOptions {
  /** Retries after the first failure, per outage. Default 10; `Infinity` retries for ever. */
  retries?: number;
  /** Delay before the first retry. Default 200 ms. */
  minTimeoutMs?: number;
  /** Largest delay between two retries. Default 30,000 ms. */
  maxTimeoutMs?: number;
  /** Growth of the delay per retry. Default 2. */
  factor?: number;
  /** Stops retrying (and waiting) at once. */
  signal?: AbortSignal;
}

/** The validated, filled-in form of {@link RetryOptions}. */
export interface ResolvedRetry {
  retries: number;
  minTimeoutMs: number;
  maxTimeoutMs: number;
  factor: number;
  signal: AbortSignal | undefined;
}

/** Details of a retry, as emitted in `'reconnect'` events. */
export interface RetryEvent {
  /** 1 for the first retry of an outage. */
  attempt: number;
  /** How long we wait before this attempt. */
  delayMs: number;
  /** What failed. */
  error: Error;
}

const RETRY_KEYS = ['retries', 'minTimeoutMs', 'maxTimeoutMs', 'factor', 'signal'] as const;

/**
 * Validates a connector's `retry` option (`where` names the factory), filling
 * defaults. `false` means one attempt and no retry.
 */
export function resolveRetry(where: string, value: RetryOptions | false | undefined): ResolvedRetry {
  if (value === false) return { retries: 0, minTimeoutMs: 0, maxTimeoutMs: 0, factor: 1, signal: undefined };
  const o = checkOptions<RetryOptions>(`${where}: options.retry`, value, RETRY_KEYS);
  const minTimeoutMs = durationOption(where, 'retry.minTimeoutMs', o.minTimeoutMs, 200, 0);
  const maxTimeoutMs = durationOption(where, 'retry.maxTimeoutMs', o.maxTimeoutMs, Math.max(30_000, minTimeoutMs), 0);
  if (maxTimeoutMs < minTimeoutMs) {
    throw new ManifoldError(
      `${where}: options.retry.maxTimeoutMs (${maxTimeoutMs}) must be at least options.retry.minTimeoutMs (${minTimeoutMs})`,
      { code: ErrorCodes.INVALID_OPTION, details: { option: 'retry.maxTimeoutMs' } },
    );
  }
  return {
    retries: numberOption(where, 'retry.retries', o.retries, 10, { min: 0, integer: true }),
    minTimeoutMs,
    maxTimeoutMs,
    factor: numberOption(where, 'retry.factor', o.factor, 2, { min: 1 }),
    signal: signalOption(where, 'retry.signal', o.signal),
  };
}

/** The jittered delay before retry number `attempt` (1-based), as p-retry computes it. */
export function backoffDelay(retry: ResolvedRetry, attempt: number): number {
  const base = retry.minTimeoutMs * retry.factor ** Math.max(0, attempt - 1);
  return Math.min(Math.round(base * (1 + Math.random())), retry.maxTimeoutMs);
}

/** Wraps a final failure into the ManifoldError the stream is destroyed with. */
function finalError(what: string, error: unknown, attempts: number): Error {
  const err = toError(error);
  if (err.name === 'AbortError' || (err instanceof ManifoldError && err.code === ErrorCodes.ABORTED)) return err;
  if (isRetryable(err) && attempts > 1) {
    return new ManifoldError(`${what} failed after ${attempts} attempts: ${describe(err)}`, {
      code: ErrorCodes.RETRIES_EXHAUSTED,
      cause: err,
      details: { attempts },
    });
  }
  if (err instanceof ManifoldError) return err;
  // With retries off, a transient failure stays marked retryable: a caller with its own loop (a rescan) may try later.
  const transient = isRetryable(err);
  return new ManifoldError(`${what} failed: ${describe(err)}`, {
    code: transient ? ErrorCodes.CONNECTION : ErrorCodes.DELIVERY,
    retryable: transient,
    cause: err,
  });
}

/**
 * Runs `fn` until it succeeds, a fatal error occurs, or the budget is spent.
 * Rejects with a ManifoldError naming `what` (e.g. `connecting to amqp://host`)
 * and the last cause; `onRetry` sees every retry (for `'reconnect'` events).
 *
 * @example
 * ```ts
 * const conn = await withRetry('connecting to amqp://localhost', () => amqp.connect(url), retry);
 * ```
 */
export async function withRetry<T>(
  what: string,
  fn: (attempt: number) => Promise<T>,
  retry: ResolvedRetry,
  onRetry?: (event: RetryEvent) => void,
  signal?: AbortSignal,
): Promise<T> {
  let attempts = 0;
  const signals = [retry.signal, signal].filter((s): s is AbortSignal => s !== undefined);
  try {
    return await pRetry(
      async (attempt) => {
        attempts = attempt;
        try {
          return await fn(attempt);
        } catch (error) {
          // p-retry retries anything but AbortError (and TypeError); we retry only what is transient.
          if (!isRetryable(error)) throw new AbortError(toError(error));
          throw error;
        }
      },
      {
        retries: retry.retries,
        minTimeout: retry.minTimeoutMs,
        maxTimeout: retry.maxTimeoutMs,
        factor: retry.factor,
        randomize: true,
        signal: signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals),
        onFailedAttempt: ({ error, attemptNumber, retriesLeft, retryDelay }) => {
          if (retriesLeft > 0) onRetry?.({ attempt: attemptNumber, delayMs: retryDelay, error });
        },
      },
    );
  } catch (error) {
    throw finalError(what, error, attempts);
  }
}

/** What a source or sink factory receives on each (re)creation. */
export interface FactoryContext {
  /** 1 for the first creation, then counting every re-creation. */
  attempt: number;
  /** Aborted when the outer stream is destroyed. */
  signal: AbortSignal;
}

/** Options of {@link retryingSource} and {@link retryingSink}. */
export interface RetryingOptions {
  /** Retry settings, or `false` to fail on the first error. */
  retry?: RetryOptions | false;
  /** What the inner stream does, for error messages: `consuming queue "orders"`. */
  what?: string;
  /** Events of the inner stream to re-emit on the outer one (`'checkpoint'`, `'lag'`...). */
  forwardEvents?: readonly string[];
  /** Destroys the outer stream (and the inner one) when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark of the outer stream. Default 16. */
  highWaterMark?: number;
}

/** A readable that can be stopped gracefully, as manifold sources can. */
export interface Closable {
  close(): Promise<void>;
}

function hasClose(stream: unknown): stream is Closable {
  return typeof (stream as Partial<Closable>).close === 'function';
}

/** How long a finished inner sink's trailing acks are awaited before its unacked messages are re-sent. */
const SETTLE_GRACE_MS = 2000;

const RETRYING_KEYS = ['retry', 'what', 'forwardEvents', 'signal', 'highWaterMark'] as const;

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

export class RetryingSource extends Readable implements Closable {
  readonly #factory: (context: FactoryContext) => Readable;
  readonly #retry: ResolvedRetry;
  readonly #what: string;
  readonly #forward: readonly string[];
  readonly #abort = new AbortController();
  #inner: Readable | undefined;
  #attempt = 0;
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
      const outcome = await inner.done;
      if (outcome === 'end' || this.#closing) return;
      if (!isRetryable(outcome) || this.#retry.retries === 0) throw finalError(this.#what, outcome, 1);
      // The inner source was healthy and then failed: a new outage with a fresh budget, after one short jittered wait
      // so a peer that accepts and drops at once cannot make us spin.
      const delayMs = backoffDelay(this.#retry, 1);
      this.emit('reconnect', { attempt: 1, delayMs, error: outcome } satisfies RetryEvent);
      await sleep(delayMs, undefined, { signal: this.#abort.signal });
      if (this.#closing) return;
    }
  }

  #create(): { healthy: Promise<void>; done: Promise<Error | 'end'> } {
    this.#attempt += 1;
    const inner = this.#factory({ attempt: this.#attempt, signal: this.#abort.signal });
    this.#inner = inner;
    let markHealthy!: () => void;
    let failEarly!: (e: Error) => void;
    let healthyDone = false;
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
        markHealthy();
        if (this.#inner === inner && !this.push(message)) inner.pause();
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
    return { healthy, done };
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

interface Pending {
  message: Message;
  /** The attempt whose inner sink was last given this message. */
  attempt: number;
}

/**
 * A sink that survives its inner sink failing: after a retryable error it
 * creates a new one with backoff and re-writes, in order, every message that
 * the failed sink had not acked, so nothing written to the outer sink is lost.
 * Duplicates are possible (at-least-once) when the old sink delivered a
 * message but failed before acking it.
 *
 * A nack from the inner sink with a fatal error (a record too large, unroutable)
 * nacks the outer message; a nack with a retryable error keeps it for the next
 * attempt. Events: `'reconnect'` ({@link RetryEvent}), `'ready'`.
 *
 * @example
 * ```ts
 * const sink = retryingSink(() => connectToBroker(url), { retry: { retries: Infinity } });
 * ```
 */
export function retryingSink(factory: (context: FactoryContext) => Writable, options: RetryingOptions = {}): RetryingSink {
  return new RetryingSink(factory, options);
}

export class RetryingSink extends Writable {
  readonly #factory: (context: FactoryContext) => Writable;
  readonly #retry: ResolvedRetry;
  readonly #what: string;
  readonly #forward: readonly string[];
  readonly #abort = new AbortController();
  readonly #pending = new Map<number, Pending>();
  #nextId = 0;
  #attempt = 0;
  #inner: Writable | undefined;
  /** Set while a replacement is being made; writes wait for it. */
  #recovering: Promise<void> | undefined;
  /** Failures since the last healthy moment (an ack or 'ready'). */
  #failures = 0;
  #fatal: Error | undefined;

  constructor(factory: (context: FactoryContext) => Writable, options: RetryingOptions = {}) {
    // Checked before super(): a Writable schedules _construct() as soon as it exists.
    if (typeof factory !== 'function') {
      throw new ManifoldError(`retryingSink: factory must be a function returning a Writable, got ${typeof factory}`, {
        code: ErrorCodes.INVALID_OPTION,
      });
    }
    const o = checkOptions('retryingSink', options, RETRYING_KEYS);
    super({ objectMode: true, highWaterMark: numberOption('retryingSink', 'highWaterMark', o.highWaterMark, 16, { min: 1, integer: true }) });
    this.#factory = factory;
    this.#retry = resolveRetry('retryingSink', o.retry);
    this.#what = o.what ?? 'sink';
    this.#forward = o.forwardEvents ?? [];
    const signal = signalOption('retryingSink', 'signal', o.signal);
    if (signal) addAbortSignal(signal, this);
  }

  /** Messages written and not yet acked or nacked. */
  get pending(): number {
    return this.#pending.size;
  }

  /** The inner sink now in use, if any. */
  get inner(): Writable | undefined {
    return this.#inner;
  }

  #create(): Writable {
    this.#attempt += 1;
    const attempt = this.#attempt;
    const inner = this.#factory({ attempt, signal: this.#abort.signal });
    this.#inner = inner;
    inner.on('error', (error: Error) => this.#onFailure(inner, error));
    inner.once('close', () => {
      if (this.#inner === inner && !inner.writableFinished && !inner.errored && !this.destroyed) {
        this.#onFailure(inner, new ManifoldError(`${this.#what}: the sink closed unexpectedly`, { code: ErrorCodes.CONNECTION, retryable: true }));
      }
    });
    inner.once('ready', () => {
      if (this.#inner === inner) this.#failures = 0;
    });
    for (const event of this.#forward) inner.on(event, (...args: unknown[]) => this.emit(event, ...args));
    return inner;
  }

  #wrap(id: number, entry: Pending): Message {
    const { message } = entry;
    const attempt = this.#attempt;
    return relay(
      message,
      () => {
        // An ack from any attempt is the truth: the message is delivered.
        if (!this.#pending.delete(id)) return;
        if (this.#attempt === attempt) this.#failures = 0;
        message.ack();
        this.#maybeSettled();
      },
      (error) => {
        // A nack from a replaced sink is its shutdown speaking: the message is re-sent by the new one.
        if (entry.attempt !== attempt || this.#attempt !== attempt || !this.#pending.has(id)) return;
        if (isRetryable(error)) return;
        this.#pending.delete(id);
        message.nack(error);
        this.#maybeSettled();
      },
    );
  }

  #settledWaiters: Array<() => void> = [];

  #whenSettled(timeoutMs: number): Promise<void> {
    if (this.#pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#settledWaiters.push(done);
    });
  }

  #maybeSettled(): void {
    if (this.#pending.size === 0 && this.#settledWaiters.length > 0) {
      const waiters = this.#settledWaiters;
      this.#settledWaiters = [];
      for (const w of waiters) w();
    }
  }

  /**
   * Writes `entry` to the current inner sink. Returns nothing when the inner
   * accepts more at once, or a promise that resolves when it drains (or fails).
   */
  #send(id: number, entry: Pending): Promise<void> | undefined {
    const inner = this.#inner;
    if (!inner || inner.destroyed) return undefined;
    entry.attempt = this.#attempt;
    if (inner.write(this.#wrap(id, entry))) return undefined;
    return new Promise<void>((resolve) => {
      const done = (): void => {
        inner.off('drain', done);
        inner.off('close', done);
        inner.off('error', done);
        resolve();
      };
      inner.on('drain', done);
      inner.on('close', done);
      inner.on('error', done);
    });
  }

  #onFailure(inner: Writable, error: Error): void {
    if (this.#inner !== inner || this.destroyed) return;
    this.#inner = undefined;
    inner.destroy();
    this.#failures += 1;
    if (!isRetryable(error) || this.#failures > this.#retry.retries) {
      this.#fail(finalError(this.#what, error, this.#failures));
      return;
    }
    const delayMs = backoffDelay(this.#retry, this.#failures);
    this.emit('reconnect', { attempt: this.#failures, delayMs, error } satisfies RetryEvent);
    const recovering: Promise<void> = (async () => {
      try {
        await sleep(delayMs, undefined, { signal: this.#abort.signal });
      } catch {
        return;
      }
      this.#create();
      // Re-send in the original order; new writes wait until this is done so order is kept.
      for (const [id, entry] of [...this.#pending]) {
        if (this.#pending.has(id)) await this.#send(id, entry);
      }
    })().finally(() => {
      // A failure during the re-send has already started the next recovery: keep that one.
      if (this.#recovering === recovering) this.#recovering = undefined;
    });
    this.#recovering = recovering;
  }

  #fail(error: Error): void {
    this.#fatal = error;
    // The messages that cannot be delivered are reported, so the source can redeliver them.
    for (const { message } of this.#pending.values()) message.nack(error);
    this.#pending.clear();
    this.destroy(error);
  }

  async #waitRecovered(): Promise<void> {
    while (this.#recovering) await this.#recovering;
  }

  override _construct(callback: (error?: Error | null) => void): void {
    try {
      this.#create();
      callback();
    } catch (error) {
      callback(toError(error));
    }
  }

  override _write(chunk: MessageLike, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#accept([chunk], callback);
  }

  override _writev(chunks: Array<{ chunk: MessageLike }>, callback: (error?: Error | null) => void): void {
    this.#accept(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  /** Registers `chunks` as pending and writes them in order; calls back when the inner sink takes more. */
  #accept(chunks: MessageLike[], callback: (error?: Error | null) => void): void {
    const entries: Array<[number, Pending]> = [];
    for (const chunk of chunks) {
      let message: Message;
      try {
        message = toMessage(chunk);
      } catch (error) {
        callback(toError(error));
        return;
      }
      const id = this.#nextId++;
      const entry: Pending = { message, attempt: 0 };
      this.#pending.set(id, entry);
      entries.push([id, entry]);
    }
    // Fast path, the common case: a healthy inner sink taking writes without backpressure; no promise per message.
    let i = 0;
    if (!this.#recovering && !this.#fatal && this.#inner) {
      for (; i < entries.length; i++) {
        const [id, entry] = entries[i]!;
        const wait = this.#send(id, entry);
        if (wait) {
          i += 1;
          this.#slowPath(entries.slice(i), wait, callback);
          return;
        }
      }
      callback();
      return;
    }
    this.#slowPath(entries, undefined, callback);
  }

  #slowPath(entries: Array<[number, Pending]>, first: Promise<void> | undefined, callback: (error?: Error | null) => void): void {
    const go = async (): Promise<void> => {
      if (first) await first;
      for (const [id, entry] of entries) {
        await this.#waitRecovered();
        if (this.#fatal) throw this.#fatal;
        // If a recovery re-sent this message already, it is not written twice.
        if (entry.attempt !== this.#attempt && this.#pending.has(id)) await this.#send(id, entry);
      }
      // Hold the callback while a replacement is being made: that is the outer backpressure during an outage.
      await this.#waitRecovered();
      if (this.#fatal) throw this.#fatal;
    };
    go().then(() => callback(), (error: unknown) => callback(toError(error)));
  }

  override _final(callback: (error?: Error | null) => void): void {
    const finish = async (): Promise<void> => {
      for (;;) {
        await this.#waitRecovered();
        if (this.#fatal) throw this.#fatal;
        const inner = this.#inner;
        if (!inner) throw new ManifoldError(`${this.#what}: no sink to flush`, { code: ErrorCodes.CONNECTION });
        const outcome = await new Promise<'finished' | 'failed'>((resolve) => {
          const onFinish = (): void => {
            cleanup();
            resolve('finished');
          };
          const onFail = (): void => {
            cleanup();
            resolve('failed');
          };
          const cleanup = (): void => {
            inner.off('finish', onFinish);
            inner.off('error', onFail);
            inner.off('close', onFail);
          };
          inner.once('finish', onFinish);
          inner.once('error', onFail);
          inner.once('close', onFail);
          inner.end();
        });
        // Acks may trail the inner 'finish' by a moment (confirms in flight); give them a bounded grace.
        if (outcome === 'finished' && this.#pending.size > 0) await this.#whenSettled(SETTLE_GRACE_MS);
        if (outcome === 'finished' && this.#pending.size === 0) return;
        if (outcome === 'finished') {
          // Flushed, yet messages were nacked as retryable: give them to a fresh sink.
          this.#onFailure(
            inner,
            new ManifoldError(`${this.#what}: ${this.#pending.size} message(s) were not delivered before the sink finished`, {
              code: ErrorCodes.DELIVERY,
              retryable: true,
            }),
          );
        }
        // A failure during the flush started a recovery (or a fatal error): go round again.
        await sleep(0);
      }
    };
    finish().then(() => callback(), (error: unknown) => callback(toError(error)));
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#abort.abort(error ?? new ManifoldError('sink destroyed', { code: ErrorCodes.ABORTED }));
    const inner = this.#inner;
    this.#inner = undefined;
    inner?.destroy();
    callback(error);
  }
}
