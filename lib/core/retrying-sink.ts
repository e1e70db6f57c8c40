/**
 * retryingSink(): a sink that survives its inner sink failing, re-creating it
 * with the retry policy and re-writing every message the failed one had not acked.
 */
import { Writable, addAbortSignal } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, ManifoldError, isRetryable, toError } from './errors.js';
import { nackReason, toMessage, type Message, type MessageLike } from './message.js';
import { checkOptions, numberOption, signalOption } from './options.js';
import { RETRYING_KEYS, backoffDelay, finalError, resolveRetry, type FactoryContext, type ResolvedRetry, type RetryEvent, type RetryingOptions } from './retry.js';

/**
 * The method an inner sink may have to take messages directly, past its Writable buffer (see {@link TakesMessages}).
 */
export const takeMessages = Symbol('manifold.takeMessages');

/**
 * An inner sink that takes a batch of messages the way its `_writev` would, without the per-message work of
 * `write()` and its buffer: RetryingSink calls it instead of `write()` when nothing is buffered in the inner sink.
 * It returns false, having done nothing, when it cannot take messages now (still connecting, failed, ended): the
 * messages are then written with `write()`. Once it returned true it calls `callback` exactly once, when it can
 * take more, or with the error that ends it (as `_writev`'s callback). The messages it is handed are settled by
 * calling `ack()`/`nack()` on them, as methods: unlike a source's Message, they are not closures to pass around.
 */
export interface TakesMessages {
  [takeMessages](messages: Message[], callback: (error?: Error | null) => void): boolean;
}

/** How long a finished inner sink's trailing acks are awaited before its unacked messages are re-sent. */
const SETTLE_GRACE_MS = 2000;

/** What a pending entry settles through: its sink's bookkeeping (one object per sink, not two closures per message). */
interface Settler {
  acked(entry: Pending, attempt: number): void;
  nacked(entry: Pending, attempt: number, error: Error | undefined): void;
}

/**
 * One message written to the outer sink and not yet settled: a link in the list of pending
 * messages in write order (an intrusive list, so tracking a message costs no Map entry).
 *
 * It is also the Message an inner sink that takes messages directly ({@link TakesMessages}) is handed:
 * the original's fields, and `ack()`/`nack()` as methods that report to the sink as from the attempt it
 * was handed in. A message sent with `write()` (and every re-send) gets a wrapper of its own instead
 * (see RetryingSink#wrap), whose settles carry the attempt of that send.
 */
class Pending implements Message {
  readonly data: Buffer;
  readonly key: string | undefined;
  readonly headers: Record<string, string> | undefined;
  readonly timestamp: number | undefined;
  readonly meta: Readonly<Record<string, unknown>> | undefined;
  readonly attempt: number | undefined;
  /** The attempt whose inner sink was last given this message. */
  sentIn = 0;
  /** The attempt whose inner sink was handed this entry itself (0: none). */
  handedIn = 0;
  /** Still in the list: neither acked nor nacked for good. */
  live = true;
  prev: Pending | undefined;
  next: Pending | undefined;

  constructor(
    readonly message: Message,
    readonly owner: Settler,
    prev: Pending | undefined,
  ) {
    this.data = message.data;
    this.key = message.key;
    this.headers = message.headers;
    this.timestamp = message.timestamp;
    this.meta = message.meta;
    this.attempt = message.attempt;
    this.prev = prev;
    this.next = undefined;
  }

  ack(): void {
    this.owner.acked(this, this.handedIn);
  }

