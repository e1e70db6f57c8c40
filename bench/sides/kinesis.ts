/**
 * The sides of bench/kinesis.ts, each run in its own process (bench/lib.ts runSide), each
 * importing only its own client. Each reads `count` records of the stream `streamName` on
 * kinesis-local (`endpoint`) from TRIM_HORIZON, every shard, timed from before the client is made
 * to the `count`-th record (start-up, iterators and, for lifion-kinesis, its DynamoDB state table
 * included: what a program pays to read these records).
 *
 * - ours: kinesisSource({ client, startingPosition: 'TRIM_HORIZON' }) with its defaults (polling,
 *   in-memory checkpoints), every message acked ('data' handler). A middleware on the client counts
 *   GetRecords calls and the records they return (extra: calls, perCall, most).
 * - getrecords: a hand-written loop per shard in parallel: GetShardIterator(TRIM_HORIZON), then
 *   GetRecords with Limit 10,000, at most 5 calls per second per shard (Kinesis' limit).
 * - lifion: lifion-kinesis (aws-sdk v2) in polling mode, initialPositionInStream TRIM_HORIZON,
 *   limit 10,000, its state in dynalite (`dynamoEndpoint`), auto checkpoints, JSON parsing off;
 *   counts the records of each 'data' batch.
 */
import { createRequire } from 'node:module';
import type { Message } from '../../lib/core/message.js';
import { measure, sideMain, type Measured, type SideArgs } from '../lib.js';

interface KinesisArgs extends SideArgs {
  endpoint: string;
  streamName: string;
  count: number;
  dynamoEndpoint?: string;
}

const credentials = { accessKeyId: 'AKIDBENCH', secretAccessKey: 'bench-secret' };

async function client(endpoint: string) {
  const { KinesisClient } = await import('@aws-sdk/client-kinesis');
  const { NodeHttpHandler } = await import('@smithy/node-http-handler');
  // kinesis-local speaks HTTP/1.1; the Kinesis client's default handler is HTTP/2.
  return new KinesisClient({ endpoint, region: 'us-east-1', credentials, requestHandler: new NodeHttpHandler() });
}

async function ours({ endpoint, streamName, count }: KinesisArgs): Promise<Measured> {
  const { kinesisSource } = await import('../../lib/kinesis/source.js');
  const counted = { calls: 0, records: 0, most: 0 };
  return measure(count, async () => {
    const kinesis = await client(endpoint);
    kinesis.middlewareStack.add(
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
    const source = kinesisSource({ streamName, client: kinesis, startingPosition: 'TRIM_HORIZON' });
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
    return { calls: counted.calls, perCall: counted.records / Math.max(1, counted.calls), most: counted.most };
  });
}

async function getRecords({ endpoint, streamName, count }: KinesisArgs): Promise<Measured> {
  const { GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand } = await import('@aws-sdk/client-kinesis');
  const { setTimeout: sleep } = await import('node:timers/promises');
  return measure(count, async () => {
    const kinesis = await client(endpoint);
    let seen = 0;
    let calls = 0;
    const shards = (await kinesis.send(new ListShardsCommand({ StreamName: streamName }))).Shards ?? [];
    await Promise.all(
      shards.map(async (shard) => {
        let iterator = (await kinesis.send(new GetShardIteratorCommand({ StreamName: streamName, ShardId: shard.ShardId!, ShardIteratorType: 'TRIM_HORIZON' })))
          .ShardIterator;
        let last = 0;
        while (iterator && seen < count) {
          const wait = last + 200 - Date.now();
          if (wait > 0) await sleep(wait);
          last = Date.now();
          const page = await kinesis.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 10_000 }));
          calls += 1;
          seen += page.Records?.length ?? 0;
          if ((page.Records?.length ?? 0) === 0 && (page.MillisBehindLatest ?? 0) === 0) break;
          iterator = page.NextShardIterator;
        }
      }),
    );
    kinesis.destroy();
    if (seen < count) throw new Error(`the GetRecords loop saw ${seen} of ${count}`);
    return { calls };
  });
}

async function lifion({ endpoint, streamName, count, dynamoEndpoint }: KinesisArgs): Promise<Measured> {
  const Kinesis = createRequire(import.meta.url)('lifion-kinesis') as new (options: Record<string, unknown>) => NodeJS.EventEmitter & {
    startConsumer(): Promise<void>;
    stopConsumer(): void;
  };
  return measure(count, async () => {
    const kinesis = new Kinesis({
      streamName,
      endpoint,
      region: 'us-east-1',
      ...credentials,
      consumerGroup: `bench-${process.pid}`,
      createStreamIfNeeded: false,
      initialPositionInStream: 'TRIM_HORIZON',
      useEnhancedFanOut: false,
      limit: 10_000,
      shouldParseJson: false,
      dynamoDb: { endpoint: dynamoEndpoint, region: 'us-east-1', ...credentials, tableName: `bench-lifion-${process.pid}` },
    });
    let seen = 0;
    await new Promise<void>((resolve, reject) => {
      kinesis.on('error', reject);
      kinesis.on('data', (batch: { records?: unknown[] }) => {
        seen += batch.records?.length ?? 0;
        if (seen >= count) resolve();
      });
      kinesis.startConsumer().catch(reject);
    });
    kinesis.stopConsumer();
  });
}

sideMain({
  ours: (a) => ours(a as KinesisArgs),
  getrecords: (a) => getRecords(a as KinesisArgs),
  lifion: (a) => lifion(a as KinesisArgs),
});
