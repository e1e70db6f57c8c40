/**
 * rabbitmqSource: consumes a RabbitMQ queue with manual acks and a prefetch
 * window, reconnecting and resubscribing through the core retry mechanism.
 */
import { Readable } from 'node:stream';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { ErrorCodes, ManifoldError, redactUrl } from '../core/errors.js';
import { createMessage } from '../core/message.js';
import type { ResolvedOptions } from '../core/options.js';
import { RetryingSource } from '../core/retrying-source.js';
import { amqpError, applyBindings, closeConnection, connectionLostError, headersFromAmqp, openConnection } from './connection.js';
import { rabbitmqSourceOptions, type RabbitmqSourceOptions } from './options.js';

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
  /** Acks sent to the broker. */
  acked: number;
  /** Nacks (requeue) or rejects sent to the broker. */
  nacked: number;
  /** Acks and nacks ignored because the channel that delivered the message was gone; the broker redelivers those. */
  lateSettles: number;
}

/** The resolved options, the connection name filled in. */
type SourceConfig = ResolvedOptions<typeof rabbitmqSourceOptions.specs> & { connectionName: string };

function resolveSourceOptions(options: RabbitmqSourceOptions): SourceConfig {
  const o = rabbitmqSourceOptions.resolve(options);
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
 *   delivering until messages are acked.
 * - A lost connection or channel is re-made with backoff and the consumer
 *   resubscribed; the stream stays open (`'reconnect'`, then `'ready'`).
 *   Wrong credentials and a missing queue are not retried.
 * - `close()` cancels the consumer, ends the stream after what was delivered,
 *   waits up to `closeTimeoutMs` for outstanding acks (emitting `'closetimeout'`
 *   with a `MANIFOLD_ERR_CLOSE_TIMEOUT` error if some never came; the broker
 *   requeues those), then closes the connection.
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
    const stats: RabbitmqSourceStats = { connections: 0, delivered: 0, redelivered: 0, acked: 0, nacked: 0, lateSettles: 0 };
    // The wrapper fills its own defaults for what is undefined.
    const outer: ConstructorParameters<typeof RetryingSource>[1] = {
      what: `${WHERE}: consuming queue "${config.queue}" at ${redactUrl(config.url)}`,
      forwardEvents: ['closetimeout'],
      retry: config.retry,
      signal: config.signal,
      highWaterMark: config.highWaterMark,
    };
    super(() => new AmqpConsumer(config, stats), outer);
    this.queue = config.queue;
    this.#stats = stats;
  }

  /** A snapshot of the counters, over every connection. */
  get stats(): RabbitmqSourceStats {
    return { ...this.#stats };
  }
}

/**
 * One connection, one channel, one consumer. Ends only through close(); any
 * loss destroys it with an error that RetryingSource classifies.
 */
class AmqpConsumer extends Readable {
  readonly #config: SourceConfig;
  readonly #stats: RabbitmqSourceStats;
  #connection: ChannelModel | undefined;
  #channel: Channel | undefined;
  #consumerTag: string | undefined;
  /** True while acks can go to the broker on #channel. */
  #live = false;
  /** Set once the consumer runs; losses before that surface through the opening promise instead. */
  #opened = false;
  #released = false;
  #channelError: Error | undefined;
  #outstanding = 0;
  #idleWaiters: Array<() => void> = [];
  #closing: Promise<void> | undefined;
  #closeDone = false;

  constructor(config: SourceConfig, stats: RabbitmqSourceStats) {
    // autoDestroy is off: after 'end' the channel must stay open until the acks of what was delivered are in.
    super({ objectMode: true, highWaterMark: config.prefetch, autoDestroy: false });
    this.#config = config;
    this.#stats = stats;
  }

