/**
 * rabbitmqSink: publishes on a confirm channel and acks each message when the
 * broker confirms it; reconnects and re-publishes what was not confirmed.
 */
import { Writable } from 'node:stream';
import type { ChannelModel, ConfirmChannel, Message as AmqpMessage, Options } from 'amqplib';
import { ErrorCodes, ManifoldError, describe, redactUrl, toError } from '../core/errors.js';
import { toMessage, type Message, type MessageLike } from '../core/message.js';
import type { ResolvedOptions } from '../core/options.js';
import { RetryingSink, takeMessages, type TakesMessages } from '../core/retrying-sink.js';
import { amqpError, closeConnection, connectionLostError, headersFromAmqp, openConnection, whenClosed } from './connection.js';
import { checkConnection, rabbitmqSinkOptions, type QueueOptions, type RabbitmqSinkOptions, type SinkAssert } from './options.js';

export type { RabbitmqPublishProperties, RabbitmqSinkAssert, RabbitmqSinkOptions, RabbitmqSinkQueue } from './options.js';

const WHERE = 'rabbitmqSink';

/** Counters of a {@link RabbitmqSink}, over every connection it made. */
export interface RabbitmqSinkStats {
  /** Connections that got ready to publish. */
  connections: number;
  /** Publishes sent, re-publishes after a reconnect included. */
  published: number;
  /** Publishes the broker confirmed (and did not return). */
  confirmed: number;
  /** Publishes returned as unroutable (with `mandatory`). */
  returned: number;
  /** Publishes the broker nacked, or whose confirm was lost with the connection. */
  unconfirmed: number;
  /** Most publishes awaiting a confirm at one time. */
  peakInFlight: number;
  /** Times `publish()` returned false and writes waited for the channel's `'drain'`. */
  drainWaits: number;
}

/** The resolved options, with what derives from several of them filled in. */
type SinkConfig = ResolvedOptions<typeof rabbitmqSinkOptions.specs> & {
  connectionName: string;
  publishOptions: Options.Publish;
  assert: (Exclude<SinkAssert, false> & { queues: Array<{ name: string; options: QueueOptions; routingKey: string }> }) | false;
};

function resolveSinkOptions(options: RabbitmqSinkOptions): SinkConfig {
  const o = rabbitmqSinkOptions.resolve(options);
  checkConnection(WHERE, o);
  // A queue's binding key defaults to the sink's routingKey when one was given, else to every key.
  const bindingKey = (options as Partial<RabbitmqSinkOptions> | undefined)?.routingKey === undefined ? '#' : o.routingKey;
  return {
    ...o,
    connectionName: o.connectionName ?? `manifold ${WHERE} ${o.exchange || '(default exchange)'}`,
    publishOptions: { ...o.properties, persistent: o.persistent, mandatory: o.mandatory },
    assert: o.assert && { ...o.assert, queues: o.assert.queues.map((q) => ({ ...q, routingKey: q.routingKey ?? bindingKey })) },
  };
}

/**
 * Publishes each message to `exchange` on a confirm channel, with routing key
 * `message.key` when set, else `routingKey`; headers become AMQP headers and
 * `timestamp` the AMQP timestamp (seconds). A message is acked when the broker
 * confirms it.
 *
 * - Backpressure: a write waits while `maxInFlight` publishes await confirms,
 *   and while the channel's buffer is full (`publish()` returned false) until `'drain'`.
 * - With `mandatory` (default) a message no queue receives is returned by the
 *   broker and nacked with a `MANIFOLD_ERR_DELIVERY` error naming the exchange
 *   and routing key (also emitted as `'unroutable'`); the sink carries on.
 * - A lost connection is re-made with backoff and every unconfirmed message is
 *   re-published in order: at-least-once, so a message the broker received but
 *   whose confirm was lost arrives twice (at most `maxInFlight` per loss).
 * - `end()` waits for every confirm, then closes the connection.
 * - Wrong credentials and a missing exchange fail the sink without retrying.
 * - `amqps://` is TLS; `tls` gives the CA and client certificate (files are read at
 *   every reconnect), `authMechanism: 'EXTERNAL'` logs in as that certificate. A failed
 *   handshake is `MANIFOLD_ERR_TLS`, naming the host and the reason, and not retried.
 *
 * @example
 * ```ts
 * const sink = rabbitmqSink({ url: 'amqp://guest:guest@localhost', exchange: 'events', routingKey: 'ticks' });
 * await pipeline(stdinSource(), sink);
 * ```
 */
