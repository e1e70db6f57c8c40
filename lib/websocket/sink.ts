import { Writable } from 'node:stream';
import WebSocket from 'ws';
import { ErrorCodes, ManifoldError, describe, isRetryable, redactUrl, toError } from '../core/errors.js';
import { toMessage, type Message, type MessageLike } from '../core/message.js';
import { resolveRetry, type FactoryContext } from '../core/retry.js';
import { RetryingSink } from '../core/retrying-sink.js';
import { Heartbeat, closeInfo, closeSocket, connect, connectTarget, lostError, namedError, type Attempt, type CloseInfo, type ConnectTarget } from './connection.js';
import { resolveWebSocketOptions, websocketSinkOptions, type WebSocketSinkOpenInfo, type WebSocketSinkOptions } from './options.js';

export type { WebSocketSinkOpenInfo, WebSocketSinkOptions } from './options.js';

const WHERE = 'websocketSink';

interface Settings {
  target: ConnectTarget;
  onOpen: WebSocketSinkOptions['onOpen'];
  binary: boolean;
  maxBufferedBytes: number;
  maxInFlight: number;
  heartbeat: { intervalMs: number; timeoutMs: number };
  closeTimeoutMs: number;
  /** With retries off, every error reaches the user as it is: it must name the URL itself. */
  retriesOff: boolean;
}

/**
 * Sends each message as one WebSocket message and acks it when `ws.send`'s
 * callback fires (the frame was handed to the operating system). Honours
 * `bufferedAmount` for backpressure: above `maxBufferedBytes` the sink holds
 * its write callback until the socket drains.
 *
 * Built on the core `retryingSink`: when the connection is lost it reconnects
 * with jittered backoff and re-sends, in order, every message that had not
 * been acked, so at-least-once holds for what was not yet handed to the
 * kernel. (Bytes the kernel had accepted when the peer vanished are gone:
 * WebSocket has no delivery receipts.) After the retry budget the sink fails
 * with an error naming the URL (password hidden) and the last cause, and nacks
 * what it could not send. `end()` waits for every send, then closes with code 1000.
 *
 * Events: `'open'` ({@link WebSocketSinkOpenInfo}), `'ready'` (on every (re)connect), `'reconnect'` (core
 * `RetryEvent`; the error names the server's close code and reason), `'disconnect'` (`{ connectionId, code, reason }`).
 *
 * @example
 * ```ts
 * await pipeline(kafkaSource({ topic: 'orders' }), websocketSink({ url: 'wss://hooks.example.com/in', messageType: 'text' }));
 * ```
 */
export function websocketSink(options: WebSocketSinkOptions): WebSocketSink {
  return new WebSocketSink(options);
}

export class WebSocketSink extends RetryingSink {
  readonly #label: string;

  constructor(options: WebSocketSinkOptions) {
    const o = resolveWebSocketOptions(websocketSinkOptions, options);
    const label = redactUrl(o.url);
    const settings: Settings = {
      // The sink does not read what the server sends, but ws still assembles each message: cap it as the source's default does.
      target: connectTarget(WHERE, o, 16 * 1024 * 1024),
      onOpen: o.onOpen,
      binary: o.messageType === 'binary',
      maxBufferedBytes: o.maxBufferedBytes,
      maxInFlight: o.maxInFlight,
      heartbeat: { intervalMs: o.heartbeatIntervalMs, timeoutMs: o.heartbeatTimeoutMs },
      closeTimeoutMs: o.closeTimeoutMs,
      retriesOff: resolveRetry(WHERE, o.retry).retries === 0,
    };
    super((context) => new WebSocketConnectionSink(settings, context), {
      retry: o.retry === false ? false : { ...o.retry },
      what: `${WHERE}: sending to ${label}`,
      forwardEvents: ['open', 'disconnect'],
      highWaterMark: o.highWaterMark,
      ...(o.signal ? { signal: o.signal } : {}),
    });
    this.#label = label;
  }

  /** The URL written to, with any password hidden. */
  get url(): string {
    return this.#label;
  }

  /** Bytes queued in the current socket and not yet handed to the kernel (0 while reconnecting). */
  get bufferedAmount(): number {
    const inner = this.inner;
    return inner instanceof WebSocketConnectionSink ? inner.bufferedAmount : 0;
  }
}

/**
 * One connection's worth of sink: connects in `_construct`, fails (for the
 * retrying outer sink to replace it) when the connection is lost. Not exported
 * from the package.
 */
export class WebSocketConnectionSink extends Writable {
  readonly #s: Settings;
  readonly #id: number;
  readonly #signal: AbortSignal;
  #ws: WebSocket | undefined;
  #heartbeat: Heartbeat | undefined;
  /** Messages given to ws whose send callback has not fired. */
  readonly #inFlight = new Set<Message>();
  /** A write callback held back while the socket's buffer is above the limit. */
  #held: (() => void) | undefined;
  /** Called when the last in-flight send completes (for _final). */
  #idle: (() => void) | undefined;
  #ending = false;

  constructor(settings: Settings, context: FactoryContext) {
    // The outer sink buffers; this one holds a single write while the socket drains.
    super({ objectMode: true, highWaterMark: 1 });
    this.#s = settings;
    this.#id = context.attempt;
    this.#signal = context.signal;
  }

