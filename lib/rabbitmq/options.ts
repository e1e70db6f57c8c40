/**
 * The options of rabbitmqSource and rabbitmqSink, declared once (see `defineOptions`), with
 * the shapes of their object options; and amqplib's own URL parameters, which the command
 * leaves in the URL for amqplib.
 */
import type { Options } from 'amqplib';
import { ErrorCodes, ManifoldError, READS_TWO_WAYS, readsTwoWays, redactUrl } from '../core/errors.js';
import { checkOptions, common, defineOptions, invalidOption, opt, stringOption } from '../core/options.js';
import { retryOption, type RetryOptions } from '../core/retry.js';
import { tlsOption, type TlsOptions } from '../core/tls.js';

/** The broker amqplib would use when no URL is given. */
export const DEFAULT_URL = 'amqp://localhost:5672';

/** Options for a queue declaration, as amqplib's `assertQueue` takes them. */
export type QueueOptions = Options.AssertQueue;
/** Options for an exchange declaration, as amqplib's `assertExchange` takes them. */
export type ExchangeOptions = Options.AssertExchange;

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

/** What `assert` declares on every (re)connect before consuming. */
export interface RabbitmqSourceAssert {
  /** Options of the queue declaration. Default `{ durable: true }`. */
  queue?: QueueOptions;
  /** Bindings of the queue to exchanges; an exchange with `exchangeType` is declared too. */
  bindings?: BindingSpec[];
}

/** A queue the sink declares and binds to its exchange (so that messages are routable). */
export interface RabbitmqSinkQueue {
  /** Queue name. */
  name: string;
  /** Declaration options. Default `{ durable: true }`. */
  options?: QueueOptions;
  /** Binding key. Default: the sink's `routingKey`, or `'#'` when it has none. Not used with the default exchange. */
  routingKey?: string;
}

/** What `assert` declares on every (re)connect before publishing. */
export interface RabbitmqSinkAssert {
  /** Type of the sink's exchange. Default `'topic'`. */
  exchangeType?: string;
  /** Options of the exchange declaration. Default `{ durable: true }`. */
  exchangeOptions?: ExchangeOptions;
  /** Queues to declare and bind to the exchange. */
  queues?: RabbitmqSinkQueue[];
}

const PROPERTY_KEYS = ['contentType', 'contentEncoding', 'expiration', 'priority', 'type', 'appId', 'userId', 'replyTo'] as const;

/** AMQP properties set on every published message (headers, persistence and timestamp come from elsewhere). */
export type RabbitmqPublishProperties = Pick<Options.Publish, (typeof PROPERTY_KEYS)[number]>;

/**
 * Every key of `T`, for rejecting unknown keys of an object option: a key of `T` missing
 * from the list (or one `T` does not have) fails to compile, so the list cannot drift from the type.
 */
function keysOf<T>() {
  return <const K extends readonly (keyof T & string)[]>(keys: K & ([Exclude<keyof T, K[number]>] extends [never] ? unknown : never)): readonly string[] => keys;
}

/** AMQP queue-declaration options amqplib understands (anything else goes in `arguments`). */
const QUEUE_OPTION_KEYS = keysOf<QueueOptions>()([
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
]);
/** AMQP exchange-declaration options amqplib understands. */
const EXCHANGE_OPTION_KEYS = keysOf<ExchangeOptions>()(['durable', 'internal', 'autoDelete', 'alternateExchange', 'arguments']);
const BINDING_KEYS = keysOf<BindingSpec>()(['exchange', 'routingKey', 'exchangeType', 'exchangeOptions', 'arguments']);
const SOURCE_ASSERT_KEYS = keysOf<RabbitmqSourceAssert>()(['queue', 'bindings']);
const SINK_ASSERT_KEYS = keysOf<RabbitmqSinkAssert>()(['exchangeType', 'exchangeOptions', 'queues']);
const SINK_QUEUE_KEYS = keysOf<RabbitmqSinkQueue>()(['name', 'options', 'routingKey']);

/** An object option: validated, copied, with unknown keys rejected. */
function objectOption<T extends object>(where: string, name: string, value: unknown, known: readonly string[]): T | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) invalidOption(where, name, 'an object', value);
  return checkOptions<T>(`${where}: options.${name}`, value as T, known);
}

/** A string, the empty one included (the default exchange, an empty routing key). */
function anyString(where: string, name: string, value: unknown, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string') invalidOption(where, name, 'a string', value);
  return value;
}

/** A plain object (AMQP arguments tables: any keys), copied. */
function plainObject(where: string, name: string, value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) invalidOption(where, name, 'an object', value);
  return { ...(value as Record<string, unknown>) };
}

