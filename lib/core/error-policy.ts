/**
 * The error policy of flow(): what happens to a message that a transform or the
 * sink nacks. It is redelivered in-process with jittered exponential backoff up
 * to `maxAttempts`; then written to a dead-letter sink, whose ack acks the
 * original; without one the flow fails naming the record. While a message waits
 * for its retry, later messages of its ordering group (its partition and key)
 * wait behind it, and everything else keeps flowing.
 */
import { isUtf8 } from 'node:buffer';
import type { Writable } from 'node:stream';
import { ErrorCodes, ManifoldError, describe, isRetryable, toError, type ErrorCode } from './errors.js';
import { createMessage, nackReason, type Message } from './message.js';
import { bytesOption, checkOptions, durationOption, enumOption, functionOption, invalidOption, numberOption } from './options.js';
import { backoffDelay, type ResolvedRetry } from './retry.js';

/** The backoff between two deliveries of a nacked message. */
export interface RetryBackoffOptions {
  /** Delay before the second delivery. Default 1,000 ms. */
  minTimeoutMs?: number;
  /** Largest delay between two deliveries. Default 30,000 ms. */
  maxTimeoutMs?: number;
  /** Growth of the delay per delivery. Default 2. */
  factor?: number;
}

/** The error policy options of {@link flow}. */
export interface ErrorPolicyOptions {
  /**
   * Deliveries of one message, the first included, before it is dead-lettered (or fails the flow). Default 5;
   * 1 turns in-process redelivery off. A message that arrives with `attempt` already that high (RabbitMQ's
   * `x-delivery-count`) gets one delivery.
   */
  maxAttempts?: number;
  /** Jittered exponential backoff between deliveries. */
  retryBackoff?: RetryBackoffOptions;
  /**
   * Whether a nack's error is worth another delivery. Default: yes, unless its code says the record itself is at
   * fault (`MANIFOLD_ERR_INVALID_MESSAGE`, `MANIFOLD_ERR_MESSAGE_TOO_LARGE`) and it is not marked retryable;
   * those go straight to the dead-letter sink.
   */
  shouldRetry?: (error: Error, message: Message) => boolean;
  /**
   * Where a message goes once its deliveries are used up: any manifold sink (or Writable of Messages). The
   * original is acked once this sink acks the dead-letter record, so a checkpoint moves past it.
   */
  deadLetter?: Writable;
  /**
   * How a dead-letter record carries what failed: `'headers'` (the original bytes, key and headers, plus
   * `x-manifold-*` headers) or `'json'` (a JSON envelope around the original bytes, for sinks without headers:
   * S3, stdout, Kinesis, WebSocket). Default: `'headers'` when the sink says it carries headers (Kafka,
   * RabbitMQ), else `'json'`.
   */
  deadLetterFormat?: 'headers' | 'json';
  /** What the dead-letter records name as their source (the CLI passes the redacted URI). Default: from the message's meta. */
  sourceName?: string;
  /**
   * Most messages held back at once (waiting for a retry, or behind one of their group); the source is no longer
   * read past it. Default 10,000.
   */
  maxHeld?: number;
  /** Most payload bytes held back at once, as for `maxHeld`. Default 64 MiB. */
  maxHeldBytes?: number;
}

export const ERROR_POLICY_KEYS = ['maxAttempts', 'retryBackoff', 'shouldRetry', 'deadLetter', 'deadLetterFormat', 'sourceName', 'maxHeld', 'maxHeldBytes'] as const;

/** The codes that say the record itself is at fault: another delivery would fail the same way. */
const RECORD_FAULTS: ReadonlySet<ErrorCode> = new Set([ErrorCodes.INVALID_MESSAGE, ErrorCodes.MESSAGE_TOO_LARGE]);

/** The default of {@link ErrorPolicyOptions.shouldRetry}. */
export function defaultShouldRetry(error: Error): boolean {
  if (error instanceof ManifoldError && RECORD_FAULTS.has(error.code)) return isRetryable(error.cause);
  return true;
}

/** Prefix of the headers a dead-letter record carries (format `'headers'`). */
export const DEAD_LETTER_HEADER = 'x-manifold-dead-letter';

