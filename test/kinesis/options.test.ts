/**
 * The Kinesis option declarations (lib/kinesis/options.ts): the AWS connection options are judged by
 * one declaration and one function, so kinesisSource, kinesisSink and dynamoLeases refuse and accept
 * the same values with the same words; misspelt keys get a hint.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { awsConnection } from '../../lib/core/aws.js';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { dynamoLeases } from '../../lib/kinesis/dynamo-leases.js';
import { dynamoLeasesOptions, kinesisSinkOptions, kinesisSourceOptions } from '../../lib/kinesis/options.js';
import { kinesisSink } from '../../lib/kinesis/sink.js';
import { kinesisSource } from '../../lib/kinesis/source.js';

/** Each factory, made with `options` added to what it needs, then released. */
const factories: Array<[string, (options: Record<string, unknown>) => void]> = [
  ['kinesisSource', (o) => kinesisSource({ streamName: 's', region: 'us-east-1', ...o } as never).destroy()],
  ['kinesisSink', (o) => kinesisSink({ streamName: 's', region: 'us-east-1', ...o } as never).destroy()],
  ['dynamoLeases', (o) => void dynamoLeases({ tableName: 'leases', region: 'us-east-1', ...o } as never).stop()],
];

/** The message of the INVALID_OPTION error `make` throws, without the factory's name. */
function refusal(where: string, make: () => void): string {
  let error: unknown;
  try {
    make();
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof ManifoldError && error.code === ErrorCodes.INVALID_OPTION, `${where} refuses it`);
  assert.ok(error.message.startsWith(`${where}: `), error.message);
  return error.message.slice(where.length + 2);
}

describe('Kinesis and DynamoDB connection options: one judgement, one wording', () => {
  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ['an endpoint that is not http(s)', { endpoint: 'ftp://x' }, /^options\.endpoint must be an http:\/\/ or https:\/\/ URL, got "ftp:\/\/x"$/],
    ['credentials that are not an object or provider', { credentials: 5 }, /^options\.credentials must be AWS credentials \(\{ accessKeyId, secretAccessKey \}\) or a credential provider, got "\(hidden\)"$/],
    ['an empty region', { region: '' }, /^options\.region must be a non-empty string, got ""$/],
    ['a request timeout of 0', { requestTimeoutMs: 0 }, /^options\.requestTimeoutMs must be a number from 1 to 2147483647 \(milliseconds\), got 0$/],
  ];
  for (const [what, options, message] of bad) {
    it(`refuses ${what} in every factory, in the same words as awsConnection()`, () => {
      const texts = factories.map(([where, make]) => refusal(where, () => make(options)));
      for (const text of texts) assert.match(text, message);
      assert.equal(refusal('x', () => awsConnection('x', options, 'a client')), texts[0]);
    });
  }

  it('accepts credentials given as an object ({} included: the SDK judges its fields) in every factory', () => {
    for (const [, make] of factories) make({ credentials: {} });
    for (const [, make] of factories) make({ credentials: { accessKeyId: 'AKID', secretAccessKey: 'secret' } });
  });

  it('refuses a client with region, endpoint, credentials or connectTimeoutMs, naming both', () => {
    const client = { send: async () => ({}), destroy() {} };
    for (const key of ['endpoint', 'credentials', 'connectTimeoutMs'] as const) {
      const value = key === 'endpoint' ? 'http://127.0.0.1:1' : key === 'credentials' ? {} : 1000;
      for (const [where, make] of factories) {
        assert.match(refusal(where, () => make({ region: undefined, client, [key]: value })), new RegExp(`^options\\.client and options\\.${key} cannot be combined`));
      }
    }
  });

  it('a misspelt option gets a did-you-mean hint in every factory', () => {
    assert.match(refusal('kinesisSource', () => factories[0]![1]({ maxInFlightPerShrd: 5 })), /^unknown option "maxInFlightPerShrd" \(did you mean "maxInFlightPerShard"\?\)/);
    assert.match(refusal('kinesisSink', () => factories[1]![1]({ linger: 5 })), /^unknown option "linger" \(did you mean "lingerMs"\?\)/);
    assert.match(refusal('dynamoLeases', () => factories[2]![1]({ renewInterval: 5 })), /^unknown option "renewInterval" \(did you mean "renewIntervalMs"\?\)/);
  });
});

describe('Kinesis option declarations', () => {
  it('the source and the sink share their stream and connection options, declared once', () => {
    const shared = ['streamName', 'streamARN', 'client', 'region', 'endpoint', 'credentials', 'requestTimeoutMs', 'connectTimeoutMs', 'retry', 'signal', 'highWaterMark'];
    for (const name of shared.slice(0, 8)) assert.equal(kinesisSourceOptions.specs[name as never], kinesisSinkOptions.specs[name as never], name);
    for (const name of shared) {
      assert.ok(kinesisSourceOptions.names.includes(name as never) && kinesisSinkOptions.names.includes(name as never), name);
    }
  });

  it('the lease options take the keys of a kinesis: URI (leaseTable, dynamoEndpoint, dynamoTls), and leave the region and timeouts to the source', () => {
    const keys = dynamoLeasesOptions.names.map((name) => [name, dynamoLeasesOptions.specs[name].cli]);
    assert.deepEqual(Object.fromEntries(keys.filter(([, cli]) => cli !== undefined)), {
      tableName: 'leaseTable',
      client: false,
      region: false,
      endpoint: 'dynamoEndpoint',
      tls: 'dynamoTls',
      credentials: false,
      requestTimeoutMs: false,
      connectTimeoutMs: false,
    });
  });
});
