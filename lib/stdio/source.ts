import { Readable, addAbortSignal } from 'node:stream';
import { ErrorCodes, ManifoldError } from '../core/errors.js';
import type { Message } from '../core/message.js';
import { lines, type LinesOptions } from '../transforms/lines.js';
import { stdinSourceOptions, type StdinSourceOptions } from './options.js';

export type { StdinSourceOptions } from './options.js';

/**
 * Reads newline-delimited records from stdin (or `input`), one Message per
 * line with `meta.line`. A last line without a newline is kept; CRLF is
 * handled; a line longer than `maxMessageBytes` fails the stream with an error
 * naming the line rather than being buffered without bound. Acks are no-ops:
 * stdin cannot redeliver.
 *
 * `close()` stops reading, emits what was already read, and ends. The input is
 * paused, not destroyed: it belongs to the caller.
 *
 * @example
 * ```ts
 * await pipeline(stdinSource(), jsonAppend({ seenAt: () => Date.now() }), stdoutSink());
 * ```
 */
export function stdinSource(options: StdinSourceOptions = {}): StdinSource {
  return new StdinSource(options);
}

export class StdinSource extends Readable {
  /** It cannot deliver again what it is nacked: flow() counts a message it gives up on as lost. */
  readonly redelivers = false;
  readonly #input: NodeJS.ReadableStream | Readable;
  readonly #splitter: ReturnType<typeof lines>;
  #started = false;
  #closed: Promise<void> | undefined;
  readonly #onInputError = (error: Error): void => {
    this.destroy(new ManifoldError(`stdinSource: reading the input failed: ${error.message}`, { code: ErrorCodes.IO, cause: error }));
  };

  constructor(options: StdinSourceOptions = {}) {
    const o = stdinSourceOptions.resolve(options);
    super({ objectMode: true, highWaterMark: o.highWaterMark });
    // process.stdin is created on first access (a pipe or TTY handle that keeps the process alive): touch it only when used.
    const input = o.input ?? process.stdin;
    this.#input = input;
    const linesOptions: LinesOptions = {
      label: o.input === undefined ? 'stdin' : 'input',
      delimiter: o.delimiter,
      maxMessageBytes: o.maxMessageBytes,
      onOversize: o.onOversize,
    };
    this.#splitter = lines(linesOptions);
    this.#splitter.on('data', (message: Message) => {
      if (!this.push(message)) this.#splitter.pause();
    });
    this.#splitter.on('skip', (info: unknown) => this.emit('skip', info));
    this.#splitter.once('end', () => this.push(null));
    this.#splitter.on('error', (error: Error) => this.destroy(error));
    this.#splitter.pause();
    if (o.signal) addAbortSignal(o.signal, this);
  }

  override _read(): void {
    if (!this.#started) {
      this.#started = true;
      this.#input.on('error', this.#onInputError);
      this.#input.pipe(this.#splitter);
    }
    this.#splitter.resume();
  }

  /** Stops reading the input, emits the records already read (and a final partial line), then ends. */
  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      if (this.readableEnded || this.destroyed) {
        resolve();
        return;
      }
      this.once('end', resolve);
      this.once('close', resolve);
      this.#release();
      this.#splitter.end();
    });
    return this.#closed;
  }

  #release(): void {
    this.#input.unpipe(this.#splitter as NodeJS.WritableStream & Readable);
    this.#input.off('error', this.#onInputError);
    this.#input.pause();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#release();
    this.#splitter.destroy();
    callback(error);
  }
}
