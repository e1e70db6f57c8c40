import { Readable, addAbortSignal } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { ErrorCodes, ManifoldError, describe, isRetryable, redactUrl, toError } from '../core/errors.js';
import { emitToFlowing } from '../core/hand-over.js';
import type { Message } from '../core/message.js';
import { backoffDelay, finalError, resolveRetry, withRetry, type ResolvedRetry, type RetryEvent } from '../core/retry.js';
import { Heartbeat, closeInfo, closeSocket, connect, connectTarget, isProtocolLoss, lostError, namedError, type CloseInfo, type ConnectTarget } from './connection.js';
import { resolveWebSocketOptions, websocketSourceOptions, type OpenReason, type WebSocketOpenInfo, type WebSocketSourceOptions } from './options.js';

export type { OpenReason, WebSocketOpenInfo, WebSocketSourceOptions } from './options.js';

const WHERE = 'websocketSource';

const noop = (): void => {};

/**
 * A connection open this long counts as healthy whatever ends it: its loss starts a new outage with a fresh
 * retry budget. A shorter one counts as healthy only when it delivered a message and did not end in a
 * protocol error (see #onClose).
 */
const STABLE_MS = 10_000;

/** How the current connection was lost: the error, and whether it had been healthy (see STABLE_MS). */
interface Loss {
  error: Error;
  healthy: boolean;
}

/**
 * Reads a WebSocket feed: one Message per WebSocket message (text or binary,
 * as bytes), with `meta.connectionId`, `meta.receivedAt` (ms since the epoch,
 * also `timestamp`) and `meta.binary`. Acks are no-ops: a WebSocket server
 * cannot redeliver, which is why the source works hard not to miss anything.
 *
 * - A connection that closes or errors, for any reason, is re-made with
 *   jittered backoff (core retry); `onOpen` runs on each new connection. When
 *   no connection can be made within the retry budget, the stream fails with
 *   `MANIFOLD_ERR_RETRIES_EXHAUSTED` naming the URL (password hidden) and the
 *   last cause. HTTP 401/403/404 on the upgrade are fatal at once. A
 *   connection that dies before it was healthy (a frame above
 *   `maxPayloadBytes`, a protocol error, a close before any message) is a
 *   failed attempt of the same outage: the delay keeps growing.
 * - `reconnectEveryMs` swaps connections make-before-break.
 * - Heartbeats detect a peer that stopped answering without closing.
 * - Backpressure: when the stream's buffer is full (`highWaterMark` messages,
 *   or `maxInFlightBytes` of payload) the sockets are paused (TCP flow control
 *   then slows the server) and resumed when it drains.
 * - `close()` closes the sockets gracefully, emits what they delivered until
 *   then, and ends. `destroy()` terminates them.
 *
 * Events: `'open'` ({@link WebSocketOpenInfo}), `'ready'` (`{ connectionId, reason }`:
 * a connection is open, `onOpen` done, and reading; on every (re)connect), `'reconnect'` (core
 * `RetryEvent`: attempt, delayMs, error; the error names the server's close code and reason), `'swap'` (`{ from, to }`
 * connection ids), `'disconnect'` (`{ connectionId, code, reason, expected }`).
 *
 * @example
 * ```ts
 * const source = websocketSource({
 *   url: 'wss://feed.example.com/v1',
 *   onOpen: (ws) => ws.send(JSON.stringify({ subscribe: ['BTC-USD'] })),
 *   reconnectEveryMs: 3_600_000,
 * });
 * await pipeline(source, s3Sink({ bucket: 'ticks' }));
 * ```
 */
export function websocketSource(options: WebSocketSourceOptions): WebSocketSource {
  return new WebSocketSource(options);
}

/** `meta` of a WebSocket message. */
interface WebSocketMeta {
  connectionId: number;
  receivedAt: number;
  binary: boolean;
}

type ConnState = 'connecting' | 'current' | 'retiring' | 'closed';