/** The JSON envelope of a dead-letter record (format `'json'`). */
export interface DeadLetterEnvelope {
  /** Marks the envelope; the version of its shape. */
  manifoldDeadLetter: 1;
  source: string;
  position: Record<string, unknown>;
  attempts: number;
  error: { code: string; message: string };
  /** ISO 8601 time the message was given up on. */
  failedAt: string;
  key?: string;
  headers?: Record<string, string>;
  timestamp?: number;
  /** The original bytes as text, when they are valid UTF-8. */
  data?: string;
  /** The original bytes in base64, when they are not valid UTF-8. */
  dataBase64?: string;
}

/** The facts of a message's position that its source put in `meta`, for errors and dead-letter records. */
export function positionOf(message: Message): Record<string, unknown> {
  const meta = message.meta;
  if (!meta) return {};
  const out: Record<string, unknown> = {};
  for (const key of POSITION_KEYS) if (meta[key] !== undefined) out[key] = meta[key];
  return out;
}

const POSITION_KEYS = ['shardId', 'sequenceNumber', 'subSequenceNumber', 'topic', 'partition', 'offset', 'queue', 'deliveryTag', 'line', 'connectionId', 'receivedAt'] as const;

/** A short text naming where a message came from: `shard shardId-000 at 4959…`, `topic orders partition 2 offset 17`. */
export function describePosition(message: Message): string {
  const p = positionOf(message);
  if (p.shardId !== undefined) return `shard ${String(p.shardId)} at sequence number ${String(p.sequenceNumber)}${p.subSequenceNumber !== undefined ? `/${String(p.subSequenceNumber)}` : ''}`;
  if (p.topic !== undefined) return `topic ${String(p.topic)} partition ${String(p.partition)} offset ${String(p.offset)}`;
  if (p.queue !== undefined) return `queue ${String(p.queue)} delivery tag ${String(p.deliveryTag)}`;
  if (p.line !== undefined) return `line ${String(p.line)}`;
  if (p.connectionId !== undefined) return `connection ${String(p.connectionId)} message received at ${new Date(Number(p.receivedAt)).toISOString()}`;
  return message.key !== undefined ? `key ${JSON.stringify(message.key)}` : 'a message without a position';
}

function sourceKindOf(message: Message): string {
  const p = positionOf(message);
  if (p.shardId !== undefined) return 'kinesis';
  if (p.topic !== undefined) return 'kafka';
  if (p.queue !== undefined) return 'rabbitmq';
  if (p.line !== undefined) return 'stdin';
  if (p.connectionId !== undefined) return 'websocket';
  return 'source';
}

/** Ordering group: the partition (shard, topic-partition, queue) and the key. Messages without either share one group. */
function groupOf(message: Message): string {
  const meta = message.meta;
  let partition = '';
  if (meta) {
    if (meta.shardId !== undefined) partition = String(meta.shardId);
    else if (meta.topic !== undefined) partition = `${String(meta.topic)}/${String(meta.partition)}`;
    else if (meta.queue !== undefined) partition = String(meta.queue);
  }
  return message.key === undefined ? partition : `${partition}\u0000${message.key}`;
}

const MAX_ERROR_TEXT = 1024;

/** A message the policy is responsible for, from its first delivery until it is acked, dead-lettered or given up. */
interface Item {
  readonly original: Message;
  /** Order of arrival from the source. */
  readonly seq: number;
  /** The attempt number of the delivery now (or next) under way. */
  attempt: number;
  /** Set once a delivery failed and a retry is due at `dueAt`. */
  waiting: boolean;
  dueAt: number;
  lastError: Error | undefined;
  group: Group | undefined;
  /** Deliveries so far, and the last one settled: a delivery's ack or nack counts once. */
  deliveries: number;
  settled: number;
}

interface Group {
  readonly name: string;
  /** Held items in arrival order. */
  queue: Item[];
  /** The redelivered item now in flight: nothing else of the group goes until it settles. */
  retrying: Item | undefined;
  timer: NodeJS.Timeout | undefined;
}

