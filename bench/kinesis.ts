/**
 * Kinesis: our sink against one PutRecord per message (what a naive producer
 * does) and against a hand-written PutRecords loop; our source against a plain
 * GetRecords loop. Same run, same kinesis-local server on loopback, a fresh
 * 4-shard stream per case (the mock slows down as a stream grows, so every
 * case writes the same amount into an empty stream).
 *
 * Run alone: node --import tsx -e "const m = await import('./bench/kinesis.ts'); console.log(await m.default(1))"
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetRecordsCommand, GetShardIteratorCommand, PutRecordCommand, PutRecordsCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import { kinesisSink } from '../lib/kinesis/sink.js';
import { kinesisSource } from '../lib/kinesis/source.js';
import type { Message } from '../lib/core/message.js';
import { createStream, deleteStream, putRaw, shardsOf, startKinesisServer } from '../test/fixtures/kinesis.js';
import { rate, withPeakRss, type BenchArea, type BenchRow } from './lib.js';

const SHARDS = 4;
const credentials = { accessKeyId: 'AKIDBENCH', secretAccessKey: 'bench-secret' };

function records(count: number, size: number): Array<{ data: Buffer; key: string }> {
  return Array.from({ length: count }, (_, i) => ({ data: Buffer.alloc(size, 97 + (i % 26)), key: `key-${i % 64}` }));
}

/** A plain GetRecords loop over every shard in parallel, paced at Kinesis' 5 calls/s/shard, until `count` records. */
async function rawRead(client: KinesisClient, streamName: string, count: number): Promise<void> {
  let seen = 0;
  await Promise.all(
    (await shardsOf(client, streamName)).map(async (shard) => {
      let iterator = (await client.send(new GetShardIteratorCommand({ StreamName: streamName, ShardId: shard.ShardId!, ShardIteratorType: 'TRIM_HORIZON' })))
        .ShardIterator;
      let last = 0;
      while (iterator && seen < count) {
        const wait = last + 200 - Date.now();
        if (wait > 0) await sleep(wait);
        last = Date.now();
        const page = await client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 10_000 }));
        seen += page.Records?.length ?? 0;
        if ((page.Records?.length ?? 0) === 0 && (page.MillisBehindLatest ?? 0) === 0) break;
        iterator = page.NextShardIterator;
      }
    }),
  );
  if (seen < count) throw new Error(`raw read saw ${seen} of ${count}`);
}

/** GetRecords calls and the records they returned, counted by a middleware on the client ours reads with. */
interface CallCount {
  calls: number;
  records: number;
  most: number;
}

async function ourRead(client: KinesisClient, streamName: string, count: number, counted: CallCount): Promise<void> {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const out = await next(args);
      if (context.commandName === 'GetRecordsCommand') {
        const got = (out.output as { Records?: unknown[] }).Records?.length ?? 0;
        counted.calls += 1;
        counted.records += got;
        counted.most = Math.max(counted.most, got);
      }
      return out;
    },
    { step: 'initialize', name: 'benchCountGetRecords' },
  );
  const source = kinesisSource({ streamName, client, startingPosition: 'TRIM_HORIZON' });
  let seen = 0;
  await new Promise<void>((resolve, reject) => {
    source.on('error', reject);
    source.on('data', (m: Message) => {
      m.ack();
      if (++seen === count) resolve();
    });
  });
  source.resume();
  await source.close();
}

const bench: BenchArea = async (scale) => {
  const server = await startKinesisServer();
  const raw = server.client();
  const rows: BenchRow[] = [];
  const size = 100;
  const n = Math.max(500, Math.round(6000 * scale));
  const perMessage = Math.max(100, Math.round(600 * scale));
  try {
    const fresh = async (): Promise<string> => (await createStream(raw, SHARDS)).streamName;

    // Sink: one PutRecord per message, sequential, as a naive producer does.
    const s1 = await fresh();
    const data1 = records(perMessage, size);
    const perMessageRate = await rate(perMessage, async () => {
      for (const r of data1) await raw.send(new PutRecordCommand({ StreamName: s1, Data: r.data, PartitionKey: r.key }));
    });
    await deleteStream(raw, s1);

    // Sink: hand-written PutRecords loop, 500 per request, sequential.
    const s2 = await fresh();
    const data2 = records(n, size);
    const loopRate = await rate(n, () => putRaw(raw, s2, data2));
    await deleteStream(raw, s2);

    // Sink: ours.
    const s3 = await fresh();
    const data3 = records(n, size);
    const ours = await withPeakRss(() =>
      rate(n, () =>
        pipeline(
          Readable.from(data3.map((r) => ({ data: r.data, key: r.key, ack() {}, nack() {} }))),
          kinesisSink({ streamName: s3, endpoint: server.endpoint, region: 'us-east-1', credentials }),
        ),
      ),
    );
    rows.push({
      area: 'kinesis',
      case: `sink: ${n} x ${size} B vs one PutRecord per message (${perMessage} measured)`,
      unit: 'records/s',
      raw: perMessageRate,
      ours: ours.result,
      goal: 20,
      peakRssMiB: ours.peakRssMiB,
      note: 'raw = sequential PutRecord per message',
    });
    rows.push({
      area: 'kinesis',
      case: `sink: ${n} x ${size} B vs hand-written PutRecords loop`,
      unit: 'records/s',
      raw: loopRate,
      ours: ours.result,
      goal: 0.9,
      peakRssMiB: ours.peakRssMiB,
      note: 'raw = sequential PutRecords of 500',
    });

    // Source: both read the stream our sink just filled, from TRIM_HORIZON.
    const rawReadRate = await rate(n, () => rawRead(raw, s3, n));
    const counted: CallCount = { calls: 0, records: 0, most: 0 };
    const ourReadRun = await withPeakRss(() => rate(n, () => ourRead(server.client(), s3, n, counted)));
    rows.push({
      area: 'kinesis',
      case: `source (polling): ${n} x ${size} B over ${SHARDS} shards vs plain GetRecords loop`,
      unit: 'records/s',
      raw: rawReadRate,
      ours: ourReadRun.result,
      goal: 0.9,
      peakRssMiB: ourReadRun.peakRssMiB,
      note: `both paced at 5 GetRecords/s/shard; ours acks and checkpoints, ${counted.calls} GetRecords calls, ${(counted.records / Math.max(1, counted.calls)).toFixed(0)} records per call on average, at most ${counted.most} (${n / SHARDS} per shard were waiting)`,
    });
    await deleteStream(raw, s3);
  } finally {
    await server.stop();
  }
  return rows;
};

export default bench;
