/**
 * s3://bucket/prefix: the S3 sink, and as a source s3Source (the objects under the prefix read back
 * as lines: `manifold s3://archive/orders/ kafka://host:9092/orders` replays an archive). Bucket and
 * prefix come from the URI; every query key and pipeline-file option is read by the s3Sink or
 * s3Source declaration (lib/s3/options.ts), with units (`commitSize=64MiB`, `commitInterval=5m`).
 * The command builds no client: the connector builds it from region, endpoint, forcePathStyle and the
 * timeouts, as it does for a program. The connector (and the AWS SDK) is loaded by create(), only for
 * a pipeline that uses it.
 */
import { bucketProblem, prefixProblem, quoted, s3SinkOptions, s3SourceOptions, type S3SinkOptions, type S3SourceOptions } from '../../s3/options.js';
import { registerScheme, type EndpointInput } from '../endpoints.js';
import { UsageError, subject } from '../errors.js';
import { readEndpointOptions } from '../options.js';

/** What the URI itself says, not a key. */
const FROM_URI = ['bucket', 'prefix'];

/**
 * The URI's path as written (after the authority, before `?` or `#`). Not `url.pathname`: the URL
 * parser resolves `..` and `%2e%2e` segments by itself, and what the user wrote is what is judged.
 */
function rawPath(uri: string): string {
  const rest = uri.replace(/^s3:\/\/[^/?#]*/i, '');
  return rest.replace(/[?#].*$/s, '');
}

/** Bucket and prefix from the URI, judged as written; refuses credentials in it. */
function s3Target(input: EndpointInput): { bucket: string; prefix: string; display: string } {
  const { url } = input;
  // Neither the key id nor the secret is shown, whatever the usual redaction shows.
  const display = input.display.replace(/^s3:\/\/[^/?#]*@/i, 's3://***@');
  if (url.username !== '' || url.password !== '') {
    throw new UsageError(
      `${subject(display)} credentials in the URI are not used; give them through the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE), the shared credentials file or the machine's role, and write the URI as s3://<bucket>/<prefix>`,
    );
  }
  const bucket = url.hostname;
  if (!bucket) throw new UsageError(`${subject(display)} give the bucket as s3://<bucket>/<prefix>`);
  const bad = bucketProblem(bucket);
  if (bad !== undefined) throw new UsageError(`${subject(display)} the bucket ${quoted(bucket)} must be ${bad}`);
  let prefix: string;
  try {
    // %2F is a "/" of the prefix like any other: decoded first, then judged.
    prefix = decodeURIComponent(rawPath(input.uri).replace(/^\//, ''));
  } catch {
    throw new UsageError(`${subject(display)} the key prefix (the URI's path) is not valid percent-encoding: write "%" as %25`);
  }
  const problem = prefixProblem(prefix);
  if (problem !== undefined) {
    throw new UsageError(`${subject(display)} the key prefix ${quoted(prefix)} (the URI's path, decoded) must be ${problem}`);
  }
  return { bucket, prefix, display };
}

registerScheme(['s3'], {
  help: 's3://bucket/prefix?commitSize=1MiB&commitInterval=5m&bufferPath=./buffer   S3 sink buffered on local disk (endpoint= for an S3-compatible server); as a source, the objects under the prefix read back as lines (checkpoint=./file.json to resume, watch=true to follow)',
  options: { source: [s3SourceOptions], sink: [s3SinkOptions], except: FROM_URI },
  source: (input) => {
    const { bucket, prefix } = s3Target(input);
    const options = readEndpointOptions(input, [s3SourceOptions], { except: FROM_URI }) as Partial<S3SourceOptions>;
    if (options.endpoint !== undefined) options.region ??= 'us-east-1';
    return async () => {
      const { s3Source } = await import('../../s3/source.js');
      return s3Source({ ...options, bucket, prefix });
    };
  },
  sink: (input) => {
    const { bucket, prefix } = s3Target(input);
    const options = readEndpointOptions(input, [s3SinkOptions], { except: FROM_URI }) as Partial<S3SinkOptions>;
    // A local server takes any region, but the SDK wants one.
    if (options.endpoint !== undefined) options.region ??= 'us-east-1';
    return async () => {
      const [{ s3Sink }, { checkBufferFolder, sinkBufferPath }] = await Promise.all([import('../../s3/sink.js'), import('../../s3/buffer-folder.js')]);
      // A buffer folder others may write to is a usage error (exit 2), found before the sink is made: its start-up
      // check (HeadBucket) would otherwise race this one, and a missing credential could answer first.
      const resolved = s3SinkOptions.resolve({ ...options, bucket, prefix });
      await checkBufferFolder('s3Sink', sinkBufferPath(resolved), { create: false, allowShared: resolved.allowSharedBufferPath });
      return s3Sink({ ...options, bucket, prefix });
    };
  },
});
