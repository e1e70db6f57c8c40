/**
 * What the RabbitMQ source and sink share: URL validation, connecting with
 * errors that say what failed (and never the password), topology assertion,
 * header conversion and a bounded connection close. Not part of the API.
 */
import amqp, { type Channel, type ChannelModel, type Options } from 'amqplib';
import { ErrorCodes, ManifoldError, describe, isRetryable, redactUrl, toError } from '../core/errors.js';
import { checkOptions, invalidOption, show, stringOption } from '../core/options.js';

/** The broker amqplib would use when no URL is given. */
export const DEFAULT_URL = 'amqp://localhost:5672';

/**
 * Validates a connection URL: an `amqp:` or `amqps:` URL with a host. The
 * message shows the URL with its password replaced by `***`.
 */
export function urlOption(where: string, value: unknown): string {
  if (value === undefined) return DEFAULT_URL;
  const text = value instanceof URL ? value.toString() : value;
  if (typeof text !== 'string' || text.length === 0) invalidOption(where, 'url', 'an amqp:// or amqps:// URL string', value);
  let parsed: URL;
  try {
    parsed = new URL(text);
  } catch {
    // show() would print the string as given: redact it first, it may carry a password.
    return invalidOption(where, 'url', 'an amqp:// or amqps:// URL string', redactUrl(text));
  }
  if ((parsed.protocol !== 'amqp:' && parsed.protocol !== 'amqps:') || parsed.hostname === '') {
    invalidOption(where, 'url', 'an amqp:// or amqps:// URL with a host', redactUrl(text));
  }
  return text;
}

/** Options for a queue declaration, as amqplib's `assertQueue` takes them. */
export type QueueOptions = Options.AssertQueue;
/** Options for an exchange declaration, as amqplib's `assertExchange` takes them. */
export type ExchangeOptions = Options.AssertExchange;

/** An object option: validated, copied, with unknown keys rejected. */
export function objectOption<T extends object>(where: string, name: string, value: unknown, known: readonly string[]): T | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) invalidOption(where, name, 'an object', value);
  return checkOptions<T>(`${where}: options.${name}`, value as T, known);
}

/** A plain object (AMQP arguments tables: any keys). */
export function plainObject(where: string, name: string, value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) invalidOption(where, name, 'an object', value);
  return value as Record<string, unknown>;
}

/** AMQP queue-declaration options amqplib understands (anything else goes in `arguments`). */
export const QUEUE_OPTION_KEYS = [
  'exclusive',
  'durable',
  'autoDelete',
  'arguments',
  'messageTtl',
  'expires',
  'deadLetterExchange',
  'deadLetterRoutingKey',
  'maxLength',
  'maxPriority',
  'overflow',
  'queueMode',
] as const;

/** AMQP exchange-declaration options amqplib understands. */
export const EXCHANGE_OPTION_KEYS = ['durable', 'internal', 'autoDelete', 'alternateExchange', 'arguments'] as const;

/** An exchange type name: the four built-in ones, or a plugin's (`x-delayed-message`). */
export function exchangeTypeOption(where: string, name: string, value: unknown, fallback: string): string {
  if (value === undefined) return fallback;
  return stringOption(where, name, value, { required: true });
}

/** Facts an AMQP error carries, kept as properties of the ManifoldError. */
interface AmqpFacts {
  url: string;
  queue?: string;
  exchange?: string;
  routingKey?: string;
}

function amqpCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/**
 * Turns an amqplib failure into a ManifoldError whose code says what to do:
 * AUTH (refused login, vhost not allowed), NOT_FOUND (404: queue or exchange),
 * CONNECTION (retryable: refused socket, broker shutdown, lost connection), or
 * DELIVERY (anything else the broker refused; not retried).
 */
export function amqpError(where: string, action: string, error: unknown, facts: AmqpFacts): ManifoldError {
  if (error instanceof ManifoldError) return error;
  const err = toError(error);
  const text = describe(err);
  const code = amqpCode(err);
  const at = redactUrl(facts.url);
  const details: Record<string, unknown> = { url: at };
  if (facts.queue !== undefined) details.queue = facts.queue;
  if (facts.exchange !== undefined) details.exchange = facts.exchange;
  if (facts.routingKey !== undefined) details.routingKey = facts.routingKey;
  if (code !== undefined) details.replyCode = code;
  // The login refusal arrives as a handshake close without a numeric code; a vhost the user may not
  // open arrives as an unexpected ConnectionClose where ConnectionOpenOk was due.
  if (code === 403 || code === 530 || /ACCESS[-_]REFUSED|NOT[-_]ALLOWED|Expected ConnectionOpenOk/.test(text)) {
    return new ManifoldError(
      `${where}: ${action} at ${at} was refused: ${text}; check the user, password, vhost and its permissions`,
      { code: ErrorCodes.AUTH, cause: err, details },
    );
  }
  if (code === 404) {
    return new ManifoldError(`${where}: ${action} at ${at} failed: ${text}; create it first, or set options.assert`, {
      code: ErrorCodes.NOT_FOUND,
      cause: err,
      details,
    });
  }
  if (isRetryable(err) || /Connection closed|Channel closed|Socket closed|channel ended/i.test(text)) {
    return new ManifoldError(`${where}: ${action} at ${at} failed: ${text}`, { code: ErrorCodes.CONNECTION, retryable: true, cause: err, details });
  }
  return new ManifoldError(`${where}: ${action} at ${at} failed: ${text}`, { code: ErrorCodes.DELIVERY, cause: err, details });
}

