import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCodes, ManifoldError, describe as describeError, isRetryable, redactUrl, toError } from '../../lib/core/errors.js';

describe('ManifoldError', () => {
  it('carries code, retryable, cause and details as properties', () => {
    const cause = new Error('socket hang up');
    const err = new ManifoldError('publishing failed', { code: ErrorCodes.CONNECTION, retryable: true, cause, details: { queue: 'q1', code: 'ignored' } });
    assert.equal(err.name, 'ManifoldError');
    assert.equal(err.code, ErrorCodes.CONNECTION);
    assert.equal(err.retryable, true);
    assert.equal(err.cause, cause);
    assert.equal(err.queue, 'q1');
    assert.ok(err instanceof Error);
    assert.equal(new ManifoldError('x', { code: ErrorCodes.AUTH }).retryable, false);
  });
});

describe('isRetryable', () => {
  const sys = (code: string) => Object.assign(new Error(code), { code });
  const aws = (name: string, status?: number, extra: object = {}) =>
    Object.assign(new Error(name), { name, $metadata: status === undefined ? {} : { httpStatusCode: status }, ...extra });

  const cases: Array<[string, unknown, boolean]> = [
    ['ManifoldError retryable', new ManifoldError('x', { code: ErrorCodes.CONNECTION, retryable: true }), true],
    ['ManifoldError fatal', new ManifoldError('x', { code: ErrorCodes.NOT_FOUND }), false],
    ['ECONNREFUSED', sys('ECONNREFUSED'), true],
    ['ECONNRESET', sys('ECONNRESET'), true],
    ['ETIMEDOUT', sys('ETIMEDOUT'), true],
    ['ENOENT', sys('ENOENT'), false],
    ['AWS throttling by name', aws('ProvisionedThroughputExceededException', 400), true],
    ['AWS $retryable', aws('Whatever', 400, { $retryable: {} }), true],
    ['AWS 503', aws('ServiceUnavailable', 503), true],
    ['AWS 500', aws('InternalFailure', 500), true],
    ['AWS 429', aws('TooMany', 429), true],
    ['AWS ResourceNotFound 400', aws('ResourceNotFoundException', 400), false],
    ['AWS AccessDenied 403', aws('AccessDenied', 403), false],
    ['AMQP 320 connection forced', Object.assign(new Error('CONNECTION_FORCED'), { code: 320 }), true],
    ['AMQP 404 not found', Object.assign(new Error('NOT_FOUND'), { code: 404 }), false],
    ['AMQP 403 access refused', Object.assign(new Error('ACCESS_REFUSED'), { code: 403 }), false],
    ['kafka-style canRetry', Object.assign(new Error('x'), { canRetry: true }), true],
    ['transient cause', new Error('wrapped', { cause: sys('ECONNRESET') }), true],
    ['AggregateError of transient', new AggregateError([sys('ECONNREFUSED')], 'all failed'), true],
    ['AbortError', Object.assign(new Error('aborted'), { name: 'AbortError' }), false],
    ['TypeError', new TypeError('x is not a function'), false],
    ['plain Error', new Error('bug'), false],
    ['string', 'ECONNRESET', false],
    ['null', null, false],
    ['undefined', undefined, false],
  ];
  for (const [name, error, expected] of cases) {
    it(`${name} -> ${expected}`, () => assert.equal(isRetryable(error), expected));
  }

  it('never throws, even on a self-referencing cause or hostile objects', () => {
    const loop: Error & { cause?: unknown } = new Error('loop');
    loop.cause = loop;
    assert.equal(isRetryable(loop), false);
    const hostile = new Proxy({}, { get() { throw new Error('trap'); } });
    assert.equal(isRetryable(hostile), false);
    const deep = Array.from({ length: 20 }).reduce<Error>((cause) => new Error('x', { cause }), new Error('bottom'));
    assert.equal(isRetryable(deep), false);
  });
});

describe('redactUrl', () => {
  it('hides passwords and secret query parameters', () => {
    assert.equal(redactUrl('amqp://user:s3cret@host:5672/vh'), 'amqp://user:***@host:5672/vh');
    assert.equal(redactUrl('wss://feed.example/x?token=abc&symbol=BTC'), 'wss://feed.example/x?token=***&symbol=BTC');
    assert.equal(redactUrl('ws://host/feed'), 'ws://host/feed');
    assert.equal(redactUrl('not a url user:pw@'), 'not a url user:pw@');
    assert.ok(!redactUrl('//user:pw@host').includes('pw'));
  });
});

describe('describe / toError', () => {
  it('describes anything thrown', () => {
    assert.equal(describeError(new Error('m')), 'm');
    assert.equal(describeError('s'), 's');
    assert.equal(describeError(new Error('')), 'Error');
    assert.ok(toError('x') instanceof Error);
    const e = new Error('y');
    assert.equal(toError(e), e);
  });
});
