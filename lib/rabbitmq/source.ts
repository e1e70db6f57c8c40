/**
 * rabbitmqSource: consumes a RabbitMQ queue with manual acks and a prefetch
 * window, reconnecting and resubscribing through the core retry mechanism.
 */
import { Readable } from 'node:stream';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { ErrorCodes, ManifoldError, redactUrl } from '../core/errors.js';
import { emitToFlowing } from '../core/hand-over.js';
import { nackReason, type Message } from '../core/message.js';
import type { ResolvedOptions } from '../core/options.js';
import { RetryingSource } from '../core/retrying-source.js';
import { amqpError, applyBindings, closeConnection, connectionLostError, headersFromAmqp, openConnection, whenClosed } from './connection.js';
import { checkConnection, rabbitmqSourceOptions, type RabbitmqSourceOptions } from './options.js';

export type { RabbitmqSourceAssert, RabbitmqSourceOptions } from './options.js';

const WHERE = 'rabbitmqSource';

/** Counters of a {@link RabbitmqSource}, over every connection it made. */
export interface RabbitmqSourceStats {
  /** Connections that reached consuming (the first one included). */
  connections: number;
  /** Messages received from the broker. */
  delivered: number;
  /** Of those, marked redelivered by the broker. */
  redelivered: number;
  /** Messages acked to the broker. */
  acked: number;
  /**
   * basic.ack frames sent: acks that come in delivery order within one turn of the event loop go as one
   * `multiple` ack up to the last of them, so this is usually far below `acked`.
   */
  ackFrames: number;
  /** Nacks (requeue) or rejects sent to the broker. */
  nacked: number;
  /** Acks and nacks ignored because the channel that delivered the message was gone; the broker redelivers those. */
  lateSettles: number;
  /** Times deliveries were stopped (the consumer cancelled) because the unacked payload reached `maxInFlightBytes`. */
  byteStops: number;
  /** Payload bytes of the messages delivered and not yet acked or nacked, now. */
  unackedBytes: number;
}

/** How long an ack may wait for others to go with it, when fewer than a quarter of the window are acked. */
const ACK_DELAY_MS = 10;

/**
 * The acks of one channel, sent together: at the end of the event loop's turn once a quarter of the prefetch
 * window is acked (the broker still has three quarters to send meanwhile), else after at most ACK_DELAY_MS (a
 * socket read often brings a few messages only, and an ack frame per read costs more than the messages'
 * own handling). The run of deliveries acked from the oldest unsettled one on goes as one `basic.ack` with
 * `multiple` up to its last; an ack behind a message still unsettled goes alone (waiting for it could fill the
 * prefetch window and stall the consumer). Delivery tags grow on a channel, so the deliveries are kept in order
 * in two arrays, with no Map entry per message.
 */
class AckBatcher {
  /** Delivery tags in delivery order, from `#head` on still tracked. */
  #tags: number[] = [];
  /** Per tag: 0 unsettled, 1 acked and not yet sent, 2 settled on the wire (acked alone, nacked, rejected). */
  #states: number[] = [];
  #head = 0;
  /** Indexes acked since the last flush. */
  #pending: number[] = [];
  #scheduled = false;
  #timer: NodeJS.Timeout | undefined;
  readonly channel: Channel;
  readonly #onFrame: () => void;
  /** The prefetch window of the consumer now: a quarter of it acked goes at the end of the turn. */
  readonly #window: () => number;

  constructor(channel: Channel, onFrame: () => void, window: () => number) {
    this.channel = channel;
    this.#onFrame = onFrame;
    this.#window = window;
  }

  delivered(tag: number): void {
    this.#tags.push(tag);
    this.#states.push(0);
  }

