/**
 * The options of websocketSource and websocketSink, declared once (see `defineOptions`):
 * what they share is one object spread into both. Cross-option checks (a heartbeat
 * timeout with heartbeats off) are in {@link resolveWebSocketOptions}.
 */
import type WebSocket from 'ws';
import { ErrorCodes, ManifoldError, READS_TWO_WAYS, readsTwoWays, redactUrl } from '../core/errors.js';
import { common, conflictingOptions, defineOptions, invalidOption, opt, type OptionDeclaration, type OptionSpecs, type ResolvedOptions } from '../core/options.js';
import { retryOption, type RetryOptions } from '../core/retry.js';
import { tlsOption, type TlsOptions } from '../core/tls.js';

/** Why a connection was opened, as passed to `onOpen` and in `'open'` events. */
export type OpenReason = 'connect' | 'reconnect' | 'swap';

/** What `onOpen` and the `'open'` event of the source are told about a new connection. */
export interface WebSocketOpenInfo {
  /** Counts connections of this source from 1; also in every message's `meta.connectionId`. */
  connectionId: number;
  /** The first connection, one after a loss, or a periodic make-before-break swap. */
  reason: OpenReason;
  /** The URL with any password hidden. */
  url: string;
  /** The subprotocol the server chose ('' when none). */
  protocol: string;
}

/** What `onOpen` and the `'open'` event of the sink are told about a connection. */
export interface WebSocketSinkOpenInfo {
  /** Counts connections of this sink from 1. */
  connectionId: number;
  /** The URL with any password hidden. */
  url: string;
  /** The subprotocol the server chose ('' when none). */
  protocol: string;
}

/** A `ws://` or `wss://` URL (http(s) too, as ws takes them), as a string. */
function checkUrl(where: string, value: unknown): string {
  let parsed: URL | undefined;
  if (typeof value === 'string' || value instanceof URL) {
    try {
      parsed = new URL(String(value));
    } catch {
      parsed = undefined;
    }
  }
  if (!parsed || !['ws:', 'wss:', 'http:', 'https:'].includes(parsed.protocol)) {
    // The value may hold a password: show it redacted.
    invalidOption(where, 'url', 'a ws:// or wss:// URL', typeof value === 'string' || value instanceof URL ? redactUrl(String(value)) : value);
  }
  if (typeof value === 'string' && readsTwoWays(value, parsed)) {
    throw new ManifoldError(`${where}: options.url ${JSON.stringify(redactUrl(value))} ${READS_TWO_WAYS}`, { code: ErrorCodes.INVALID_OPTION, details: { option: 'url' } });
  }
  if (parsed.hash) invalidOption(where, 'url', 'a URL without a #fragment (WebSocket URLs cannot have one)', redactUrl(parsed));
  return parsed.toString();
}

/** An environment variable's name, as a shell writes it. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The token in the environment variable `name`, read now (at every connect, so a program that
 * changes it is heard at the next one). Never shown: only the variable's name is.
 */
export function bearerToken(where: string, name: string): string {
  const value = process.env[name];
  if (value === undefined || value.trim() === '') {
    throw new ManifoldError(
      `${where}: options.bearerEnv names the environment variable ${name}, which is ${value === undefined ? 'not set' : 'empty'}: set it to the bearer token to send (Authorization: Bearer <token>)`,
      { code: ErrorCodes.INVALID_OPTION, details: { option: 'bearerEnv', variable: name } },
    );
  }
  if (/[\r\n\0]/.test(value)) {
    throw new ManifoldError(`${where}: the environment variable ${name} (options.bearerEnv) holds a line break or NUL, which an HTTP header cannot carry`, {
      code: ErrorCodes.INVALID_OPTION,
      details: { option: 'bearerEnv', variable: name },
    });
  }
  return value.trim();
}

