/**
 * What the WebSocket source and sink share at run time (their options are
 * declared in options.ts): one connection attempt whose failure is classified (transient or fatal) for
 * the core retry, a heartbeat, and a bounded graceful close. Not API: only
 * lib/websocket/source.ts and lib/websocket/sink.ts use it.
 */
import { isIP } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import { ErrorCodes, ManifoldError, describe, isRetryable, redactUrl } from '../core/errors.js';
import { tlsConnectOptions, tlsFailure, whenServerAccepts, type TlsOptions } from '../core/tls.js';
import { bearerToken } from './options.js';

/** Where and how to connect, validated. */
export interface ConnectTarget {
  /** The factory, for messages: `websocketSource`. */
  where: string;
  /** The URL as given (credentials included: ws sends them as Basic auth). Never printed. */
  url: string;
  /** The URL with credentials hidden, for messages and events. */
  label: string;
  headers: Record<string, string> | undefined;
  protocols: string[] | undefined;
  connectTimeoutMs: number;
  maxPayloadBytes: number;
  /** Offer permessage-deflate. */
  perMessageDeflate: boolean;
  /** How long ws waits for the peer's close frame after it closed for a protocol error (ws's own default is 30 s). */
  closeTimeoutMs: number;
  /** Whether the URL is `wss://` (or `https://`). */
  secure: boolean;
  /** `host:port` of the URL, for TLS errors. */
  host: string;
  /** TLS settings of a `wss://` URL (files read at every connect); undefined for the system CAs or `ws://`. */
  tls: TlsOptions | undefined;
  /** The environment variable whose value is sent as `Authorization: Bearer <value>`, read at every connect. */
  bearerEnv: string | undefined;
}

/** The connection settings the source and the sink resolved, as a {@link ConnectTarget}. */
export function connectTarget(
  where: string,
  o: {
    url: string;
    headers?: Record<string, string> | undefined;
    protocols?: string[] | undefined;
    connectTimeoutMs: number;
    perMessageDeflate: boolean;
    closeTimeoutMs: number;
    tls?: TlsOptions | undefined;
    bearerEnv?: string | undefined;
  },
  maxPayloadBytes: number,
): ConnectTarget {
  const parsed = new URL(o.url);
  const secure = parsed.protocol === 'wss:' || parsed.protocol === 'https:';
  return {
    where,
    url: o.url,
    label: redactUrl(o.url),
    headers: o.headers,
    protocols: o.protocols,
    connectTimeoutMs: o.connectTimeoutMs,
    maxPayloadBytes,
    perMessageDeflate: o.perMessageDeflate,
    closeTimeoutMs: o.closeTimeoutMs,
    secure,
    host: `${parsed.hostname}:${parsed.port || (secure ? 443 : 80)}`,
    tls: o.tls,
    bearerEnv: o.bearerEnv,
  };
}

/** The close code ws sends for each of its receiver's protocol errors (ws keeps it on a private symbol). */
const PROTOCOL_CLOSE_CODES: Readonly<Record<string, number>> = {
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: 1009,
  WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH: 1009,
  WS_ERR_INVALID_UTF8: 1007,
  WS_ERR_TOO_MANY_BUFFERED_PARTS: 1008,
};

/** Close codes that say a peer broke the protocol or sent what cannot be taken: a new connection is likely to do the same. */
const PROTOCOL_CODES = new Set([1002, 1003, 1007, 1008, 1009]);

/**
 * The close code of a protocol error ws's receiver reported (a frame above maxPayload, a bad frame, invalid
 * UTF-8), or undefined when `error` is not one.
 */
export function protocolCloseCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  if (typeof code !== 'string' || !code.startsWith('WS_ERR_')) return undefined;
  return PROTOCOL_CLOSE_CODES[code] ?? 1002;
}

/**
 * Whether a connection ended for a protocol violation, ours to see (`error` from ws's receiver) or the
 * peer's to say (its close code: 1002 protocol error, 1003 unacceptable data, 1007 invalid data, 1008
 * policy, 1009 too big). Such a loss never counts as a healthy connection: reconnecting at once would
 * only meet the same frame again.
 */