export function rabbitmqSink(options: RabbitmqSinkOptions = {}): RabbitmqSink {
  return new RabbitmqSink(options);
}

/** The stream {@link rabbitmqSink} returns. */
export class RabbitmqSink extends RetryingSink {
  /** It carries message headers: flow() writes dead-letter records here with `x-manifold-dead-letter-*` headers. */
  readonly carriesHeaders = true;
  /**
   * A message's key is its routing key: flow() writes dead-letter records here without the original key (it is in
   * an `x-manifold-dead-letter-key` header), so they go where `routingKey` says and not back to the source queue.
   */
  readonly routesByKey = true;
  /** The exchange published to (`''` is the default exchange). */
  readonly exchange: string;
  readonly #stats: RabbitmqSinkStats;

  constructor(options: RabbitmqSinkOptions = {}) {
    const config = resolveSinkOptions(options);
    const stats: RabbitmqSinkStats = { connections: 0, published: 0, confirmed: 0, returned: 0, unconfirmed: 0, peakInFlight: 0, drainWaits: 0 };
    // The wrapper fills its own defaults for what is undefined.
    const outer: ConstructorParameters<typeof RetryingSink>[1] = {
      what: `${WHERE}: publishing to exchange "${config.exchange}" at ${redactUrl(config.url)}`,
      forwardEvents: ['unroutable', 'blocked', 'unblocked'],
      retry: config.retry,
      signal: config.signal,
      highWaterMark: config.highWaterMark,
    };
    super((context) => new AmqpPublisher(config, stats, context.signal), outer);
    this.exchange = config.exchange;
    this.#stats = stats;
  }

  /** A snapshot of the counters, over every connection. */
  get stats(): RabbitmqSinkStats {
    return { ...this.#stats };
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const inner = this.inner;
    super._destroy(error, (err) => {
      // 'close' once the connection is closed (bounded: see whenClosed), also when destroyed during the connect.
      if (!inner) callback(err);
      else void whenClosed(inner).then(() => callback(err));
    });
  }
}

/** A publish awaiting its confirm: a node of the publisher's list of them, in publish order. */
class Flight {
  returned: { replyCode: number; replyText: string } | undefined = undefined;
  /** Its number among the channel's publishes, from 1: the delivery tag of its confirm. 0 until it is published. */
  tag = 0;
  /** Off the list: confirmed, or nacked when the channel went away (a late callback then does nothing). */
  settled = false;
  prev: Flight | undefined = undefined;
  next: Flight | undefined = undefined;
  constructor(
    readonly message: Message,
    readonly routingKey: string,
  ) {}
}

/**
 * The publishes awaiting confirms, oldest first: a doubly linked list through the flights themselves, so
 * tracking one costs no hashing (a Map keyed by a sequence number cost three lookups a publish) and a confirm,
 * in any order, unlinks its own flight. basic.return walks it oldest first.
 */
class Flights {
  #head: Flight | undefined;
  #tail: Flight | undefined;
  size = 0;