/**
 * An `amqp:` or `amqps:` URL with a host, as a string. The message shows the URL with its
 * password replaced by `***`.
 */
function urlOption(where: string, value: unknown): string {
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
  if (readsTwoWays(text, parsed)) {
    throw new ManifoldError(`${where}: options.url ${JSON.stringify(redactUrl(text))} ${READS_TWO_WAYS}`, { code: ErrorCodes.INVALID_OPTION, details: { option: 'url' } });
  }
  return text;
}

/** Validates a list of bindings (`name` is the option path for messages). */
function bindingsOption(where: string, name: string, value: unknown): BindingSpec[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) invalidOption(where, name, 'an array of { exchange, routingKey }', value);
  return value.map((item: unknown, index) => {
    const path = `${name}[${index}]`;
    const b = objectOption<BindingSpec>(where, path, item, BINDING_KEYS);
    if (!b) return invalidOption(where, path, 'an object { exchange, routingKey }', item);
    const spec: BindingSpec = { exchange: stringOption(where, `${path}.exchange`, b.exchange, { required: true }) };
    if (b.routingKey !== undefined) spec.routingKey = anyString(where, `${path}.routingKey`, b.routingKey, '');
    if (b.exchangeType !== undefined) spec.exchangeType = stringOption(where, `${path}.exchangeType`, b.exchangeType, { required: true });
    const exchangeOptions = objectOption<ExchangeOptions>(where, `${path}.exchangeOptions`, b.exchangeOptions, EXCHANGE_OPTION_KEYS);
    if (exchangeOptions) spec.exchangeOptions = exchangeOptions;
    if (b.arguments !== undefined) spec.arguments = plainObject(where, `${path}.arguments`, b.arguments);
    return spec;
  });
}

/** What the source's `assert` resolves to: what to declare, or `false` to only check that the queue exists. */
export type SourceAssert = { queue: QueueOptions; bindings: BindingSpec[] } | false;

/** What the sink's `assert` resolves to; a queue's binding key is left unset when not given (it defaults to the sink's `routingKey`). */
export type SinkAssert = { exchangeType: string; exchangeOptions: ExchangeOptions; queues: Array<{ name: string; options: QueueOptions; routingKey?: string }> } | false;

/** `assert` on the command line is true or false (`?assert=yes`); a pipeline file may give the object. */
function booleanText(text: string): unknown {
  if (/^(true|yes|1|on)$/i.test(text)) return true;
  if (/^(false|no|0|off)$/i.test(text)) return false;
  return text;
}

const ASSERT_SCHEMA = { anyOf: [{ type: 'boolean' }, { type: 'object' }] };

/** The SASL mechanisms the connectors log in with. */
export const AUTH_MECHANISMS = ['PLAIN', 'EXTERNAL'] as const;
/** `PLAIN`: user and password; `EXTERNAL`: the TLS client certificate. */
export type AuthMechanism = (typeof AUTH_MECHANISMS)[number];

/** The options of a connection to the broker, the same for the source and the sink. */
export const rabbitmqConnection = {
  url: opt.custom<string, string>('Broker URL, `amqp://user:password@host:5672/vhost` or `amqps://`; amqplib reads its own parameters (`heartbeat`, `frameMax`, ...) from the query.', {
    type: 'string | URL',
    default: DEFAULT_URL,
    defaultText: '`amqp://localhost:5672` (guest/guest)',
    secret: true,
    check: (value, _fail, where) => urlOption(where, value),
  }),
  connectTimeoutMs: opt.duration('Bound on opening the TCP connection.', { default: 10_000 }),
  connectionName: opt.string('The connection name the broker shows (management UI, `rabbitmqctl list_connections client_properties`).', {
    defaultText: '`manifold <factory> <queue or exchange>`',
  }),
  retry: retryOption('Reconnect policy, or `false` to fail on the first connection loss.'),
  tls: tlsOption(
    'TLS settings of an `amqps://` URL (which alone means TLS with the system CAs): `{ ca, cert, key, passphrase, servername, rejectUnauthorized, minVersion }`, PEM text, bytes or file paths, re-read at every (re)connect. Refused with an `amqp://` URL: plaintext where TLS was asked is never silent.',
  ),
  authMechanism: opt.enum(
    'How the client logs in: `PLAIN` (the user and password of the URL, guest/guest without them) or `EXTERNAL` (the identity of the TLS client certificate `tls.cert`; the broker needs the rabbitmq_auth_mechanism_ssl plugin and a user named as the certificate).',
    AUTH_MECHANISMS,
    { default: 'PLAIN' },
  ),
};

