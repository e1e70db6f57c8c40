import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import { AckTracker, closeTimeoutError } from '../../lib/core/acks.js';
import { ErrorCodes } from '../../lib/core/errors.js';

/** A small seeded PRNG (mulberry32) so a failing property run can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// `npm test` does not pass --expose-gc: turn it on here, and take gc() from a fresh context, where the flag now applies.
v8.setFlagsFromString('--expose-gc');
const gc = (globalThis.gc ?? vm.runInNewContext('gc')) as () => void;

/** Heap in use after full collections: what is retained, not what is merely garbage yet. */
function retainedHeap(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

const MB = 1024 * 1024;

describe('AckTracker', () => {
  it('advances over the contiguous acked prefix only', () => {
    const t = new AckTracker<number>();
    const tickets = [10, 20, 30, 40].map((p) => t.track('s', p));
    assert.equal(t.committed('s'), undefined);
    tickets[1]!.ack();
    assert.equal(t.committed('s'), undefined, 'a gap before it holds the checkpoint');
    tickets[0]!.ack();
    assert.equal(t.committed('s'), 20);
    tickets[3]!.ack();
    assert.equal(t.committed('s'), 20);
    tickets[2]!.ack();
    assert.equal(t.committed('s'), 40);
    assert.equal(t.inFlight('s'), 0);
  });

  it('keeps partitions apart', () => {
    const t = new AckTracker<string>();
    const a = t.track('a', 'a1');
    const b = t.track('b', 'b1');
    b.ack();
    assert.equal(t.committed('a'), undefined);
    assert.equal(t.committed('b'), 'b1');
    a.ack();
    assert.deepEqual(t.partitions().sort(), ['a', 'b']);
  });

  it('property: for any ack order, the checkpoint is the longest fully acked prefix', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const random = prng(seed);
      const n = 1 + Math.floor(random() * 300);
      const t = new AckTracker<number>({ maxInFlight: 10_000 });
      const tickets = Array.from({ length: n }, (_, i) => t.track('p', i));
      const order = tickets.map((_, i) => i).sort(() => random() - 0.5);
      const acked = new Array<boolean>(n).fill(false);
      for (const i of order) {
        tickets[i]!.ack();
        if (random() < 0.1) tickets[i]!.ack(); // duplicates change nothing
        acked[i] = true;
        let prefix = 0;
        while (prefix < n && acked[prefix]) prefix++;
        assert.equal(t.committed('p'), prefix === 0 ? undefined : prefix - 1, `seed ${seed}`);
        assert.equal(t.inFlight('p'), acked.filter((x) => !x).length, `seed ${seed}`);
      }
    }
  });

  it('property: with nacks, resets and a source that overshoots, checkpoint, inFlight, isBlocked and the window match a model', () => {
    type Delivery = { position: number; state: 'pending' | 'acked' | 'nacked'; ticket: ReturnType<AckTracker<number>['track']> };
    for (let seed = 1; seed <= 300; seed++) {
      const random = prng(seed);
      const max = 1 + Math.floor(random() * 20);
      const nackRate = random() < 0.3 ? 0 : random() * 0.08;
      const t = new AckTracker<number>({ maxInFlight: max });
      let lane: Delivery[] = []; // this generation's deliveries, in order
      let stale: Delivery[] = []; // from before a reset(): settling them changes nothing but lateSettles
      let committedAtReset: number | undefined;
      let position = 0;
      let lateSettles = 0;
      let nacks = 0;
      let blockedGenerations = 0;
      for (let step = 0; step < 400; step++) {
        const r = random();
        const pending = lane.filter((d) => d.state === 'pending');
        if (r < 0.45) {
          // A source that checks isFull() mostly, and sometimes delivers past it (a fetch already under way).
          if (!t.isFull('p') || random() < 0.1) lane.push({ position, state: 'pending', ticket: t.track('p', position) });
          position += 1;
        } else if (r < 0.9 && pending.length > 0) {
          const d = pending[Math.floor(random() * pending.length)]!;
          if (random() < nackRate) {
            if (!lane.some((x) => x.state === 'nacked')) blockedGenerations += 1;
            d.ticket.nack(new Error(`nack ${d.position}`));
            d.state = 'nacked';
            nacks += 1;
          } else {
            d.ticket.ack();
            d.state = 'acked';
          }
          if (random() < 0.1) d.ticket.ack(); // a second settle changes nothing
        } else if (r < 0.95 && stale.length > 0) {
          const d = stale.pop()!;
          if (d.state === 'pending') lateSettles += 1;
          d.state = 'acked';
          if (random() < 0.5) d.ticket.ack();
          else d.ticket.nack();
        } else if (r > 0.99) {
          committedAtReset = t.committed('p');
          stale = stale.concat(lane);
          lane = [];
          t.reset('p');
        }
        let run = 0;
        while (run < lane.length && lane[run]!.state === 'acked') run += 1;
        const committed = run === 0 ? committedAtReset : lane[run - 1]!.position;
        const inFlight = lane.filter((d) => d.state === 'pending').length;
        const blocked = lane.some((d) => d.state === 'nacked');
        const used = blocked ? inFlight : lane.length - run;
        const at = `seed ${seed}, step ${step}`;
        assert.equal(t.committed('p'), committed, at);
        assert.equal(t.inFlight('p'), inFlight, at);
        assert.equal(t.isBlocked('p'), blocked, at);
        assert.equal(t.room('p'), max - used, at);
        assert.equal(t.isFull('p'), used >= max, at);
        assert.equal(t.lateSettles, lateSettles, at);
      }
      assert.equal(t.takeNacks().length, blockedGenerations, `seed ${seed}`);
      assert.equal(t.unlistedNacks, nacks - blockedGenerations, `seed ${seed}`);
    }
  });

  it('a nack stops the checkpoint there and is recorded', () => {
    const seen: unknown[] = [];
    const t = new AckTracker<number>({ onNack: (r) => seen.push(r.position) });
    const [a, b, c] = [1, 2, 3].map((p) => t.track('s', p));
    a!.ack();
    b!.nack(new Error('bad'));
    c!.ack();
    assert.equal(t.committed('s'), 1);
    assert.ok(t.isBlocked('s'));
    b!.ack(); // a settled ticket cannot be acked later
    assert.equal(t.committed('s'), 1);
    assert.deepEqual(seen, [2]);
    const nacks = t.takeNacks();
    assert.equal(nacks.length, 1);
    assert.equal(nacks[0]!.error?.message, 'bad');
    assert.deepEqual(t.takeNacks(), []);
  });

  it('a nack behind pending deliveries: the checkpoint still advances over the acked ones before it, then stops for good', () => {
    const t = new AckTracker<number>({ maxInFlight: 4 });
    const k = [1, 2, 3, 4, 5, 6].map((p) => t.track('s', p));
    k[3]!.nack(new Error('bad 4'));
    assert.ok(t.isBlocked('s'));
    for (const i of [1, 2, 4, 5]) k[i]!.ack();
    assert.equal(t.committed('s'), undefined, '1 is still pending');
    assert.equal(t.isFull('s'), false, 'a blocked partition counts its unacked deliveries only');
    k[0]!.ack();
    assert.equal(t.committed('s'), 3, 'up to just before the nack');
    for (let p = 7; p < 1000; p++) t.track('s', p).ack();
    assert.equal(t.committed('s'), 3, 'and no further');
    assert.equal(t.inFlight('s'), 0);
    assert.ok(t.isBlocked('s'));

    // A later nack of an earlier, still pending, delivery moves the stop back to it.
    const u = new AckTracker<number>();
    const m = [1, 2, 3, 4, 5].map((p) => u.track('s', p));
    m[3]!.nack();
    m[1]!.nack();
    for (const i of [0, 2, 4]) m[i]!.ack();
    assert.equal(u.committed('s'), 1);
    assert.deepEqual(u.takeNacks().map((r) => r.position), [4], 'the nack that blocked the partition is listed');
    assert.equal(u.unlistedNacks, 1);

    // reset() lifts the block: the source rereads from the checkpoint.
    u.reset('s');
    assert.equal(u.isBlocked('s'), false);
    u.track('s', 2).ack();
    assert.equal(u.committed('s'), 2);
  });

  it('after a nack, keeps nothing per delivery: 2,000,000 more retain under 1 MB, the checkpoint stays before the nack', () => {
    const t = new AckTracker<number>({ maxInFlight: 10 });
    const positions: unknown[] = [];
    const u = new AckTracker<number>({ onNack: (r) => positions.push(r.position) });
    t.track('s', 0).ack();
    t.track('s', 1).nack(new Error('poison'));
    // Warm up the loop below so that compiled code is not counted as retained.
    for (let i = 0; i < 10_000; i++) u.track('s', i).ack();
    const before = retainedHeap();
    for (let i = 2; i < 2_000_002; i++) {
      const ticket = t.track('s', i);
      if (i % 1000 === 0) ticket.nack();
      else ticket.ack();
    }
    const retained = retainedHeap() - before;
    assert.ok(retained < MB, `retained ${(retained / MB).toFixed(2)} MB`);
    assert.equal(t.committed('s'), 0);
    assert.ok(t.isBlocked('s'));
    assert.equal(t.inFlight('s'), 0);
    const nacks = t.takeNacks();
    assert.deepEqual(nacks.map((r) => [r.position, r.error?.message]), [[1, 'poison']], 'the nack list keeps the first nack of the partition');
    assert.equal(t.unlistedNacks, 2000);

    // The blocked partition still applies backpressure, on its unacked deliveries.
    const held = Array.from({ length: 10 }, (_, i) => t.track('s', 3_000_000 + i));
    assert.ok(t.isFull('s'));
    held[9]!.ack();
    assert.equal(t.isFull('s'), false);
    for (const ticket of held) ticket.ack();
    assert.equal(t.committed('s'), 0);
  });

  it('a nack behind a wide window drops what it holds once the deliveries before it are acked', () => {
    const t = new AckTracker<number>({ maxInFlight: 1_000_000 });
    for (let i = 0; i < 100_000; i++) t.track('s', i).ack();
    const before = retainedHeap();
    let tickets: Array<ReturnType<AckTracker<number>['track']>> | undefined = Array.from({ length: 200_000 }, (_, i) => t.track('s', 100_000 + i));
    tickets[100_000]!.nack();
    for (const ticket of tickets) ticket.ack();
    tickets = undefined;
    const retained = retainedHeap() - before;
    assert.ok(retained < MB, `retained ${(retained / MB).toFixed(2)} MB`);
    assert.equal(t.committed('s'), 199_999);
    assert.equal(t.inFlight('s'), 0);
  });

  it('bounds the nack list across partitions', () => {
    const t = new AckTracker<number>();
    for (let p = 0; p < 1000; p++) {
      t.track(`p${p}`, 1).nack();
      t.track(`p${p}`, 2).nack();
    }
    const nacks = t.takeNacks();
    assert.equal(nacks.length, 100);
    assert.deepEqual(nacks.slice(0, 2).map((r) => r.partition), ['p0', 'p1'], 'oldest first');
    assert.equal(t.unlistedNacks, 1900);
    assert.deepEqual(t.takeNacks(), []);
  });

  it('a slow delivery at the head fills the window: full at maxInFlight deliveries past the checkpoint, memory bounded', { timeout: 60_000 }, async () => {
    const max = 1000;
    const t = new AckTracker<number>({ maxInFlight: max });
    const u = new AckTracker<number>({ maxInFlight: max });
    for (let i = 0; i < 10_000; i++) u.track('s', i).ack(); // warm-up, as above
    const before = retainedHeap();
    // A source that waits for room, and a consumer that acks everything at once except the first message
    // of each window, which it acks only once the source is held up.
    let slow = t.track('s', 0);
    const windows: Array<{ at: number; window: number; inFlight: number }> = [];
    for (let i = 1; i < 1_000_000; i++) {
      if (t.isFull('s')) {
        windows.push({ at: i, window: i - 1 - (t.committed('s') ?? -1), inFlight: t.inFlight('s') });
        const room = t.whenRoom('s');
        slow.ack();
        await room;
        slow = t.track('s', i);
        continue;
      }
      t.track('s', i).ack();
    }
    assert.deepEqual(windows[0], { at: max, window: max, inFlight: 1 }, 'full once the slow head and 999 acked behind it are out');
    assert.ok(windows.every((w) => w.window === max && w.inFlight === 1));
    assert.equal(windows.length, Math.floor((1_000_000 - 1) / max));
    const retained = retainedHeap() - before;
    assert.ok(retained < MB, `retained ${(retained / MB).toFixed(2)} MB with the last window still open`);
    slow.ack();
    assert.equal(t.committed('s'), 999_999);
  });

  it('reset() forgets deliveries: old tickets are ignored, the checkpoint is kept', () => {
    const t = new AckTracker<number>();
    t.track('s', 1).ack();
    const stale = t.track('s', 2);
    t.reset('s');
    stale.ack();
    stale.ack();
    assert.equal(t.committed('s'), 1);
    assert.equal(t.inFlight('s'), 0);
    assert.equal(t.lateSettles, 1, 'the late ack is counted once');
    t.track('s', 2).ack();
    assert.equal(t.committed('s'), 2);
    t.reset('unknown');
  });

  it('remove() forgets a partition and returns its checkpoint', () => {
    const t = new AckTracker<number>();
    t.setCommitted('s', 7);
    const late = t.track('s', 8);
    assert.equal(t.remove('s'), 7);
    late.nack();
    assert.equal(t.committed('s'), undefined);
    assert.equal(t.lateSettles, 1);
    assert.deepEqual(t.takeNacks(), [], 'a late nack is not a nack of the partition');
    assert.equal(t.remove('s'), undefined);
  });

  it('open() and settle(): the same bookkeeping as track() without the ticket; settle() says whether it was the first', () => {
    const nacks: unknown[] = [];
    const t = new AckTracker<number>({ maxInFlight: 3, onNack: (r) => nacks.push(r.position) });
    const a = t.open('p', 1);
    const b = t.open('p', 2);
    const c = t.open('p', 3);
    assert.equal(a.position, 1);
    assert.ok(t.isFull('p'), 'three deliveries past the checkpoint fill a window of 3');
    assert.equal(t.settle(b), true, 'the first settle of b');
    assert.equal(t.committed('p'), undefined, 'b is acked but a is not: no checkpoint yet');
    assert.equal(t.settle(a), true);
    assert.equal(t.committed('p'), 2, 'a and b acked: the checkpoint is b');
    assert.equal(t.settle(a), false, 'a second ack of a is ignored');
    assert.equal(t.settle(a, true, new Error('late')), false, 'so is a nack after the ack');
    assert.equal(t.settle(c, true, new Error('bad')), true);
    assert.deepEqual(nacks, [3]);
    assert.ok(t.isBlocked('p'));
    assert.equal(t.inFlight('p'), 0);
    // A delivery from before reset() settles as late, once, and still reports its first settle.
    const d = t.open('q', 1);
    t.reset('q');
    assert.equal(t.settle(d), true);
    assert.equal(t.settle(d), false);
    assert.equal(t.lateSettles, 1);
    assert.equal(t.committed('q'), undefined);
  });

  it('caps the deliveries past the checkpoint with isFull() and whenRoom()', async () => {
    const t = new AckTracker<number>({ maxInFlight: 2 });
    const a = t.track('s', 1);
    t.track('s', 2);
    assert.ok(t.isFull('s'));
    let released = false;
    const room = t.whenRoom('s').then(() => { released = true; });
    await Promise.resolve();
    assert.equal(released, false);
    a.ack();
    await room;
    assert.ok(released);
    assert.equal(t.isFull('s'), false);
    await t.whenRoom('s');
  });

  it('whenIdle() resolves when everything is settled, or false on timeout', async () => {
    const t = new AckTracker<number>();
    assert.equal(await t.whenIdle(), true);
    const a = t.track('x', 1);
    const b = t.track('y', 1);
    assert.equal(await t.whenIdle(20), false);
    const idle = t.whenIdle(5000);
    a.ack();
    b.nack();
    assert.equal(await idle, true);
  });

  it('keeps memory bounded by the window over long runs', () => {
    const t = new AckTracker<number>({ maxInFlight: 10 });
    for (let i = 0; i < 100_000; i++) t.track('s', i).ack();
    assert.equal(t.committed('s'), 99_999);
    assert.equal(t.inFlight(), 0);
  });

  it('rejects a bad maxInFlight naming it', () => {
    assert.throws(() => new AckTracker({ maxInFlight: 0 }), /AckTracker: options\.maxInFlight must be a positive integer, got 0/);
  });

  it('builds a close-timeout error that says what happens next', () => {
    const e = closeTimeoutError('kinesisSource', 500, 3);
    assert.equal(e.code, ErrorCodes.CLOSE_TIMEOUT);
    assert.match(e.message, /3 message\(s\) not acked; they will be redelivered/);
  });
});
