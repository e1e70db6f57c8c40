/** The options of stdinSource and stdoutSink, declared once (see `defineOptions`). */
import type { Readable, Writable } from 'node:stream';
import { onDelimiterOption } from '../core/delimiter.js';
import { common, defineOptions, opt } from '../core/options.js';

export const stdinSourceOptions = defineOptions('stdinSource', {
  input: opt.custom<NodeJS.ReadableStream | Readable>('Where to read from; any byte Readable works (files, sockets, tests).', {
    type: 'NodeJS.ReadableStream | Readable',
    defaultText: '`process.stdin`',
    check: (value, fail) =>
      typeof (value as Readable | null)?.pipe === 'function' && typeof (value as Readable).on === 'function' ? (value as Readable) : fail('a readable byte stream'),
  }),
  delimiter: common.delimiter('What separates records (a CR before a newline is dropped too).', '\n'),
  maxMessageBytes: opt.bytes('Longest record; a longer one fails the stream or is skipped (`onOversize`).', { default: 1024 * 1024 }),
  onOversize: opt.enum('What a record longer than `maxMessageBytes` does: fail the stream, or be dropped with a `skip` event.', ['error', 'skip'], { default: 'error' }),
  signal: common.signal('source'),
  highWaterMark: common.highWaterMark(16),
});

export const stdoutSinkOptions = defineOptions('stdoutSink', {
  output: opt.custom<NodeJS.WritableStream | Writable>('Where to write; any byte Writable works.', {
    type: 'NodeJS.WritableStream | Writable',
    defaultText: '`process.stdout`',
    check: (value, fail) =>
      typeof (value as Writable | null)?.write === 'function' && typeof (value as Writable).on === 'function' ? (value as Writable) : fail('a writable byte stream'),
  }),
  delimiter: common.delimiter('Written after each message.', '\n'),
  onDelimiter: onDelimiterOption(),
  end: opt.boolean('End `output` when the sink finishes.', { defaultText: 'true, except for process.stdout and process.stderr', cli: false }),
  signal: common.signal('sink'),
  highWaterMark: common.highWaterMark(64),
});

// <options StdinSourceOptions>
/** Options of {@link stdinSource}. Generated from its declaration by `npm run options`. */
export interface StdinSourceOptions {
  /** Where to read from; any byte Readable works (files, sockets, tests). Default `process.stdin`. */
  input?: NodeJS.ReadableStream | Readable;
  /** What separates records (a CR before a newline is dropped too). Default "\n". */
  delimiter?: string | Buffer;
  /** Longest record; a longer one fails the stream or is skipped (`onOversize`). Default 1 MiB. */
  maxMessageBytes?: number;
  /** What a record longer than `maxMessageBytes` does: fail the stream, or be dropped with a `skip` event. Default 'error'. */
  onOversize?: 'error' | 'skip';
  /** Destroys the source when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark, in messages. Default 16. */
  highWaterMark?: number;
}
// </options>

// <options StdoutSinkOptions>
/** Options of {@link stdoutSink}. Generated from its declaration by `npm run options`. */
export interface StdoutSinkOptions {
  /** Where to write; any byte Writable works. Default `process.stdout`. */
  output?: NodeJS.WritableStream | Writable;
  /** Written after each message. Default "\n". */
  delimiter?: string | Buffer;
  /** A message containing the delimiter: `'refuse'` nacks it with `MANIFOLD_ERR_INVALID_MESSAGE` (flow() dead-letters it without retrying) and emits `'reject'`; `'escape'` writes every record with `\` as `\\` and the delimiter's characters as `\n`, `\r`, `\t`, `\u00XX`, reversibly. Default 'refuse'. */
  onDelimiter?: 'refuse' | 'escape';
  /** End `output` when the sink finishes. Default true, except for process.stdout and process.stderr. */
  end?: boolean;
  /** Destroys the sink when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark, in messages. Default 64. */
  highWaterMark?: number;
}
// </options>
