/**
 * The `manifold` command: `manifold <from> <to> [--transform ...]` or
 * `manifold run <pipeline.yaml>`, with the same options either way.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Readable, Transform, Writable } from 'node:stream';
import type { YAMLError } from 'yaml';
import { ErrorCodes, ManifoldError, redactText, redactUrl } from '../core/errors.js';
import type { RetryBackoffOptions } from '../core/error-policy.js';
import { flow, SAME_SIGNAL_MS, type StopReason } from '../core/flow.js';
import { DURATION_LIMIT_TEXT, MAX_DURATION_MS, defineOptions, opt } from '../core/options.js';
import { parseEndpoint, registeredSchemes, schemeHelp, type Endpoint, type Role } from './endpoints.js';
import { ExitCodes, UsageError } from './errors.js';
import { concealSubstitutions, interpolate, yaml } from './interpolate.js';
import { createLogger, escapeControls, type LogFormat, type Logger } from './log.js';
import { cliKeys, coerce, readOptions, shownValue } from './options.js';
import type { MetricsServer } from './monitor.js';
import { Secrets } from './secrets.js';
import { parseTransform, transformHelp } from './transforms.js';
import { DURATION_UNITS_TEXT, formatDuration, isUnitless, parseDuration } from './units.js';
import './schemes.js';

/** Where the command reads and writes; the real process streams by default, fakes in tests. */
export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream | NodeJS.WritableStream;
}

const VERSION = '0.1.0';

export function helpText(): string {
  return `manifold ${VERSION}: stream data between systems with at-least-once delivery

Usage:
  manifold <from> <to> [--transform <spec>]... [options]
  manifold run <pipeline.yaml> [options]
  manifold schema          print the JSON Schema of pipeline files (for an editor's YAML support)

Endpoints (URIs; query keys are the connector's options; sizes take units such as 1MiB;
durations need one of the units ms, s, m, h, d: 500ms, 30s, 5m, 12h; at most 2147483647ms, about 24.8d;
passwords and secret query values are shown as ***):
  ${schemeHelp().join('\n  ')}

Transforms:
  ${transformHelp.join('\n  ')}

Options:
  --transform, -t <spec>   add a transform (repeatable, applied in order)
  --quiet, -q              no progress line, warnings and errors only
  --log-format text|json   log lines on stderr as text (default) or JSON (pino)
  --metrics-port <port>    serve Prometheus /metrics, /healthz (liveness) and /readyz (readiness)
  --metrics-host <host>    the address they listen on (default 127.0.0.1; 0.0.0.0 in a container);
                           requests naming another host (Host: header) than localhost, 127.0.0.1,
                           [::1] or this address (any IP address with 0.0.0.0) get 421
  --close-timeout <dur>    bound on the graceful drain after SIGINT/SIGTERM, with a unit (default 30s)
  --retries <n|forever>    retries per outage of each connector (default forever: capped
                           exponential backoff, 200ms to 30s apart; each outage is logged when
                           it begins, every minute while it lasts, and when it ends)
  --help, -h               this text
  --version                the version

Messages that cannot be delivered (a transform or the sink refuses them):
  --max-attempts <n>       deliveries of a message, the first included, before it is given up on
                           (default 5; 1: no redelivery). Not JSON or too large: given up at once
  --retry-backoff <min>[..<max>]
                           jittered exponential backoff between deliveries: the first delay, and
                           the largest (default 1s..30s, doubling each time)
  --dead-letter <uri>      where a message given up on goes, with where it came from and why: any
                           sink URI (file:dead.jsonl, kafka://host:9092/dead, amqp://host/?exchange=dead);
                           its original is acked once it is there. Default: none, and the pipeline
                           fails naming the message (a source that redelivers gets it back; stdin:,
                           file: and ws:// lose it: exit 4)
  --dead-letter-format headers|json
                           the original bytes with x-manifold-dead-letter-* headers, or a JSON
                           envelope around them (default headers for kafka:// and amqp://, which
                           carry headers; json for the others)
  Re-send dead letters where they failed: manifold file:dead.jsonl <to> --transform unwrap-dead-letter

A pipeline file holds the same settings (quote URIs: YAML reads a trailing colon as a mapping):
  from: "amqp://user:pass@host/vhost?queue=orders"    # or { uri: "...", <option>: <value> }
  to: "s3://bucket/prefix?commitSize=1MiB&commitInterval=5m"
  transforms: [ "json-append:receivedAt=$now" ]
  quiet: false
  logFormat: json
  metricsPort: 9464
  metricsHost: 0.0.0.0              # default 127.0.0.1
  closeTimeout: 30s                 # a bare YAML number is milliseconds
  retries: forever                  # or a number
  maxAttempts: 5
  retryBackoff: 1s..30s
  deadLetter: "file:/var/lib/manifold/dead.jsonl"     # or { uri: "...", <option>: <value> }
  deadLetterFormat: json            # default: headers for kafka:// and amqp://, else json
  # \${NAME} and \${NAME:-default} take values from the environment: "amqp://app:\${AMQP_PASSWORD}@host/"

SIGINT/SIGTERM: stop reading, deliver what is in flight, flush, exit 0. A second signal more than
1s after the first exits at once (one within 1s is the same signal passed on, as npx does).

Exit codes:
  0    the source ended or a signal stopped the pipeline gracefully
  1    the pipeline failed (a fatal error, retries exhausted, or a message that could not be
       delivered from a source that will deliver it again on its next start)
  2    bad usage or configuration; nothing was connected
  4    messages were lost: they could not be delivered, their source cannot deliver them again
       (stdin:, file:, ws://) and there was no dead-letter sink (or it refused them); the count
       is printed
  130  a second signal stopped it at once; messages in flight were not delivered
`;
}

