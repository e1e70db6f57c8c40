/**
 * The one retry policy, on p-retry: jittered exponential backoff, a retry
 * budget, abort by signal, and `isRetryable()` to tell a transient failure
 * from a fatal one. Connectors compose `withRetry()` for one-shot operations,
 * and `retryingSource()` (retrying-source.ts) / `retryingSink()`
 * (retrying-sink.ts) for long-lived connections.
 */
import pRetry, { AbortError } from 'p-retry';
import { ErrorCodes, ManifoldError, describe, isRetryable, toError } from './errors.js';
import { checkOptions, durationOption, numberOption, opt, signalOption } from './options.js';
/**
 * How a connector retries. `retry: false` turns retrying off.
 *
 * @example
 * ```ts
 * // A collector that keeps trying through any outage, at most 30 s apart:
 * rabbitmqSource({ queue: 'orders', retry: { retries: Infinity } });
 * ```
 */
export interface RetryOptions {
  /**
   * Retries after the first failure, per outage (the count starts afresh once the connector is
   * healthy again). Default 10; `Infinity` retries for ever, as the `manifold` command does.
   */
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
  // With retries: Infinity the attempt count grows without bound: factor ** attempt reaches Infinity, and 0 * Infinity is NaN.
  if (retry.minTimeoutMs === 0) return 0;
  const base = retry.minTimeoutMs * retry.factor ** Math.max(0, attempt - 1);
  return Math.min(Math.round(base * (1 + Math.random())), retry.maxTimeoutMs);
}

/** Wraps a final failure into the ManifoldError the stream is destroyed with. */
export function finalError(what: string, error: unknown, attempts: number): Error {
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

/** The keys of {@link RetryingOptions}. */
export const RETRYING_KEYS = ['retry', 'what', 'forwardEvents', 'signal', 'highWaterMark'] as const;

/**
 * `retry` as a URI key takes text: `false` (no retry), a number of retries, or `forever`;
 * anything else comes back as it is, for the check to refuse.
 */
function retryText(text: string): unknown {
  const t = text.trim().toLowerCase();
  if (['false', 'no', 'off'].includes(t)) return false;
  if (t === 'forever') return { retries: Infinity };
  if (/^\d+$/.test(t)) return { retries: Number(t) };
  return text;
}

const RETRY_SCHEMA = {
  anyOf: [
    { const: false },
    { type: 'string', pattern: '^\\s*(\\d+|forever|false|no|off)\\s*$' },
    {
      type: 'object',
      additionalProperties: false,
      properties: {
        retries: { description: 'Retries per outage; .inf for ever.', type: 'number', minimum: 0 },
        minTimeoutMs: { description: 'Delay before the first retry, in milliseconds.', type: 'number', minimum: 0 },
        maxTimeoutMs: { description: 'Largest delay between two retries, in milliseconds.', type: 'number', minimum: 0 },
        factor: { description: 'Growth of the delay per retry.', type: 'number', minimum: 1 },
      },
    },
  ],
};

/**
 * The `retry` option as connectors declare it (see `defineOptions`): validated
 * here so a bad field is reported against the factory (`kafkaSource:
 * options.retry.retries ...`), copied so the caller's object is not kept.
 * Its URI and pipeline-file key is `retry`: `?retry=5`, `?retry=forever`,
 * `?retry=false`, or in a pipeline file the object itself.
 */
export function retryOption(doc: string) {
  return opt.custom<RetryOptions | false>(doc, {
    type: 'RetryOptions | false',
    defaultText: '10 retries, 200 ms to 30 s apart (the `manifold` command: for ever)',
    cli: 'retry',
    parse: retryText,
    schema: RETRY_SCHEMA,
    check: (value, fail, where) => {
      if (value !== false && (value === null || typeof value !== 'object' || Array.isArray(value))) {
        // Text only comes from a URI or a pipeline file (see retryText): say what the command takes.
        if (typeof value === 'string') return fail('false, a number of retries or forever');
        return fail('false or an object of retry settings (retries, minTimeoutMs, maxTimeoutMs, factor, signal)');
      }
      resolveRetry(where, value as RetryOptions | false);
      return value === false ? false : { ...(value as RetryOptions) };
    },
  });
}
