/**
 * Contiguous-ack bookkeeping for checkpointing sources (Kinesis shards, Kafka
 * partitions). Positions are opaque to the tracker: order is the order in which
 * the source delivered them, because neither Kinesis sequence numbers nor Kafka
 * offsets are dense (gaps from compaction, transactions, aggregation).
 */
import { ErrorCodes, ManifoldError } from './errors.js';
import { numberOption } from './options.js';

/** The settle functions of one tracked delivery, to hand to createMessage(). */
export interface Ticket {
  ack(): void;
  nack(error?: Error): void;
}

/**
 * A nack as the tracker lists it: its partition's checkpoint stays before
 * `position` (or before an earlier position nacked later) until `reset()` or `remove()`.
 */
export interface NackRecord<P> {
  partition: string;
  position: P;
  error: Error | undefined;
}

export interface AckTrackerOptions {
  /**
   * Most deliveries per partition past the checkpoint (unacked, plus acked ones
   * held behind an unacked one) before {@link AckTracker.isFull} is true; this
   * window is what bounds the tracker's memory. On a partition blocked by a nack
   * only unacked deliveries count. Default 1000.
   */
  maxInFlight?: number;
}

/** takeNacks() lists at most this many nacks between two calls; the rest are counted in `unlistedNacks`. */
const MAX_LISTED_NACKS = 100;

const PENDING = 0;
const ACKED = 1;
const NACKED = 2;

interface Entry<P> {
  position: P;
  state: number;
  /** Order of delivery on its lane (of its generation). */
  seq: number;
  /** The lane and its generation when tracked: a settle after reset() or remove() is late. */
  lane: Lane<P>;
  generation: number;
}

/**
 * One tracked delivery, from {@link AckTracker.open}: hand it back to {@link AckTracker.settle}.
 * Opaque; it costs one object, where a {@link Ticket} adds two closures.
 */
export interface Delivery<P> {
  readonly position: P;
}

class Lane<P> {
  constructor(readonly partition: string) {}
  // Entries from `head` on are outstanding or not yet contiguous; compaction keeps the array short.
  entries: Entry<P>[] = [];
  head = 0;
  /** `seq` of entries[0]. */
  base = 0;
  nextSeq = 0;
  /** `seq` of the earliest nacked delivery: the checkpoint never passes it, so nothing from it on is kept. */
  stop = Infinity;
  /** Whether a nack of this lane is in the list takeNacks() returns (one per lane is enough: the lane is stuck). */
  listed = false;
  inFlight = 0;
  committed: P | undefined;
  generation = 0;
  waiters: Array<() => void> = [];
}

/**
 * Tracks, per partition, which delivered positions are acked, and exposes the
 * highest position below which everything is acked — the only safe checkpoint.
 *
 * - `track()` registers a delivery in order and returns its ticket.
 * - An ack may arrive in any order; the checkpoint advances over the contiguous acked prefix.
 * - A nack is final for its partition until `reset()` or `remove()`: the checkpoint may still
 *   advance over the acked deliveries before the nacked one, never past it, and the source
 *   redelivers from the checkpoint after a restart (redelivery within the process happens
 *   upstream, in flow()'s error policy, which acks what a dead-letter sink took). From then on
 *   the partition keeps no per-delivery state, only its count of unacked deliveries.
 * - `isFull()` / `whenRoom()` cap the window per partition (`maxInFlight`): the deliveries
 *   past the checkpoint, acked or not. That is how a checkpointing source applies
 *   backpressure, and it bounds memory even when one slow delivery holds the checkpoint.
 * - `reset()` forgets a partition (lease lost, partition revoked, re-read from the
 *   checkpoint); tickets from before are ignored when they settle.
 *
 * @example
 * ```ts
 * const tracker = new AckTracker<string>({ maxInFlight: 500 });
 * const ticket = tracker.track(shardId, record.SequenceNumber);
 * push(createMessage({ data, onAck: ticket.ack, onNack: ticket.nack }));
 * // later: checkpointer.store(shardId, tracker.committed(shardId));
 * ```
 */
export class AckTracker<P = string> {
  readonly maxInFlight: number;
  /** Settles of tickets from before a `reset()` or `remove()` of their partition: ignored, and counted here. */
  lateSettles = 0;
  /** Nacks that takeNacks() does not return: later nacks of a partition already listed, or past the list's cap of 100. `onNack` sees every nack. */
  unlistedNacks = 0;
  #lanes = new Map<string, Lane<P>>();
  #idleWaiters: Array<{ partition: string | undefined; done: () => void }> = [];
  #nacks: NackRecord<P>[] = [];
  #onNack: ((record: NackRecord<P>) => void) | undefined;

