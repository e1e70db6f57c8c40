import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import { createMessage, type Message } from '../../lib/core/message.js';
import { batch, type BatchMessage } from '../../lib/transforms/batch.js';
import { filter } from '../../lib/transforms/filter.js';
import { jsonAppend } from '../../lib/transforms/json-append.js';
import { lines } from '../../lib/transforms/lines.js';
import { map } from '../../lib/transforms/map.js';

function tracked(items: Array<string | Buffer>) {
  const acked: number[] = [];
  const nacked = new Map<number, Error>();
  const messages = items.map((data, i) =>
    createMessage({ data, key: `k${i}`, meta: { i }, onAck: () => acked.push(i), onNack: (e) => nacked.set(i, e) }));
  return { messages, acked, nacked };
}

async function run(input: unknown[], ...stages: Transform[]): Promise<Message[]> {
  const out: Message[] = [];
  await (pipeline as unknown as (...s: unknown[]) => Promise<void>)(Readable.from(input), ...stages, new Writable({
    objectMode: true,
    write(m: Message, _e, cb) { out.push(m); cb(); },
  }));
  return out;
}

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

describe('filter', () => {
  it('passes what matches and acks what it drops', async () => {
    const { messages, acked } = tracked(['keep', 'drop', 'keep']);
    const out = await run(messages, filter(async (m) => m.data.toString() === 'keep'));
    assert.equal(out.length, 2);
    assert.deepEqual(acked, [1]);
  });

  it('nacks when the predicate throws', async () => {
    const { messages, nacked } = tracked(['x']);
    await run(messages, filter(() => { throw new Error('pred'); }));
    assert.match(nacked.get(0)!.message, /filter: the predicate failed on message 0: pred/);
    await assert.rejects(run([5], filter(() => true)), /expected a Message/);
  });
});

describe('batch', () => {
  it('groups by count, and acking the batch acks every member', async () => {
    const { messages, acked } = tracked(Array.from({ length: 7 }, (_, i) => `m${i}`));
    const out = (await run(messages, batch({ maxCount: 3 }))) as BatchMessage[];
    assert.deepEqual(out.map((b) => b.messages.length), [3, 3, 1]);
    assert.equal(out[0]!.data.toString(), 'm0\nm1\nm2\n');
    out[0]!.ack();
    assert.deepEqual(acked, [0, 1, 2]);
  });

  it('groups by bytes; a single large message forms its own batch', async () => {
    const out = (await run(['aaaa', 'bbbb', 'x'.repeat(50), 'cc'], batch({ maxBytes: 12, delimiter: ',' }))) as BatchMessage[];
    assert.deepEqual(out.map((b) => b.data.toString()), ['aaaa,bbbb,', `${'x'.repeat(50)},`, 'cc,']);
  });

  it('emits a partial batch after maxWaitMs', async () => {
    const stage = batch({ maxCount: 100, maxWaitMs: 20 });
    const out: BatchMessage[] = [];
    stage.on('data', (b: BatchMessage) => out.push(b));
    stage.write('a');
    stage.write('b');
    await sleep(60);
    assert.equal(out.length, 1);
    assert.equal(out[0]!.messages.length, 2);
    stage.end();
  });

  it('nacking the batch nacks every member; destroy nacks what was held', async () => {
    const { messages, nacked } = tracked(['a', 'b', 'c']);
    const out = (await run(messages.slice(0, 2), batch({ maxCount: 2 }))) as BatchMessage[];
    out[0]!.nack(new Error('sink refused'));
    assert.deepEqual([...nacked.keys()], [0, 1]);
    const stage = batch({ maxCount: 10 });
    stage.write(messages[2]);
    stage.destroy();
    await sleep(5);
    assert.ok(nacked.has(2));
  });

  it('rejects bad options', () => {
    assert.throws(() => batch({ maxCount: 0 }), /batch: options\.maxCount must be a positive integer, got 0/);
    assert.throws(() => batch({ maxWait: 5 } as never), /unknown option "maxWait" \(did you mean "maxWaitMs"\?\)/);
  });
});

