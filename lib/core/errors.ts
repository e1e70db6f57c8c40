/**
 * The one error class of manifold, and the classification of any error as
 * transient (retry it) or fatal (stop and say why).
 */

/** The closed list of error codes. Callers match on `code`, never on message text. */
export const ErrorCodes = {
  /** An option is missing, has the wrong type, or conflicts with another. Never retried. */
  INVALID_OPTION: 'MANIFOLD_ERR_INVALID_OPTION',
  /** A record could not be processed (not JSON, too large, malformed). Names the record. */
  INVALID_MESSAGE: 'MANIFOLD_ERR_INVALID_MESSAGE',
  /** A record is larger than a configured or system limit. */
  MESSAGE_TOO_LARGE: 'MANIFOLD_ERR_MESSAGE_TOO_LARGE',
  /** A connection could not be made or was lost. Retryable. */
  CONNECTION: 'MANIFOLD_ERR_CONNECTION',
  /** The remote system refused the credentials or the permission. Never retried. */
  AUTH: 'MANIFOLD_ERR_AUTH',
  /** A stream, bucket, queue, topic or exchange does not exist. Never retried. */
  NOT_FOUND: 'MANIFOLD_ERR_NOT_FOUND',
  /** The remote system asked us to slow down. Retryable. */
  THROTTLED: 'MANIFOLD_ERR_THROTTLED',
  /** Every retry was used up; `cause` is the last failure. */
  RETRIES_EXHAUSTED: 'MANIFOLD_ERR_RETRIES_EXHAUSTED',
  /** A graceful close did not finish within its timeout. */
  CLOSE_TIMEOUT: 'MANIFOLD_ERR_CLOSE_TIMEOUT',
  /** The operation was aborted through a signal or a second shutdown signal. */
  ABORTED: 'MANIFOLD_ERR_ABORTED',
  /** The sink's output is gone (EPIPE, closed socket); the message was not delivered. */
  OUTPUT_CLOSED: 'MANIFOLD_ERR_OUTPUT_CLOSED',
  /** A sink could not deliver a message for a reason of the remote system. */
  DELIVERY: 'MANIFOLD_ERR_DELIVERY',
  /**
   * A message could not be delivered within its attempts and there is no dead-letter sink: flow() fails with it,
   * naming the record's position and the last cause. `details.lost` says whether the source can deliver it again.
   */
  UNDELIVERED: 'MANIFOLD_ERR_UNDELIVERED',
  /** A local file or disk operation failed. */
  IO: 'MANIFOLD_ERR_IO',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** What a {@link ManifoldError} is built from. Extra facts (shard, offset, queue) go in `details`. */
export interface ManifoldErrorInit {
  code: ErrorCode;
  /** Whether trying again could succeed. Defaults to `false`. */
  retryable?: boolean;
  cause?: unknown;
  /** System facts kept as properties on the error (status, shardId, queue, ...). */
  details?: Record<string, unknown>;
}

/**
 * The error every manifold stream fails with: a stable `code`, whether it is
 * `retryable`, and the underlying `cause`.
 *
 * @example
 * ```ts
 * stream.on('error', (err) => {
 *   if (err instanceof ManifoldError && err.code === ErrorCodes.NOT_FOUND) { ... }
 * });
 * ```
 */
export class ManifoldError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  [key: string]: unknown;

  constructor(message: string, init: ManifoldErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.retryable = init.retryable ?? false;
    if (init.details) {
      for (const [key, value] of Object.entries(init.details)) {
        if (!(key in this)) this[key] = value;
      }
    }
  }

  override get name(): string {
    return 'ManifoldError';
  }
}

// Node system error codes that describe a network or peer condition that may clear by itself.
const TRANSIENT_SYSTEM_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTCONN',
  'ESOCKETTIMEDOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

