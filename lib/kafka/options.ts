/**
 * The options of kafkaSource and kafkaSink, declared once (see `defineOptions`). The connection
 * options are one specs object both factories take.
 */
import { common, defineOptions, enumOption, invalidOption, opt, unknownOption } from '../core/options.js';
import { retryOption, type RetryOptions } from '../core/retry.js';
import { tlsOption, type TlsOptions } from '../core/tls.js';

/** SASL mechanisms; `AWS_MSK_IAM` is OAUTHBEARER with a token signed by the AWS credential chain. */
export const SASL_MECHANISMS = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512', 'AWS_MSK_IAM'] as const;

/** AWS credentials for `AWS_MSK_IAM`, as the AWS SDK takes them. */
export interface KafkaAwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}

/** SASL with a user and password (PLAIN, SCRAM). Secrets never appear in errors or events. */
export interface KafkaSaslPassword {
  mechanism: 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512';
  username: string;
  password: string;
}

/**
 * Amazon MSK IAM: OAUTHBEARER with a SigV4-presigned `kafka-cluster:Connect` URL as the token, signed
 * at every connect with `credentials` (default: the AWS SDK's default chain: environment, profile,
 * web identity, container and instance roles). Needs `tls`.
 */
export interface KafkaSaslAwsIam {
  mechanism: 'AWS_MSK_IAM';
  /** The cluster's region. Default: read from an MSK broker name (`b-1.x.y.c2.kafka.eu-west-1.amazonaws.com`), else AWS_REGION / AWS_DEFAULT_REGION. */
  region?: string;
  /** Credentials or a function returning them (an AWS SDK credential provider). Default the AWS SDK's default chain. */
  credentials?: KafkaAwsCredentials | (() => Promise<KafkaAwsCredentials>);
}

/** SASL settings. */
export type KafkaSaslOptions = KafkaSaslPassword | KafkaSaslAwsIam;

/** The keys of `sasl`, also the command's `sasl.<key>=` URI keys (credentials are only a program's). */
export const SASL_KEYS = ['mechanism', 'username', 'password', 'region'] as const;

const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;

/** Validates `sasl` (`where`: the factory, for messages); the password is never shown. */
export function checkSasl(value: unknown, where: string): KafkaSaslOptions {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) invalidOption(where, 'sasl', "an object { mechanism, username, password } (or { mechanism: 'AWS_MSK_IAM', region })", '(hidden)');
  const sasl = value as Record<string, unknown>;
  for (const key of Object.keys(sasl)) if (![...SASL_KEYS, 'credentials'].includes(key)) unknownOption(`${where}: options.sasl`, key, [...SASL_KEYS, 'credentials']);
  if (sasl.mechanism === undefined) invalidOption(where, 'sasl.mechanism', `one of ${SASL_MECHANISMS.join(', ')} (Kafka has no default)`, undefined);
  const mechanism = enumOption(where, 'sasl.mechanism', sasl.mechanism, SASL_MECHANISMS, 'PLAIN');
  if (mechanism === 'AWS_MSK_IAM') {
    for (const key of ['username', 'password'] as const) {
      if (sasl[key] !== undefined) invalidOption(where, `sasl.${key}`, 'absent with AWS_MSK_IAM, which signs with AWS credentials (sasl.credentials, or the default chain)', key === 'password' ? '(hidden)' : sasl[key]);
    }
    const out: KafkaSaslAwsIam = { mechanism };
    if (sasl.region !== undefined) {
      if (typeof sasl.region !== 'string' || !REGION.test(sasl.region)) invalidOption(where, 'sasl.region', 'an AWS region such as eu-west-1', sasl.region);
      out.region = sasl.region;
    }
    if (sasl.credentials !== undefined) {
      const c = sasl.credentials as Partial<KafkaAwsCredentials> | null;
      const ok = typeof c === 'function' || (c !== null && typeof c === 'object' && typeof c.accessKeyId === 'string' && c.accessKeyId !== '' && typeof c.secretAccessKey === 'string' && c.secretAccessKey !== '');
      if (!ok) invalidOption(where, 'sasl.credentials', '{ accessKeyId, secretAccessKey, sessionToken? } or a function returning them', '(hidden)');
      out.credentials = sasl.credentials as KafkaSaslAwsIam['credentials'];
    }
    return out;
  }
  if (sasl.region !== undefined || sasl.credentials !== undefined) invalidOption(where, sasl.region !== undefined ? 'sasl.region' : 'sasl.credentials', `given only with mechanism AWS_MSK_IAM (not ${mechanism})`, sasl.region !== undefined ? sasl.region : '(hidden)');
  if (typeof sasl.username !== 'string' || sasl.username.length === 0) invalidOption(where, 'sasl.username', 'a non-empty string', sasl.username);
  // The password is checked without echoing it.
  if (typeof sasl.password !== 'string' || sasl.password.length === 0) invalidOption(where, 'sasl.password', 'a non-empty string', '<hidden>');
  return { mechanism, username: sasl.username, password: sasl.password };
}

