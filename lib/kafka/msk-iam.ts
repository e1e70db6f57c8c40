/**
 * Amazon MSK IAM authentication as the AWS signer libraries do it (aws-msk-iam-sasl-signer-js and its
 * Java/Python/Go siblings): SASL/OAUTHBEARER whose token is a SigV4-presigned
 * `GET https://kafka.<region>.amazonaws.com/?Action=kafka-cluster:Connect` (service `kafka-cluster`,
 * valid 900 s), base64url-encoded without padding. A token is made at every connect (and at every
 * re-authentication the broker asks for), from credentials fetched then, so rotated or refreshed
 * credentials are used without a restart. Not part of the public API.
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { ErrorCodes, ManifoldError, describe } from '../core/errors.js';
import type { KafkaAwsCredentials, KafkaSaslAwsIam } from './options.js';

/** How long a token is valid, as the AWS signers make them. */
export const MSK_TOKEN_EXPIRY_SECONDS = 900;
const SERVICE = 'kafka-cluster';
const ACTION = 'kafka-cluster:Connect';
const USER_AGENT = 'manifold-msk-iam';

/** An MSK broker name holds its region: b-1.c.x.c2.kafka.eu-west-1.amazonaws.com, boot-x.c1.kafka-serverless.us-east-1.amazonaws.com. */
const MSK_HOST = /\.kafka(?:-serverless)?\.([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?$/i;

/** The region of `brokers` when they are MSK names, else AWS_REGION / AWS_DEFAULT_REGION; undefined when none says. */
export function mskRegion(brokers: readonly string[], env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const broker of brokers) {
    const host = broker.replace(/:\d+$/, '');
    const match = MSK_HOST.exec(host);
    if (match) return match[1]!.toLowerCase();
  }
  return env.AWS_REGION || env.AWS_DEFAULT_REGION || undefined;
}

function bytes(data: string | ArrayBuffer | ArrayBufferView): string | Buffer {
  if (typeof data === 'string') return data;
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}

/** SHA-256 (or its HMAC with a secret) in the shape @smithy/signature-v4 takes, on node:crypto. */
class Sha256 {
  readonly #hash: Hash | Hmac;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.#hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.#hash.update(bytes(data));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.#hash.digest()));
  }
}

/** RFC 3986 percent-encoding, as SigV4 and the AWS URL formatter write a query. */
function escape(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * One MSK IAM token for `region`, signed with `credentials` at `now`: the base64url (unpadded) of the
 * presigned URL, whose query holds Action, X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date,
 * X-Amz-Expires, X-Amz-SignedHeaders, X-Amz-Signature (and X-Amz-Security-Token with a session token), and User-Agent.
 */
export async function mskIamToken(region: string, credentials: KafkaAwsCredentials, now: Date = new Date()): Promise<string> {
  const { SignatureV4 } = await import('@smithy/signature-v4');
  const hostname = `kafka.${region}.amazonaws.com`;
  const signer = new SignatureV4({ service: SERVICE, region, credentials, sha256: Sha256, applyChecksum: false });
  const signed = await signer.presign(
    { method: 'GET', protocol: 'https:', hostname, path: '/', query: { Action: ACTION }, headers: { host: hostname } },
    { expiresIn: MSK_TOKEN_EXPIRY_SECONDS, signingDate: now },
  );
  const query: Record<string, string> = {};
  for (const [key, value] of Object.entries(signed.query ?? {})) if (typeof value === 'string') query[key] = value;
  query['User-Agent'] = USER_AGENT;
  const text = Object.keys(query)
    .sort()
    .map((key) => `${escape(key)}=${escape(query[key]!)}`)
    .join('&');
  return Buffer.from(`https://${hostname}/?${text}`, 'utf8').toString('base64url');
}

type CredentialSource = () => Promise<KafkaAwsCredentials>;

/**
 * The OAUTHBEARER token provider of `sasl` (called by the Kafka client at every connect): fetches
 * credentials (the given ones, or the AWS SDK's default chain, which caches and refreshes them) and
 * signs a fresh token. A failure is MANIFOLD_ERR_AUTH naming the region and what the chain said, never
 * a secret.
 */
export function mskIamTokenProvider(where: string, sasl: KafkaSaslAwsIam, region: string): () => Promise<string> {
  let source: CredentialSource | undefined;
  const given = sasl.credentials;
  return async () => {
    if (source === undefined) {
      if (typeof given === 'function') source = given;
      else if (given !== undefined) source = () => Promise.resolve(given);
      else {
        const { defaultProvider } = await import('@aws-sdk/credential-provider-node');
        source = defaultProvider() as CredentialSource;
      }
    }
    let credentials: KafkaAwsCredentials;
    try {
      credentials = await source();
    } catch (error) {
      throw new ManifoldError(`${where}: AWS_MSK_IAM could not get AWS credentials (region ${region}): ${describe(error)}; set them in the environment, a profile or a role, or give sasl.credentials`, {
        code: ErrorCodes.AUTH,
        retryable: false,
        cause: error,
      });
    }
    return mskIamToken(region, credentials);
  };
}
