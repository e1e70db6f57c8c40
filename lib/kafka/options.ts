/**
 * The options of kafkaSource and kafkaSink, declared once (see `defineOptions`). The connection
 * options are one specs object both factories take.
 */
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { common, defineOptions, enumOption, invalidOption, opt, unknownOption } from '../core/options.js';
import { retryOption, type RetryOptions } from '../core/retry.js';

/** SASL credentials. Secrets never appear in errors or events. */
export interface KafkaSaslOptions {
  mechanism: 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512';
  username: string;
  password: string;
}

const SASL_KEYS = ['mechanism', 'username', 'password'];

function checkSasl(value: unknown, fail: (expected: string) => never, where: string): KafkaSaslOptions {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail('an object { mechanism, username, password }');
  const sasl = value as Record<string, unknown>;
  for (const key of Object.keys(sasl)) if (!SASL_KEYS.includes(key)) unknownOption(`${where}: options.sasl`, key, SASL_KEYS);
  const mechanism = enumOption(where, 'sasl.mechanism', sasl.mechanism, ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const, 'PLAIN');
  if (typeof sasl.username !== 'string' || sasl.username.length === 0) invalidOption(where, 'sasl.username', 'a non-empty string', sasl.username);
  // The password is checked without echoing it.
  if (typeof sasl.password !== 'string' || sasl.password.length === 0) invalidOption(where, 'sasl.password', 'a non-empty string', '<hidden>');
  return { mechanism, username: sasl.username, password: sasl.password };
}

/** What both factories take to reach the brokers. */
export const kafkaConnection = {
  brokers: opt.strings("Bootstrap brokers: `'host:port'`, `'h1:p1,h2:p2'` or an array of them.", { required: true, cli: false }),
  clientId: opt.string('Client id shown in broker logs and quotas.', { default: 'manifold' }),
  sasl: opt.custom<KafkaSaslOptions>("SASL authentication: `{ mechanism: 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512', username, password }`.", {
    type: 'KafkaSaslOptions',
    defaultText: 'none',
    secret: true,
    check: checkSasl,
  }),
  tls: opt.custom<TlsConnectionOptions | undefined>('TLS: `true` for the system CAs, or Node `tls.connect` options.', {
    type: 'boolean | TlsConnectionOptions',
    defaultText: 'plain TCP',
    check: (value, fail) => {
      if (value === true) return {};
      if (value === false) return undefined;
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail('true, false or tls.connect options');
      return { ...(value as TlsConnectionOptions) };
    },
  }),
  connectTimeoutMs: opt.duration('Longest wait for a TCP/TLS connection.', { default: 5000 }),
};

export const kafkaSourceOptions = defineOptions('kafkaSource', {
  ...kafkaConnection,
  topics: opt.strings('Topic or topics to consume.', { required: true, cli: false }),
  groupId: opt.string('Consumer group; processes with the same `groupId` share the partitions.', { required: true, cli: 'group' }),
  startFrom: opt.enum('Where a partition without a committed offset starts.', ['latest', 'earliest'], { default: 'latest', cli: 'from' }),
  maxInFlightPerPartition: opt.integer('Most messages per partition past the committed offset (unacked, or acked behind one that is not); fetching pauses at this many.', { default: 1000, min: 1 }),
  maxInFlightBytes: opt.bytes(
    'Most payload (record value) bytes of unacked messages this source holds, every partition together; fetching pauses at this many and resumes as acks bring it under (what the client fetched meanwhile, up to about one fetch of `fetchMaxBytes`, comes on top).',
    { default: 64 * 1024 * 1024, cli: 'maxInFlightBytes' },
  ),
  commitIntervalMs: opt.duration('How often acked offsets are committed.', { default: 5000 }),
  closeTimeoutMs: opt.duration('Longest `close()` waits for outstanding acks before committing what it has.', { default: 30_000, min: 0 }),
  sessionTimeoutMs: opt.duration("Group session: how long until a dead member's partitions move (the broker's `group.min.session.timeout.ms` applies).", { default: 30_000 }),
  heartbeatIntervalMs: opt.duration('Group heartbeat interval; must be below `sessionTimeoutMs`.', { defaultText: '3,000 ms, or a third of `sessionTimeoutMs` when that is less' }),
  maxWaitMs: opt.duration('Longest a fetch waits on the broker for new data (also bounds how long `close()` waits for a fetch).', { default: 500, min: 0 }),
  fetchMaxBytes: opt.bytes('Most bytes one fetch returns, across partitions.', { default: 4 * 1024 * 1024, min: 1024 }),
  autocreateTopics: opt.boolean('Let the broker create a missing topic (auto.create.topics.enable); otherwise a missing topic fails the source with `MANIFOLD_ERR_NOT_FOUND`.', { default: false }),
  retry: retryOption('Reconnects after a broker failure (the group resumes at the committed offsets); `false` fails at once.'),
  signal: common.signal('source'),
  highWaterMark: common.highWaterMark(256),
});

