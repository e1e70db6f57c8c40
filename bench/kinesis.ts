/**
 * Kinesis, on one kinesis-local server on loopback:
 * - sink (in this process, one after the other): our sink against one PutRecord per message (what a
 *   naive producer does) and against a hand-written PutRecords loop, a fresh 4-shard stream per case
 *   (the mock slows down as a stream grows, so every case writes the same amount into an empty stream);
 * - read (each side in its own child process, bench/sides/kinesis.ts says exactly what each does):
 *   20,000 x 100 B (scaled) put into a 4-shard stream, then read from TRIM_HORIZON by ours
 *   (kinesisSource), lifion-kinesis (its state in dynalite, started here) and a hand-written
 *   GetRecords loop; after one untimed read, 3 rounds, the order alternating, medians. Ours
 *   reports its GetRecords calls and records per call: manifold must not cap a shard below the
 *   service's 10,000 records per call.
 *
 * Run alone: npm run bench -- kinesis [--scale 0.1].
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PutRecordCommand } from '@aws-sdk/client-kinesis';
import { kinesisSink } from '../lib/kinesis/sink.js';
import { kinesisSource } from '../lib/kinesis/source.js';
import { createStream, deleteStream, putRaw, startKinesisServer } from '../test/fixtures/kinesis.js';
import { startDynamo } from '../test/fixtures/dynamodb.js';
import { interleaved, rate, runSide, sideRow, withPeakRss, type BenchArea, type BenchRow } from './lib.js';

const SHARDS = 4;
const ROUNDS = 3;
const credentials = { accessKeyId: 'AKIDBENCH', secretAccessKey: 'bench-secret' };

function records(count: number, size: number): Array<{ data: Buffer; key: string }> {
  return Array.from({ length: count }, (_, i) => ({ data: Buffer.alloc(size, 97 + (i % 26)), key: `key-${i % 64}` }));
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

    await deleteStream(raw, s3);

    // Read: every side in its own process reads the same stream from TRIM_HORIZON.
    const readCount = Math.max(2000, Math.round(20_000 * scale));
    const readStream = await fresh();
    await putRaw(raw, readStream, records(readCount, size));
    const dynamo = await startDynamo();
    try {
      // Warm-up, untimed: kinesis-local's first reads of a stream are much slower than the next ones.
      await runSide('kinesis', { side: 'getrecords', endpoint: server.endpoint, streamName: readStream, count: readCount });
      const read = await interleaved(['ours', 'lifion', 'getrecords'] as const, ROUNDS, (side) =>
        runSide('kinesis', { side, endpoint: server.endpoint, streamName: readStream, count: readCount, dynamoEndpoint: dynamo.endpoint }),
      );
      const perCall = `ours: ${read.ours.extra.calls?.toFixed(0)} GetRecords calls, ${read.ours.extra.perCall?.toFixed(0)} records per call on average, at most ${read.ours.extra.most?.toFixed(0)} (${readCount / SHARDS} per shard were waiting)`;
      const readCase = `read ${readCount.toLocaleString('en-US')} x ${size} B, ${SHARDS} shards, from TRIM_HORIZON`;
      rows.push(
        sideRow(
          {
            area: 'kinesis',
            case: `${readCase}: vs lifion-kinesis`,
            unit: 'records/s',
            note: `timed from start-up to the last record; lifion-kinesis: polling, limit 10,000, state in dynalite, auto checkpoints; ${perCall}`,
          },
          read.ours,
          read.lifion,
          'lifion-kinesis',
        ),
        sideRow(
          {
            area: 'kinesis',
            case: `${readCase}: vs a GetRecords loop`,
            unit: 'records/s',
            goal: 0.9,
            note: `timed from start-up to the last record; raw: GetRecords Limit 10,000 per shard in parallel, 5 calls/s/shard (${read.getrecords.extra.calls?.toFixed(0)} calls); ours acks every record; ${perCall}`,
          },
          read.ours,
          read.getrecords,
          'GetRecords loop',
        ),
      );
    } finally {
      await dynamo.stop();
      await deleteStream(raw, readStream);
    }
  } finally {
    await server.stop();
  }
  return rows;
};

export default bench;
