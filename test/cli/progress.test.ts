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
});
