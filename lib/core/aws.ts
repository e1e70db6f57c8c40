/**
 * What every AWS-backed connector does with its connection options: take a
 * ready client, or validate the settings to build one from; and the timeouts
 * every AWS call goes through, so that a request nobody answers fails (and is
 * retried) instead of hanging a sink or a shard for ever.
 */
import { NodeHttp2Handler, NodeHttpHandler } from '@smithy/node-http-handler';
import { ErrorCodes, ManifoldError, describe, isRetryable, toError } from './errors.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS, MAX_TIMER_MS } from './aws-options.js';
import { conflictingOptions, invalidOption, numberOption, stringOption } from './options.js';

export { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS };

/** The timeout options of AWS connectors. */
export interface AwsTimeoutOptions {
  /**
   * Longest one AWS call may take, in milliseconds, before it is aborted and
   * fails with a retryable CONNECTION error (which the connector's `retry`
   * retries). Applies to clients you pass too (through an abort signal).
   */
  requestTimeoutMs?: number;
  /**
   * Longest establishing a connection may take, in milliseconds, for the
   * client the connector builds (set it on the handler of a client you pass).
   */
  connectTimeoutMs?: number;
}

/** Validated timeouts. */
export interface AwsTimeouts {
  requestTimeoutMs: number;
  connectTimeoutMs: number;
}

/** Connection options shared by AWS connectors: a client, or what to build one from. */
export interface AwsConnection<C, Credentials> extends AwsTimeoutOptions {
  client?: C;
  region?: string;
  endpoint?: string;
  credentials?: Credentials;
}

/** The settings for a client we build (spread into the SDK client's config). */
export interface AwsClientSettings<Credentials> {
  region?: string;
  endpoint?: string;
  credentials?: Credentials;
  requestHandler: NodeHttpHandler | NodeHttp2Handler;
  /** Our own retry (each connector's `retry`) decides; SDK retries underneath would multiply the attempts and the time a call can take. */
  maxAttempts: 1;
}

/** How the handler of a client we build times out. */
export interface HandlerKind {
  /** Speak HTTP/2 to `https://` endpoints (Kinesis: SubscribeToShard needs it). Plain `http://` always gets HTTP/1.1. */
  http2?: boolean;
  /**
   * Time out a request that sends and receives nothing for `requestTimeoutMs`
   * (a socket idle timeout) rather than one that takes that long in all: for
   * uploads, whose length grows with their size.
   */
  idle?: boolean;
}

/**
 * Validates `requestTimeoutMs` and `connectTimeoutMs` (`where` names the
 * factory), filling `defaults`.
 */
export function awsTimeouts(where: string, o: AwsTimeoutOptions, defaults: Partial<AwsTimeouts> = {}): AwsTimeouts {
  const rule = { min: 1, max: MAX_TIMER_MS, unit: 'milliseconds' };
  return {
    requestTimeoutMs: numberOption(where, 'requestTimeoutMs', o.requestTimeoutMs, defaults.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS, rule),
    connectTimeoutMs: numberOption(where, 'connectTimeoutMs', o.connectTimeoutMs, defaults.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, rule),
  };
}

/**
 * The request handler of a client we build, with the timeouts. A plain
 * `http://` endpoint (a local server) gets HTTP/1.1, which is all such servers
 * speak; `https://` (or AWS's own endpoint) keeps what the SDK would use,
 * HTTP/1.1 with a keep-alive agent, or HTTP/2 with `kind.http2`.
 */
export function awsRequestHandler(endpoint: string | undefined, timeouts: AwsTimeouts, kind: HandlerKind = {}): NodeHttpHandler | NodeHttp2Handler {
  const plain = endpoint?.startsWith('http://') ?? false;
  if (kind.http2 && !plain) {
    // As the SDK's default Kinesis handler (one session per request), plus the timeout: no byte for requestTimeoutMs ends the request.
    return new NodeHttp2Handler({ requestTimeout: timeouts.requestTimeoutMs, disableConcurrentStreams: true });
  }
  return new NodeHttpHandler({
    connectionTimeout: timeouts.connectTimeoutMs,
    // Without throwOnRequestTimeout the handler only logs that the time is up, and the request goes on waiting.
    ...(kind.idle ? { socketTimeout: timeouts.requestTimeoutMs } : { requestTimeout: timeouts.requestTimeoutMs, throwOnRequestTimeout: true }),
    httpsAgent: { keepAlive: true },
  });
}

