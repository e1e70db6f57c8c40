/**
 * The options of kinesisSource, kinesisSink and dynamoLeases, declared once (see `defineOptions`).
 * The AWS connection options come from `awsConnectionOptions()`; what the source and the sink
 * share (the stream, the connection, the retry) is one specs object spread into both. What
 * concerns two options at once stays in code: a client with region, endpoint or credentials
 * (`awsConnection()`), streamName with streamARN (`resolveStream()`), and the factories' own.
 */
import type { DynamoDBClient, DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import type { KinesisClient, KinesisClientConfig } from '@aws-sdk/client-kinesis';
import { DEFAULT_REQUEST_TIMEOUT_MS, awsConnectionOptions } from '../core/aws-options.js';
import type { Message } from '../core/message.js';
import { common, defineOptions, opt, type OptionSpecs } from '../core/options.js';
import { retryOption, type RetryOptions } from '../core/retry.js';
import type { TlsOptions } from '../core/tls.js';
import type { Checkpointer } from './checkpoint.js';
import type { ShardCoordinator } from './coordinator.js';
import { STARTING_POSITIONS, toStartingPosition, type StartingPosition } from './positions.js';

// Kinesis limits: PutRecords takes at most 500 records and 5 MiB, partition keys included;
// one record (data + partition key) is at most 1 MiB; a partition key is 1 to 256 characters;
// GetRecords returns at most 10,000 records.
export const MAX_BATCH_RECORDS = 500;
export const MAX_BATCH_BYTES = 5 * 1024 * 1024;
export const MAX_RECORD_BYTES = 1024 * 1024;
export const MAX_KEY_LENGTH = 256;
const MAX_RECORDS_PER_CALL = 10_000;
/** Kinesis allows 5 GetRecords calls per second per shard: calls of one shard are at least this far apart. */
export const MIN_CALL_GAP_MS = 200;

/** A stream name as Kinesis allows it. */
export const STREAM_NAME = /^[a-zA-Z0-9_.-]{1,128}$/;
/** A stream ARN; its last part is the stream's name. */
export const STREAM_ARN = /^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:\d{12}:stream\/([a-zA-Z0-9_.-]{1,128})$/;

const kinesisConnection = awsConnectionOptions({
  client: 'KinesisClient',
  credentials: "KinesisClientConfig['credentials']",
  requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS,
  requestTimeoutDoc:
    "Longest one Kinesis call may take, response included, before it is aborted and retried (`retry`) as a connection failure, also through a client you pass; for enhanced fan-out, the wait for a subscription's response (and, on the HTTP/2 client the source builds, a subscription silent that long).",
});

/** What the source and the sink share: the stream, and how to reach it. */
export const kinesisStream = {
  streamName: opt.custom<string>("The stream's name (on the command line: `kinesis:<stream>`); give it or `streamARN`, or both naming the same stream.", {
    type: 'string',
    check: (value, fail) => (typeof value === 'string' && STREAM_NAME.test(value) ? value : fail('a Kinesis stream name (1 to 128 of a-z, A-Z, 0-9, _ . -)')),
  }),
  streamARN: opt.custom<string>("The stream's ARN.", {
    type: 'string',
    check: (value, fail) => (typeof value === 'string' && STREAM_ARN.test(value) ? value : fail('a Kinesis stream ARN (arn:aws:kinesis:<region>:<account>:stream/<name>)')),
  }),
  ...kinesisConnection,
} satisfies OptionSpecs;

export const kinesisSourceOptions = defineOptions('kinesisSource', {
  ...kinesisStream,
  startingPosition: opt.custom<StartingPosition, 'LATEST'>(
    "Where shards without a checkpoint start: `'LATEST'`, `'TRIM_HORIZON'`, `{ timestamp: Date | ms }`, or `{ afterSequenceNumber }` with exactly one `shardIds` entry; children found later, and on a restart the children of a read parent, start at their beginning.",
    {
      type: 'StartingPosition',
      default: 'LATEST',
      check: (value, fail) => toStartingPosition(value) ?? fail(STARTING_POSITIONS),
    },
  ),
  shardIds: opt.custom<readonly string[]>('Read only these shards (not their children); the source ends once they are read to their end.', {
    type: 'readonly string[]',
    defaultText: 'every shard',
    cli: 'shards',
    parse: (text) => text.split(','),
    schema: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 }] },
    check: (value, fail) =>
      Array.isArray(value) && value.length > 0 && value.every((s) => typeof s === 'string' && s.length > 0) ? [...(value as string[])] : fail('a non-empty array of shard ids'),
  }),
  checkpointer: opt.custom<Checkpointer>("Where per-shard checkpoints are loaded from and stored, under the stream's name.", {
    type: 'Checkpointer',
    defaultText: 'a new `memoryCheckpointer()`',
    check: (value, fail) =>
      typeof (value as Checkpointer | null)?.load === 'function' && typeof (value as Checkpointer).store === 'function'
        ? (value as Checkpointer)
        : fail('a Checkpointer (an object with load(scope) and store(scope, checkpoints))'),
  }),
  coordinator: opt.custom<ShardCoordinator>(
    'Share the stream with other processes: read only the shards it leases to this source and checkpoint into the leases (`dynamoLeases()`); excludes `checkpointer` and `shardIds`.',
    {
      type: 'ShardCoordinator',
      check: (value, fail) => {
        const c = value as Partial<ShardCoordinator> | null;
        return typeof c?.start === 'function' && typeof c.sync === 'function' && typeof c.checkpoint === 'function' && typeof c.stop === 'function'
          ? (value as ShardCoordinator)
          : fail('a ShardCoordinator such as dynamoLeases({ tableName })');
      },
    },
  ),
  checkpointIntervalMs: opt.duration('How often acked progress is stored; it is also stored on `close()`.', { default: 5_000 }),
  maxInFlightPerShard: opt.integer(
    'Most messages (user records, once KPL aggregates are split) per shard past the checkpoint (unacked, or acked behind one that is not); the shard stops fetching and handing out at this many. The default lets a GetRecords call take the 10,000 records the service allows; `maxInFlightBytes` bounds the memory.',
    { default: 10_000, min: 1 },
  ),
  maxInFlightBytes: opt.bytes(
    'Most payload bytes this source holds, every shard together: unacked messages plus records fetched and not yet handed out; shards stop fetching at this many and resume as acks bring it under (one GetRecords page or fan-out event per shard may come on top).',
    { default: 64 * 1024 * 1024, cli: 'maxInFlightBytes' },
  ),
  malformedAggregates: opt.enum(
    "A record with the KPL magic bytes that does not decode (too short, MD5 mismatch, bad protobuf): `'reject'` delivers its bytes as one message with `meta.malformed` (the reason), which flow() and the command send to the error policy (dead-letter sink, else failure); `'deliver'` delivers it as an ordinary record, as the KCL does. Both emit `'malformed'`.",
    ['reject', 'deliver'],
    { default: 'reject' },
  ),
  consumerName: opt.string('Read by enhanced fan-out as this stream consumer (registered if missing).', { defaultText: 'none: polling' }),
  deregisterOnClose: opt.boolean('Deregister the consumer on `close()` (enhanced fan-out only).', { default: false }),
  retry: retryOption('Retry of each Kinesis call on throttling and transient faults; `false` for none.'),
  pollIntervalMs: opt.duration('Polling: wait between GetRecords calls of a shard that is caught up; at least 200 ms, as Kinesis allows 5 calls per second per shard.', {
    default: 1_000,
    min: MIN_CALL_GAP_MS,
  }),
  maxRecordsPerCall: opt.integer('Polling: most records per GetRecords call (10,000 is the GetRecords limit); also capped by the room left under `maxInFlightPerShard`. Lower it to lower what a page can add on top of `maxInFlightBytes`.', {
    note: 'the GetRecords limit',
    default: MAX_RECORDS_PER_CALL,
    min: 1,
    max: MAX_RECORDS_PER_CALL,
  }),
  shardDiscoveryIntervalMs: opt.duration('How often the shard list is refreshed to find new shards; it is also refreshed when a shard ends.', { default: 10_000 }),
  resubscribeAfterMs: opt.duration('Enhanced fan-out: renew each subscription after this long; Kinesis ends them at 5 minutes.', { default: 290_000, min: 100 }),
  closeTimeoutMs: opt.duration('Longest `close()` waits for outstanding acks before storing the final checkpoints.', { default: 30_000, min: 0 }),
  signal: common.signal('source'),
  highWaterMark: common.highWaterMark(256),
});

