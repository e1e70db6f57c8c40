/**
 * kinesis: on the command line: keys read by the kinesisSource/kinesisSink/dynamoLeases declarations
 * (usage errors through main() with a fake io, before anything connects), and the clients the
 * factories build for a kinesis: URI, which have SDK retries off. The round trip through
 * kinesis-local and dynalite is in connectors.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { once } from 'node:events';
import { parseEndpoint } from '../../lib/cli/endpoints.js';
import '../../lib/cli/schemes.js';
import { failingAwsServer } from '../fixtures/kinesis.js';
import { createMessage } from '../../lib/core/message.js';
import { usage } from '../fixtures/cli.js';

describe('kinesis: on the command line, before connecting', () => {
  const bad: Array<[string, string[], RegExp]> = [
    ['a misspelt source key', ['kinesis:s?maxInFlightPerShrd=5', 'stdout:'], /kinesis:s\?maxInFlightPerShrd=5: unknown option "maxInFlightPerShrd" \(did you mean "maxInFlightPerShard"\?\)/],
    ['a misspelt sink key', ['stdin:', 'kinesis:s?lingr=5ms'], /unknown option "lingr" \(did you mean "linger"\?\)/],
    ['a misspelt lease key', ['kinesis:s?leaseTabel=t', 'stdout:'], /unknown option "leaseTabel" \(did you mean "leaseTable"\?\)/],
    ['a source key on a sink', ['stdin:', 'kinesis:s?from=latest'], /unknown option "from"; known options are region, endpoint, requestTimeout, connectTimeout, tls, partitionKey/],
    ['a query key that is no option', ['kinesis:s?ShardIteratorType=LATEST', 'stdout:'], /unknown option "ShardIteratorType"/],
    ['a library-only option as a key', ['kinesis:s?checkpointer=x', 'stdout:'], /unknown option "checkpointer" \(did you mean "checkpoint"\?\)/],
    ['a bad from', ['kinesis:s?from=yesterday', 'stdout:'], /from must be latest, trim-horizon, earliest or an ISO time such as 2025-01-31T12:00:00Z, got "yesterday"/],
    ['a bad duration', ['kinesis:s?checkpointInterval=soon', 'stdout:'], /checkpointInterval must be a duration such as 500ms, 30s, 5m or 12h, got "soon"/],
    ['a poll interval below what Kinesis allows', ['kinesis:s?pollInterval=50ms', 'stdout:'], /pollInterval must be a duration such as 500ms, 30s, 5m or 12h of at least 200 ms, got "50ms"/],
    ['a count above the PutRecords limit', ['stdin:', 'kinesis:s?maxBatchRecords=501'], /maxBatchRecords must be a whole number from 1 to 500 \(the PutRecords limit\), got "501"/],
    ['a size above the PutRecords limit', ['stdin:', 'kinesis:s?maxBatch=6MiB'], /maxBatch must be a size such as 512KiB, 1MiB or 1048576 from 1 to 5242880 bytes \(the PutRecords limit\), got "6MiB"/],
    ['an endpoint that is not http(s)', ['kinesis:s?endpoint=ftp://x', 'stdout:'], /endpoint must be an http:\/\/ or https:\/\/ URL, got "ftp:\/\/x"/],
    ['empty shards', ['kinesis:s?shards=a,,b', 'stdout:'], /shards must be a non-empty array of shard ids, got "a,,b"/],
    ['workerId= without leaseTable=', ['kinesis:s?workerId=w1', 'stdout:'], /workerId= goes with leaseTable=/],
    ['dynamoEndpoint= without leaseTable=', ['kinesis:s?dynamoEndpoint=http://127.0.0.1:1', 'stdout:'], /dynamoEndpoint= goes with leaseTable=/],
    ['checkpoint= with leaseTable=', ['kinesis:s?leaseTable=t&checkpoint=./c.json', 'stdout:'], /checkpoint= and leaseTable= cannot be combined/],
    ['shards= with leaseTable=', ['kinesis:s?leaseTable=t&shards=shardId-000000000000', 'stdout:'], /shards= and leaseTable= cannot be combined/],
    ['no stream', ['kinesis:', 'stdout:'], /give the stream as kinesis:<stream>/],
    ['a bad stream name (the factory refuses it)', ['kinesis:bad%20name', 'stdout:'], /kinesisSource: options\.streamName must be a Kinesis stream name/],
    ['a bad lease table name (the factory refuses it)', ['kinesis:s?leaseTable=ab', 'stdout:'], /dynamoLeases: options\.tableName must be a DynamoDB table name/],
    ['a combination the factory refuses', ['kinesis:s?deregisterOnClose=true', 'stdout:'], /kinesisSource: options\.deregisterOnClose and options\.consumerName go together/],
    ['a combination the source refuses, with a lease table', ['kinesis:s?leaseTable=leases&deregisterOnClose=true', 'stdout:'], /kinesisSource: options\.deregisterOnClose and options\.consumerName go together/],
  ];
  for (const [name, argv, message] of bad) {
    it(`exits 2: ${name}`, async () => {
      const run = await usage(argv);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, message);
      assert.equal(run.stdout, '');
    });
  }

  it('a wrongly typed pipeline-file value says what it got and what it wants', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'manifold-kinesis-cli-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const cases: Array<[string, string, RegExp]> = [
      ['from', 'maxInFlightPerShard: true', /kinesis:s: maxInFlightPerShard must be a whole number of at least 1, got true/],
      ['from', 'maxInFlightPerShard: "5"', /maxInFlightPerShard must be a whole number of at least 1, got "5"/],
      ['from', 'checkpointInterval: [1]', /checkpointInterval must be a duration such as 500ms, 30s, 5m or 12h, got a list of 1/],
      ['from', 'from: 7', /from must be latest, trim-horizon, earliest or an ISO time such as 2025-01-31T12:00:00Z, got 7/],
      ['from', 'deregisterOnClose: "yes"', /deregisterOnClose must be true or false, got "yes"/],
      ['from', 'leaseDuration: {}', /leaseDuration must be a duration such as 500ms, 30s, 5m or 12h of at least 100 ms, got an empty mapping/],
      ['from', 'startingPosition: LATEST', /unknown option "startingPosition"/],
      ['to', 'maxInFlightRequests: 1.5', /maxInFlightRequests must be a whole number of at least 1, got 1\.5/],
    ];
    for (const [role, line, message] of cases) {
      const file = join(dir, 'p.yaml');
      const endpoint = '{ uri: "kinesis:s", ' + line + ' }';
      writeFileSync(file, role === 'from' ? `from: ${endpoint}\nto: "stdout:"\n` : `from: "stdin:"\nto: ${endpoint}\n`);
      const run = await usage(['run', file]);
      assert.equal(run.code, 2, line);
      assert.match(run.stderr, message, line);
    }
  });

  it('the help and the pipeline-file JSON Schema list the keys', async () => {
    const help = await usage(['--help']);
    assert.match(help.stdout, /kinesis:<stream>\?region=us-east-1&from=trim-horizon&checkpoint=/);
    const schema = await usage(['schema']);
    const mappings = (JSON.parse(schema.stdout).properties.from.anyOf as Array<{ properties?: Record<string, unknown> }>).filter((m) =>
      (m.properties?.uri as { pattern?: string } | undefined)?.pattern?.startsWith('^kinesis'),
    );
    assert.equal(mappings.length, 1);
    const keys = Object.keys(mappings[0]!.properties!);
    for (const key of ['from', 'checkpoint', 'shards', 'maxInFlightPerShard', 'checkpointInterval', 'leaseTable', 'dynamoEndpoint', 'workerId', 'leaseDuration', 'requestTimeout']) {
      assert.ok(keys.includes(key), `${key} in ${keys.join(', ')}`);
    }
    for (const key of ['streamName', 'checkpointer', 'coordinator', 'startingPosition', 'tableName', 'lease.tableName']) assert.ok(!keys.includes(key), key);
  });
});

/** failingAwsServer() with AWS credentials in the environment, as the CLI passes none and the SDK reads them from there. */
async function failingAws(t: { after(fn: () => unknown): void }): Promise<{ endpoint: string; calls: Map<string, number> }> {
  const { endpoint, calls } = await failingAwsServer(t);
  // The CLI passes no credentials: the SDK reads them from the environment.
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
  process.env.AWS_ACCESS_KEY_ID = 'AKIDTEST';
  process.env.AWS_SECRET_ACCESS_KEY = 'test-secret';
  t.after(() => {
    for (const [key, value] of [['AWS_ACCESS_KEY_ID', saved.id], ['AWS_SECRET_ACCESS_KEY', saved.secret]] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  });
  return { endpoint, calls };
}

describe('kinesis: the clients the factories build for a URI', () => {
  it('have SDK retries off: the first failed call reaches our retry (a retry event) after one request, for Kinesis and the lease table', async (t) => {
    const aws = await failingAws(t);
    const endpoint = encodeURIComponent(aws.endpoint);

    const source = (await parseEndpoint(`kinesis:s?endpoint=${endpoint}&leaseTable=leases&dynamoEndpoint=${endpoint}&requestTimeout=5s`, 'source').create()) as Readable & { close(): Promise<void> };
    const retried = once(source, 'retry') as Promise<[{ operation: string; attempt: number }]>;
    source.on('error', () => {});
    source.resume();
    const [event] = await retried;
    assert.equal(event.operation, 'lease table setup');
    assert.equal(event.attempt, 1);
    // With SDK retries on (its default: 3 attempts), DescribeTable would have been sent 3 times before our first retry.
    assert.equal(aws.calls.get('DescribeTable'), 1, JSON.stringify([...aws.calls]));
    assert.equal(aws.calls.get('DescribeStreamSummary'), 1);
    source.destroy();
    await once(source, 'close');

    const sink = (await parseEndpoint(`kinesis:s?endpoint=${endpoint}&linger=1ms`, 'sink').create()) as Writable;
    sink.on('error', () => {});
    const sinkRetried = once(sink, 'retry') as Promise<[{ attempt: number }]>;
    sink.write(createMessage({ data: Buffer.from('x'), key: 'k' }));
    const [sinkEvent] = await sinkRetried;
    assert.equal(sinkEvent.attempt, 1);
    assert.equal(aws.calls.get('PutRecords'), 1, JSON.stringify([...aws.calls]));
    sink.destroy();
    await once(sink, 'close');
  });
});