/** What {@link openConnection} needs. */
export interface ConnectSettings {
  url: string;
  connectionName: string;
  connectTimeoutMs: number;
}

/**
 * Opens a connection. The connection name shows in the management UI and in
 * `rabbitmqctl list_connections client_properties`, so an operator (or a test)
 * can find and close it.
 */
export async function openConnection(where: string, settings: ConnectSettings): Promise<ChannelModel> {
  try {
    return await amqp.connect(settings.url, {
      timeout: settings.connectTimeoutMs,
      clientProperties: { connection_name: settings.connectionName },
    });
  } catch (error) {
    throw amqpError(where, 'connecting', error, { url: settings.url });
  }
}

/**
 * Closes a channel, then its connection, without waiting for ever: a broker
 * that does not answer within `timeoutMs` gets the socket destroyed. Closing
 * the channel first matters: its acks sit in the channel's own write buffer,
 * and a connection.close on channel 0 can overtake them; channel.close queues
 * behind them. Never throws (either may already be gone).
 */
export async function closeConnection(connection: ChannelModel | undefined, channel?: Channel, timeoutMs = 2_000): Promise<void> {
  if (!connection) return;
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const socketOf = (): { destroy(): void } | undefined =>
    (connection as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      timedOut = true;
      socketOf()?.destroy();
      resolve();
    }, timeoutMs);
  });
  try {
    if (channel) await Promise.race([channel.close().catch(() => {}), deadline]);
    if (!timedOut) await Promise.race([connection.close(), deadline]);
  } catch {
    // Already closed (IllegalOperationError) or the socket died: either way it is gone.
    socketOf()?.destroy();
  } finally {
    clearTimeout(timer);
  }
}

/**
 * AMQP header values as the Message envelope's strings: strings as they are,
 * numbers and booleans written out, byte arrays as UTF-8, anything else
 * (arrays, tables) as JSON. Absent values are dropped.
 */
export function headersFromAmqp(headers: Record<string, unknown> | undefined): Record<string, string> | undefined {
  if (!headers) return undefined;
  let out: Record<string, string> | undefined;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || value === null) continue;
    out ??= {};
    if (typeof value === 'string') out[name] = value;
    else if (Buffer.isBuffer(value)) out[name] = value.toString('utf8');
    else if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') out[name] = String(value);
    else if (value instanceof Date) out[name] = value.toISOString();
    else {
      try {
        out[name] = JSON.stringify(value);
      } catch {
        out[name] = show(value);
      }
    }
  }
  return out;
}

/** A binding of the source's queue to an exchange, declared by `assert`. */
export interface BindingSpec {
  /** The exchange to bind the queue to. */
  exchange: string;
  /** The binding key (a topic pattern for topic exchanges). Default `''`. */
  routingKey?: string;
  /** When set, the exchange is declared too, with this type (`'topic'`, `'direct'`, `'fanout'`, `'headers'`). */
  exchangeType?: string;
  /** Options for that exchange declaration. Default durable. */
  exchangeOptions?: ExchangeOptions;
  /** Binding arguments (headers exchanges match on these). */
  arguments?: Record<string, unknown>;
}

const BINDING_KEYS = ['exchange', 'routingKey', 'exchangeType', 'exchangeOptions', 'arguments'] as const;

/** Validates a list of bindings (`name` is the option path for messages). */
export function bindingsOption(where: string, name: string, value: unknown): BindingSpec[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) invalidOption(where, name, 'an array of { exchange, routingKey }', value);
  return value.map((item: unknown, index) => {
    const path = `${name}[${index}]`;
    const b = objectOption<BindingSpec>(where, path, item, BINDING_KEYS);
    if (!b) return invalidOption(where, path, 'an object { exchange, routingKey }', item);
    const spec: BindingSpec = { exchange: stringOption(where, `${path}.exchange`, b.exchange, { required: true }) };
    if (b.routingKey !== undefined) {
      if (typeof b.routingKey !== 'string') invalidOption(where, `${path}.routingKey`, 'a string', b.routingKey);
      spec.routingKey = b.routingKey;
    }
    if (b.exchangeType !== undefined) spec.exchangeType = exchangeTypeOption(where, `${path}.exchangeType`, b.exchangeType, 'topic');
    const exchangeOptions = objectOption<ExchangeOptions>(where, `${path}.exchangeOptions`, b.exchangeOptions, EXCHANGE_OPTION_KEYS);
    if (exchangeOptions) spec.exchangeOptions = exchangeOptions;
    if (b.arguments !== undefined) spec.arguments = { ...plainObject(where, `${path}.arguments`, b.arguments) };
    return spec;
  });
}

/** Binds `queue` as the specs say, declaring exchanges that name a type. */
export async function applyBindings(channel: Channel, queue: string, bindings: readonly BindingSpec[]): Promise<void> {
  for (const b of bindings) {
    if (b.exchangeType !== undefined) await channel.assertExchange(b.exchange, b.exchangeType, b.exchangeOptions);
    await channel.bindQueue(queue, b.exchange, b.routingKey ?? '', b.arguments);
  }
}

/** The error with which an in-flight message is nacked when its connection went away. */
export function connectionLostError(where: string, url: string, cause?: unknown): ManifoldError {
  return new ManifoldError(`${where}: the connection to ${redactUrl(url)} was lost${cause ? `: ${describe(cause)}` : ''}`, {
    code: ErrorCodes.CONNECTION,
    retryable: true,
    cause,
  });
}
