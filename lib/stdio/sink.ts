import { Writable, addAbortSignal } from 'node:stream';
import { ErrorCodes, ManifoldError } from '../core/errors.js';
import { toMessage, type Message, type MessageLike } from '../core/message.js';
import { delimitedRecord, delimiterError, delimiterPolicy, type DelimiterPolicy, type DelimiterRejectEvent } from '../core/delimiter.js';
import { stdoutSinkOptions, type StdoutSinkOptions } from './options.js';

/** The reader went away: `manifold ... | head`. */
function isGone(error: NodeJS.ErrnoException): boolean {
  return error.code === 'EPIPE' || error.code === 'ERR_STREAM_DESTROYED';
}

function outputError(error: Error): ManifoldError {
  return new ManifoldError(`stdoutSink: writing the output failed: ${error.message}`, { code: ErrorCodes.IO, cause: error });
}

export type { DelimiterRejectEvent } from '../core/delimiter.js';
export type { StdoutSinkOptions } from './options.js';

/**
 * Writes each message plus a newline to stdout (or `output`) and acks it when
 * the write callback fires. Applies the output's backpressure.
 *
 * One record is one line: a message that contains the delimiter is nacked with
 * `MANIFOLD_ERR_INVALID_MESSAGE` and a `'reject'` event (`onDelimiter: 'refuse'`,
 * the default; `flow()` dead-letters it without retrying), or every record is
 * written escaped (`onDelimiter: 'escape'`: `\` as `\\`, a newline as `\n`).
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
  readonly #policy: DelimiterPolicy;
  readonly #end: boolean;
  #outputClosed: Error | undefined;
  /** Messages given to the output whose write callback has not fired. */
  #inFlight = new Set<Message[]>();
  /** Calls back the write waiting on the output, if any. */
  #release: ((error?: Error) => void) | undefined;

  readonly #onOutputError = (error: NodeJS.ErrnoException): void => {
    if (isGone(error)) this.#closeOutput(error);
    else this.destroy(outputError(error));
  };

  constructor(options: StdoutSinkOptions = {}) {
    const o = stdoutSinkOptions.resolve(options);
    super({ objectMode: true, highWaterMark: o.highWaterMark });
    const output = (o.output ?? process.stdout) as Writable;
    this.#output = output;
    this.#delimiter = o.delimiter;
    this.#policy = delimiterPolicy('stdoutSink', o.delimiter, o.onDelimiter);
    // Not `output === process.stderr`: reading process.stderr creates its handle. fd 1 and 2 are never ended.
    const fd = (output as { fd?: unknown }).fd;
    this.#end = o.end ?? (o.output !== undefined && fd !== 1 && fd !== 2);
    this.#output.on('error', this.#onOutputError);
    this.#output.once('close', this.#onOutputClose);
    if (o.signal) addAbortSignal(o.signal, this);
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
    this.#release?.();
  }

  #send(messages: Message[], callback: (error?: Error | null) => void): void {
    if (this.#outputClosed) {
      for (const m of messages) m.nack(this.#outputClosed);
      callback();
      return;
    }
    const parts: Buffer[] = [];
    let refused = 0;
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i]!;
      const record = delimitedRecord(m.data, this.#policy);
      if (typeof record === 'number') {
        // One record is one line: written as is, this message would be read back as two.
        const error = delimiterError('stdoutSink', this.#policy, record);
        m.nack(error);
        this.emit('reject', { error, bytes: m.data.length } satisfies DelimiterRejectEvent);
        refused += 1;
        continue;
      }
      parts.push(record, this.#delimiter);
      if (refused > 0) messages[i - refused] = m;
    }
    if (refused > 0) messages.length -= refused;
    if (messages.length === 0) {
      callback();
      return;
    }
    this.#inFlight.add(messages);
    let called = false;
    const release = (error?: Error): void => {
      if (called) return;
      called = true;
      this.#release = undefined;
      callback(error);
    };
    // If the output goes away with this write stuck in it, #closeOutput releases the write.
    this.#release = release;
    // One output write at a time, released by its callback: with _writev, whatever queues meanwhile goes out
    // in the next write, and a synchronous output cannot pile up unbounded acks behind deferred callbacks.
    this.#output.write(Buffer.concat(parts), (error) => {
      if (!this.#inFlight.delete(messages)) {
        release();
        return;
      }
      if (!error) {
        for (const m of messages) m.ack();
        release();
        return;
      }
      if (isGone(error)) {
        this.#inFlight.add(messages);
        this.#closeOutput(error);
        release();
        return;
      }
      const failure = outputError(error);
      for (const m of messages) m.nack(failure);
      release(failure);
    });
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
    // Every write has called back by now (one at a time), so every message is settled.
    if (this.#outputClosed || !this.#end) callback();
    else this.#output.end(() => callback());
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
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
