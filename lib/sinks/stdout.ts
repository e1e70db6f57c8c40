import { Writable, addAbortSignal } from 'node:stream';
import { ErrorCodes, ManifoldError } from '../core/errors.js';
import { toMessage, type Message, type MessageLike } from '../core/message.js';
import { booleanOption, checkOptions, delimiterOption, invalidOption, signalOption } from '../core/options.js';

/** Options of {@link stdoutSink}. */
export interface StdoutSinkOptions {
  /** Where to write. Default `process.stdout`; any byte Writable works. */
  output?: NodeJS.WritableStream | Writable;
  /** Written after each message. Default `'\n'`. */
  delimiter?: string | Buffer;
  /** End `output` when the sink finishes. Default true, except for process.stdout and process.stderr. */
  end?: boolean;
  /** Destroys the sink when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark. Default 64. */
  highWaterMark?: number;
}

/**
 * Writes each message plus a newline to stdout (or `output`) and acks it when
 * the write callback fires. Applies the output's backpressure.
 *
 * When the reader goes away (`EPIPE`, as with `manifold ... | head`) the sink
 * ends quietly: it emits `'outputclose'`, nacks what it could not write (so a
 * source may redeliver it) and keeps accepting writes without failing the
 * pipeline; `flow()` reacts by closing the source.
 *
 * @example
 * ```ts
 * await pipeline(kinesisSource({ streamName: 'orders' }), stdoutSink());
 * ```
 */
export function stdoutSink(options: StdoutSinkOptions = {}): StdoutSink {
  return new StdoutSink(options);
}

export class StdoutSink extends Writable {
  readonly #output: Writable;
  readonly #delimiter: Buffer;
  readonly #end: boolean;
  #outputClosed: Error | undefined;
  /** Messages given to the output whose write callback has not fired. */
  #inFlight = new Set<Message[]>();
  #drainWaiter: (() => void) | undefined;

  readonly #onOutputError = (error: NodeJS.ErrnoException): void => {
    if (error.code === 'EPIPE' || error.code === 'ERR_STREAM_DESTROYED') {
      this.#closeOutput(error);
      return;
    }
    this.destroy(new ManifoldError(`stdoutSink: writing the output failed: ${error.message}`, { code: ErrorCodes.IO, cause: error }));
  };

  readonly #onDrain = (): void => {
    const waiter = this.#drainWaiter;
    this.#drainWaiter = undefined;
    waiter?.();
  };

  constructor(options: StdoutSinkOptions = {}) {
    const o = checkOptions('stdoutSink', options, ['output', 'delimiter', 'end', 'signal', 'highWaterMark']);
    super({ objectMode: true, highWaterMark: o.highWaterMark ?? 64 });
    const output = o.output ?? process.stdout;
    if (typeof (output as Writable).write !== 'function' || typeof (output as Writable).on !== 'function') {
      invalidOption('stdoutSink', 'output', 'a writable byte stream', output);
    }
    this.#output = output as Writable;
    this.#delimiter = delimiterOption('stdoutSink', 'delimiter', o.delimiter, '\n');
    // Not `output === process.stderr`: reading process.stderr creates its handle. fd 1 and 2 are never ended.
    const fd = (output as { fd?: unknown }).fd;
    this.#end = booleanOption('stdoutSink', 'end', o.end, o.output !== undefined && fd !== 1 && fd !== 2);
    this.#output.on('error', this.#onOutputError);
    this.#output.on('drain', this.#onDrain);
    this.#output.once('close', this.#onOutputClose);
    const signal = signalOption('stdoutSink', 'signal', o.signal);
    if (signal) addAbortSignal(signal, this);
  }

  readonly #onOutputClose = (): void => {
    if (!this.writableFinished) this.#closeOutput(new Error('the output was closed'));
  };

  /** Whether the output went away (EPIPE); later writes are nacked. */
  get outputClosed(): boolean {
    return this.#outputClosed !== undefined;
  }

  #closeOutput(cause: Error): void {
    if (this.#outputClosed) return;
    this.#outputClosed = new ManifoldError(`stdoutSink: the output is closed (${cause.message}); message not delivered`, {
      code: ErrorCodes.OUTPUT_CLOSED,
      cause,
    });
    for (const group of this.#inFlight) for (const m of group) m.nack(this.#outputClosed);
    this.#inFlight.clear();
    this.emit('outputclose', this.#outputClosed);
    this.#onDrain();
  }

  #send(messages: Message[], callback: (error?: Error | null) => void): void {
    if (this.#outputClosed) {
      for (const m of messages) m.nack(this.#outputClosed);
      callback();
      return;
    }
    const parts: Buffer[] = [];
    for (const m of messages) parts.push(m.data, this.#delimiter);
    this.#inFlight.add(messages);
    const ok = this.#output.write(messages.length === 1 ? Buffer.concat(parts, messages[0]!.data.length + this.#delimiter.length) : Buffer.concat(parts), (error) => {
      if (!this.#inFlight.delete(messages)) return;
      for (const m of messages) {
        if (error) m.nack(error);
        else m.ack();
      }
    });
    if (ok) callback();
    else this.#drainWaiter = () => callback();
  }

  override _write(chunk: MessageLike, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    try {
      this.#send([toMessage(chunk)], callback);
    } catch (error) {
      callback(error as Error);
    }
  }

  override _writev(chunks: Array<{ chunk: MessageLike }>, callback: (error?: Error | null) => void): void {
    try {
      this.#send(chunks.map((c) => toMessage(c.chunk)), callback);
    } catch (error) {
      callback(error as Error);
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.#outputClosed || !this.#end) {
      // Acks come from the output's write callbacks; wait for those still pending.
      this.#whenWritten(callback);
      return;
    }
    this.#output.end(() => callback());
  }

  #whenWritten(callback: () => void): void {
    if (this.#inFlight.size === 0 || this.#outputClosed) {
      callback();
      return;
    }
    // process.stdout may be a pipe written asynchronously: an empty write's callback follows all earlier ones.
    this.#output.write(Buffer.alloc(0), () => callback());
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#output.off('drain', this.#onDrain);
    this.#output.off('close', this.#onOutputClose);
    // Keep an error listener: a late EPIPE on an output we no longer watch must not crash the process.
    this.#output.off('error', this.#onOutputError);
    this.#output.on('error', () => {});
    for (const group of this.#inFlight) {
      for (const m of group) m.nack(error ?? new ManifoldError('stdoutSink: destroyed before the write completed', { code: ErrorCodes.ABORTED }));
    }
    this.#inFlight.clear();
    callback(error);
  }
}
