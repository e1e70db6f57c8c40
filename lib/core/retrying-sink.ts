/**
 * retryingSink(): a sink that survives its inner sink failing, re-creating it
 * with the retry policy and re-writing every message the failed one had not acked.
 */
import { Writable, addAbortSignal } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, ManifoldError, isRetryable, toError } from './errors.js';
import { relay, toMessage, type Message, type MessageLike } from './message.js';
import { checkOptions, numberOption, signalOption } from './options.js';
import { RETRYING_KEYS, backoffDelay, finalError, resolveRetry, type FactoryContext, type ResolvedRetry, type RetryEvent, type RetryingOptions } from './retry.js';

/** How long a finished inner sink's trailing acks are awaited before its unacked messages are re-sent. */
const SETTLE_GRACE_MS = 2000;

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
 * attempt. Events: `'reconnect'` ({@link RetryEvent}), `'ready'` on every (re)connection
 * (when the inner sink emits it; its retry budget then starts afresh).
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
    inner.once('ready', (...args: unknown[]) => {
      if (this.#inner !== inner) return;
      this.#failures = 0;
      // Every (re)connection is announced, as retryingSource does: monitoring tells connected from reconnecting by it.
      this.emit('ready', ...args);
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
