/**
 * kinesis:<stream>: a Kinesis source or sink. The stream is the URI's path; the query keys (and a
 * pipeline file's keys) are those of the kinesisSource, kinesisSink and dynamoLeases declarations
 * (lib/kinesis/options.ts), plus two that only the command line takes, because a program passes
 * objects there: `from` (the source's startingPosition) and `checkpoint` (a fileCheckpointer).
 * With `leaseTable=` the lease keys build a dynamoLeases coordinator. The factories build the
 * clients from region, endpoint and timeouts: the same handler, timeouts and SDK retries off as
 * in a program. The connector (and the AWS SDK) is loaded by create(), only for a pipeline that
 * uses it.
 */
import { cliKey, defineOptions, opt, type DeclaredOptions, type OptionSpecs } from '../../core/options.js';
import { dynamoLeasesOptions, kinesisSinkOptions, kinesisSourceOptions, type DynamoLeasesOptions, type KinesisSinkOptions, type KinesisSourceOptions } from '../../kinesis/options.js';
import type { StartingPosition } from '../../kinesis/positions.js';
import { refuseCredentials, registerScheme, type EndpointInput } from '../endpoints.js';
import { UsageError, subject } from '../errors.js';
import { readEndpointOptions } from '../options.js';

const STARTS: Record<string, 'LATEST' | 'TRIM_HORIZON'> = { latest: 'LATEST', 'trim-horizon': 'TRIM_HORIZON', earliest: 'TRIM_HORIZON' };
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

/** What only the command line takes: text that stands for an object the source takes. */
export const kinesisUriOptions = defineOptions('kinesis:', {
  from: opt.custom<StartingPosition>(
    "Where shards without a checkpoint start: `latest`, `trim-horizon` (or `earliest`), or an ISO time such as `2025-01-31T12:00:00Z` (the source's `startingPosition`).",
    {
      type: 'string',
      cli: 'from',
      schema: { anyOf: [{ enum: Object.keys(STARTS) }, { type: 'string', format: 'date-time' }] },
      check: (value, fail) => {
        if (typeof value === 'string' && Object.hasOwn(STARTS, value)) return STARTS[value]!;
        if (typeof value === 'string' && ISO_TIME.test(value) && Number.isFinite(Date.parse(value))) return { timestamp: Date.parse(value) };
        return fail('latest, trim-horizon, earliest or an ISO time such as 2025-01-31T12:00:00Z');
      },
    },
  ),
  checkpoint: opt.string("Keep the checkpoints in this JSON file (the source's `checkpointer`: a `fileCheckpointer`), so a restart resumes after them."),
});

const LEASE = 'lease.';

/**
 * dynamoLeases' keys (leaseTable, dynamoEndpoint, workerId, leaseDuration, ...) read alongside
 * the source's: the same specs and keys, under names of their own (`lease.tableName`), since
 * both factories have options called `endpoint`.
 */
const leaseKeys: DeclaredOptions = (() => {
  const specs: OptionSpecs = {};
  for (const name of dynamoLeasesOptions.names) {
    const spec = dynamoLeasesOptions.specs[name]!;
    specs[`${LEASE}${name}`] = { ...spec, cli: cliKey(name, spec) ?? false };
  }
  return { where: dynamoLeasesOptions.where, specs, names: Object.keys(specs) };
})();

function streamOf({ url, display }: EndpointInput): string {
  const stream = decodeURIComponent(url.pathname || url.hostname);
  if (!stream) throw new UsageError(`${subject(display)} give the stream as kinesis:<stream>`);
  return stream;
}

/** A local server takes any region, but the SDK wants one. */
function regionFor(region: unknown, endpoint: unknown): unknown {
  return region ?? (endpoint === undefined ? undefined : 'us-east-1');
}

registerScheme(['kinesis'], {
  help: 'kinesis:<stream>?region=us-east-1&from=trim-horizon&checkpoint=./c.json   Kinesis (endpoint= for a local server; leaseTable=<dynamodb table> to share the stream among processes)',
  options: { source: [kinesisSourceOptions, kinesisUriOptions, leaseKeys], sink: [kinesisSinkOptions] },
  source: (input) => {
    refuseCredentials(input, 'AWS credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), a profile (AWS_PROFILE) or the instance role');
    const streamName = streamOf(input);
    const { from, checkpoint, ...rest } = readEndpointOptions(input, [kinesisSourceOptions, kinesisUriOptions, leaseKeys]);
    const options: Record<string, unknown> = {};
    const lease: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(rest)) {
      if (name.startsWith(LEASE)) lease[name.slice(LEASE.length)] = value;
      else options[name] = value;
    }
    if (lease.tableName === undefined) {
      for (const name of Object.keys(lease)) {
        throw new UsageError(`${subject(input.display)} ${cliKey(name, dynamoLeasesOptions.specs[name as keyof typeof dynamoLeasesOptions.specs])}= goes with leaseTable= (the DynamoDB lease table shared by the processes)`);
      }
    } else {
      for (const [key, given] of [['checkpoint', checkpoint !== undefined], ['shards', options.shardIds !== undefined]] as const) {
        if (given) throw new UsageError(`${subject(input.display)} ${key}= and leaseTable= cannot be combined: with leaseTable= the lease table decides which shards this process reads and keeps their checkpoints`);
      }
    }
    return async () => {
      const { kinesisSource } = await import('../../kinesis/source.js');
      // The lease module (and the DynamoDB client) only with a lease table.
      const checkpointer = checkpoint === undefined ? undefined : (await import('../../kinesis/file-checkpointer.js')).fileCheckpointer(checkpoint as string);
      const coordinator =
        lease.tableName === undefined
          ? undefined
          : (await import('../../kinesis/dynamo-leases.js')).dynamoLeases({ ...lease, region: regionFor(options.region, lease.endpoint) } as DynamoLeasesOptions);
      try {
        return kinesisSource({
          ...options,
          streamName,
          region: regionFor(options.region, options.endpoint),
          startingPosition: from,
          checkpointer,
          coordinator,
        } as KinesisSourceOptions);
      } catch (error) {
        // The source refused its options: the coordinator it would have stopped is ours to stop (it destroys its client).
        void coordinator?.stop();
        throw error;
      }
    };
  },
  sink: (input) => {
    refuseCredentials(input, 'AWS credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), a profile (AWS_PROFILE) or the instance role');
    const streamName = streamOf(input);
    const options = readEndpointOptions(input, [kinesisSinkOptions]);
    return async () => {
      const { kinesisSink } = await import('../../kinesis/sink.js');
      return kinesisSink({ ...options, streamName, region: regionFor(options.region, options.endpoint) } as KinesisSinkOptions);
    };
  },
});