/** What the policy needs from flow(). */
export interface PolicyHost {
  /** Hands a message to the pipeline (flow()'s head); false when the head is full. */
  push(message: Message): boolean;
  /** The pipeline can no longer take messages (its head ended or was destroyed). */
  closed(): boolean;
  /** Whether the source redelivers what it is nacked (Kinesis, Kafka, RabbitMQ) or loses it (stdin, WebSocket). */
  redelivers: boolean;
  /** A message was given up on and the flow must fail (the first call's error is the one reported). */
  fail(error: ManifoldError): void;
  /** Held messages dropped back under the limits: the source may be read again. */
  wake(): void;
  /** Counts and events. */
  onAck(message: Message): void;
  onRedeliver(message: Message, error: Error, attempt: number, delayMs: number): void;
  onDeadLetter(message: Message, error: Error, attempts: number): void;
  /** A message was given up on: nacked to its source (`lost` when the source cannot redeliver it). */
  onGiveUp(message: Message, error: Error, lost: boolean): void;
  /** Something settled: flow() re-checks whether its head may end. */
  onSettle(): void;
}

/** The validated form of {@link ErrorPolicyOptions}. */
export interface ResolvedErrorPolicy {
  maxAttempts: number;
  backoff: ResolvedRetry;
  shouldRetry: (error: Error, message: Message) => boolean;
  deadLetter: Writable | undefined;
  deadLetterFormat: 'headers' | 'json';
  /** The dead-letter sink takes a message's key as its destination (`routesByKey`): dead letters go without one. */
  deadLetterRoutesByKey: boolean;
  sourceName: string | undefined;
  maxHeld: number;
  maxHeldBytes: number;
}

/** Validates the policy's options (`where` names the caller: `flow`). */
export function resolveErrorPolicy(where: string, o: ErrorPolicyOptions): ResolvedErrorPolicy {
  const b = checkOptions<RetryBackoffOptions>(`${where}: options.retryBackoff`, o.retryBackoff, ['minTimeoutMs', 'maxTimeoutMs', 'factor']);
  const minTimeoutMs = durationOption(where, 'retryBackoff.minTimeoutMs', b.minTimeoutMs, 1000, 0);
  const maxTimeoutMs = durationOption(where, 'retryBackoff.maxTimeoutMs', b.maxTimeoutMs, Math.max(30_000, minTimeoutMs), 0);
  if (maxTimeoutMs < minTimeoutMs) invalidOption(where, 'retryBackoff.maxTimeoutMs', `at least retryBackoff.minTimeoutMs (${minTimeoutMs})`, maxTimeoutMs);
  const deadLetter = o.deadLetter;
  if (deadLetter !== undefined && (deadLetter === null || typeof (deadLetter as Writable).write !== 'function')) {
    invalidOption(where, 'deadLetter', 'a Writable stream (a manifold sink)', deadLetter);
  }
  const carriesHeaders = (deadLetter as { carriesHeaders?: unknown } | undefined)?.carriesHeaders === true;
  if (o.sourceName !== undefined && typeof o.sourceName !== 'string') invalidOption(where, 'sourceName', 'a string', o.sourceName);
  return {
    maxAttempts: numberOption(where, 'maxAttempts', o.maxAttempts, 5, { min: 1, integer: true }),
    backoff: { retries: Infinity, minTimeoutMs, maxTimeoutMs, factor: numberOption(where, 'retryBackoff.factor', b.factor, 2, { min: 1 }), signal: undefined },
    shouldRetry: functionOption<(error: Error, message: Message) => boolean>(where, 'shouldRetry', o.shouldRetry) ?? defaultShouldRetry,
    deadLetter,
    deadLetterFormat: enumOption(where, 'deadLetterFormat', o.deadLetterFormat, ['headers', 'json'] as const, carriesHeaders ? 'headers' : 'json'),
    deadLetterRoutesByKey: (deadLetter as { routesByKey?: unknown } | undefined)?.routesByKey === true,
    sourceName: o.sourceName,
    maxHeld: numberOption(where, 'maxHeld', o.maxHeld, 10_000, { min: 1, integer: true }),
    maxHeldBytes: bytesOption(where, 'maxHeldBytes', o.maxHeldBytes, 64 * 1024 * 1024),
  };
}

/**
 * The per-flow state of the error policy. flow() hands it every message read from the source (`admit`); it
 * pushes what may go now into the pipeline and keeps the rest.
 */