  push(flight: Flight): void {
    flight.prev = this.#tail;
    if (this.#tail) this.#tail.next = flight;
    else this.#head = flight;
    this.#tail = flight;
    this.size += 1;
  }

  /** Unlinks `flight` and marks it settled; false when it already was. */
  remove(flight: Flight): boolean {
    if (flight.settled) return false;
    flight.settled = true;
    const { prev, next } = flight;
    if (prev) prev.next = next;
    else this.#head = next;
    if (next) next.prev = prev;
    else this.#tail = prev;
    flight.prev = flight.next = undefined;
    this.size -= 1;
    return true;
  }

  /** The oldest flight. */
  get first(): Flight | undefined {
    return this.#head;
  }

  /** The first flight, oldest first, for which `match` holds. */
  find(match: (flight: Flight) => boolean): Flight | undefined {
    for (let f = this.#head; f; f = f.next) if (match(f)) return f;
    return undefined;
  }

  /** Removes every flight, oldest first, and returns them. */
  takeAll(): Flight[] {
    const all: Flight[] = [];
    for (let f = this.#head; f; f = f.next) all.push(f);
    for (const f of all) this.remove(f);
    return all;
  }
}

/** The fields of a basic.ack or basic.nack, as amqplib's channel emits them. */
interface ConfirmFields {
  deliveryTag: number;
  multiple: boolean;
}

/**
 * Whether the channel reports every basic.ack and basic.nack as an `'ack'`/`'nack'` event with its delivery tag:
 * amqplib's channels do, and settle their own per-publish callbacks from these events. The events are not in
 * amqplib's documentation, so they are trusted only when the channel listens to them itself; otherwise each
 * publish gets a callback, as documented.
 */
function emitsConfirms(channel: ConfirmChannel): boolean {
  return channel.listenerCount('ack') > 0 && channel.listenerCount('nack') > 0;
}

function sameHeaders(sent: Record<string, string> | undefined, back: Record<string, string> | undefined): boolean {
  const a = Object.keys(sent ?? {});
  const b = Object.keys(back ?? {});
  if (a.length !== b.length) return false;
  return a.every((k) => back?.[k] === sent?.[k]);
}

/**
 * One connection, one confirm channel. Fails (destroys itself) on any loss;
 * RetryingSink replaces it and re-writes what it did not confirm. Destroyed
 * during the connect (RetryingSink aborts `signal` first), it stops at its next
 * step and closes what it opened.
 */
class AmqpPublisher extends Writable implements TakesMessages {
  readonly #config: SinkConfig;
  readonly #stats: RabbitmqSinkStats;
  readonly #signal: AbortSignal | undefined;
  /** destroy() came while connecting: #open gives up at its next step. */
  #stopping = false;
  /** Destroys the socket of a TCP connect or AMQP handshake in progress (see openConnection). */
  readonly #connectAbort = new AbortController();
  #releasing: Promise<void> | undefined;
  readonly #onAbort = (): void => {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#opened) return;
    // A channel RPC of the connect in flight (channel open, topology) is cut by closing the connection; a TCP
    // connect or handshake by destroying its socket.
    if (this.#connection) void this.#release();
    else this.#connectAbort.abort();
  };
  #connection: ChannelModel | undefined;
  #channel: ConfirmChannel | undefined;
  #opened = false;
  #released = false;
  #channelError: Error | undefined;
  /** Publishes awaiting a confirm, in publish order. */
  readonly #inFlight = new Flights();
  /**
   * Confirms are read from the channel's 'ack'/'nack' events, by delivery tag (see emitsConfirms), not from a
   * callback per publish: a closure and a call through amqplib's list of callbacks less per message.
   */
  #byTag = false;
  /** The delivery tag of the next publish: confirm mode numbers a channel's publishes from 1. */
  #nextTag = 1;
  #drained = true;
  #waiters: Array<() => void> = [];

  constructor(config: SinkConfig, stats: RabbitmqSinkStats, signal: AbortSignal | undefined) {
    super({ objectMode: true, highWaterMark: 16 });
    this.#config = config;
    this.#stats = stats;
    this.#signal = signal;
    signal?.addEventListener('abort', this.#onAbort, { once: true });
    if (signal?.aborted) this.#onAbort();
  }

  override _construct(callback: (error?: Error | null) => void): void {
    if (this.#stopping) {
      callback();
      return;
    }
    this.#open().then(
      () => callback(),
      // A stop is not a failure: the sink is being destroyed anyway.
      (error: unknown) => callback(this.#stopping ? null : toError(error)),
    );
  }

  /** Throws when destroy() came during the connect. */
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
    connection.on('error', () => {});
    connection.on('close', (error?: Error) => this.#lose(error));
    // A broker under a resource alarm stops reading publishes; confirms (and so writes) wait meanwhile.
    connection.on('blocked', (reason: string) => this.emit('blocked', { reason }));
    connection.on('unblocked', () => this.emit('unblocked'));
    try {
      const channel = await connection.createConfirmChannel();
      this.#check();
      channel.on('error', (error: Error) => {
        this.#channelError = error;
      });
      // amqplib closes the channels before it reports the connection's close, which carries the broker's reason
      // (320 CONNECTION_FORCED and its text): a channel closing without an error of its own waits for that.
      channel.on('close', () => queueMicrotask(() => this.#lose(this.#channelError)));
      channel.on('return', (raw: AmqpMessage) => this.#onReturn(raw));
      this.#byTag = emitsConfirms(channel);
      if (this.#byTag) {
        channel.on('ack', (fields: ConfirmFields) => this.#onConfirm(fields, undefined));
        channel.on('nack', (fields: ConfirmFields) => this.#onConfirm(fields, new Error('message nacked')));
      }
      channel.on('drain', () => {
        this.#drained = true;
        this.#wake();
      });
      if (c.assert) {
        if (c.exchange !== '') await channel.assertExchange(c.exchange, c.assert.exchangeType, c.assert.exchangeOptions);
        this.#check();
        for (const q of c.assert.queues) {
          await channel.assertQueue(q.name, q.options);
          this.#check();
          // Every queue is bound to the default exchange by its name already, and binding to it is refused.
          if (c.exchange !== '') await channel.bindQueue(q.name, c.exchange, q.routingKey);
          this.#check();
        }
      } else if (c.exchange !== '') {
        await channel.checkExchange(c.exchange);
        this.#check();
      }
      this.#channel = channel;
    } catch (error) {
      await this.#release();
      if (this.#stopping) throw error;
      throw amqpError(WHERE, `publishing to exchange "${c.exchange}"`, error, { url: c.url, exchange: c.exchange });
    }
    // Destroyed without the signal (RetryingSink replacing it): _destroy, deferred until now, releases the connection.
    if (this.destroyed) return;
    this.#opened = true;
    this.#stats.connections += 1;
    this.emit('ready', { exchange: c.exchange });
  }

  /**
   * basic.return arrives before the confirm of the same publish, but carries no
   * publish sequence number: match it to the oldest unconfirmed publish with the
   * same routing and content. Identical messages route identically, so which of
   * two identical ones is marked does not change the outcome.
   */
  #onReturn(raw: AmqpMessage): void {
    const { exchange, routingKey, replyCode, replyText } = raw.fields as unknown as { exchange: string; routingKey: string; replyCode: number; replyText: string };
    const headers = headersFromAmqp(raw.properties.headers as Record<string, unknown> | undefined);
    if (exchange !== this.#config.exchange) return;
    const flight = this.#inFlight.find(
      (f) => f.returned === undefined && f.routingKey === routingKey && f.message.data.equals(raw.content) && sameHeaders(f.message.headers, headers),
    );
    if (flight) flight.returned = { replyCode, replyText };
  }

  /**
   * A basic.ack or basic.nack read from the channel's events: settles the publish with that delivery tag, or with
   * `multiple` every one up to it (tag 0: all of them). The flights are in publish order, which is tag order, so
   * those confirmed are at the front of the list (bar a confirm that came out of order).
   */
  #onConfirm({ deliveryTag, multiple }: ConfirmFields, error: Error | undefined): void {
    const upTo = multiple && deliveryTag === 0 ? Number.MAX_SAFE_INTEGER : deliveryTag;
    let flight = this.#inFlight.first;
    while (flight !== undefined && flight.tag <= upTo) {
      const next = flight.next;
      if (multiple || flight.tag === deliveryTag) this.#settle(flight, error);
      flight = next;
    }
    this.#wake();
  }

  /** The callback of a publish (when confirms are not read by tag). */
  #confirmed(flight: Flight, error: unknown): void {
    this.#settle(flight, error);
    this.#wake();
  }

  #settle(flight: Flight, error: unknown): void {
    // Already settled: nacked when the channel went away, before amqplib failed its callbacks.
    if (!this.#inFlight.remove(flight)) return;
    const { exchange } = this.#config;
    if (error) {
      this.#stats.unconfirmed += 1;
      // A broker nack (or a confirm lost with the channel) says nothing about the message itself: publish it again.
      flight.message.nack(
        this.#released || /channel closed/i.test(describe(error))
          ? connectionLostError(WHERE, this.#config.url, error)
          : new ManifoldError(`${WHERE}: the broker nacked a publish to exchange "${exchange}" (routing key "${flight.routingKey}")`, {
              code: ErrorCodes.DELIVERY,
              retryable: true,
              cause: error,
              details: { exchange, routingKey: flight.routingKey },
            }),
      );
    } else if (flight.returned) {
      this.#stats.returned += 1;
      const { replyCode, replyText } = flight.returned;
      const target = exchange === '' ? 'the default exchange' : `exchange "${exchange}"`;
      const unroutable = new ManifoldError(
        `${WHERE}: ${target} returned a message with routing key "${flight.routingKey}" as unroutable (${replyCode} ${replyText}): no queue is bound for that key; bind one, or set mandatory: false to let the broker drop such messages`,
        { code: ErrorCodes.DELIVERY, details: { exchange, routingKey: flight.routingKey, replyCode, replyText } },
      );
      this.emit('unroutable', unroutable);
      flight.message.nack(unroutable);
    } else {
      this.#stats.confirmed += 1;
      flight.message.ack();
    }
  }

  #wake(): void {
    if (this.#waiters.length === 0) return;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  #hasRoom(): boolean {
    return this.#drained && this.#inFlight.size < this.#config.maxInFlight;
  }

  #nextWake(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #publish(message: Message): void {
    const channel = this.#channel;
    if (!channel || this.#released) throw connectionLostError(WHERE, this.#config.url);
    const routingKey = message.key ?? this.#config.routingKey;
    const flight = new Flight(message, routingKey);
    this.#inFlight.push(flight);
    let options = this.#config.publishOptions;
    if (message.headers !== undefined || message.timestamp !== undefined) {
      options = { ...options };
      if (message.headers !== undefined) options.headers = message.headers;
      if (message.timestamp !== undefined) options.timestamp = Math.floor(message.timestamp / 1000);
    }
    let ok: boolean;
    try {
      ok = this.#byTag
        ? channel.publish(this.#config.exchange, routingKey, message.data, options)
        : channel.publish(this.#config.exchange, routingKey, message.data, options, (error: unknown) => this.#confirmed(flight, error));
    } catch (error) {
      // The channel closed under us (IllegalOperationError): the message was not sent; RetryingSink sends it again.
      this.#inFlight.remove(flight);
      throw amqpError(WHERE, `publishing to exchange "${this.#config.exchange}"`, error, { url: this.#config.url, exchange: this.#config.exchange });
    }
    // Numbered once published: a publish that threw was not sent, and amqplib did not count it either.
    flight.tag = this.#nextTag++;
    this.#stats.published += 1;
    if (this.#inFlight.size > this.#stats.peakInFlight) this.#stats.peakInFlight = this.#inFlight.size;
    if (!ok) {
      this.#drained = false;
      this.#stats.drainWaits += 1;
    }
  }

  /**
   * Publishes `values` from `from` on, waiting for room before each, then
   * holds the callback while the window is full so the writer feels the
   * backpressure. The common case (room for all) runs synchronously: no
   * promise per write.
   */
  #publishAll(values: readonly MessageLike[], from: number, callback: (error?: Error | null) => void, checked = false): void {
    let i = from;
    try {
      while (i < values.length && this.#hasRoom() && !this.#released) this.#publish(checked ? (values[i++] as Message) : toMessage(values[i++]!));
    } catch (error) {
      callback(toError(error));
      return;
    }
    if (this.#released) {
      callback(connectionLostError(WHERE, this.#config.url));
      return;
    }
    if (i === values.length && this.#hasRoom()) {
      callback();
      return;
    }
    this.#nextWake().then(() => this.#publishAll(values, i, callback, checked));
  }

  /** RetryingSink's direct hand-over (see TakesMessages): what _writev does, once the channel is open. */
  [takeMessages](messages: Message[], callback: (error?: Error | null) => void): boolean {
    if (!this.#opened || this.#released || this.destroyed || this.writableEnded) return false;
    // Handed over by RetryingSink: Messages already (its own entries), no need to check them again.
    this.#publishAll(messages, 0, callback, true);
    return true;
  }

  override _write(chunk: MessageLike, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#publishAll([chunk], 0, callback);
  }

  override _writev(chunks: Array<{ chunk: MessageLike }>, callback: (error?: Error | null) => void): void {
    this.#publishAll(
      chunks.map((c) => c.chunk),
      0,
      callback,
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    const finish = async (): Promise<void> => {
      while (this.#inFlight.size > 0 && !this.#released) await this.#nextWake();
      if (this.#released) throw connectionLostError(WHERE, this.#config.url);
      await this.#release();
    };
    finish().then(
      () => callback(),
      (error: unknown) => callback(toError(error)),
    );
  }

  /** The connection or channel went away. */
  #lose(cause: Error | undefined): void {
    if (!this.#opened || this.#released || this.destroyed) return;
    this.destroy(
      cause
        ? amqpError(WHERE, `publishing to exchange "${this.#config.exchange}"`, cause, { url: this.#config.url, exchange: this.#config.exchange })
        : connectionLostError(WHERE, this.#config.url),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#released = true;
    const lost = connectionLostError(WHERE, this.#config.url, error ?? undefined);
    // Unconfirmed publishes may or may not have reached the broker: report them as retryable.
    for (const flight of this.#inFlight.takeAll()) {
      this.#stats.unconfirmed += 1;
      flight.message.nack(lost);
    }
    this.#wake();
    this.#stopping = true;
    this.#release().then(() => callback(error));
  }

  /** Closes the channel (its confirms are in once _final waited for them) and the connection. Idempotent. */
  #release(): Promise<void> {
    this.#releasing ??= (async () => {
      this.#released = true;
      this.#signal?.removeEventListener('abort', this.#onAbort);
      // Before the channel was ready nothing was published: no need to close it first (and a channel RPC in flight
      // would hold that up); closing the connection cuts the RPC.
      await closeConnection(this.#connection, this.#opened ? this.#channel : undefined);
    })();
    return this.#releasing;
  }
}
