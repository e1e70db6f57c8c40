/**
 * The connection options every AWS connector declares (see `defineOptions`), and the timeout
 * defaults. Apart from lib/core/aws.ts, which builds clients and request handlers, so that a
 * connector's declarations load without the AWS SDK: the command validates URIs and prints its
 * help from the declarations, and loads a connector (and its SDK) only for a pipeline that uses it.
 */
import { opt } from './options.js';
import { tlsOption } from './tls.js';

/** Default of `requestTimeoutMs` for Kinesis calls (each connector documents its own). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** Default of `connectTimeoutMs` (its doc says '5,000 ms': toLocaleString() would load ICU's number formats, 20 ms at every start of the command). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** setTimeout() takes at most a signed 32-bit delay; a larger one fires at once. */
export const MAX_TIMER_MS = 2_147_483_647;

/** What {@link awsConnectionOptions} needs to know of one connector. */
export interface AwsConnectionDeclaration {
  /** The SDK client's TypeScript type, as the option types write it: `KinesisClient`. */
  client: string;
  /** The credentials' TypeScript type: `KinesisClientConfig['credentials']`. */
  credentials: string;
  /** Default of `requestTimeoutMs` (or its words in `requestTimeoutText`). */
  requestTimeoutMs?: number;
  requestTimeoutText?: string;
  /** How the request timeout is measured, for its doc. */
  requestTimeoutDoc?: string;
}

/**
 * The connection options every AWS connector takes, declared once: spread the
 * result into the connector's `defineOptions()`. Validation of the combination
 * (a client excludes region, endpoint, credentials, connectTimeoutMs) stays in
 * {@link awsConnection}.
 */
export function awsConnectionOptions(d: AwsConnectionDeclaration) {
  const article = /^[AEIOU]/i.test(d.client) ? 'an' : 'a';
  return {
    client: opt.custom<unknown>(`A ready ${d.client} to use; region, endpoint, tls, credentials and connectTimeoutMs then belong to it.`, {
      type: d.client,
      check: (value, fail) => (typeof (value as { send?: unknown } | null)?.send === 'function' ? value : fail(`${article} ${d.client}`)),
    }),
    region: opt.string('AWS region. Default: from the environment (AWS_REGION) or the shared config; "us-east-1" with a local endpoint on the command line.'),
    endpoint: opt.custom<string>('Endpoint URL of a compatible service or a local server (a plain http:// one is spoken to over HTTP/1.1).', {
      type: 'string',
      cli: 'endpoint',
      schema: { type: 'string', pattern: '^https?://' },
      check: (value, fail) => (typeof value === 'string' && /^https?:\/\/./.test(value) ? value : fail('an http:// or https:// URL')),
    }),
    credentials: opt.custom<unknown>('AWS credentials ({ accessKeyId, secretAccessKey, sessionToken }) or a credential provider. Default: the SDK chain.', {
      type: d.credentials,
      secret: true,
      check: (value, fail) => (value !== null && (typeof value === 'object' || typeof value === 'function') ? value : fail('AWS credentials ({ accessKeyId, secretAccessKey }) or a credential provider')),
    }),
    requestTimeoutMs: opt.duration(
      d.requestTimeoutDoc ?? 'Longest one AWS call may take before it is aborted and retried as a connection failure (also for a client you pass).',
      { default: d.requestTimeoutMs, defaultText: d.requestTimeoutText, max: MAX_TIMER_MS },
    ),
    // No default in the declaration: awsConnection() fills it, so that `client` (which excludes it) can be given alone.
    connectTimeoutMs: opt.duration('Longest opening a connection may take, for the client the connector builds.', { defaultText: '5,000 ms', max: MAX_TIMER_MS }),
    tls: tlsOption(
      'TLS of an `https://` endpoint: `{ ca, cert, key, passphrase, servername, rejectUnauthorized, minVersion }` for a private CA or a client certificate (PEM text, bytes or file paths, re-read at every new connection); for the client the connector builds, refused with an `http://` endpoint.',
    ),
  };
}
