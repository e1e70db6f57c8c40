/**
 * What every AWS-backed connector does with its connection options: take a
 * ready client, or validate the settings to build one from; and the timeouts
 * every AWS call goes through, so that a request nobody answers fails (and is
 * retried) instead of hanging a sink or a shard for ever.
 */
import type { SecureClientSessionOptions } from 'node:http2';
import { Agent as HttpsAgent, type AgentOptions, type RequestOptions } from 'node:https';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { NodeHttp2Handler, NodeHttpHandler } from '@smithy/node-http-handler';
import { ErrorCodes, ManifoldError, describe, isRetryable, toError } from './errors.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS, MAX_TIMER_MS } from './aws-options.js';
import { conflictingOptions, invalidOption, numberOption, stringOption } from './options.js';
import { tlsConnectOptions, tlsFailure, tlsReason, whenServerAccepts, type TlsOptions } from './tls.js';

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
  /** TLS of the client we build (a private CA, a client certificate), validated: files read at every new connection. */
  tls?: TlsOptions | undefined;
}

/** The request handler of a client we build. */
export type AwsRequestHandler = NodeHttpHandler | NodeHttp2Handler | AlpnHandler;

/** The settings for a client we build (spread into the SDK client's config). */
export interface AwsClientSettings<Credentials> {
  region?: string;
  endpoint?: string;
  credentials?: Credentials;
  requestHandler: AwsRequestHandler;
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

/** Marks an error a TLS socket met before the server accepted the handshake (see {@link watchHandshake}). */
const HANDSHAKING = Symbol('manifold.tlsHandshaking');

/**
 * Watches a TLS socket of a client we built until the server has accepted the handshake. With TLS 1.3 the client
 * sees the handshake complete before the server has checked its certificate: a server refusing it sends an alert
 * that a reset often loses, or just hangs up. So with TLS 1.3 the handshake counts as accepted at the server's
 * first session ticket (sent once it verified the client). An error before then is marked; an end before then
 * becomes an error, so that the request fails as a TLS failure ({@link tlsFailure}'s `handshaking`) rather than
 * as a "socket hang up" that would be retried for ever.
 */
function watchHandshake(socket: TLSSocket): TLSSocket {
  let accepted = false;
  whenServerAccepts(socket, () => (accepted = true));
  socket.on('error', (error: unknown) => {
    if (!accepted && error !== null && typeof error === 'object') Object.defineProperty(error, HANDSHAKING, { value: true });
  });
  socket.once('end', () => {
    if (accepted || socket.destroyed) return;
    // Synchronously, before the HTTP client's own 'end' listener reports a bare "socket hang up".
    socket.emit('error', Object.assign(new Error('socket disconnected before secure TLS connection was established'), { code: 'ECONNRESET' }));
  });
  return socket;
}

/** The failure of a request of a client we built, as MANIFOLD_ERR_TLS naming the host and the reason when it is a TLS one. */
function handlerError(where: string, request: { hostname: string; port?: number | undefined; protocol: string }, error: unknown): unknown {
  if (error instanceof ManifoldError || (error as { name?: unknown } | null)?.name === 'AbortError') return error;
  const host = `${request.hostname}:${request.port ?? (request.protocol === 'http:' ? 80 : 443)}`;
  return tlsFailure(where, host, error, (error as Record<symbol, unknown> | null)?.[HANDSHAKING] === true) ?? error;
}

/**
 * The HTTPS agent of a client we build with `tls`: its settings, files read at every new connection (so a
 * certificate replaced on disk is used by the next one), and no TLS session cache (a resumed session would
 * not present the new client certificate).
 */
class TlsAgent extends HttpsAgent {
  readonly #where: string;
  readonly #tls: TlsOptions;

  constructor(where: string, tls: TlsOptions, options: AgentOptions) {
    super({ ...options, maxCachedSessions: 0 });
    this.#where = where;
    this.#tls = tls;
  }