/**
 * Validates `client` (an object with `send`, described by `what` in errors,
 * and alone: region, endpoint, credentials and connectTimeoutMs belong to it)
 * or the settings; returns the client, or the settings to build one (with a
 * handler that has the timeouts, and SDK retries off), and the timeouts.
 */
export function awsConnection<C, Credentials>(
  where: string,
  o: AwsConnection<C, Credentials>,
  what: string,
  defaults: Partial<AwsTimeouts> = {},
  kind: HandlerKind = {},
): ({ client: C } | { settings: AwsClientSettings<Credentials> }) & { timeouts: AwsTimeouts } {
  const timeouts = awsTimeouts(where, o, defaults);
  if (o.client !== undefined) {
    if (typeof (o.client as { send?: unknown } | null)?.send !== 'function') invalidOption(where, 'client', what, o.client);
    for (const key of ['region', 'endpoint', 'credentials', 'connectTimeoutMs'] as const) {
      if (o[key] !== undefined) conflictingOptions(where, 'client', key, 'cannot be combined: configure the client you pass instead');
    }
    return { client: o.client, timeouts };
  }
  const region = stringOption(where, 'region', o.region);
  const endpoint = stringOption(where, 'endpoint', o.endpoint);
  if (endpoint !== undefined && !/^https?:\/\//.test(endpoint)) invalidOption(where, 'endpoint', 'an http:// or https:// URL', endpoint);
  const credentials: unknown = o.credentials;
  if (credentials !== undefined && (credentials === null || (typeof credentials !== 'object' && typeof credentials !== 'function'))) {
    invalidOption(where, 'credentials', 'AWS credentials ({ accessKeyId, secretAccessKey }) or a credential provider', '(hidden)');
  }
  const settings: AwsClientSettings<Credentials> = { requestHandler: awsRequestHandler(endpoint, timeouts, kind), maxAttempts: 1 };
  if (region !== undefined) settings.region = region;
  if (endpoint !== undefined) settings.endpoint = endpoint;
  if (o.credentials !== undefined) settings.credentials = o.credentials;
  return { settings, timeouts };
}

/** How {@link awsCall} runs one call. */
export interface AwsCallOptions {
  /** The call, for messages: `kinesisSink: PutRecords to "orders"`. */
  what: string;
  /** Longest the call may take, response read included. */
  timeoutMs: number;
  /** Stops the call (close, destroy): that is an abort, not a timeout, and fails as the SDK fails it. */
  signal?: AbortSignal | undefined;
  /** The option that sets `timeoutMs`, named in the error. Default `'requestTimeoutMs'`. */
  option?: string;
}

/**
 * Runs one AWS call, `call(abortSignal)`, which passes the signal to
 * `client.send(command, { abortSignal })`. The signal fires after `timeoutMs`
 * (or when `signal` does), so even a client whose handler has no timeout gives
 * up; the call then fails with a retryable CONNECTION ManifoldError naming
 * `what`, the time and the option. A client that ignored the signal is not
 * waited for. A timeout of the handler of a client we built becomes the same
 * error.
 *
 * @example
 * ```ts
 * const out = await awsCall({ what: 'kinesisSink: PutRecords to "orders"', timeoutMs: 30_000, signal },
 *   (abortSignal) => client.send(new PutRecordsCommand(input), { abortSignal }));
 * ```
 */
export async function awsCall<T>(o: AwsCallOptions, call: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
  const timeout = new AbortController();
  // AbortSignal.any, not a listener we remove when the call returns: an event stream (SubscribeToShard)
  // goes on after send() resolved, and must still stop when `signal` aborts.
  const abortSignal = o.signal ? AbortSignal.any([o.signal, timeout.signal]) : timeout.signal;
  const option = o.option ?? 'requestTimeoutMs';
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      const error = new ManifoldError(`${o.what} got no response within ${o.timeoutMs} ms and was aborted; raise options.${option} if the service is that slow`, {
        code: ErrorCodes.CONNECTION,
        retryable: true,
        details: { timeoutMs: o.timeoutMs, option },
      });
      timeout.abort(error);
      reject(error);
    }, o.timeoutMs);
  });
  try {
    return await Promise.race([(async () => call(abortSignal))(), timedOut]);
  } catch (error) {
    if (o.signal?.aborted) throw error;
    if (timeout.signal.aborted) throw timeout.signal.reason;
    if ((error as { name?: unknown } | null)?.name === 'TimeoutError') {
      const connecting = /connect/i.test(describe(error));
      throw new ManifoldError(
        `${o.what} timed out: ${describe(error)}; raise options.${connecting ? 'connectTimeoutMs' : option} (or the timeouts of the client you pass) if the service is that slow`,
        { code: ErrorCodes.CONNECTION, retryable: true, cause: error, details: { option: connecting ? 'connectTimeoutMs' : option } },
      );
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** The SDK's error name (`ResourceNotFoundException`, `NoSuchBucket`, ...), if any. */
export function awsErrorName(error: unknown): string | undefined {
  const name = (error as { name?: unknown } | null)?.name;
  return typeof name === 'string' ? name : undefined;
}

const NOT_FOUND = new Set(['ResourceNotFoundException', 'NoSuchBucket', 'NotFound']);
const REFUSED = new Set([
  'AccessDeniedException',
  'AccessDenied',
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'ExpiredTokenException',
  'ExpiredToken',
  'InvalidAccessKeyId',
  'InvalidClientTokenId',
  'SignatureDoesNotMatch',
]);
const THROTTLED = new Set([
  'ProvisionedThroughputExceededException',
  'LimitExceededException',
  'ThrottlingException',
  'Throttling',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'SlowDown',
]);
// Server-side faults that AWS documents as safe to retry.
const TRANSIENT = new Set(['InternalServerError', 'InternalFailure', 'ServiceUnavailable', 'InternalError', 'KMSThrottlingException']);

/** Where an AWS call failed, for {@link awsError}. */
export interface AwsErrorContext {
  /** The factory: `kinesisSource`, `dynamoLeases`, `s3Uploader`. */
  where: string;
  /** The call or step: `GetRecords`, `uploading x.gz`. */
  operation: string;
  /** What it was called on, as messages name it: `stream "orders"`, `lease table "leases"`. */
  resource: string;
  /** What a not-found means and what to do: `stream "orders" (or its consumer) does not exist`. */
  missing: string;
  /** System facts kept on the error (shardId, key, ...). */
  details?: Record<string, unknown>;
}

/**
 * The one mapping of AWS SDK failures to ManifoldError, for every AWS connector:
 * not found and refused (credentials, permissions) are fatal, throttling and
 * transient faults retryable, an abort stays an abort.
 */
export function awsError(context: AwsErrorContext, error: unknown): Error {
  if (error instanceof ManifoldError) return error;
  const err = toError(error);
  if (err.name === 'AbortError') return err;
  const name = awsErrorName(err);
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  const { where, operation, resource } = context;
  const details = { operation, ...(status === undefined ? {} : { status }), ...context.details };
  // The service's own error code leads its text ('InternalFailure: try again'): its message alone often does not name it.
  const text = describe(err);
  const said = '$metadata' in err && name !== undefined && name !== 'Error' && !text.includes(name) ? `${name}: ${text}` : text;
  if ((name !== undefined && NOT_FOUND.has(name)) || (status === 404 && name !== 'NoSuchKey')) {
    return new ManifoldError(`${where}: ${operation} failed: ${context.missing}: ${said}`, { code: ErrorCodes.NOT_FOUND, cause: err, details });
  }
  if ((name !== undefined && REFUSED.has(name)) || status === 403) {
    return new ManifoldError(`${where}: ${operation} on ${resource} was refused (${name ?? status}): check the credentials and IAM permissions`, { code: ErrorCodes.AUTH, cause: err, details });
  }
  if ((name !== undefined && THROTTLED.has(name)) || status === 429) {
    return new ManifoldError(`${where}: ${operation} on ${resource} was throttled (${name ?? status})`, { code: ErrorCodes.THROTTLED, retryable: true, cause: err, details });
  }
  const retryable = isRetryable(err) || (name !== undefined && TRANSIENT.has(name));
  return new ManifoldError(`${where}: ${operation} on ${resource} failed: ${said}`, {
    code: retryable ? ErrorCodes.CONNECTION : ErrorCodes.DELIVERY,
    retryable,
    cause: err,
    details,
  });
}