  /** Bytes queued in the socket and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.#ws?.bufferedAmount ?? 0;
  }

  #named(error: Error): Error {
    return !isRetryable(error) || this.#s.retriesOff ? namedError(WHERE, this.#s.target.label, error) : error;
  }

  override _construct(callback: (error?: Error | null) => void): void {
    let attempt: Attempt;
    try {
      attempt = connect(this.#s.target, this.#signal);
    } catch (error) {
      // A certificate file or the token's variable could not be read: not retried.
      callback(this.#named(toError(error)));
      return;
    }
    const ws = attempt.ws;
    this.#ws = ws;
    let cause: Error | undefined;
    let established = false;
    let closed: CloseInfo | undefined;
    ws.on('error', (error: Error) => {
      cause ??= error;
    });
    ws.once('close', (code: number, reason: Buffer) => {
      closed = { code, reason: reason.toString() };
      this.#heartbeat?.stop();
      // Before it is established, a failure is reported once, through the attempt's promise.
      if (!established || this.#ending || this.destroyed) return;
      this.emit('disconnect', { connectionId: this.#id, code, reason: reason.toString() });
      const error = lostError(WHERE, this.#s.target.label, code, reason.toString(), cause);
      this.#failInFlight(error);
      this.destroy(this.#named(error));
    });
    // Closed before it was established: the server's close code and reason, when it sent them.
    const closedError = async (fallback: string, why: Error | undefined): Promise<ManifoldError> => {
      const info = await closeInfo(ws, closed);
      return lostError(WHERE, this.#s.target.label, info?.code ?? 1006, info?.reason || fallback, why);
    };
    const open = async (): Promise<void> => {
      await attempt.opened;
      const info: WebSocketSinkOpenInfo = { connectionId: this.#id, url: this.#s.target.label, protocol: ws.protocol };
      if (this.#s.onOpen) {
        try {
          await this.#s.onOpen(ws, info);
        } catch (error) {
          const err = toError(error);
          if (ws.readyState !== WebSocket.OPEN) throw await closedError('', err);
          throw new ManifoldError(`${WHERE}: options.onOpen failed on connection ${this.#id}: ${describe(err)}`, {
            code: err instanceof ManifoldError ? err.code : ErrorCodes.CONNECTION,
            retryable: isRetryable(err),
            cause: err,
          });
        }
      }
      if (ws.readyState !== WebSocket.OPEN) throw await closedError('closed while onOpen ran', cause);
      if (this.#s.heartbeat.intervalMs > 0) {
        this.#heartbeat = new Heartbeat(ws, this.#s.heartbeat.intervalMs, this.#s.heartbeat.timeoutMs, (error) => {
          cause = error;
          ws.terminate();
        });
      }
      established = true;
      this.emit('open', info);
      // Tells the retrying sink this connection is healthy: its retry budget starts afresh.
      this.emit('ready');
    };
    open().then(
      () => callback(),
      (error: unknown) => {
        ws.terminate();
        callback(this.#named(toError(error)));
      },
    );
  }

  override _write(chunk: MessageLike, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    let message: Message;
    try {
      message = toMessage(chunk);
    } catch (error) {
      callback(toError(error));
      return;
    }
    const ws = this.#ws!;
    this.#inFlight.add(message);
    ws.send(message.data, { binary: this.#s.binary }, (error?: Error) => {
      if (!this.#inFlight.delete(message)) return;
      if (error) message.nack(new ManifoldError(`${WHERE}: send failed: ${describe(error)}`, { code: ErrorCodes.CONNECTION, retryable: true, cause: error }));
      else message.ack();
      // bufferedAmount has shrunk by this frame before its callback runs: the right moment to let writes in again.
      this.#release();
      if (this.#inFlight.size === 0) this.#idle?.();
    });
    if (this.#full()) this.#held = () => callback();
    else callback();
  }

  #full(): boolean {
    return this.#inFlight.size >= this.#s.maxInFlight || (this.#ws?.bufferedAmount ?? 0) > this.#s.maxBufferedBytes;
  }

  #release(): void {
    const held = this.#held;
    if (held && !this.#full()) {
      this.#held = undefined;
      held();
    }
  }

  /** Nacks (retryably) what the lost connection had not sent: the retrying sink re-sends it on the next one. */
  #failInFlight(error: Error): void {
    for (const message of this.#inFlight) message.nack(error);
    this.#inFlight.clear();
    const held = this.#held;
    this.#held = undefined;
    held?.();
  }

  override _final(callback: (error?: Error | null) => void): void {
    const ws = this.#ws!;
    const finish = (): void => {
      this.#ending = true;
      this.#heartbeat?.stop();
      closeSocket(ws, this.#s.closeTimeoutMs).then(() => callback());
    };
    if (this.#inFlight.size === 0) finish();
    else this.#idle = finish;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#heartbeat?.stop();
    this.#ws?.terminate();
    this.#failInFlight(
      error ?? new ManifoldError(`${WHERE}: the connection was replaced before the send completed`, { code: ErrorCodes.CONNECTION, retryable: true }),
    );
    callback(error);
  }
}