/**
 * What no single option can check: `tls` needs an `amqps://` URL (with `amqp://` the connection would be plaintext
 * where the user asked for TLS), and `EXTERNAL` needs a client certificate and no user or password in the URL
 * (the broker takes the identity from the certificate, and a password there would be ignored, or worse, believed).
 */
export function checkConnection(where: string, o: { url: string; tls: TlsOptions | undefined; authMechanism: AuthMechanism }): void {
  const protocol = new URL(o.url).protocol;
  if (o.tls !== undefined && protocol !== 'amqps:') {
    throw new ManifoldError(
      `${where}: options.tls is given but options.url ${JSON.stringify(redactUrl(o.url))} is amqp:// (plaintext); write amqps:// (and the broker's TLS port, 5671 by default) to connect with TLS`,
      { code: ErrorCodes.INVALID_OPTION, details: { option: 'tls', conflictsWith: 'url' } },
    );
  }
  if (o.authMechanism === 'EXTERNAL') {
    if (protocol !== 'amqps:' || o.tls?.cert === undefined) {
      throw new ManifoldError(
        `${where}: options.authMechanism EXTERNAL logs in as the TLS client certificate: give an amqps:// URL and options.tls with cert and key`,
        { code: ErrorCodes.INVALID_OPTION, details: { option: 'authMechanism', conflictsWith: protocol !== 'amqps:' ? 'url' : 'tls' } },
      );
    }
    const parsed = new URL(o.url);
    if (parsed.username !== '' || parsed.password !== '') {
      throw new ManifoldError(
        `${where}: options.authMechanism EXTERNAL takes the user from the client certificate: remove the user and password from options.url ${JSON.stringify(redactUrl(o.url))}`,
        { code: ErrorCodes.INVALID_OPTION, details: { option: 'authMechanism', conflictsWith: 'url' } },
      );
    }
  }
}

export const rabbitmqSourceOptions = defineOptions('rabbitmqSource', {
  ...rabbitmqConnection,
  queue: { ...opt.string('The queue to consume.'), required: true as const },
  consumerTag: opt.string('A fixed consumer tag, shown by the broker.', { defaultText: 'one chosen by the broker' }),
  prefetch: opt.integer('Most unacked messages the broker sends at once (basic.qos); this is the backpressure, and it bounds memory.', { default: 256, min: 1, max: 65_535 }),
  maxInFlightBytes: opt.bytes(
    'Most payload bytes of unacked messages: the prefetch window is sized to it by the average message size (one until the first message), and at this many the consumer is cancelled (basic.cancel) and made again once acks bring it under half. Messages much larger than those before them can pass it, within `prefetch`.',
    { default: 64 * 1024 * 1024, cli: 'maxInFlightBytes' },
  ),
  assert: opt.custom<SourceAssert, false>('Declare the queue (and bind it) on every (re)connect; `false` only checks that the queue exists.', {
    type: 'boolean | RabbitmqSourceAssert',
    default: false,
    cli: 'assert',
    parse: booleanText,
    schema: ASSERT_SCHEMA,
    check: (value, fail, where) => {
      if (value === false) return false;
      if (value === true) return { queue: { durable: true }, bindings: [] };
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return fail('true, false or an object { queue, bindings }');
      const a = objectOption<RabbitmqSourceAssert>(where, 'assert', value, SOURCE_ASSERT_KEYS)!;
      return {
        queue: objectOption<QueueOptions>(where, 'assert.queue', a.queue, QUEUE_OPTION_KEYS) ?? { durable: true },
        bindings: bindingsOption(where, 'assert.bindings', a.bindings),
      };
    },
  }),
  nackRequeue: opt.boolean("What `nack()` does: requeue (true), or reject so that the queue's dead-letter exchange receives the message (false).", { default: true }),
  closeTimeoutMs: opt.duration('How long `close()` waits for the acks of what was delivered before closing anyway.', { default: 30_000, min: 0 }),
  signal: common.signal('source'),
  highWaterMark: common.highWaterMark(16),
});

/** A string option that may be empty (`''` is the default exchange). */
function emptyableString(doc: string) {
  return opt.custom<string, string>(doc, {
    type: 'string',
    default: '',
    // Custom options have no URI key unless given one: this one's is its name.
    cli: undefined,
    schema: { type: 'string' },
    check: (value, fail) => (typeof value === 'string' ? value : fail('a string')),
  });
}

