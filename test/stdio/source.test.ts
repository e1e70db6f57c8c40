import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PassThrough, Readable } from 'node:stream';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import type { Message } from '../../lib/core/message.js';
import { stdinSource } from '../../lib/stdio/source.js';
import { sourceConformance } from '../conformance/suite.js';

const child = join(import.meta.dirname, '..', 'fixtures', 'stdio-child.ts');

async function readAll(source: Readable): Promise<Message[]> {
  const out: Message[] = [];
  for await (const m of source as AsyncIterable<Message>) out.push(m);
  return out;
}

describe('stdinSource', () => {
  it('reads process.stdin of a real process, one message per line, through to stdout', async () => {
    const proc = spawn(process.execPath, ['--import', 'tsx', child, 'json'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    proc.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    const lines = Array.from({ length: 2000 }, (_, i) => JSON.stringify({ i }));
    proc.stdin.write(`${lines.slice(0, 1000).join('\r\n')}\r\n`);
    proc.stdin.write('not json\n');
    proc.stdin.end(`${lines.slice(1000).join('\n')}`); // last line without a newline
    const code = await new Promise((r) => proc.once('exit', r));
    assert.equal(code, 0, stderr);
    const out = stdout.trimEnd().split('\n');
    assert.equal(out.length, 2001);
    assert.deepEqual(JSON.parse(out[0]!), { i: 0, piped: true });
    assert.equal(out[1000], 'not json');
    assert.deepEqual(JSON.parse(out[2000]!), { i: 1999, piped: true });
    const stats = JSON.parse(stderr);
    assert.equal(stats.messages, 2001);
    assert.equal(stats.acks, 2001);
  });

  it('ends quietly when the reader goes away (EPIPE, as `| head -1`)', async () => {
    const proc = spawn(process.execPath, ['--import', 'tsx', child], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    const first = new Promise<string>((resolve) => proc.stdout.once('data', (c: Buffer) => resolve(c.toString())));
    // Feed without end so only EPIPE can stop it; once the child is gone our own writes fail too.
    proc.stdin.on('error', () => {});
    const feeder = setInterval(() => proc.stdin.write(`${'x'.repeat(100)}\n`.repeat(100)), 5);
    assert.match(await first, /^x+/);
    proc.stdout.destroy();
    const code = await new Promise((r) => proc.once('exit', r));
    clearInterval(feeder);
    assert.equal(code, 0, stderr);
    assert.doesNotMatch(stderr, /EPIPE|Error|failed/);
    assert.equal(JSON.parse(stderr).stopped, true);
  });

  it('works with any Readable and numbers lines in meta', async () => {
    const out = await readAll(stdinSource({ input: Readable.from([Buffer.from('a\nb\n'), Buffer.from('c')]) }));
    assert.deepEqual(out.map((m) => [m.data.toString(), m.meta?.['line']]), [['a', 1], ['b', 2], ['c', 3]]);
  });

  it('supports other delimiters', async () => {
    const out = await readAll(stdinSource({ input: Readable.from([Buffer.from('a\0b\0')]), delimiter: '\0' }));
    assert.deepEqual(out.map((m) => m.data.toString()), ['a', 'b']);
  });

  it('rejects a line over maxMessageBytes with an error naming stdin and the line', async () => {
    const source = stdinSource({ input: Readable.from([Buffer.from('short\n'), Buffer.from('x'.repeat(100))]), maxMessageBytes: 10 });
    await assert.rejects(readAll(source), (e: unknown) => {
      assert.ok(e instanceof ManifoldError);
      assert.equal(e.code, ErrorCodes.MESSAGE_TOO_LARGE);
      assert.match(e.message, /record 2 of input is longer than maxMessageBytes/);
      return true;
    });
  });

  it('skips oversized lines when asked, and reports them', async () => {
    const source = stdinSource({ input: Readable.from([Buffer.from(`ok\n${'x'.repeat(30)}\nfine\n`)]), maxMessageBytes: 10, onOversize: 'skip' });
    const skips: unknown[] = [];
    source.on('skip', (s) => skips.push(s));
    const out = await readAll(source);
    assert.deepEqual(out.map((m) => m.data.toString()), ['ok', 'fine']);
    assert.deepEqual(skips, [{ line: 2, bytes: 30 }]);
  });

  it('close() delivers what was read, including a partial last line, and leaves the input paused', async () => {
    const input = new PassThrough();
    const source = stdinSource({ input });
    const got: string[] = [];
    source.on('data', (m: Message) => got.push(m.data.toString()));
    input.write('one\ntwo\nparti');
    await new Promise((r) => setTimeout(r, 20));
    await source.close();
    assert.deepEqual(got, ['one', 'two', 'parti']);
    assert.ok(input.isPaused());
    assert.equal(input.destroyed, false);
    await source.close();
  });

  it('fails with a clear error when the input fails', async () => {
    const input = new PassThrough();
    const source = stdinSource({ input });
    const reading = readAll(source);
    input.destroy(new Error('disk gone'));
    await assert.rejects(reading, /stdinSource: reading the input failed: disk gone/);
  });

  it('rejects bad options at construction', () => {
    assert.throws(() => stdinSource({ input: 5 as never }), /stdinSource: options\.input must be a readable byte stream, got 5/);
    assert.throws(() => stdinSource({ maxMessageBytes: -1 }), /options\.maxMessageBytes must be a positive integer/);
    assert.throws(() => stdinSource({ delim: '\n' } as never), /unknown option "delim"/);
  });
});

sourceConformance({
  name: 'stdin',
  redelivers: false,
  async setup() {
    const input = new PassThrough();
    return {
      source: (options) => stdinSource({ input, ...(options?.signal ? { signal: options.signal } : {}) }),
      async produce(payloads) {
        // The PassThrough holds what the source has not read yet, as the kernel's pipe buffer would.
        for (const p of payloads) input.write(Buffer.concat([p, Buffer.from('\n')]));
      },
      async cleanup() {
        input.destroy();
      },
    };
  },
});
