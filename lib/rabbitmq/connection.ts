/**
 * What the RabbitMQ source and sink share: connecting with errors that say
 * what failed (and never the password), topology assertion, header conversion
 * and a bounded connection close. Not part of the API; their options are
 * declared in options.ts.
 */
import type { Stream } from 'node:stream';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { ErrorCodes, ManifoldError, describe, isRetryable, redactUrl, toError } from '../core/errors.js';
import { show } from '../core/options.js';
import { tlsConnectOptions, tlsFailure, type TlsOptions } from '../core/tls.js';
import type { AuthMechanism, BindingSpec } from './options.js';

export type { BindingSpec } from './options.js';

/** Facts an AMQP error carries, kept as properties of the ManifoldError. */
interface AmqpFacts {
  url: string;
  queue?: string;
  exchange?: string;
  routingKey?: string;
}

function amqpCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/**
 * Turns an amqplib failure into a ManifoldError whose code says what to do:
 * AUTH (refused login, vhost not allowed), NOT_FOUND (404: queue or exchange),
 * CONNECTION (retryable: refused socket, broker shutdown, lost connection), or
 * DELIVERY (anything else the broker refused; not retried).
 */
export function amqpError(where: string, action: string, error: unknown, facts: AmqpFacts): ManifoldError {
  if (error instanceof ManifoldError) return error;
  const err = toError(error);
  const text = describe(err);
  const code = amqpCode(err);
  const at = redactUrl(facts.url);
  const details: Record<string, unknown> = { url: at };
  if (facts.queue !== undefined) details.queue = facts.queue;
  if (facts.exchange !== undefined) details.exchange = facts.exchange;
  if (facts.routingKey !== undefined) details.routingKey = facts.routingKey;
  if (code !== undefined) {
    details.replyCode = code;
    // amqplib puts the broker's reply text only into its message: 'Connection closed: 320 (CONNECTION-FORCED) with message "..."'.
    const replyText = /with message "(.*)"$/s.exec(text)?.[1];
    if (replyText !== undefined) details.replyText = replyText;
  }
  // The login refusal arrives as a handshake close without a numeric code; a vhost the user may not
  // open arrives as an unexpected ConnectionClose where ConnectionOpenOk was due.
  if (code === 403 || code === 530 || /ACCESS[-_]REFUSED|NOT[-_]ALLOWED|Expected ConnectionOpenOk/.test(text)) {
    return new ManifoldError(
      `${where}: ${action} at ${at} was refused: ${text}; check the user, password, vhost and its permissions`,
      { code: ErrorCodes.AUTH, cause: err, details },
    );
  }
  if (code === 404) {
    return new ManifoldError(`${where}: ${action} at ${at} failed: ${text}; create it first, or set options.assert`, {
      code: ErrorCodes.NOT_FOUND,
      cause: err,
      details,
    });
  }
  if (isRetryable(err) || /Connection closed|Channel closed|Socket closed|channel ended/i.test(text)) {
    return new ManifoldError(`${where}: ${action} at ${at} failed: ${text}`, { code: ErrorCodes.CONNECTION, retryable: true, cause: err, details });
  }
  return new ManifoldError(`${where}: ${action} at ${at} failed: ${text}`, { code: ErrorCodes.DELIVERY, cause: err, details });
}

/** What {@link openConnection} needs. */
export interface ConnectSettings {
  url: string;
  connectionName: string;
  connectTimeoutMs: number;
  /** TLS settings of an amqps:// URL (checkConnection refuses them with amqp://). */
  tls?: TlsOptions | undefined;
  authMechanism?: AuthMechanism;
}

/** `host:port` of an AMQP URL, as a TLS failure names it (the port amqplib uses when none is given). */
function hostOf(url: string): string {
  const parsed = new URL(url);
  return `${parsed.hostname}:${parsed.port || (parsed.protocol === 'amqps:' ? 5671 : 5672)}`;
}

