/**
 * What the Kinesis source and sink share: the client (given or made), the
 * stream reference (name or ARN), and the translation of SDK errors into
 * ManifoldErrors that say what failed.
 */
import { KinesisClient, type KinesisClientConfig } from '@aws-sdk/client-kinesis';
import { awsConnection, awsError, type AwsConnection, type AwsTimeouts } from '../core/aws.js';
import { ErrorCodes, ManifoldError } from '../core/errors.js';
import { conflictingOptions } from '../core/options.js';
import { STREAM_ARN } from './options.js';

/** Which stream the connector talks to, as Kinesis API parameters. */
export interface StreamRef {
  /** The stream name (from `streamName`, or the last part of `streamARN`). */
  name: string;
  /** Spread into every request: `{ StreamARN }` when an ARN was given, else `{ StreamName }`. */
  params: { StreamName: string } | { StreamARN: string };
  /** For messages: the name or ARN as given. */
  label: string;
}

/** The stream of `streamName` / `streamARN`, each valid (see the declarations): at least one, and when both, the same stream. */
export function resolveStream(where: string, name: string | undefined, arn: string | undefined): StreamRef {
  if (arn !== undefined) {
    // The declaration checked the ARN's form.
    const arnName = STREAM_ARN.exec(arn)![1]!;
    if (name !== undefined && name !== arnName) {
      conflictingOptions(where, 'streamName', 'streamARN', `name different streams (${JSON.stringify(name)} and ${JSON.stringify(arnName)}); give one of them`);
    }
    return { name: arnName, params: { StreamARN: arn }, label: arn };
  }
  if (name === undefined) {
    throw new ManifoldError(`${where}: options.streamName or options.streamARN is required`, { code: ErrorCodes.INVALID_OPTION, details: { option: 'streamName' } });
  }
  return { name, params: { StreamName: name }, label: name };
}

/** The client to use, whether we made it (and so destroy it on close), and the timeouts of every call. */
export function resolveClient(where: string, o: AwsConnection<KinesisClient, KinesisClientConfig['credentials']>): { client: KinesisClient; owned: boolean; timeouts: AwsTimeouts } {
  // HTTP/2 for https: SubscribeToShard (enhanced fan-out) needs it, and it is what the SDK uses by default.
  const connection = awsConnection(where, o, 'a KinesisClient', {}, { http2: true });
  if ('client' in connection) return { client: connection.client, owned: false, timeouts: connection.timeouts };
  // maxAttempts 1 (in the settings): our own retry (options.retry) decides; SDK retries underneath would multiply the attempts.
  return { client: new KinesisClient(connection.settings), owned: true, timeouts: connection.timeouts };
}

/**
 * An SDK failure as a ManifoldError naming the operation and the stream:
 * a missing stream or consumer is NOT_FOUND, refused credentials AUTH,
 * throttling THROTTLED (retryable), other transient faults CONNECTION.
 */
export function kinesisError(where: string, operation: string, stream: StreamRef, error: unknown, details: Record<string, unknown> = {}): Error {
  const label = JSON.stringify(stream.label);
  return awsError({ where, operation, resource: label, missing: `stream ${label} (or its consumer) does not exist`, details: { stream: stream.label, ...details } }, error);
}