  nack(error?: Error): void {
    this.owner.nacked(this, this.handedIn, error);
  }
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
  /** Pending messages in write order: the oldest first. */
  #head: Pending | undefined;
  #tail: Pending | undefined;
  #pendingCount = 0;
  #attempt = 0;
  #inner: Writable | undefined;
  /** Set while a replacement is being made; writes wait for it. */
  #recovering: Promise<void> | undefined;
  /** Failures since the last healthy moment (an ack or 'ready'). */
  #failures = 0;
  #fatal: Error | undefined;
  /** The outer callback of the hand-over in progress (see #handOver), and the inner sink it went to. */
  #handing: ((error?: Error | null) => void) | undefined;
  #handingTo: Writable | undefined;
  /** The callback the current inner sink is given with every hand-over: one function per inner sink, not one per write. */
  #handBack: ((error?: Error | null) => void) | undefined;

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
    return this.#pendingCount;
  }

  readonly #settler: Settler = {
    acked: (entry, attempt) => this.#acked(entry, attempt),
    nacked: (entry, attempt, error) => this.#nacked(entry, attempt, error),
  };

  #append(message: Message): Pending {
    const entry = new Pending(message, this.#settler, this.#tail);
    if (this.#tail) this.#tail.next = entry;
    else this.#head = entry;
    this.#tail = entry;
    this.#pendingCount += 1;
    return entry;
  }

  /** Takes `entry` out of the list; false when it was out already (settled before). */
  #remove(entry: Pending): boolean {
    if (!entry.live) return false;
    entry.live = false;
    if (entry.prev) entry.prev.next = entry.next;
    else this.#head = entry.next;
    if (entry.next) entry.next.prev = entry.prev;
    else this.#tail = entry.prev;
    entry.prev = entry.next = undefined;
    this.#pendingCount -= 1;
    return true;
  }

  /** The pending entries, oldest first, as they are now. */
  #pendingEntries(): Pending[] {
    const out: Pending[] = [];
    for (let entry = this.#head; entry; entry = entry.next) out.push(entry);
    return out;
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
    this.#handBack = (error?: Error | null): void => this.#handedBack(inner, error);
    inner.on('error', (error: Error) => this.#onFailure(inner, error));
    inner.once('close', () => {
      // A hand-over the inner sink never called back for: the outer write goes on (its messages stay pending).
      this.#handedBack(inner, new ManifoldError(`${this.#what}: the sink closed`, { code: ErrorCodes.CONNECTION, retryable: true }));
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

  /**
   * The Message the inner sink of this attempt is given for `entry`: the original's fields, with
   * settles that come here first. Built directly (not through relay()): two closures over one
   * context are all a message costs on its way through.
   */
  #wrap(entry: Pending): Message {
    const { message } = entry;
    const attempt = this.#attempt;
    const sent: { -readonly [K in keyof Message]: Message[K] } = {
      data: message.data,
      // An ack from any attempt is the truth: the message is delivered.
      ack: () => this.#acked(entry, attempt),
      nack: (error?: Error) => this.#nacked(entry, attempt, error),
    };
    if (message.key !== undefined) sent.key = message.key;
    if (message.headers !== undefined) sent.headers = message.headers;
    if (message.timestamp !== undefined) sent.timestamp = message.timestamp;
    if (message.meta !== undefined) sent.meta = message.meta;
    if (message.attempt !== undefined) sent.attempt = message.attempt;
    return sent;
  }

  #acked(entry: Pending, attempt: number): void {
    if (!this.#remove(entry)) return;
    if (this.#attempt === attempt) this.#failures = 0;
    entry.message.ack();
    this.#maybeSettled();
  }

  #nacked(entry: Pending, attempt: number, error: Error | undefined): void {
    // A nack from a replaced sink is its shutdown speaking: the message is re-sent by the new one.
    if (entry.sentIn !== attempt || this.#attempt !== attempt || !entry.live) return;
    const cause = nackReason(error);
    if (isRetryable(cause)) return;
    this.#remove(entry);
    entry.message.nack(cause);
    this.#maybeSettled();
  }

  #settledWaiters: Array<() => void> = [];

  #whenSettled(timeoutMs: number): Promise<void> {
    if (this.#pendingCount === 0) return Promise.resolve();
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
    if (this.#pendingCount === 0 && this.#settledWaiters.length > 0) {
      const waiters = this.#settledWaiters;
      this.#settledWaiters = [];
      for (const w of waiters) w();
    }
  }

  /**
   * Writes `entry` to the current inner sink. Returns nothing when the inner
   * accepts more at once, or a promise that resolves when it drains (or fails).
   */
  #send(entry: Pending): Promise<void> | undefined {
    const inner = this.#inner;
    if (!inner || inner.destroyed) return undefined;
    entry.sentIn = this.#attempt;
    if (inner.write(this.#wrap(entry))) return undefined;
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
      for (const entry of this.#pendingEntries()) {
        if (entry.live) await this.#send(entry);
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
    const entries = this.#pendingEntries();
    for (const entry of entries) this.#remove(entry);
    for (const { message } of entries) message.nack(error);
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

  /**
   * Registers `chunks` as pending and writes them in order; calls back when the inner sink takes more. `chunks` is
   * an array of the caller's own making (_write's, _writev's): it becomes the array of entries, in place, so a
   * write allocates no second array.
   */
  #accept(chunks: Array<MessageLike | Pending>, callback: (error?: Error | null) => void): void {
    const entries = chunks as Pending[];
    let bad: Error | undefined;
    for (let i = 0; i < chunks.length; i++) {
      try {
        entries[i] = this.#append(toMessage(chunks[i] as MessageLike));
      } catch (error) {
        // What came before the bad chunk is written; the stream then fails naming the bad one.
        bad = toError(error);
        entries.length = i;
        break;
      }
    }
    const done = bad === undefined ? callback : (error?: Error | null): void => callback(error ?? bad);
    if (this.#recovering || this.#fatal || this.#inner === undefined) {
      // Not healthy: what was just appended is written after the recovery under way (whose re-send may have
      // begun before these were appended), unless that recovery sent it already.
      this.#slowPath(entries, undefined, done);
      return;
    }
    // Fast path, the common case: a healthy inner sink taking writes without backpressure; no promise per message.
    if (this.#handOver(entries, done)) return;
    for (let i = 0; i < entries.length; i++) {
      const wait = this.#send(entries[i]!);
      if (wait) {
        // The rest of the batch is written, in order, once the inner sink drains.
        this.#slowPath(entries.slice(i + 1), wait, done);
        return;
      }
    }
    done();
  }

  /**
   * Gives `entries` to an inner sink that takes messages directly ({@link TakesMessages}), past its Writable
   * buffer; false (nothing given) when it has no such method, cannot take them now, or has writes buffered
   * (which the entries must not overtake). `callback` runs when the inner sink takes more.
   */
  #handOver(entries: Pending[], callback: (error?: Error | null) => void): boolean {
    const inner = this.#inner as (Writable & Partial<TakesMessages>) | undefined;
    const take = inner?.[takeMessages];
    const handBack = this.#handBack;
    if (inner === undefined || take === undefined || handBack === undefined || entries.length === 0 || inner.destroyed || inner.writableLength > 0) return false;
    const attempt = this.#attempt;
    // Set before the call: the inner sink may settle a message (nack one too large) while taking it.
    for (let i = 0; i < entries.length; i++) entries[i]!.sentIn = entries[i]!.handedIn = attempt;
    this.#handing = callback;
    this.#handingTo = inner;
    if (take.call(inner, entries, handBack)) return true;
    // Not taken: the caller writes them with write() (wrapped: see #wrap). They were sent nowhere: a sentIn left
    // set would make the slow path take them for re-sent already, and skip them.
    this.#handing = undefined;
    for (let i = 0; i < entries.length; i++) entries[i]!.sentIn = entries[i]!.handedIn = 0;
    return false;
  }

  /**
   * The end of the hand-over in progress to `inner`: the inner sink's callback (it calls it once a hand-over), or its
   * 'close' before that (see #create). Nothing when no hand-over to `inner` is in progress.
   */
  #handedBack(inner: Writable, error?: Error | null): void {
    const callback = this.#handing;
    if (callback === undefined || this.#handingTo !== inner) return;
    this.#handing = undefined;
    if (!error) {
      callback();
      return;
    }
    // What a Writable does with an error from _writev: the inner sink is destroyed, and its 'error' starts
    // the recovery that re-sends every pending message.
    if (!inner.destroyed) inner.destroy(error);
    this.#slowPath([], undefined, callback);
  }

  #slowPath(entries: Pending[], first: Promise<void> | undefined, callback: (error?: Error | null) => void): void {
    const go = async (): Promise<void> => {
      if (first) await first;
      for (const entry of entries) {
        await this.#waitRecovered();
        if (this.#fatal) throw this.#fatal;
        // If a recovery re-sent this message already, it is not written twice.
        if (entry.sentIn !== this.#attempt && entry.live) await this.#send(entry);
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
        if (outcome === 'finished' && this.#pendingCount > 0) await this.#whenSettled(SETTLE_GRACE_MS);
        if (outcome === 'finished' && this.#pendingCount === 0) return;
        if (outcome === 'finished') {
          // Flushed, yet messages were nacked as retryable: give them to a fresh sink.
          this.#onFailure(
            inner,
            new ManifoldError(`${this.#what}: ${this.#pendingCount} message(s) were not delivered before the sink finished`, {
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