/** The parts of amqplib's frame multiplexer (lib/mux.js) that {@link coalesceWrites} uses. */
interface MuxView {
  _readIncoming?: (this: MuxView) => void;
  out?: { cork?: () => void; uncork?: () => void };
}

/**
 * The internals of an amqplib connection this file reaches for (not amqplib's API): the ChannelModel's
 * `connection`, its socket (`stream`) and its frame multiplexer (`muxer`). Each may be missing in another version.
 */
function internals(connection: ChannelModel): { stream?: { destroy(): void }; muxer?: MuxView } | undefined {
  return (connection as unknown as { connection?: { stream?: { destroy(): void }; muxer?: MuxView } }).connection;
}

/**
 * Makes amqplib write the frames it has queued as one socket write instead of one each.
 *
 * amqplib queues every channel's frames and writes them to the socket one `write()` at a time in its
 * multiplexer's `_readIncoming()`; a write to an idle socket is a system call of its own, so a burst of 500
 * publishes was 500 calls (`strace -c`: one `write` per message). Corking the socket around `_readIncoming()`
 * sends the frames it writes as one `writev`. The frames, their order and the multiplexer's backpressure are
 * unchanged: a write past the socket's high-water mark still returns false and stops the multiplexer until
 * 'drain', and the uncork flushes at once. Not amqplib's documented API: when the multiplexer is not where this
 * looks (another amqplib version), nothing is changed and the frames go one write each, as before.
 */
export function coalesceWrites(connection: ChannelModel): boolean {
  const mux = internals(connection)?.muxer;
  const readIncoming = mux?._readIncoming;
  const out = mux?.out;
  if (mux === undefined || typeof readIncoming !== 'function' || typeof out?.cork !== 'function' || typeof out.uncork !== 'function') return false;
  const socket = out as { cork(): void; uncork(): void };
  mux._readIncoming = function coalesced(this: MuxView): void {
    socket.cork();
    try {
      readIncoming.call(this);
    } finally {
      socket.uncork();
    }
  };
  return true;
}

/**
 * Opens a connection. The connection name shows in the management UI and in
 * `rabbitmqctl list_connections client_properties`, so an operator (or a test)
 * can find and close it. `signal` destroys the socket while it connects (amqplib
 * has no abort of its own, but hands its options to `net.connect`/`tls.connect`,
 * whose sockets take one); abort it only before the promise settles, or the
 * open connection's socket would be cut without a close.
 *
 * With an amqps:// URL the `tls` files are read here, at every connect, so a
 * certificate replaced on disk is used at the next reconnect; amqplib hands them
 * to `tls.connect`. A failed handshake (unknown CA, expired, name mismatch, client
 * certificate refused, a plaintext port) is MANIFOLD_ERR_TLS, which is not retried.
 */
export async function openConnection(where: string, settings: ConnectSettings, signal?: AbortSignal): Promise<ChannelModel> {
  const secure = settings.url.startsWith('amqps:');
  try {
    const socketOptions: Record<string, unknown> = {
      timeout: settings.connectTimeoutMs,
      clientProperties: { connection_name: settings.connectionName },
      // Frames are coalesced into one write a burst (see coalesceWrites), so Nagle's algorithm has nothing left to
      // merge and would only hold the last segment of a burst back until the broker acknowledges the one before.
      noDelay: true,
      ...(signal ? { signal } : {}),
    };
    if (secure && settings.tls) Object.assign(socketOptions, tlsConnectOptions(where, settings.tls));
    // EXTERNAL sends an empty response: the broker takes the user from the client certificate's subject.
    if (settings.authMechanism === 'EXTERNAL') socketOptions.credentials = amqp.credentials.external();
    const connection = await amqp.connect(settings.url, socketOptions);
    coalesceWrites(connection);
    // From here the socket may fail at any time (an abort that came too late, say): an 'error' without a listener
    // would crash the process. Callers listen for 'close', which follows.
    connection.on('error', () => {});
    return connection;
  } catch (error) {
    // A broker that refuses the client certificate under TLS 1.3 does so after the client finished its handshake:
    // the alert (certificate required, unknown CA) arrives as the socket's error, and is recognised by its code.
    // A bare reset is not taken as TLS: a broker restarting resets connections too, and that is worth retrying.
    const tls = secure ? tlsFailure(where, hostOf(settings.url), error) : undefined;
    if (tls) throw tls;
    throw amqpError(where, 'connecting', error, { url: settings.url });
  }
}

