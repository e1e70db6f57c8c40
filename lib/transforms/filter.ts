import type { Transform } from 'node:stream';
import type { Message } from '../core/message.js';
import { perMessage, type TransformOptions } from './per-message.js';

/**
 * Keeps the messages for which `predicate` is true. A dropped message is acked
 * at once: intentionally dropped counts as delivered, so the source can move on.
 * A predicate that throws nacks the message with an error naming its position.
 *
 * @example
 * ```ts
 * pipeline(source, filter((m) => m.data.length > 0), sink);
 * ```
 */
export function filter(predicate: (message: Message, index: number) => boolean | Promise<boolean>, options: TransformOptions = {}): Transform {
  return perMessage('filter', 'predicate', options, predicate, (message, keep) => {
    if (keep) return message;
    message.ack();
    return undefined;
  });
}
