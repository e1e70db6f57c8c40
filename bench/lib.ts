/**
 * Shared shape of the benchmarks. Each `bench/<area>.ts` default-exports a
 * function returning rows; `bench/run.ts` runs the areas and writes
 * bench/README.md. Every row compares the raw client and ours in the same run.
 */

export interface BenchRow {
  /** The area, e.g. 'core', 'rabbitmq'. */
  area: string;
  /** What was measured, e.g. 'publish 100,000 x 100 B with confirms'. */
  case: string;
  /** Unit of `raw` and `ours`: higher is better. */
  unit: 'msg/s' | 'MB/s' | 'records/s' | 'starts/s';
  /** The raw client's (or hand-written baseline's) figure. */
  raw: number;
  /** manifold's figure. */
  ours: number;
  /** The goal for ours / raw, e.g. 0.8. */
  goal?: number;
  /** Peak RSS of the process during ours, in MiB. */
  peakRssMiB?: number;
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