type EndpointValue = string | ({ uri: string } & Record<string, unknown>);

const endpoint = (role: 'source' | 'sink' | 'dead-letter sink', key: string) =>
  opt.custom<EndpointValue>(
    `${role === 'dead-letter sink' ? 'Where a message given up on goes (any sink), with where it came from and why; without one the pipeline fails naming it' : `The ${role}`}: a URI, or { uri, <option>: <value> } with the connector's options as keys.`,
    {
    type: 'string | { uri: string }',
    cli: key,
    schema: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'object', required: ['uri'], properties: { uri: { type: 'string', minLength: 1 } } }] },
    required: role !== 'dead-letter sink',
    check: (value, fail) => {
      if (typeof value === 'string' && value.length > 0) return value;
      if (value !== null && typeof value === 'object' && !Array.isArray(value) && typeof (value as { uri?: unknown }).uri === 'string') return value as EndpointValue;
      return fail('a URI, or a mapping with a uri key (quote URIs: YAML reads a trailing colon as a mapping)');
    },
    },
  );

/**
 * `--retry-backoff` / `retryBackoff`: `<min>[..<max>]`, durations with a unit (`1s..30s`, `500ms`); a
 * pipeline file's YAML number is the first delay in milliseconds. Undefined when it is not one.
 */
function backoffOf(value: unknown): RetryBackoffOptions | string {
  const expected = 'a delay such as 500ms, or a range of delays such as 1s..30s (the first, and the largest)';
  if (typeof value === 'number') {
    if (value > MAX_DURATION_MS) return `${expected}, of ${DURATION_LIMIT_TEXT}`;
    return Number.isFinite(value) && value >= 0 ? { minTimeoutMs: value } : expected;
  }
  if (typeof value !== 'string') return expected;
  const parts = value.split('..');
  if (parts.length > 2) return expected;
  const delays = parts.map((part) => parseDuration(part));
  if (delays.some((d) => d === undefined)) {
    const unitless = parts.find((part) => isUnitless(part));
    return unitless === undefined ? `${expected}, with units ${DURATION_UNITS_TEXT}` : `${expected}; "${unitless.trim()}" has no unit: write ${unitless.trim()}s or ${unitless.trim()}ms`;
  }
  const [minTimeoutMs, maxTimeoutMs] = delays as number[];
  if ((delays as number[]).some((d) => d > MAX_DURATION_MS)) return `${expected}, each of ${DURATION_LIMIT_TEXT}`;
  if (maxTimeoutMs === undefined) return { minTimeoutMs: minTimeoutMs! };
  if (maxTimeoutMs < minTimeoutMs!) return `${expected}, whose largest delay is not less than its first`;
  return { minTimeoutMs: minTimeoutMs!, maxTimeoutMs };
}

