/**
 * Runs the benchmark areas and writes bench/README.md.
 * Usage: npm run bench [-- <area> ...] [--scale 0.1]
 * Each area runs in this process, one after another, so figures in one table come from one run; the
 * areas with servers run each side of a case in its own child process (bench/lib.ts runSide).
 *
 * `npm run bench` compiles lib/ and bench/ with tsc and runs the JavaScript, as users run the
 * built package: under tsx, esbuild's keepNames wraps every closure creation in a
 * defineProperty call, which would charge the per-message ack closures a cost production never pays.
 */
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { basename, join } from 'node:path';
import { ratioOf, type BenchArea, type BenchRow } from './lib.js';

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
const rss = (r: BenchRow): string =>
  r.peakRssMiB === undefined ? '' : `${r.peakRssMiB.toFixed(0)}${r.rawPeakRssMiB === undefined ? '' : ` · ${r.rawPeakRssMiB.toFixed(0)}`} MiB`;
const rows: BenchRow[] = [];
const failures: string[] = [];
for (const area of areas) {
  process.stderr.write(`bench: ${area} (scale ${scale})...\n`);
  try {
    const mod = (await import(join(dir, `${area}${extension}`))) as { default: BenchArea };
    const got = await mod.default(scale);
    rows.push(...got);
    for (const r of got) process.stderr.write(`  ${r.case}: raw ${fmt(r.raw)} ${r.unit}, ours ${fmt(r.ours)} ${r.unit}, ratio ${ratioOf(r).toFixed(2)}\n`);
  } catch (error) {
    failures.push(`${area}: ${(error as Error).message}`);
    process.stderr.write(`  failed: ${(error as Error).stack}\n`);
  }
}

const command = `npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`;
const table = [
  '| area | case | raw | ours | unit | ours / raw | goal | peak RSS ours · raw | CPU µs/msg ours · raw | note |',
  '| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |',
  ...rows.map((r) =>
    `| ${r.area} | ${r.case} | ${fmt(r.raw)} | ${fmt(r.ours)} | ${r.unit} | ${ratioOf(r).toFixed(2)}${r.lowerIsBetter ? ' (raw / ours)' : ''} | ${r.goal === undefined ? '' : `≥ ${r.goal}`} | ${rss(r)} | ${r.cpuUsPerMsg ? `${r.cpuUsPerMsg.ours.toFixed(1)} · ${r.cpuUsPerMsg.raw.toFixed(1)}` : ''} | ${r.note ?? ''} |`),
].join('\n');
// Written by hand (profiles, and why a goal is not met), kept next to the sources and appended as it is.
const analysisFile = join(process.cwd(), 'bench', 'analysis.md');
const analysis = existsSync(analysisFile) ? `\n${readFileSync(analysisFile, 'utf8').trim()}\n` : '';
const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${process.platform}`;
const report = `# Benchmarks

Produced by \`${command}\` on ${new Date().toISOString().slice(0, 10)}; machine: ${machine}.
Compare the ratio, not the absolute figures: the machines here are shared and noisy. Higher is
better for every unit but MiB (peak RSS), whose ratio is raw / ours so that above 1 is better for
ours everywhere. Rows with a CPU µs/msg figure ran every side in its own child process (medians of
interleaved rounds, 3 or as many as the note says; bench/sides/), so each peak RSS and CPU time is that side's own; the other
rows (core, startup, kinesis-leases, the kinesis sink and the s3 collector) ran raw and ours in the
bench process, one after the other, and their peak RSS is that process's.

![ours / raw per case](ratios.svg)

${table}
${failures.length ? `\nAreas that failed in this run:\n\n${failures.map((f) => `- ${f}`).join('\n')}\n` : ''}${analysis}`;
// Compiled runs live under .cache/bench/bench; the report belongs next to the sources.
if (wanted.length === 0 && !args.includes('--no-write')) {
  writeFileSync(join(process.cwd(), 'bench', 'README.md'), report);
  writeFileSync(join(process.cwd(), 'bench', 'ratios.svg'), chart(rows));
}
process.stdout.write(`${report}\n`);

/** A horizontal bar chart of ours / raw per row, with the goal marked, as a standalone SVG. */
function chart(data: BenchRow[]): string {
  const escape = (t: string): string => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const barHeight = 22;
  const labelWidth = 520;
  const plotWidth = 360;
  const maxRatio = Math.max(1.25, ...data.map((r) => ratioOf(r)), ...data.map((r) => r.goal ?? 0));
  const x = (ratio: number): number => labelWidth + (Math.min(ratio, maxRatio) / maxRatio) * plotWidth;
  const height = 40 + data.length * (barHeight + 8);
  const bars = data.map((r, i) => {
    const y = 30 + i * (barHeight + 8);
    const ratio = ratioOf(r);
    const met = r.goal === undefined || ratio >= r.goal;
    const goal = r.goal === undefined ? '' : `<line x1="${x(r.goal)}" x2="${x(r.goal)}" y1="${y - 2}" y2="${y + barHeight + 2}" stroke="#000" stroke-dasharray="3,2"/>`;
    return `<text x="${labelWidth - 8}" y="${y + 15}" text-anchor="end" font-size="12">${escape(`${r.area}: ${r.case}`.slice(0, 80))}</text>
<rect x="${labelWidth}" y="${y}" width="${x(ratio) - labelWidth}" height="${barHeight}" fill="${met ? '#3a7d44' : '#c0392b'}"/>
<text x="${x(ratio) + 4}" y="${y + 15}" font-size="12">${ratio.toFixed(2)}</text>${goal}`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${labelWidth + plotWidth + 60}" height="${height}" font-family="sans-serif">
<text x="${labelWidth}" y="18" font-size="13" font-weight="bold">ours / raw, raw / ours for MiB (dashed: goal; green: goal met)</text>
<line x1="${x(1)}" x2="${x(1)}" y1="24" y2="${height - 6}" stroke="#888"/>
${bars.join('\n')}
</svg>
`;
}
