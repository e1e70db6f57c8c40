/**
 * What the Kafka source and sink share: the broker list check, the client's connection settings (TLS
 * files read at every connect, SASL including Amazon MSK IAM), and the translation of
 * @platformatic/kafka errors into ManifoldErrors that say what failed and whether a retry can help.
 * Not part of the public API.
 */
import type { EventEmitter } from 'node:events';
import { TLSSocket, createSecureContext, type ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { saslOAuthBearer, saslPlain, saslScramSha, type SASLCustomAuthenticator, type SASLOptions } from '@platformatic/kafka';
import { ErrorCodes, ManifoldError, describe, type ErrorCode } from '../core/errors.js';
import { invalidOption, type ResolvedOptions } from '../core/options.js';
import { tlsConnectOptions, tlsFailure, tlsReason, type TlsOptions } from '../core/tls.js';
import { mskIamTokenProvider, mskRegion } from './msk-iam.js';
import type { kafkaConnection } from './options.js';

export type { KafkaSaslOptions } from './options.js';

export interface ResolvedConnection {
  brokers: string[];
  clientId: string;
  /** Whether the connections are TLS: a failure that is a handshake's is then MANIFOLD_ERR_TLS. */
  tls: boolean;
  base: {
    clientId: string;
    bootstrapBrokers: string[];
    connectTimeout: number;
    sasl?: SASLOptions;
    tls?: TlsConnectionOptions;
    /** The library's delay between its own retries of one request: none after a TLS failure, which retrying cannot mend. */
    retryDelay: (client: unknown, operationId: string, attempt: number, retries: number, error: unknown) => number;
  };
}

/**
 * `tls.connect` options whose `ca`, `cert`, `key` (and the rest) are read when the Kafka client opens a
 * connection: @platformatic/kafka spreads its `tls` object into `tls.connect` at every connect, so each
 * property is a getter over {@link tlsConnectOptions}, read once per connect. A file that cannot be read,
 * or a certificate and key that do not make a TLS context (a rotation caught half-written), keep the
 * last set that did, rather than throwing inside the client; the next connect reads again.
 */
export function liveTls(where: string, tls: TlsOptions): TlsConnectionOptions {
  let good = tlsConnectOptions(where, tls);
  let current: TlsConnectionOptions | undefined;
  const now = (): TlsConnectionOptions => {
    if (current) return current;
    try {
      const next = tlsConnectOptions(where, tls);
      if (next.ca !== undefined || next.cert !== undefined || next.key !== undefined) createSecureContext(next);
      good = next;
    } catch {
      // keep `good`
    }
    current = good;
    // One connect's spread reads every property in one go: read the files again at the next one.
    queueMicrotask(() => {
      current = undefined;
    });
    return current;
  };
  const out = {} as TlsConnectionOptions;
  for (const key of Object.keys(good) as Array<keyof TlsConnectionOptions>) {
    Object.defineProperty(out, key, { enumerable: true, get: () => now()[key] });
  }
  return out;
}

/**
 * The library's delay before it retries a request itself: 250 ms, but none after a TLS or SASL
 * authentication failure. The library retries those too (it looks for a non-retryable error only at the
 * top of its error, where they sit under a retryable network error); retrying cannot mend them, so its
 * few attempts run back to back and the failure reaches us (MANIFOLD_ERR_TLS or _AUTH, not retried) at once.
 */
function retryDelay(_client: unknown, _operationId: string, _attempt: number, _retries: number, error: unknown): number {
  for (const e of walk(error)) {
    if (e.code === 'PLT_KFK_AUTHENTICATION' || e.apiId === 'SASL_AUTHENTICATION_FAILED') return 0;
    if (tlsReason(e) !== undefined || (typeof e.message === 'string' && /before secure TLS connection was established/i.test(e.message))) return 0;
  }
  return 250;
}

/**
 * Fails at once (`fail`) with MANIFOLD_ERR_TLS when a broker connection of `client` gets a TLS error after
 * its handshake: a TLS 1.3 server refuses a client certificate (none, expired, another CA) only once the
 * client has finished, with an alert the client library reads as a closed connection and would retry.
 */
export function watchTls(client: unknown, what: string, fail: (error: ManifoldError) => void): void {
  (client as EventEmitter).on('client:broker:connect', (event: { broker?: { host?: string; port?: number }; connection?: { socket?: unknown } }) => {
    const socket = event.connection?.socket;
    if (!(socket instanceof TLSSocket)) return;
    const host = `${event.broker?.host ?? 'the broker'}:${event.broker?.port ?? ''}`;
    socket.on('error', (error: Error) => {
      const failure = tlsFailure(what, host, error);
      if (failure) fail(failure);
    });
  });
}

/**
 * The client options of one client (a producer, a consumer), whose SASL authentication reports its
 * failure to `fail` at once as MANIFOLD_ERR_AUTH: the client library would otherwise retry a refused
 * password with every request's retries (a consumer's join makes several), for seconds, before the
 * error reached us. Network failures during authentication are not reported here: they are retried.
 */
export function clientOptions(connection: ResolvedConnection, what: string, fail: (error: ManifoldError) => void): ResolvedConnection['base'] {
  const { sasl } = connection.base;
  if (!sasl) return connection.base;
  let failed = false;
  const authenticate: SASLCustomAuthenticator = (mechanism, conn, api, username, password, token, callback) => {
    const done: typeof callback = ((error: Error | null, response: unknown) => {
      if (error && !failed && isAuthFailure(error)) {
        failed = true;
        fail(kafkaError(`${what}: authenticating to ${conn.host ?? 'the broker'}:${conn.port ?? ''} with SASL ${sasl.mechanism === 'OAUTHBEARER' ? 'OAUTHBEARER (AWS_MSK_IAM)' : sasl.mechanism}`, new AuthenticationFailure(error)));
      }
      (callback as (error: Error | null, response: unknown) => void)(error, response);
    }) as typeof callback;
    if (mechanism === 'PLAIN') saslPlain.authenticate(api, conn, username!, password!, done);
    else if (mechanism === 'OAUTHBEARER') saslOAuthBearer.authenticate(api, conn, token!, {}, done);
    else saslScramSha.authenticate(api, conn, mechanism === 'SCRAM-SHA-512' ? 'SHA-512' : 'SHA-256', username!, password!, saslScramSha.defaultCrypto, done);
  };
  return { ...connection.base, sasl: { ...sasl, authenticate } };
}

/** A refused SASL exchange (the broker's SASL_AUTHENTICATION_FAILED), or a credential provider that failed (MSK IAM without credentials). */
function isAuthFailure(error: unknown): boolean {
  for (const e of walk(error)) if (e.apiId === 'SASL_AUTHENTICATION_FAILED' || e.code === 'PLT_KFK_AUTHENTICATION' || (e instanceof ManifoldError && e.code === ErrorCodes.AUTH)) return true;
  return false;
}

/** What the broker said, marked as the authentication failure it is (the library marks it so only later). */
class AuthenticationFailure extends Error {
  readonly code = 'PLT_KFK_AUTHENTICATION';
  constructor(cause: Error) {
    super('SASL authentication failed.', { cause });
  }
}

/** What Kafka takes as a topic name: letters, digits, '.', '_' and '-', at most 249 (so never ':', which the source's partition keys rely on). */
export const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/;

const HOST_PORT = /^(\[[0-9a-fA-F:]+\]|[^\s:/[\]]+):(\d{1,5})$/;

/** The client settings of validated connection options; every broker must be a "host:port" (one string may list several, comma-separated). */
export function resolveConnection(where: string, o: ResolvedOptions<typeof kafkaConnection>): ResolvedConnection {
  // Present once the declaration's resolve() returned: brokers is required.
  const list = o.brokers!.flatMap((b) => b.split(',').map((part) => part.trim()));
  for (const broker of list) {
    if (broker.includes('@')) {
      // user:password@host: never echo it, and say where credentials go instead.
      invalidOption(where, 'brokers', 'a list of "host:port" strings, without credentials (give them as options.sasl)', `***@${broker.slice(broker.lastIndexOf('@') + 1)}`);
    }
    const match = HOST_PORT.exec(broker);
    const port = match ? Number(match[2]) : 0;
    if (!match || port < 1 || port > 65535) invalidOption(where, 'brokers', 'a list of "host:port" strings', broker);
  }
  const base: ResolvedConnection['base'] = { clientId: o.clientId, bootstrapBrokers: list, connectTimeout: o.connectTimeoutMs, retryDelay };
  if (o.tls) base.tls = liveTls(where, o.tls);
  if (o.sasl) {
    if (o.sasl.mechanism === 'AWS_MSK_IAM') {
      if (!o.tls) invalidOption(where, 'tls', 'given with sasl.mechanism AWS_MSK_IAM: MSK takes IAM only over TLS (port 9098); set tls: true', o.tls);
      const region = o.sasl.region ?? mskRegion(list);
      if (region === undefined) invalidOption(where, 'sasl.region', 'the MSK cluster\'s region (not an MSK broker name, and neither AWS_REGION nor AWS_DEFAULT_REGION is set)', undefined);
      base.sasl = { mechanism: 'OAUTHBEARER', token: mskIamTokenProvider(where, o.sasl, region) };
    } else {
      base.sasl = { mechanism: o.sasl.mechanism, username: o.sasl.username, password: o.sasl.password };
    }
  }
  return { brokers: [...list], clientId: o.clientId, tls: o.tls !== undefined, base };
}

interface ErrorTree {
  code?: unknown;
  apiId?: unknown;
  canRetry?: unknown;
  errors?: unknown;
  cause?: unknown;
  message?: unknown;
}

/** Walks an error, its `errors` (AggregateError) and `cause` chain, depth-first. */
function* walk(error: unknown, depth = 0): Generator<ErrorTree> {
  if (depth > 6 || error === null || typeof error !== 'object') return;
  yield error as ErrorTree;
  const { errors, cause } = error as ErrorTree;
  if (Array.isArray(errors)) for (const e of errors) yield* walk(e, depth + 1);
  if (cause !== undefined && cause !== error) yield* walk(cause, depth + 1);
}

/** The first Kafka protocol error id (`'MESSAGE_TOO_LARGE'`, `'UNKNOWN_TOPIC_OR_PARTITION'`...) in `error`. */
export function kafkaApiId(error: unknown): string | undefined {
  for (const e of walk(error)) if (typeof e.apiId === 'string') return e.apiId;
  return undefined;
}

/** Whether `error` says a topic does not exist (a protocol error, or the client's own metadata check). */
export function isUnknownTopic(error: unknown): boolean {
  for (const e of walk(error)) {
    if (e.apiId === 'UNKNOWN_TOPIC_OR_PARTITION') return true;
    if (e.code === 'PLT_KFK_USER' && typeof e.message === 'string' && e.message.startsWith('Unknown topic ')) return true;
  }
  return false;
}

const SYSTEM_TRANSIENT = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND']);
const AUTH_IDS = new Set(['SASL_AUTHENTICATION_FAILED', 'TOPIC_AUTHORIZATION_FAILED', 'GROUP_AUTHORIZATION_FAILED', 'CLUSTER_AUTHORIZATION_FAILED', 'UNSUPPORTED_SASL_MECHANISM', 'ILLEGAL_SASL_STATE']);
const TOO_LARGE_IDS = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);

