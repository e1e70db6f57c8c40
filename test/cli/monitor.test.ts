/**
 * The command's monitor against real servers: /readyz through a RabbitMQ outage, /healthz as
 * liveness, --metrics-host, and /metrics read during a run and compared with the truth on disk
 * (S3 buffer), in the broker (Kafka committed offsets) and in the lease table (Kinesis leases).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Monitor, type ConnectorStatus, type Readiness } from '../../lib/cli/monitor.js';
import type { Logger } from '../../lib/cli/log.js';
import { flow, type Flow, type FlowOptions } from '../../lib/core/flow.js';
import type { Message } from '../../lib/core/message.js';
import { kafkaSource } from '../../lib/kafka/source.js';
import { dynamoLeases } from '../../lib/kinesis/dynamo-leases.js';
import { kinesisSource } from '../../lib/kinesis/source.js';
import { rabbitmqSink } from '../../lib/rabbitmq/sink.js';
import { rabbitmqSource } from '../../lib/rabbitmq/source.js';
import { s3Sink } from '../../lib/s3/sink.js';
import { startDynamo } from '../fixtures/dynamodb.js';
import { startKafka } from '../fixtures/kafka.js';
import { createStream, deleteStream, failingAwsServer, putRaw, startKinesisServer } from '../fixtures/kinesis.js';
import { RABBITMQ_URL, RabbitFixture, closeConnectionsNamed, randomName } from '../fixtures/rabbitmq.js';
import { startS3 } from '../fixtures/s3.js';

const quiet: Logger = { info() {}, warn() {}, error() {}, flush() {} };

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** A sink that acks what `hold` does not pick; held messages are returned for the test to settle. */
function ackingSink(hold: (m: Message) => boolean = () => false): { sink: Writable; held: Message[]; ackAll(): void } {
  const held: Message[] = [];
  let all = false;
  const sink = new Writable({
    objectMode: true,
    write(m: Message, _encoding, callback) {
      if (!all && hold(m)) held.push(m);
      else m.ack();
      callback();
    },
  });
  return {
    sink,
    held,
    ackAll() {
      all = true;
      for (const m of held.splice(0)) m.ack();
    },
  };
}

/** A flow watched by a monitor serving on 127.0.0.1:<any port>; both are stopped after the test. */
async function watched(
  t: TestContext,
  source: PassThrough | NodeJS.ReadableStream,
  sink: Writable,
  endpoints = {},
  transforms: FlowOptions['transforms'] = [],
): Promise<{ running: Flow; monitor: Monitor; base: string }> {
  const running = flow({ source: source as never, transforms, sink, closeTimeoutMs: 5_000 });
  running.catch(() => undefined);
  const monitor = new Monitor(running, source as never, sink, quiet, endpoints);
  const port = await monitor.listen(0);
  t.after(async () => {
    await monitor.close();
    await running.stop().catch(() => undefined);
  });
  return { running, monitor, base: `http://127.0.0.1:${port}` };
}

async function readyz(base: string): Promise<{ status: number; body: Readiness }> {
  const res = await fetch(`${base}/readyz`);
  return { status: res.status, body: (await res.json()) as Readiness };
}

/** The value of one sample of `/metrics`, by name and labels; undefined when absent. */
async function metric(base: string, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const wanted = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',');
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z0-9_:]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[2] ?? '').split(',').filter(Boolean).sort().join(',');
    if (have === wanted) return Number(m[3]);
  }
  return undefined;
}

function connector(body: Readiness, role: 'source' | 'sink'): ConnectorStatus {
  return body.connectors.find((c) => c.role === role)!;
}

