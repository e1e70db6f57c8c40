/**
 * Kafka: 500,000 messages of 100 bytes (scaled) produced and consumed through a local single-node
 * broker (test/fixtures/kafka.ts, KRaft, started here), 3 partitions. manifold (kafkaSink /
 * kafkaSource) against the peers a user would pick instead: @platformatic/kafka used directly (the
 * client manifold wraps) and kafkajs. Every side runs in its own child process
 * (bench/sides/kafka.ts says exactly what each side does), 7 rounds with the order alternating,
 * medians reported; each produce run writes a fresh topic, each consume run reads one filled topic
 * with a fresh consumer group. Before them 200,000 messages warm the broker up (untimed). The first
 * timed runs are still often the slowest (by up to a tenth, whichever side they were), and single
 * produce runs of ours range over half again (286k to 443k msg/s in one set of 9 by hand, where the
 * library's ranged 412k to 476k), hence 7 rounds rather than 5. Produce also runs the library with
 * one send at a time (one request in flight, as kafkaSink), which is the like-for-like comparison
 * of manifold's own cost; the goal row is against the library with 5 sends outstanding.
 *
 * Goals (issue 20): produce ≥ 0.9 of @platformatic/kafka and ≥ 1.2 of kafkajs; consume ≥ 1.0 of both.
 */
import { startKafka } from '../test/fixtures/kafka.js';
import { interleaved, runSide, sideRow, type BenchArea, type BenchRow } from './lib.js';

const PARTITIONS = 3;
const ROUNDS = 7;

const bench: BenchArea = async (scale) => {
  const count = Math.max(5000, Math.round(500_000 * scale));
  const n = count.toLocaleString('en-US');
  const broker = await startKafka();
  try {
    // Warm-up, untimed: the broker's JIT, first appends and group coordinator.
    const warm = await broker.createTopic({ partitions: PARTITIONS });
    await runSide('kafka', { side: 'platformatic-produce', bootstrap: broker.bootstrap, topic: warm, count: 200_000 });
    await runSide('kafka', { side: 'ours-consume', bootstrap: broker.bootstrap, topic: warm, count: 20_000 });

    const filled: string[] = [];
    const produce = await interleaved(['ours', 'platformatic', 'platformatic1', 'kafkajs'] as const, ROUNDS, async (side) => {
      const topic = await broker.createTopic({ partitions: PARTITIONS });
      filled.push(topic);
      // platformatic1: the same client with one send at a time, as kafkaSink keeps one request in flight.
      if (side === 'platformatic1') return runSide('kafka', { side: 'platformatic-produce', bootstrap: broker.bootstrap, topic, count, inFlight: 1 });
      return runSide('kafka', { side: `${side}-produce`, bootstrap: broker.bootstrap, topic, count });
    });
    // Every consume run reads the same topic (one of those just produced) with its own group.
    const topic = filled[0]!;
    const consume = await interleaved(['ours', 'platformatic', 'kafkajs'] as const, ROUNDS, (side) =>
      runSide('kafka', { side: `${side}-consume`, bootstrap: broker.bootstrap, topic, count }),
    );

    const produceCase = `produce ${n} x 100 B, ${PARTITIONS} partitions, acks=all, idempotent`;
    const consumeCase = `consume ${n} x 100 B, ${PARTITIONS} partitions, from earliest`;
    const rows: BenchRow[] = [
      sideRow(
        {
          area: 'kafka',
          case: `${produceCase}: vs @platformatic/kafka`,
          unit: 'msg/s',
          goal: 0.9,
          note: `raw: Producer.send of 1,000-message batches, 5 sends outstanding; ours: kafkaSink defaults (batches of 1,000, 1 request in flight)`,
        },
        produce.ours,
        produce.platformatic,
        '@platformatic/kafka',
      ),
      sideRow(
        {
          area: 'kafka',
          case: `${produceCase}: vs @platformatic/kafka with one send at a time`,
          unit: 'msg/s',
          note: `raw: Producer.send of 1,000-message batches, the next once the last is acknowledged: one request in flight, as ours; the difference is the cost of manifold's layers at the same concurrency`,
        },
        produce.ours,
        produce.platformatic1,
        '@platformatic/kafka, one send at a time',
      ),
      sideRow(
        {
          area: 'kafka',
          case: `${produceCase}: vs kafkajs`,
          unit: 'msg/s',
          goal: 1.2,
          note: `raw: kafkajs idempotent producer, send of 1,000-message batches one at a time`,
        },
        produce.ours,
        produce.kafkajs,
        'kafkajs',
      ),
      sideRow(
        {
          area: 'kafka',
          case: `${consumeCase}: vs @platformatic/kafka`,
          unit: 'msg/s',
          goal: 1.0,
          note: `raw: Consumer.consume 'data' handler, autocommit 1 s, the same fetch settings as ours; ours: kafkaSource, every message acked, commits every 1 s; timed from the first message`,
        },
        consume.ours,
        consume.platformatic,
        '@platformatic/kafka',
      ),
      sideRow(
        {
          area: 'kafka',
          case: `${consumeCase}: vs kafkajs eachBatch`,
          unit: 'msg/s',
          goal: 1.0,
          note: `raw: kafkajs consumer.run eachBatch, resolveOffset per batch, autocommit 1 s`,
        },
        consume.ours,
        consume.kafkajs,
        'kafkajs',
      ),
    ];
    return rows;
  } finally {
    await broker.stop();
  }
};

export default bench;
