/**
 * What the Kafka source and sink share: the broker list check, the client's connection settings, and the
 * translation of @platformatic/kafka errors into ManifoldErrors that say what failed and
 * whether a retry can help. Not part of the public API.
 */
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { ErrorCodes, ManifoldError, describe, type ErrorCode } from '../core/errors.js';
import { invalidOption, type ResolvedOptions } from '../core/options.js';
import type { KafkaSaslOptions, kafkaConnection } from './options.js';

export type { KafkaSaslOptions } from './options.js';

export interface ResolvedConnection {
  brokers: string[];
  clientId: string;
  base: {
    clientId: string;
    bootstrapBrokers: string[];
    connectTimeout: number;
    sasl?: KafkaSaslOptions;
    tls?: TlsConnectionOptions;
  };
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
  const base: ResolvedConnection['base'] = { clientId: o.clientId, bootstrapBrokers: list, connectTimeout: o.connectTimeoutMs };
  if (o.sasl) base.sasl = o.sasl;
  if (o.tls) base.tls = o.tls;
  return { brokers: [...list], clientId: o.clientId, base };
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
