/**
 * Kinesis leases: how consumption of one 6-shard stream scales with 1, 2 and 3
 * worker processes sharing it through dynamoLeases (kinesis-local and dynalite
 * on loopback, one server process each).
 *
 * The stream is filled once, before any worker starts, with `total` + 3,000
 * records of 100 B. Then, for N = 1, 2, 3: a new lease table, N worker processes
 * (test/fixtures/lease-worker-child.ts with `countOnly`) started at once, each
 * reading from TRIM_HORIZON. A worker prints its running count every 1,000
 * records, so the 3,000 extra records make sure the workers' last counts can sum
 * to `total` however the shards are split. The clock runs (on the workers' own
 * timestamps) from the first lease any worker gains, i.e. when reading starts,
 * to the count line that brings the sum of the workers' last counts to
 * `total`; records/s = that sum / that time. Lease balancing happens during the
 * run (the first worker up usually takes every free shard, the others ask for
 * handoffs a few renew rounds later), so this is the whole-run throughput, ramp
 * included. After the run the workers are left alone until the leases are
 * balanced (or 15 s), to note how long that took, then get SIGTERM.
 *
 * Two cases: read-and-ack only, where one JavaScript kinesis-local process on
 * two shared cores is the limit (more workers cannot help), and with simulated
 * per-record work (a 5 ms wait per 10 records, as a call to another service
 * would be), where one worker is the limit: the case several processes are for.
 *
 * Rows: raw = 1 worker process, ours = N worker processes, so ours / raw is the
 * scaling factor (ideal: N). The machine, the workers and both servers share
 * the same cores, so this measures the whole setup, not dynamoLeases alone.
 *
 * Run alone: node --import tsx -e "const m = await import('./bench/kinesis-leases.ts'); console.log(await m.default(0.2))"
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { PutRecordsCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import type { LeaseEvent } from '../lib/kinesis/coordinator.js';
import { startDynamo, type DynamoServer } from '../test/fixtures/dynamodb.js';
import { createStream, deleteStream, startKinesisServer, type KinesisServer } from '../test/fixtures/kinesis.js';
// Type only, but it also puts the child in the bench program, so `tsc -p tsconfig.bench.json` emits it next to the fixtures it imports.
import type { LeaseWorkerConfig } from '../test/fixtures/lease-worker-child.js';
import type { BenchArea, BenchRow } from './lib.js';

const SHARDS = 6;
const SIZE = 100;
const WORKER_COUNTS = [1, 2, 3] as const;
/** Each worker reports every 1,000 records: this many extra records let the reported counts reach the total. */
const PAD = 1000 * Math.max(...WORKER_COUNTS);
const LEASE_MS = 3_000;
const RENEW_MS = 1_000;
const CHECKPOINT_MS = 1_000;
const RUN_TIMEOUT_MS = 300_000;
const BALANCE_WAIT_MS = 15_000;
const EXIT_TIMEOUT_MS = 20_000;

// Compiled (npm run bench): .cache/bench/bench/kinesis-leases.js, with the child at .cache/bench/test/fixtures/, run by plain node.
// Under tsx: the .ts child, run with tsx too.
const compiled = import.meta.filename.endsWith('.js');
const CHILD = fileURLToPath(new URL(`../test/fixtures/lease-worker-child.${compiled ? 'js' : 'ts'}`, import.meta.url));
const CHILD_ARGS = compiled ? [CHILD] : ['--import', 'tsx', CHILD];

type Line =
  | { t: 'count'; count: number; at: number }
  | ({ t: 'lease'; at: number } & LeaseEvent)
  | { t: 'warning'; message: string }
  | { t: 'closed'; at: number }
  | { t: 'checkpoint' | 'shard' | 'rec' };

/** Every worker process started and not yet seen to exit, so a failure can kill them all. */
const live = new Set<Worker>();