  override _construct(callback: (error?: Error | null) => void): void {
    this.#open().then(
      () => callback(),
      (error: unknown) => callback(error as Error),
    );
  }

  async #open(): Promise<void> {
    const c = this.#config;
    const connection = await openConnection(WHERE, c);
    this.#connection = connection;
    // Errors are also reported through 'close', which is where we act on them.
    connection.on('error', () => {});
    connection.on('close', (error?: Error) => this.#lose(error));
    try {
      const channel = await connection.createChannel();
      channel.on('error', (error: Error) => {
        this.#channelError = error;
      });
      // amqplib closes the channels before it reports the connection's close, which carries the broker's reason
      // (320 CONNECTION_FORCED and its text): a channel closing without an error of its own waits for that.
      channel.on('close', () => queueMicrotask(() => this.#lose(this.#channelError)));
      if (c.assert) {
        await channel.assertQueue(c.queue, c.assert.queue);
        await applyBindings(channel, c.queue, c.assert.bindings);
      } else {
        await channel.checkQueue(c.queue);
      }
      await channel.prefetch(c.prefetch);
      this.#channel = channel;
      this.#live = true;
      const consumeOptions = c.consumerTag === undefined ? { noAck: false } : { noAck: false, consumerTag: c.consumerTag };
      const reply = await channel.consume(c.queue, (raw) => this.#deliver(channel, raw), consumeOptions);
      this.#consumerTag = reply.consumerTag;
    } catch (error) {
      this.#live = false;
      this.#connection = undefined;
      await closeConnection(connection);
      throw amqpError(WHERE, `consuming queue "${c.queue}"`, error, { url: c.url, queue: c.queue });
    }
    if (this.destroyed) return;
    this.#opened = true;
    this.#stats.connections += 1;
    this.emit('ready', { queue: c.queue, consumerTag: this.#consumerTag });
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
    this.#outstanding += 1;
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
    const message = createMessage({
      data: raw.content,
      attempt: attemptOf(fields.redelivered, properties.headers as Record<string, unknown> | undefined),
      key: fields.routingKey === '' ? undefined : fields.routingKey,
      headers: headersFromAmqp(properties.headers as Record<string, unknown> | undefined),
      // AMQP timestamps are seconds since the epoch (the spec's time_t).
      timestamp: typeof properties.timestamp === 'number' ? properties.timestamp * 1000 : Date.now(),
      meta,
      onAck: () => this.#settle(channel, raw, undefined),
      onNack: (error) => this.#settle(channel, raw, error),
    });
    // No pause on a false push: prefetch already caps what the broker sends us.
    this.push(message);
  }

  #settle(channel: Channel, raw: ConsumeMessage, error: Error | undefined): void {
    // A delivery tag is only meaningful on its own channel; on another it would ack a different message.
    if (channel !== this.#channel || !this.#live) {
      this.#stats.lateSettles += 1;
      return;
    }
    this.#outstanding -= 1;
    if (error === undefined) {
      channel.ack(raw);
      this.#stats.acked += 1;
    } else {
      if (this.#config.nackRequeue) channel.nack(raw, false, true);
      else channel.reject(raw, false);
      this.#stats.nacked += 1;
    }
    if (this.#outstanding === 0) this.#wakeIdle();
  }

  #wakeIdle(): void {
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
    this.#wakeIdle();
    // During a graceful close a loss only means the broker requeues what was not acked; the close finishes.
    if (this.#closing || this.destroyed) return;
    const error = cause
      ? amqpError(WHERE, `consuming queue "${this.#config.queue}"`, cause, { url: this.#config.url, queue: this.#config.queue })
      : connectionLostError(WHERE, this.#config.url);
    this.destroy(error);
  }

  override _read(): void {
    // Deliveries are pushed as the broker sends them; prefetch is the backpressure.
  }

  /** Cancels the consumer, ends, waits up to closeTimeoutMs for outstanding acks, then closes the connection. */
  close(): Promise<void> {
    this.#closing ??= this.#closeGracefully();
    return this.#closing;
  }

  async #closeGracefully(): Promise<void> {
    if (this.destroyed) return;
    const channel = this.#channel;
    if (!this.#opened || !channel || !this.#live) {
      // Still connecting (or already lost): nothing was delivered that could still be acked.
      this.destroy();
      return;
    }
    try {
      // After cancel-ok the broker sends nothing more on this consumer.
      if (this.#consumerTag !== undefined) await channel.cancel(this.#consumerTag);
    } catch {
      // The channel went away meanwhile: #lose has handled it.
    }
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

  /** Closing the connection makes the broker requeue every unacked delivery. */
  async #release(): Promise<void> {
    this.#released = true;
    this.#live = false;
    this.#outstanding = 0;
    this.#wakeIdle();
    const connection = this.#connection;
    this.#connection = undefined;
    await closeConnection(connection, this.#channel);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (error === null && this.#closing && !this.#closeDone) {
      // RetryingSource auto-destroys once its reader has had everything, which is before the acks of what it
      // read are in: the graceful close releases the connection when they are (bounded by closeTimeoutMs).
      callback();
      return;
    }
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
