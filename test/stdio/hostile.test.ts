/**
 * stdoutSink against hostile input (issue 19): a message that contains the delimiter would be
 * read back as two records. It is refused (nacked with MANIFOLD_ERR_INVALID_MESSAGE, dead-lettered
 * by flow() without retrying) or, with onDelimiter 'escape', every record is written escaped.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { flow } from '../../lib/core/flow.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import { stdoutSink, type StdoutSinkOptions } from '../../lib/stdio/sink.js';

/** Runs `records` through a stdoutSink into a buffer; returns what was written and how each was settled. */
async function write(records: Array<string | Buffer>, options: Omit<StdoutSinkOptions, 'output'> = {}) {
  const output = new PassThrough();
  const chunks: Buffer[] = [];
  output.on('data', (c: Buffer) => chunks.push(c));
  const settled: Array<'ack' | string> = [];
  const rejects: Array<{ error: ManifoldError; bytes: number }> = [];
  const messages = records.map((data, i) => createMessage({ data, onAck: () => (settled[i] = 'ack'), onNack: (e) => (settled[i] = (e as ManifoldError).code) }));
  const sink = stdoutSink({ output, ...options });
  sink.on('reject', (e: { error: ManifoldError; bytes: number }) => rejects.push(e));
  await pipeline(Readable.from(messages), sink);
  return { written: Buffer.concat(chunks), settled, rejects };
}

/** The escapes 'escape' writes, undone: `\\`, `\n`, `\r`, `\t`, `\u00XX` (bytes as latin1 text). */
function unescape(line: Buffer): Buffer {
  const text = line.toString('latin1').replace(/\\(\\|n|r|t|u00[0-9a-f]{2})/g, (_, e: string) =>
    e === '\\' ? '\\' : e === 'n' ? '\n' : e === 'r' ? '\r' : e === 't' ? '\t' : String.fromCharCode(parseInt(e.slice(3), 16)),
  );
  return Buffer.from(text, 'latin1');
}

function split(data: Buffer, delimiter: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (let at = data.indexOf(delimiter); at >= 0; at = data.indexOf(delimiter, from)) {
    out.push(data.subarray(from, at));
    from = at + delimiter.length;
  }
  assert.equal(from, data.length, 'the output ends with a delimiter');
  return out;
}