  override createConnection(options: RequestOptions, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    let merged: RequestOptions;
    try {
      merged = { ...options, ...tlsConnectOptions(this.#where, this.#tls) };
    } catch (error) {
      // A certificate file that cannot be read: this request fails with that error (INVALID_OPTION, not retried).
      callback?.(toError(error), undefined as unknown as Duplex);
      return undefined;
    }
    const socket = super.createConnection(merged, callback);
    if (socket && 'encrypted' in socket) watchHandshake(socket as TLSSocket);
    return socket;
  }
}

/** NodeHttpHandler whose TLS failures are MANIFOLD_ERR_TLS. */
class TlsHttpHandler extends NodeHttpHandler {
  readonly #where: string;

  constructor(where: string, options: ConstructorParameters<typeof NodeHttpHandler>[0]) {
    super(options);
    this.#where = where;
  }

  override async handle(...args: Parameters<NodeHttpHandler['handle']>): ReturnType<NodeHttpHandler['handle']> {
    const [request] = args;
    try {
      return await super.handle(...args);
    } catch (error) {
      throw handlerError(this.#where, request, error);
    }
  }
}

/** NodeHttp2Handler whose TLS failures are MANIFOLD_ERR_TLS. */
class TlsHttp2Handler extends NodeHttp2Handler {
  readonly #where: string;

  constructor(where: string, options: ConstructorParameters<typeof NodeHttp2Handler>[0]) {
    super(options);
    this.#where = where;
  }

  override async handle(...args: Parameters<NodeHttp2Handler['handle']>): ReturnType<NodeHttp2Handler['handle']> {
    const [request] = args;
    try {
      return await super.handle(...args);
    } catch (error) {
      throw handlerError(this.#where, request, error);
    }
  }
}

/** What an ALPN probe found. */
type Probe = 'h2' | 'http/1.1' | 'failed' | 'timeout';

/** `promise`, or a rejection with an AbortError as soon as `signal` aborts. */
async function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  const aborted = (): Error => Object.assign(new Error('Request aborted'), { name: 'AbortError' });
  if (signal.aborted) throw aborted();
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_resolve, reject) => {
        onAbort = () => reject(aborted());
        signal.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
  } finally {
    signal.removeEventListener('abort', onAbort!);
  }
}

/**
 * HTTP/2 where the server offers it by ALPN, as RFC 7540 requires of HTTP/2 over TLS, else HTTP/1.1: for an
 * `https://` endpoint of a Kinesis-compatible server, which may not speak HTTP/2 (or behind a TLS terminator that
 * negotiates no protocol). One TLS connection per host and port asks, once.
 */
class AlpnHandler {
  // Not "h2": the SDK would then give every request an :authority header, which HTTP/1.1 refuses (handle() adds it for HTTP/2).
  readonly metadata = { handlerProtocol: 'alpn' };
  readonly #h1: NodeHttpHandler;
  readonly #h2: NodeHttp2Handler;
  readonly #where: string;
  readonly #tls: TlsOptions | undefined;
  /** The longest a probe may take: the connect timeout, or the request timeout when that is shorter. */
  readonly #probeTimeoutMs: number;
  readonly #protocols = new Map<string, Promise<Probe>>();

  constructor(where: string, h1: NodeHttpHandler, h2: NodeHttp2Handler, tls: TlsOptions | undefined, timeouts: AwsTimeouts) {
    this.#where = where;
    this.#h1 = h1;
    this.#h2 = h2;
    this.#tls = tls;
    this.#probeTimeoutMs = Math.min(timeouts.connectTimeoutMs, timeouts.requestTimeoutMs);
  }

  /** What the server negotiates by ALPN. */
  #probe(hostname: string, port: number): Promise<Probe> {
    const host = hostname.replace(/^\[|\]$/g, '');
    return new Promise((resolve) => {
      let socket: TLSSocket;
      try {
        socket = tlsConnect({ host, port, servername: isIP(host) ? '' : host, ALPNProtocols: ['h2', 'http/1.1'], ...(this.#tls ? tlsConnectOptions(this.#where, this.#tls) : {}) });
      } catch {
        resolve('failed');
        return;
      }
      const done = (probe: Probe): void => {
        clearTimeout(timer);
        socket.destroy();
        resolve(probe);
      };
      const timer = setTimeout(() => done('timeout'), this.#probeTimeoutMs);
      socket.once('secureConnect', () => done(socket.alpnProtocol === 'h2' ? 'h2' : 'http/1.1'));
      socket.once('error', () => done('failed'));
    });
  }

  async handle(...args: Parameters<NodeHttp2Handler['handle']>): ReturnType<NodeHttp2Handler['handle']> {
    const [request, options] = args;
    const port = request.port ?? 443;
    const key = `${request.hostname}:${port}`;
    let pending = this.#protocols.get(key);
    if (!pending) {
      pending = this.#probe(request.hostname, port);
      this.#protocols.set(key, pending);
      // Only an answer is remembered: after a failure or a timeout the next request asks again.
      void pending.then((probe) => (probe === 'failed' || probe === 'timeout') && this.#protocols.delete(key));
    }
    const probe = await untilAborted(pending, options?.abortSignal as AbortSignal | undefined);
    if (probe === 'timeout') {
      // As the handlers' own connection timeout says it.
      throw Object.assign(new Error(`connecting to ${key} timed out after ${this.#probeTimeoutMs} ms (no TLS handshake)`), { name: 'TimeoutError' });
    }
    if (probe === 'h2') {
      // What the SDK does for a handler that says h2 (this one cannot say which it will be).
      const headers = { ...request.headers };
      delete headers['host'];
      headers[':authority'] ??= request.hostname + (request.port ? `:${request.port}` : '');
      return this.#h2.handle(Object.assign(Object.create(Object.getPrototypeOf(request) as object) as typeof request, request, { headers }), options);
    }
    // HTTP/1.1, or the probe failed: the request then fails with the real reason (MANIFOLD_ERR_TLS when it is one).
    return this.#h1.handle(request, options);
  }

  updateHttpClientConfig(): void {}

  httpHandlerConfigs(): Record<string, never> {
    return {};
  }

  destroy(): void {
    this.#h1.destroy();
    this.#h2.destroy();
  }
}

/**
 * The request handler of a client we build, with the timeouts. A plain
 * `http://` endpoint (a local server) gets HTTP/1.1, which is all such servers
 * speak; `https://` (or AWS's own endpoint) keeps what the SDK would use,
 * HTTP/1.1 with a keep-alive agent, or HTTP/2 with `kind.http2`. Over TLS, `tls`
 * (a private CA, a client certificate) is used, its files read at every new
 * connection, and a failed handshake is MANIFOLD_ERR_TLS naming `where`.
 */
export function awsRequestHandler(endpoint: string | undefined, timeouts: AwsTimeouts, kind: HandlerKind = {}, where = 'aws', tls?: TlsOptions): AwsRequestHandler {
  const plain = endpoint?.startsWith('http://') ?? false;
  if (kind.http2 && !plain) {
    const h2 = http2Handler(where, timeouts, tls);
    if (endpoint === undefined) return h2;
    return new AlpnHandler(where, http1Handler(where, timeouts, kind, tls), h2, tls, timeouts);
  }
  if (plain) return new NodeHttpHandler({ ...http1Options(timeouts, kind), httpsAgent: { keepAlive: true } });
  return http1Handler(where, timeouts, kind, tls);
}

/** The HTTP/2 handler of a client we build: the timeout, one session per request, `tls`. */
function http2Handler(where: string, timeouts: AwsTimeouts, tls: TlsOptions | undefined): NodeHttp2Handler {
  const connectOptions: SecureClientSessionOptions = {
    // Called for every session, so the files are read at every new connection.
    createConnection: (authority: URL): Duplex => {
      const host = authority.hostname.replace(/^\[|\]$/g, '');
      const settings = tls ? tlsConnectOptions(where, tls) : {};
      return watchHandshake(
        tlsConnect({
          host,
          port: Number(authority.port) || 443,
          // As http2.connect's own: SNI is the host name, none for an IP address; h2 by ALPN.
          servername: isIP(host) ? '' : host,
          ALPNProtocols: ['h2'],
          ...settings,
        }),
      );
    },
  };
  // As the SDK's default Kinesis handler (one session per request), plus the timeout: no byte for requestTimeoutMs ends the request.
  return new TlsHttp2Handler(where, {
    requestTimeout: timeouts.requestTimeoutMs,
    disableConcurrentStreams: true,
    nodeHttp2ConnectOptions: connectOptions,
  });
}

function http1Options(timeouts: AwsTimeouts, kind: HandlerKind) {
  return {
    connectionTimeout: timeouts.connectTimeoutMs,
    // Without throwOnRequestTimeout the handler only logs that the time is up, and the request goes on waiting.
    ...(kind.idle ? { socketTimeout: timeouts.requestTimeoutMs } : { requestTimeout: timeouts.requestTimeoutMs, throwOnRequestTimeout: true }),
  };
}

/** The HTTP/1.1 handler of a client we build for an https:// endpoint: the timeouts, `tls`. */
function http1Handler(where: string, timeouts: AwsTimeouts, kind: HandlerKind, tls: TlsOptions | undefined): NodeHttpHandler {
  const options = http1Options(timeouts, kind);
  // With tls, an agent of ours rather than options for the handler's: with options, a request sending `Expect: 100-continue`
  // (S3 uploads) would get a fresh agent without them. (The handler then sends such a body without waiting for 100 Continue.)
  const httpsAgent = tls ? new TlsAgent(where, tls, { keepAlive: true, maxSockets: 50 }) : { keepAlive: true };
  return new TlsHttpHandler(where, { ...options, httpsAgent });
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
    for (const key of ['region', 'endpoint', 'credentials', 'connectTimeoutMs', 'tls'] as const) {
      if (o[key] !== undefined) conflictingOptions(where, 'client', key, 'cannot be combined: configure the client you pass instead');
    }
    return { client: o.client, timeouts };
  }
  const region = stringOption(where, 'region', o.region);
  const endpoint = stringOption(where, 'endpoint', o.endpoint);
  if (endpoint !== undefined && !/^https?:\/\//.test(endpoint)) invalidOption(where, 'endpoint', 'an http:// or https:// URL', endpoint);
  // Plaintext where TLS was asked for is never silent.
  if (o.tls !== undefined && endpoint?.startsWith('http://')) {
    conflictingOptions(where, 'tls', 'endpoint', `cannot be combined: the endpoint ${endpoint} is plaintext; write https:// to use TLS`);
  }
  const credentials: unknown = o.credentials;
  if (credentials !== undefined && (credentials === null || (typeof credentials !== 'object' && typeof credentials !== 'function'))) {
    invalidOption(where, 'credentials', 'AWS credentials ({ accessKeyId, secretAccessKey }) or a credential provider', '(hidden)');
  }
  const settings: AwsClientSettings<Credentials> = { requestHandler: awsRequestHandler(endpoint, timeouts, kind, where, o.tls), maxAttempts: 1 };
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
  const { where, operation, resource } = context;
  // A client passed in meeting a certificate it cannot verify (ours name the host already: see awsRequestHandler).
  const tls = tlsReason(err);
  if (tls !== undefined) {
    return new ManifoldError(`${where}: ${operation} on ${resource} failed: TLS: ${tls}`, { code: ErrorCodes.TLS, cause: err, details: { operation, reason: tls, ...context.details } });
  }
  if (err.name === 'CredentialsProviderError') {
    // No request went out: the SDK found no credentials anywhere it looks.
    return new ManifoldError(
      `${where}: ${operation} on ${resource} failed: no AWS credentials found (${describe(err)}): give them (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, a role, or the credentials option)`,
      { code: ErrorCodes.AUTH, cause: err, details: { operation, ...context.details } },
    );
  }
  const name = awsErrorName(err);
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
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
