/**
 * What the Kinesis source and sink share: the client (given or made), the
 * stream reference (name or ARN), and the translation of SDK errors into
 * ManifoldErrors that say what failed.
 */
import { KinesisClient, type KinesisClientConfig } from '@aws-sdk/client-kinesis';
import { awsConnection, awsError, type AwsTimeouts } from '../core/aws.js';
import { ErrorCodes, ManifoldError } from '../core/errors.js';
import { conflictingOptions, invalidOption, stringOption } from '../core/options.js';

/** How a connector reaches Kinesis: a ready client, or what to build one from. */
export interface KinesisConnectionOptions {
  /** A client to use (it stays yours: it is not destroyed on close). Excludes region, endpoint and credentials. */
  client?: KinesisClient;
  /** AWS region of the client we build. Default: the SDK's (AWS_REGION, profile). */
  region?: string;
  /** Endpoint of the client we build, e.g. `http://127.0.0.1:4568` for a local server (HTTP/1.1 is used for `http:`). */
  endpoint?: string;
  /** Credentials of the client we build. Default: the SDK's provider chain. */
  credentials?: KinesisClientConfig['credentials'];
  /**
   * Longest one Kinesis call may take, in milliseconds, response included: a call not answered by then is
   * aborted and fails with a retryable CONNECTION error, which `retry` retries. It holds for a client you pass
   * too (through the call's abort signal). For enhanced fan-out it bounds the wait for a subscription's
   * response, and on our client's HTTP/2 connection also a subscription silent for that long. Default 30,000 ms.
   */
  requestTimeoutMs?: number;
  /** Longest connecting may take, in milliseconds, for the client we build (excludes `client`). Default 5,000 ms. */
  connectTimeoutMs?: number;
}

/** Which stream the connector talks to, as Kinesis API parameters. */
export interface StreamRef {
  /** The stream name (from `streamName`, or the last part of `streamARN`). */
  name: string;
  /** Spread into every request: `{ StreamARN }` when an ARN was given, else `{ StreamName }`. */
  params: { StreamName: string } | { StreamARN: string };
  /** For messages: the name or ARN as given. */
  label: string;
}

const ARN_PATTERN = /^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:\d{12}:stream\/([a-zA-Z0-9_.-]{1,128})$/;

/** Validates `streamName` / `streamARN` (at least one; when both, they must name the same stream). */
export function resolveStream(where: string, streamName: unknown, streamARN: unknown): StreamRef {
  const name = stringOption(where, 'streamName', streamName);
  const arn = stringOption(where, 'streamARN', streamARN);
  if (name !== undefined && !/^[a-zA-Z0-9_.-]{1,128}$/.test(name)) {
    invalidOption(where, 'streamName', 'a Kinesis stream name (1 to 128 of a-z, A-Z, 0-9, _ . -)', name);
  }
  if (arn !== undefined) {
    const match = ARN_PATTERN.exec(arn);
    if (!match) invalidOption(where, 'streamARN', 'a Kinesis stream ARN (arn:aws:kinesis:<region>:<account>:stream/<name>)', arn);
    const arnName = match[1]!;
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
export function resolveClient(where: string, o: KinesisConnectionOptions): { client: KinesisClient; owned: boolean; timeouts: AwsTimeouts } {
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
