import assert from 'node:assert/strict';
import { it } from 'node:test';
import { formatBytes, formatDuration, isUnitless, parseBytes, parseDuration } from '../../lib/cli/units.js';

it('parses sizes with units', () => {
  assert.equal(parseBytes('1MiB'), 1024 * 1024);
  assert.equal(parseBytes('512KB'), 512_000);
  assert.equal(parseBytes('64k'), 65_536);
  assert.equal(parseBytes('1.5GiB'), 1.5 * 1024 ** 3);
  assert.equal(parseBytes('1048576'), 1_048_576);
  assert.equal(parseBytes(42), 42);
  assert.equal(parseBytes('1 XB'), undefined);
  assert.equal(parseBytes('-1'), undefined);
  assert.equal(parseBytes(-5), undefined);
});

it('parses durations with units, compound ones too', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('30s'), 30_000);
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration('12h'), 43_200_000);
  assert.equal(parseDuration('1d'), 86_400_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration(7), 7, 'a number (a pipeline file\'s YAML number) is milliseconds');
  assert.equal(parseDuration(' 30s '), 30_000);
  assert.equal(parseDuration('soon'), undefined);
  assert.equal(parseDuration('5 parsecs'), undefined);
  assert.equal(parseDuration(''), undefined);
});

it('refuses a duration written as text without a unit: "30" could be ms or s', () => {
  for (const text of ['30', '250', ' 30 ', '1.5']) {
    assert.equal(parseDuration(text), undefined, text);
    assert.ok(isUnitless(text), text);
  }
  assert.ok(!isUnitless('30s'));
  assert.equal(parseDuration('0'), 0, '0 is 0 in every unit');
  assert.ok(!isUnitless('0'));
  assert.ok(!isUnitless(30), 'a YAML number is not text');
});

it('formats durations for log lines', () => {
  assert.equal(formatDuration(450), '450ms');
  assert.equal(formatDuration(59_600), '1m');
  assert.equal(formatDuration(185_000), '3m 5s');
  assert.equal(formatDuration(3_600_000 + 2000), '1h 2s');
  assert.equal(formatDuration(2 * 86_400_000), '2d');
});

it('formats byte counts', () => {
  assert.equal(formatBytes(12), '12 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(5 * 1024 ** 3), '5.0 GiB');
});
