import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
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

  it('caps unacked deliveries with isFull() and whenRoom()', async () => {
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

  it('keeps memory bounded by the unacked window over long runs', () => {
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