/** One worker process and what it printed. */
class Worker {
  readonly child: ChildProcess;
  readonly counts: Array<{ count: number; at: number }> = [];
  readonly leases: Array<LeaseEvent & { at: number }> = [];
  readonly warnings: string[] = [];
  closed = false;
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly id: string,
    config: LeaseWorkerConfig,
    onCount: (worker: Worker, count: number, at: number) => void,
  ) {
    this.child = spawn(process.execPath, CHILD_ARGS, {
      env: { ...process.env, MANIFOLD_LEASE_WORKER: JSON.stringify(config) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(this);
    this.exited = once(this.child, 'exit').then(([code, signal]) => {
      live.delete(this);
      return { code: code as number | null, signal: signal as NodeJS.Signals | null };
    });
    let buffered = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const text of lines) {
        if (text.trim() === '') continue;
        const line = JSON.parse(text) as Line;
        if (line.t === 'count') {
          this.counts.push({ count: line.count, at: line.at });
          onCount(this, line.count, line.at);
        } else if (line.t === 'lease') this.leases.push(line);
        else if (line.t === 'warning') this.warnings.push(line.message);
        else if (line.t === 'closed') this.closed = true;
      }
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-4000);
    });
  }

  get last(): number {
    return this.counts.at(-1)?.count ?? 0;
  }

  /** The last count this worker reported at or before `at`. */
  countAt(at: number): number {
    let c = 0;
    for (const e of this.counts) if (e.at <= at) c = e.count;
    return c;
  }

  /** Peak RSS of the process so far (VmHWM), in MiB; undefined where /proc is not available. */
  peakRssMiB(): number | undefined {
    try {
      const kib = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.child.pid}/status`, 'utf8'))?.[1];
      return kib === undefined ? undefined : Number(kib) / 1024;
    } catch {
      return undefined;
    }
  }
}

/**
 * When the leases last became balanced (every worker holding SHARDS / N, every
 * shard held once), by the workers' own lease events; undefined if they are not
 * balanced at the end of the events.
 */
function balancedSince(workers: Worker[]): number | undefined {
  const each = SHARDS / workers.length;
  const events = workers.flatMap((w) => w.leases.map((e) => ({ w, e }))).sort((a, b) => a.e.at - b.e.at);
  const held = new Map<Worker, Set<string>>(workers.map((w) => [w, new Set<string>()]));
  let since: number | undefined;
  for (const { w, e } of events) {
    if (e.type === 'gained') held.get(w)!.add(e.shardId);
    else held.get(w)!.delete(e.shardId);
    const sets = [...held.values()];
    const union = new Set(sets.flatMap((s) => [...s]));
    const balanced = union.size === SHARDS && sets.every((s) => s.size === each);
    if (balanced && since === undefined) since = e.at;
    else if (!balanced) since = undefined;
  }
  return since;
}

interface RunResult {
  workers: number;
  rate: number;
  seconds: number;
  counted: number;
  /** Seconds from the first lease to balanced leases, if they balanced. */
  balancedAfter: number | undefined;
  /** Records/s from balanced leases to the end, when enough of the run was left. */
  rateAfterBalance: number | undefined;
  /** Each worker's share of the counted records, in thousands, largest first. */
  shares: number[];
  peakRssMiB: number | undefined;
  warnings: number;
}

async function stopWorkers(workers: Worker[]): Promise<void> {
  for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGTERM');
  await Promise.all(
    workers.map(async (w) => {
      const timer = setTimeout(() => w.child.kill('SIGKILL'), EXIT_TIMEOUT_MS);
      try {
        const { code, signal } = await w.exited;
        if (code !== 0 || !w.closed) throw new Error(`worker ${w.id} did not close gracefully (exit ${code ?? signal}): ${w.stderr}`);
      } finally {
        clearTimeout(timer);
      }
    }),
  );
}

/** Simulated per-record work (a wait, as for a call to another service): what makes one worker too slow. */
interface Work {
  delayMs: number;
  batch: number;
  label: string;
}
const READ_ONLY: Work = { delayMs: 0, batch: 1, label: 'read and ack only' };
const WORK: Work = { delayMs: 5, batch: 10, label: 'with 5 ms of waiting work per 10 records' };

async function run(n: number, kinesis: KinesisServer, dynamo: DynamoServer, streamName: string, total: number, work: Work): Promise<RunResult> {
  const tableName = `bench-leases-${randomUUID()}`;
  let doneAt: number | undefined;
  const workers: Worker[] = [];
  const onCount = (): void => {
    // The count line that brings the sum of the last counts to the total ends the run.
    if (doneAt === undefined && workers.reduce((sum, w) => sum + w.last, 0) >= total) {
      doneAt = Math.max(...workers.map((w) => w.counts.at(-1)?.at ?? 0));
    }
  };
  for (let i = 1; i <= n; i++) {
    const workerId = `bench-w${i}`;
    workers.push(
      new Worker(
        workerId,
        {
          kinesisEndpoint: kinesis.endpoint,
          dynamoEndpoint: dynamo.endpoint,
          streamName,
          tableName,
          workerId,
          leaseDurationMs: LEASE_MS,
          renewIntervalMs: RENEW_MS,
          checkpointIntervalMs: CHECKPOINT_MS,
          countOnly: true,
          ...(work.delayMs > 0 ? { delayMs: work.delayMs, batch: work.batch } : {}),
        },
        onCount,
      ),
    );
  }
  try {
    const deadline = Date.now() + RUN_TIMEOUT_MS;
    const dead = (): Worker | undefined => workers.find((w) => w.child.exitCode !== null || w.child.signalCode !== null);
    while (doneAt === undefined) {
      const d = dead();
      if (d) throw new Error(`worker ${d.id} exited (${d.child.exitCode ?? d.child.signalCode}) mid-run: ${d.stderr}`);
      if (Date.now() > deadline) throw new Error(`${n} workers: timed out after ${workers.reduce((s, w) => s + w.last, 0)} of ${total} records`);
      await sleep(50);
    }
    const endAt: number = doneAt;
    const balanceDeadline = Date.now() + BALANCE_WAIT_MS;
    while (balancedSince(workers) === undefined && Date.now() < balanceDeadline && !dead()) await sleep(100);
    const d = dead();
    if (d) throw new Error(`worker ${d.id} exited (${d.child.exitCode ?? d.child.signalCode}): ${d.stderr}`);
    const peaks = workers.map((w) => w.peakRssMiB()).filter((p): p is number => p !== undefined);
    // Before SIGTERM: closing releases every lease.
    const balanced = balancedSince(workers);
    await stopWorkers(workers);

    const startAt = Math.min(...workers.flatMap((w) => w.leases.filter((e) => e.type === 'gained').map((e) => e.at)));
    const counted = workers.reduce((sum, w) => sum + w.countAt(endAt), 0);
    const seconds = (endAt - startAt) / 1000;
    let rateAfterBalance: number | undefined;
    if (balanced !== undefined && n > 1 && balanced - startAt >= 1000) {
      const before = workers.reduce((sum, w) => sum + w.countAt(balanced), 0);
      // Only worth a figure when balancing took a while and a fair part of the run was left after it.
      if (counted - before >= total / 4 && endAt - balanced >= 1000) rateAfterBalance = (counted - before) / ((endAt - balanced) / 1000);
    }
    for (const w of workers) {
      if (w.stderr.trim()) process.stderr.write(`  worker ${w.id} (${n} workers) stderr: ${w.stderr.trim()}\n`);
      for (const m of new Set(w.warnings)) process.stderr.write(`  worker ${w.id} (${n} workers) warning: ${m}\n`);
    }
    return {
      workers: n,
      rate: counted / seconds,
      seconds,
      counted,
      balancedAfter: balanced === undefined ? undefined : (balanced - startAt) / 1000,
      rateAfterBalance,
      shares: workers.map((w) => w.countAt(endAt) / 1000).sort((a, b) => b - a),
      peakRssMiB: peaks.length ? Math.max(...peaks) : undefined,
      warnings: workers.reduce((sum, w) => sum + w.warnings.length, 0),
    };
  } finally {
    // On failure: no worker outlives the run.
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.exited));
  }
}

/** Fills the stream with `count` records of SIZE bytes, two PutRecords of 500 in flight. */
async function fill(client: KinesisClient, streamName: string, count: number): Promise<void> {
  let next = 0;
  await Promise.all(
    [0, 1].map(async () => {
      while (next < count) {
        const from = next;
        next = Math.min(count, next + 500);
        const records = Array.from({ length: next - from }, (_, i) => ({ Data: Buffer.alloc(SIZE, 97 + ((from + i) % 26)), PartitionKey: `key-${(from + i) % 997}` }));
        const out = await client.send(new PutRecordsCommand({ StreamName: streamName, Records: records }));
        if (out.FailedRecordCount) throw new Error(`fill: ${out.FailedRecordCount} records failed`);
      }
    }),
  );
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
const describeRun = (r: RunResult): string =>
  `${r.workers} worker${r.workers > 1 ? 's' : ''}: ${fmt(r.rate)} records/s over ${r.seconds.toFixed(1)} s` +
  (r.workers > 1 ? `, split ${r.shares.map((s) => `${s}k`).join('/')}` : '') +
  (r.workers > 1
    ? r.balancedAfter === undefined
      ? `, leases not ${SHARDS / r.workers}-each within ${BALANCE_WAIT_MS / 1000} s after the run`
      : `, leases ${SHARDS / r.workers}-each ${r.balancedAfter.toFixed(1)} s after the first lease`
    : '') +
  (r.rateAfterBalance === undefined ? '' : ` (${fmt(r.rateAfterBalance)} records/s from then on)`) +
  (r.warnings ? `, ${r.warnings} warnings` : '');

const bench: BenchArea = async (scale) => {
  const total = Math.max(6, Math.round(60 * scale)) * 1000;
  let kinesis: KinesisServer | undefined;
  let dynamo: DynamoServer | undefined;
  try {
    [kinesis, dynamo] = await Promise.all([startKinesisServer(), startDynamo()]);
    const raw = kinesis.client();
    const { streamName } = await createStream(raw, SHARDS);
    await fill(raw, streamName, total + PAD);
    const rows: BenchRow[] = [];
    // Each run reads the whole stream again, with a new lease table.
    for (const work of [READ_ONLY, WORK]) {
      const results: RunResult[] = [];
      for (const n of WORKER_COUNTS) {
        const r = await run(n, kinesis, dynamo, streamName, total, work);
        process.stderr.write(`  ${work.label}: ${describeRun(r)}\n`);
        results.push(r);
      }
      const one = results.find((r) => r.workers === 1)!;
      for (const r of results.filter((x) => x.workers > 1)) {
        rows.push({
          area: 'kinesis-leases',
          case: `consume ${total} x ${SIZE} B, ${SHARDS} shards, ${work.label}: ${r.workers} worker processes vs 1 (dynamoLeases)`,
          unit: 'records/s',
          raw: one.rate,
          ours: r.rate,
          ...(r.peakRssMiB === undefined ? {} : { peakRssMiB: r.peakRssMiB }),
          note:
            `ours / raw = scaling factor (ideal ${r.workers}); from the first lease to ${total} records counted, balancing included; ` +
            `${describeRun(one)}; ${describeRun(r)}; lease ${LEASE_MS / 1000} s, renew ${RENEW_MS / 1000} s; ` +
            `workers, kinesis-local and dynalite share the machine's cores; peak RSS: largest worker`,
        });
      }
    }
    await deleteStream(raw, streamName);
    return rows;
  } finally {
    for (const w of live) w.child.kill('SIGKILL');
    await Promise.all([...live].map((w) => w.exited));
    await Promise.all([kinesis?.stop(), dynamo?.stop()]);
  }
};

export default bench;
