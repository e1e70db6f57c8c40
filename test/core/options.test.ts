import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import {
  booleanOption, bytesOption, checkOptions, closest, conflictingOptions, defineOptions, delimiterOption, durationOption, enumOption,
  functionOption, numberOption, opt, signalOption, stringOption,
} from '../../lib/core/options.js';

function throwsOption(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ManifoldError);
    assert.equal(error.code, ErrorCodes.INVALID_OPTION);
    assert.match(error.message, message);
    return true;
  });
}

describe('option validation', () => {
  it('names the factory, the option, the value and what is allowed', () => {
    throwsOption(() => bytesOption('s3Sink', 'commitSizeBytes', -1, 10), /^s3Sink: options\.commitSizeBytes must be a positive integer \(bytes\), got -1$/);
    throwsOption(() => durationOption('x', 'lingerMs', 'soon', 5), /options\.lingerMs must be a number of at least 1 \(milliseconds\), got "soon"/);
    throwsOption(() => numberOption('x', 'n', 11, 1, { min: 0, max: 10 }), /must be a number from 0 to 10, got 11/);
    throwsOption(() => numberOption('x', 'n', 1.5, 1, { min: 0, integer: true }), /must be a non-negative integer, got 1.5/);
    throwsOption(() => numberOption('x', 'n', NaN, 1), /got NaN/);
    throwsOption(() => numberOption('x', 'n', 99, 1, { max: 10 }), /of at most 10/);
    throwsOption(() => numberOption('x', 'prefetch', 70000, 1, { min: 1, max: 65535, integer: true }), /must be a positive integer of at most 65535, got 70000/);
    throwsOption(() => numberOption('x', 'n', 11, 1, { min: 0, max: 10, integer: true }), /must be a non-negative integer of at most 10/);
    throwsOption(() => enumOption('x', 'ackOn', 'cloud', ['disk', 'upload'] as const, 'disk'), /must be one of "disk", "upload", got "cloud"/);
    throwsOption(() => booleanOption('x', 'persistent', 'yes', true), /must be true or false, got "yes"/);
    throwsOption(() => stringOption('x', 'queue', '', { required: true }), /must be a non-empty string, got ""/);
    throwsOption(() => stringOption('x', 'queue', undefined, { required: true }), /got undefined/);
    throwsOption(() => functionOption('x', 'onOpen', 5), /must be a function, got 5/);
    throwsOption(() => signalOption('x', 'signal', {}), /must be an AbortSignal/);
    throwsOption(() => delimiterOption('x', 'delimiter', '', '\n'), /non-empty string or Buffer/);
    throwsOption(() => conflictingOptions('kinesisSink', 'streamName', 'streamARN', 'name different streams'), /options\.streamName and options\.streamARN name different streams/);
  });

  it('fills defaults and accepts good values', () => {
    assert.equal(bytesOption('x', 'b', undefined, 10), 10);
    assert.equal(numberOption('x', 'n', Infinity, 1, { min: 0, integer: true }), Infinity);
    assert.equal(enumOption('x', 'e', undefined, ['a', 'b'] as const, 'b'), 'b');
    assert.equal(booleanOption('x', 'b', false, true), false);
    assert.equal(stringOption('x', 's', undefined), undefined);
    assert.equal(functionOption('x', 'f', undefined), undefined);
    assert.deepEqual(delimiterOption('x', 'd', Buffer.from([0]), '\n'), Buffer.from([0]));
    assert.deepEqual(delimiterOption('x', 'd', undefined, '\n'), Buffer.from('\n'));
    const signal = new AbortController().signal;
    assert.equal(signalOption('x', 's', signal), signal);
  });

  it('rejects unknown options with a hint, and copies the object', () => {
    throwsOption(() => checkOptions('s3Sink', { commitSize: 5 }, ['commitSizeBytes', 'bucket']), /unknown option "commitSize" \(did you mean "commitSizeBytes"\?\)/);
    throwsOption(() => checkOptions('s3Sink', 'nope' as never, ['a']), /options must be an object, got "nope"/);
    const given = { a: 1 };
    const copy = checkOptions('x', given, ['a']);
    assert.notEqual(copy, given);
    assert.deepEqual(copy, given);
    assert.deepEqual(checkOptions('x', undefined, ['a']), {});
  });

  it('shortens long values in messages', () => {
    throwsOption(() => stringOption('x', 's', 5 as never), /got 5/);
    throwsOption(() => enumOption('x', 'e', 'y'.repeat(200), ['a'] as const, 'a'), /got "y{57}\.\.\."/);
  });

  it("hints by edit distance, not only by prefix", () => {
    const known = ['reconnectEveryMs', 'heartbeatIntervalMs', 'prefetch', 'persistent', 'routingKey', 'commitSizeBytes'];
    assert.equal(closest('reconectEveryMs', known), 'reconnectEveryMs');
    assert.equal(closest('hearbeatIntervalMs', known), 'heartbeatIntervalMs');
    assert.equal(closest('prefech', known), 'prefetch');
    assert.equal(closest('persistant', known), 'persistent');
    assert.equal(closest('routingkey', known), 'routingKey');
    assert.equal(closest('commitSize', known), 'commitSizeBytes');
    assert.equal(closest('bucket', known), undefined);
    throwsOption(() => checkOptions('websocketSource', { reconectEveryMs: 5 }, known), /unknown option "reconectEveryMs" \(did you mean "reconnectEveryMs"\?\)/);
  });

  it('a declaration validates, fills defaults, copies, and names the factory and the option', () => {
    const declared = defineOptions('demoSink', {
      lingerMs: opt.duration('How long to wait.', { default: 50 }),
      mode: opt.enum('How.', ['a', 'b'], { default: 'a' }),
      name: opt.string('Who.', { required: true }),
      sizeBytes: opt.bytes('How much.', { max: 1024, note: 'the protocol limit' }),
    });
    const given = { name: 'x' };
    const resolved = declared.resolve(given);
    assert.deepEqual(resolved, { lingerMs: 50, mode: 'a', name: 'x', sizeBytes: undefined });
    assert.notEqual(resolved as object, given);
    throwsOption(() => declared.resolve({ name: 'x', lingerMs: -1 }), /^demoSink: options\.lingerMs must be a number of at least 1 \(milliseconds\), got -1$/);
    throwsOption(() => declared.resolve({ name: 'x', sizeBytes: 4096 }), /must be a positive integer of at most 1024 \(bytes; the protocol limit\), got 4096/);
    throwsOption(() => declared.resolve({}), /options\.name must be a non-empty string, got undefined/);
    throwsOption(() => declared.resolve({ name: 'x', mdoe: 'a' }), /unknown option "mdoe" \(did you mean "mode"\?\)/);
  });
});