describe('lines', () => {
  async function frame(chunks: Array<string | Buffer>, options = {}) {
    const out = await run(chunks.map((c) => Buffer.from(c)), lines(options));
    return out.map((m) => m.data.toString());
  }

  it('splits on newlines across chunks, handles CRLF and keeps a last line without newline', async () => {
    assert.deepEqual(await frame(['a\nb', 'c\r\n', '\nd\r', '\ne']), ['a', 'bc', '', 'd', 'e']);
    const out = await run([Buffer.from('x\ny\n')], lines());
    assert.deepEqual(out.map((m) => m.meta?.['line']), [1, 2]);
  });

  it('supports multi-byte delimiters split across chunks', async () => {
    assert.deepEqual(await frame(['one|', '|two||th', 'ree|', '|'], { delimiter: '||' }), ['one', 'two', 'three']);
    assert.deepEqual(await frame(['a\rb'], { delimiter: '\r' }), ['a', 'b']);
  });

  it('fails on a line over maxMessageBytes naming the line, without buffering it all', async () => {
    await assert.rejects(frame(['ok\n', 'x'.repeat(40), 'y'.repeat(40), '\n'], { maxMessageBytes: 50, label: 'stdin' }), (e: unknown) => {
      assert.ok(e instanceof ManifoldError);
      assert.equal(e.code, ErrorCodes.MESSAGE_TOO_LARGE);
      assert.match(e.message, /record 2 of stdin is longer than maxMessageBytes \(\d+ > 50 bytes\)/);
      return true;
    });
    await assert.rejects(frame([`${'z'.repeat(60)}\n`], { maxMessageBytes: 50 }), /record 1 of input/);
  });

  it('skips oversized lines with onOversize: skip and counts lines right', async () => {
    const stage = lines({ maxMessageBytes: 5, onOversize: 'skip' });
    const skipped: unknown[] = [];
    stage.on('skip', (s) => skipped.push(s));
    const out = await run(['ab\n', 'c'.repeat(20), 'c'.repeat(20), '\nde\n', 'f'.repeat(9), '\n', 'last'].map((c) => Buffer.from(c)), stage);
    assert.deepEqual(out.map((m) => [m.data.toString(), m.meta?.['line']]), [['ab', 1], ['de', 3], ['last', 5]]);
    assert.equal(skipped.length, 2);
  });

  it('does not pin a large chunk in memory for a small remainder', async () => {
    const stage = lines();
    const big = Buffer.alloc(1 << 20, 'a');
    big[big.length - 3] = 0x0a;
    stage.write(big);
    await sleep(1);
    stage.destroy();
  });
});

describe('jsonAppend', () => {
  it('adds fields, calling functions per message', async () => {
    let n = 0;
    const out = await run(['{"a":1}', '{"a":2,"source":"old"}'], jsonAppend({ source: 'orders', seq: () => ++n, nested: { x: true } }));
    assert.deepEqual(out.map((m) => JSON.parse(m.data.toString())), [
      { a: 1, source: 'orders', seq: 1, nested: { x: true } },
      { a: 2, source: 'orders', seq: 2, nested: { x: true } },
    ]);
  });

  it('passes the message to field functions and keeps the ack', async () => {
    const { messages, acked } = tracked(['{}']);
    const out = await run(messages, jsonAppend({ key: (m: Message) => m.key }));
    assert.equal(out[0]!.data.toString(), '{"key":"k0"}');
    out[0]!.ack();
    assert.deepEqual(acked, [0]);
  });

  it('nacks non-objects naming the position and an excerpt; the pipeline keeps running', async () => {
    const { messages, nacked, acked } = tracked(['{"ok":1}', 'not json at all', '[1,2]', 'null', '"s"', '{"ok":2}']);
    const stage = jsonAppend({ t: 1 });
    const events: Error[] = [];
    stage.on('nack', (e: Error) => events.push(e));
    const out = await run(messages, stage);
    assert.equal(out.length, 2);
    assert.match(nacked.get(1)!.message, /^jsonAppend: message 1 is not JSON \(.*\): "not json at all"$/);
    assert.match(nacked.get(2)!.message, /message 2 is JSON but not an object \(an array\): "\[1,2\]"/);
    assert.match(nacked.get(3)!.message, /\(null\)/);
    assert.match(nacked.get(4)!.message, /\(string\)/);
    assert.equal(events.length, 4);
    assert.deepEqual(acked, []);
  });

  it('names the input line when the message has one, and cuts long excerpts', async () => {
    const m = createMessage({ data: `x${'y'.repeat(100)}`, meta: { line: 7 }, onNack: (e) => { err = e; } });
    let err: Error | undefined;
    await run([m], jsonAppend({}));
    assert.match(err!.message, /message 0 \(line 7\) is not JSON .*: "xy{59}\.\.\."$/);
  });

  it("onError: 'skip' acks and drops, 'pass' passes unchanged", async () => {
    const skip = tracked(['bad', '{}']);
    const skipped = await run(skip.messages, jsonAppend({ a: 1 }, { onError: 'skip' }));
    assert.deepEqual(skipped.map((m) => m.data.toString()), ['{"a":1}']);
    assert.deepEqual(skip.acked, [0]);
    const pass = await run(['bad', '{}'], jsonAppend({ a: 1 }, { onError: 'pass' }));
    assert.deepEqual(pass.map((m) => m.data.toString()), ['bad', '{"a":1}']);
  });

  it('rejects bad arguments', () => {
    assert.throws(() => jsonAppend(null as never), /jsonAppend: options\.fields must be an object/);
    assert.throws(() => jsonAppend({}, { onError: 'drop' as never }), /options\.onError must be one of "nack", "skip", "pass", got "drop"/);
  });
});