interface Conn {
  id: number;
  ws: WebSocket;
  state: ConnState;
  /** The first error the socket reported, or why we terminated it. */
  error: Error | undefined;
  heartbeat: Heartbeat | undefined;
  swapTimer: NodeJS.Timeout | undefined;
  retireTimer: NodeJS.Timeout | undefined;
  /** Set on 'open': only then does the socket exist, so only then can it be paused or resumed. */
  opened: boolean;
  /** The close code and reason, once the socket closed. */
  closed: CloseInfo | undefined;
  /** When it was adopted (ms since the epoch), 0 before. */
  adoptedAt: number;
  /** Whether it delivered a message. */
  delivered: boolean;
}

function pauseSocket(conn: Conn): void {
  if (conn.opened && conn.ws.readyState !== WebSocket.CLOSED) conn.ws.pause();
}

function resumeSocket(conn: Conn): void {
  if (conn.opened && conn.ws.isPaused && conn.ws.readyState !== WebSocket.CLOSED) conn.ws.resume();
}

export class WebSocketSource extends Readable {
  /** It cannot deliver again what it is nacked: flow() counts a message it gives up on as lost. */
  readonly redelivers = false;
  readonly #target: ConnectTarget;
  readonly #onOpen: WebSocketSourceOptions['onOpen'];
  readonly #reconnectEveryMs: number;
  readonly #heartbeat: { intervalMs: number; timeoutMs: number };
  readonly #closeTimeoutMs: number;
  readonly #maxInFlightBytes: number;
  readonly #retry: ResolvedRetry;
  readonly #what: string;
  readonly #abort = new AbortController();
  readonly #conns = new Set<Conn>();
  #current: Conn | undefined;
  #nextId = 0;
  #started = false;
  #paused = false;
  #closing = false;
  /** No message is pushed once set: push(null) was called or the stream is destroyed. */
  #ended = false;
  #closed: Promise<void> | undefined;
  /** Resolves the run loop's wait for the current connection to be lost. */
  #onLoss: ((loss: Loss | undefined) => void) | undefined;
  /** Payload bytes of the messages in the stream's buffer (pushed, not yet read). */
  #bufferedBytes = 0;
  #swapping = false;
  /** Messages delivered by the socket read now being handled (ws emits a read's messages synchronously). */
  #burst = 0;
  #maxBurst = 0;
  /** Arrival time of the current read's messages (ms since the epoch). */
  #burstAt = 0;
  /** The meta of the current read's messages; undefined between reads. */
  #meta: Readonly<WebSocketMeta> | undefined;
  /** Pause at this many buffered messages, resume at that many: a burst (capped at half the mark) and two below the mark. */
  #pauseAt = 0;
  #resumeAt = 0;
  readonly #endBurst = (): void => {
    if (this.#burst > this.#maxBurst) {
      this.#maxBurst = this.#burst;
      const allowance = Math.min(this.#maxBurst, Math.floor(this.readableHighWaterMark / 2));
      this.#pauseAt = this.readableHighWaterMark - allowance;
      this.#resumeAt = Math.max(0, this.readableHighWaterMark - 2 * allowance);
    }
    this.#burst = 0;
    this.#meta = undefined;
  };
  /** The current connection died while a swap was under way: the swap takes over, or reports this loss. */
  #lossDuringSwap: Loss | undefined;

  constructor(options: WebSocketSourceOptions) {
    const o = resolveWebSocketOptions(websocketSourceOptions, options);
    super({ objectMode: true, highWaterMark: o.highWaterMark });
    this.#target = connectTarget(WHERE, o, o.maxPayloadBytes);
    this.#onOpen = o.onOpen;
    this.#reconnectEveryMs = o.reconnectEveryMs ?? 0;
    this.#heartbeat = { intervalMs: o.heartbeatIntervalMs, timeoutMs: o.heartbeatTimeoutMs };
    this.#closeTimeoutMs = o.closeTimeoutMs;
    this.#maxInFlightBytes = o.maxInFlightBytes;
    this.#retry = resolveRetry(WHERE, o.retry);
    this.#pauseAt = this.readableHighWaterMark;
    this.#resumeAt = this.readableHighWaterMark - 1;
    this.#what = `${WHERE}: connecting to ${this.#target.label}`;
    if (o.signal) addAbortSignal(o.signal, this);
  }