describe('monitor: /healthz and /readyz through a RabbitMQ outage', () => {
  it('/readyz is 503 naming the disconnected connector and its last error while it reconnects, then 200; /healthz stays 200', async (t) => {
    const f = new RabbitFixture();
    t.after(() => f.cleanup());
    const [from, to] = [await f.queue('from'), await f.queue('to')];
    const [sourceName, sinkName] = [randomName('monitor-src'), randomName('monitor-sink')];
    // A slow first retry after a healthy connection was lost (2 to 4 s): the outage lasts long enough to be seen.
    const retry = { retries: 20, minTimeoutMs: 2_000, maxTimeoutMs: 4_000 };
    const source = rabbitmqSource({ url: RABBITMQ_URL, queue: from, connectionName: sourceName, retry });
    const sink = rabbitmqSink({ url: RABBITMQ_URL, routingKey: to, connectionName: sinkName, retry });
    // A delivered message's key is the queue it came from, which the sink would publish to: it goes to `to` instead.
    const unkeyed = async function* (messages: AsyncIterable<Message>): AsyncIterable<Message> {
      for await (const m of messages) yield { ...m, key: undefined };
    };
    const endpoints = { source: `amqp://guest:***@127.0.0.1/?queue=${from}`, sink: 'amqp://guest:***@127.0.0.1/' };
    const { base } = await watched(t, source, sink, endpoints, [unkeyed]);

    await until('ready', async () => (await readyz(base)).status === 200);
    const ready = (await readyz(base)).body;
    assert.equal(ready.status, 'ready');
    assert.deepEqual(ready.connectors.map((c) => [c.role, c.connector, c.state, c.connected]), [
      ['source', 'RabbitmqSource', 'connected', true],
      ['sink', 'RabbitmqSink', 'connected', true],
    ]);
    assert.equal(connector(ready, 'source').endpoint, `amqp://guest:***@127.0.0.1/?queue=${from}`);
    await f.produce(from, [Buffer.from('one')]);
    await until('the first message through', async () => (await f.count(to)) === 1);

    for (const [role, name] of [['source', sourceName], ['sink', sinkName]] as const) {
      const reason = `monitor test closes the ${role}`;
      assert.equal(await closeConnectionsNamed(name, reason), 1);
      await until(`503 for the ${role}`, async () => (await readyz(base)).status === 503, 10_000);
      const down = (await readyz(base)).body;
      assert.equal(down.status, 'not ready');
      const c = connector(down, role);
      assert.deepEqual([c.state, c.connected, c.ready, c.retrying], ['reconnecting', false, false, true], JSON.stringify(c));
      assert.equal(c.lastError?.code, 'MANIFOLD_ERR_CONNECTION');
      assert.equal(c.lastError?.reason, `AMQP 320 CONNECTION_FORCED - ${reason}`);
      assert.ok(c.lastError?.message.includes(reason), c.lastError?.message);
      assert.ok(Date.parse(c.since) > Date.now() - 10_000);
      const other = connector(down, role === 'source' ? 'sink' : 'source');
      assert.equal(other.ready, true, 'the other connector is fine');
      assert.equal(await metric(base, 'manifold_connector_ready', { role }), 0);
      const health = await fetch(`${base}/healthz`);
      assert.equal(health.status, 200, 'liveness does not follow the broker');
      assert.equal(((await health.json()) as { status: string }).status, 'ok');

      await until(`200 after the ${role} reconnected`, async () => (await readyz(base)).status === 200, 15_000);
      const back = connector((await readyz(base)).body, role);
      assert.deepEqual([back.state, back.ready, back.reconnects], ['connected', true, 1]);
      assert.equal(back.lastError?.code, 'MANIFOLD_ERR_CONNECTION', 'the last error is kept after the recovery');
      assert.equal(await metric(base, 'manifold_connector_ready', { role }), 1);
    }
    await f.produce(from, [Buffer.from('two')]);
    await until('the second message through', async () => (await f.count(to)) === 2);
  });
});