export const rabbitmqSinkOptions = defineOptions('rabbitmqSink', {
  ...rabbitmqConnection,
  exchange: emptyableString("Exchange to publish to; '' is the default exchange, where the routing key names a queue."),
  routingKey: emptyableString("Routing key of messages without their own `key` (a message's `key` wins)."),
  persistent: opt.boolean('Mark messages persistent (delivery mode 2), so that a durable queue keeps them over a broker restart.', { default: true }),
  mandatory: opt.boolean('Have the broker return messages no queue receives, and nack them (false: the broker drops them and they are acked).', { default: true }),
  maxInFlight: opt.integer('Most publishes awaiting a broker confirm; writes wait beyond it.', { default: 1000, min: 1 }),
  properties: opt.custom<RabbitmqPublishProperties>('AMQP properties of every message (`contentType`, `expiration`, ...).', {
    type: 'RabbitmqPublishProperties',
    check: (value, _fail, where) => objectOption<RabbitmqPublishProperties>(where, 'properties', value, PROPERTY_KEYS)!,
  }),
  assert: opt.custom<SinkAssert, false>('Declare the exchange (and queues bound to it) on every (re)connect; `false` only checks that a named exchange exists.', {
    type: 'boolean | RabbitmqSinkAssert',
    default: false,
    cli: 'assert',
    parse: booleanText,
    schema: ASSERT_SCHEMA,
    check: (value, fail, where) => {
      if (value === false) return false;
      if (value === true) return { exchangeType: 'topic', exchangeOptions: { durable: true }, queues: [] };
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return fail('true, false or an object { exchangeType, exchangeOptions, queues }');
      const a = objectOption<RabbitmqSinkAssert>(where, 'assert', value, SINK_ASSERT_KEYS)!;
      if (a.queues !== undefined && !Array.isArray(a.queues)) invalidOption(where, 'assert.queues', 'an array of { name, options, routingKey }', a.queues);
      return {
        exchangeType: a.exchangeType === undefined ? 'topic' : stringOption(where, 'assert.exchangeType', a.exchangeType, { required: true }),
        exchangeOptions: objectOption<ExchangeOptions>(where, 'assert.exchangeOptions', a.exchangeOptions, EXCHANGE_OPTION_KEYS) ?? { durable: true },
        queues: (a.queues ?? []).map((q: unknown, i) => {
          const path = `assert.queues[${i}]`;
          const spec = objectOption<RabbitmqSinkQueue>(where, path, q, SINK_QUEUE_KEYS);
          if (!spec) return invalidOption(where, path, 'an object { name, options, routingKey }', q);
          return {
            name: stringOption(where, `${path}.name`, spec.name, { required: true }),
            options: objectOption<QueueOptions>(where, `${path}.options`, spec.options, QUEUE_OPTION_KEYS) ?? { durable: true },
            ...(spec.routingKey === undefined ? {} : { routingKey: anyString(where, `${path}.routingKey`, spec.routingKey, '') }),
          };
        }),
      };
    },
  }),
  signal: common.signal('sink'),
  highWaterMark: common.highWaterMark(16),
});

/**
 * amqplib's own URL parameters (its `connect()` reads them from the query). The command
 * leaves these in the URL; any other query key that is not an option is refused.
 */
export const amqplibUrlParameters = defineOptions('amqplib', {
  heartbeat: opt.integer('Heartbeat period proposed to the broker, in seconds; 0 turns heartbeats off.', { min: 0, defaultText: "the broker's (60 on RabbitMQ)" }),
  frameMax: opt.integer('Largest frame proposed to the broker, in bytes (0: no limit).', { min: 0, default: 131_072 }),
  channelMax: opt.integer('Most channels proposed to the broker (0: no limit).', { min: 0, max: 65_535, default: 0 }),
  maxFrameSize: opt.integer('Largest frame accepted from the broker, in bytes: 0 for no limit, else at least 4096.', { min: 0, defaultText: '64 MiB, or the negotiated frameMax when larger' }),
  locale: opt.string("Locale of the broker's error texts.", { default: 'en_US' }),
});

