/**
 * Shared shape of the benchmarks. Each `bench/<area>.ts` default-exports a
 * function returning rows; `bench/run.ts` runs the areas and writes
 * bench/README.md. Every row compares the raw client (or a peer library) and ours in the same run.
 * The areas with servers run each side in its own child process (`runSide`, `interleaved` below;
 * the side scripts are bench/sides/<area>.ts), so each side's peak RSS and CPU time are its own.
 */

export interface BenchRow {
  /** The area, e.g. 'core', 'rabbitmq'. */
  area: string;
  /** What was measured, e.g. 'publish 100,000 x 100 B with confirms'. */
  case: string;
  /** Unit of `raw` and `ours`: higher is better. */
  unit: 'msg/s' | 'MB/s' | 'records/s' | 'starts/s' | 'MiB';
  /** For a figure where lower is better (peak RSS in MiB): the ratio is raw / ours. */
  lowerIsBetter?: boolean;
  /** The raw client's (or hand-written baseline's) figure. */
  raw: number;
  /** manifold's figure. */
  ours: number;
  /** The goal for the ratio (ours / raw, or raw / ours with `lowerIsBetter`), e.g. 0.8. */
  goal?: number;
  /** Peak RSS of the process during ours, in MiB. */
  peakRssMiB?: number;
  /** Peak RSS of the raw (peer) side's process, in MiB, when it ran in its own process. */
  rawPeakRssMiB?: number;
  /** CPU time (user + system) per message of each side's process over its measured phase, in µs. */
  cpuUsPerMsg?: { ours: number; raw: number };
  /** Anything a reader needs to interpret the row. */
  note?: string;
}

/** A benchmark area: returns its rows. `scale` (0..1] shrinks the work for a quick check. */
export type BenchArea = (scale: number) => Promise<BenchRow[]>;

/** Samples RSS every 20 ms while `fn` runs; returns its result and the peak in MiB. */
export async function withPeakRss<T>(fn: () => Promise<T>): Promise<{ result: T; peakRssMiB: number }> {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 20);
  try {
    const result = await fn();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { result, peakRssMiB: peak / 1024 / 1024 };
  } finally {
    clearInterval(timer);
  }
}

/** Runs `fn` and returns how many `count` units per second it achieved. */
export async function rate(count: number, fn: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await fn();
  const seconds = (performance.now() - start) / 1000;
  return count / seconds;
}

/** ours / raw for a row, or raw / ours for a figure where lower is better (peak RSS): above 1 means ours is better. */
export function ratioOf(row: BenchRow): number {
  return row.lowerIsBetter ? row.raw / row.ours : row.ours / row.raw;
}

// --- Sides in their own processes -------------------------------------------------------------
//
// A case compares sides (ours and each peer), each run as its own child Node process so that its
// peak RSS and CPU time are its own: `node bench/sides/<area>.js '<json args>'`, with `side` in the
// args naming what to run. The parent area starts the servers and passes their addresses; the
// child connects, does the work, prints one JSON line (a SideResult) on stdout and exits.

/** What one child reports. */
export interface SideResult {
  /** Messages handled in the measured phase. */
  messages: number;
  /** Wall seconds of the measured phase. */
  seconds: number;
  /** messages / seconds. */
  rate: number;
  /** process.cpuUsage() (user + system) over the measured phase, divided by messages. */
  cpuUsPerMsg: number;
  /** process.resourceUsage().maxRSS at exit: the whole process's peak, imports included. */
  peakRssMiB: number;
  /** Anything else the side counted (GetRecords calls, ...). */
  extra?: Record<string, number>;
}

/** The measured phase of a side: what `measure()` returns, and what a side handler resolves to. */
export type Measured = Omit<SideResult, 'peakRssMiB'>;

/** Times `fn`, which handles `messages` messages, in wall seconds and CPU µs; `extra` is added to the result. */
export async function measure(messages: number, fn: () => Promise<void | Record<string, number>>): Promise<Measured> {
  const cpu = process.cpuUsage();
  const start = performance.now();
  const extra = await fn();
  const seconds = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  return { messages, seconds, rate: messages / seconds, cpuUsPerMsg: (used.user + used.system) / messages, ...(extra ? { extra } : {}) };
}

/**
 * A clock a side starts itself (at the first message received, say, so a consumer group's join is
 * not timed): `start()` once, then `stop(messages)`.
 */
export function stopwatch(): { start(): void; started(): boolean; stop(messages: number, extra?: Record<string, number>): Measured } {
  let cpu: NodeJS.CpuUsage | undefined;
  let at = 0;
  return {
    start() {
      if (cpu) return;
      cpu = process.cpuUsage();
      at = performance.now();
    },
    started: () => cpu !== undefined,
    stop(messages, extra) {
      if (!cpu) throw new Error('stopwatch stopped before it started');
      const seconds = (performance.now() - at) / 1000;
      const used = process.cpuUsage(cpu);
      return { messages, seconds, rate: messages / seconds, cpuUsPerMsg: (used.user + used.system) / messages, ...(extra ? { extra } : {}) };
    },
  };
}

/** Arguments of a side: `side` names the handler; the rest is the area's. */
export interface SideArgs {
  side: string;
  [key: string]: unknown;
}

/**
 * The main of a side script: runs the handler `args.side` names, prints its result with the
 * process's peak RSS as one JSON line, and exits (a client's lingering sockets or timers must not
 * keep the process, nor delay the next side).
 */