/** Whether a client error is transient: a network failure or a protocol error Kafka marks retriable. */
export function kafkaRetryable(error: unknown): boolean {
  for (const e of walk(error)) {
    if (typeof e.apiId === 'string' && (AUTH_IDS.has(e.apiId) || TOO_LARGE_IDS.has(e.apiId))) return false;
    if (e.code === 'PLT_KFK_AUTHENTICATION') return false;
  }
  for (const e of walk(error)) {
    if (e.canRetry === true || e.code === 'PLT_KFK_NETWORK' || e.code === 'PLT_KFK_TIMEOUT') return true;
    if (typeof e.code === 'string' && SYSTEM_TRANSIENT.has(e.code)) return true;
  }
  return false;
}

/** The innermost distinct messages of a client error, so "Multiple errors" says what they were. */
function detail(error: unknown): string {
  const parts: string[] = [];
  for (const e of walk(error)) {
    const text = typeof e.message === 'string' ? e.message : '';
    if (text && !parts.includes(text) && !/^(Multiple errors|.*failed \d+ times\.?)$/i.test(text)) parts.push(text);
  }
  return parts.slice(0, 3).join('; ') || describe(error);
}

/**
 * MANIFOLD_ERR_TLS when a client error is a TLS handshake's (an unverified certificate, a refused client
 * certificate, a plaintext port), naming the broker the client was connecting to; undefined otherwise.
 */
