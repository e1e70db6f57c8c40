/**
 * Startup: how long the `manifold` command takes to start, and what loading a connector costs,
 * each in fresh Node processes (wall time from spawn to exit, median of the runs, raw and ours
 * alternating after an untimed warm-up). Figures are starts per second (1000 / median ms), so that
 * higher is better as everywhere in this table; the notes give the milliseconds.
 *
 * - `manifold --help`, `manifold --version`: raw is a bare `node -e 0`. The command loads no
 *   connector for these (lib/cli/endpoints.ts), nor the metrics library, the YAML parser or the JSON
 *   logger (lib/cli/main.ts); the goal is under 300 ms.
 * - `stdin: -> stdout:` with one line: raw is `node -e` piping stdin to stdout.
 * - Loading a connector, as a pipeline that uses it does (its source and sink modules): raw is
 *   importing its client library alone.
 * - The library entry (`import 'manifold'`, every connector): raw is importing the five client
 *   libraries.
 *
 * `npm run bench` runs the built JavaScript (.cache/bench), as an installed package runs; under tsx
 * the command would pay for compiling TypeScript at every start.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { BenchArea, BenchRow } from './lib.js';

const lib = join(import.meta.dirname, '..', 'lib');
const compiled = import.meta.filename.endsWith('.js');
const extension = compiled ? '.js' : '.ts';
const loader = compiled ? [] : ['--import', 'tsx'];
const bin = join(lib, 'cli', `bin${extension}`);

/** Milliseconds from spawn to exit of `node <args>`. */
function timeOnce(args: string[], input?: string): number {
  const start = performance.now();
  const result = spawnSync(process.execPath, args, { input: input ?? '', encoding: 'utf8' });
  const ms = performance.now() - start;
  if (result.status !== 0) throw new Error(`node ${args.join(' ')} exited ${result.status}: ${result.stderr}`);
  return ms;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Median ms of raw and ours, run alternately `runs` times after one untimed run of each. */
function compare(runs: number, raw: () => number, ours: () => number): { raw: number; ours: number } {
  raw();
  ours();
  const r: number[] = [];
  const o: number[] = [];
  for (let i = 0; i < runs; i++) {
    r.push(raw());
    o.push(ours());
  }
  return { raw: median(r), ours: median(o) };
}

/** `node -e` importing every specifier in turn (ESM, so it waits for each). */
function importing(specifiers: string[]): string[] {
  const urls = specifiers.map((s) => (s.startsWith('/') ? `file://${s}` : import.meta.resolve(s)));
  return [...loader, '--input-type=module', '-e', urls.map((u) => `await import(${JSON.stringify(u)});`).join('')];
}

const CONNECTORS: Array<{ system: string; client: string[]; modules: string[] }> = [
  { system: 'kafka', client: ['@platformatic/kafka'], modules: ['kafka/source', 'kafka/sink'] },
  { system: 'kinesis', client: ['@aws-sdk/client-kinesis'], modules: ['kinesis/source', 'kinesis/sink'] },
  { system: 's3', client: ['@aws-sdk/client-s3', '@aws-sdk/lib-storage'], modules: ['s3/sink'] },
  { system: 'rabbitmq', client: ['amqplib'], modules: ['rabbitmq/source', 'rabbitmq/sink'] },
  { system: 'websocket', client: ['ws'], modules: ['websocket/source', 'websocket/sink'] },
];

const bench: BenchArea = async (scale) => {
  const runs = Math.max(5, Math.round(21 * scale));
  const rows: BenchRow[] = [];
  const row = (name: string, got: { raw: number; ours: number }, rawText: string, goalMs?: number): void => {
    const target = goalMs === undefined ? '' : ` (goal: under ${goalMs} ms${got.ours < goalMs ? ', met' : ', NOT met'})`;
    rows.push({
      area: 'startup',
      case: name,
      unit: 'starts/s',
      raw: 1000 / got.raw,
      ours: 1000 / got.ours,
      note: `median of ${runs} fresh processes: ours ${got.ours.toFixed(0)} ms${target}, raw ${got.raw.toFixed(0)} ms (${rawText})${compiled ? '' : '; under tsx'}`,
    });
  };
  const bare = (): number => timeOnce(['-e', '0']);

  row('manifold --help', compare(runs, bare, () => timeOnce([...loader, bin, '--help'])), 'node -e 0', 300);
  row('manifold --version', compare(runs, bare, () => timeOnce([...loader, bin, '--version'])), 'node -e 0', 300);
  row(
    'manifold stdin: stdout:, one line',
    compare(
      runs,
      () => timeOnce(['-e', 'process.stdin.pipe(process.stdout)'], 'a\n'),
      () => timeOnce([...loader, bin, 'stdin:', 'stdout:', '--quiet'], 'a\n'),
    ),
    'node -e piping stdin to stdout',
  );
  for (const { system, client, modules } of CONNECTORS) {
    const got = compare(
      runs,
      () => timeOnce(importing(client)),
      () => timeOnce(importing(modules.map((m) => join(lib, `${m}${extension}`)))),
    );
    row(`load the ${system} connector (${modules.map((m) => m.split('/')[1]).join(' + ')})`, got, `import ${client.join(' + ')}`);
  }
  row(
    "import 'manifold' (the library entry: every connector)",
    compare(
      runs,
      () => timeOnce(importing(CONNECTORS.flatMap((c) => c.client))),
      () => timeOnce(importing([join(lib, `index${extension}`)])),
    ),
    'import of the five client libraries',
  );
  return rows;
};

export default bench;
