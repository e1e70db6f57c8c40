/**
 * A source's fast path to a consumer that keeps up: what `push()` does for a flowing stream whose
 * buffer is empty (Node's `addChunk`), without the rest of `push()`.
 */
import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';

/**
 * Node's per-emitter flag (an own symbol property set by EventEmitter's constructor) saying that a
 * listener's rejected promise is turned into an 'error' event (`captureRejections`). Found once here;
 * undefined in a Node version that keeps it elsewhere, and then every chunk goes through emit().
 */
const kCapture = Object.getOwnPropertySymbols(new EventEmitter()).find((symbol) => symbol.description === 'kCapture');

/**
 * The fields of Node's ReadableState that {@link emitToFlowing} reads. Each may be missing in another
 * Node version: then the check fails and the caller uses push().
 */
interface ReadableStateView {
  readonly length: number;
  readonly flowing?: boolean | null;
  readonly sync?: boolean;
  readonly ended?: boolean;
  readonly destroyed?: boolean;
  reading?: boolean;
  readonly multiAwaitDrain?: boolean;
  awaitDrainWriters?: { clear(): void } | null;
  dataEmitted?: boolean;
}

/** The internals of a Readable that {@link emitToFlowing} reads. */
interface EmitterView {
  readonly _readableState: ReadableStateView;
  readonly _events?: { readonly data?: ((chunk: unknown) => void) | readonly unknown[] };
  readonly [key: symbol]: unknown;
}

/**
 * Hands `chunk` straight to the `'data'` listeners of `stream` when push() would (flowing, nothing
 * buffered, not inside `_read()`), and returns true; otherwise returns false and the caller pushes it.
 * A consumer that falls behind (pipe() pausing on a full destination, a paused stream) stops the
 * flow, and the next chunk takes push() and the buffer, so order is kept. Not for the stream's end
 * (`null`), and only from outside `_read()` and `push()` themselves.
 */
export function emitToFlowing(stream: Readable, chunk: unknown): boolean {
  const internals = stream as unknown as EmitterView;
  const state = internals._readableState;
  // The 'data' listener, or the array of them (EventEmitter's own store; read once, not through listenerCount()).
  const listener = internals._events?.data;
  if (state.length !== 0 || state.flowing !== true || state.sync !== false || state.ended !== false || state.destroyed !== false || listener === undefined || (typeof listener !== 'function' && listener.length === 0)) {
    // push() then deals with it: buffers it, or refuses it after the end or a destroy.
    return false;
  }
  // As push(): the read that _read() started has delivered, so a later read() may call _read() again.
  if (state.reading === true) state.reading = false;
  // As addChunk: a pipe() destination that was waiting for 'drain' is no longer waited for, and 'data' was emitted.
  if (state.multiAwaitDrain === true) state.awaitDrainWriters?.clear();
  else state.awaitDrainWriters = null;
  state.dataEmitted = true;
  // One listener (pipe()'s, or a 'data' handler) is called as emit() would call it, without emit()'s array of
  // arguments (about 5 % of what websocketSource spends on a message). Several listeners, or a stream that turns a listener's
  // rejection into 'error' (which emit() does after the call), take emit().
  if (typeof listener === 'function' && kCapture !== undefined && internals[kCapture] === false) listener.call(stream, chunk);
  else stream.emit('data', chunk);
  return true;
}