export function kafkaTlsFailure(what: string, error: unknown): ManifoldError | undefined {
  let host: string | undefined;
  for (const e of walk(error)) {
    const match = typeof e.message === 'string' ? /^Connection to (.+) failed\.$/.exec(e.message) : null;
    if (match) {
      host = match[1];
      break;
    }
  }
  for (const e of walk(error)) {
    // The client says "TLS handshake failed" for a socket closed during the handshake: how a TLS 1.3 server refuses a client certificate.
    const handshaking = typeof e.message === 'string' && /before secure TLS connection was established/i.test(e.message);
    const failure = tlsFailure(what, host ?? 'the broker', e, handshaking);
    if (failure) return failure;
  }
  return undefined;
}

/**
 * Wraps a client error into a ManifoldError: `what` says what we were doing
 * (`consuming topics a, b from 127.0.0.1:9092`), the code says why, `retryable` whether trying again can help.
 */
export function kafkaError(what: string, error: unknown, details: Record<string, unknown> = {}): ManifoldError {
  if (error instanceof ManifoldError) return error;
  const tls = kafkaTlsFailure(what, error);
  if (tls) return tls;
  const apiId = kafkaApiId(error);
  let code: ErrorCode = ErrorCodes.DELIVERY;
  let retryable = kafkaRetryable(error);
  let hint = '';
  if (apiId && TOO_LARGE_IDS.has(apiId)) {
    code = ErrorCodes.MESSAGE_TOO_LARGE;
    hint = ' (raise the topic\'s max.message.bytes or send smaller messages)';
  } else if ((apiId && AUTH_IDS.has(apiId)) || [...walk(error)].some((e) => e.code === 'PLT_KFK_AUTHENTICATION')) {
    code = ErrorCodes.AUTH;
    retryable = false;
    hint = ' (check options.sasl and the ACLs of this principal)';
  } else if (isUnknownTopic(error) || apiId === 'INVALID_TOPIC_EXCEPTION') {
    code = ErrorCodes.NOT_FOUND;
    retryable = false;
    hint = ' (create the topic, or set autocreateTopics: true if the broker allows it)';
  } else if (retryable) {
    code = ErrorCodes.CONNECTION;
  }
  return new ManifoldError(`${what}: ${detail(error)}${hint}`, {
    code,
    retryable,
    cause: error,
    details: { ...(apiId ? { kafkaError: apiId } : {}), ...details },
  });
}