// AWS SDK v3 error names (err.name) that are throttling or transient service faults.
const TRANSIENT_AWS_NAMES = new Set([
  'ThrottlingException',
  'Throttling',
  'ThrottledException',
  'TooManyRequestsException',
  'ProvisionedThroughputExceededException',
  'LimitExceededException',
  'RequestLimitExceeded',
  'SlowDown',
  'InternalFailure',
  'InternalError',
  'InternalServerError',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'KMSThrottlingException',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
]);

// AMQP reply codes (amqplib puts them on err.code) that a reconnect can get past:
// 320 connection-forced (broker shutdown), 501 frame-error, 504 channel-error, 505 unexpected-frame, 506 resource-error.
const TRANSIENT_AMQP_CODES = new Set([320, 501, 504, 505, 506]);

function prop(value: unknown, key: string): unknown {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return undefined;
  return (value as Record<string, unknown>)[key];
}

/**
 * Whether an error describes a transient condition (network, throttling, 5xx,
 * closed connection) worth retrying. Never throws, whatever it is given.
 *
 * Order of evidence: an explicit boolean `retryable` property (ManifoldError,
 * Kafka client errors), AWS SDK retry hints and status codes, AMQP reply codes,
 * Node system error codes, then the `cause` chain. Anything unknown is fatal:
 * retrying a bug forever hides it.
 */
export function isRetryable(error: unknown): boolean {
  try {
    return classify(error, 0);
    /* c8 ignore next 3 -- only reachable with hostile getters (Proxy traps that throw) */
  } catch {
    return false;
  }
}

function classify(error: unknown, depth: number): boolean {
  if (depth > 8 || error === null || typeof error !== 'object') return false;
  const name = prop(error, 'name');
  if (name === 'AbortError') return false;

  const explicit = prop(error, 'retryable');
  if (typeof explicit === 'boolean') return explicit;
  const canRetry = prop(error, 'canRetry');
  if (typeof canRetry === 'boolean') return canRetry;

  // AWS SDK v3: $retryable is set for throttling and transient faults; $metadata carries the status.
  if (prop(error, '$retryable') !== undefined) return true;
  if (typeof name === 'string' && TRANSIENT_AWS_NAMES.has(name)) return true;
  const status = prop(prop(error, '$metadata'), 'httpStatusCode') ?? prop(error, 'statusCode') ?? prop(error, 'status');
  if (typeof status === 'number') {
    if (status >= 500 || status === 429 || status === 408) return true;
    if (status >= 400) return false;
  }

  const code = prop(error, 'code');
  if (typeof code === 'number') return TRANSIENT_AMQP_CODES.has(code);
  if (typeof code === 'string' && TRANSIENT_SYSTEM_CODES.has(code)) return true;

  const cause = prop(error, 'cause');
  if (cause !== undefined && cause !== error) return classify(cause, depth + 1);
  if (error instanceof AggregateError) return error.errors.some((e) => classify(e, depth + 1));
  return false;
}

/** The message of anything thrown, for composing a clearer message around it. */
export function describe(error: unknown): string {
  try {
    if (error instanceof Error) return error.message || error.name;
    return String(error);
    /* c8 ignore next 3 -- only reachable with objects whose toString throws */
  } catch {
    return 'unknown error';
  }
}

/** `error` as an Error (wrapping non-Error throws so stack and `cause` work). */
export function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(describe(error));
}

/**
 * A URL with any password replaced by `***`, for messages, events and logs.
 * Strings that are not URLs come back unchanged.
 */
export function redactUrl(url: string | URL): string {
  try {
    const parsed = new URL(String(url));
    if (parsed.password) parsed.password = '***';
    for (const key of [...parsed.searchParams.keys()]) {
      if (/pass|secret|token|key$/i.test(key)) parsed.searchParams.set(key, '***');
    }
    return parsed.toString();
  } catch {
    return String(url).replace(/\/\/([^:/@]+):[^@/]*@/, '//$1:***@');
  }
}