export const kafkaSinkOptions = defineOptions('kafkaSink', {
  ...kafkaConnection,
  topic: opt.string('Topic to produce to.', { required: true, cli: false }),
  acks: opt.enum('Broker acknowledgement a message is acked on: every in-sync replica, the leader, or none (acked when sent).', ['all', 'leader', 'none'], { default: 'all' }),
  idempotent: opt.boolean('Idempotent producer: the broker drops a retried batch it already has; needs `acks: \'all\'`.', { defaultText: "true with `acks: 'all'`, else false" }),
  batchSize: opt.integer('Most messages in one produce request.', { default: 1000, min: 1 }),
  // Not the derived `batch`: next to batchSize it would read as a count.
  batchBytes: opt.bytes('Most payload bytes (data, key, headers) in one produce request.', { default: 1024 * 1024, cli: 'batchBytes' }),
  lingerMs: opt.duration('How long a non-full batch waits for more; 0 sends as soon as the producer is free (while a request is in flight the next batch fills).', { default: 0, min: 0 }),
  // Kafka keeps an idempotent producer's order for at most 5 requests in flight per connection.
  maxInFlightRequests: opt.integer('Produce requests in flight at once; more than 1 keeps per-partition order only with `idempotent`.', { default: 1, min: 1, max: 5 }),
  compression: opt.enum('Compression of record batches.', ['none', 'gzip', 'snappy', 'lz4', 'zstd'], { default: 'none' }),
  maxMessageBytes: opt.bytes("Largest message (data, key, headers) sent; a larger one is nacked without a request (the broker's own limit is about 1 MiB).", { default: 1_000_000 }),
  autocreateTopics: opt.boolean('Let the broker create a missing topic (auto.create.topics.enable); otherwise a missing topic fails the sink with `MANIFOLD_ERR_NOT_FOUND`.', { default: false }),
  retry: retryOption('Re-creates the producer after a transient failure and re-sends what was not acked; `false` fails at once.'),
  signal: common.signal('sink'),
  highWaterMark: common.highWaterMark(1024),
});

// <options KafkaConnectionOptions>
/** How a Kafka client connects: brokers, client id, TLS and SASL. Generated by `npm run options`. */
export interface KafkaConnectionOptions {
  /** Bootstrap brokers: `'host:port'`, `'h1:p1,h2:p2'` or an array of them. Required. */
  brokers: string | readonly string[];
  /** Client id shown in broker logs and quotas. Default 'manifold'. */
  clientId?: string;
  /** SASL authentication: `{ mechanism: 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512', username, password }`. Default none. */
  sasl?: KafkaSaslOptions;
  /** TLS: `true` for the system CAs, or Node `tls.connect` options. Default plain TCP. */
  tls?: boolean | TlsConnectionOptions;
  /** Longest wait for a TCP/TLS connection. Default 5,000 ms. */
  connectTimeoutMs?: number;
}
// </options>