/** The pipeline file's own keys; `from` and `to` carry the connectors' options. */
export const pipelineFileOptions = defineOptions('pipeline file', {
  from: endpoint('source', 'from'),
  to: endpoint('sink', 'to'),
  transforms: opt.custom<string[]>('Transforms applied in order, as --transform takes them.', {
    type: 'string[]',
    cli: 'transforms',
    schema: { type: 'array', items: { type: 'string' } },
    check: (value, fail) => (Array.isArray(value) && value.every((t) => typeof t === 'string') ? value : fail('a list of transform specs')),
  }),
  quiet: opt.boolean('No progress line; warnings and errors only.', { default: false }),
  logFormat: opt.enum('Log lines on stderr as text or JSON (pino).', ['text', 'json'], { default: 'text' }),
  metricsPort: opt.integer('Serve Prometheus /metrics, /healthz and /readyz at this port (0: any free port).', { min: 0, max: 65535 }),
  metricsHost: opt.string('The address the metrics server listens on: 127.0.0.1 (default) or, in a container, 0.0.0.0.', { default: '127.0.0.1' }),
  closeTimeoutMs: opt.duration('Bound on the graceful drain after SIGINT/SIGTERM.', { default: 30_000 }),
  retries: opt.custom<number>('Retries per outage of every connector (an endpoint\'s own retry wins); the command retries for ever by default, with capped exponential backoff.', {
    type: 'number | "forever"',
    cli: 'retries',
    defaultText: 'forever',
    schema: { anyOf: [{ type: 'integer', minimum: 0 }, { const: 'forever' }] },
    check: (value, fail) => retriesOf(value) ?? fail('a whole number of retries (0 or more), or forever'),
  }),
  maxAttempts: opt.integer('Deliveries of a message, the first included, before it is given up on: dead-lettered, or the pipeline fails. 1: no redelivery. A record at fault (not JSON, too large) is given up on at once.', { default: 5, min: 1 }),
  retryBackoff: opt.custom<RetryBackoffOptions>('Jittered exponential backoff between deliveries of a message: the first delay and the largest, as <min>..<max> (1s..30s), doubling each time; a YAML number is the first delay in milliseconds.', {
    type: 'string',
    cli: 'retryBackoff',
    defaultText: '1s..30s',
    schema: {
      anyOf: [
        { type: 'string', pattern: '^\\s*((\\d+(\\.\\d+)?\\s*(ms|sec|min|s|m|h|d))+|0)\\s*(\\.\\.\\s*((\\d+(\\.\\d+)?\\s*(ms|sec|min|s|m|h|d))+|0)\\s*)?$' },
        { type: 'number', minimum: 0 },
      ],
    },
    check: (value, fail) => {
      const backoff = backoffOf(value);
      return typeof backoff === 'string' ? fail(backoff) : backoff;
    },
  }),
  deadLetter: endpoint('dead-letter sink', 'deadLetter'),
  deadLetterFormat: opt.enum('How a dead-letter record says what failed: the original bytes with x-manifold-dead-letter-* headers, or a JSON envelope around them.', ['headers', 'json'], {
    defaultText: 'headers for a sink that carries them (kafka://, amqp://), else json',
  }),
});

type PipelineFile = {
  from: EndpointValue;
  to: EndpointValue;
  transforms?: string[];
  quiet?: boolean;
  logFormat?: LogFormat;
  metricsPort?: number;
  metricsHost?: string;
  closeTimeoutMs?: number;
  retries?: number;
  maxAttempts?: number;
  retryBackoff?: RetryBackoffOptions;
  deadLetter?: EndpointValue;
  deadLetterFormat?: 'headers' | 'json';
};

/** A retry budget as the command takes it: a whole number, or forever (YAML's .inf too). */
function retriesOf(value: unknown): number | undefined {
  if (value === 'forever' || value === Infinity) return Infinity;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  if (typeof value === 'string' && /^\d+$/.test(value.trim())) return Number(value);
  return undefined;
}

/** Reads a parsed pipeline file by its declaration: unknown keys get a hint, wrong types say what they got. */
function readPipelineFile(display: string, raw: unknown): PipelineFile {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new UsageError(`${display} must be a mapping of settings (from, to, ...), got ${shownValue(raw)}`);
  const values = readOptions(display, raw as Record<string, unknown>, [pipelineFileOptions], { typed: true });
  for (const name of ['from', 'to'] as const) {
    if (values[name] === undefined) throw new UsageError(`${display} needs ${name}: the ${name === 'from' ? 'source' : 'sink'} URI`);
  }
  return values as PipelineFile;
}

interface Settings {
  from: Endpoint;
  to: Endpoint;
  transforms: Array<() => Transform>;
  quiet: boolean;
  logFormat: LogFormat;
  metricsPort: number | undefined;
  metricsHost: string;
  closeTimeoutMs: number;
  /** Retries per outage passed to every connector that takes `retry`; Infinity by default. */
  retries: number;
  /** What each connector was given, its own `retry` included (undefined: no retry option, or not known). */
  retriesOf: Record<Role | 'dead-letter', number | undefined>;
  /** Deliveries of a message before it is given up on (the error policy's). */
  maxAttempts: number;
  /** The backoff between deliveries; undefined: the library's (1 s to 30 s). */
  retryBackoff: RetryBackoffOptions | undefined;
  /** Where messages given up on go; undefined: the pipeline fails naming the message. */
  deadLetter: Endpoint | undefined;
  /** How `deadLetter` is named in messages: the flag, or the pipeline file's key. */
  deadLetterLabel: string;
  deadLetterFormat: 'headers' | 'json' | undefined;
  /**
   * `text` as the command may print it: the values the environment gave the pipeline file shown as the file
   * writes them, every URI redacted, and every secret the command was given (passwords, secret query values,
   * secret pipeline-file values) replaced by `***`, wherever it came from.
   */
  conceal(text: string): string;
}