  /** The URL read, with any password hidden. */
  get url(): string {
    return this.#target.label;
  }

  /** Open sockets (2 during a swap). */
  get connections(): number {
    return this.#conns.size;
  }

  /** Whether the sockets are paused because the stream's buffer is full. */
  get socketsPaused(): boolean {
    return this.#paused;
  }

  /** Payload bytes held in the stream's buffer, not yet read (bounded by `maxInFlightBytes`, plus what ws had read when the socket paused). */
  get bufferedBytes(): number {
    return this.#bufferedBytes;
  }

  override _read(): void {
    if (!this.#started) {
      this.#started = true;
      this.#run().then(
        () => {},
        (error: unknown) => {
          // Aborting the connect or the backoff wait is how close() and destroy() stop the loop: not a failure.
          if (!this.#closing && !this.destroyed) this.destroy(toError(error));
        },
      );
      return;
    }
    this.#maybeResume();
  }

  // Consumption is seen here as well as in _read: Node calls _read only once per push, and we resume at a
  // low-water mark rather than at the first free slot (see #onMessage).
  override read(size?: number): Message | null {
    const message = super.read(size) as Message | null;
    // Every message leaves the buffer through here (flowing mode, pipe() and async iteration call read() too);
    // one handed to a 'data' listener without being buffered was never counted (see #onMessage).
    if (message !== null) this.#bufferedBytes = Math.max(0, this.#bufferedBytes - message.data.length);
    if (this.#paused) this.#maybeResume();
    return message;
  }

  #maybeResume(): void {
    if (!this.#paused) return;
    // Resume at half the byte bound, so a stream of large messages does not pause and resume on each one.
    if (this.#bufferedBytes > this.#maxInFlightBytes / 2) return;
    // While closing only the byte bound holds the sockets: the close handshake has to be read.
    if (!this.#closing && this.readableLength > this.#resumeAt) return;
    this.#paused = false;
    for (const conn of this.#conns) {
      resumeSocket(conn);
      conn.heartbeat?.resume();
    }
  }

  #pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    for (const conn of this.#conns) {
      pauseSocket(conn);
      // A paused socket cannot read the pong: not hearing it would prove nothing.
      conn.heartbeat?.suspend();
    }
  }

  async #run(): Promise<void> {
    let reason: OpenReason = 'connect';
    let lost: Loss | undefined;
    // Connections of this outage that died before they were healthy (the one a healthy loss ended counts as 1).
    let failures = 0;
    for (;;) {
      if (lost) {
        if (this.#retry.retries === 0) throw lost.error;
        // A healthy connection lost starts a new outage with a fresh budget, after one short jittered wait so a
        // server that drops a working connection now and then is back at once. One that died before it was
        // healthy (an oversize frame, a protocol error, a close before any message) is one more failed attempt of
        // the same outage: the delay grows and the budget runs down, as for a refused connection.
        failures = lost.healthy ? 1 : failures + 1;
        if (failures > this.#retry.retries) throw finalError(this.#what, lost.error, failures);
        const delayMs = backoffDelay(this.#retry, failures);
        this.emit('reconnect', { attempt: failures, delayMs, error: lost.error } satisfies RetryEvent);
        await sleep(delayMs, undefined, { signal: this.#abort.signal });
      }
      const offset = failures;
      // The attempts of this outage so far are spent: the next delays carry on growing from there.
      const retry: ResolvedRetry =
        failures === 0
          ? this.#retry
          : {
              ...this.#retry,
              retries: this.#retry.retries - failures,
              // With retries: Infinity, factor ** failures may reach Infinity, and 0 * Infinity is NaN.
              minTimeoutMs: this.#retry.minTimeoutMs === 0 ? 0 : Math.min(this.#retry.maxTimeoutMs, this.#retry.minTimeoutMs * this.#retry.factor ** failures),
            };
      let conn: Conn;
      let tries = 0;
      try {
        conn = await withRetry(
          this.#what,
          () => {
            tries += 1;
            return this.#open(reason);
          },
          retry,
          (event) => {
            this.emit('reconnect', { ...event, attempt: event.attempt + offset } satisfies RetryEvent);
          },
          this.#abort.signal,
        );
      } catch (error) {
        const err = toError(error);
        const last = err instanceof ManifoldError && err.cause instanceof Error ? err.cause : undefined;
        // withRetry counted only its own attempts: name the whole outage's.
        if (offset > 0 && last && isRetryable(last) && (err as ManifoldError).code !== ErrorCodes.ABORTED) throw finalError(this.#what, last, offset + tries);
        throw namedError(WHERE, this.#target.label, err);
      }
      // The attempts that failed before this one belong to the outage too: should this connection die before it is
      // healthy, the next delay follows on from theirs.
      failures = offset + tries - 1;
      const loss = new Promise<Loss | undefined>((resolve) => {
        this.#onLoss = resolve;
      });
      this.#adopt(conn);
      // As the retrying sources do: every (re)connection is announced, and monitoring tells connected from reconnecting by it.
      this.emit('ready', { connectionId: conn.id, reason });
      lost = await loss;
      this.#onLoss = undefined;
      if (this.#closing || this.destroyed || !lost) return;
      reason = 'reconnect';
    }
  }

  /** One attempt: connect, run onOpen, and return the connection (still 'connecting' until adopted). */
  async #open(reason: OpenReason): Promise<Conn> {
    if (this.#closing || this.destroyed) throw new ManifoldError(`${WHERE}: closed`, { code: ErrorCodes.ABORTED });
    const attempt = connect(this.#target, this.#abort.signal);
    const { ws } = attempt;
    const conn: Conn = {
      id: ++this.#nextId,
      ws,
      state: 'connecting',
      error: undefined,
      heartbeat: undefined,
      swapTimer: undefined,
      retireTimer: undefined,
      opened: false,
      closed: undefined,
      adoptedAt: 0,
      delivered: false,
    };
    this.#conns.add(conn);
    ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => this.#onMessage(conn, data, isBinary));
    ws.on('error', (error: Error) => {
      conn.error ??= error;
    });
    ws.once('close', (code: number, reason: Buffer) => {
      conn.closed = { code, reason: reason.toString() };
      this.#onClose(conn, code, reason.toString());
    });
    try {
      await attempt.opened;
      conn.opened = true;
      // A connection opened while the stream is full starts paused (ws cannot pause a connecting socket).
      if (this.#paused) pauseSocket(conn);
      const info: WebSocketOpenInfo = { connectionId: conn.id, reason, url: this.#target.label, protocol: ws.protocol };
      if (this.#onOpen) {
        try {
          await this.#onOpen(ws, info);
        } catch (error) {
          // A send on a socket that died meanwhile is the connection's failure, not the callback's.
          if (ws.readyState !== WebSocket.OPEN) throw await this.#closedError(conn, '', toError(error));
          const err = toError(error);
          throw new ManifoldError(`${WHERE}: options.onOpen failed on connection ${conn.id}: ${describe(err)}`, {
            code: err instanceof ManifoldError ? err.code : ErrorCodes.CONNECTION,
            retryable: isRetryable(err),
            cause: err,
          });
        }
      }
      if (ws.readyState !== WebSocket.OPEN) throw await this.#closedError(conn, 'closed while onOpen ran', conn.error);
      if (this.#closing || this.destroyed) throw new ManifoldError(`${WHERE}: closed`, { code: ErrorCodes.ABORTED });
      this.emit('open', info);
      return conn;
    } catch (error) {
      ws.terminate();
      throw error;
    }
  }

  /** The error of a connection that closed before it was adopted, with the server's close code and reason when it sent them. */
  async #closedError(conn: Conn, fallback: string, cause: Error | undefined): Promise<ManifoldError> {
    const closed = await closeInfo(conn.ws, conn.closed);
    return lostError(WHERE, this.#target.label, closed?.code ?? 1006, closed?.reason || fallback, cause);
  }

  #onMessage(conn: Conn, data: WebSocket.RawData, isBinary: boolean): void {
    if (this.#ended) return;
    let meta = this.#meta;
    // Per socket read, not per message: ws emits a read's messages synchronously, and per-message bookkeeping
    // was a tenth of the cost of a message.
    if (meta === undefined || meta.connectionId !== conn.id || meta.binary !== isBinary) meta = this.#startRead(conn, isBinary);
    this.#burst += 1;
    const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    // A WebSocket server cannot redeliver, so acks are no-ops; a literal of fixed shape is the cheapest Message.
    const message: Message = { data: bytes, timestamp: meta.receivedAt, meta, ack: noop, nack: noop };
    // A consumer that keeps up gets the message straight away (see emitToFlowing); one that falls behind stops the
    // flow, and the next message takes push() and the buffer.
    if (emitToFlowing(this, message)) return;
    const before = this.readableLength;
    const pushed = this.push(message);
    // Counted only when it was buffered: push() hands a message straight to a flowing consumer when the buffer is empty.
    if (this.readableLength > before) this.#bufferedBytes += bytes.length;
    // Pausing stops the socket, not the frames ws already read: the rest of a 64 KiB read still arrives (and with
    // permessage-deflate, inflates: each message up to maxPayloadBytes). Pausing a burst's worth early (and
    // resuming two bursts below the mark) keeps the buffer within the high-water mark.
    if (this.#bufferedBytes >= this.#maxInFlightBytes) this.#pause();
    else if (!this.#closing && (!pushed || this.readableLength >= this.#pauseAt)) this.#pause();
  }

  /** The first message of a socket read (or of another connection's, or the other kind, within one): the shared meta. */
  #startRead(conn: Conn, isBinary: boolean): Readonly<WebSocketMeta> {
    if (this.#burst === 0) {
      // One clock read per socket read: its messages arrived together, and Date.now() costs as much as the rest.
      this.#burstAt = Date.now();
      queueMicrotask(this.#endBurst);
    }
    conn.delivered = true;
    if (conn.heartbeat) conn.heartbeat.seenSincePing = true;
    // Shared by the messages of one read (meta is read-only): one allocation per read, not per message.
    return (this.#meta = Object.freeze({ connectionId: conn.id, receivedAt: this.#burstAt, binary: isBinary }));
  }

  /** Makes `conn` the current connection, and retires the one it replaces. */
  #adopt(conn: Conn): void {
    const previous = this.#current;
    conn.state = 'current';
    conn.adoptedAt = Date.now();
    this.#current = conn;
    if (this.#heartbeat.intervalMs > 0) {
      conn.heartbeat = new Heartbeat(conn.ws, this.#heartbeat.intervalMs, this.#heartbeat.timeoutMs, (error) => {
        conn.error = error;
        conn.ws.terminate();
      });
      if (this.#paused) conn.heartbeat.suspend();
    }
    if (this.#reconnectEveryMs > 0) conn.swapTimer = setTimeout(() => void this.#swap(), this.#reconnectEveryMs);
    if (previous && previous !== conn && previous.state === 'current') this.#retire(previous);
  }

  /** Closes a replaced connection gracefully, still reading what it delivers until the server's close frame. */
  #retire(conn: Conn): void {
    conn.state = 'retiring';
    conn.heartbeat?.stop();
    clearTimeout(conn.swapTimer);
    if (conn.ws.readyState === WebSocket.OPEN) conn.ws.close(1000, 'swap');
    const arm = (): void => {
      conn.retireTimer = setTimeout(() => {
        // A paused socket cannot read the rest of its data nor the close frame; terminating it would drop that data.
        if (this.#paused) arm();
        else conn.ws.terminate();
      }, this.#closeTimeoutMs);
    };
    arm();
  }

  async #swap(): Promise<void> {
    const from = this.#current;
    if (this.#swapping || this.#closing || this.destroyed || !from) return;
    this.#swapping = true;
    try {
      const conn = await withRetry(this.#what, () => this.#open('swap'), this.#retry, (event) => this.emit('reconnect', event), this.#abort.signal);
      this.#lossDuringSwap = undefined;
      this.#adopt(conn);
      this.emit('swap', { from: from.id, to: conn.id });
    } catch (error) {
      if (this.#closing || this.destroyed) return;
      const loss = this.#lossDuringSwap;
      this.#lossDuringSwap = undefined;
      if (loss) {
        this.#onLoss?.(loss);
      } else if (this.#current === from) {
        // The old connection still works: keep it, report why the swap failed, and try again later.
        this.emit('swapfailed', { connectionId: from.id, error: toError(error) });
        from.swapTimer = setTimeout(() => void this.#swap(), this.#reconnectEveryMs);
      }
    } finally {
      this.#swapping = false;
    }
  }

  #onClose(conn: Conn, code: number, reason: string): void {
    const previous = conn.state;
    conn.state = 'closed';
    this.#conns.delete(conn);
    conn.heartbeat?.stop();
    clearTimeout(conn.swapTimer);
    clearTimeout(conn.retireTimer);
    if (previous === 'connecting') return;
    const expected = previous === 'retiring' || this.#closing || this.destroyed;
    this.emit('disconnect', { connectionId: conn.id, code, reason, expected });
    if (previous !== 'current' || this.#current !== conn) return;
    this.#current = undefined;
    if (this.#closing || this.destroyed) {
      this.#onLoss?.(undefined);
      return;
    }
    const error = lostError(WHERE, this.#target.label, code, reason, conn.error);
    // A connection that died at its first message (above maxPayloadBytes, say) did not prove the server works:
    // resetting the backoff for it would reconnect a few times a second for ever.
    const healthy = Date.now() - conn.adoptedAt >= STABLE_MS || (conn.delivered && !isProtocolLoss(conn.error, code));
    const loss: Loss = { error, healthy };
    if (this.#swapping) this.#lossDuringSwap = loss;
    else this.#onLoss?.(loss);
  }

  /**
   * Graceful stop: no new connection is made, every socket is closed with a
   * close frame (terminated after `closeTimeoutMs`), the messages they
   * delivered until then are emitted, and the stream ends. Idempotent.
   * Resolves once the stream has ended, i.e. the consumer has read what was
   * buffered (there are no acks to wait for: a WebSocket server cannot
   * redeliver), or when it is destroyed.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      if (this.destroyed) return;
      this.#closing = true;
      this.#abort.abort(new ManifoldError(`${WHERE}: closed`, { code: ErrorCodes.ABORTED }));
      const conns = [...this.#conns];
      // The close handshake has to be read: resume even when the consumer is behind, up to maxInFlightBytes (a server
      // that keeps sending is then held back again, and terminated after closeTimeoutMs).
      const overBytes = this.#bufferedBytes > this.#maxInFlightBytes / 2;
      if (!overBytes) this.#paused = false;
      for (const conn of conns) {
        conn.heartbeat?.stop();
        clearTimeout(conn.swapTimer);
        clearTimeout(conn.retireTimer);
        if (!overBytes) resumeSocket(conn);
      }
      await Promise.all(conns.map((conn) => closeSocket(conn.ws, this.#closeTimeoutMs)));
      if (!this.#ended && !this.destroyed) {
        this.#ended = true;
        this.push(null);
      }
      // Resolving before 'end' would let a caller destroy an ended-but-not-drained stream, which leaves a
      // pipeline() over it unsettled for ever (Node 22). So, as the core sources do, wait for the end.
      if (!this.readableEnded && !this.destroyed) {
        await new Promise<void>((resolve) => {
          this.once('end', resolve);
          this.once('close', resolve);
        });
      }
    })();
    return this.#closed;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#ended = true;
    this.#abort.abort(error ?? new ManifoldError(`${WHERE}: destroyed`, { code: ErrorCodes.ABORTED }));
    for (const conn of this.#conns) {
      conn.heartbeat?.stop();
      clearTimeout(conn.swapTimer);
      clearTimeout(conn.retireTimer);
      conn.ws.terminate();
    }
    this.#onLoss?.(undefined);
    callback(error);
  }
}
