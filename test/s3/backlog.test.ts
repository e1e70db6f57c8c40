/**
 * s3Sink under a long S3 outage and a large backlog: the source is held by the disk quota
 * (maxBufferBytes), never by a count of files waiting. Against s3rver, stopped and started.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { createMessage } from '../../lib/core/message.js';
import type { QuotaEvent } from '../../lib/s3/collector.js';
import { s3Sink } from '../../lib/s3/sink.js';
import { startS3, type S3Fixture } from '../fixtures/s3.js';

const fast = { retries: 1, minTimeoutMs: 20, maxTimeoutMs: 50 };

/** Record n, about 100 bytes, that names its number. */
const record = (n: number): string => `${String(n).padStart(8, '0')}:${'r'.repeat(90)}`;

/** One record at a time at `perSecond`, until `stop()`; counts what was acked. */
function paced(perSecond: number) {
  let stopped = false;
  let produced = 0;
  const acked = new Set<number>();
  const source = new Readable({
    objectMode: true,
    highWaterMark: 1,
    read() {
      if (stopped) {
        this.push(null);
        return;
      }
      const n = produced++;
      setTimeout(() => this.push(createMessage({ data: record(n), onAck: () => acked.add(n) })), 1000 / perSecond);
    },
  });
  return {
    source,
    acked,
    get produced() {
      return produced;
    },
    stop() {
      stopped = true;
    },
  };
}

describe('s3Sink: backpressure by bytes, not by files', () => {
  let s3: S3Fixture;
  before(async () => {
    s3 = await startS3();
  });
  after(async () => {
    await s3.cleanup();
  });

  it('S3 down 60 s under a paced source writing one record at a time: every record is acked during the outage, all are in S3 after it', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const feed = paced(300);
    const quota: QuotaEvent[] = [];
    const sink = s3Sink({ bucket, client: s3.client, bufferPath, ackOn: 'disk', commitSizeBytes: 8 * 1024, commitIntervalMs: 1000, syncIntervalMs: 20, uploadIntervalMs: 500, retry: fast });
    sink.on('quota', (event: QuotaEvent) => quota.push(event));
    let commits = 0;
    let uploads = 0;
    sink.on('commit', () => commits++);
    sink.on('upload', () => uploads++);
    const done = pipeline(feed.source, sink);
    await sleep(1000);
    await s3.stop();
    const outageStart = feed.produced;
    await sleep(60_000);
    const producedByEnd = feed.produced;
    const producedDuringOutage = producedByEnd - outageStart;
    const ackedByEnd = feed.acked.size;
    const filesWaiting = commits - uploads;
    await s3.start();
    await sleep(1000);
    feed.stop();
    await done;
    // About 300/s for 60 s: the source was never held (the old limit stopped it after ~150 files, some 5 s).
    assert.ok(producedDuringOutage > 10_000, `only ${producedDuringOutage} records were written during the outage`);
    // Acked on disk as they came: at most the streams' buffers and one group commit behind.
    assert.ok(ackedByEnd >= producedByEnd - 300, `acked ${ackedByEnd} of the ${producedByEnd} written by the end of the outage`);
    assert.ok(filesWaiting > 100, `${filesWaiting} files were waiting at the end of the outage`);
    assert.equal(quota.length, 0);
    const lines = (await s3.objects(bucket)).flatMap((o) => o.body.toString().split('\n').filter(Boolean));
    assert.equal(new Set(lines).size, feed.produced);
    assert.equal(feed.acked.size, feed.produced);
  });

  it('a 64 KiB quota holds the source at the quota and says so once (quota), and the outage ends with everything delivered', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    const feed = paced(500);
    const quota: QuotaEvent[] = [];
    const sink = s3Sink({ bucket, client: s3.client, bufferPath, ackOn: 'disk', commitSizeBytes: 8 * 1024, commitIntervalMs: 1000, syncIntervalMs: 20, uploadIntervalMs: 300, maxBufferBytes: 64 * 1024, retry: fast });
    sink.on('quota', (event: QuotaEvent) => quota.push(event));
    await s3.stop();
    const done = pipeline(feed.source, sink);
    await sleep(4000);
    const heldAt = feed.acked.size;
    await sleep(2000);
    // Held: about 64 KiB of 100-byte records (plus what the streams' buffers hold), no more acks meanwhile.
    assert.ok(heldAt > 400 && heldAt < 1000, `${heldAt} records acked at the quota`);
    assert.ok(feed.acked.size - heldAt < 20, `${feed.acked.size - heldAt} more acked while held`);
    assert.equal(quota.length, 1);
    assert.equal(quota[0]!.maxBufferBytes, 64 * 1024);
    await s3.start();
    await sleep(2000);
    feed.stop();
    await done;
    const lines = (await s3.objects(bucket)).flatMap((o) => o.body.toString().split('\n').filter(Boolean));
    assert.equal(new Set(lines).size, feed.produced);
  });

  it('a restart with 5,000 files waiting accepts new writes at once, and the files go up as S3 comes back', async () => {
    const bucket = await s3.createBucket();
    const bufferPath = await s3.tempDir();
    // What a long outage leaves: 5,000 committed files (the collector's names) in one day folder.
    const day = new Date().toISOString().slice(0, 10);
    await mkdir(join(bufferPath, day), { recursive: true, mode: 0o700 });
    for (let i = 0; i < 5000; i += 250) {
      await Promise.all(Array.from({ length: 250 }, (_, k) => i + k).map((n) => writeFile(join(bufferPath, day, `000000.${String(n).padStart(9, '0')}-old`), `${record(n)}\n`, { mode: 0o600 })));
    }
    await s3.stop();
    const acked: number[] = [];
    const sink = s3Sink({ bucket, client: s3.client, bufferPath, ackOn: 'disk', syncIntervalMs: 10, uploadIntervalMs: 300, uploadConcurrency: 16, closeTimeoutMs: 180_000, retry: fast });
    const started = performance.now();
    const writes = pipeline(
      Readable.from(Array.from({ length: 200 }, (_, k) => createMessage({ data: record(100_000 + k), onAck: () => acked.push(performance.now() - started) }))),
      sink,
    );
    while (acked.length < 200 && performance.now() - started < 10_000) await sleep(20);
    assert.equal(acked.length, 200, `${acked.length} of 200 new writes acked in 10 s with 5,000 files waiting and S3 down`);
    await s3.start();
    await writes;
    const objects = await s3.objects(bucket);
    assert.equal(objects.length, 5001);
  });
});