/**
 * The endpoint's pipeline-file options with the command's retry budget as its `retry`, when its
 * connector takes one: the library's default is finite, a collector's is to keep trying. The
 * endpoint's own `retry` (`?retry=5`, or `retry:` next to its uri) wins; an object of its own
 * keeps the command's budget unless it sets `retries`.
 */
function withCommandRetry(uri: string, role: Role, options: Record<string, unknown>, retries: number): { options: Record<string, unknown>; retries: number | undefined } {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return { options, retries: undefined };
  }
  const declarations = registeredSchemes().get(url.protocol.replace(/:$/, ''))?.options?.[role] ?? [];
  if (!declarations.some((d) => cliKeys(d).has('retry'))) return { options, retries: undefined };
  const query = url.searchParams.get('retry');
  if (query !== null) return { options, retries: /^(false|no|off)$/i.test(query.trim()) ? 0 : retriesOf(query.trim().toLowerCase()) };
  const own = options.retry;
  if (own === undefined) return { options: { ...options, retry: { retries } }, retries };
  if (own === false) return { options, retries: 0 };
  if (own !== null && typeof own === 'object' && !Array.isArray(own)) {
    const merged = { retries, ...own };
    return { options: { ...options, retry: merged }, retries: retriesOf(merged.retries) };
  }
  return { options, retries: retriesOf(own) };
}

/**
 * The endpoint, and the retries per outage its connector was given (undefined: it takes no retry, or it is not known).
 * `label` names it in messages (the dead-letter sink's flag or key); the role by default.
 */
function endpointOf(value: EndpointValue, role: Role, retries: number, label?: string): { endpoint: Endpoint; retries: number | undefined } {
  const { uri, ...own } = typeof value === 'string' ? { uri: value } : value;
  const withRetry = withCommandRetry(uri, role, own, retries);
  return { endpoint: parseEndpoint(uri, role, withRetry.options, label), retries: withRetry.retries };
}

