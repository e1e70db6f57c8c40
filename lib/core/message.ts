/**
 * The Message envelope that crosses every pipeline between a manifold source
 * and sink, and the helpers that make, wrap and split them.
 */
import { ErrorCodes, ManifoldError, toError } from './errors.js';

/**
 * A record in flight. Structural: any object with a Buffer `data` and `ack`/`nack`
 * functions is a Message. `ack`/`nack` are closures that do not use `this`, so
 * `{ ...msg, data }` keeps the acknowledgement path to the source.
 */
export interface Message {
  /** The payload bytes. */
  readonly data: Buffer;
  /** Partition key or routing key. */
  key?: string;
  /** AMQP headers, Kafka headers. */
  headers?: Record<string, string>;
  /** Milliseconds since the epoch: producer time or arrival time. */
  timestamp?: number;
  /** Facts from the source: shardId, sequenceNumber, partition, offset, deliveryTag... */
  readonly meta?: Readonly<Record<string, unknown>>;
  /**
   * Which delivery of this record this is: 1 the first time. A redelivery by flow()'s error policy counts up;
   * RabbitMQ's own redeliveries count too (`x-delivery-count` on quorum queues, else at least 2 when `redelivered`).
   * Absent means 1.
   */
  readonly attempt?: number;
  /** The sink has durably delivered it. Idempotent; never throws. */
  ack(): void;
  /** It could not be delivered; the source may redeliver. Idempotent; never throws. */
  nack(error?: Error): void;
}

/** What {@link createMessage} builds a Message from. */
export interface MessageInit {
  data: Buffer | Uint8Array | string;
  key?: string | undefined;
  headers?: Record<string, string> | undefined;
  timestamp?: number | undefined;
  meta?: Readonly<Record<string, unknown>> | undefined;
  /** Which delivery this is (1 the first time); see {@link Message.attempt}. */
  attempt?: number | undefined;
  /** Called once, on the first settle, if it is an ack. */
  onAck?: (() => void) | undefined;
  /** Called once, on the first settle, if it is a nack. */
  onNack?: ((error: Error) => void) | undefined;
}

/** Anything a sink accepts. */
export type MessageLike = Message | Buffer | Uint8Array | string;

const noop = (): void => {};

function toBuffer(data: Buffer | Uint8Array | string): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (typeof data === 'string') return Buffer.from(data);
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * The error a source receives for `nack()` called without one: `error` itself when given, else a ManifoldError
 * (`MANIFOLD_ERR_DELIVERY`) saying the message was nacked, so a source always receives an Error.
 */
export function nackReason(error: Error | undefined): Error {
  return error ?? new ManifoldError('message was nacked', { code: ErrorCodes.DELIVERY });
}

/**
 * Builds a Message whose settle is idempotent: the first `ack()` or `nack()`
 * wins, later calls do nothing, and an `onAck`/`onNack` that throws is
 * swallowed (an ack that arrives after its channel is gone must not crash the sink).
 *
 * @example
 * ```ts
 * const msg = createMessage({ data: 'hello', onAck: () => channel.ack(raw) });
 * ```
 */
export function createMessage(init: MessageInit): Message {
  const { onAck, onNack } = init;
  let settled = false;
  const message: Message = {
    data: toBuffer(init.data),
    ack:
      onAck === undefined && onNack === undefined
        ? noop
        : () => {
            if (settled) return;
            settled = true;
            try {
              onAck?.();
            } catch {
              // The source's bookkeeping is gone (closed channel, lost lease): the system redelivers.
            }
          },
    nack:
      onAck === undefined && onNack === undefined
        ? noop
        : (error?: Error) => {
            if (settled) return;
            settled = true;
            try {
              onNack?.(nackReason(error));
            } catch {
              // As for ack: a late nack is ignored and the system redelivers.
            }
          },
  };
  if (init.key !== undefined) message.key = init.key;
  if (init.headers !== undefined) message.headers = init.headers;
  if (init.timestamp !== undefined) message.timestamp = init.timestamp;
  if (init.meta !== undefined) (message as { meta?: Readonly<Record<string, unknown>> }).meta = init.meta;
  if (init.attempt !== undefined) (message as { attempt?: number }).attempt = init.attempt;
  return message;
}

/** Whether `value` is a Message (structurally: Buffer `data`, `ack` and `nack` functions). */
export function isMessage(value: unknown): value is Message {
  return (
    typeof value === 'object' &&
    value !== null &&
    Buffer.isBuffer((value as Message).data) &&
    typeof (value as Message).ack === 'function' &&
    typeof (value as Message).nack === 'function'
  );
}

/**
 * A Message as is, or a plain Buffer / Uint8Array / string wrapped in one with
 * no-op acks. Anything else throws a TypeError naming what it got, which a sink
 * turns into a stream error naming the record.
 */
export function toMessage(value: MessageLike): Message {
  if (isMessage(value)) return value;
  if (typeof value === 'string' || value instanceof Uint8Array) return createMessage({ data: value });
  throw new ManifoldError(
    `expected a Message, Buffer, Uint8Array or string, got ${value === null ? 'null' : typeof value === 'object' ? `an object with keys ${Object.keys(value as object).slice(0, 5).join(', ') || '(none)'}` : typeof value}`,
    { code: ErrorCodes.INVALID_MESSAGE },
  );
}

/**
 * Splits one message into several (one-to-many transforms, de-aggregation).
 * The parent is acked once every child is acked, and nacked on the first
 * child nack. With no children the parent is acked at once: there is nothing
 * left to deliver.
 *
 * Each child inherits the parent's key, headers, timestamp and meta unless its
 * init gives its own.
 */
export function derive(parent: Message, children: ReadonlyArray<Omit<MessageInit, 'onAck' | 'onNack'>>): Message[] {
  if (children.length === 0) {
    parent.ack();
    return [];
  }
  let remaining = children.length;
  let failed = false;
  const onAck = (): void => {
    remaining -= 1;
    if (remaining === 0 && !failed) parent.ack();
  };
  const onNack = (error: Error): void => {
    if (failed) return;
    failed = true;
    parent.nack(toError(error));
  };
  return children.map((child) =>
    createMessage({
      key: parent.key,
      headers: parent.headers,
      timestamp: parent.timestamp,
      meta: parent.meta,
      attempt: parent.attempt,
      ...child,
      onAck,
      onNack,
    }),
  );
}

/**
 * A new Message with `message`'s data, key, headers, timestamp and meta, whose
 * settle goes to `onAck`/`onNack` instead: for stages that must see every
 * settle (counting, re-sending) before passing it on to the original.
 */
export function relay(message: Message, onAck: () => void, onNack: (error: Error) => void): Message {
  return createMessage({
    data: message.data,
    key: message.key,
    headers: message.headers,
    timestamp: message.timestamp,
    meta: message.meta,
    attempt: message.attempt,
    onAck,
    onNack,
  });
}

/** Settles a group of messages together (a batch): acks them all, or nacks them all. */
export function settleAll(messages: readonly Message[], error?: Error): void {
  for (const m of messages) {
    if (error) m.nack(error);
    else m.ack();
  }
}
