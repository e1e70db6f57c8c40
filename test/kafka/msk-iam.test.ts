/**
 * Amazon MSK IAM tokens (lib/kafka/msk-iam.ts). No MSK cluster is reachable from the tests, so the
 * token is checked by its shape and its signature is recomputed here from the SigV4 specification
 * with node:crypto (an implementation independent of the @smithy/signature-v4 that made it); and the
 * options are checked as kafkaSource and kafkaSink take them.
 */
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { kafkaSink } from '../../lib/kafka/sink.js';
import { resolveConnection } from '../../lib/kafka/connection.js';
import { kafkaSinkOptions } from '../../lib/kafka/options.js';
import { MSK_TOKEN_EXPIRY_SECONDS, mskIamToken, mskIamTokenProvider, mskRegion } from '../../lib/kafka/msk-iam.js';

const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };

function decode(token: string): URL {
  assert.match(token, /^[A-Za-z0-9_-]+$/, 'base64url without padding');
  return new URL(Buffer.from(token, 'base64url').toString('utf8'));
}

/** SigV4 of a presigned GET, per https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html. */
function expectedSignature(url: URL, secret: string, region: string): string {
  const params = [...url.searchParams].filter(([k]) => k !== 'X-Amz-Signature' && k !== 'User-Agent');
  const enc = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const query = params
    .map(([k, v]) => [enc(k), enc(v)] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonical = ['GET', '/', query, `host:${url.host}\n`, 'host', createHash('sha256').update('').digest('hex')].join('\n');
  const date = url.searchParams.get('X-Amz-Date')!;
  const scope = `${date.slice(0, 8)}/${region}/kafka-cluster/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', date, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  let key: Buffer = createHmac('sha256', `AWS4${secret}`).update(date.slice(0, 8)).digest();
  for (const part of [region, 'kafka-cluster', 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
  return createHmac('sha256', key).update(toSign).digest('hex');
}

describe('MSK IAM token', () => {
  it('is the base64url of a presigned kafka-cluster:Connect URL for kafka.<region>.amazonaws.com, signed by SigV4', async () => {
    const now = new Date('2026-11-29T12:34:56Z');
    const token = await mskIamToken('eu-west-1', credentials, now);
    const url = decode(token);
    assert.equal(url.protocol, 'https:');
    assert.equal(url.host, 'kafka.eu-west-1.amazonaws.com');
    assert.equal(url.pathname, '/');
    const q = url.searchParams;
    assert.equal(q.get('Action'), 'kafka-cluster:Connect');
    assert.equal(q.get('X-Amz-Algorithm'), 'AWS4-HMAC-SHA256');
    assert.equal(q.get('X-Amz-Credential'), 'AKIDEXAMPLE/20261129/eu-west-1/kafka-cluster/aws4_request');
    assert.equal(q.get('X-Amz-Date'), '20261129T123456Z');
    assert.equal(q.get('X-Amz-Expires'), String(MSK_TOKEN_EXPIRY_SECONDS));
    assert.equal(q.get('X-Amz-SignedHeaders'), 'host');
    assert.equal(q.get('X-Amz-Security-Token'), null, 'no session token given');
    assert.match(q.get('User-Agent') ?? '', /^manifold/);
    assert.equal(q.get('X-Amz-Signature'), expectedSignature(url, credentials.secretAccessKey, 'eu-west-1'));
    assert.ok(!Buffer.from(token, 'base64url').toString().includes(credentials.secretAccessKey), 'the secret key is not in the token');
  });

  it('carries a session token, and differs by region and time', async () => {
    const now = new Date('2026-01-02T03:04:05Z');
    const url = decode(await mskIamToken('us-east-1', { ...credentials, sessionToken: 'FwoGZXIvYXdzEXAMPLE/+=' }, now));
    assert.equal(url.host, 'kafka.us-east-1.amazonaws.com');
    assert.equal(url.searchParams.get('X-Amz-Security-Token'), 'FwoGZXIvYXdzEXAMPLE/+=');
    assert.equal(url.searchParams.get('X-Amz-Signature'), expectedSignature(url, credentials.secretAccessKey, 'us-east-1'));
    assert.notEqual(await mskIamToken('us-east-1', credentials, now), await mskIamToken('us-east-1', credentials, new Date(now.getTime() + 1000)));
  });

  it('the provider fetches credentials at every call (a refreshed key is used), and a failing chain is MANIFOLD_ERR_AUTH', async () => {
    let calls = 0;
    const provider = mskIamTokenProvider('kafkaSink', { mechanism: 'AWS_MSK_IAM', credentials: async () => ({ ...credentials, accessKeyId: `AKID${++calls}` }) }, 'ap-southeast-2');
    assert.match(decode(await provider()).searchParams.get('X-Amz-Credential')!, /^AKID1\/\d{8}\/ap-southeast-2\//);
    assert.match(decode(await provider()).searchParams.get('X-Amz-Credential')!, /^AKID2\//);
    const failing = mskIamTokenProvider('kafkaSink', { mechanism: 'AWS_MSK_IAM', credentials: async () => Promise.reject(new Error('no credentials in the chain')) }, 'eu-west-1');
    await assert.rejects(failing(), (error: unknown) => error instanceof ManifoldError && error.code === ErrorCodes.AUTH && /AWS_MSK_IAM could not get AWS credentials \(region eu-west-1\): no credentials in the chain/.test(error.message));
  });

  it('the region comes from an MSK broker name, else AWS_REGION / AWS_DEFAULT_REGION', () => {
    assert.equal(mskRegion(['b-1.mycluster.abc123.c2.kafka.eu-central-1.amazonaws.com:9098'], {}), 'eu-central-1');
    assert.equal(mskRegion(['boot-abc.c1.kafka-serverless.us-west-2.amazonaws.com:9098'], {}), 'us-west-2');
    assert.equal(mskRegion(['127.0.0.1:9098'], { AWS_REGION: 'sa-east-1' }), 'sa-east-1');
    assert.equal(mskRegion(['127.0.0.1:9098'], { AWS_DEFAULT_REGION: 'ca-central-1' }), 'ca-central-1');
    assert.equal(mskRegion(['127.0.0.1:9098'], {}), undefined);
  });

  it('kafkaSink takes sasl AWS_MSK_IAM as OAUTHBEARER with a token provider, over TLS only', async () => {
    const options = { brokers: 'b-1.c.x.c2.kafka.eu-west-1.amazonaws.com:9098', topic: 't', tls: true, sasl: { mechanism: 'AWS_MSK_IAM' as const, credentials } };
    const resolved = resolveConnection('kafkaSink', kafkaSinkOptions.resolve(options));
    assert.equal(resolved.base.sasl?.mechanism, 'OAUTHBEARER');
    assert.equal(typeof resolved.base.sasl?.token, 'function');
    const url = decode(await (resolved.base.sasl!.token as () => Promise<string>)());
    assert.equal(url.host, 'kafka.eu-west-1.amazonaws.com');
    const refused: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...options, tls: undefined }, /options\.tls must be given with sasl\.mechanism AWS_MSK_IAM: MSK takes IAM only over TLS/],
      [{ ...options, brokers: '127.0.0.1:9098', sasl: { mechanism: 'AWS_MSK_IAM' } }, /options\.sasl\.region must be the MSK cluster's region/],
      [{ ...options, sasl: { mechanism: 'AWS_MSK_IAM', region: 'Europe' } }, /options\.sasl\.region must be an AWS region such as eu-west-1, got "\(hidden\)"/],
      [{ ...options, sasl: { mechanism: 'AWS_MSK_IAM', password: 'pw-not-shown' } }, /options\.sasl\.password must be absent with AWS_MSK_IAM/],
      [{ ...options, sasl: { mechanism: 'SCRAM-SHA-512', username: 'u', password: 'p', region: 'eu-west-1' } }, /options\.sasl\.region must be given only with mechanism AWS_MSK_IAM/],
    ];
    const saved = { AWS_REGION: process.env.AWS_REGION, AWS_DEFAULT_REGION: process.env.AWS_DEFAULT_REGION };
    delete process.env.AWS_REGION;
    delete process.env.AWS_DEFAULT_REGION;
    try {
      for (const [given, message] of refused) {
        assert.throws(
          () => kafkaSink(given as never),
          (error: unknown) => error instanceof ManifoldError && error.code === ErrorCodes.INVALID_OPTION && message.test(error.message) && !error.message.includes('pw-not-shown'),
          `expected ${message}`,
        );
      }
    } finally {
      for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
    }
  });
});
