// The flow() of commit 5842cd4, the last before the error policy (10b3007), kept verbatim but for
// its import paths, as bench/core.ts's baseline for the policy's cost when nothing fails.
/**
 * flow(): runs source -> transforms -> sink as one pipeline, counts what
 * passed, and shuts down gracefully on a signal: the source stops fetching,
 * what is in flight reaches the sink and is acked, the sink flushes.
 */
import { EventEmitter } from 'node:events';
import { Readable, type Duplex, type Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { ErrorCodes, ManifoldError, toError } from '../../lib/core/errors.js';
import { relay, toMessage, type Message, type MessageLike } from '../../lib/core/message.js';
import { booleanOption, checkOptions, durationOption, invalidOption, signalOption } from '../../lib/core/options.js';

/** What {@link flow} resolves with. */
export interface FlowStats {
  /** Messages read from the source. */
  messages: number;
  /** Payload bytes read from the source. */
  bytes: number;
  /** Messages acked (delivered, or intentionally dropped by a filter). */
  acks: number;
  /** Payload bytes (as read from the source) of the acked messages. */
  bytesAcked: number;
  /** Messages nacked (not delivered; the source may redeliver). */
  nacks: number;
  /** Messages neither acked nor nacked when the flow ended. */
  unsettled: number;
  /** Wall time of the flow in milliseconds. */
  durationMs: number;
  /** Whether a graceful shutdown (signal or `stop()`) ended the flow. */
  stopped: boolean;
}

/** Options of {@link flow}. */
export interface FlowOptions {
  source: Readable;
  transforms?: Array<Duplex | ((source: AsyncIterable<Message>) => AsyncIterable<MessageLike>)>;
  sink: Writable;
  /** Aborting it stops the flow gracefully, like the first SIGTERM. */
  signal?: AbortSignal;
  /**
   * First SIGINT/SIGTERM stops gracefully, a second destroys at once. A signal within
   * 1 s of the first counts as the same one (see {@link SAME_SIGNAL_MS}). Default false.
   */
  handleSignals?: boolean;
  /** Bound on a graceful stop; after it everything is destroyed. Default 30,000 ms. */
  closeTimeoutMs?: number;
}

/** Why a graceful stop began, as the `'stopping'` event says. */
export type StopReason =
  /** SIGINT or SIGTERM (`handleSignals`); `signal` names it. */
  | { reason: 'signal'; signal: NodeJS.Signals }
  /** The `signal` option was aborted. */
  | { reason: 'abort' }
  /** `stop()` was called. */
  | { reason: 'stop' }
  /** The sink's reader went away (`'outputclose'`: stdout EPIPE, as with `manifold ... | head`). */
  | { reason: 'outputclose'; error: Error | undefined };

/** A running flow: a promise of its stats, with live stats and a graceful `stop()`. */
export interface Flow extends Promise<FlowStats> {
  /** Live counters (the same object the promise resolves with, minus final timing). */
  readonly stats: FlowStats;
  /** Emits `'stopping'` ({@link StopReason}: a graceful stop began, once), `'nack'` (message, error). */
  readonly events: EventEmitter;
  /** Begins a graceful stop; resolves when the flow has ended. Idempotent. */
  stop(): Promise<FlowStats>;
}

const ignore = (): void => {};

/**
 * A second signal within this many milliseconds of the first is the same signal: a wrapper such as
 * `npx tsx` or `npm run` passes on the SIGINT it got from the terminal to a child that got the terminal's
 * own SIGINT too (same process group), so one Ctrl-C arrives twice. A person's second Ctrl-C is later.
 */
export const SAME_SIGNAL_MS = 1000;

const FLOW_KEYS = ['source', 'transforms', 'sink', 'signal', 'handleSignals', 'closeTimeoutMs'] as const;

function isClosable(stream: unknown): stream is { close(): Promise<void> } {
  return typeof (stream as { close?: unknown }).close === 'function';
}

/**
 * Runs a pipeline and resolves with what flowed. With `handleSignals`, the
 * first SIGINT or SIGTERM closes the source gracefully (its `close()` when it
 * has one: stop fetching, end after what was fetched); in-flight messages
 * reach the sink and are acked, the sink flushes, and the promise resolves, so
 * the process exits 0. A second signal destroys everything at once and the
 * promise rejects with `MANIFOLD_ERR_ABORTED`; one that comes within
 * {@link SAME_SIGNAL_MS} of the first is taken for the same signal delivered twice
 * and ignored.
 *
 * @example
 * ```ts
 * const stats = await flow({ source: stdinSource(), sink: stdoutSink(), handleSignals: true });
 * ```
 */
export function flow(options: FlowOptions): Flow {
  const o = checkOptions('flow', options, FLOW_KEYS);
  if (!(o.source instanceof Readable)) invalidOption('flow', 'source', 'a Readable stream', o.source);
  if (!o.sink || typeof (o.sink as Writable).write !== 'function') invalidOption('flow', 'sink', 'a Writable stream', o.sink);
  if (o.transforms !== undefined && !Array.isArray(o.transforms)) invalidOption('flow', 'transforms', 'an array of streams or async generator functions', o.transforms);
  const handleSignals = booleanOption('flow', 'handleSignals', o.handleSignals, false);
  const closeTimeoutMs = durationOption('flow', 'closeTimeoutMs', o.closeTimeoutMs, 30_000);
  const signal = signalOption('flow', 'signal', o.signal);
  const { source, sink } = o;
  const transforms = o.transforms ?? [];

  const events = new EventEmitter();
  const started = performance.now();
  const stats: FlowStats = { messages: 0, bytes: 0, acks: 0, bytesAcked: 0, nacks: 0, unsettled: 0, durationMs: 0, stopped: false };

  // The head of the pipeline reads the source itself, so a graceful stop works for any Readable:
  // a manifold source is closed; a plain one is simply no longer read and the head ends.
  let head!: Readable;
  let onData: (value: MessageLike) => void;
  const detach = (): void => {
    source.off('data', onData);
    source.off('end', onEnd);
    source.off('error', onError);
    // The source may still fail (or be destroyed by a timeout) after we stopped reading it: not a crash.
    source.on('error', ignore);
    source.pause();
  };
  const onEnd = (): void => {
    head.push(null);
  };
  const onError = (error: Error): void => {
    head.destroy(error);
  };
  head = new Readable({
    objectMode: true,
    highWaterMark: 16,
    read() {
      source.resume();
    },
    destroy(error, callback) {
      detach();
      if (!source.destroyed) source.destroy(error ?? undefined);
      callback(error);
    },
  });
  onData = (value: MessageLike): void => {
    let message: Message;
    try {
      message = toMessage(value);
    } catch (error) {
      head.destroy(toError(error));
      return;
    }
    stats.messages += 1;
    stats.bytes += message.data.length;
    const counted = relay(
      message,
      () => {
        stats.acks += 1;
        stats.bytesAcked += message.data.length;
        message.ack();
      },
      (error) => {
        stats.nacks += 1;
        events.emit('nack', message, error);
        message.nack(error);
      },
    );
    if (!head.push(counted)) source.pause();
  };
  source.on('data', onData);
  source.on('end', onEnd);
  source.on('error', onError);
  source.pause();

  let stopping: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let destroyedBySecondSignal = false;
  /** When the first signal (or the abort of `signal`) came, to tell a second one from the same one delivered twice. */
  let firstSignalAt: number | undefined;

  const destroyAll = (error: Error): void => {
    for (const stream of [head, ...transforms, sink]) {
      if (typeof stream === 'object' && stream !== null && 'destroy' in stream) (stream as Duplex).destroy(error);
    }
    if (!source.destroyed) source.destroy(error);
  };

  const gracefulStop = (why: StopReason): Promise<void> => {
    stopping ??= (async () => {
      stats.stopped = true;
      events.emit('stopping', why);
      timer = setTimeout(() => {
        destroyAll(new ManifoldError(`flow: graceful stop did not finish within closeTimeoutMs (${closeTimeoutMs} ms)`, { code: ErrorCodes.CLOSE_TIMEOUT }));
      }, closeTimeoutMs);
      if (isClosable(source)) {
        try {
          await source.close();
        } catch (error) {
          head.destroy(toError(error));
        }
      } else {
        // A plain Readable has no graceful close: stop reading it and end the pipeline after what was read.
        detach();
        if (!head.readableEnded) head.push(null);
      }
    })();
    return stopping;
  };

  // The first signal stops gracefully, even when a stop began otherwise (stop(), the output closing): only a
  // second one, later than SAME_SIGNAL_MS, means "at once".
  const onSignal = (why: StopReason): void => {
    const now = performance.now();
    if (firstSignalAt === undefined) {
      firstSignalAt = now;
      void gracefulStop(why);
      return;
    }
    if (now - firstSignalAt < SAME_SIGNAL_MS) return;
    destroyedBySecondSignal = true;
    destroyAll(new ManifoldError('flow: stopped at once by a second signal; messages in flight were not delivered', { code: ErrorCodes.ABORTED }));
  };
  const onProcessSignal = (signal: NodeJS.Signals): void => onSignal({ reason: 'signal', signal });
  if (handleSignals) {
    process.on('SIGINT', onProcessSignal);
    process.on('SIGTERM', onProcessSignal);
  }
  const onAbort = (): void => onSignal({ reason: 'abort' });
  if (signal) {
    if (signal.aborted) queueMicrotask(onAbort);
    else signal.addEventListener('abort', onAbort);
  }
  // A sink whose reader went away (stdout EPIPE) ends the flow like a signal does.
  const onOutputClose = (error?: Error): void => void gracefulStop({ reason: 'outputclose', error });
  sink.on('outputclose', onOutputClose);

  const run = (async (): Promise<FlowStats> => {
    try {
      await (pipeline as unknown as (...streams: unknown[]) => Promise<void>)(head, ...transforms, sink);
      // The sink is done, but a source's close() may still be storing its final checkpoint or commit: a caller
      // that exits once the flow resolves must not lose it.
      if (stopping) await stopping;
      else if (source.readableEnded && !source.closed) await finished(source).catch(() => undefined);
      // A plain source that we stopped reading is done with; release it.
      if (stats.stopped && !isClosable(source) && !source.destroyed) source.destroy();
    } catch (error) {
      if (destroyedBySecondSignal && !(error instanceof ManifoldError && error.code === ErrorCodes.ABORTED)) {
        throw new ManifoldError('flow: stopped at once by a second signal; messages in flight were not delivered', {
          code: ErrorCodes.ABORTED,
          cause: error,
        });
      }
      throw error;
    } finally {
      if (timer) clearTimeout(timer);
      if (handleSignals) {
        process.off('SIGINT', onProcessSignal);
        process.off('SIGTERM', onProcessSignal);
      }
      signal?.removeEventListener('abort', onAbort);
      sink.off('outputclose', onOutputClose);
      stats.durationMs = performance.now() - started;
      stats.unsettled = stats.messages - stats.acks - stats.nacks;
    }
    return stats;
  })();

  return Object.assign(run, {
    stats,
    events,
    stop: async () => {
      await gracefulStop({ reason: 'stop' });
      return run;
    },
  }) as Flow;
}
