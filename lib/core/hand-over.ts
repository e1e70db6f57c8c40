/**
 * A source's fast path to a consumer that keeps up: what `push()` does for a flowing stream whose
 * buffer is empty (Node's `addChunk`), without the rest of `push()`.
 */
import type { Readable } from 'node:stream';

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

/**
 * Hands `chunk` straight to the `'data'` listeners of `stream` when push() would (flowing, nothing
 * buffered, not inside `_read()`), and returns true; otherwise returns false and the caller pushes it.
 * A consumer that falls behind (pipe() pausing on a full destination, a paused stream) stops the
 * flow, and the next chunk takes push() and the buffer, so order is kept. Not for the stream's end
 * (`null`), and only from outside `_read()` and `push()` themselves.
 */
export function emitToFlowing(stream: Readable, chunk: unknown): boolean {
  const state = (stream as unknown as { _readableState: ReadableStateView })._readableState;
  if (state.length !== 0 || state.flowing !== true || state.sync !== false || state.ended !== false || state.destroyed !== false || stream.listenerCount('data') === 0) {
    // push() then deals with it: buffers it, or refuses it after the end or a destroy.
    return false;
  }
  // As push(): the read that _read() started has delivered, so a later read() may call _read() again.
  if (state.reading === true) state.reading = false;
  // As addChunk: a pipe() destination that was waiting for 'drain' is no longer waited for, and 'data' was emitted.
  if (state.multiAwaitDrain === true) state.awaitDrainWriters?.clear();
  else state.awaitDrainWriters = null;
  state.dataEmitted = true;
  stream.emit('data', chunk);
  return true;
}
