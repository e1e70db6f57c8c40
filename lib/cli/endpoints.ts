/**
 * Endpoint URIs -> validated options -> streams. Each scheme registers how to
 * read its URI; everything is validated before anything connects, and errors
 * name the URI (password hidden), the key, the bad value and what is allowed.
 */
import type { Readable, Writable } from 'node:stream';
import { READS_TWO_WAYS, readsTwoWays, redactUrl, uriCredentials } from '../core/errors.js';
import type { DeclaredOptions } from '../core/options.js';
import { UsageError, subject } from './errors.js';
import { parseBytes, parseDuration } from './units.js';

export type Role = 'source' | 'sink';

/**
 * A parsed, validated endpoint, ready to create its stream. Parsing needs only the connector's
 * declarations (lib/<system>/options.ts); the connector module, and the client library under it,
 * is imported by create(): `--help`, `--version`, `schema` and a bad URI load no connector, and a
 * pipeline loads only the two it uses (the Kafka client alone takes over a second to import).
 */
export interface Endpoint {
  role: Role;
  /** The scheme, e.g. 'amqp'. */
  scheme: string;
  /** The URI with the password hidden, for logs. */
  display: string;
  /** Loads the connector and creates the stream; called once, after every endpoint validated. */
  create(): Promise<Readable | Writable>;
}

/** What a scheme's builder receives. */
export interface EndpointInput {
  /** The URI as given (a `file:` path may be relative, which `url` cannot keep). */
  uri: string;
  url: URL;
  /** The URI with the password hidden. */
  display: string;
  /** The query parameters alone, as text (the last value of a repeated key). */
  query: Record<string, string>;
  /** The options from a pipeline file alone, typed as YAML wrote them. */
  file: Record<string, unknown>;
}

/** Validates the input (throwing UsageError) and returns what creates the stream: see {@link Endpoint.create}. */
export type EndpointBuilder = (input: EndpointInput) => () => Promise<Readable | Writable>;

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
  /** How the URI is shown in logs, when it must differ from `redactUrl(uri)` (the URI as written, secrets hidden). */
  display?: (uri: string) => string;
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

/**
 * Parses and validates `uri` for `role`, merging `options` from a pipeline file. `label` is how
 * messages name the endpoint (`--dead-letter` for the dead-letter sink); the role by default.
 */
export function parseEndpoint(uri: string, role: Role, options: Record<string, unknown> = {}, label: string = role): Endpoint {
  if (typeof uri !== 'string' || uri.length === 0) throw new UsageError(`the ${label} is missing: give a URI such as stdin: or s3://bucket/prefix`);
  let url: URL;
  const credentials = uriCredentials(uri);
  try {
    url = new URL(uri);
  } catch {
    // A password holding a / ? or # cuts the URI short for the URL parser (`amqp://u:pa/ss@host`: port "pa").
    const hint = credentials?.password !== undefined ? `; if the password holds / ? # or @, percent-encode them (%2F %3F %23 %40)` : '';
    throw new UsageError(`${label} ${JSON.stringify(redactUrl(uri))} is not a URI${hint}; known schemes are ${[...schemes.keys()].map((s) => `${s}:`).join(', ')}`);
  }
  const scheme = url.protocol.replace(/:$/, '');
  const entry = schemes.get(scheme);
  // As written, not as the URL parser normalizes it, with what is secret hidden.
  const display = entry?.display?.(uri) ?? redactUrl(uri);
  if (readsTwoWays(uri, url)) {
    // The URL parser, and the client library after it, would read another host (`amqp://u:12/ss@host`: host u, port
    // 12) and send part of the password as a path: refuse it rather than connect somewhere else with a secret.
    throw new UsageError(`${label} ${JSON.stringify(display)} ${READS_TWO_WAYS}`);
  }
  if (!entry) throw new UsageError(`${label} ${JSON.stringify(display)} has an unknown scheme "${scheme}:"; known schemes are ${[...schemes.keys()].map((s) => `${s}:`).join(', ')}`);
  const builder = entry[role];
  if (!builder) {
    const named = label === role ? (display === `${scheme}:` ? '' : `${role} ${subject(display)} `) : `${label} ${subject(display)} `;
    throw new UsageError(`${named}"${scheme}:" cannot be a ${role}`);
  }
  const query: Record<string, string> = {};
  for (const [key, value] of url.searchParams) query[key] = value;
  const create = builder({ uri, url, display, query, file: { ...options } });
  return { role, scheme, display, create };
}

/**
 * Refuses a URI with a user or password for a scheme that would ignore them (`kinesis://key:secret@stream`
 * reads the stream with the SDK's credentials): credentials given and ignored are an error, not a surprise.
 * `instead` says where they go.
 */
export function refuseCredentials(input: EndpointInput, instead: string): void {
  if (uriCredentials(input.uri) === undefined) return;
  throw new UsageError(`${subject(input.display)} the user and password in the URI would be ignored: ${instead}; remove user:password@`);
}