/** What both factories take to reach the brokers. */
export const kafkaConnection = {
  brokers: opt.strings("Bootstrap brokers: `'host:port'`, `'h1:p1,h2:p2'` or an array of them.", { required: true, cli: false }),
  clientId: opt.string('Client id shown in broker logs and quotas.', { default: 'manifold' }),
  sasl: opt.custom<KafkaSaslOptions>(
    "SASL authentication: `{ mechanism: 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512', username, password }`, or `{ mechanism: 'AWS_MSK_IAM', region?, credentials? }` (Amazon MSK IAM: OAUTHBEARER signed with the AWS credential chain; needs `tls`).",
    {
      type: 'KafkaSaslOptions',
      defaultText: 'none',
      secret: true,
      cli: 'sasl',
      subkeys: SASL_KEYS,
      schema: {
        type: 'object',
        additionalProperties: false,
        required: ['mechanism'],
        properties: {
          mechanism: { enum: [...SASL_MECHANISMS] },
          username: { type: 'string', minLength: 1 },
          password: { type: 'string', minLength: 1, description: 'Secret: write ${ENV}.' },
          region: { type: 'string', description: 'AWS_MSK_IAM: the cluster region (default from the broker name or AWS_REGION).' },
        },
      },
      check: (value, _fail, where) => checkSasl(value, where),
    },
  ),
  tls: tlsOption(),
  connectTimeoutMs: opt.duration('Longest wait for a TCP/TLS connection.', { default: 5000 }),
};

export type { TlsOptions };

export const kafkaSourceOptions = defineOptions('kafkaSource', {
  ...kafkaConnection,
  topics: opt.strings('Topic or topics to consume.', { required: true, cli: false }),
  groupId: opt.string('Consumer group; processes with the same `groupId` share the partitions.', { required: true, cli: 'group' }),
  startFrom: opt.enum('Where a partition without a committed offset starts.', ['latest', 'earliest'], { default: 'latest', cli: 'from' }),
  maxInFlightPerPartition: opt.integer('Most messages per partition past the committed offset (unacked, or acked behind one that is not); fetching pauses at this many.', { default: 1000, min: 1 }),
  maxInFlightBytes: opt.bytes(
    'Most payload (record value) bytes of unacked messages this source holds, every partition together; handing over and fetching pause at this many and resume as acks bring it under (what was fetched by then comes on top: the rest of one fetch response and at most one more from each broker, each about `fetchMaxBytes`).',
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
  /** SASL authentication: `{ mechanism: 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512', username, password }`, or `{ mechanism: 'AWS_MSK_IAM', region?, credentials? }` (Amazon MSK IAM: OAUTHBEARER signed with the AWS credential chain; needs `tls`). Default none. */
  sasl?: KafkaSaslOptions;
  /** TLS: `true` for the system CAs, or `{ ca, cert, key, passphrase, servername, rejectUnauthorized, minVersion }` with PEM text, bytes or file paths (re-read at every connect). Default none (plain TCP), unless the URL says TLS. */
  tls?: boolean | TlsOptions;
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
  /** Most payload (record value) bytes of unacked messages this source holds, every partition together; handing over and fetching pause at this many and resume as acks bring it under (what was fetched by then comes on top: the rest of one fetch response and at most one more from each broker, each about `fetchMaxBytes`). Default 64 MiB. */
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