export function isProtocolLoss(error: unknown, closeCode: number | undefined): boolean {
  return protocolCloseCode(error) !== undefined || (closeCode !== undefined && PROTOCOL_CODES.has(closeCode));
}

/** The error of a failed upgrade: 401/403 are AUTH, 404 NOT_FOUND, 5xx/429/408 retryable. */
function statusError(status: number, statusText: string | undefined): ManifoldError {
  const code = status === 401 || status === 403 ? ErrorCodes.AUTH : status === 404 ? ErrorCodes.NOT_FOUND : ErrorCodes.CONNECTION;
  return new ManifoldError(`the server refused the WebSocket upgrade with HTTP ${status}${statusText ? ` ${statusText}` : ''}`, {
    code,
    retryable: status >= 500 || status === 429 || status === 408,
    details: { status },
  });
}

/** An error of the socket, as a ManifoldError that says whether a reconnect can help; a TLS failure is MANIFOLD_ERR_TLS, never retried. */
function connectError(target: ConnectTarget, error: Error, handshaking: boolean): ManifoldError {
  if (error instanceof ManifoldError) return error;
  const tls = target.secure ? tlsFailure(target.where, target.host, error, handshaking) : undefined;
  if (tls) return tls;
  // Errors without a system code come from the handshake (bad Sec-WebSocket-Accept, a subprotocol we did not offer):
  // a misconfigured server, which retrying will not fix.
  return new ManifoldError(describe(error), { code: ErrorCodes.CONNECTION, retryable: isRetryable(error), cause: error });
}

/**
 * The error a lost, once healthy connection is reported with. Always retryable:
 * whatever the server did (closed, reset, broke the protocol), a new connection may work.
 */
export function lostError(where: string, label: string, code: number, reason: string, cause: Error | undefined): ManifoldError {
  const closed = `closed with code ${code}${reason ? ` (${reason})` : ''}`;
  // 1006 is no close frame at all: then the cause is all there is to say. Any other code is the server's own word.
  let why = cause ? (code === 1006 ? describe(cause) : `${describe(cause)} (${closed})`) : closed;
  // A protocol error of ours: say which close code we sent, and for an oversize message what to change if it was legitimate.
  const sent = protocolCloseCode(cause);
  if (sent !== undefined) {
    why += `; the client closed with code ${sent}${sent === 1009 ? ': raise maxPayloadBytes if the server legitimately sends messages this large' : ''}`;
  }
  return new ManifoldError(`${where}: the connection to ${label} was lost: ${why}`, {
    code: ErrorCodes.CONNECTION,
    retryable: true,
    cause,
    details: sent === undefined ? { closeCode: code, closeReason: reason } : { closeCode: code, closeReason: reason, sentCloseCode: sent },
  });
}

/** A socket's close code and reason, as its `'close'` event gave them. */
export interface CloseInfo {
  code: number;
  reason: string;
}

/**
 * How a socket that is no longer open closed. A server's close frame puts the socket in CLOSING, and its
 * code and reason come with `'close'` once the TCP connection ends: wait for that, up to `timeoutMs`.
 * `seen` is what a `'close'` listener recorded already. Undefined when it did not close in time.
 */
export async function closeInfo(ws: WebSocket, seen: CloseInfo | undefined, timeoutMs = 1000): Promise<CloseInfo | undefined> {
  if (seen || ws.readyState === WebSocket.CLOSED) return seen;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      ws.off('close', onClose);
      resolve(undefined);
    }, timeoutMs);
    const onClose = (code: number, reason: Buffer): void => {
      clearTimeout(timer);
      resolve({ code, reason: reason.toString() });
    };
    ws.once('close', onClose);
  });
}

/**
 * `error` with a message that names the target, for errors that reach the
 * user as they are (fatal ones, or with retries off); errors the core retry
 * wraps ("connecting to ws://... failed after 3 attempts: ...") already do.
 */