// <options RabbitmqConnectionOptions>
/** How the AMQP connection is made and kept. Generated by `npm run options`. */
export interface RabbitmqConnectionOptions {
  /** Broker URL, `amqp://user:password@host:5672/vhost` or `amqps://`; amqplib reads its own parameters (`heartbeat`, `frameMax`, ...) from the query. Default `amqp://localhost:5672` (guest/guest). */
  url?: string | URL;
  /** Bound on opening the TCP connection. Default 10,000 ms. */
  connectTimeoutMs?: number;
  /** The connection name the broker shows (management UI, `rabbitmqctl list_connections client_properties`). Default `manifold <factory> <queue or exchange>`. */
  connectionName?: string;
  /** Reconnect policy, or `false` to fail on the first connection loss. Default 10 retries, 200 ms to 30 s apart (the `manifold` command: for ever). */
  retry?: RetryOptions | false;
  /** TLS settings of an `amqps://` URL (which alone means TLS with the system CAs): `{ ca, cert, key, passphrase, servername, rejectUnauthorized, minVersion }`, PEM text, bytes or file paths, re-read at every (re)connect. Refused with an `amqp://` URL: plaintext where TLS was asked is never silent. Default none (plain TCP), unless the URL says TLS. */
  tls?: boolean | TlsOptions;
  /** How the client logs in: `PLAIN` (the user and password of the URL, guest/guest without them) or `EXTERNAL` (the identity of the TLS client certificate `tls.cert`; the broker needs the rabbitmq_auth_mechanism_ssl plugin and a user named as the certificate). Default 'PLAIN'. */
  authMechanism?: 'PLAIN' | 'EXTERNAL';
}
// </options>

// <options RabbitmqSourceOptions>
/** Options of {@link rabbitmqSource}. Generated from its declaration by `npm run options`. */
export interface RabbitmqSourceOptions extends RabbitmqConnectionOptions {
  /** The queue to consume. Required. */
  queue: string;
  /** A fixed consumer tag, shown by the broker. Default one chosen by the broker. */
  consumerTag?: string;
  /** Most unacked messages the broker sends at once (basic.qos); this is the backpressure, and it bounds memory. Default 256. */
  prefetch?: number;
  /** Most payload bytes of unacked messages: the prefetch window is sized to it by the average message size (one until the first message), and at this many the consumer is cancelled (basic.cancel) and made again once acks bring it under half. Messages much larger than those before them can pass it, within `prefetch`. Default 64 MiB. */
  maxInFlightBytes?: number;
  /** Declare the queue (and bind it) on every (re)connect; `false` only checks that the queue exists. Default false. */
  assert?: boolean | RabbitmqSourceAssert;
  /** What `nack()` does: requeue (true), or reject so that the queue's dead-letter exchange receives the message (false). Default true. */
  nackRequeue?: boolean;
  /** How long `close()` waits for the acks of what was delivered before closing anyway. Default 30,000 ms. */
  closeTimeoutMs?: number;
  /** Destroys the source when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark, in messages. Default 16. */
  highWaterMark?: number;
}
// </options>

// <options RabbitmqSinkOptions>
/** Options of {@link rabbitmqSink}. Generated from its declaration by `npm run options`. */
export interface RabbitmqSinkOptions extends RabbitmqConnectionOptions {
  /** Exchange to publish to; '' is the default exchange, where the routing key names a queue. Default ''. */
  exchange?: string;
  /** Routing key of messages without their own `key` (a message's `key` wins). Default ''. */
  routingKey?: string;
  /** Mark messages persistent (delivery mode 2), so that a durable queue keeps them over a broker restart. Default true. */
  persistent?: boolean;
  /** Have the broker return messages no queue receives, and nack them (false: the broker drops them and they are acked). Default true. */
  mandatory?: boolean;
  /** Most publishes awaiting a broker confirm; writes wait beyond it. Default 1,000. */
  maxInFlight?: number;
  /** AMQP properties of every message (`contentType`, `expiration`, ...). */
  properties?: RabbitmqPublishProperties;
  /** Declare the exchange (and queues bound to it) on every (re)connect; `false` only checks that a named exchange exists. Default false. */
  assert?: boolean | RabbitmqSinkAssert;
  /** Destroys the sink when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark, in messages. Default 16. */
  highWaterMark?: number;
}
// </options>

// <options AmqplibUrlParameters>
/** Options of {@link amqplib}. Generated from its declaration by `npm run options`. */
export interface AmqplibUrlParameters {
  /** Heartbeat period proposed to the broker, in seconds; 0 turns heartbeats off. Default the broker's (60 on RabbitMQ). */
  heartbeat?: number;
  /** Largest frame proposed to the broker, in bytes (0: no limit). Default 131,072. */
  frameMax?: number;
  /** Most channels proposed to the broker (0: no limit). Default 0. */
  channelMax?: number;
  /** Largest frame accepted from the broker, in bytes: 0 for no limit, else at least 4096. Default 64 MiB, or the negotiated frameMax when larger. */
  maxFrameSize?: number;
  /** Locale of the broker's error texts. Default 'en_US'. */
  locale?: string;
}
// </options>
