import type { Transform } from 'node:stream';
import { DEAD_LETTER_HEADER, type DeadLetterEnvelope } from '../core/error-policy.js';
import { ErrorCodes, ManifoldError } from '../core/errors.js';
import type { Message } from '../core/message.js';
import { checkOptions, enumOption } from '../core/options.js';
import { perMessage, type TransformOptions } from './per-message.js';

/** Options of {@link unwrapDeadLetter}. */
export interface UnwrapDeadLetterOptions extends TransformOptions {
  /** A record that is not a dead-letter record: `'nack'` it (default) naming it, or `'pass'` it on unchanged. */
  onOther?: 'nack' | 'pass';
}

/**
 * Turns dead-letter records back into the messages they were, to re-send them where they failed
 * (`manifold file:dead.jsonl kafka://broker/orders --transform unwrap-dead-letter`): a JSON envelope
 * (`deadLetterFormat: 'json'`) gives back the original bytes, key, headers and timestamp; a record with
 * `x-manifold-dead-letter-*` headers keeps its bytes and key and loses those headers. The ack is the
 * dead-letter record's own.
 *
 * @example
 * ```ts
 * await flow({ source: kafkaSource({ topics: ['orders-dlq'], ... }), transforms: [unwrapDeadLetter()], sink: kafkaSink({ topic: 'orders', ... }) });
 * ```
 */
export function unwrapDeadLetter(options: UnwrapDeadLetterOptions = {}): Transform {
  const { onOther: rawOnOther, ...rest } = checkOptions('unwrapDeadLetter', options, ['onOther', 'highWaterMark']);
  const onOther = enumOption('unwrapDeadLetter', 'onOther', rawOnOther, ['nack', 'pass'] as const, 'nack');
  return perMessage('unwrapDeadLetter', 'unwrapping', rest, (message) => unwrap(message, onOther), (_message, result) => result);
}

function unwrap(message: Message, onOther: 'nack' | 'pass'): Message {
  const headers = message.headers;
  if (headers && Object.keys(headers).some((name) => name.startsWith(DEAD_LETTER_HEADER))) {
    const kept: Record<string, string> = {};
    for (const [name, value] of Object.entries(headers)) if (!name.startsWith(DEAD_LETTER_HEADER)) kept[name] = value;
    // A dead letter written to a sink that routes by key kept its original key in a header instead.
    const key = headers[`${DEAD_LETTER_HEADER}-key`] ?? message.key;
    return { ...message, key, headers: Object.keys(kept).length > 0 ? kept : undefined };
  }
  const envelope = parseEnvelope(message.data);
  if (envelope) {
    const data = envelope.dataBase64 !== undefined ? Buffer.from(envelope.dataBase64, 'base64') : Buffer.from(envelope.data ?? '', 'utf8');
    return { ...message, data, key: envelope.key, headers: envelope.headers, timestamp: envelope.timestamp };
  }
  if (onOther === 'pass') return message;
  throw new ManifoldError(
    'not a dead-letter record (neither a JSON envelope with "manifoldDeadLetter": 1 nor x-manifold-dead-letter-* headers); use onOther: \'pass\' to re-send such records unchanged',
    { code: ErrorCodes.INVALID_MESSAGE },
  );
}

function parseEnvelope(data: Buffer): DeadLetterEnvelope | undefined {
  // Cheap test first: most records that are not envelopes are not JSON objects at all.
  if (data.length < 2 || data[0] !== 0x7b || !data.includes('"manifoldDeadLetter"')) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(data.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || (value as { manifoldDeadLetter?: unknown }).manifoldDeadLetter !== 1) return undefined;
  const e = value as DeadLetterEnvelope;
  const fine =
    (e.data === undefined || typeof e.data === 'string') &&
    (e.dataBase64 === undefined || typeof e.dataBase64 === 'string') &&
    (e.key === undefined || typeof e.key === 'string') &&
    (e.timestamp === undefined || typeof e.timestamp === 'number') &&
    (e.headers === undefined || (typeof e.headers === 'object' && e.headers !== null && Object.values(e.headers).every((v) => typeof v === 'string')));
  return fine ? e : undefined;
}