export class ErrorPolicy {
  readonly #o: ResolvedErrorPolicy;
  readonly #host: PolicyHost;
  /** Groups with a message waiting for its retry, or held behind one. Empty on the fast path. */
  readonly #groups = new Map<string, Group>();
  #seq = 0;
  /** Admitted and not yet acked, dead-lettered or given up. */
  #outstanding = 0;
  #held = 0;
  #heldBytes = 0;
  /** Dead-letter writes not yet acked by the dead-letter sink. */
  #deadLetterPending = 0;
  /** Set when the flow stops: due retries of a redelivering source are handed back to it. */
  #stopping = false;

  constructor(options: ResolvedErrorPolicy, host: PolicyHost) {
    this.#o = options;
    this.#host = host;
  }

  /** Admitted messages not yet acked, dead-lettered or given up. */
  get outstanding(): number {
    return this.#outstanding;
  }

  /** Messages held back: waiting for a retry or behind one of their group. */
  get held(): number {
    return this.#held;
  }

  /** Whether the source may be read: the held messages are under `maxHeld` and `maxHeldBytes`. */
  get hasRoom(): boolean {
    return this.#held < this.#o.maxHeld && this.#heldBytes < this.#o.maxHeldBytes;
  }

  /** Whether a retry is waiting or in flight (the head must not end before it is done). */
  get busy(): boolean {
    return this.#groups.size > 0;
  }

  /** Dead-letter records written and not yet acked. */
  get deadLetterPending(): number {
    return this.#deadLetterPending;
  }

  /** Takes a message from the source: pushes it now, or holds it behind a retry of its group. */
  admit(original: Message): boolean {
    const item: Item = {
      original,
      seq: this.#seq++,
      attempt: original.attempt ?? 1,
      waiting: false,
      dueAt: 0,
      lastError: undefined,
      group: undefined,
      deliveries: 0,
      settled: 0,
    };
    this.#outstanding += 1;
    const malformed = original.meta?.malformed;
    if (typeof malformed === 'string') {
      // The source could not decode this record and says so in meta.malformed (a malformed KPL aggregate): no
      // delivery can succeed, so it goes straight to the dead-letter sink, or the flow fails naming it.
      this.#giveUp(item, new ManifoldError(`malformed record: ${malformed}`, { code: ErrorCodes.INVALID_MESSAGE }));
      return this.hasRoom;
    }
    if (this.#groups.size > 0) {
      const group = this.#groups.get(groupOf(original));
      if (group) {
        this.#hold(group, item);
        return this.hasRoom;
      }
    }
    return this.#deliver(item);
  }

