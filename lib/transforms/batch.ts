import { Transform, type TransformCallback } from 'node:stream';
import { ErrorCodes, ManifoldError } from '../core/errors.js';
import { createMessage, settleAll, toMessage, type Message, type MessageLike } from '../core/message.js';
import { bytesOption, checkOptions, delimiterOption, durationOption, numberOption } from '../core/options.js';

/** Options of {@link batch}. */
export interface BatchOptions {
  /** Most messages per batch. Default 100. */
  maxCount?: number;
  /** Most payload bytes per batch (a single larger message makes a batch of its own). Default 1 MiB. */
  maxBytes?: number;
  /** Longest a batch waits for more messages after its first one. Default 1000 ms. */
  maxWaitMs?: number;
  /** Put after each member's data in the batch's `data`. Default `'\n'`. */
  delimiter?: string | Buffer;
}

/** A batch: a Message whose data is its members' data, each followed by the delimiter. */
export interface BatchMessage extends Message {
  readonly messages: readonly Message[];
}

/**
 * Groups messages into batches of at most `maxCount` messages and `maxBytes`
 * bytes, emitting a partial batch after `maxWaitMs` and on end. Acking the
 * batch acks every member; nacking it nacks every member.
 *
 * @example
 * ```ts
 * pipeline(source, batch({ maxCount: 500, maxWaitMs: 200 }), sink);
 * ```
 */
export function batch(options: BatchOptions = {}): Transform {
  const o = checkOptions('batch', options, ['maxCount', 'maxBytes', 'maxWaitMs', 'delimiter']);
  const maxCount = numberOption('batch', 'maxCount', o.maxCount, 100, { min: 1, integer: true });
  const maxBytes = bytesOption('batch', 'maxBytes', o.maxBytes, 1024 * 1024);
  const maxWaitMs = durationOption('batch', 'maxWaitMs', o.maxWaitMs, 1000);
  const delimiter = delimiterOption('batch', 'delimiter', o.delimiter, '\n');

  let members: Message[] = [];
  let bytes = 0;
  let timer: NodeJS.Timeout | undefined;

  const take = (): BatchMessage | undefined => {
    if (timer) {
      clearTimeout(timer);
      timer = undefined;
    }
    if (members.length === 0) return undefined;
    const group = members;
    members = [];
    bytes = 0;
    const parts: Buffer[] = [];
    for (const m of group) parts.push(m.data, delimiter);
    const message = createMessage({
      data: Buffer.concat(parts),
      timestamp: group[0]!.timestamp,
      meta: { batchSize: group.length },
      onAck: () => settleAll(group),
      onNack: (error) => settleAll(group, error),
    });
    return Object.assign(message, { messages: group });
  };

  return new Transform({
    objectMode: true,
    transform(chunk: MessageLike, _enc: BufferEncoding, callback: TransformCallback) {
      let message: Message;
      try {
        message = toMessage(chunk);
      } catch (error) {
        callback(error as Error);
        return;
      }
      const size = message.data.length + delimiter.length;
      if (members.length > 0 && bytes + size > maxBytes) this.push(take());
      members.push(message);
      bytes += size;
      if (members.length >= maxCount || bytes >= maxBytes) {
        callback(null, take());
        return;
      }
      if (!timer) {
        timer = setTimeout(() => {
          timer = undefined;
          const out = take();
          if (out) this.push(out);
        }, maxWaitMs);
      }
      callback();
    },
    flush(callback: TransformCallback) {
      callback(null, take());
    },
    destroy(error: Error | null, callback: (error: Error | null) => void) {
      if (timer) clearTimeout(timer);
      // Members never emitted cannot be delivered: report them so the source can redeliver.
      if (members.length > 0) {
        settleAll(members, error ?? new ManifoldError('batch: destroyed before the batch was emitted', { code: ErrorCodes.ABORTED }));
        members = [];
      }
      callback(error);
    },
  });
}
