/**
 * s3://bucket/prefix: the S3 sink. Bucket and prefix come from the URI; every query key and
 * pipeline-file option is read by the s3Sink declaration (lib/s3/options.ts), with units
 * (`commitSize=64MiB`, `commitInterval=5m`). The command builds no client: s3Sink builds it from
 * region, endpoint, forcePathStyle and the timeouts, as it does for a program. The sink (and the
 * AWS SDK) is loaded by create(), only for a pipeline that uses it.
 */
import { s3SinkOptions, type S3SinkOptions } from '../../s3/options.js';
import { registerScheme } from '../endpoints.js';
import { UsageError, subject } from '../errors.js';
import { readEndpointOptions } from '../options.js';

/** What the URI itself says, not a key. */
const FROM_URI = ['bucket', 'prefix'];

registerScheme(['s3'], {
  help: 's3://bucket/prefix?commitSize=1MiB&commitInterval=5m&bufferPath=./buffer   S3 sink buffered on local disk (endpoint= for an S3-compatible server)',
  options: { sink: [s3SinkOptions], except: FROM_URI },
  sink: (input) => {
    const { url, display } = input;
    const bucket = url.hostname;
    if (!bucket) throw new UsageError(`${subject(display)} give the bucket as s3://<bucket>/<prefix>`);
    const prefix = decodeURIComponent(url.pathname.replace(/^\//, ''));
    const options = readEndpointOptions(input, [s3SinkOptions], { except: FROM_URI }) as Partial<S3SinkOptions>;
    // A local server takes any region, but the SDK wants one.
    if (options.endpoint !== undefined) options.region ??= 'us-east-1';
    return async () => {
      const { s3Sink } = await import('../../s3/sink.js');
      return s3Sink({ ...options, bucket, prefix });
    };
  },
});