  #deliver(item: Item): boolean {
    const { original } = item;
    // Each delivery settles once: a late settle of an earlier delivery (after its redelivery began) is ignored.
    const delivery = ++item.deliveries;
    // A literal of one shape rather than createMessage(): this is the per-message path of every flow.
    const message: Message = {
      data: original.data,
      key: original.key,
      headers: original.headers,
      timestamp: original.timestamp,
      meta: original.meta,
      attempt: item.attempt,
      ack: () => {
        if (item.settled >= delivery) return;
        item.settled = delivery;
        this.#acked(item);
      },
      nack: (error?: Error) => {
        if (item.settled >= delivery) return;
        item.settled = delivery;
        this.#nacked(item, nackReason(error));
      },
    };
    return this.#host.push(message);
  }

  #acked(item: Item): void {
    this.#host.onAck(item.original);
    item.original.ack();
    this.#done(item);
  }

  #nacked(item: Item, error: Error): void {
    item.lastError = error;
    if (error instanceof ManifoldError && error.code === ErrorCodes.OUTPUT_CLOSED) {
      // The reader of the output went away (`manifold ... | head`): nothing can be delivered any more, and the
      // flow ends quietly; the message goes back to its source as it is, neither retried nor dead-lettered.
      this.#handBack(item, error);
      return;
    }
    if (item.attempt >= this.#o.maxAttempts || !this.#shouldRetry(error, item)) {
      this.#giveUp(item, error);
      return;
    }
    if (this.#host.closed() || (this.#stopping && this.#host.redelivers)) {
      this.#release(item, error);
      return;
    }
    const delayMs = backoffDelay(this.#o.backoff, item.attempt);
    item.attempt += 1;
    item.waiting = true;
    item.dueAt = performance.now() + delayMs;
    this.#host.onRedeliver(item.original, error, item.attempt, delayMs);
    const name = groupOf(item.original);
    let group = this.#groups.get(name);
    if (!group) {
      group = { name, queue: [], retrying: undefined, timer: undefined };
      this.#groups.set(name, group);
    }
    if (group.retrying === item) group.retrying = undefined;
    this.#hold(group, item);
    this.#pump(group);
  }

  #shouldRetry(error: Error, item: Item): boolean {
    try {
      return this.#o.shouldRetry(error, item.original) === true;
    } catch {
      // A policy function that throws cannot say yes.
      return false;
    }
  }

  /** Puts `item` into `group`'s queue in arrival order (a redelivery goes back before what arrived after it). */
  #hold(group: Group, item: Item): void {
    item.group = group;
    const { queue } = group;
    let i = queue.length;
    while (i > 0 && queue[i - 1]!.seq > item.seq) i -= 1;
    queue.splice(i, 0, item);
    this.#held += 1;
    this.#heldBytes += item.original.data.length;
  }

  #unhold(item: Item): void {
    this.#held -= 1;
    this.#heldBytes -= item.original.data.length;
  }

  /** Sends on what of `group` may go: a due retry alone, then what waited behind it. */
  #pump(group: Group): void {
    if (group.timer) {
      clearTimeout(group.timer);
      group.timer = undefined;
    }
    while (group.retrying === undefined && group.queue.length > 0) {
      if (this.#host.closed()) {
        // Nothing can go into the pipeline any more: a redelivering source gets what is held back; else it is given up.
        for (const item of group.queue.splice(0)) {
          this.#unhold(item);
          item.group = undefined;
          this.#release(item, item.lastError ?? closedError());
        }
        break;
      }
      const first = group.queue[0]!;
      if (first.waiting) {
        if (this.#stopping && this.#host.redelivers) {
          group.queue.shift();
          this.#unhold(first);
          first.group = undefined;
          this.#release(first, first.lastError ?? closedError());
          continue;
        }
        const wait = first.dueAt - performance.now();
        if (wait > 0) {
          group.timer = setTimeout(() => this.#pump(group), Math.ceil(wait));
          break;
        }
        group.queue.shift();
        this.#unhold(first);
        first.waiting = false;
        group.retrying = first;
        this.#deliver(first);
        break;
      }
      group.queue.shift();
      this.#unhold(first);
      first.group = undefined;
      this.#deliver(first);
    }
    if (group.retrying === undefined && group.queue.length === 0 && this.#groups.get(group.name) === group) this.#groups.delete(group.name);
    if (this.hasRoom) this.#host.wake();
    this.#host.onSettle();
  }

  #done(item: Item): void {
    this.#outstanding -= 1;
    const group = item.group;
    if (group && group.retrying === item) {
      group.retrying = undefined;
      item.group = undefined;
      this.#pump(group);
      return;
    }
    this.#host.onSettle();
  }

  /** This run cannot deliver `item` again: a redelivering source gets it back (nacked), else it is given up. */
  #release(item: Item, error: Error): void {
    if (!this.#host.redelivers) {
      this.#giveUp(item, error);
      return;
    }
    this.#handBack(item, error);
  }

  #handBack(item: Item, error: Error): void {
    this.#host.onGiveUp(item.original, error, false);
    item.original.nack(error);
    this.#done(item);
  }

  /** Its deliveries are used up: to the dead-letter sink, or the flow fails naming it. */
  #giveUp(item: Item, error: Error): void {
    const dl = this.#o.deadLetter;
    if (dl && !dl.destroyed && !dl.writableEnded) {
      this.#deadLetter(dl, item, error);
      return;
    }
    const lost = !this.#host.redelivers;
    this.#host.onGiveUp(item.original, error, lost);
    item.original.nack(error);
    this.#host.fail(undeliverable(item.original, error, item.attempt, lost));
    this.#done(item);
  }

  #deadLetter(dl: Writable, item: Item, error: Error): void {
    const { original } = item;
    const failedAt = new Date();
    const record = this.#deadLetterRecord(item, error, failedAt);
    this.#deadLetterPending += 1;
    const message = createMessage({
      ...record,
      onAck: () => {
        this.#deadLetterPending -= 1;
        this.#host.onDeadLetter(original, error, item.attempt);
        original.ack();
        this.#done(item);
      },
      onNack: (dlError) => {
        this.#deadLetterPending -= 1;
        const lost = !this.#host.redelivers;
        this.#host.onGiveUp(original, error, lost);
        original.nack(error);
        this.#host.fail(
          new ManifoldError(`flow: the dead-letter sink refused the record from ${describePosition(original)}: ${describe(dlError)}`, {
            code: ErrorCodes.DELIVERY,
            cause: dlError,
            details: { position: positionOf(original), lost },
          }),
        );
        this.#done(item);
      },
    });
    try {
      dl.write(message);
    } catch (writeError) {
      message.nack(toError(writeError));
    }
  }

  #deadLetterRecord(item: Item, error: Error, failedAt: Date): { data: Buffer; key?: string; headers?: Record<string, string>; timestamp?: number } {
    const { original } = item;
    const source = this.#o.sourceName ?? sourceKindOf(original);
    const position = positionOf(original);
    const code = error instanceof ManifoldError ? error.code : error.name;
    const text = capText(describe(error));
    // A sink that routes by the message's key (RabbitMQ: the key is the routing key) must route a dead letter
    // by its own configuration: the original key would send it back where it came from, to fail again.
    const key = this.#o.deadLetterRoutesByKey ? undefined : original.key;
    if (this.#o.deadLetterFormat === 'headers') {
      const headers: Record<string, string> = { ...original.headers };
      if (original.key !== undefined && key === undefined) headers[`${DEAD_LETTER_HEADER}-key`] = original.key;
      headers[`${DEAD_LETTER_HEADER}-source`] = source;
      headers[`${DEAD_LETTER_HEADER}-position`] = JSON.stringify(position);
      headers[`${DEAD_LETTER_HEADER}-attempts`] = String(item.attempt);
      headers[`${DEAD_LETTER_HEADER}-error-code`] = code;
      headers[`${DEAD_LETTER_HEADER}-error`] = text;
      headers[`${DEAD_LETTER_HEADER}-failed-at`] = failedAt.toISOString();
      return { data: original.data, key, headers, timestamp: original.timestamp };
    }
    const envelope: DeadLetterEnvelope = {
      manifoldDeadLetter: 1,
      source,
      position,
      attempts: item.attempt,
      error: { code, message: text },
      failedAt: failedAt.toISOString(),
    };
    if (original.key !== undefined) envelope.key = original.key;
    if (original.headers !== undefined) envelope.headers = original.headers;
    if (original.timestamp !== undefined) envelope.timestamp = original.timestamp;
    if (isUtf8(original.data)) envelope.data = original.data.toString('utf8');
    else envelope.dataBase64 = original.data.toString('base64');
    return { data: Buffer.from(JSON.stringify(envelope)), key, timestamp: original.timestamp };
  }

  /**
   * The flow is stopping: a redelivering source gets its waiting messages back now (nacked: it redelivers them
   * on the next start), so its close() is not held up by backoff; a source that cannot redeliver keeps its
   * retries going, within the flow's closeTimeoutMs.
   */
  stop(): void {
    this.#stopping = true;
    if (!this.#host.redelivers) return;
    for (const group of [...this.#groups.values()]) this.#pump(group);
  }

  /** The pipeline is gone: everything held is given up now. */
  abandon(): void {
    for (const group of [...this.#groups.values()]) {
      if (group.timer) clearTimeout(group.timer);
      group.timer = undefined;
      this.#pump(group);
    }
  }
}

function closedError(): ManifoldError {
  return new ManifoldError('flow: the pipeline ended before the message could be redelivered', { code: ErrorCodes.ABORTED });
}

function capText(text: string): string {
  return text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT - 3)}...` : text;
}

/** The error a flow fails with when a message could not be delivered and there is no dead-letter sink. */
function undeliverable(message: Message, error: Error, attempts: number, lost: boolean): ManifoldError {
  const where = describePosition(message);
  const next = lost
    ? 'the source cannot redeliver it, so it is lost; set a dead-letter sink (deadLetter, --dead-letter) to keep such messages'
    : 'the source will deliver it again on the next start; set a dead-letter sink (deadLetter, --dead-letter) to set such messages aside';
  return new ManifoldError(`flow: the message from ${where} could not be delivered after ${attempts} attempt(s): ${describe(error)} (${next})`, {
    code: ErrorCodes.UNDELIVERED,
    cause: error,
    details: { position: positionOf(message), attempts, lost },
  });
}
