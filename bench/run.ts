/**
 * Runs the benchmark areas and writes bench/README.md.
 * Usage: npm run bench [-- <area> ...] [--scale 0.1]
 * Each area runs in this process, one after another, so figures in one table come from one run.
 *
 * `npm run bench` compiles lib/ and bench/ with tsc and runs the JavaScript, as users run the
 * built package: under tsx, esbuild's keepNames wraps every closure creation in a
 * defineProperty call, which would charge the per-message ack closures a cost production never pays.
 */
import { readdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { basename, join } from 'node:path';
import type { BenchArea, BenchRow } from './lib.js';

const args = process.argv.slice(2);
const scaleAt = args.indexOf('--scale');
const scale = scaleAt >= 0 ? Number(args[scaleAt + 1]) : 1;
const wanted = args.filter((a, i) => !a.startsWith('--') && (scaleAt < 0 || i !== scaleAt + 1));
const dir = import.meta.dirname;
const extension = import.meta.filename.endsWith('.ts') ? '.ts' : '.js';
const areas = readdirSync(dir)
  .filter((f) => /\.(ts|js)$/.test(f) && !f.endsWith('.d.ts') && !/^(lib|run)\.(ts|js)$/.test(f))
  .map((f) => basename(f).replace(/\.(ts|js)$/, ''))
  .filter((a) => wanted.length === 0 || wanted.includes(a))
  .sort((a, b) => (a === 'core' ? -1 : b === 'core' ? 1 : a.localeCompare(b)));

const fmt = (n: number): string => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(2));
const rows: BenchRow[] = [];
const failures: string[] = [];
for (const area of areas) {
  process.stderr.write(`bench: ${area} (scale ${scale})...\n`);
  try {
    const mod = (await import(join(dir, `${area}${extension}`))) as { default: BenchArea };
    const got = await mod.default(scale);
    rows.push(...got);
    for (const r of got) process.stderr.write(`  ${r.case}: raw ${fmt(r.raw)} ${r.unit}, ours ${fmt(r.ours)} ${r.unit}, ratio ${(r.ours / r.raw).toFixed(2)}\n`);
  } catch (error) {
    failures.push(`${area}: ${(error as Error).message}`);
    process.stderr.write(`  failed: ${(error as Error).stack}\n`);
  }
}

const command = `npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`;
const table = [
  '| area | case | raw | ours | unit | ours / raw | goal | peak RSS (ours) | note |',
  '| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | --- |',
  ...rows.map((r) =>
    `| ${r.area} | ${r.case} | ${fmt(r.raw)} | ${fmt(r.ours)} | ${r.unit} | ${(r.ours / r.raw).toFixed(2)} | ${r.goal === undefined ? '' : `≥ ${r.goal}`} | ${r.peakRssMiB === undefined ? '' : `${r.peakRssMiB.toFixed(0)} MiB`} | ${r.note ?? ''} |`),
].join('\n');
const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${process.platform}`;
const report = `# Benchmarks

Produced by \`${command}\` on ${new Date().toISOString().slice(0, 10)}; machine: ${machine}.
Raw and ours ran in the same process, one after the other, so compare the ratio, not the absolute
figures: the machines here are shared and noisy. Higher is better for every unit.

${table}
${failures.length ? `\nAreas that failed in this run:\n\n${failures.map((f) => `- ${f}`).join('\n')}\n` : ''}`;
// Compiled runs live under .cache/bench/bench; the report belongs next to the sources.
if (wanted.length === 0 && !args.includes('--no-write')) writeFileSync(join(process.cwd(), 'bench', 'README.md'), report);
process.stdout.write(`${report}\n`);
