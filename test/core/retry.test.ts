import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { backoffDelay, resolveRetry, withRetry, type RetryEvent } from '../../lib/core/retry.js';

const transient = (text = 'connection reset'): Error => Object.assign(new Error(text), { code: 'ECONNRESET' });
const fast = { retries: 5, minTimeoutMs: 1, maxTimeoutMs: 5 };

describe('resolveRetry', () => {
  it('fills defaults and validates each field by name', () => {
    assert.deepEqual(resolveRetry('x', undefined), { retries: 10, minTimeoutMs: 200, maxTimeoutMs: 30_000, factor: 2, signal: undefined });
    assert.equal(resolveRetry('x', false).retries, 0);
    assert.throws(() => resolveRetry('rabbitmqSource', { retries: -1 }), /rabbitmqSource: options\.retry\.retries must be a non-negative integer, got -1/);
    assert.throws(() => resolveRetry('x', { minTimeoutMs: 100, maxTimeoutMs: 10 }), /maxTimeoutMs \(10\) must be at least options\.retry\.minTimeoutMs \(100\)/);
    assert.throws(() => resolveRetry('x', { retires: 3 } as never), /unknown option "retires"/);
  });

  it('computes jittered exponential delays within bounds', () => {
    const r = resolveRetry('x', { minTimeoutMs: 100, maxTimeoutMs: 1000 });
    for (let i = 0; i < 50; i++) {
      const first = backoffDelay(r, 1);
      assert.ok(first >= 100 && first <= 200, String(first));
      const third = backoffDelay(r, 3);
      assert.ok(third >= 400 && third <= 800, String(third));
      assert.ok(backoffDelay(r, 20) <= 1000);
    }
  });
});

describe('retries: Infinity', () => {
  it('is accepted, and the delay stays capped (and a number) however long the outage lasts', () => {
    const r = resolveRetry('x', { retries: Infinity, minTimeoutMs: 100, maxTimeoutMs: 1000 });
    assert.equal(r.retries, Infinity);
    assert.equal(backoffDelay(r, 5000), 1000, 'factor ** attempt reaches Infinity: the cap holds');
    assert.equal(backoffDelay(resolveRetry('x', { retries: Infinity, minTimeoutMs: 0, maxTimeoutMs: 0 }), 5000), 0, 'not NaN');
  });

  it('keeps trying past any finite default until the operation succeeds', async () => {
    let calls = 0;
    const events: RetryEvent[] = [];
    const result = await withRetry('connecting', async () => {
      calls++;
      if (calls <= 40) throw transient();
      return 'ok';
    }, resolveRetry('t', { retries: Infinity, minTimeoutMs: 1, maxTimeoutMs: 1 }), (e) => events.push(e));
    assert.equal(result, 'ok');
    assert.equal(events.length, 40);
    assert.equal(events.at(-1)!.attempt, 40);
  });
});

describe('withRetry', () => {
  it('retries transient failures and reports each retry', async () => {
    const events: RetryEvent[] = [];
    let calls = 0;
    const result = await withRetry('connecting', async () => {
      calls++;
      if (calls < 3) throw transient();
      return 'ok';
    }, resolveRetry('t', fast), (e) => events.push(e));
    assert.equal(result, 'ok');
    assert.equal(calls, 3);
    assert.deepEqual(events.map((e) => e.attempt), [1, 2]);
    assert.ok(events.every((e) => e.error.message === 'connection reset'));
  });

  it('does not retry a fatal error, and wraps it naming what failed', async () => {
    let calls = 0;
    await assert.rejects(
      withRetry('opening queue "q"', async () => {
        calls++;
        throw Object.assign(new Error('NOT_FOUND - no queue'), { code: 404 });
      }, resolveRetry('t', fast)),
      (error: unknown) => {
        assert.ok(error instanceof ManifoldError);
        assert.match(error.message, /^opening queue "q" failed: NOT_FOUND - no queue$/);
        assert.equal(error.retryable, false);
        return true;
      },
    );
    assert.equal(calls, 1);
  });

  it('passes a fatal ManifoldError through as it is', async () => {
    const fatal = new ManifoldError('bad credentials for amqp://u:***@h', { code: ErrorCodes.AUTH });
    await assert.rejects(withRetry('x', async () => { throw fatal; }, resolveRetry('t', fast)), (e) => e === fatal);
  });

  it('gives up after the budget with RETRIES_EXHAUSTED and the last cause', async () => {
    let calls = 0;
    await assert.rejects(
      withRetry('connecting to ws://feed', async () => {
        calls++;
        throw transient(`refused ${calls}`);
      }, resolveRetry('t', { retries: 2, minTimeoutMs: 1, maxTimeoutMs: 2 })),
      (error: unknown) => {
        assert.ok(error instanceof ManifoldError);
        assert.equal(error.code, ErrorCodes.RETRIES_EXHAUSTED);
        assert.match(error.message, /^connecting to ws:\/\/feed failed after 3 attempts: refused 3$/);
        assert.equal((error.cause as Error).message, 'refused 3');
        return true;
      },
    );
    assert.equal(calls, 3);
  });

  it('stops waiting at once when its signal aborts', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const running = withRetry('x', async () => { throw transient(); }, resolveRetry('t', { retries: 100, minTimeoutMs: 10_000 }), undefined, controller.signal);
    setTimeout(() => controller.abort(new ManifoldError('stop', { code: ErrorCodes.ABORTED })), 20);
    await assert.rejects(running, /stop/);
    assert.ok(Date.now() - started < 5000);
  });

  it('with retry: false makes a single attempt', async () => {
    let calls = 0;
    await assert.rejects(withRetry('x', async () => { calls++; throw transient(); }, resolveRetry('t', false)), /x failed: connection reset/);
    assert.equal(calls, 1);
  });
});

/**
 * A source over an in-memory "broker": it reads from a shared queue, and can be told
 * to fail after n messages. Unacked messages go back to the queue when it fails,
 * as a broker requeues them.
 */