export function namedError(where: string, label: string, error: Error): Error {
  // A TLS failure names the factory and the host already.
  if (error instanceof ManifoldError && error.code === ErrorCodes.TLS) return error;
  if (error.message.includes(label) || error.name === 'AbortError' || (error instanceof ManifoldError && error.code === ErrorCodes.ABORTED)) return error;
  const status = (error as { status?: unknown }).status;
  return new ManifoldError(`${where}: ${label}: ${describe(error)}`, {
    code: error instanceof ManifoldError ? error.code : ErrorCodes.CONNECTION,
    retryable: isRetryable(error),
    cause: error,
    details: status === undefined ? undefined : { status },
  });
}

/** One attempt: a socket that is connecting, and a promise of its opening. */
export interface Attempt {
  ws: WebSocket;
  /** Resolves on `'open'`; rejects with a classified ManifoldError when the attempt fails. */
  opened: Promise<void>;
}

/**
 * Starts one connection attempt. The caller attaches its own listeners to
 * `ws` at once (messages may follow `'open'` in the same tick) and awaits
 * `opened`. The socket always has an `'error'` listener, so a late error never
 * crashes the process.
 */
export function connect(target: ConnectTarget, signal?: AbortSignal): Attempt {
  // Read now, at every connect and swap: a certificate replaced on disk, or a token changed in the environment, is used from the next one.
  // A file that cannot be read or a variable that is not set throws (INVALID_OPTION, not retried).
  const tls: ConnectionOptions = target.tls ? tlsConnectOptions(target.where, target.tls) : {};
  const headers = target.bearerEnv === undefined ? target.headers : { ...target.headers, Authorization: `Bearer ${bearerToken(target.where, target.bearerEnv)}` };
  // Whether the server accepted the TLS handshake. A socket closed before then is a TLS failure: a server refusing the client
  // certificate may just hang up, and with TLS 1.3 it does so after the client saw the handshake complete. So with TLS 1.3 the
  // handshake counts as accepted at the server's first session ticket (sent once it verified the client) or its HTTP answer.
  let secured = !target.secure;
  // closeTimeout (ws 8.18+) is not in @types/ws yet.
  const options = {
    headers,
    maxPayload: target.maxPayloadBytes,
    perMessageDeflate: target.perMessageDeflate,
    // After a protocol error ws sends its close frame and waits this long for the peer's before it cuts the socket (ws: 30 s).
    closeTimeout: target.closeTimeoutMs,
    followRedirects: false,
    // ws hands these to https.request, which hands them to tls.connect below.
    ...tls,
    ...(target.secure
      ? {
          createConnection: (connectOptions: ConnectionOptions & { host?: string; path?: string }): TLSSocket => {
            // As ws's own: SNI is the host name, none for an IP address.
            const servername = connectOptions.servername ?? (connectOptions.host && isIP(connectOptions.host) ? '' : connectOptions.host);
            const socket = tlsConnect({ ...connectOptions, path: undefined, servername });
            whenServerAccepts(socket, () => (secured = true));
            return socket;
          },
        }
      : {}),
  };
  // ws's ClientOptions type the TLS options its https.request takes more narrowly than tls.connect does (checkServerIdentity).
  const ws = new WebSocket(target.url, target.protocols, options as unknown as WebSocket.ClientOptions);
  let failure: ManifoldError | undefined;
  const fail = (error: ManifoldError): void => {
    failure ??= error;
    ws.terminate();
  };
  ws.on('error', (error: Error) => {
    failure ??= connectError(target, error, !secured);
  });
  ws.once('upgrade', () => {
    secured = true;
  });
  const opened = new Promise<void>((resolve, reject) => {
    // Our own timer rather than ws's handshakeTimeout, so a timeout is known to be retryable without reading error text.
    const timer = setTimeout(() => {
      fail(new ManifoldError(`no WebSocket handshake within ${target.connectTimeoutMs} ms`, { code: ErrorCodes.CONNECTION, retryable: true }));
    }, target.connectTimeoutMs);
    const onAbort = (): void => {
      fail(new ManifoldError('connecting was aborted', { code: ErrorCodes.ABORTED }));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const cleanup = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      ws.off('open', onOpen);
      ws.off('close', onClose);
    };
    const onOpen = (): void => {
      cleanup();
      resolve();
    };
    const onClose = (code: number, reason: Buffer): void => {
      cleanup();
      const why = reason.length > 0 ? ` (code ${code}: ${reason.toString()})` : ` (code ${code})`;
      reject(failure ?? new ManifoldError(`the connection closed during the handshake${why}`, { code: ErrorCodes.CONNECTION, retryable: true, details: { closeCode: code, closeReason: reason.toString() } }));
    };
    ws.once('open', onOpen);
    ws.once('close', onClose);
    // With this listener ws leaves the failed response to us; it gives the status, which ws's own error only has as text.
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      fail(statusError(res.statusCode ?? 0, res.statusMessage));
    });
    if (signal?.aborted) onAbort();
  });
  return { ws, opened };
}