/**
 * Closes a channel, then its connection, without waiting for ever: a broker
 * that does not answer within `timeoutMs` gets the socket destroyed. Closing
 * the channel first matters: its acks sit in the channel's own write buffer,
 * and a connection.close on channel 0 can overtake them; channel.close queues
 * behind them. Never throws (either may already be gone).
 */
export async function closeConnection(connection: ChannelModel | undefined, channel?: Channel, timeoutMs = 2_000): Promise<void> {
  if (!connection) return;
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const socketOf = (): { destroy(): void } | undefined => internals(connection)?.stream;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      timedOut = true;
      socketOf()?.destroy();
      resolve();
    }, timeoutMs);
  });
  try {
    if (channel) await Promise.race([channel.close().catch(() => {}), deadline]);
    if (!timedOut) await Promise.race([connection.close(), deadline]);
  } catch {
    // Already closed (IllegalOperationError) or the socket died: either way it is gone.
    socketOf()?.destroy();
  } finally {
    clearTimeout(timer);
  }
}

/**
 * AMQP header values as the Message envelope's strings: strings as they are,
 * numbers and booleans written out, byte arrays as UTF-8, anything else
 * (arrays, tables) as JSON. Absent values are dropped.
 */
export function headersFromAmqp(headers: Record<string, unknown> | undefined): Record<string, string> | undefined {
  if (!headers) return undefined;
  let out: Record<string, string> | undefined;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || value === null) continue;
    out ??= {};
    if (typeof value === 'string') out[name] = value;
    else if (Buffer.isBuffer(value)) out[name] = value.toString('utf8');
    else if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') out[name] = String(value);
    else if (value instanceof Date) out[name] = value.toISOString();
    else {
      try {
        out[name] = JSON.stringify(value);
      } catch {
        out[name] = show(value);
      }
    }
  }
  return out;
}

/** Binds `queue` as the specs say, declaring exchanges that name a type. */
export async function applyBindings(channel: Channel, queue: string, bindings: readonly BindingSpec[]): Promise<void> {
  for (const b of bindings) {
    if (b.exchangeType !== undefined) await channel.assertExchange(b.exchange, b.exchangeType, b.exchangeOptions);
    await channel.bindQueue(queue, b.exchange, b.routingKey ?? '', b.arguments);
  }
}

/** The error with which an in-flight message is nacked when its connection went away. */
export function connectionLostError(where: string, url: string, cause?: unknown): ManifoldError {
  return new ManifoldError(`${where}: the connection to ${redactUrl(url)} was lost${cause ? `: ${describe(cause)}` : ''}`, {
    code: ErrorCodes.CONNECTION,
    retryable: true,
    cause,
  });
}

/** How long a destroyed source or sink waits for its connection to be released before it emits 'close' anyway. */
export const RELEASE_WAIT_MS = 2_000;

/**
 * Resolves once `stream` has emitted 'close' (its connection released), or after `timeoutMs`: a connect
 * that amqplib cannot abort may hold it longer, and the connection is still closed as soon as it opens.
 */
export function whenClosed(stream: Stream & { readonly closed?: boolean }, timeoutMs = RELEASE_WAIT_MS): Promise<void> {
  if (stream.closed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      stream.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    stream.once('close', done);
  });
}
