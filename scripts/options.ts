/**
 * Writes what derives from the option declarations into the files that show it: the
 * TypeScript option interfaces (with TSDoc) between `// <options Name>` markers in lib/,
 * the options tables between `<!-- options factory -->` markers in docs/, and the JSON
 * Schema of pipeline files in manifold.schema.json.
 *
 *   npm run options           rewrite the generated parts
 *   npm run options -- --check exit 1 naming every part that is out of date (a test runs this)
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { cliKey, type DeclaredOptions, type OptionSpec } from '../lib/core/options.js';
import { DECLARATIONS, type DeclarationEntry } from './declarations.js';

const root = fileURLToPath(new URL('..', import.meta.url));

function tsType(spec: OptionSpec): string {
  switch (spec.kind) {
    case 'string':
      return 'string';
    case 'boolean':
      return 'boolean';
    case 'enum':
      return (spec.values ?? []).map((v) => `'${v}'`).join(' | ');
    case 'strings':
      return 'string | readonly string[]';
    case 'custom':
      return spec.type ?? 'unknown';
    default:
      return 'number';
  }
}

function group(n: number): string {
  return Number.isInteger(n) ? n.toLocaleString('en-US') : String(n);
}

function bytesText(n: number): string {
  for (const [unit, size] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) if (n >= size && n % size === 0) return `${n / size} ${unit}`;
  return `${group(n)} bytes`;
}

/** The default as the docs and TSDoc say it, or undefined when there is none. */
export function defaultText(spec: OptionSpec): string | undefined {
  if (spec.defaultText !== undefined) return spec.defaultText;
  const d = spec.default;
  if (d === undefined) return undefined;
  if (typeof d === 'number') {
    if (spec.kind === 'duration') return `${group(d)} ms`;
    if (spec.kind === 'bytes') return bytesText(d);
    return group(d);
  }
  if (typeof d === 'string') return `'${d}'`;
  return JSON.stringify(d);
}

function tsdoc(spec: OptionSpec): string {
  const def = defaultText(spec);
  const parts = [spec.doc];
  if (spec.required) parts.push('Required.');
  else if (def !== undefined) parts.push(`Default ${def}.`);
  return parts.join(' ');
}

export function renderInterface(entry: DeclarationEntry): string {
  const { declaration: d } = entry;
  const lines = [`/** Options of {@link ${d.where}}. Generated from its declaration by \`npm run options\`. */`];
  lines.push(`export interface ${entry.type}${entry.extends ? ` extends ${entry.extends}` : ''} {`);
  for (const name of d.names) {
    const spec = d.specs[name]!;
    if (entry.inherited?.includes(name)) continue;
    lines.push(`  /** ${tsdoc(spec).replace(/\*\//g, '*\\/')} */`);
    lines.push(`  ${name}${spec.required ? '' : '?'}: ${tsType(spec)};`);
  }
  lines.push('}');
  return lines.join('\n');
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

export function renderTable(declaration: DeclaredOptions): string {
  const rows = ['| option | URI / pipeline-file key | type | default | what it does |', '| --- | --- | --- | --- | --- |'];
  for (const name of declaration.names) {
    const spec = declaration.specs[name]!;
    const key = cliKey(name, spec);
    const kind = spec.kind === 'enum' ? (spec.values ?? []).map((v) => `\`${v}\``).join(' \\| ') : spec.kind === 'custom' ? cell(`\`${spec.type}\``) : spec.kind;
    const def = spec.required ? 'required' : (defaultText(spec) ?? '—');
    rows.push(`| \`${name}\` | ${key === undefined ? '—' : `\`${key}\``} | ${kind} | ${cell(def)} | ${cell(spec.doc)} |`);
  }
  return rows.join('\n');
}

/** Replaces the text between `open` and `close` markers; undefined when the markers are missing. */
function splice(text: string, open: string, close: string, body: string): string | undefined {
  const start = text.indexOf(open);
  if (start < 0) return undefined;
  const end = text.indexOf(close, start + open.length);
  if (end < 0) return undefined;
  return `${text.slice(0, start + open.length)}\n${body}\n${text.slice(end)}`;
}

/** Brings every generated part up to date; returns the parts that were out of date. */
export async function generate(write: boolean): Promise<string[]> {
  const stale: string[] = [];
  const files = new Map<string, string>();
  const read = async (path: string): Promise<string> => files.get(path) ?? (await readFile(`${root}/${path}`, 'utf8'));
  for (const entry of DECLARATIONS) {
    const where = entry.declaration.where;
    const source = await read(entry.file);
    const next = splice(source, `// <options ${entry.type}>`, '// </options>', renderInterface(entry));
    if (next === undefined) stale.push(`${entry.file}: no "// <options ${entry.type}>" ... "// </options>" markers`);
    else {
      if (next !== source) stale.push(`${entry.file}: interface ${entry.type}`);
      files.set(entry.file, next);
    }
    const doc = await read(entry.docs);
    const nextDoc = splice(doc, `<!-- options ${where} -->`, '<!-- /options -->', renderTable(entry.declaration));
    if (nextDoc === undefined) stale.push(`${entry.docs}: no "<!-- options ${where} -->" ... "<!-- /options -->" markers`);
    else {
      if (nextDoc !== doc) stale.push(`${entry.docs}: options table of ${where}`);
      files.set(entry.docs, nextDoc);
    }
  }
  // The pipeline file's JSON Schema, for editors (example pipeline files point at it).
  const { pipelineSchema } = await import('../lib/cli/schema.js');
  const schema = `${JSON.stringify(pipelineSchema(), null, 2)}\n`;
  const current = await readFile(`${root}/manifold.schema.json`, 'utf8').catch(() => '');
  if (current !== schema) {
    stale.push('manifold.schema.json');
    files.set('manifold.schema.json', schema);
  }
  if (write) for (const [path, text] of files) await writeFile(`${root}/${path}`, text);
  return stale;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const check = process.argv.includes('--check');
  const stale = await generate(!check);
  for (const line of stale) console.log(`${check ? 'out of date' : 'updated'}: ${line}`);
  if (check && stale.length > 0) process.exitCode = 1;
}