const SUBPROTOCOL = /^[!#$%&'*+\-.0-9A-Z^_`|a-z~]+$/;

const fn = <F>(value: unknown, fail: (expected: string) => never): F => (typeof value === 'function' ? (value as F) : fail('a function'));

/** What the source and the sink share, declared once. */
export const websocketConnection = {
  url: {
    ...opt.custom<string>('The server, `ws://` or `wss://`; `user:password@` in it is sent as Basic auth and shown as `***` in errors and events.', {
      type: 'string | URL',
      // A missing url gets this message too (see resolveWebSocketOptions), not the TypeScript type.
      check: (value, _fail, where) => checkUrl(where, value),
    }),
    required: true as const,
  },
  headers: opt.custom<Record<string, string>>('Extra HTTP headers of the upgrade request (an `Authorization` token, say); values are never shown in errors.', {
    type: 'Record<string, string>',
    secret: true,
    check: (value, fail, where) => {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return fail('an object of header names to strings');
      const out: Record<string, string> = {};
      for (const [name, v] of Object.entries(value as Record<string, unknown>)) {
        // Header values are often secrets (Authorization): name the header and the type, not the value.
        if (typeof v !== 'string') invalidOption(where, `headers[${JSON.stringify(name)}]`, 'a string', typeof v);
        out[name] = v;
      }
      return out;
    },
  }),
  bearerEnv: opt.custom<string>(
    'Send `Authorization: Bearer <token>` on the upgrade request, the token read from this environment variable at every connect (never shown); excludes an `Authorization` header.',
    {
      type: 'string',
      cli: 'bearerEnv',
      schema: { type: 'string', pattern: ENV_NAME.source },
      check: (value, fail) => (typeof value === 'string' && ENV_NAME.test(value) ? value : fail('the name of an environment variable (letters, digits and _)')),
    },
  ),
  tls: tlsOption(
    'TLS for a `wss://` URL: `true` for the system CAs, or `{ ca, cert, key, passphrase, servername, rejectUnauthorized, minVersion }` with PEM text, bytes or file paths (re-read at every connect and swap). Refused with `ws://`.',
  ),
  protocols: opt.custom<string[]>('Subprotocol name or names offered to the server; the one it chose is in the `open` event.', {
    type: 'string | string[]',
    check: (value, fail) => {
      const list = typeof value === 'string' ? [value] : value;
      // ws throws on these later, at connect time; say so now, naming the option.
      if (!Array.isArray(list) || list.some((p) => typeof p !== 'string' || !SUBPROTOCOL.test(p)) || new Set(list).size !== list.length) {
        return fail('a subprotocol name or an array of distinct names (HTTP tokens)');
      }
      return [...(list as string[])];
    },
  }),
  heartbeatIntervalMs: opt.duration('Ping the server this often; `0` turns heartbeats off.', { default: 30_000, min: 0 }),
  heartbeatTimeoutMs: opt.duration('With no pong (nor any other frame) this long after a ping, the connection is dropped and re-made.', { default: 10_000 }),
  connectTimeoutMs: opt.duration("Longest wait for one connection's opening handshake; a timeout is a transient failure.", { default: 10_000 }),
  closeTimeoutMs: opt.duration("Longest wait for the server's close frame when closing (in the source, also for a connection retired by a swap, or one dropped for a protocol error); then the socket is terminated.", {
    default: 5_000,
  }),
  perMessageDeflate: opt.boolean(
    'Offer permessage-deflate compression to the server. Off by default: a compressed message can inflate to about 1,000 times its size on the wire (decompressed messages are still capped: `maxPayloadBytes` in the source, 16 MiB in the sink).',
    { default: false },
  ),
  retry: retryOption('Reconnect settings per outage (core retry: `retries`, `minTimeoutMs`, `maxTimeoutMs`, `factor`, `signal`); `false` fails at the first lost connection.'),
} satisfies OptionSpecs;

export const websocketSourceOptions = defineOptions('websocketSource', {
  ...websocketConnection,
  onOpen: opt.custom<(socket: WebSocket, info: WebSocketOpenInfo) => void | Promise<void>>(
    'Runs on every new connection (first, after a loss, on a swap) before the source relies on it: send subscriptions here; a rejection fails that attempt.',
    { type: '(socket: WebSocket, info: WebSocketOpenInfo) => void | Promise<void>', check: fn },
  ),
  reconnectEveryMs: opt.duration('Replace the connection this often, make-before-break: the new one is open and its `onOpen` has run before the old one is closed.', {
    defaultText: 'never',
  }),
  maxPayloadBytes: opt.bytes('Largest message accepted (decompressed); a larger one drops the connection (close code 1009) and reconnects with growing backoff.', { default: 16 * 1024 * 1024 }),
  maxInFlightBytes: opt.bytes(
    'Payload bytes (decompressed) held in the source and not yet read at which the socket is paused, as `highWaterMark` does by count; it is resumed at half.',
    { default: 16 * 1024 * 1024, cli: 'maxInFlightBytes' },
  ),
  signal: common.signal('source'),
  highWaterMark: common.highWaterMark(1024),
});

export const websocketSinkOptions = defineOptions('websocketSink', {
  ...websocketConnection,
  onOpen: opt.custom<(socket: WebSocket, info: WebSocketSinkOpenInfo) => void | Promise<void>>(
    'Runs on every (re)connection before any message is sent on it (to authenticate, say); a rejection fails that attempt.',
    { type: '(socket: WebSocket, info: WebSocketSinkOpenInfo) => void | Promise<void>', check: fn },
  ),
  messageType: opt.enum('Send each message as a binary or a text frame (text frames must hold UTF-8).', ['binary', 'text'], { default: 'binary' }),
  maxBufferedBytes: opt.bytes('Bytes queued in the socket (`ws.bufferedAmount`) above which the sink holds its write callback until sends complete.', {
    default: 1024 * 1024,
  }),
  maxInFlight: opt.integer('Messages sent and not yet acked above which the sink holds its write callback too (send callbacks come a tick after the kernel took the bytes).', {
    default: 1000,
    min: 1,
  }),
  signal: common.signal('sink'),
  highWaterMark: common.highWaterMark(16),
});

/**
 * Resolves a factory's options through its declaration, then checks what no single
 * option can: a heartbeat timeout given with heartbeats off.
 */
export function resolveWebSocketOptions<D extends typeof websocketConnection & OptionSpecs>(declaration: OptionDeclaration<D>, options: unknown): ResolvedOptions<D> {
  // A missing url would be reported by its TypeScript type ("string | URL"): say what a URL must be.
  const given = (options === undefined ? {} : options) as { url?: unknown; heartbeatTimeoutMs?: unknown } | null;
  const isObject = typeof given === 'object' && given !== null && !Array.isArray(given);
  // Not an object at all: resolve() says so.
  if (isObject && given.url === undefined) checkUrl(declaration.where, undefined);
  const o = declaration.resolve(options);
  const where = declaration.where;
  // Plaintext where TLS was asked for is never silent.
  const url = String(o.url);
  if (o.tls !== undefined && !['wss:', 'https:'].includes(new URL(url).protocol)) {
    conflictingOptions(where, 'tls', 'url', `cannot be combined: the url ${JSON.stringify(redactUrl(url))} is plaintext; write wss:// to use TLS`);
  }
  if (o.bearerEnv !== undefined) {
    if (o.headers && Object.keys(o.headers).some((name) => name.toLowerCase() === 'authorization')) {
      conflictingOptions(where, 'bearerEnv', 'headers', 'cannot be combined: both set the Authorization header; give one of them');
    }
    // Named now rather than at the first connect.
    bearerToken(where, o.bearerEnv);
  }
  if (o.heartbeatIntervalMs === 0 && given!.heartbeatTimeoutMs !== undefined) {
    conflictingOptions(declaration.where, 'heartbeatTimeoutMs', 'heartbeatIntervalMs', 'cannot be combined: an interval of 0 turns heartbeats off');
  }
  return o;
}

// <options WebSocketConnectionOptions>
/** How the WebSocket connection is made and kept. Generated by `npm run options`. */
export interface WebSocketConnectionOptions {
  /** The server, `ws://` or `wss://`; `user:password@` in it is sent as Basic auth and shown as `***` in errors and events. Required. */
  url: string | URL;
  /** Extra HTTP headers of the upgrade request (an `Authorization` token, say); values are never shown in errors. */
  headers?: Record<string, string>;
  /** Send `Authorization: Bearer <token>` on the upgrade request, the token read from this environment variable at every connect (never shown); excludes an `Authorization` header. */
  bearerEnv?: string;
  /** TLS for a `wss://` URL: `true` for the system CAs, or `{ ca, cert, key, passphrase, servername, rejectUnauthorized, minVersion }` with PEM text, bytes or file paths (re-read at every connect and swap). Refused with `ws://`. Default none (plain TCP), unless the URL says TLS. */
  tls?: boolean | TlsOptions;
  /** Subprotocol name or names offered to the server; the one it chose is in the `open` event. */
  protocols?: string | string[];
  /** Ping the server this often; `0` turns heartbeats off. Default 30,000 ms. */
  heartbeatIntervalMs?: number;
  /** With no pong (nor any other frame) this long after a ping, the connection is dropped and re-made. Default 10,000 ms. */
  heartbeatTimeoutMs?: number;
  /** Longest wait for one connection's opening handshake; a timeout is a transient failure. Default 10,000 ms. */
  connectTimeoutMs?: number;
  /** Longest wait for the server's close frame when closing (in the source, also for a connection retired by a swap, or one dropped for a protocol error); then the socket is terminated. Default 5,000 ms. */
  closeTimeoutMs?: number;
  /** Offer permessage-deflate compression to the server. Off by default: a compressed message can inflate to about 1,000 times its size on the wire (decompressed messages are still capped: `maxPayloadBytes` in the source, 16 MiB in the sink). Default false. */
  perMessageDeflate?: boolean;
  /** Reconnect settings per outage (core retry: `retries`, `minTimeoutMs`, `maxTimeoutMs`, `factor`, `signal`); `false` fails at the first lost connection. Default 10 retries, 200 ms to 30 s apart (the `manifold` command: for ever). */
  retry?: RetryOptions | false;
}
// </options>

// <options WebSocketSourceOptions>
/** Options of {@link websocketSource}. Generated from its declaration by `npm run options`. */
export interface WebSocketSourceOptions extends WebSocketConnectionOptions {
  /** Runs on every new connection (first, after a loss, on a swap) before the source relies on it: send subscriptions here; a rejection fails that attempt. */
  onOpen?: (socket: WebSocket, info: WebSocketOpenInfo) => void | Promise<void>;
  /** Replace the connection this often, make-before-break: the new one is open and its `onOpen` has run before the old one is closed. Default never. */
  reconnectEveryMs?: number;
  /** Largest message accepted (decompressed); a larger one drops the connection (close code 1009) and reconnects with growing backoff. Default 16 MiB. */
  maxPayloadBytes?: number;
  /** Payload bytes (decompressed) held in the source and not yet read at which the socket is paused, as `highWaterMark` does by count; it is resumed at half. Default 16 MiB. */
  maxInFlightBytes?: number;
  /** Destroys the source when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark, in messages. Default 1,024. */
  highWaterMark?: number;
}
// </options>

// <options WebSocketSinkOptions>
/** Options of {@link websocketSink}. Generated from its declaration by `npm run options`. */
export interface WebSocketSinkOptions extends WebSocketConnectionOptions {
  /** Runs on every (re)connection before any message is sent on it (to authenticate, say); a rejection fails that attempt. */
  onOpen?: (socket: WebSocket, info: WebSocketSinkOpenInfo) => void | Promise<void>;
  /** Send each message as a binary or a text frame (text frames must hold UTF-8). Default 'binary'. */
  messageType?: 'binary' | 'text';
  /** Bytes queued in the socket (`ws.bufferedAmount`) above which the sink holds its write callback until sends complete. Default 1 MiB. */
  maxBufferedBytes?: number;
  /** Messages sent and not yet acked above which the sink holds its write callback too (send callbacks come a tick after the kernel took the bytes). Default 1,000. */
  maxInFlight?: number;
  /** Destroys the sink when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark, in messages. Default 16. */
  highWaterMark?: number;
}
// </options>