export const kinesisSinkOptions = defineOptions('kinesisSink', {
  ...kinesisStream,
  partitionKey: opt.custom<string | ((message: Message) => string)>('Partition key of messages without a `key`: a string, or a function of the message.', {
    type: 'string | ((message: Message) => string)',
    defaultText: 'a random key per message (spread over the shards, no order)',
    cli: 'partitionKey',
    schema: { type: 'string', minLength: 1, maxLength: MAX_KEY_LENGTH },
    check: (value, fail) =>
      typeof value === 'function' || (typeof value === 'string' && value.length > 0 && value.length <= MAX_KEY_LENGTH)
        ? (value as string | ((message: Message) => string))
        : fail(`a string of 1 to ${MAX_KEY_LENGTH} characters or a function of the message`),
  }),
  maxBatchRecords: opt.integer('Most records per PutRecords request (500 is the PutRecords limit).', { default: MAX_BATCH_RECORDS, min: 1, max: MAX_BATCH_RECORDS, note: 'the PutRecords limit' }),
  maxBatchBytes: opt.bytes('Most bytes per PutRecords request, data plus partition keys (5 MiB is the PutRecords limit).', { default: MAX_BATCH_BYTES, max: MAX_BATCH_BYTES, note: 'the PutRecords limit' }),
  maxRecordBytes: opt.bytes('Largest record (data plus partition key) the stream takes; a larger one is nacked, and emitted as `reject`.', {
    defaultText: '1 MiB, or `maxBatchBytes` when that is less',
  }),
  lingerMs: opt.duration('How long a batch that is not full waits for more records before it is sent.', { default: 20, min: 0 }),
  maxInFlightRequests: opt.integer('PutRecords requests in flight at once; 1 keeps per-key order (two in flight may land in either order).', { default: 1, min: 1 }),
  retry: retryOption('Retry of whole requests (throttling, network, 5xx, no response within `requestTimeoutMs`) and of the failed entries of a partial failure; `false` for none.'),
  signal: common.signal('sink (buffered records are nacked)'),
  highWaterMark: common.highWaterMark(500),
});