describe('stdoutSink: one record is one line', () => {
  it("refuses (by default) a message containing the delimiter: nacked with INVALID_MESSAGE and a 'reject' event; the others are written", async () => {
    const { written, settled, rejects } = await write(['one', 'two\nlines', 'three', '\n', 'ends with\n', 'four']);
    assert.equal(written.toString(), 'one\nthree\nfour\n');
    assert.deepEqual(settled, ['ack', ErrorCodes.INVALID_MESSAGE, 'ack', ErrorCodes.INVALID_MESSAGE, ErrorCodes.INVALID_MESSAGE, 'ack']);
    assert.deepEqual(
      rejects.map((r) => [r.bytes, r.error.code, r.error.message]),
      [
        [9, ErrorCodes.INVALID_MESSAGE, `stdoutSink: the message contains the delimiter "\\n" (at byte 3), so it would be read back as more than one record; refused (onDelimiter: 'escape' writes it escaped)`],
        [1, ErrorCodes.INVALID_MESSAGE, `stdoutSink: the message contains the delimiter "\\n" (at byte 0), so it would be read back as more than one record; refused (onDelimiter: 'escape' writes it escaped)`],
        [10, ErrorCodes.INVALID_MESSAGE, `stdoutSink: the message contains the delimiter "\\n" (at byte 9), so it would be read back as more than one record; refused (onDelimiter: 'escape' writes it escaped)`],
      ],
    );
  });

  it('refuses in a batch of queued writes too (writev), keeping the order of the others', async () => {
    const output = new PassThrough();
    let text = '';
    output.on('data', (c: Buffer) => (text += c.toString()));
    const sink = stdoutSink({ output });
    const nacked: string[] = [];
    sink.cork();
    for (const data of ['a', 'b\n', 'c', 'd\ne', 'f']) sink.write(createMessage({ data, onNack: () => nacked.push(data) }));
    sink.uncork();
    sink.end();
    await new Promise((resolve) => sink.on('finish', resolve));
    assert.equal(text, 'a\nc\nf\n');
    assert.deepEqual(nacked, ['b\n', 'd\ne']);
  });

  it('judges a delimiter of several bytes as a reader that splits at the first one would: a record may not end with its beginning', async () => {
    const delimiter = '\n\n';
    const { written, settled } = await write(['a', 'b\n', 'c\n\nd', '\nx', 'e\n\n'], { delimiter });
    assert.equal(written.toString(), 'a\n\n\nx\n\n');
    assert.deepEqual(settled, ['ack', ErrorCodes.INVALID_MESSAGE, ErrorCodes.INVALID_MESSAGE, 'ack', ErrorCodes.INVALID_MESSAGE]);
    assert.deepEqual(split(written, Buffer.from(delimiter)).map(String), ['a', '\nx']);
    // CRLF: a lone CR or LF is no delimiter.
    const crlf = await write(['a\r', '\nb', 'c\r\nd'], { delimiter: '\r\n' });
    assert.deepEqual(crlf.settled, ['ack', 'ack', ErrorCodes.INVALID_MESSAGE]);
    assert.deepEqual(split(crlf.written, Buffer.from('\r\n')).map(String), ['a\r', '\nb']);
  });

  it('through flow(): the refused message goes to the dead-letter sink at once (1 attempt, no redelivery); without one, the flow fails naming it', async () => {
    const output = new PassThrough();
    let text = '';
    output.on('data', (c: Buffer) => (text += c.toString()));
    const dead: Message[] = [];
    const deadLetter = new Writable({
      objectMode: true,
      write(message: Message, _encoding, callback) {
        dead.push(message);
        message.ack();
        callback();
      },
    });
    const stats = await flow({ source: Readable.from(['a', 'b\nc', 'd']), sink: stdoutSink({ output }), deadLetter, deadLetterFormat: 'json', maxAttempts: 5 });
    assert.equal(text, 'a\nd\n');
    assert.equal(stats.deadLettered, 1);
    assert.equal(stats.redeliveries, 0);
    const envelope = JSON.parse(dead[0]!.data.toString()) as { attempts: number; error: { code: string; message: string } };
    assert.equal(envelope.attempts, 1);
    assert.equal(envelope.error.code, ErrorCodes.INVALID_MESSAGE);
    assert.match(envelope.error.message, /contains the delimiter/);
    // No dead-letter sink, a source that cannot redeliver: lost, and said so.
    await assert.rejects(
      flow({ source: Readable.from(['a', 'b\nc']), sink: stdoutSink({ output: new PassThrough().resume() }), maxAttempts: 5 }),
      (error: ManifoldError) => error.code === ErrorCodes.UNDELIVERED && /contains the delimiter/.test(error.message),
    );
  });

  it("onDelimiter 'escape': every record is one line, and the escapes undo exactly (2,000 random binary records)", async () => {
    const records = Array.from({ length: 2000 }, (_, i) => {
      const bytes = randomBytes(i % 40);
      // Plenty of what matters: newlines, backslashes, CRs, a literal "\n".
      for (let k = 0; k < bytes.length; k += 3) bytes[k] = [0x0a, 0x5c, 0x0d, 0x6e][(i + k) % 4]!;
      return bytes;
    });
    const { written, settled } = await write(records, { onDelimiter: 'escape' });
    assert.ok(settled.every((s) => s === 'ack'));
    const lines = split(written, Buffer.from('\n'));
    assert.equal(lines.length, records.length);
    lines.forEach((line, i) => assert.deepEqual(unescape(line), records[i], `record ${i}`));
    // Text stays readable: only the backslash and the delimiter change.
    const text = await write(['two\nlines', 'C:\\dir', 'tab\there', 'plain'], { onDelimiter: 'escape' });
    assert.equal(text.written.toString(), 'two\\nlines\nC:\\\\dir\ntab\there\nplain\n');
  });

  it("'escape' with another delimiter escapes its characters; one made of letters, digits or a backslash is refused, naming both options", async () => {
    const nul = await write(['a\0b', 'c'], { onDelimiter: 'escape', delimiter: '\0' });
    assert.equal(nul.written.toString('latin1'), 'a\\u0000b\0c\0');
    const rs = await write(['x|y'], { onDelimiter: 'escape', delimiter: '|' });
    assert.equal(rs.written.toString(), 'x\\u007cy|');
    for (const delimiter of ['n', 'END', '\\', '0', 'é']) {
      assert.throws(
        () => stdoutSink({ output: new PassThrough(), onDelimiter: 'escape', delimiter }),
        (error: ManifoldError) =>
          error.code === ErrorCodes.INVALID_OPTION && /^stdoutSink: options\.onDelimiter and options\.delimiter cannot be combined: 'escape' needs a delimiter of ASCII punctuation or control characters/.test(error.message),
      );
    }
    assert.throws(() => stdoutSink({ onDelimiter: 'skip' as 'refuse' }), /stdoutSink: options\.onDelimiter must be one of "refuse", "escape", got "skip"/);
  });

  it('the command: a dead letter with a newline re-sent to stdout: is dead-lettered again (exit 0), lost without --dead-letter (exit 4), or escaped', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'manifold-stdio-hostile-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const envelope = (data: string) =>
      JSON.stringify({ manifoldDeadLetter: 1, source: 'test', position: {}, attempts: 1, error: { code: 'X', message: 'x' }, failedAt: new Date(0).toISOString(), data });
    const input = join(dir, 'in.jsonl');
    await writeFile(input, `${envelope('one line')}\n${envelope('two\nlines')}\n${envelope('three')}\n`);
    const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', bin, ...args, '--transform', 'unwrap-dead-letter', '-q'], { stdio: ['ignore', 'pipe', 'pipe'] });
        t.after(() => child.kill('SIGKILL'));
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
        child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
        child.once('close', (code) => resolve({ code, stdout, stderr }));
      });
    const dead = join(dir, 'dead.jsonl');
    const kept = await run([`file:${input}`, 'stdout:', '--dead-letter', `file:${dead}`]);
    assert.equal(kept.code, 0, kept.stderr);
    assert.equal(kept.stdout, 'one line\nthree\n');
    const records = (await readFile(dead, 'utf8')).split('\n').filter(Boolean).map((line) => JSON.parse(line) as { data: string; attempts: number; error: { code: string } });
    // The source's record is what is dead-lettered (here the old envelope, which the transform unwrapped).
    assert.deepEqual(
      records.map((r) => [(JSON.parse(r.data) as { data: string }).data, r.attempts, r.error.code]),
      [['two\nlines', 1, ErrorCodes.INVALID_MESSAGE]],
    );
    const lost = await run([`file:${input}`, 'stdout:']);
    assert.equal(lost.code, 4, lost.stderr);
    // What came after it may have been written before the flow stopped; never the refused one.
    assert.match(lost.stdout, /^one line\n(three\n)?$/);
    assert.match(lost.stderr, /contains the delimiter/);
    const escaped = await run([`file:${input}`, 'stdout:?onDelimiter=escape']);
    assert.equal(escaped.code, 0, escaped.stderr);
    assert.equal(escaped.stdout, 'one line\ntwo\\nlines\nthree\n');
  });
});