// <options KafkaSourceOptions>
/** Options of {@link kafkaSource}. Generated from its declaration by `npm run options`. */
export interface KafkaSourceOptions extends KafkaConnectionOptions {
  /** Topic or topics to consume. Required. */
  topics: string | readonly string[];
  /** Consumer group; processes with the same `groupId` share the partitions. Required. */
  groupId: string;
  /** Where a partition without a committed offset starts. Default 'latest'. */
  startFrom?: 'latest' | 'earliest';
  /** Most messages per partition past the committed offset (unacked, or acked behind one that is not); fetching pauses at this many. Default 1,000. */
  maxInFlightPerPartition?: number;
  /** Most payload (record value) bytes of unacked messages this source holds, every partition together; fetching pauses at this many and resumes as acks bring it under (what the client fetched meanwhile, up to about one fetch of `fetchMaxBytes`, comes on top). Default 64 MiB. */
  maxInFlightBytes?: number;
  /** How often acked offsets are committed. Default 5,000 ms. */
  commitIntervalMs?: number;
  /** Longest `close()` waits for outstanding acks before committing what it has. Default 30,000 ms. */
  closeTimeoutMs?: number;
  /** Group session: how long until a dead member's partitions move (the broker's `group.min.session.timeout.ms` applies). Default 30,000 ms. */
  sessionTimeoutMs?: number;
  /** Group heartbeat interval; must be below `sessionTimeoutMs`. Default 3,000 ms, or a third of `sessionTimeoutMs` when that is less. */
  heartbeatIntervalMs?: number;
  /** Longest a fetch waits on the broker for new data (also bounds how long `close()` waits for a fetch). Default 500 ms. */
  maxWaitMs?: number;
  /** Most bytes one fetch returns, across partitions. Default 4 MiB. */
  fetchMaxBytes?: number;
  /** Let the broker create a missing topic (auto.create.topics.enable); otherwise a missing topic fails the source with `MANIFOLD_ERR_NOT_FOUND`. Default false. */
  autocreateTopics?: boolean;
  /** Reconnects after a broker failure (the group resumes at the committed offsets); `false` fails at once. Default 10 retries, 200 ms to 30 s apart (the `manifold` command: for ever). */
  retry?: RetryOptions | false;
  /** Destroys the source when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark, in messages. Default 256. */
  highWaterMark?: number;
}
// </options>

// <options KafkaSinkOptions>
/** Options of {@link kafkaSink}. Generated from its declaration by `npm run options`. */
export interface KafkaSinkOptions extends KafkaConnectionOptions {
  /** Topic to produce to. Required. */
  topic: string;
  /** Broker acknowledgement a message is acked on: every in-sync replica, the leader, or none (acked when sent). Default 'all'. */
  acks?: 'all' | 'leader' | 'none';
  /** Idempotent producer: the broker drops a retried batch it already has; needs `acks: 'all'`. Default true with `acks: 'all'`, else false. */
  idempotent?: boolean;
  /** Most messages in one produce request. Default 1,000. */
  batchSize?: number;
  /** Most payload bytes (data, key, headers) in one produce request. Default 1 MiB. */
  batchBytes?: number;
  /** How long a non-full batch waits for more; 0 sends as soon as the producer is free (while a request is in flight the next batch fills). Default 0 ms. */
  lingerMs?: number;
  /** Produce requests in flight at once; more than 1 keeps per-partition order only with `idempotent`. Default 1. */
  maxInFlightRequests?: number;
  /** Compression of record batches. Default 'none'. */
  compression?: 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd';
  /** Largest message (data, key, headers) sent; a larger one is nacked without a request (the broker's own limit is about 1 MiB). Default 1,000,000 bytes. */
  maxMessageBytes?: number;
  /** Let the broker create a missing topic (auto.create.topics.enable); otherwise a missing topic fails the sink with `MANIFOLD_ERR_NOT_FOUND`. Default false. */
  autocreateTopics?: boolean;
  /** Re-creates the producer after a transient failure and re-sends what was not acked; `false` fails at once. Default 10 retries, 200 ms to 30 s apart (the `manifold` command: for ever). */
  retry?: RetryOptions | false;
  /** Destroys the sink when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark, in messages. Default 1,024. */
  highWaterMark?: number;
}
// </options>
