/** The shared body of the one-in, at-most-one-out transforms (map, filter). */
import { Transform, type TransformCallback } from 'node:stream';
import { ErrorCodes, ManifoldError, describe } from '../core/errors.js';
import { toMessage, type Message, type MessageLike } from '../core/message.js';
import { checkOptions, numberOption } from '../core/options.js';

/** Options shared by the per-message transforms. */
export interface TransformOptions {
  /** Object-mode high-water mark on each side. Default 16. */
  highWaterMark?: number;
}

/**
 * A Transform that calls `fn` (sync or async) per message and lets `decide`
 * turn its result into the message to pass on, or `undefined` to pass nothing.
 * When `fn` throws, the message is nacked with an error naming the transform,
 * what failed and the message's position, emitted as `'nack'`, and the stream
 * carries on.
 */
export function perMessage<R>(
  where: string,
  what: string,
  options: TransformOptions,
  fn: (message: Message, index: number) => R | Promise<R>,
  decide: (message: Message, result: R) => Message | undefined,
): Transform {
  if (typeof fn !== 'function') {
    throw new ManifoldError(`${where}: ${what} must be a function, got ${typeof fn}`, { code: ErrorCodes.INVALID_OPTION });
  }
  const o = checkOptions(where, options, ['highWaterMark']);
  const highWaterMark = numberOption(where, 'highWaterMark', o.highWaterMark, 16, { min: 1, integer: true });
  let index = 0;
  return new Transform({
    objectMode: true,
    highWaterMark,
    transform(chunk: MessageLike, _enc: BufferEncoding, callback: TransformCallback) {
      let message: Message;
      try {
        message = toMessage(chunk);
      } catch (error) {
        callback(error as Error);
        return;
      }
      const position = index++;
      const fail = (error: unknown): void => {
        // A transform's own ManifoldError already names the record; anything else is a failure of user code.
        const text = error instanceof ManifoldError ? describe(error) : `the ${what} failed on message ${position}: ${describe(error)}`;
        const err = new ManifoldError(`${where}: ${text}`, {
          code: ErrorCodes.INVALID_MESSAGE,
          cause: error,
          details: { position },
        });
        message.nack(err);
        this.emit('nack', err, message);
        callback();
      };
      const done = (result: R): void => {
        let out: Message | undefined;
        try {
          out = decide(message, result);
        } catch (error) {
          fail(error);
          return;
        }
        callback(null, out);
      };
      try {
        const result = fn(message, position);
        if (result instanceof Promise) result.then(done, fail);
        else done(result);
      } catch (error) {
        fail(error);
      }
    },
  });
}
