import type { Transform } from 'node:stream';
import { ErrorCodes, ManifoldError, describe } from '../core/errors.js';
import type { Message } from '../core/message.js';
import { checkOptions, enumOption, invalidOption } from '../core/options.js';
import { perMessage } from './per-message.js';

/** A field value: a JSON value, or a function of the message called for each one. */
export type FieldValue = unknown | ((message: Message) => unknown);

/** Options of {@link jsonAppend}. */
export interface JsonAppendOptions {
  /**
   * A message whose data is not a JSON object: `'nack'` it with an error naming
   * its position (default), `'skip'` it (acked and dropped), or `'pass'` it on unchanged.
   */
  onError?: 'nack' | 'skip' | 'pass';
  /** Object-mode high-water mark. Default 16. */
  highWaterMark?: number;
}

const SKIP = Symbol('skip');

function excerpt(data: Buffer): string {
  const text = data.subarray(0, 60).toString('utf8');
  return JSON.stringify(data.length > 60 ? `${text}...` : text);
}

function where(message: Message, position: number): string {
  const line = message.meta?.['line'];
  return typeof line === 'number' ? `message ${position} (line ${line})` : `message ${position}`;
}

/**
 * Adds `fields` to each message's JSON object (the seed's JSON transform). A
 * field's value may be a function called per message, e.g.
 * `{ seenAt: () => Date.now() }`. Existing keys are overwritten.
 *
 * A message that is not a JSON object is nacked with an error naming its
 * position and an excerpt, and emitted as `'nack'`; with `onError: 'skip'` it is
 * acked and dropped, with `'pass'` it goes on unchanged. The pipeline keeps running.
 *
 * @example
 * ```ts
 * pipeline(source, jsonAppend({ source: 'orders', seenAt: () => Date.now() }), sink);
 * ```
 */
export function jsonAppend(fields: Record<string, FieldValue>, options: JsonAppendOptions = {}): Transform {
  if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) {
    invalidOption('jsonAppend', 'fields', 'an object of field names to values or functions', fields);
  }
  const o = checkOptions('jsonAppend', options, ['onError', 'highWaterMark']);
  const onError = enumOption('jsonAppend', 'onError', o.onError, ['nack', 'skip', 'pass'] as const, 'nack');
  const entries = Object.entries(fields);
  const transform = perMessage<Buffer | typeof SKIP>(
    'jsonAppend',
    'transform',
    o.highWaterMark === undefined ? {} : { highWaterMark: o.highWaterMark },
    (message, position) => {
      let value: unknown;
      let problem: string | undefined;
      try {
        value = JSON.parse(message.data.toString('utf8'));
        if (value === null || typeof value !== 'object' || Array.isArray(value)) {
          problem = `is JSON but not an object (${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value})`;
        }
      } catch (error) {
        problem = `is not JSON (${describe(error)})`;
      }
      if (problem !== undefined) {
        if (onError === 'pass') return message.data;
        if (onError === 'skip') {
          transform.emit('skip', { position, message });
          message.ack();
          return SKIP;
        }
        throw new ManifoldError(`${where(message, position)} ${problem}: ${excerpt(message.data)}`, {
          code: ErrorCodes.INVALID_MESSAGE,
          details: { position },
        });
      }
      const object = value as Record<string, unknown>;
      for (const [key, field] of entries) object[key] = typeof field === 'function' ? (field as (m: Message) => unknown)(message) : field;
      return Buffer.from(JSON.stringify(object));
    },
    (message, result) => (result === SKIP ? undefined : result === message.data ? message : { ...message, data: result }),
  );
  return transform;
}
