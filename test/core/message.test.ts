import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMessage, derive, isMessage, settleAll, toMessage } from '../../lib/core/message.js';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';

describe('createMessage', () => {
  it('settles once: the first ack or nack wins and later calls do nothing', () => {
    const calls: string[] = [];
    const m = createMessage({ data: 'x', onAck: () => calls.push('ack'), onNack: (e) => calls.push(`nack:${e.message}`) });
    m.ack();
    m.ack();
    m.nack(new Error('late'));
    assert.deepEqual(calls, ['ack']);

    const n = createMessage({ data: 'y', onAck: () => calls.push('ack2'), onNack: (e) => calls.push(`nack:${e.message}`) });
    n.nack(new Error('boom'));
    n.ack();
    assert.deepEqual(calls, ['ack', 'nack:boom']);
  });

  it('never throws, even when the source callback does', () => {
    const m = createMessage({ data: 'x', onAck: () => { throw new Error('channel closed'); } });
    assert.doesNotThrow(() => m.ack());
    const n = createMessage({ data: 'x', onNack: () => { throw new Error('channel closed'); } });
    assert.doesNotThrow(() => n.nack());
  });

  it('gives a nack without an error a ManifoldError', () => {
    let got: Error | undefined;
    createMessage({ data: 'x', onNack: (e) => { got = e; } }).nack();
    assert.ok(got instanceof ManifoldError);
    assert.equal((got as ManifoldError).code, ErrorCodes.DELIVERY);
  });

  it('keeps the ack when copied with spread (closures, no this)', () => {
    let acked = 0;
    const m = createMessage({ data: 'a', key: 'k', headers: { h: '1' }, timestamp: 5, meta: { offset: 1 }, onAck: () => acked++ });
    const copy = { ...m, data: Buffer.from('b') };
    copy.ack();
    assert.equal(acked, 1);
    assert.equal(copy.key, 'k');
    assert.deepEqual(copy.headers, { h: '1' });
    assert.equal(copy.timestamp, 5);
    assert.deepEqual(copy.meta, { offset: 1 });
  });

  it('turns strings and Uint8Arrays into Buffers without copying views', () => {
    assert.equal(createMessage({ data: 'héllo' }).data.toString(), 'héllo');
    const bytes = new Uint8Array([1, 2, 3, 4]).subarray(1, 3);
    assert.deepEqual([...createMessage({ data: bytes }).data], [2, 3]);
  });
});

describe('toMessage / isMessage', () => {
  it('passes messages through and wraps plain values with no-op acks', () => {
    const m = createMessage({ data: 'x' });
    assert.equal(toMessage(m), m);
    const s = toMessage('text');
    assert.equal(s.data.toString(), 'text');
    assert.doesNotThrow(() => { s.ack(); s.nack(); });
    assert.equal(toMessage(Buffer.from('b')).data.toString(), 'b');
    assert.equal(toMessage(new Uint8Array([65])).data.toString(), 'A');
  });

  it('is structural: any object with Buffer data and ack/nack functions is a message', () => {
    const plain = { data: Buffer.from('p'), ack() {}, nack() {} };
    assert.ok(isMessage(plain));
    assert.equal(toMessage(plain), plain);
    assert.equal(isMessage({ data: 'not a buffer', ack() {}, nack() {} }), false);
    assert.equal(isMessage(null), false);
  });

  it('rejects anything else with an error saying what it got', () => {
    assert.throws(() => toMessage({ foo: 1 } as never), /expected a Message, Buffer, Uint8Array or string, got an object with keys foo/);
    assert.throws(() => toMessage(42 as never), /got number/);
    assert.throws(() => toMessage(null as never), /got null/);
  });
});

describe('derive', () => {
  it('acks the parent once every child is acked, in any order', () => {
    let acked = 0;
    const parent = createMessage({ data: 'abc', key: 'k', onAck: () => acked++ });
    const children = derive(parent, [{ data: 'a' }, { data: 'b' }, { data: 'c', key: 'own' }]);
    assert.deepEqual(children.map((c) => c.key), ['k', 'k', 'own']);
    children[2]!.ack();
    children[0]!.ack();
    children[0]!.ack();
    assert.equal(acked, 0);
    children[1]!.ack();
    assert.equal(acked, 1);
  });

  it('nacks the parent on the first child nack, and never acks it after', () => {
    const calls: string[] = [];
    const parent = createMessage({ data: 'ab', onAck: () => calls.push('ack'), onNack: (e) => calls.push(e.message) });
    const [a, b] = derive(parent, [{ data: 'a' }, { data: 'b' }]);
    b!.nack(new Error('b failed'));
    a!.nack(new Error('a failed'));
    a!.ack();
    assert.deepEqual(calls, ['b failed']);
  });

  it('acks the parent at once when there are no children', () => {
    let acked = false;
    derive(createMessage({ data: '', onAck: () => { acked = true; } }), []);
    assert.ok(acked);
  });
});

describe('settleAll', () => {
  it('acks or nacks every message of a group', () => {
    const log: string[] = [];
    const group = [1, 2].map((i) => createMessage({ data: String(i), onAck: () => log.push(`a${i}`), onNack: () => log.push(`n${i}`) }));
    settleAll(group);
    const other = [3, 4].map((i) => createMessage({ data: String(i), onAck: () => log.push(`a${i}`), onNack: () => log.push(`n${i}`) }));
    settleAll(other, new Error('x'));
    assert.deepEqual(log, ['a1', 'a2', 'n3', 'n4']);
  });
});
