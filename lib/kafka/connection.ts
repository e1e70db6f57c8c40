/**
 * What the Kafka source and sink share: broker list, SASL and TLS option checks, and the
 * translation of @platformatic/kafka errors into ManifoldErrors that say what failed and
 * whether a retry can help. Not part of the public API.
 */
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { ErrorCodes, ManifoldError, describe, type ErrorCode } from '../core/errors.js';
import { checkOptions, enumOption, invalidOption, stringOption } from '../core/options.js';

/** SASL credentials. Secrets never appear in errors or events. */
export interface KafkaSaslOptions {
  mechanism: 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512';
  username: string;
  password: string;
}

/** Connection options both clients take. */
export interface KafkaConnectionOptions {
  /** Bootstrap brokers, `'host:port'` or a list of them. Required. */
  brokers: string | readonly string[];
  /** Client id shown in broker logs and quotas. Default `'manifold'`. */
  clientId?: string;
  /** SASL authentication. Default none. */
  sasl?: KafkaSaslOptions;
  /** TLS: `true` for the system CAs, or Node `tls.connect` options. Default plain TCP. */
  tls?: boolean | TlsConnectionOptions;
  /** Longest wait for a TCP/TLS connection, in milliseconds. Default 5,000. */
  connectTimeoutMs?: number;
}

export interface ResolvedConnection {
  brokers: string[];
  clientId: string;
  base: {
    clientId: string;
    bootstrapBrokers: string[];
    connectTimeout: number;
    sasl?: { mechanism: KafkaSaslOptions['mechanism']; username: string; password: string };
    tls?: TlsConnectionOptions;
  };
}

const HOST_PORT = /^(\[[0-9a-fA-F:]+\]|[^\s:/[\]]+):(\d{1,5})$/;

/** Validates the connection options shared by kafkaSource and kafkaSink. */
export function resolveConnection(where: string, o: KafkaConnectionOptions & { connectTimeoutMs?: number }): ResolvedConnection {
  const list = typeof o.brokers === 'string' ? o.brokers.split(',').map((b) => b.trim()) : o.brokers;
  if (!Array.isArray(list) || list.length === 0) {
    invalidOption(where, 'brokers', 'a "host:port" string or a non-empty array of them', o.brokers);
  }
  for (const broker of list) {
    const match = typeof broker === 'string' ? HOST_PORT.exec(broker) : null;
    const port = match ? Number(match[2]) : 0;
    if (!match || port < 1 || port > 65535) invalidOption(where, 'brokers', 'a list of "host:port" strings', broker);
  }
  const clientId = stringOption(where, 'clientId', o.clientId) ?? 'manifold';
  const connectTimeout = o.connectTimeoutMs === undefined ? 5000 : o.connectTimeoutMs;
  if (typeof connectTimeout !== 'number' || !(connectTimeout > 0)) invalidOption(where, 'connectTimeoutMs', 'a positive number (milliseconds)', connectTimeout);
  const base: ResolvedConnection['base'] = { clientId, bootstrapBrokers: [...list], connectTimeout };
  if (o.sasl !== undefined) {
    const sasl = checkOptions<KafkaSaslOptions>(`${where}: options.sasl`, o.sasl, ['mechanism', 'username', 'password']);
    const mechanism = enumOption(where, 'sasl.mechanism', sasl.mechanism, ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const, 'PLAIN');
    const username = stringOption(where, 'sasl.username', sasl.username, { required: true });
    // The password is checked without echoing it.
    if (typeof sasl.password !== 'string' || sasl.password.length === 0) invalidOption(where, 'sasl.password', 'a non-empty string', '<hidden>');
    base.sasl = { mechanism, username, password: sasl.password };
  }
  if (o.tls !== undefined && o.tls !== false) {
    if (o.tls !== true && (typeof o.tls !== 'object' || o.tls === null || Array.isArray(o.tls))) {
      invalidOption(where, 'tls', 'true, false or tls.connect options', o.tls);
    }
    base.tls = o.tls === true ? {} : { ...o.tls };
  }
  return { brokers: [...list], clientId, base };
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
 * Wraps a client error into a ManifoldError: `what` says what we were doing
 * (`consuming topics a, b from 127.0.0.1:9092`), the code says why, `retryable` whether trying again can help.
 */
export function kafkaError(what: string, error: unknown, details: Record<string, unknown> = {}): ManifoldError {
  if (error instanceof ManifoldError) return error;
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