const dynamo = awsConnectionOptions({
  client: 'DynamoDBClient',
  credentials: "DynamoDBClientConfig['credentials']",
  requestTimeoutText: 'half of `renewIntervalMs`, from 1,000 to 30,000 ms (1,666 ms with the default lease)',
  requestTimeoutDoc:
    'Longest one DynamoDB call may take (also through a client you pass); then the round that made it fails with a retryable error (a `warning` on the source) and the next round tries again, early enough to keep the lease.',
});

/**
 * On the command line the lease options are keys of a `kinesis:` source URI: the table is
 * `leaseTable=`, its endpoint `dynamoEndpoint=`, and the region is the source's.
 */
export const dynamoLeasesOptions = defineOptions('dynamoLeases', {
  tableName: opt.string('The lease table; one table can hold several streams.', { required: true, cli: 'leaseTable' }),
  client: dynamo.client,
  region: { ...dynamo.region, cli: false },
  endpoint: { ...dynamo.endpoint, cli: 'dynamoEndpoint' },
  tls: { ...dynamo.tls, cli: 'dynamoTls' },
  credentials: dynamo.credentials,
  // The source's requestTimeout= and connectTimeout= keys are not passed on: a renew must give up within the renew interval.
  requestTimeoutMs: { ...dynamo.requestTimeoutMs, cli: false },
  connectTimeoutMs: { ...dynamo.connectTimeoutMs, cli: false },
  workerId: opt.string("This worker's name in the table, unique among live workers; a worker restarted with the same id takes its leases back at once.", {
    defaultText: '`<hostname>-<pid>-<random>`',
  }),
  leaseDurationMs: opt.duration("A lease whose counter has not moved for this long (on the observer's clock) is expired and may be taken.", { default: 10_000, min: 100 }),
  renewIntervalMs: opt.duration('How often leases are renewed and the table is read to take, balance and hand over leases; at most half of `leaseDurationMs`.', {
    defaultText: 'a third of `leaseDurationMs`',
    min: 10,
  }),
  createTable: opt.boolean('Create the table (on-demand billing) when it does not exist; otherwise a missing table is a NOT_FOUND error.', { default: true }),
});