export function sideMain(handlers: Record<string, (args: SideArgs) => Promise<Measured>>): void {
  const args = JSON.parse(process.argv[2] ?? '{}') as SideArgs;
  const handler = handlers[args.side];
  if (!handler) {
    process.stderr.write(`unknown side ${JSON.stringify(args.side)}; known: ${Object.keys(handlers).join(', ')}\n`);
    process.exit(2);
  }
  handler(args).then(
    (measured) => {
      const result: SideResult = { ...measured, peakRssMiB: process.resourceUsage().maxRSS / 1024 };
      process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
    },
    (error: unknown) => {
      process.stderr.write(`side ${args.side} failed: ${(error as Error)?.stack ?? String(error)}\n`);
      process.exit(1);
    },
  );
}

/**
 * Runs one side in a child process: `bench/sides/<script>` (compiled JS under `npm run bench`,
 * TypeScript through tsx otherwise) with `args` as JSON. Rejects on a non-zero exit or after
 * `timeoutMs` (the child is killed), with the tail of its stderr.
 */
export async function runSide(script: string, args: SideArgs, timeoutMs = 300_000): Promise<SideResult> {
  const { spawn } = await import('node:child_process');
  const { join } = await import('node:path');
  const compiled = import.meta.filename.endsWith('.js');
  const file = join(import.meta.dirname, 'sides', `${script}${compiled ? '.js' : '.ts'}`);
  const child = spawn(process.execPath, [...(compiled ? [] : ['--import', 'tsx']), file, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c) => resolve(c));
  }).finally(() => clearTimeout(timer));
  const line = stdout.trim().split('\n').pop() ?? '';
  if (code !== 0 || !line.startsWith('{')) {
    throw new Error(`side ${script}/${args.side} exited ${code}${code === null ? ` (killed after ${timeoutMs} ms)` : ''}: ${stderr.trim() || stdout.trim()}`);
  }
  return JSON.parse(line) as SideResult;
}

/** The median of numbers (the mean of the middle two for an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** A side's rounds and their medians. */
export interface SideSummary {
  runs: SideResult[];
  rate: number;
  cpuUsPerMsg: number;
  peakRssMiB: number;
  /** The median of each extra figure over the runs. */
  extra: Record<string, number>;
}

/** The medians of a side's runs. */
export function summarize(runs: SideResult[]): SideSummary {
  const keys = new Set(runs.flatMap((r) => Object.keys(r.extra ?? {})));
  const extra: Record<string, number> = {};
  for (const k of keys) extra[k] = median(runs.map((r) => r.extra?.[k] ?? 0));
  return {
    runs,
    rate: median(runs.map((r) => r.rate)),
    cpuUsPerMsg: median(runs.map((r) => r.cpuUsPerMsg)),
    peakRssMiB: median(runs.map((r) => r.peakRssMiB)),
    extra,
  };
}

/** One progress line on stderr per side run. */
export function logSide(side: string, round: number, result: SideResult): void {
  process.stderr.write(`    ${side} #${round + 1}: ${Math.round(result.rate).toLocaleString('en-US')}/s, ${result.cpuUsPerMsg.toFixed(1)} µs CPU/msg, ${result.peakRssMiB.toFixed(0)} MiB\n`);
}

/**
 * Runs every side `rounds` times, interleaved: round 0 in the given order, round 1 reversed, and so
 * on, so that no side always runs first (on a warmer or a busier broker). `run(side, round)` does
 * the side's set-up (a fresh topic or queue) and its child process. Returns the medians per side.
 */
export async function interleaved<S extends string>(sides: readonly S[], rounds: number, run: (side: S, round: number) => Promise<SideResult>): Promise<Record<S, SideSummary>> {
  const results = new Map<S, SideResult[]>(sides.map((s) => [s, []]));
  for (let round = 0; round < rounds; round++) {
    for (const side of round % 2 === 0 ? sides : [...sides].reverse()) {
      const result = await run(side, round);
      logSide(side, round, result);
      results.get(side)!.push(result);
    }
  }
  return Object.fromEntries([...results].map(([side, runs]) => [side, summarize(runs)])) as Record<S, SideSummary>;
}

/**
 * A row comparing ours with one peer (`peerName`), from their summaries: rates in `raw`/`ours`,
 * both sides' CPU µs per message and peak RSS in their own fields and at the end of the note.
 */
export function sideRow(
  row: Omit<BenchRow, 'raw' | 'ours' | 'peakRssMiB' | 'rawPeakRssMiB' | 'cpuUsPerMsg'>,
  ours: SideSummary,
  peer: SideSummary,
  peerName: string,
): BenchRow {
  const figures = `ours ${ours.cpuUsPerMsg.toFixed(1)} µs CPU/msg, ${ours.peakRssMiB.toFixed(0)} MiB peak RSS; ${peerName} ${peer.cpuUsPerMsg.toFixed(1)} µs CPU/msg, ${peer.peakRssMiB.toFixed(0)} MiB (medians of ${ours.runs.length} runs, each side in its own process)`;
  return {
    ...row,
    raw: peer.rate,
    ours: ours.rate,
    peakRssMiB: ours.peakRssMiB,
    rawPeakRssMiB: peer.peakRssMiB,
    cpuUsPerMsg: { ours: ours.cpuUsPerMsg, raw: peer.cpuUsPerMsg },
    note: row.note ? `${row.note}; ${figures}` : figures,
  };
}