  #indexOf(tag: number): number {
    const tags = this.#tags;
    let lo = this.#head;
    // A channel numbers its deliveries 1, 2, 3...: with one consumer on it, a tag's place is its distance from the
    // first tracked one. Checked, and searched for when it is not there.
    const guess = lo + (tag - tags[lo]!);
    if (guess >= lo && guess < tags.length && tags[guess] === tag) return guess;
    let hi = tags.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const at = tags[mid]!;
      if (at === tag) return mid;
      if (at < tag) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  ack(raw: ConsumeMessage): void {
    const i = this.#indexOf(raw.fields.deliveryTag);
    if (i < 0) {
      // Not tracked (cannot happen for a delivery of this channel): ack it as it is.
      this.channel.ack(raw);
      this.#onFrame();
      return;
    }
    this.#states[i] = 1;
    this.#pending.push(i);
    if (this.#scheduled) return;
    if (4 * this.#pending.length >= this.#window()) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    } else {
      this.#timer ??= setTimeout(() => this.flush(), ACK_DELAY_MS);
    }
  }

  /** A nack or reject goes at once; its place is then settled. */
  settled(raw: ConsumeMessage): void {
    const i = this.#indexOf(raw.fields.deliveryTag);
    if (i >= 0) this.#states[i] = 2;
  }

  /** Sends what is acked: the leading run as one multiple ack, the rest one by one. Safe to call any time. */
  flush(): void {
    this.#scheduled = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending.length === 0) return;
    const tags = this.#tags;
    const states = this.#states;
    let upTo = -1;
    while (this.#head < tags.length && states[this.#head] !== 0) {
      if (states[this.#head] === 1) upTo = tags[this.#head]!;
      this.#head += 1;
    }
    try {
      if (upTo !== -1) {
        this.channel.ack({ fields: { deliveryTag: upTo } } as ConsumeMessage, true);
        this.#onFrame();
      }
      for (const i of this.#pending) {
        if (i < this.#head || states[i] !== 1) continue;
        states[i] = 2;
        this.channel.ack({ fields: { deliveryTag: tags[i]! } } as ConsumeMessage);
        this.#onFrame();
      }
    } catch {
      // The channel is closing: the broker requeues what it did not hear acked.
    }
    this.#pending = [];
    if (this.#head > 4096 && this.#head * 2 > tags.length) {
      this.#tags = tags.slice(this.#head);
      this.#states = states.slice(this.#head);
      this.#head = 0;
    }
  }
}

/** What every connection of a source learns about the messages' size (a new connection sizes its first window by it). */
interface SizeEstimate {
  /** Moving average of the payload size in bytes; 0 before the first delivery. */
  averageBytes: number;
}

/** The resolved options, the connection name filled in. */
type SourceConfig = ResolvedOptions<typeof rabbitmqSourceOptions.specs> & { connectionName: string };

function resolveSourceOptions(options: RabbitmqSourceOptions): SourceConfig {
  const o = rabbitmqSourceOptions.resolve(options);
  checkConnection(WHERE, o);
  return { ...o, connectionName: o.connectionName ?? `manifold ${WHERE} ${o.queue}` };
}

/**
 * Consumes `queue` with manual acks. Each message carries `data`, `key` (the
 * routing key it was published with, when not empty), `headers` (values as
 * strings), `timestamp` (the AMQP timestamp in ms, else arrival time) and
 * `meta` (`deliveryTag`, `redelivered`, `exchange`, `routingKey`, `queue`,
 * and `messageId` / `correlationId` / `contentType` / `appId` when set).
 *
 * - `ack()` acks on the channel that delivered the message. An ack or nack
 *   arriving after that channel is gone is ignored and counted in `stats.lateSettles`;
 *   the broker has requeued the message and delivers it again.
 * - `nack()` requeues, or with `nackRequeue: false` rejects (dead-lettering it
 *   when the queue has a dead-letter exchange).
 * - `prefetch` bounds unacked messages, and so memory: the broker stops
 *   delivering until messages are acked. `maxInFlightBytes` bounds their
 *   payload: the window is sized by the average message size, and the
 *   consumer is cancelled at the bound and made again at half of it.
 * - A lost connection or channel is re-made with backoff and the consumer
 *   resubscribed; the stream stays open (`'reconnect'`, then `'ready'`).
 *   Wrong credentials and a missing queue are not retried.
 * - `amqps://` is TLS; `tls` gives the CA and client certificate (files are read at
 *   every reconnect), `authMechanism: 'EXTERNAL'` logs in as that certificate. A failed
 *   handshake is `MANIFOLD_ERR_TLS`, naming the host and the reason, and not retried.
 * - `close()` cancels the consumer, ends the stream after what was delivered,
 *   waits up to `closeTimeoutMs` for outstanding acks (emitting `'closetimeout'`
 *   with a `MANIFOLD_ERR_CLOSE_TIMEOUT` error if some never came; the broker
 *   requeues those), then closes the connection. During a connect, `close()`
 *   and `destroy()` stop it and close what it opened: no consumer is left.
 *
 * @example
 * ```ts
 * const source = rabbitmqSource({ url: 'amqp://guest:guest@localhost', queue: 'orders', prefetch: 500 });
 * await pipeline(source, stdoutSink());
 * ```
 */
export function rabbitmqSource(options: RabbitmqSourceOptions): RabbitmqSource {
  return new RabbitmqSource(options);
}

/** The stream {@link rabbitmqSource} returns. */
export class RabbitmqSource extends RetryingSource {
  /** It delivers again what it is nacked (from its checkpoint or the broker's queue): flow()'s error policy relies on it. */
  readonly redelivers = true;
  /** The queue being consumed. */
  readonly queue: string;
  readonly #stats: RabbitmqSourceStats;

  constructor(options: RabbitmqSourceOptions) {
    const config = resolveSourceOptions(options);
    const stats: RabbitmqSourceStats = { connections: 0, delivered: 0, redelivered: 0, acked: 0, ackFrames: 0, nacked: 0, lateSettles: 0, byteStops: 0, unackedBytes: 0 };
    // The wrapper fills its own defaults for what is undefined.
    const outer: ConstructorParameters<typeof RetryingSource>[1] = {
      what: `${WHERE}: consuming queue "${config.queue}" at ${redactUrl(config.url)}`,
      forwardEvents: ['closetimeout'],
      retry: config.retry,
      signal: config.signal,
      highWaterMark: config.highWaterMark,
    };
    const estimate: SizeEstimate = { averageBytes: 0 };
    super((context) => new AmqpConsumer(config, stats, estimate, context.signal), outer);
    this.queue = config.queue;
    this.#stats = stats;
  }

  /** A snapshot of the counters, over every connection. */
  get stats(): RabbitmqSourceStats {
    return { ...this.#stats };
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // The inner consumer is cut unless it ended normally (then a graceful close may still wait for acks).
    const inner = this.inner;
    const cut = inner !== undefined && (error !== null || !inner.readableEnded);
    super._destroy(error, (err) => {
      // 'close' once the connection is closed, so the broker has dropped the consumer (bounded: see whenClosed).
      if (!cut) callback(err);
      else void whenClosed(inner).then(() => callback(err));
    });
  }
}

/**
 * One connection, one channel, one consumer. Ends only through close(); any
 * loss destroys it with an error that RetryingSource classifies. close() or
 * destroy() during the connect stops it at its next step and closes what it
 * opened (amqplib cannot abort its TCP connect and handshake: a connection
 * that opens after the stop is closed at once).
 */
class AmqpConsumer extends Readable {
  readonly #config: SourceConfig;
  readonly #stats: RabbitmqSourceStats;
  readonly #estimate: SizeEstimate;
  readonly #signal: AbortSignal | undefined;
  #connection: ChannelModel | undefined;
  #channel: Channel | undefined;
  /** The acks of #channel, batched per turn of the event loop. */
  #acks: AckBatcher | undefined;
  #consumerTag: string | undefined;
  /** True while acks can go to the broker on #channel. */
  #live = false;
  /** Set once the consumer runs; losses before that surface through the opening promise instead. */
  #opened = false;
  #released = false;
  #channelError: Error | undefined;
  #outstanding = 0;
  /** Payload bytes of the unacked deliveries. */
  #outstandingBytes = 0;
  #idleWaiters: Array<() => void> = [];
  #closing: Promise<void> | undefined;
  /** The graceful close is waiting for acks: RetryingSource's auto-destroy (no error) must not release the connection under it. */
  #graceful = false;
  /** close() is cancelling the consumer: requeues wait for it (see #settle). */
  #cancelling: Promise<void> | undefined;
  #closeDone = false;
  /** close() or destroy() came while connecting: #open gives up at its next step. */
  #stopping = false;
  /** Destroys the socket of a TCP connect or AMQP handshake in progress (see openConnection). */
  readonly #connectAbort = new AbortController();
  /** Settles (never rejects) when the connect is over, whichever way. */
  readonly #opening: Promise<void>;
  #openingDone!: () => void;
  #releasing: Promise<void> | undefined;
  /** Deliveries are stopped for maxInFlightBytes: set at the bound, cleared at half of it. */
  #overBytes = false;
  /** The consumer's window no longer fits the messages' size: re-make it (see #settle). */
  #resize = false;
  /** The prefetch window of the current consumer, and when it was last widened (0: never). */
  #window = 0;
  #widenedAt = 0;
  /** The cancel or consume the byte bound runs, if any. */
  #flowing: Promise<void> | undefined;
  readonly #onAbort = (): void => {
    // RetryingSource aborts its signal when it is destroyed, also by its auto-destroy once a graceful close ended the
    // stream: the graceful close then finishes on its own (acks, bounded by closeTimeoutMs).
    if (this.#graceful) return;
    this.#stop();
    // A fatal error rather than a close without an end, which RetryingSource, being destroyed, would report as a
    // lost connection to reconnect ('reconnect' after destroy()). RetryingSource ignores it: it is destroyed.
    this.destroy(new ManifoldError(`${WHERE}: destroyed`, { code: ErrorCodes.ABORTED }));
  };

  constructor(config: SourceConfig, stats: RabbitmqSourceStats, estimate: SizeEstimate, signal: AbortSignal | undefined) {
    // autoDestroy is off: after 'end' the channel must stay open until the acks of what was delivered are in.
    super({ objectMode: true, highWaterMark: config.prefetch, autoDestroy: false });
    this.#config = config;
    this.#stats = stats;
    this.#estimate = estimate;
    this.#signal = signal;
    this.#opening = new Promise<void>((resolve) => {
      this.#openingDone = resolve;
    });
    signal?.addEventListener('abort', this.#onAbort, { once: true });
    if (signal?.aborted) this.#stop();
  }

  override _construct(callback: (error?: Error | null) => void): void {
    if (this.#stopping) {
      // Closed (or aborted) before the connect began: nothing to open.
      this.#openingDone();
      callback();
      return;
    }
    this.#open().then(
      () => {
        this.#openingDone();
        callback();
      },
      (error: unknown) => {
        this.#openingDone();
        // A stop is not a failure: the stream is being closed or destroyed anyway.
        callback(this.#stopping ? null : (error as Error));
      },
    );
  }

  /** Throws when close() or destroy() came during the connect. */
  #check(): void {
    if (this.#stopping) throw new ManifoldError(`${WHERE}: stopped while connecting`, { code: ErrorCodes.ABORTED });
  }

  async #open(): Promise<void> {
    const c = this.#config;
    const connection = await openConnection(WHERE, c, this.#connectAbort.signal);
    if (this.#stopping) {
      // Stopped as the handshake completed (the abort came too late to cut it): close what just opened.
      await closeConnection(connection);
      this.#check();
    }
    this.#connection = connection;
    // Errors are also reported through 'close', which is where we act on them.
    connection.on('error', () => {});
    connection.on('close', (error?: Error) => this.#lose(error));
    try {
      const channel = await connection.createChannel();
      this.#channel = channel;
      this.#acks = new AckBatcher(
        channel,
        () => {
          this.#stats.ackFrames += 1;
        },
        () => this.#window,
      );
      channel.on('error', (error: Error) => {
        this.#channelError = error;
      });
      // amqplib closes the channels before it reports the connection's close, which carries the broker's reason
      // (320 CONNECTION_FORCED and its text): a channel closing without an error of its own waits for that.
      channel.on('close', () => queueMicrotask(() => this.#lose(this.#channelError)));
      this.#check();
      if (c.assert) {
        await channel.assertQueue(c.queue, c.assert.queue);
        this.#check();
        await applyBindings(channel, c.queue, c.assert.bindings);
      } else {
        await channel.checkQueue(c.queue);
      }
      this.#check();
      // The broker hands a consumer its whole window at once, before a cancel can reach it: the window is what bounds
      // bytes. Not knowing the messages' size yet, the first consumer takes one, and is widened at its first delivery.
      const window = this.#windowFor();
      await channel.prefetch(window);
      this.#check();
      this.#window = window;
      this.#live = true;
      const consumeOptions = c.consumerTag === undefined ? { noAck: false } : { noAck: false, consumerTag: c.consumerTag };
      const reply = await channel.consume(c.queue, (raw) => this.#deliver(channel, raw), consumeOptions);
      this.#consumerTag = reply.consumerTag;
      // A stop that came while consume was in flight: closing the connection cancels the consumer and requeues
      // whatever it was sent meanwhile.
      this.#check();
    } catch (error) {
      this.#live = false;
      await this.#release();
      if (this.#stopping) throw error;
      throw amqpError(WHERE, `consuming queue "${c.queue}"`, error, { url: c.url, queue: c.queue });
    }
    // Destroyed without the signal (RetryingSource replacing it): _destroy, deferred until now, releases the connection.
    if (this.destroyed) return;
    this.#opened = true;
    this.#stats.connections += 1;
    this.emit('ready', { queue: c.queue, consumerTag: this.#consumerTag });
    // Deliveries that came with consume-ok (before #opened) may have reached the byte bound, or asked for a wider window.
    if (this.#overBytes || this.#resize) this.#reconcile();
    else this.#maybeWiden();
  }

  #deliver(channel: Channel, raw: ConsumeMessage | null): void {
    if (raw === null) {
      // basic.cancel from the broker: the queue was deleted (or its node went away).
      this.#lose(
        new ManifoldError(`${WHERE}: the broker cancelled the consumer of queue "${this.#config.queue}" (was the queue deleted?)`, {
          code: ErrorCodes.CONNECTION,
          retryable: true,
          details: { queue: this.#config.queue },
        }),
      );
      return;
    }
    const { fields, properties } = raw;
    const size = raw.content.length;
    if (this.#acks?.channel === channel) this.#acks.delivered(fields.deliveryTag);
    this.#outstanding += 1;
    this.#outstandingBytes += size;
    this.#stats.unackedBytes += size;
    const e = this.#estimate;
    e.averageBytes = e.averageBytes === 0 ? size : 0.8 * e.averageBytes + 0.2 * size;
    this.#stats.delivered += 1;
    if (fields.redelivered) this.#stats.redelivered += 1;
    const meta: Record<string, unknown> = {
      deliveryTag: fields.deliveryTag,
      redelivered: fields.redelivered,
      exchange: fields.exchange,
      routingKey: fields.routingKey,
      queue: this.#config.queue,
    };
    if (properties.messageId !== undefined) meta.messageId = properties.messageId;
    if (properties.correlationId !== undefined) meta.correlationId = properties.correlationId;
    if (properties.contentType !== undefined) meta.contentType = properties.contentType;
    if (properties.appId !== undefined) meta.appId = properties.appId;
    // Built here rather than by createMessage(): two closures over one context are all a delivery costs (no init
    // object, no onAck/onNack closures for the Message's own to call). Settled once; a late or failed settle is
    // dropped, and the broker redelivers what it did not hear acked.
    let settled = false;
    const message: { -readonly [K in keyof Message]: Message[K] } = {
      data: raw.content,
      ack: () => {
        if (settled) return;
        settled = true;
        try {
          this.#settle(channel, raw, undefined);
        } catch {
          // The channel is going away: the broker redelivers.
        }
      },
      nack: (error?: Error) => {
        if (settled) return;
        settled = true;
        try {
          this.#settle(channel, raw, nackReason(error));
        } catch {
          // As for ack.
        }
      },
    };
    if (fields.routingKey !== '') message.key = fields.routingKey;
    const headers = headersFromAmqp(properties.headers as Record<string, unknown> | undefined);
    if (headers !== undefined) message.headers = headers;
    // AMQP timestamps are seconds since the epoch (the spec's time_t).
    message.timestamp = typeof properties.timestamp === 'number' ? properties.timestamp * 1000 : Date.now();
    message.meta = meta;
    message.attempt = attemptOf(fields.redelivered, properties.headers as Record<string, unknown> | undefined);
    // No pause on a false push: prefetch caps what the broker sends us by count, and the byte bound by bytes.
    if (!emitToFlowing(this, message)) this.push(message);
    if (!this.#overBytes && this.#outstandingBytes >= this.#config.maxInFlightBytes) {
      this.#overBytes = true;
      this.#stats.byteStops += 1;
      this.#reconcile();
    } else {
      // Widened here as well as on acks: a sink that acks only once it has several messages must get them.
      this.#maybeWiden();
    }
  }

  /**
   * Re-makes the consumer with a wider window when the messages turned out smaller than its window was sized
   * for (the first consumer's window of one, or one sized for large messages): at once the first time, then at
   * most once a second.
   */
  #maybeWiden(): void {
    // #window is that of the consumer being made too: deliveries may come before its consume-ok is handled.
    // Cheapest tests first: this runs on every delivery, and a window above half of prefetch cannot double.
    if (2 * this.#window > this.#config.prefetch || this.#overBytes || this.#resize || this.#estimate.averageBytes === 0) return;
    if (this.#windowFor() < 2 * this.#window) return;
    if (this.#widenedAt !== 0 && Date.now() - this.#widenedAt < 1000) return;
    this.#resize = true;
    this.#widenedAt = Date.now();
    this.#reconcile();
  }

  #settle(channel: Channel, raw: ConsumeMessage, error: Error | undefined): void {
    // A delivery tag is only meaningful on its own channel; on another it would ack a different message.
    if (channel !== this.#channel || !this.#live) {
      this.#stats.lateSettles += 1;
      return;
    }
    if (error !== undefined && this.#config.nackRequeue && this.#cancelling !== undefined) {
      // Requeued before the consumer's cancel-ok, the broker would deliver it straight back to this stopping
      // consumer (flow() hands back what waits for a retry as it stops): requeue once nothing more comes here.
      void this.#cancelling.then(() => this.#settle(channel, raw, error));
      return;
    }
    this.#outstanding -= 1;
    this.#outstandingBytes -= raw.content.length;
    this.#stats.unackedBytes -= raw.content.length;
    const acks = this.#acks?.channel === channel ? this.#acks : undefined;
    if (error === undefined) {
      if (acks) acks.ack(raw);
      else {
        channel.ack(raw);
        this.#stats.ackFrames += 1;
      }
      this.#stats.acked += 1;
    } else {
      if (this.#config.nackRequeue) channel.nack(raw, false, true);
      else channel.reject(raw, false);
      acks?.settled(raw);
      this.#stats.nacked += 1;
    }
    if (this.#outstanding === 0) this.#wakeIdle();
    // Resume at half the bound, so that large messages do not cancel and re-make the consumer on every ack.
    if (this.#overBytes && this.#outstandingBytes <= this.#config.maxInFlightBytes / 2) this.#overBytes = false;
    if (this.#overBytes) return;
    // Stopped for bytes (or waiting for a free slot of prefetch): consume again.
    if (this.#consumerTag === undefined) this.#reconcile();
    else this.#maybeWiden();
  }

  /**
   * The prefetch window of a new consumer: what is left of `prefetch` (the cancelled consumer's unacked
   * messages still count, so the total never exceeds it) and, by the average size, of `maxInFlightBytes`;
   * one while the size is not known yet.
   */
  #windowFor(): number {
    const c = this.#config;
    const average = this.#estimate.averageBytes;
    const byCount = c.prefetch - this.#outstanding;
    const byBytes = average > 0 ? Math.floor((c.maxInFlightBytes - this.#outstandingBytes) / average) : 1;
    return Math.max(1, Math.min(byCount, byBytes));
  }

  /**
   * Brings the consumer in line with the byte bound: cancels it while over (after cancel-ok the broker sends
   * nothing more on it; what it sent before arrives and is delivered), re-makes it once under. RabbitMQ does
   * not support channel.flow from the client, and prefetch counts messages, not bytes.
   */
  #reconcile(): void {
    const channel = this.#channel;
    // Before #opened, #open's own consume may still be in flight (deliveries come before its promise resolves):
    // a second consumer would be made. #open calls this once it is done.
    if (this.#flowing || !channel || !this.#opened) return;
    const c = this.#config;
    this.#flowing = (async () => {
      try {
        while (this.#live && !this.#closing && !this.#stopping) {
          if ((this.#overBytes || this.#resize) && this.#consumerTag !== undefined) {
            const tag = this.#consumerTag;
            await channel.cancel(tag);
            if (this.#consumerTag === tag) this.#consumerTag = undefined;
          } else if (!this.#overBytes && this.#consumerTag === undefined) {
            // Every slot of prefetch is held by the cancelled consumer's unacked messages: wait for an ack (#settle).
            if (this.#outstanding >= c.prefetch) return;
            const window = this.#windowFor();
            // basic.qos applies to the consumers made after it (RabbitMQ's per-consumer prefetch).
            await channel.prefetch(window);
            if (!this.#live || this.#closing || this.#stopping || this.#overBytes) continue;
            this.#window = window;
            this.#resize = false;
            const consumeOptions = c.consumerTag === undefined ? { noAck: false } : { noAck: false, consumerTag: c.consumerTag };
            const reply = await channel.consume(c.queue, (raw) => this.#deliver(channel, raw), consumeOptions);
            this.#consumerTag = reply.consumerTag;
          } else {
            return;
          }
        }
      } catch {
        // The channel went away meanwhile: #lose has handled it (or a close is under way).
      } finally {
        this.#flowing = undefined;
      }
    })();
  }

  #wakeIdle(): void {
    // Runs whenever the last unacked message is acked (with a sink that acks at once, after nearly every one).
    if (this.#idleWaiters.length === 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }

  #whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.#outstanding === 0 || !this.#live) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#idleWaiters = this.#idleWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.#idleWaiters.push(done);
    });
  }

  /** The connection or channel went away, or the consumer was cancelled. */
  #lose(cause: Error | undefined): void {
    if (!this.#opened || this.#released) return;
    this.#live = false;
    this.#outstanding = 0;
    // The stats are shared by every connection of the source: take back only this one's share.
    this.#stats.unackedBytes -= this.#outstandingBytes;
    this.#outstandingBytes = 0;
    this.#wakeIdle();
    // During a graceful close a loss only means the broker requeues what was not acked; the close finishes.
    if (this.#closing || this.destroyed) return;
    const error = cause
      ? amqpError(WHERE, `consuming queue "${this.#config.queue}"`, cause, { url: this.#config.url, queue: this.#config.queue })
      : connectionLostError(WHERE, this.#config.url);
    this.destroy(error);
  }

  override _read(): void {
    // Deliveries are pushed as the broker sends them; prefetch (and the byte bound) is the backpressure.
  }

  /**
   * Consuming: cancels the consumer, ends, waits up to closeTimeoutMs for outstanding acks, then closes the
   * connection. Still connecting: stops the connect and closes what it opened, then resolves.
   */
  close(): Promise<void> {
    this.#closing ??= this.#opened && this.#live && this.#channel ? this.#closeGracefully(this.#channel) : this.#abandon();
    return this.#closing;
  }

  /** Sets the stop flag; a channel RPC of the connect that is in flight is cut by closing the connection. */
  #stop(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#opened) return;
    if (this.#connection) void this.#release();
    else this.#connectAbort.abort();
  }

  /** close() during the connect (or after a loss): nothing was delivered that could still be acked. */
  async #abandon(): Promise<void> {
    if (this.destroyed) return;
    this.#stop();
    // The socket of a connect in progress is destroyed at once (see #stop), and a channel RPC in flight is cut by
    // closing the connection; the wait is bounded by closeTimeoutMs all the same.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#opening, new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#config.closeTimeoutMs)))]);
    clearTimeout(timer);
    await this.#release();
    // Destroyed once close() has resolved: RetryingSource stops retrying when it does, and must not take the end of
    // this attempt for a failure to retry.
    setImmediate(() => this.destroy());
  }

  async #closeGracefully(channel: Channel): Promise<void> {
    if (this.destroyed) return;
    this.#graceful = true;
    this.#cancelling = (async () => {
      // A cancel or consume of the byte bound in flight: let it land, then cancel whichever consumer there is.
      await this.#flowing;
      try {
        // After cancel-ok the broker sends nothing more on this consumer.
        if (this.#consumerTag !== undefined) await channel.cancel(this.#consumerTag);
      } catch {
        // The channel went away meanwhile: #lose has handled it.
      }
      this.#consumerTag = undefined;
    })();
    await this.#cancelling;
    this.#cancelling = undefined;
    this.push(null);
    const inFlight = this.#outstanding;
    const idle = await this.#whenIdle(this.#config.closeTimeoutMs);
    if (!idle) {
      this.emit(
        'closetimeout',
        new ManifoldError(
          `${WHERE}: close() timed out after ${this.#config.closeTimeoutMs} ms with ${this.#outstanding} message(s) of ${inFlight} not acked; the broker requeues them`,
          { code: ErrorCodes.CLOSE_TIMEOUT, details: { inFlight: this.#outstanding, queue: this.#config.queue } },
        ),
      );
    }
    this.#closeDone = true;
    await this.#release();
    this.destroy();
  }

  /** Closing the connection makes the broker requeue every unacked delivery and drop the consumer. Idempotent. */
  #release(): Promise<void> {
    this.#releasing ??= (async () => {
      // Acks still waiting for the end of the turn go before the channel closes (else the broker requeues them).
      if (this.#live) this.#acks?.flush();
      this.#released = true;
      this.#live = false;
      this.#outstanding = 0;
      this.#stats.unackedBytes -= this.#outstandingBytes;
      this.#outstandingBytes = 0;
      this.#wakeIdle();
      this.#signal?.removeEventListener('abort', this.#onAbort);
      // Before the consumer ran nothing was acked: no need to close the channel first (and a channel RPC in flight
      // would hold that up); closing the connection cuts the RPC.
      await closeConnection(this.#connection, this.#opened ? this.#channel : undefined);
    })();
    return this.#releasing;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (error === null && this.#graceful && !this.#closeDone) {
      // RetryingSource auto-destroys once its reader has had everything, which is before the acks of what it
      // read are in: the graceful close releases the connection when they are (bounded by closeTimeoutMs).
      callback();
      return;
    }
    this.#stopping = true;
    this.#release().then(() => callback(error));
  }
}

/**
 * Which delivery of a message this is, as far as the broker tells: a quorum queue counts earlier deliveries in
 * `x-delivery-count`; a classic queue only says `redelivered`, so at least the second.
 */
export function attemptOf(redelivered: boolean, headers: Record<string, unknown> | undefined): number {
  const count = headers?.['x-delivery-count'];
  const n = typeof count === 'number' ? count : typeof count === 'bigint' ? Number(count) : Number.NaN;
  if (Number.isInteger(n) && n >= 0) return Math.max(n + 1, redelivered ? 2 : 1);
  return redelivered ? 2 : 1;
}
