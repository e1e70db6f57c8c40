import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PassThrough, Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes } from '../../lib/core/errors.js';
import { SAME_SIGNAL_MS, flow } from '../../lib/core/flow.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import { filter } from '../../lib/transforms/filter.js';
import { map } from '../../lib/transforms/map.js';
import { stdoutSink } from '../../lib/stdio/sink.js';

function collector(opts: { nackEvery?: number } = {}) {
  const got: string[] = [];
  let i = 0;
  const sink = new Writable({
    objectMode: true,
    write(m: Message, _e, cb) {
      i++;
      if (opts.nackEvery && i % opts.nackEvery === 0) m.nack(new Error('no'));
      else {
        got.push(m.data.toString());
        m.ack();
      }
      cb();
    },
  });
  return { sink, got };
}

describe('flow', () => {
  it('runs source -> transforms -> sink and resolves with stats', async () => {
    const { sink, got } = collector({ nackEvery: 10 });
    const source = Readable.from(Array.from({ length: 100 }, (_, i) => String(i)));
    const stats = await flow({
      source,
      transforms: [filter((m) => Number(m.data) % 2 === 0), map((m) => `n${m.data}`)],
      sink,
      retryBackoff: { minTimeoutMs: 1, maxTimeoutMs: 5 },
    });
    assert.equal(stats.messages, 100);
    assert.equal(stats.bytes, 190);
    assert.ok(stats.redeliveries >= 5, `every nack was redelivered (${stats.redeliveries})`);
    assert.equal(stats.nacks, 0);
    assert.equal(stats.acks, 100); // 50 dropped by the filter count as delivered
    assert.equal(stats.unsettled, 0);
    assert.equal(stats.stopped, false);
    assert.equal(got.length, 50);
    assert.ok(stats.durationMs >= 0);
  });

  it('accepts async generator stages, and acks survive copies', async () => {
    const { sink, got } = collector();
    const acked: number[] = [];
    const source = Readable.from(Array.from({ length: 10 }, (_, i) => createMessage({ data: String(i), onAck: () => acked.push(i) })));
    const stats = await flow({
      source,
      transforms: [async function* (messages: AsyncIterable<Message>) {
        for await (const m of messages) yield { ...m, data: Buffer.from(`x${m.data}`) };
      }],
      sink,
    });
    assert.equal(stats.acks, 10);
    assert.deepEqual(acked, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(got[3], 'x3');
  });

  it('stop() ends a plain Readable gracefully: what was read is delivered and acked', async () => {
    const { sink, got } = collector();
    let n = 0;
    const source = new Readable({ objectMode: true, read() { setTimeout(() => this.push(String(n++)), 1); } });
    const running = flow({ source, sink });
    const reasons: unknown[] = [];
    running.events.on('stopping', (why) => reasons.push(why));
    await sleep(50);
    const stats = await running.stop();
    await running.stop();
    assert.deepEqual(reasons, [{ reason: 'stop' }], "'stopping' says why, once");
    assert.equal(stats.stopped, true);
    assert.equal(stats.unsettled, 0);
    assert.equal(stats.acks, stats.messages);
    assert.equal(got.length, stats.messages);
    assert.ok(source.destroyed, 'a plain source is released after the stop');
  });

  it('stop() calls a closable source\'s close()', async () => {
    const { sink } = collector();
    let closed = false;
    const source = Object.assign(new Readable({ objectMode: true, read() {} }), {
      async close() {
        closed = true;
        source.push(null);
      },
    });
    source.push('a');
    const running = flow({ source, sink });
    await sleep(10);
    const stats = await running.stop();
    assert.ok(closed);
    assert.equal(stats.acks, 1);
  });

  it('an aborted signal stops the flow gracefully', async () => {
    const { sink } = collector();
    const controller = new AbortController();
    const source = new Readable({ objectMode: true, read() { setTimeout(() => this.push('x'), 1); } });
    const running = flow({ source, sink, signal: controller.signal });
    const reasons: unknown[] = [];
    running.events.on('stopping', (why) => reasons.push(why));
    await sleep(20);
    controller.abort();
    const stats = await running;
    assert.ok(stats.stopped);
    assert.deepEqual(reasons, [{ reason: 'abort' }]);
    assert.equal(stats.unsettled, 0);
  });

  it('destroys everything when a graceful stop outlasts closeTimeoutMs', async () => {
    const source = new Readable({ objectMode: true, read() { this.push('x'); } });
    const stuck = new Writable({ objectMode: true, write() { /* never calls back */ } });
    const running = flow({ source, sink: stuck, closeTimeoutMs: 50 });
    await sleep(10);
    await assert.rejects(running.stop(), (e: { code?: string }) => e.code === ErrorCodes.CLOSE_TIMEOUT);
  });

  it('fails with the source\'s error and names bad records', async () => {
    const { sink } = collector();
    const broken = new Readable({ objectMode: true, read() { this.destroy(new Error('source broke')); } });
    await assert.rejects(flow({ source: broken, sink }), /source broke/);
    const bad = Readable.from([{ not: 'a message' }]);
    await assert.rejects(flow({ source: bad, sink: collector().sink }), /expected a Message/);
  });

  it('ends quietly when stdout goes away (EPIPE), nacking what was not written', async () => {
    const output = new PassThrough();
    let n = 0;
    const source = new Readable({ objectMode: true, read() { setTimeout(() => this.push(String(n++)), 1); } });
    const running = flow({ source, sink: stdoutSink({ output }) });
    const reasons: Array<{ reason: string; error?: Error }> = [];
    running.events.on('stopping', (why) => reasons.push(why));
    output.resume();
    await sleep(30);
    output.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    const stats = await running;
    assert.ok(stats.stopped);
    assert.deepEqual(reasons.map((r) => r.reason), ['outputclose'], 'not taken for a signal');
    assert.match(reasons[0]!.error!.message, /EPIPE/);
  });

  it('rejects bad options naming them', () => {
    const { sink } = collector();
    assert.throws(() => flow({ source: 'x' as never, sink }), /flow: options\.source must be a Readable stream/);
    assert.throws(() => flow({ source: new Readable(), sink: {} as never }), /flow: options\.sink must be a Writable stream/);
    assert.throws(() => flow({ source: new Readable(), sink, transforms: 5 as never }), /options\.transforms must be an array/);
    assert.throws(() => flow({ source: new Readable(), sink, closeTimeoutMs: -1 }), /closeTimeoutMs/);
  });
});

describe('flow with handleSignals (child process)', () => {
  const child = join(import.meta.dirname, '..', 'fixtures', 'flow-child.ts');

  function run(kind: string, slowMs: number) {
    const dir = mkdtempSync(join(tmpdir(), 'manifold-flow-'));
    const out = join(dir, 'out.txt');
    const proc = spawn(process.execPath, ['--import', 'tsx', child, out, kind, String(slowMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    proc.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    const acks = () => [...stdout.matchAll(/^ack (\d+)$/gm)].map((m) => Number(m[1]));
    const delivered = () => {
      try {
        return readFileSync(out, 'utf8').split('\n').filter(Boolean).map(Number);
      } catch {
        return [];
      }
    };
    return { proc, exited, acks, delivered, stdout: () => stdout, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  }

  for (const kind of ['closable', 'plain']) {
    it(`SIGTERM mid-stream (${kind} source): every acked message reached the sink, in-flight ones too, exit code 0`, async (t) => {
      const c = run(kind, 2);
      t.after(c.cleanup);
      while (c.acks().length < 50) await sleep(20);
      c.proc.kill('SIGTERM');
      assert.equal(await c.exited, 0, c.stdout());
      const acked = c.acks();
      const delivered = new Set(c.delivered());
      assert.ok(acked.length >= 50);
      assert.deepEqual(acked.filter((n) => !delivered.has(n)), [], 'every acked number is in the sink');
      const stats = JSON.parse(/^stats (.*)$/m.exec(c.stdout())![1]!);
      assert.equal(stats.stopped, true);
      assert.equal(stats.unsettled, 0, 'what was in flight at the signal was delivered and acked before exit');
      assert.equal(stats.acks, acked.length);
    });
  }

  it('a second signal more than SAME_SIGNAL_MS after the first destroys at once and the flow fails with MANIFOLD_ERR_ABORTED', async (t) => {
    // A sink so slow that the graceful stop cannot finish before the second signal.
    const c = run('plain', 3000);
    t.after(c.cleanup);
    while (!c.stdout().includes('ready')) await sleep(20);
    await sleep(300);
    c.proc.kill('SIGTERM');
    await sleep(SAME_SIGNAL_MS + 300);
    c.proc.kill('SIGTERM');
    assert.equal(await c.exited, 130);
    assert.match(c.stdout(), /failed MANIFOLD_ERR_ABORTED flow: stopped at once by a second signal/);
  });

  it('a second signal within SAME_SIGNAL_MS is the same signal delivered twice (npx tsx passes Ctrl-C on): the stop stays graceful', async (t) => {
    const c = run('closable', 20);
    t.after(c.cleanup);
    while (c.acks().length < 20) await sleep(20);
    c.proc.kill('SIGINT');
    await sleep(50);
    c.proc.kill('SIGINT');
    assert.equal(await c.exited, 0, c.stdout());
    const stats = JSON.parse(/^stats (.*)$/m.exec(c.stdout())![1]!);
    assert.equal(stats.stopped, true);
    assert.equal(stats.unsettled, 0, 'what was in flight was delivered');
  });
});
