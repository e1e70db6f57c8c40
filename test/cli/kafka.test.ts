/**
 * kafka:// on the command line: keys read by the kafkaSource/kafkaSink declarations (usage errors through
 * main() with a fake io, before anything connects), and a round trip through a real broker as child processes.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { cliKeys } from '../../lib/cli/options.js';
import { kafkaSinkOptions, kafkaSourceOptions } from '../../lib/kafka/options.js';
import { startKafka, type KafkaBroker } from '../fixtures/kafka.js';
import { usage } from '../fixtures/cli.js';

const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');

describe('kafka: on the command line, before connecting', () => {
  const bad: Array<[string, string[], RegExp]> = [
    ['a misspelt source key', ['kafka://127.0.0.1:9092/t?grup=x', 'stdout:'], /kafka:\/\/127\.0\.0\.1:9092\/t\?grup=x: unknown option "grup" \(did you mean "group"\?\)/],
    ['a misspelt sink key', ['stdin:', 'kafka://127.0.0.1:9092/t?lingr=5ms'], /unknown option "lingr" \(did you mean "linger"\?\)/],
    ['a source key on a sink', ['stdin:', 'kafka://127.0.0.1:9092/t?group=g'], /unknown option "group"; known options are clientId, sasl, tls, connectTimeout, acks/],
    ['a query key that is no option', ['kafka://127.0.0.1:9092/t?group=g&session.timeout.ms=6000', 'stdout:'], /unknown option "session\.timeout\.ms"/],
    ['no group', ['kafka://127.0.0.1:9092/t', 'stdout:'], /a Kafka source reads as a consumer group: add group=<name>/],
    ['a bad enum', ['kafka://127.0.0.1:9092/t?group=g&from=beginning', 'stdout:'], /from must be one of latest, earliest, got "beginning"/],
    ['a bad duration', ['kafka://127.0.0.1:9092/t?group=g&commitInterval=soon', 'stdout:'], /commitInterval must be a duration such as 500ms, 30s, 5m or 12h, got "soon"/],
    ['a size below the minimum', ['kafka://127.0.0.1:9092/t?group=g&fetchMax=1', 'stdout:'], /fetchMax must be a size such as 512KiB, 1MiB or 1048576 of at least 1024 bytes, got "1"/],
    ['a count out of range', ['stdin:', 'kafka://127.0.0.1:9092/t?maxInFlightRequests=6'], /maxInFlightRequests must be a whole number from 1 to 5, got "6"/],
    ['a bad boolean', ['stdin:', 'kafka://127.0.0.1:9092/t?idempotent=maybe'], /idempotent must be true or false, got "maybe"/],
    ['a combination the factory refuses', ['stdin:', 'kafka://127.0.0.1:9092/t?acks=leader&idempotent=true'], /kafkaSink: options\.idempotent and options\.acks cannot be combined/],
    ['no topic', ['stdin:', 'kafka://127.0.0.1:9092/'], /give brokers and topic as kafka:\/\/host:9092\/topic/],
    ['a broker without a port', ['stdin:', 'kafka://localhost/t'], /kafkaSink: options\.brokers must be a list of "host:port" strings, got "localhost"/],
  ];
  for (const [name, argv, message] of bad) {
    it(`exits 2: ${name}`, async () => {
      const run = await usage(argv);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, message);
      assert.doesNotMatch(run.stderr, /required/);
      assert.equal(run.stdout, '');
    });
  }

  it('a wrongly typed pipeline-file value says what it got and what it wants', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'manifold-kafka-cli-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const cases: Array<[string, RegExp]> = [
      ['commitInterval: true', /commitInterval must be a duration such as 500ms, 30s, 5m or 12h, got true/],
      ['maxInFlightPerPartition: [1]', /maxInFlightPerPartition must be a whole number of at least 1, got a list of 1/],
      ['from: 7', /from must be one of latest, earliest, got 7/],
      ['groupId: g', /unknown option "groupId" \(did you mean "group"\?\)/],
    ];
    for (const [line, message] of cases) {
      const file = join(dir, 'p.yaml');
      const group = line.startsWith('groupId') ? '' : 'group: g, ';
      writeFileSync(file, `from: { uri: "kafka://127.0.0.1:9092/t", ${group}${line} }\nto: "stdout:"\n`);
      const run = await usage(['run', file]);
      assert.equal(run.code, 2, line);
      assert.match(run.stderr, message, line);
      assert.doesNotMatch(run.stderr, /required/, line);
    }
  });

  it('docs/kafka.md lists the URI keys of each declaration, no more and no fewer', () => {
    const text = readFileSync(new URL('../../docs/kafka.md', import.meta.url), 'utf8');
    const section = text.slice(text.indexOf('## On the command line'));
    const listed = (role: string) => [...(section.split('\n').find((l) => l.startsWith(`- ${role}: `)) ?? '').matchAll(/`([^`]+)`/g)].map((m) => m[1]);
    assert.deepEqual(listed('source').sort(), [...cliKeys(kafkaSourceOptions).keys()].sort());
    assert.deepEqual(listed('sink').sort(), [...cliKeys(kafkaSinkOptions).keys()].sort());
  });
});

describe('kafka: on the command line, against a real broker', () => {
  let broker: KafkaBroker;
  before(async () => {
    broker = await startKafka();
  });
  after(async () => {
    await broker?.stop();
  });

  function manifold(args: string[], input?: string) {
    const proc = spawn(process.execPath, ['--import', 'tsx', bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
    proc.stdin.on('error', () => {});
    if (input !== undefined) proc.stdin.end(input);
    const code = new Promise<number | null>((resolve) => proc.once('exit', resolve));
    return { proc, code, stdout: () => out, stderr: () => err };
  }

  it('stdin: -> kafka:// with sink keys, then kafka:// with source keys -> stdout:; every line arrives and is committed', async (t) => {
    const topic = await broker.createTopic({ partitions: 1 });
    const group = `g-${topic}`;
    const lines = Array.from({ length: 300 }, (_, i) => JSON.stringify({ i }));

    const produce = manifold(
      ['stdin:', `kafka://${broker.bootstrap}/${topic}?clientId=cli-test&acks=all&idempotent=true&linger=5ms&batchSize=50&batchBytes=4KiB&maxInFlightRequests=2&compression=gzip&maxMessage=1KiB&connectTimeout=5s`, '-q'],
      `${lines.join('\n')}\n`,
    );
    t.after(() => produce.proc.kill('SIGKILL'));
    assert.equal(await produce.code, 0, produce.stderr());
    // An independent client (librdkafka) reads what the sink produced.
    const { stdout } = await promisify(execFile)('kcat', ['-b', broker.bootstrap, '-C', '-t', topic, '-e', '-q', '-f', '%s\n']);
    assert.deepEqual(stdout.trimEnd().split('\n'), lines);

    const consume = manifold([
      `kafka://${broker.bootstrap}/${topic}?group=${group}&from=earliest&clientId=cli-test&commitInterval=200ms&maxWait=100ms&sessionTimeout=6s&heartbeatInterval=1s&closeTimeout=5s&maxInFlightPerPartition=100&fetchMax=64KiB&autocreateTopics=false`,
      'stdout:',
      '-q',
    ]);
    t.after(() => consume.proc.kill('SIGKILL'));
    for (let i = 0; consume.stdout().split('\n').length <= lines.length && i < 1500; i++) await sleep(20);
    consume.proc.kill('SIGTERM');
    assert.equal(await consume.code, 0, consume.stderr());
    assert.deepEqual(consume.stdout().trimEnd().split('\n'), lines);
    assert.deepEqual(await broker.committed(group, topic, 1), [300n], 'close committed every acked line for the group given as group=');
  });
});