describe('monitor: an AWS service error', () => {
  it("a Kinesis call failing with 500 InternalFailure: the retry error names the service's code, /readyz says it", async (t) => {
    // kinesis-local does not fail on demand: a loopback server answers DescribeStreamSummary, and every other call with a 500.
    const { endpoint } = await failingAwsServer(t);
    const source = kinesisSource({ streamName: 's', endpoint, region: 'us-east-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, retry: { retries: 1000, minTimeoutMs: 20, maxTimeoutMs: 50 } });
    const retries: Error[] = [];
    source.on('retry', (e: { error: Error }) => retries.push(e.error));
    const { sink } = ackingSink();
    const { base, running } = await watched(t, source, sink);
    await until('a retry', () => retries.length > 0);
    assert.match(retries[0]!.message, /ListShards on "s" failed: InternalFailure: try again/);
    const status = connector((await readyz(base)).body, 'source');
    assert.deepEqual([status.state, status.retrying, status.lastError?.code, status.lastError?.reason], ['connecting', true, 'MANIFOLD_ERR_CONNECTION', 'AWS InternalFailure']);
    assert.equal((await readyz(base)).status, 503);
    // Before the server closes (t.after hooks run in the order they were added).
    await running.stop();
  });
});

describe('monitor: --metrics-host', () => {
  it('manifold_kpl_malformed_total counts the source\'s malformed events', async (t) => {
    const source = new PassThrough({ objectMode: true });
    const { sink } = ackingSink();
    const { base } = await watched(t, source, sink);
    assert.equal(await metric(base, 'manifold_kpl_malformed_total'), 0);
    for (let i = 0; i < 3; i++) source.emit('malformed', { shardId: 'shardId-000000000000', sequenceNumber: String(i), fault: 'digest', reason: 'bad MD5', bytes: 10 });
    assert.equal(await metric(base, 'manifold_kpl_malformed_total'), 3);
  });

  it('listen(port, "0.0.0.0") binds every address; reached here through 127.0.0.1', async (t) => {
    const source = new PassThrough({ objectMode: true });
    const { sink } = ackingSink();
    const running = flow({ source, sink });
    const monitor = new Monitor(running, source, sink, quiet);
    const port = await monitor.listen(0, '0.0.0.0');
    t.after(async () => {
      await monitor.close();
      source.end();
      await running;
    });
    assert.deepEqual({ address: monitor.address?.address, port: monitor.address?.port }, { address: '0.0.0.0', port });
    const res = await fetch(`http://127.0.0.1:${port}/readyz`);
    assert.equal(res.status, 200, 'stream sources and sinks hold no connection: ready from the start');
  });

  it('the command takes --metrics-host and says where it listens; by default it is 127.0.0.1', async () => {
    const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');
    for (const [args, host] of [[['--metrics-host', '0.0.0.0'], '0.0.0.0'], [[], '127.0.0.1']] as const) {
      const proc = spawn(process.execPath, ['--import', 'tsx', bin, 'stdin:', 'stdout:', '--metrics-port', '0', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let err = '';
      proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const exited = new Promise((resolve) => proc.once('exit', resolve));
      let port = 0;
      await until('the metrics line', () => {
        const m = /metrics on http:\/\/([\d.]+):(\d+)\/metrics/.exec(err);
        if (m) {
          assert.equal(m[1], host);
          port = Number(m[2]);
        }
        return port > 0;
      }, 20_000);
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
      assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);
      proc.stdin.end();
      await exited;
    }
  });
});

describe('monitor: metrics read during a run, against the truth', () => {
  it('manifold_s3_buffer_files and _bytes are what is in bufferPath, during an outage and after the uploads', async (t) => {
    const s3 = await startS3();
    t.after(() => s3.cleanup());
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir('monitor');
    const source = new PassThrough({ objectMode: true });
    const sink = s3Sink({ bucket, bufferPath, client: s3.client, commitSizeBytes: 256, commitIntervalMs: 150, syncIntervalMs: 10, uploadIntervalMs: 100, retry: { retries: 1, minTimeoutMs: 20, maxTimeoutMs: 40 } });
    const { base, running } = await watched(t, source, sink);
    const onDisk = async (): Promise<{ files: number; bytes: number }> => {
      let files = 0;
      let bytes = 0;
      for (const dir of await readdir(bufferPath)) {
        if (dir === '.lock') continue;
        for (const name of await readdir(join(bufferPath, dir)).catch(() => [] as string[])) {
          const info = await stat(join(bufferPath, dir, name)).catch(() => undefined);
          if (!info) continue;
          bytes += info.size;
          if (dir !== '.active') files += 1;
        }
      }
      return { files, bytes };
    };
    const agree = async (what: string, check: (disk: { files: number; bytes: number }) => boolean): Promise<{ files: number; bytes: number }> => {
      let seen = '';
      let disk = { files: -1, bytes: -1 };
      await until(what, async () => {
        disk = await onDisk();
        const scraped = { files: await metric(base, 'manifold_s3_buffer_files'), bytes: await metric(base, 'manifold_s3_buffer_bytes') };
        seen = `disk ${JSON.stringify(disk)}, metrics ${JSON.stringify(scraped)}`;
        return check(disk) && scraped.files === disk.files && scraped.bytes === disk.bytes && JSON.stringify(disk) === JSON.stringify(await onDisk());
      }).catch((error: Error) => {
        throw new Error(`${error.message}: ${seen}`);
      });
      return disk;
    };
    const write = async (label: string, n: number): Promise<void> => {
      for (let i = 0; i < n; i++) source.write(`${label}-${String(i).padStart(3, '0')}-${'y'.repeat(25)}`);
      await until(`${label} acked`, () => running.stats.acks === running.stats.messages);
    };

    await write('a', 30);
    await agree('a uploaded: nothing waits', (d) => d.files === 0 && d.bytes === 0);
    assert.equal((await readyz(base)).status, 200);

    await s3.stop();
    await write('b', 30);
    const down = await agree('b waiting on disk', (d) => d.files >= 3 && d.bytes === 30 * 32);
    await until('not ready while the uploads fail', async () => (await readyz(base)).status === 503);
    const sinkStatus = connector((await readyz(base)).body, 'sink');
    assert.equal(sinkStatus.retrying, true);
    assert.equal(sinkStatus.backlog?.files, down.files);
    assert.equal(sinkStatus.backlog?.bytes, down.bytes);
    assert.ok(sinkStatus.backlog!.oldestAgeSeconds >= 0);
    assert.ok(sinkStatus.lastError?.code, JSON.stringify(sinkStatus.lastError));

    await s3.start();
    await agree('b uploaded: back down to nothing', (d) => d.files === 0 && d.bytes === 0);
    await until('ready once uploads go through', async () => (await readyz(base)).status === 200);
    source.end();
    await running;
  });

  it('manifold_kafka_lag{topic,partition} is the end offset minus the committed offset the broker has', async (t) => {
    const broker = await startKafka();
    t.after(() => broker.stop());
    const topic = await broker.createTopic({ partitions: 2 });
    const groupId = `g-${randomUUID()}`;
    const produced = [25, 12];
    await broker.produce(topic, [
      ...Array.from({ length: produced[0]! }, (_, i) => ({ value: `m-${i}`, partition: 0 })),
      ...Array.from({ length: produced[1]! }, (_, i) => ({ value: `m-${i}`, partition: 1 })),
    ]);
    const source = kafkaSource({ brokers: broker.bootstrap, topics: topic, groupId, startFrom: 'earliest', commitIntervalMs: 100, sessionTimeoutMs: 6000, heartbeatIntervalMs: 500, maxWaitMs: 100, closeTimeoutMs: 5000 });
    // Offsets from 5 on are held (not acked) on partition 0, from 8 on partition 1.
    const { sink, ackAll } = ackingSink((m) => Number(m.meta!.offset) >= [5, 8][m.meta!.partition as number]!);
    const { base, running } = await watched(t, source, sink);
    const agree = async (what: string, expected: number[]): Promise<void> => {
      let seen = '';
      await until(what, async () => {
        const committed = await broker.committed(groupId, topic, 2);
        const lag = [await metric(base, 'manifold_kafka_lag', { topic, partition: '0' }), await metric(base, 'manifold_kafka_lag', { topic, partition: '1' })];
        seen = `committed ${committed.join(',')}, lag ${lag.join(',')}`;
        return [0, 1].every((p) => lag[p] === expected[p] && lag[p] === produced[p]! - Number(committed[p]));
      }).catch((error: Error) => {
        throw new Error(`${error.message}: ${seen}`);
      });
    };
    await agree('lag 20 and 4', [20, 4]);
    const status = connector((await readyz(base)).body, 'source');
    assert.deepEqual(status.lag, { [`${topic}/0`]: 20, [`${topic}/1`]: 4 });
    ackAll();
    await agree('lag 0 and 0', [0, 0]);
    // Before the broker stops (t.after hooks run in the order they were added).
    await running.stop();
  });

  it('manifold_kinesis_leases_held is the lease rows this worker owns; manifold_kinesis_millis_behind_latest has every shard it reads', async (t) => {
    const [kinesis, dynamo] = await Promise.all([startKinesisServer(), startDynamo()]);
    // t.after hooks run in the order they are added, so the servers would stop before the flow and the lease view
    // that talk to them (a closing source then retried against them for minutes): one hook undoes all, last first.
    const undo: Array<() => unknown> = [() => Promise.all([kinesis.stop(), dynamo.stop()])];
    t.after(async () => {
      for (const step of undo.reverse()) await Promise.resolve(step()).catch(() => undefined);
    });
    const later = { after: (step: () => unknown) => undo.push(step) } as unknown as TestContext;
    const raw = kinesis.client();
    const { streamName } = await createStream(raw, 3);
    undo.push(() => deleteStream(raw, streamName));
    await putRaw(raw, streamName, Array.from({ length: 60 }, (_, i) => ({ data: Buffer.from(`k-${i}`), key: `key-${i}` })));
    const tableName = `leases-${randomUUID()}`;
    const coordinator = dynamoLeases({ client: dynamo.client(), tableName, workerId: 'monitor', leaseDurationMs: 1_500, renewIntervalMs: 300 });
    const source = kinesisSource({ streamName, client: raw, startingPosition: 'TRIM_HORIZON', coordinator, pollIntervalMs: 200, shardDiscoveryIntervalMs: 500, checkpointIntervalMs: 200 });
    const { sink } = ackingSink();
    const { base, running } = await watched(later, source, sink);
    const view = dynamoLeases({ client: dynamo.client(), tableName });
    undo.push(() => view.stop());
    let owned: string[] = [];
    await until('three leases held, in the table and in /metrics', async () => {
      // The source's coordinator creates the table: until then there is nothing to read.
      const rows = await view.leases(streamName).catch(() => []);
      owned = rows.filter((r) => r.owner === 'monitor').map((r) => r.shardId).sort();
      return owned.length === 3 && (await metric(base, 'manifold_kinesis_leases_held')) === owned.length;
    });
    await until('MillisBehindLatest for every shard read', async () => {
      for (const shard of owned) if ((await metric(base, 'manifold_kinesis_millis_behind_latest', { shard })) === undefined) return false;
      return true;
    });
    await until('every record', () => running.stats.acks === 60);
    const status = connector((await readyz(base)).body, 'source');
    assert.equal(status.state, 'connected');
    assert.equal(status.leasesHeld, 3);
    assert.deepEqual(Object.keys(status.millisBehindLatest ?? {}).sort(), owned);
    assert.equal(await metric(base, 'manifold_kinesis_shards_reading'), 3);
  });
});
