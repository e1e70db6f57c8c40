import type { Transform } from 'node:stream';
import { ErrorCodes, ManifoldError } from '../core/errors.js';
import { isMessage, type Message } from '../core/message.js';
import { perMessage, type TransformOptions } from './per-message.js';

/** What a map function may return: new data, or a whole message (whose ack should lead to the input's). */
export type MapResult = Buffer | Uint8Array | string | Message;

/**
 * Replaces each message's data with what `fn` returns, keeping the envelope
 * (key, headers, meta) and the same ack. `fn` may be async. When `fn` throws,
 * the message is nacked with an error naming its position, emitted as a
 * `'nack'` event, and the pipeline carries on.
 *
 * @example
 * ```ts
 * pipeline(source, map((m) => m.data.toString().toUpperCase()), sink);
 * ```
 */
export function map(fn: (message: Message, index: number) => MapResult | Promise<MapResult>, options: TransformOptions = {}): Transform {
  return perMessage('map', 'function', options, fn, withData);
}

/** `message` with `value` as its data, or `value` itself when it is already a message. */
export function withData(message: Message, value: MapResult): Message {
  if (typeof value === 'string') return { ...message, data: Buffer.from(value) };
  if (Buffer.isBuffer(value)) return { ...message, data: value };
  if (value instanceof Uint8Array) return { ...message, data: Buffer.from(value.buffer, value.byteOffset, value.byteLength) };
  if (isMessage(value)) return value;
  throw new ManifoldError(`expected a Buffer, string or Message, got ${value === null ? 'null' : typeof value}`, { code: ErrorCodes.INVALID_MESSAGE });
}