/**
 * Closes a socket gracefully (close frame, wait for the peer's) and
 * terminates it when the peer does not answer within `timeoutMs`, as ws's own
 * close timer would after 30 s. Resolves once the socket is closed.
 */
export function closeSocket(ws: WebSocket, timeoutMs: number, code = 1000, reason = ''): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => ws.terminate(), timeoutMs);
    ws.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
    else if (ws.readyState === WebSocket.OPEN) ws.close(code, reason);
  });
}

/**
 * Pings every `intervalMs`; when neither a pong nor any other frame arrives
 * within `timeoutMs` of a ping, the peer is taken for dead and `onDead` runs.
 * A peer busy sending us data is alive even if its pong is queued behind it,
 * so incoming data counts too (`seen()`). While suspended (our socket is
 * paused, so a pong could not be read) nothing is pinged or timed.
 */
export class Heartbeat {
  readonly #ws: WebSocket;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #onDead: (error: ManifoldError) => void;
  #pingTimer: NodeJS.Timeout | undefined;
  #pongTimer: NodeJS.Timeout | undefined;
  #suspended = false;
  #stopped = false;
  /** Set by incoming data; checked when the pong is late. */
  seenSincePing = false;
  readonly #onPong = (): void => {
    if (this.#pongTimer === undefined) return;
    clearTimeout(this.#pongTimer);
    this.#pongTimer = undefined;
    this.#schedule();
  };

  constructor(ws: WebSocket, intervalMs: number, timeoutMs: number, onDead: (error: ManifoldError) => void) {
    this.#ws = ws;
    this.#intervalMs = intervalMs;
    this.#timeoutMs = timeoutMs;
    this.#onDead = onDead;
    ws.on('pong', this.#onPong);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped || this.#suspended) return;
    this.#pingTimer = setTimeout(() => this.#ping(), this.#intervalMs);
  }

  #ping(): void {
    this.#pingTimer = undefined;
    if (this.#stopped || this.#suspended || this.#ws.readyState !== WebSocket.OPEN) return;
    this.seenSincePing = false;
    // The callback keeps a ping on a socket that just closed from throwing or erroring.
    this.#ws.ping(undefined, undefined, () => {});
    this.#pongTimer = setTimeout(() => {
      this.#pongTimer = undefined;
      if (this.seenSincePing) {
        this.#schedule();
        return;
      }
      this.stop();
      this.#onDead(
        new ManifoldError(`no pong within ${this.#timeoutMs} ms of a ping: the peer is unresponsive`, {
          code: ErrorCodes.CONNECTION,
          retryable: true,
        }),
      );
    }, this.#timeoutMs);
  }

  #clear(): void {
    clearTimeout(this.#pingTimer);
    clearTimeout(this.#pongTimer);
    this.#pingTimer = undefined;
    this.#pongTimer = undefined;
  }

  suspend(): void {
    if (this.#suspended || this.#stopped) return;
    this.#suspended = true;
    this.#clear();
  }

  resume(): void {
    if (!this.#suspended || this.#stopped) return;
    this.#suspended = false;
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    this.#clear();
    this.#ws.off('pong', this.#onPong);
  }
}
