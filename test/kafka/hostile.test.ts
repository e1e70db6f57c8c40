/**
 * kafkaSource against a hostile producer (issue 19), on a real broker: records large enough that the
 * per-partition count bound does not bound memory, read by a sink that never acks.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ErrorCodes, ManifoldError } from '../../lib/core/errors.js';
import type { Message } from '../../lib/core/message.js';
import { kafkaSource, type KafkaSourceOptions } from '../../lib/kafka/source.js';
import { startKafka, type KafkaBroker } from '../fixtures/kafka.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const MiB = 1024 * 1024;
let broker: KafkaBroker;

before(async () => {
  broker = await startKafka();
});
after(async () => {
  await broker?.stop();
});

function heapMiB(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed / MiB;
}

/** Heap plus Buffers outside it (record values live there). */
function memoryMiB(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return (m.heapUsed + m.arrayBuffers) / MiB;
}

async function until(what: string, predicate: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function fast(extra: Partial<KafkaSourceOptions> & Pick<KafkaSourceOptions, 'topics' | 'groupId'>): KafkaSourceOptions {
  return { brokers: broker.bootstrap, startFrom: 'earliest', commitIntervalMs: 100, sessionTimeoutMs: 6000, heartbeatIntervalMs: 500, maxWaitMs: 100, closeTimeoutMs: 2000, ...extra };
}

describe('kafkaSource: maxInFlightBytes', () => {
  it('a sink that never acks holds maxInFlightBytes of 512 KiB records, memory stays bounded, and acks let the rest through in order', async (t) => {
    const topic = await broker.createTopic({ partitions: 1 });
    // 48 records of 512 KiB (24 MiB), each in its own batch as a producer with ~1 MiB batches would write them.
    const total = 48;
    for (let i = 0; i < total; i++) await broker.produce(topic, [{ value: Buffer.alloc(512 * 1024, i) }]);
    const before = memoryMiB();
    const heapBefore = heapMiB();
    const source = kafkaSource(fast({ topics: topic, groupId: `g-${randomUUID()}`, maxInFlightBytes: 2 * MiB }));
    const held: Message[] = [];
    let acking = false;
    const order: number[] = [];
    const sink = new Writable({
      objectMode: true,
      write(m: Message, _encoding, callback) {
        order.push(m.data[0]!);
        if (acking) m.ack();
        else held.push(m);
        callback();
      },
    });
    source.pipe(sink);
    t.after(async () => {
      source.destroy();
      sink.destroy();
    });
    await until('4 records', () => held.length >= 4);
    // Several fetch rounds (maxWaitMs 100 ms) had the client kept fetching.
    await sleep(2500);
    const growth = memoryMiB() - before;
    const heapGrowth = heapMiB() - heapBefore;
    t.diagnostic(`${held.length} records of 512 KiB unacked; heap + buffers +${growth.toFixed(1)} MiB (heap +${heapGrowth.toFixed(1)} MiB) for 24 MiB in the topic`);
    assert.equal(held.length, 4, '2 MiB of 512 KiB records, and no more');
    // The 2 MiB held, plus what the client fetched ahead before it was paused (about one fetch of fetchMaxBytes, 4 MiB).
    // Without the bound: every record in flight, and the client's buffer fetching on: 24 MiB and more.
    assert.ok(growth < 16, `grew by ${growth.toFixed(1)} MiB`);

    acking = true;
    for (const m of held.splice(0)) m.ack();
    await until('every record', () => order.length >= total);
    await sleep(300);
    assert.deepEqual(order, Array.from({ length: total }, (_, i) => i), 'each once, in order');
  });

  it('rejects a bad maxInFlightBytes naming the option', () => {
    assert.throws(
      () => kafkaSource({ brokers: 'localhost:9092', topics: 't', groupId: 'g', maxInFlightBytes: 0 }),
      (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && /maxInFlightBytes/.test(e.message),
    );
  });
});