  constructor(options: AckTrackerOptions & { onNack?: (record: NackRecord<P>) => void } = {}) {
    this.maxInFlight = numberOption('AckTracker', 'maxInFlight', options.maxInFlight, 1000, { min: 1, integer: true });
    this.#onNack = options.onNack;
  }

  #lane(partition: string): Lane<P> {
    let lane = this.#lanes.get(partition);
    if (!lane) {
      lane = new Lane<P>(partition);
      this.#lanes.set(partition, lane);
    }
    return lane;
  }

  /**
   * Registers the delivery of `position` on `partition`, after every position
   * tracked before on that partition. Does not block: check `isFull()` first.
   */
  track(partition: string, position: P): Ticket {
    const entry = this.#open(this.#lane(partition), position);
    return {
      ack: () => this.#settle(entry, ACKED, undefined),
      nack: (error?: Error) => this.#settle(entry, NACKED, error),
    };
  }

  /**
   * As {@link track}, without the ticket's closures: the delivery is settled by passing it to
   * {@link settle}. For a source that builds its own message around the delivery.
   */
  open(partition: string, position: P): Delivery<P> {
    return this.#open(this.#lane(partition), position);
  }

  /**
   * Settles a delivery from {@link open}: acks it, or with `nacked` nacks it with `error`. Returns true
   * for its first settle (a late one, after reset() or remove(), included), false for any later one.
   */
  settle(delivery: Delivery<P>, nacked = false, error?: Error): boolean {
    const entry = delivery as Entry<P>;
    if (entry.state !== PENDING) return false;
    this.#settle(entry, nacked ? NACKED : ACKED, error);
    return true;
  }

  #open(lane: Lane<P>, position: P): Entry<P> {
    const entry: Entry<P> = { position, state: PENDING, seq: lane.nextSeq++, lane, generation: lane.generation };
    // Past a nack the checkpoint cannot move: only the ticket holds the entry, for its position and its one settle.
    if (entry.seq < lane.stop) lane.entries.push(entry);
    lane.inFlight += 1;
    return entry;
  }

  #settle(entry: Entry<P>, state: number, error: Error | undefined): void {
    // A second settle is ignored; so is (counted once) a ticket from before reset() or remove(): its position will be redelivered.
    if (entry.state !== PENDING) return;
    entry.state = state;
    const { lane } = entry;
    const partition = lane.partition;
    if (lane.generation !== entry.generation || this.#lanes.get(partition) !== lane) {
      this.lateSettles += 1;
      return;
    }
    lane.inFlight -= 1;
    if (state === NACKED) {
      if (entry.seq < lane.stop) {
        // Nothing from here on can be checkpointed any more: keep only what is still before it (pending or acked).
        lane.stop = entry.seq;
        lane.entries = lane.entries.slice(lane.head, entry.seq - lane.base);
        lane.base += lane.head;
        lane.head = 0;
      }
      const record = { partition, position: entry.position, error };
      if (!lane.listed && this.#nacks.length < MAX_LISTED_NACKS) {
        lane.listed = true;
        this.#nacks.push(record);
      } else this.unlistedNacks += 1;
      this.#onNack?.(record);
    } else if (entry.seq < lane.stop) this.#advance(lane);
    this.#wake(lane);
  }

  #advance(lane: Lane<P>): void {
    const { entries } = lane;
    let head = lane.head;
    while (head < entries.length && entries[head]!.state === ACKED) {
      lane.committed = entries[head]!.position;
      head += 1;
    }
    if (lane.stop !== Infinity && head === entries.length) {
      // Blocked, and everything before the nack is acked: the lane keeps nothing per delivery from now on.
      lane.entries = [];
      lane.base += head;
      head = 0;
    } else if (head > 1024 && head * 2 > entries.length) {
      // Compact once the consumed prefix dominates, so memory is bounded by the window.
      lane.entries = entries.slice(head);
      lane.base += head;
      head = 0;
    }
    lane.head = head;
  }

  /** What counts against maxInFlight: the window past the checkpoint, or on a blocked lane (no window to keep) the unacked deliveries. */
  #used(lane: Lane<P>): number {
    return lane.stop === Infinity ? lane.entries.length - lane.head : lane.inFlight;
  }

  #wake(lane: Lane<P>): void {
    if (this.#used(lane) < this.maxInFlight && lane.waiters.length > 0) {
      const waiters = lane.waiters;
      lane.waiters = [];
      for (const w of waiters) w();
    }
    if (this.#idleWaiters.length > 0) {
      const total = this.inFlight();
      const ready = this.#idleWaiters.filter((w) => (w.partition === undefined ? total : this.inFlight(w.partition)) === 0);
      if (ready.length === 0) return;
      this.#idleWaiters = this.#idleWaiters.filter((w) => !ready.includes(w));
      for (const w of ready) w.done();
    }
  }

  /** The highest position of `partition` below which every delivery is acked, or undefined. */
  committed(partition: string): P | undefined {
    return this.#lanes.get(partition)?.committed;
  }

  /** Sets the starting checkpoint of a partition (resumed from a checkpointer). */
  setCommitted(partition: string, position: P | undefined): void {
    this.#lane(partition).committed = position;
  }

  /** Unacked deliveries of `partition`, or of every partition when omitted. */
  inFlight(partition?: string): number {
    if (partition !== undefined) return this.#lanes.get(partition)?.inFlight ?? 0;
    let total = 0;
    for (const lane of this.#lanes.values()) total += lane.inFlight;
    return total;
  }

  /**
   * How many more deliveries `partition` takes before it is full: `maxInFlight`
   * less its deliveries past the checkpoint (less its unacked ones once a nack
   * blocked it). Zero or less when full.
   */
  room(partition: string): number {
    const lane = this.#lanes.get(partition);
    return this.maxInFlight - (lane ? this.#used(lane) : 0);
  }

  /** Whether `partition` has `maxInFlight` deliveries past its checkpoint (unacked ones, once a nack blocked it). */
  isFull(partition: string): boolean {
    return this.room(partition) <= 0;
  }

  /** Whether a nack holds (or, once the deliveries before it are acked, will hold) `partition`'s checkpoint back, until `reset()` or `remove()`. */
  isBlocked(partition: string): boolean {
    const lane = this.#lanes.get(partition);
    return lane !== undefined && lane.stop !== Infinity;
  }

  /** Resolves when `partition` is no longer full (at once if it is not). */
  whenRoom(partition: string): Promise<void> {
    const lane = this.#lane(partition);
    if (this.#used(lane) < this.maxInFlight) return Promise.resolve();
    return new Promise((resolve) => lane.waiters.push(resolve));
  }

  /**
   * Resolves true when nothing is in flight on `partition` (on any partition
   * when omitted), or false after `timeoutMs` (the graceful-close bound).
   */
  whenIdle(timeoutMs = Infinity, partition?: string): Promise<boolean> {
    if (this.inFlight(partition) === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter = {
        partition,
        done: (): void => {
          if (timer) clearTimeout(timer);
          resolve(true);
        },
      };
      this.#idleWaiters.push(waiter);
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          this.#idleWaiters = this.#idleWaiters.filter((w) => w !== waiter);
          resolve(false);
        }, timeoutMs);
      }
    });
  }

  /**
   * Nacks listed since the last call, oldest first; the list is cleared. It
   * holds the first nack of each partition since its last `reset()` (the one that blocked it), and
   * at most 100 in all, so it stays small however many nacks come: the others
   * are counted in `unlistedNacks`, and `onNack` sees every one.
   */
  takeNacks(): NackRecord<P>[] {
    const nacks = this.#nacks;
    this.#nacks = [];
    return nacks;
  }

  /**
   * Forgets `partition`'s deliveries and its nack: its tickets become no-ops and
   * its waiters are released. The committed position is kept (it is what the
   * source resumes from).
   */
  reset(partition: string): void {
    const lane = this.#lanes.get(partition);
    if (!lane) return;
    const fresh = new Lane<P>(partition);
    fresh.committed = lane.committed;
    fresh.generation = lane.generation + 1;
    this.#lanes.set(partition, fresh);
    for (const w of lane.waiters) w();
    this.#wake(fresh);
  }

  /** Forgets `partition` entirely (revoked for good); returns its last committed position. */
  remove(partition: string): P | undefined {
    const lane = this.#lanes.get(partition);
    if (!lane) return undefined;
    this.#lanes.delete(partition);
    lane.generation += 1;
    for (const w of lane.waiters) w();
    this.#wake(lane);
    return lane.committed;
  }

  /** Partitions known to the tracker. */
  partitions(): string[] {
    return [...this.#lanes.keys()];
  }
}

/** Builds the error a source reports when its close timed out with acks outstanding. */
export function closeTimeoutError(where: string, timeoutMs: number, inFlight: number): ManifoldError {
  return new ManifoldError(
    `${where}: close() timed out after ${timeoutMs} ms with ${inFlight} message(s) not acked; they will be redelivered from the last checkpoint`,
    { code: ErrorCodes.CLOSE_TIMEOUT, details: { inFlight } },
  );
}
