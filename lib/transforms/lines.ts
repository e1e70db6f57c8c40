import { Transform, type TransformCallback } from 'node:stream';
import { ErrorCodes, ManifoldError } from '../core/errors.js';
import { createMessage } from '../core/message.js';
import { bytesOption, checkOptions, delimiterOption, enumOption } from '../core/options.js';

/** Options of {@link lines}. */
export interface LinesOptions {
  /** What separates records. Default `'\n'`; with `'\n'` a `'\r'` before it is dropped too (CRLF). */
  delimiter?: string | Buffer;
  /** Longest record accepted, in bytes, without its delimiter. Default 1 MiB. */
  maxMessageBytes?: number;
  /** What to do with a longer record: fail the stream (default) or drop it and emit `'skip'`. */
  onOversize?: 'error' | 'skip';
  /** Name used in error messages, e.g. `'stdin'`. Default `'input'`. */
  label?: string;
}

const NEWLINE = 0x0a;
const CR = 0x0d;

/**
 * Frames a byte stream into one Message per delimited record (newline by
 * default). A last record without a delimiter is kept. Memory is bounded by
 * `maxMessageBytes`: a longer record fails the stream with an error naming its
 * line number and the limit, or is skipped with `onOversize: 'skip'`.
 * Messages carry `meta.line` (1-based record number).
 *
 * @example
 * ```ts
 * pipeline(fs.createReadStream('events.ndjson'), lines(), jsonAppend({ seenAt: () => Date.now() }), sink);
 * ```
 */
export function lines(options: LinesOptions = {}): Transform {
  const o = checkOptions('lines', options, ['delimiter', 'maxMessageBytes', 'onOversize', 'label']);
  const delimiter = delimiterOption('lines', 'delimiter', o.delimiter, '\n');
  const maxMessageBytes = bytesOption('lines', 'maxMessageBytes', o.maxMessageBytes, 1024 * 1024);
  const onOversize = enumOption('lines', 'onOversize', o.onOversize, ['error', 'skip'] as const, 'error');
  const label = o.label ?? 'input';
  const stripCr = delimiter.length === 1 && delimiter[0] === NEWLINE;

  let rest: Buffer = Buffer.alloc(0);
  let line = 0;
  let skipping = false;
  let skippedBytes = 0;

  const tooLong = (size: number, record: number): ManifoldError =>
    new ManifoldError(
      `lines: record ${record} of ${label} is longer than maxMessageBytes (${size} > ${maxMessageBytes} bytes); raise options.maxMessageBytes or set onOversize: 'skip'`,
      { code: ErrorCodes.MESSAGE_TOO_LARGE, details: { line: record, size, limit: maxMessageBytes } },
    );

  function emitRecord(stream: Transform, record: Buffer): void {
    line += 1;
    if (skipping) {
      stream.emit('skip', { line, bytes: skippedBytes + record.length });
      skipping = false;
      skippedBytes = 0;
      return;
    }
    let end = record.length;
    if (stripCr && end > 0 && record[end - 1] === CR) end -= 1;
    if (end > maxMessageBytes) {
      if (onOversize === 'error') throw tooLong(end, line);
      stream.emit('skip', { line, bytes: end });
      return;
    }
    stream.push(createMessage({ data: end === record.length ? record : record.subarray(0, end), meta: { line } }));
  }

  return new Transform({
    writableObjectMode: false,
    readableObjectMode: true,
    transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback) {
      try {
        // Only the tail of `rest` can hold the start of a delimiter split across chunks.
        let from = Math.max(0, rest.length - delimiter.length + 1);
        let buf = rest.length === 0 ? chunk : Buffer.concat([rest, chunk]);
        let start = 0;
        for (;;) {
          const at = buf.indexOf(delimiter, from);
          if (at === -1) break;
          emitRecord(this, buf.subarray(start, at));
          start = at + delimiter.length;
          from = start;
        }
        buf = buf.subarray(start);
        // Allow for a CR and a partial delimiter beyond the limit before calling the record too long.
        if (buf.length > maxMessageBytes + delimiter.length) {
          if (onOversize === 'error') throw tooLong(buf.length, line + 1);
          skipping = true;
          skippedBytes += buf.length - (delimiter.length - 1);
          buf = buf.subarray(buf.length - (delimiter.length - 1));
        }
        // Copy so a small remainder does not pin the whole chunk in memory.
        rest = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf);
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
    flush(callback: TransformCallback) {
      try {
        if (rest.length > 0 || skipping) emitRecord(this, rest);
        rest = Buffer.alloc(0);
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
  });
}
