/**
 * Endpoint URIs -> validated options -> streams. Each scheme registers how to
 * read its URI; everything is validated before anything connects, and errors
 * name the URI (password hidden), the key, the bad value and what is allowed.
 */
import type { Readable, Writable } from 'node:stream';
import { z } from 'zod';
import { redactUrl } from '../core/errors.js';
import type { DeclaredOptions } from '../core/options.js';
import { UsageError } from './errors.js';
import { parseBytes, parseDuration } from './units.js';

export type Role = 'source' | 'sink';

/** A parsed, validated endpoint, ready to create its stream. */
export interface Endpoint {
  role: Role;
  /** The scheme, e.g. 'amqp'. */
  scheme: string;
  /** The URI with the password hidden, for logs. */
  display: string;
  /** Creates the stream; called once, after every endpoint validated. */
  create(): Readable | Writable;
}

/** What a scheme's builder receives. */
export interface EndpointInput {
  url: URL;
  /** The URI with the password hidden. */
  display: string;
  /** Query parameters merged with options from a pipeline file (file options win). */
  params: Record<string, unknown>;
}

export type EndpointBuilder = (input: EndpointInput) => () => Readable | Writable;

interface SchemeEntry {
  source?: EndpointBuilder;
  sink?: EndpointBuilder;
  /** One line for --help. */
  help: string;
  /**
   * The declarations whose keys the source and sink take (connector options and
   * CLI-only keys), for the JSON Schema of pipeline files; `except` names the
   * options the URI itself sets.
   */
  options?: { source?: readonly DeclaredOptions[]; sink?: readonly DeclaredOptions[]; except?: readonly string[] };
}

const schemes = new Map<string, SchemeEntry>();

/** Registers how a scheme (without the colon) is read and written. */
export function registerScheme(names: string[], entry: SchemeEntry): void {
  for (const name of names) schemes.set(name, entry);
}

/** Every registered scheme name with its entry. */
export function registeredSchemes(): ReadonlyMap<string, Readonly<SchemeEntry>> {
  return schemes;
}

/** Help lines for every registered scheme. */
export function schemeHelp(): string[] {
  const seen = new Set<SchemeEntry>();
  const lines: string[] = [];
  for (const entry of schemes.values()) {
    if (seen.has(entry)) continue;
    seen.add(entry);
    lines.push(entry.help);
  }
  return lines;
}

/** Parses and validates `uri` for `role`, merging `options` from a pipeline file. */
export function parseEndpoint(uri: string, role: Role, options: Record<string, unknown> = {}): Endpoint {
  if (typeof uri !== 'string' || uri.length === 0) throw new UsageError(`the ${role} is missing: give a URI such as stdin: or s3://bucket/prefix`);
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new UsageError(`${role} ${JSON.stringify(redactUrl(uri))} is not a URI; known schemes are ${[...schemes.keys()].map((s) => `${s}:`).join(', ')}`);
  }
  const scheme = url.protocol.replace(/:$/, '');
  const display = redactUrl(uri);
  const entry = schemes.get(scheme);
  if (!entry) throw new UsageError(`${role} ${display}: unknown scheme "${scheme}:"; known schemes are ${[...schemes.keys()].map((s) => `${s}:`).join(', ')}`);
  const builder = entry[role];
  if (!builder) throw new UsageError(`${role} ${display}: "${scheme}:" cannot be a ${role}`);
  const params: Record<string, unknown> = {};
  for (const [key, value] of url.searchParams) params[key] = value;
  Object.assign(params, options);
  const create = builder({ url, display, params });
  return { role, scheme, display, create };
}

// ---- zod helpers: every message names the URI and the key ----

/** A size with units (`1MiB`), as bytes. */
export const zBytes = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const bytes = parseBytes(value);
  if (bytes === undefined || bytes <= 0) {
    ctx.addIssue({ code: 'custom', message: `must be a size such as 512KiB, 1MiB or 1048576, got ${JSON.stringify(value)}` });
    return z.NEVER;
  }
  return bytes;
});

/** A duration with units (`5m`), as milliseconds. */
export const zDuration = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0) {
    ctx.addIssue({ code: 'custom', message: `must be a duration such as 500ms, 30s, 5m or 12h, got ${JSON.stringify(value)}` });
    return z.NEVER;
  }
  return ms;
});

/** A positive integer (query strings arrive as text). */
export const zCount = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const n = typeof value === 'number' ? value : /^\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n <= 0) {
    ctx.addIssue({ code: 'custom', message: `must be a positive integer, got ${JSON.stringify(value)}` });
    return z.NEVER;
  }
  return n;
});

/** true/false, yes/no, 1/0. */
export const zBool = z.union([z.string(), z.boolean()]).transform((value, ctx) => {
  if (typeof value === 'boolean') return value;
  const v = value.toLowerCase();
  if (['true', 'yes', '1', 'on'].includes(v)) return true;
  if (['false', 'no', '0', 'off'].includes(v)) return false;
  ctx.addIssue({ code: 'custom', message: `must be true or false, got ${JSON.stringify(value)}` });
  return z.NEVER;
});

/** Validates `params` with `schema` (strict: unknown keys are errors), naming the endpoint and key. */
export function validate<S extends z.ZodType>(display: string, schema: S, params: Record<string, unknown>): z.output<S> {
  const result = schema.safeParse(params);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const key = issue.path.join('.');
  if (issue.code === 'unrecognized_keys') {
    const known = schema instanceof z.ZodObject ? Object.keys(schema.shape).join(', ') : '';
    throw new UsageError(`${display}: unknown option ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}${known ? `; known options are ${known}` : ''}`);
  }
  if (issue.code === 'invalid_type' && issue.input === undefined) throw new UsageError(`${display}: ${key} is required`);
  // Values of secret-looking keys are never shown.
  const got = key in params ? ` (got ${/pass|secret|token/i.test(key) ? '[hidden]' : JSON.stringify(params[key])})` : '';
  const message = issue.code === 'custom' ? issue.message : `${issue.message.replace(/^Invalid (input|option): /, '')}${got}`;
  throw new UsageError(`${display}: ${key || 'options'} ${message}`);
}
