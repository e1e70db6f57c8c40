/** The progress line: counters, and what /readyz would say of each connector. */
import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { Monitor } from '../../lib/cli/monitor.js';
import { progressLine } from '../../lib/cli/progress.js';
import type { Logger } from '../../lib/cli/log.js';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { flow } from '../../lib/core/flow.js';

const quiet: Logger = { info() {}, warn() {}, error() {}, flush() {} };

describe('progressLine', () => {
  it('names a reconnecting connector with the system reason, and the S3 backlog', async () => {
    const source = new PassThrough({ objectMode: true });
    const sink = Object.assign(new Writable({ objectMode: true, write: (_m, _e, cb) => cb() }), {
      gauges: () => ({ s3_buffer_files: 2, s3_buffer_bytes: 3072, s3_buffer_oldest_age_seconds: 4 }),
    });
    const running = flow({ source, sink });
    const monitor = new Monitor(running, source, sink, quiet);
    assert.match(progressLine(monitor, 0), /^0 msg\/s \| in 0 \(0 B\) \| acked 0 \| unacked 0 \| S3 files waiting 2 \(3\.0 KiB\)$/);
    const error = new ManifoldError('rabbitmqSource: the connection was lost', { code: ErrorCodes.CONNECTION, retryable: true, details: { replyCode: 320, replyText: 'CONNECTION_FORCED - maintenance' } });
    source.emit('reconnect', { attempt: 1, delayMs: 100, error });
    assert.match(progressLine(monitor, 0), /reconnects 1 \| source reconnecting \(AMQP 320 CONNECTION_FORCED - maintenance\) \| S3 files waiting 2/);
    source.emit('ready');
    assert.doesNotMatch(progressLine(monitor, 0), /reconnecting/);
    source.end();
    await running;
  });

  it('counts what the error policy did: dead-lettered and lost messages are settled, not unacked', async () => {
    const source = Object.assign(new PassThrough({ objectMode: true }), { redelivers: false });
    // The sink refuses every record as at fault: given up on at once, with no retry.
    const refuse = new ManifoldError('not JSON', { code: ErrorCodes.INVALID_MESSAGE });
    const sink = new Writable({ objectMode: true, write: (m: { nack(e: Error): void }, _e, cb) => (m.nack(refuse), cb()) });
    const deadLetter = new Writable({ objectMode: true, write: (m: { ack(): void }, _e, cb) => (m.ack(), cb()) });
    const running = flow({ source, sink, deadLetter });
    const monitor = new Monitor(running, source, sink, quiet, {}, deadLetter);
    source.write('a');
    source.write('b');
    source.end();
    await running;
    assert.match(progressLine(monitor, 0), /^0 msg\/s \| in 2 \(2 B\) \| acked 0 \| unacked 0 \| dead-lettered 2$/);
    const metrics = await monitor.registry.metrics();
    assert.match(metrics, /^manifold_dead_lettered_total 2$/m);
    assert.match(metrics, /^manifold_unacked_messages 0$/m);

    const lostSource = Object.assign(new PassThrough({ objectMode: true }), { redelivers: false });
    const lostSink = new Writable({ objectMode: true, write: (m: { nack(e: Error): void }, _e, cb) => (m.nack(refuse), cb()) });
    const lostRun = flow({ source: lostSource, sink: lostSink });
    const lostMonitor = new Monitor(lostRun, lostSource, lostSink, quiet);
    lostSource.end('a');
    await assert.rejects(lostRun, { code: ErrorCodes.UNDELIVERED, lost: 1 });
    assert.match(progressLine(lostMonitor, 0), /unacked 0 \| lost 1$/);
    assert.match(await lostMonitor.registry.metrics(), /^manifold_lost_total 1$/m);
  });
});