/** The line of a YAML error, the error's own words, and a hint when an unquoted value ends with a colon. */
function yamlError(path: string, text: string, error: YAMLError): UsageError {
  const at = error.linePos?.[0];
  const words = error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
  const where = at ? `, line ${at.line}, column ${at.col}` : '';
  const line = at ? (text.split('\n')[at.line - 1] ?? '') : '';
  // `from: stdin:` -- YAML takes the value's trailing colon for a mapping key: a URI with a colon and nothing after it wants quotes.
  const unquoted = /(^|[\s{,])([\w-]+):\s+([^\s"'{}[\],#][^\s,}\]#]*:)(?=[\s,}\]]|$)/.exec(line);
  const hint = unquoted ? `; quote the URI: ${unquoted[2]}: "${redactUrl(unquoted[3]!)}" (YAML reads a value ending with a colon as a mapping)` : '';
  return new UsageError(`pipeline file ${path}${where} is not valid YAML: ${words.charAt(0).toLowerCase()}${words.slice(1)}${hint}`);
}

/** Reads, parses and interpolates a pipeline file; `substituted` and `secrets` are filled for messages to conceal. */
function readPipelineFileAt(path: string, substituted: Map<string, string>, secrets: Secrets): PipelineFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read pipeline file ${path}: ${(error as Error).message}`);
  }
  const document = yaml().parseDocument(text);
  if (document.errors.length > 0) throw yamlError(path, text, document.errors[0]!);
  // After parsing, so that YAML's quoting decides what is text, and an environment value cannot change the file's structure.
  for (const [shown, original] of interpolate(`pipeline file ${path}`, document)) substituted.set(shown, original);
  const raw: unknown = document.toJS() ?? {};
  // Before anything is validated: a message about any value may then hide what the file holds in secret.
  secrets.addValue(raw);
  return readPipelineFile(`pipeline file ${path}`, raw);
}

const FLAGS = {
  transform: { type: 'string', short: 't', multiple: true },
  quiet: { type: 'boolean', short: 'q' },
  'log-format': { type: 'string' },
  'metrics-port': { type: 'string' },
  'metrics-host': { type: 'string' },
  'close-timeout': { type: 'string' },
  retries: { type: 'string' },
  'max-attempts': { type: 'string' },
  'retry-backoff': { type: 'string' },
  'dead-letter': { type: 'string' },
  'dead-letter-format': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

type Flags = ReturnType<typeof parseArgs<{ options: typeof FLAGS; allowPositionals: true; strict: true }>>['values'];

/** Runs `fn`, and names `label` (`--dead-letter`) in the error it throws, unless its message begins with it. */
function named<T>(label: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof Error && !error.message.startsWith(label)) error.message = `${label}: ${error.message}`;
    throw error;
  }
}

/** Promise form of {@link named}. */
async function namedAsync<T>(label: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof Error && !error.message.startsWith(label)) error.message = `${label}: ${error.message}`;
    throw error;
  }
}

/** Reads argv into validated settings; throws UsageError on anything wrong, before any I/O but reading a pipeline file. */
export function parseCommandLine(argv: string[]): Settings | 'help' | 'version' | 'schema' {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: FLAGS });
  } catch (error) {
    throw new UsageError(`${(error as Error).message.replace(/\. To specify.*$/s, '')}; see manifold --help`);
  }
  const { values, positionals } = parsed;
  if (values.help) return 'help';
  if (values.version) return 'version';
  if (positionals[0] === 'schema') {
    if (positionals.length !== 1) throw new UsageError('manifold schema takes no arguments: manifold schema > manifold.schema.json');
    return 'schema';
  }
  // What the environment gave the pipeline file: an error about such a value shows the file's ${NAME}, never the value.
  const substituted = new Map<string, string>();
  // The secrets in the URIs (and, once read, the pipeline file): no message shows one.
  const secrets = new Secrets();
  for (const text of [...positionals, values['dead-letter']]) if (text !== undefined) secrets.addUri(text);
  try {
    return settingsOf(values, positionals, substituted, secrets);
  } catch (error) {
    if (error instanceof Error) error.message = secrets.conceal(concealSubstitutions(error.message, substituted));
    throw error;
  }
}

function settingsOf(values: Flags, positionals: string[], substituted: Map<string, string>, secrets: Secrets): Settings {
  let file: PipelineFile | undefined;
  if (positionals[0] === 'run') {
    if (positionals.length !== 2) throw new UsageError('manifold run takes one pipeline file: manifold run <pipeline.yaml>');
    file = readPipelineFileAt(positionals[1]!, substituted, secrets);
  } else if (positionals.length !== 2) {
    throw new UsageError(
      positionals.length < 2
        ? 'give a source and a sink: manifold <from> <to>, e.g. manifold stdin: stdout: (see manifold --help)'
        : `too many arguments: ${positionals.slice(2).map((p) => JSON.stringify(redactUrl(p))).join(' ')}; give exactly <from> <to>`,
    );
  }

  const logFormat = values['log-format'] ?? file?.logFormat ?? 'text';
  if (logFormat !== 'text' && logFormat !== 'json') throw new UsageError(`--log-format must be text or json, got ${JSON.stringify(logFormat)}`);
  let metricsPort = file?.metricsPort;
  if (values['metrics-port'] !== undefined) {
    const n = Number(values['metrics-port']);
    if (!/^\d+$/.test(values['metrics-port']) || n > 65535) throw new UsageError(`--metrics-port must be a port number from 0 to 65535, got ${JSON.stringify(values['metrics-port'])}`);
    metricsPort = n;
  }
  const metricsHost = values['metrics-host'] ?? file?.metricsHost ?? '127.0.0.1';
  if (metricsHost.trim() === '') throw new UsageError('--metrics-host must be an address to listen on, such as 127.0.0.1 or 0.0.0.0');
  let closeTimeoutMs = file?.closeTimeoutMs ?? 30_000;
  if (values['close-timeout'] !== undefined) {
    // A flag is text: "30" is refused for want of a unit, as in a URI.
    closeTimeoutMs = coerce('', '--close-timeout', pipelineFileOptions.specs.closeTimeoutMs, values['close-timeout']) as number;
  }
  let retries = file?.retries ?? Infinity;
  if (values.retries !== undefined) {
    const n = retriesOf(values.retries);
    if (n === undefined) throw new UsageError(`--retries must be a whole number of retries (0 or more) or forever, got ${JSON.stringify(values.retries)}`);
    retries = n;
  }
  const specs = pipelineFileOptions.specs;
  // Flags are text, read as a URI's values are ("0" is not a whole number of at least 1, "30" no duration).
  const maxAttempts = values['max-attempts'] !== undefined ? (coerce('', '--max-attempts', specs.maxAttempts, values['max-attempts']) as number) : (file?.maxAttempts ?? 5);
  const retryBackoff = values['retry-backoff'] !== undefined ? (coerce('', '--retry-backoff', specs.retryBackoff, values['retry-backoff']) as RetryBackoffOptions) : file?.retryBackoff;
  const deadLetterFormat =
    values['dead-letter-format'] !== undefined ? (coerce('', '--dead-letter-format', specs.deadLetterFormat, values['dead-letter-format']) as 'headers' | 'json') : file?.deadLetterFormat;
  const deadLetterValue = values['dead-letter'] ?? file?.deadLetter;
  const deadLetterLabel = values['dead-letter'] !== undefined ? '--dead-letter' : 'deadLetter';
  if (deadLetterFormat !== undefined && deadLetterValue === undefined) {
    const format = values['dead-letter-format'] !== undefined ? '--dead-letter-format' : 'deadLetterFormat';
    throw new UsageError(`${format} says how dead-letter records are written, but there is no dead-letter sink: add --dead-letter <uri> (deadLetter: in a pipeline file), or leave ${format} out`);
  }
  const transforms = [...(file?.transforms ?? []), ...(values.transform ?? [])].map(parseTransform);
  const from = endpointOf(file ? file.from : positionals[0]!, 'source', retries);
  const to = endpointOf(file ? file.to : positionals[1]!, 'sink', retries);
  const deadLetter = deadLetterValue === undefined ? undefined : named(deadLetterLabel, () => endpointOf(deadLetterValue, 'sink', retries, deadLetterLabel));
  if (deadLetter && deadLetter.endpoint.display === from.endpoint.display) {
    // A message given up on would be read again, fail again, and be written again: for ever.
    throw new UsageError(`${deadLetterLabel} ${JSON.stringify(deadLetter.endpoint.display)} is the source itself: what is given up on would be read back and fail again; give another sink`);
  }
  return {
    from: from.endpoint,
    to: to.endpoint,
    retriesOf: { source: from.retries, sink: to.retries, 'dead-letter': deadLetter?.retries },
    maxAttempts,
    retryBackoff,
    deadLetter: deadLetter?.endpoint,
    deadLetterLabel,
    deadLetterFormat,
    transforms,
    quiet: values.quiet ?? file?.quiet ?? false,
    logFormat,
    metricsPort,
    metricsHost,
    closeTimeoutMs,
    retries,
    conceal: (text) => secrets.conceal(concealSubstitutions(text, substituted)),
  };
}

/**
 * How long after the drain's own bound (`closeTimeoutMs`) the command gives up waiting for the pipeline
 * to end and returns anyway: a connector that never settles must not keep the command from exiting.
 */
export const STOP_GRACE_MS = 5000;

/** A message of the command's own, as stderr shows it: secrets hidden, control characters escaped. */
function usageLine(message: string, conceal: (text: string) => string = redactText): string {
  return `manifold: ${escapeControls(conceal(message))}\n`;
}

/** Runs the command; resolves with the exit code. */
export async function main(argv: string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  let settings: ReturnType<typeof parseCommandLine>;
  try {
    settings = parseCommandLine(argv);
  } catch (error) {
    if (error instanceof UsageError || (error instanceof ManifoldError && error.code === ErrorCodes.INVALID_OPTION)) {
      io.stderr.write(usageLine(error.message));
      return ExitCodes.USAGE;
    }
    throw error;
  }
  if (settings === 'help') {
    io.stdout.write(helpText());
    return ExitCodes.OK;
  }
  if (settings === 'version') {
    io.stdout.write(`${VERSION}\n`);
    return ExitCodes.OK;
  }
  if (settings === 'schema') {
    const { pipelineSchema } = await import('./schema.js');
    io.stdout.write(`${JSON.stringify(pipelineSchema(), null, 2)}\n`);
    return ExitCodes.OK;
  }
  const conceal = settings.conceal;
  // What a run needs and --help or --version do not: the monitor's prom-client and node:http alone take about 60 ms to load.
  const [{ listenMetrics, Monitor }, { DeliveryLog }, { OutageLog }, { startProgress }] = await Promise.all([
    import('./monitor.js'),
    import('./delivery-log.js'),
    import('./outages.js'),
    import('./progress.js'),
  ]);

  // The metrics port first: a port that is taken is a usage error, and exit 2 means nothing was connected.
  let metrics: MetricsServer | undefined;
  if (settings.metricsPort !== undefined) {
    try {
      metrics = await listenMetrics(settings.metricsPort, settings.metricsHost);
    } catch (error) {
      io.stderr.write(usageLine(`cannot serve metrics on ${settings.metricsHost} port ${settings.metricsPort}: ${(error as Error).message}; give another --metrics-port (0 takes any free one)`, conceal));
      return ExitCodes.USAGE;
    }
  }

  // A signal before the flow exists (it handles them from then on) stops the command once the streams are made:
  // without this, SIGTERM while a connector module loads would leave a connection being made with no one to close it.
  let signalled: NodeJS.Signals | undefined;
  const onEarlySignal = (signal: NodeJS.Signals): void => {
    signalled ??= signal;
  };
  process.on('SIGINT', onEarlySignal);
  process.on('SIGTERM', onEarlySignal);
  const log = createLogger(settings.logFormat, settings.quiet, io.stderr, conceal);
  let source: Readable | undefined;
  let sink: Writable | undefined;
  let deadLetter: Writable | undefined;
  try {
    // create() imports the connector (and its client library) first: a pipeline loads only those it uses.
    source = (await settings.from.create()) as Readable;
    sink = (await settings.to.create()) as Writable;
    const dlEndpoint = settings.deadLetter;
    deadLetter = dlEndpoint ? ((await namedAsync(settings.deadLetterLabel, () => dlEndpoint.create())) as Writable) : undefined;
    if (deadLetter && settings.deadLetterFormat === 'headers' && (deadLetter as { carriesHeaders?: unknown }).carriesHeaders !== true) {
      const flag = settings.deadLetterLabel === '--dead-letter' ? '--dead-letter-format' : 'deadLetterFormat';
      throw new UsageError(`${flag} headers needs a dead-letter sink that carries headers (kafka://, amqp://); ${settings.deadLetter!.display} would drop them, and with them what failed: use json`);
    }
  } catch (error) {
    process.off('SIGINT', onEarlySignal);
    process.off('SIGTERM', onEarlySignal);
    // Connector factories validate their options synchronously: still a usage error, nothing connected.
    // A stream made before another was refused must not keep the process alive with its connection.
    source?.destroy();
    sink?.destroy();
    deadLetter?.destroy();
    await metrics?.close();
    io.stderr.write(usageLine((error as Error).message, conceal));
    return error instanceof UsageError || (error instanceof ManifoldError && error.code === ErrorCodes.INVALID_OPTION) ? ExitCodes.USAGE : ExitCodes.FAILED;
  }
  process.off('SIGINT', onEarlySignal);
  process.off('SIGTERM', onEarlySignal);
  if (signalled !== undefined) {
    source.destroy();
    sink.destroy();
    deadLetter?.destroy();
    await metrics?.close();
    log.info({ event: 'stopping', signal: signalled }, `${signalled} received before the pipeline started: stopped, nothing read`);
    log.flush();
    return ExitCodes.OK;
  }
  const running = flow({
    source,
    transforms: settings.transforms.map((make) => make()),
    sink,
    handleSignals: true,
    closeTimeoutMs: settings.closeTimeoutMs,
    maxAttempts: settings.maxAttempts,
    ...(settings.retryBackoff ? { retryBackoff: settings.retryBackoff } : {}),
    ...(deadLetter ? { deadLetter } : {}),
    ...(settings.deadLetterFormat ? { deadLetterFormat: settings.deadLetterFormat } : {}),
    // What dead-letter records name as their source: the URI as the logs show it, password hidden.
    sourceName: settings.from.display,
  });
  // A message nacked because the reader of stdout went away (`manifold ... | head`) is what the user asked for: it is
  // counted in the done line, not warned about one by one (DeliveryLog leaves those out).
  let notWritten = 0;
  running.events.on('nack', (_message: unknown, error: { code?: unknown } | undefined) => {
    if (error?.code === ErrorCodes.OUTPUT_CLOSED) notWritten += 1;
  });
  const deliveries = new DeliveryLog(running.events, log, { maxAttempts: settings.maxAttempts, deadLetter: deadLetter !== undefined, conceal });
  const monitor = new Monitor(
    running,
    source,
    sink,
    monitorLog(log),
    { source: settings.from.display, sink: settings.to.display, deadLetter: settings.deadLetter?.display },
    deadLetter,
    { redact: conceal },
  );
  metrics?.attach(monitor);
  const outages = new OutageLog([['source', source], ['sink', sink], ...(deadLetter ? [['dead-letter', deadLetter] as const] : [])], log, settings.retriesOf);
  // Once a stop began, the pipeline has closeTimeoutMs to drain (flow() destroys it then); should it still not
  // settle (a connector that never answers its destroy), the command returns anyway, STOP_GRACE_MS later.
  let stopDeadline: NodeJS.Timeout | undefined;
  const gaveUp = new Promise<'gave up'>((resolve) => {
    running.events.once('stopping', () => {
      // Capped as every timer is: a longer one would fire after 1 ms.
      stopDeadline = setTimeout(() => resolve('gave up'), Math.min(settings.closeTimeoutMs + STOP_GRACE_MS, MAX_DURATION_MS));
    });
  });
  running.events.on('stopping', (why: StopReason) => {
    if (why.reason === 'signal') {
      log.info({ event: 'stopping', signal: why.signal }, `${why.signal} received: draining (a second signal, ${SAME_SIGNAL_MS / 1000}s or more later, exits at once)`);
    } else if (why.reason === 'outputclose') {
      const cause = (why.error?.cause as Error | undefined)?.message ?? why.error?.message;
      log.info({ event: 'stopping', reason: 'outputclose' }, `the output was closed${cause ? ` (${cause})` : ''}: stopping`);
    }
  });
  const retries = settings.retries === Infinity ? 'forever' : settings.retries;
  const dl = settings.deadLetter?.display;
  log.info(
    // retries last: what a reader (and test/cli/outages.test.ts) looks for at the end of the line.
    { event: 'start', from: settings.from.display, to: settings.to.display, ...(dl ? { deadLetter: dl } : {}), maxAttempts: settings.maxAttempts, retries },
    `streaming ${settings.from.display} -> ${settings.to.display}${dl ? ` (dead letters -> ${dl})` : ''}`,
  );
  if (metrics) {
    const host = settings.metricsHost.includes(':') ? `[${settings.metricsHost}]` : settings.metricsHost;
    log.info({ event: 'metrics', host: settings.metricsHost, port: metrics.port }, `metrics on http://${host}:${metrics.port}/metrics`);
  }
  const stderr = io.stderr as NodeJS.WriteStream;
  const stopProgress = !settings.quiet && stderr.isTTY ? startProgress(monitor, stderr, undefined, conceal) : undefined;
  try {
    const stats = await Promise.race([running, gaveUp]);
    stopProgress?.();
    deliveries.close();
    if (stats === 'gave up') {
      log.error(
        { event: 'failed', code: ErrorCodes.CLOSE_TIMEOUT },
        `failed: the pipeline did not end within ${formatDuration(settings.closeTimeoutMs + STOP_GRACE_MS)} of the stop (--close-timeout ${formatDuration(settings.closeTimeoutMs)}); exiting with what is in flight not delivered`,
      );
      return ExitCodes.FAILED;
    }
    const gone = notWritten > 0 ? ` (${notWritten} not written: the output was closed)` : '';
    log.info(
      { event: 'done', ...stats },
      `done: ${stats.messages} messages, ${stats.acks} acked, ${stats.nacks} nacked${gone}, ${stats.deadLettered} dead-lettered, ${stats.lost} lost, ${stats.redeliveries} ${stats.redeliveries === 1 ? 'redelivery' : 'redeliveries'}`,
    );
    return ExitCodes.OK;
  } catch (error) {
    stopProgress?.();
    deliveries.close();
    const err = error as Error & { code?: string; lost?: unknown };
    // Messages the source cannot deliver again (stdin, WebSocket), given up on with no dead-letter sink, or refused by it.
    const lost = (err.code === ErrorCodes.UNDELIVERED || err.code === ErrorCodes.DELIVERY) && typeof err.lost === 'number' ? err.lost : 0;
    if (lost > 0) {
      log.error({ event: 'failed', code: err.code, lost }, `failed, ${lost} ${lost === 1 ? 'message' : 'messages'} lost: ${conceal(err.message)}`);
      return ExitCodes.LOST;
    }
    log.error({ event: 'failed', code: err.code }, `failed: ${conceal(err.message)}`);
    return err.code === ErrorCodes.ABORTED ? ExitCodes.ABORTED : ExitCodes.FAILED;
  } finally {
    clearTimeout(stopDeadline);
    outages.close();
    await metrics?.close();
    log.flush();
  }
}

/**
 * The monitor's log, less what other lines say better: a line per retry and per reconnection
 * (the outage lines tell each outage once: see OutageLog) and the sink's 'outputclose' (the
 * 'stopping' line says it).
 */
function monitorLog(log: Logger): Logger {
  const ready = new Set<unknown>();
  return {
    info: (fields, message) => {
      if (fields.event === 'reconnect' || fields.event === 'outputclose') return;
      if (fields.event === 'ready') {
        if (ready.has(fields.role)) return;
        ready.add(fields.role);
      }
      log.info(fields, message);
    },
    warn: (fields, message) => log.warn(fields, message),
    error: (fields, message) => log.error(fields, message),
    flush: () => log.flush(),
  };
}
