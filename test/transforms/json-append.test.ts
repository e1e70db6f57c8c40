import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jsonAppend } from '../../lib/transforms/json-append.js';
import { pipeline } from 'node:stream/promises';
import { createMessage, type Message } from '../../lib/core/message.js';
import { tracked, run } from './helpers.js';

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
