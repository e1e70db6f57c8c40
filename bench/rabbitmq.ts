/**
 * RabbitMQ: 200,000 messages of 100 bytes (scaled) published with confirms and consumed with
 * prefetch 1,000 through the broker on the machine (127.0.0.1:5672, see
 * test/fixtures/rabbitmq/prepare.sh). manifold (rabbitmqSink / rabbitmqSource) against amqplib
 * written as a careful user would (a windowed confirm channel; batched acks with allUpTo),
 * amqp-connection-manager and rascal. Every side runs in its own child process
 * (bench/sides/rabbitmq.ts says exactly what each side does). 8 rounds; round r takes the sides in
 * the order of SIDES turned by r, so that over the run every side takes every place twice, in
 * publishing and in consuming. A round publishes a fresh durable queue per side (after a 1 s settle:
 * the broker keeps writing its message store after confirming), then the sides consume the queues
 * just filled in the same order, each the one filled at its place (first filled, first consumed, so
 * every queue waits about as long); medians reported. rascal publishes a tenth of the messages (near
 * 1,000 msg/s here, the full count would take minutes per run) into a queue of its own, dropped after;
 * the queue consumed at rascal's place is filled, untimed, by amqplib, so that every consumed queue
 * holds the same messages (rascal adds a messageId to each).
 *
 * And the startup/RSS case: peak RSS of a program that imports manifold/rabbitmq, connects and
 * publishes one message, against the same with plain amqplib (5 runs each, median). Goals (issue
 * 20): publish and consume ≥ 1.0 of amqplib; the RSS of ours ≤ 1.2 x amqplib's, i.e. amqplib / ours ≥ 0.83.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { RABBITMQ_URL, RabbitFixture } from '../test/fixtures/rabbitmq.js';
import { logSide, median, runSide, sideRow, summarize, type BenchArea, type BenchRow, type SideResult } from './lib.js';

const SIDES = ['ours', 'amqplib', 'acm', 'rascal'] as const;
type Side = (typeof SIDES)[number];
const NAMES: Record<Side, string> = { ours: 'manifold', amqplib: 'amqplib', acm: 'amqp-connection-manager', rascal: 'rascal' };
// 8 rounds, not 3 or 5: publish and consume are the broker's pace and both sides sit near 1.0 of each other, and one
// slow round in 3 moved a median by a tenth (a consume run of 58.7k msg/s against the same side's 89k-95k). Consume
// runs of either side land near 90k or near 50k msg/s (2026-11-30 by hand: 3 of 7 of amqplib's near 55k), so 5
// rounds with two slow ones on one side still moved its median. 8 rather than 7: every side takes each of the four
// places twice (with the order only alternating, manifold and rascal took the first and last places and amqplib
// always the second or third, and manifold always consumed the queue rascal had filled).
const ROUNDS = 8;

const bench: BenchArea = async (scale) => {
  const count = Math.max(2000, Math.round(200_000 * scale));
  const n = count.toLocaleString('en-US');
  // rascal publishes near 1,000 msg/s here: it publishes a tenth, so that the area stays within minutes.
  const rascalCount = Math.max(2000, Math.round(count / 10));
  const fixture = new RabbitFixture();
  const url = RABBITMQ_URL;
  try {
    // Warm-up, untimed: the broker's first queue processes and message store files.
    const warm = await fixture.queue('bench-warm');
    await runSide('rabbitmq', { side: 'amqplib-publish', url, queue: warm, count: 5000 });
    await runSide('rabbitmq', { side: 'ours-consume', url, queue: warm, count: 5000 });

    const publish = new Map<Side, SideResult[]>(SIDES.map((s) => [s, []]));
    const consume = new Map<Side, SideResult[]>(SIDES.map((s) => [s, []]));
    for (let round = 0; round < ROUNDS; round++) {
      const order = SIDES.map((_, i) => SIDES[(i + round) % SIDES.length]!);
      // The queues to consume, at the places of `order`; and every queue made this round, to drop at its end.
      const filled: string[] = [];
      const made: string[] = [];
      for (const side of order) {
        const queue = await fixture.queue(`bench-${side}`);
        made.push(queue);
        await sleep(1000);
        const result = await runSide('rabbitmq', { side: `${side}-publish`, url, queue, count: side === 'rascal' ? rascalCount : count });
        logSide(`${side} publish`, round, result);
        publish.get(side)!.push(result);
        if (side === 'rascal') {
          // Untimed: a queue of `count` messages like the others for the consume run at this place.
          const plain = await fixture.queue('bench-fill');
          made.push(plain);
          await runSide('rabbitmq', { side: 'amqplib-publish', url, queue: plain, count });
          filled.push(plain);
        } else {
          filled.push(queue);
        }
      }
      for (const [place, side] of order.entries()) {
        await sleep(1000);
        const result = await runSide('rabbitmq', { side: `${side}-consume`, url, queue: filled[place]!, count });
        logSide(`${side} consume`, round, result);
        consume.get(side)!.push(result);
      }
      await fixture.withChannel(async (ch) => {
        for (const q of made) await ch.deleteQueue(q);
      });
    }

    const rss = { ours: [] as number[], amqplib: [] as number[] };
    const rssQueue = await fixture.queue('bench-rss');
    for (let round = 0; round < ROUNDS; round++) {
      for (const side of round % 2 === 0 ? (['ours', 'amqplib'] as const) : (['amqplib', 'ours'] as const)) {
        rss[side].push((await runSide('rabbitmq', { side: `${side}-rss`, url, queue: rssQueue, count: 1 })).peakRssMiB);
      }
    }

    const rows: BenchRow[] = [];
    const pub = Object.fromEntries([...publish].map(([s, r]) => [s, summarize(r)])) as Record<Side, ReturnType<typeof summarize>>;
    const con = Object.fromEntries([...consume].map(([s, r]) => [s, summarize(r)])) as Record<Side, ReturnType<typeof summarize>>;
    const publishNotes: Record<Exclude<Side, 'ours'>, string> = {
      amqplib: 'raw: confirm channel, publish with a confirm callback, at most 1,000 unconfirmed, waitForConfirms at the end',
      acm: 'raw: ChannelWrapper (confirm) sendToQueue, at most 1,000 unsettled promises',
      rascal: `raw: a confirm publication, broker.publish per message, at most 1,000 awaiting success; rascal published ${rascalCount.toLocaleString('en-US')} (a tenth: it is slow)`,
    };
    const consumeNotes: Record<Exclude<Side, 'ours'>, string> = {
      amqplib: 'raw: channel.consume, ack(msg, allUpTo) every 100 messages',
      acm: 'raw: ChannelWrapper.consume, ack(msg, allUpTo) every 100 messages',
      rascal: 'raw: subscription, ackOrNack per message (rascal has no allUpTo)',
    };
    for (const peer of ['amqplib', 'acm', 'rascal'] as const) {
      rows.push(
        sideRow(
          {
            area: 'rabbitmq',
            case: `publish ${n} x 100 B with confirms: vs ${NAMES[peer]}`,
            unit: 'msg/s',
            ...(peer === 'amqplib' ? { goal: 1.0 } : {}),
            note: `persistent, mandatory, durable queue; ours: rabbitmqSink, maxInFlight 1,000; ${publishNotes[peer]}; timed from connect to the last confirm`,
          },
          pub.ours,
          pub[peer],
          NAMES[peer],
        ),
      );
    }
    for (const peer of ['amqplib', 'acm', 'rascal'] as const) {
      rows.push(
        sideRow(
          {
            area: 'rabbitmq',
            case: `consume ${n} x 100 B, prefetch 1,000: vs ${NAMES[peer]}`,
            unit: 'msg/s',
            ...(peer === 'amqplib' ? { goal: 1.0 } : {}),
            note: `ours: rabbitmqSource, every message acked; ${consumeNotes[peer]}; timed from the first message`,
          },
          con.ours,
          con[peer],
          NAMES[peer],
        ),
      );
    }
    const oursRss = median(rss.ours);
    const amqplibRss = median(rss.amqplib);
    rows.push({
      area: 'rabbitmq',
      case: 'peak RSS of a program: import manifold/rabbitmq, connect, publish 1 message vs the same with plain amqplib',
      unit: 'MiB',
      lowerIsBetter: true,
      raw: amqplibRss,
      ours: oursRss,
      goal: 0.83,
      peakRssMiB: oursRss,
      rawPeakRssMiB: amqplibRss,
      note: `ratio = amqplib's peak RSS / ours, so ≥ 0.83 is ours ≤ 1.2 x amqplib; process.resourceUsage().maxRSS at exit, median of ${ROUNDS} fresh processes each (ours: ${rss.ours.map((r) => r.toFixed(0)).join(', ')} MiB; amqplib: ${rss.amqplib.map((r) => r.toFixed(0)).join(', ')} MiB)`,
    });
    return rows;
  } finally {
    await fixture.cleanup();
  }
};

export default bench;