// <options KinesisStreamOptions>
/** Which stream, and how the Kinesis client is made. Generated by `npm run options`. */
export interface KinesisStreamOptions {
  /** The stream's name (on the command line: `kinesis:<stream>`); give it or `streamARN`, or both naming the same stream. */
  streamName?: string;
  /** The stream's ARN. */
  streamARN?: string;
  /** A ready KinesisClient to use; region, endpoint, tls, credentials and connectTimeoutMs then belong to it. */
  client?: KinesisClient;
  /** AWS region. Default: from the environment (AWS_REGION) or the shared config; "us-east-1" with a local endpoint on the command line. */
  region?: string;
  /** Endpoint URL of a compatible service or a local server (a plain http:// one is spoken to over HTTP/1.1). */
  endpoint?: string;
  /** AWS credentials ({ accessKeyId, secretAccessKey, sessionToken }) or a credential provider. Default: the SDK chain. */
  credentials?: KinesisClientConfig['credentials'];
  /** Longest one Kinesis call may take, response included, before it is aborted and retried (`retry`) as a connection failure, also through a client you pass; for enhanced fan-out, the wait for a subscription's response (and, on the HTTP/2 client the source builds, a subscription silent that long). Default 30,000 ms. */
  requestTimeoutMs?: number;
  /** Longest opening a connection may take, for the client the connector builds. Default 5,000 ms. */
  connectTimeoutMs?: number;
  /** TLS of an `https://` endpoint: `{ ca, cert, key, passphrase, servername, rejectUnauthorized, minVersion }` for a private CA or a client certificate (PEM text, bytes or file paths, re-read at every new connection); for the client the connector builds, refused with an `http://` endpoint. Default none (plain TCP), unless the URL says TLS. */
  tls?: boolean | TlsOptions;
}
// </options>

// <options KinesisSourceOptions>
/** Options of {@link kinesisSource}. Generated from its declaration by `npm run options`. */
export interface KinesisSourceOptions extends KinesisStreamOptions {
  /** Where shards without a checkpoint start: `'LATEST'`, `'TRIM_HORIZON'`, `{ timestamp: Date | ms }`, or `{ afterSequenceNumber }` with exactly one `shardIds` entry; children found later, and on a restart the children of a read parent, start at their beginning. Default 'LATEST'. */
  startingPosition?: StartingPosition;
  /** Read only these shards (not their children); the source ends once they are read to their end. Default every shard. */
  shardIds?: readonly string[];
  /** Where per-shard checkpoints are loaded from and stored, under the stream's name. Default a new `memoryCheckpointer()`. */
  checkpointer?: Checkpointer;
  /** Share the stream with other processes: read only the shards it leases to this source and checkpoint into the leases (`dynamoLeases()`); excludes `checkpointer` and `shardIds`. */
  coordinator?: ShardCoordinator;
  /** How often acked progress is stored; it is also stored on `close()`. Default 5,000 ms. */
  checkpointIntervalMs?: number;
  /** Most messages (user records, once KPL aggregates are split) per shard past the checkpoint (unacked, or acked behind one that is not); the shard stops fetching and handing out at this many. The default lets a GetRecords call take the 10,000 records the service allows; `maxInFlightBytes` bounds the memory. Default 10,000. */
  maxInFlightPerShard?: number;
  /** Most payload bytes this source holds, every shard together: unacked messages plus records fetched and not yet handed out; shards stop fetching at this many and resume as acks bring it under (one GetRecords page or fan-out event per shard may come on top). Default 64 MiB. */
  maxInFlightBytes?: number;
  /** A record with the KPL magic bytes that does not decode (too short, MD5 mismatch, bad protobuf): `'reject'` delivers its bytes as one message with `meta.malformed` (the reason), which flow() and the command send to the error policy (dead-letter sink, else failure); `'deliver'` delivers it as an ordinary record, as the KCL does. Both emit `'malformed'`. Default 'reject'. */
  malformedAggregates?: 'reject' | 'deliver';
  /** Read by enhanced fan-out as this stream consumer (registered if missing). Default none: polling. */
  consumerName?: string;
  /** Deregister the consumer on `close()` (enhanced fan-out only). Default false. */
  deregisterOnClose?: boolean;
  /** Retry of each Kinesis call on throttling and transient faults; `false` for none. Default 10 retries, 200 ms to 30 s apart (the `manifold` command: for ever). */
  retry?: RetryOptions | false;
  /** Polling: wait between GetRecords calls of a shard that is caught up; at least 200 ms, as Kinesis allows 5 calls per second per shard. Default 1,000 ms. */
  pollIntervalMs?: number;
  /** Polling: most records per GetRecords call (10,000 is the GetRecords limit); also capped by the room left under `maxInFlightPerShard`. Lower it to lower what a page can add on top of `maxInFlightBytes`. Default 10,000. */
  maxRecordsPerCall?: number;
  /** How often the shard list is refreshed to find new shards; it is also refreshed when a shard ends. Default 10,000 ms. */
  shardDiscoveryIntervalMs?: number;
  /** Enhanced fan-out: renew each subscription after this long; Kinesis ends them at 5 minutes. Default 290,000 ms. */
  resubscribeAfterMs?: number;
  /** Longest `close()` waits for outstanding acks before storing the final checkpoints. Default 30,000 ms. */
  closeTimeoutMs?: number;
  /** Destroys the source when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark, in messages. Default 256. */
  highWaterMark?: number;
}
// </options>

