import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { map } from '../../lib/transforms/map.js';
import { type Message } from '../../lib/core/message.js';
import { tracked, run } from './helpers.js';

describe('map', () => {
  it('replaces data, keeps the envelope and the ack', async () => {
    const { messages, acked } = tracked(['a', 'b']);
    const out = await run(messages, map((m) => m.data.toString().toUpperCase()));
    assert.deepEqual(out.map((m) => m.data.toString()), ['A', 'B']);
    assert.equal(out[1]!.key, 'k1');
    assert.deepEqual(out[1]!.meta, { i: 1 });
    out.forEach((m) => m.ack());
    assert.deepEqual(acked, [0, 1]);
  });

  it('supports async functions, Buffers, Uint8Arrays and whole messages', async () => {
    const out = await run(['a', 'b', 'c', 'd'], map(async (m, i) => {
      await sleep(1);
      if (i === 0) return Buffer.from('buf');
      if (i === 1) return new Uint8Array([65, 66]);
      if (i === 2) return { ...m, data: Buffer.from('msg') };
      return 'str';
    }));
    assert.deepEqual(out.map((m) => m.data.toString()), ['buf', 'AB', 'msg', 'str']);
  });

  it('nacks a message whose function throws, names its position, and carries on', async () => {
    const { messages, nacked } = tracked(['ok', 'bad', 'ok']);
    const stage = map((m) => { if (m.data.toString() === 'bad') throw new Error('cannot'); return m.data; });
    const seen: Error[] = [];
    stage.on('nack', (e: Error) => seen.push(e));
    const out = await run(messages, stage);
    assert.equal(out.length, 2);
    assert.match(nacked.get(1)!.message, /^map: the function failed on message 1: cannot$/);
    assert.equal((nacked.get(1) as ManifoldError).code, ErrorCodes.INVALID_MESSAGE);
    assert.equal(seen.length, 1);
  });

  it('nacks a rejected promise and a bad return value the same way', async () => {
    const { messages, nacked } = tracked(['a', 'b']);
    await run(messages, map(async (_m, i) => { if (i === 0) throw new Error('async no'); return 42 as never; }));
    assert.match(nacked.get(0)!.message, /message 0: async no/);
    assert.match(nacked.get(1)!.message, /expected a Buffer, string or Message, got number/);
  });

  it('fails the stream on something that is not a message', async () => {
    await assert.rejects(run([{ x: 1 }], map((m) => m.data)), /expected a Message/);
    assert.throws(() => map('no' as never), /map: function must be a function/);
    assert.throws(() => map((m) => m.data, { highWaterMark: 0 }), /map: options\.highWaterMark must be a positive integer/);
  });
});
