/**
 * The schemes the command knows, each mapping URI parts and query keys to a
 * connector's options. Keys are the connectors' option names without their unit
 * suffix (`commitSize` for commitSizeBytes, `commitInterval` for commitIntervalMs),
 * and take units (`1MiB`, `5m`).
 */
import { z } from 'zod';
import { dynamoLeases } from '../kinesis/dynamo-leases.js';
import { fileCheckpointer } from '../kinesis/file-checkpointer.js';
import { kinesisSink } from '../kinesis/sink.js';
import { stdoutSink } from '../stdio/sink.js';
import { kinesisSource } from '../kinesis/source.js';
import { stdinSource } from '../stdio/source.js';
import { UsageError } from './errors.js';
import { registerScheme, validate, zBytes, zCount, zDuration, type EndpointInput } from './endpoints.js';
import './schemes/kafka.js';
import './schemes/rabbitmq.js';
import './schemes/websocket.js';
import './schemes/s3.js';

/** Copies the defined entries of `o`, so connectors fill their own defaults. */
function defined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

// ---- stdio ----

registerScheme(['stdin'], {
  help: 'stdin:                       lines of standard input (?maxMessageBytes=1MiB)',
  source: ({ display, params }) => {
    const o = validate(display, z.strictObject({ maxMessageBytes: zBytes.optional(), delimiter: z.string().min(1).optional() }), params);
    return () => stdinSource(defined(o));
  },
});

registerScheme(['stdout'], {
  help: 'stdout:                      one line per message on standard output (?delimiter=%0A)',
  sink: ({ display, params }) => {
    const o = validate(display, z.strictObject({ delimiter: z.string().min(1).optional() }), params);
    return () => stdoutSink(defined(o));
  },
});

/**
 * Takes our option keys out of a URI whose other query keys belong to the server (WebSocket
 * feeds, amqplib's heartbeat/frameMax). Options from a pipeline file that are not ours are kept
 * with ours, so they are reported as unknown rather than sent to the server.
 */
function splitUrl({ url, params }: EndpointInput, schema: z.ZodObject): { target: string; ours: Record<string, unknown> } {
  // Our keys are the schema's: one list, so a new option cannot be validated yet sent to the server.
  const keys = Object.keys(schema.shape);
  const target = new URL(url);
  const ours: Record<string, unknown> = {};
  for (const key of keys) target.searchParams.delete(key);
  for (const [key, value] of Object.entries(params)) if (keys.includes(key) || !url.searchParams.has(key)) ours[key] = value;
  return { target: target.toString(), ours };
}

// ---- Kinesis: kinesis:<stream> ----

/** The connection options of a Kinesis source or sink: the factory builds the client (HTTP/1.1 for a local http:// endpoint, timeouts, SDK retries off). */
function kinesisConnection(o: { region?: string | undefined; endpoint?: string | undefined; requestTimeout?: number | undefined; connectTimeout?: number | undefined }) {
  return {
    endpoint: o.endpoint,
    // A local server takes any region, but the SDK wants one.
    region: o.region ?? (o.endpoint ? 'us-east-1' : undefined),
    requestTimeoutMs: o.requestTimeout,
    connectTimeoutMs: o.connectTimeout,
  };
}

function streamOf({ url, display }: EndpointInput): string {
  const stream = decodeURIComponent(url.pathname || url.hostname);
  if (!stream) throw new UsageError(`${display}: give the stream as kinesis:<stream>`);
  return stream;
}

const STARTS: Record<string, 'LATEST' | 'TRIM_HORIZON'> = { latest: 'LATEST', 'trim-horizon': 'TRIM_HORIZON', earliest: 'TRIM_HORIZON' };

registerScheme(['kinesis'], {
  help: 'kinesis:<stream>?region=us-east-1&from=trim-horizon&checkpoint=./c.json   Kinesis (endpoint= for a local server; leaseTable=<dynamodb table> to share the stream among processes)',
  source: (input) => {
    const stream = streamOf(input);
    const o = validate(
      input.display,
      z.strictObject({
        region: z.string().min(1).optional(),
        endpoint: z.url().optional(),
        from: z.union([z.enum(['latest', 'trim-horizon', 'earliest']), z.iso.datetime()]).optional(),
        checkpoint: z.string().min(1).optional(),
        checkpointInterval: zDuration.optional(),
        shards: z.string().min(1).optional(),
        consumerName: z.string().min(1).optional(),
        maxInFlightPerShard: zCount.optional(),
        leaseTable: z.string().min(1).optional(),
        workerId: z.string().min(1).optional(),
        leaseDuration: zDuration.optional(),
        dynamoEndpoint: z.url().optional(),
        requestTimeout: zDuration.optional(),
        connectTimeout: zDuration.optional(),
      }),
      input.params,
    );
    if (o.leaseTable === undefined) {
      for (const key of ['workerId', 'leaseDuration', 'dynamoEndpoint'] as const) {
        if (o[key] !== undefined) throw new UsageError(`${input.display}: ${key}= goes with leaseTable= (the DynamoDB lease table shared by the processes)`);
      }
    } else {
      for (const key of ['checkpoint', 'shards'] as const) {
        if (o[key] !== undefined) throw new UsageError(`${input.display}: ${key}= and leaseTable= cannot be combined: with leaseTable= the lease table decides which shards this process reads and keeps their checkpoints`);
      }
    }
    return () => {
      const coordinator =
        o.leaseTable === undefined
          ? undefined
          : dynamoLeases(
              defined({
                tableName: o.leaseTable,
                workerId: o.workerId,
                leaseDurationMs: o.leaseDuration,
                region: o.region ?? (o.dynamoEndpoint ? 'us-east-1' : undefined),
                endpoint: o.dynamoEndpoint,
              }) as Parameters<typeof dynamoLeases>[0],
            );
      const from = o.from === undefined ? undefined : STARTS[o.from] ?? { timestamp: new Date(o.from) };
      return kinesisSource(
        defined({
          streamName: stream,
          ...kinesisConnection(o),
          startingPosition: from,
          checkpointer: o.checkpoint ? fileCheckpointer(o.checkpoint) : undefined,
          checkpointIntervalMs: o.checkpointInterval,
          shardIds: o.shards?.split(','),
          consumerName: o.consumerName,
          maxInFlightPerShard: o.maxInFlightPerShard,
          coordinator,
        }) as Parameters<typeof kinesisSource>[0],
      );
    };
  },
  sink: (input) => {
    const stream = streamOf(input);
    const o = validate(
      input.display,
      z.strictObject({
        region: z.string().min(1).optional(),
        endpoint: z.url().optional(),
        partitionKey: z.string().min(1).optional(),
        linger: zDuration.optional(),
        maxBatchRecords: zCount.optional(),
        maxInFlightRequests: zCount.optional(),
        requestTimeout: zDuration.optional(),
        connectTimeout: zDuration.optional(),
      }),
      input.params,
    );
    return () => {
      return kinesisSink(
        defined({
          streamName: stream,
          ...kinesisConnection(o),
          partitionKey: o.partitionKey,
          lingerMs: o.linger,
          maxBatchRecords: o.maxBatchRecords,
          maxInFlightRequests: o.maxInFlightRequests,
        }) as Parameters<typeof kinesisSink>[0],
      );
    };
  },
});