// <options KinesisSinkOptions>
/** Options of {@link kinesisSink}. Generated from its declaration by `npm run options`. */
export interface KinesisSinkOptions extends KinesisStreamOptions {
  /** Partition key of messages without a `key`: a string, or a function of the message. Default a random key per message (spread over the shards, no order). */
  partitionKey?: string | ((message: Message) => string);
  /** Most records per PutRecords request (500 is the PutRecords limit). Default 500. */
  maxBatchRecords?: number;
  /** Most bytes per PutRecords request, data plus partition keys (5 MiB is the PutRecords limit). Default 5 MiB. */
  maxBatchBytes?: number;
  /** Largest record (data plus partition key) the stream takes; a larger one is nacked, and emitted as `reject`. Default 1 MiB, or `maxBatchBytes` when that is less. */
  maxRecordBytes?: number;
  /** How long a batch that is not full waits for more records before it is sent. Default 20 ms. */
  lingerMs?: number;
  /** PutRecords requests in flight at once; 1 keeps per-key order (two in flight may land in either order). Default 1. */
  maxInFlightRequests?: number;
  /** Retry of whole requests (throttling, network, 5xx, no response within `requestTimeoutMs`) and of the failed entries of a partial failure; `false` for none. Default 10 retries, 200 ms to 30 s apart (the `manifold` command: for ever). */
  retry?: RetryOptions | false;
  /** Destroys the sink (buffered records are nacked) when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark, in messages. Default 500. */
  highWaterMark?: number;
}
// </options>

// <options DynamoLeasesOptions>
/** Options of {@link dynamoLeases}. Generated from its declaration by `npm run options`. */
export interface DynamoLeasesOptions {
  /** The lease table; one table can hold several streams. Required. */
  tableName: string;
  /** A ready DynamoDBClient to use; region, endpoint, tls, credentials and connectTimeoutMs then belong to it. */
  client?: DynamoDBClient;
  /** AWS region. Default: from the environment (AWS_REGION) or the shared config; "us-east-1" with a local endpoint on the command line. */
  region?: string;
  /** Endpoint URL of a compatible service or a local server (a plain http:// one is spoken to over HTTP/1.1). */
  endpoint?: string;
  /** TLS of an `https://` endpoint: `{ ca, cert, key, passphrase, servername, rejectUnauthorized, minVersion }` for a private CA or a client certificate (PEM text, bytes or file paths, re-read at every new connection); for the client the connector builds, refused with an `http://` endpoint. Default none (plain TCP), unless the URL says TLS. */
  tls?: boolean | TlsOptions;
  /** AWS credentials ({ accessKeyId, secretAccessKey, sessionToken }) or a credential provider. Default: the SDK chain. */
  credentials?: DynamoDBClientConfig['credentials'];
  /** Longest one DynamoDB call may take (also through a client you pass); then the round that made it fails with a retryable error (a `warning` on the source) and the next round tries again, early enough to keep the lease. Default half of `renewIntervalMs`, from 1,000 to 30,000 ms (1,666 ms with the default lease). */
  requestTimeoutMs?: number;
  /** Longest opening a connection may take, for the client the connector builds. Default 5,000 ms. */
  connectTimeoutMs?: number;
  /** This worker's name in the table, unique among live workers; a worker restarted with the same id takes its leases back at once. Default `<hostname>-<pid>-<random>`. */
  workerId?: string;
  /** A lease whose counter has not moved for this long (on the observer's clock) is expired and may be taken. Default 10,000 ms. */
  leaseDurationMs?: number;
  /** How often leases are renewed and the table is read to take, balance and hand over leases; at most half of `leaseDurationMs`. Default a third of `leaseDurationMs`. */
  renewIntervalMs?: number;
  /** Create the table (on-demand billing) when it does not exist; otherwise a missing table is a NOT_FOUND error. Default true. */
  createTable?: boolean;
}
// </options>
