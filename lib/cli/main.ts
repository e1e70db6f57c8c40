/**
 * The `manifold` command: `manifold <from> <to> [--transform ...]` or
 * `manifold run <pipeline.yaml>`, with the same options either way.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Readable, Transform, Writable } from 'node:stream';
import { parseDocument, type YAMLError } from 'yaml';
import { ErrorCodes, ManifoldError, redactUrl } from '../core/errors.js';
import { flow, SAME_SIGNAL_MS, type StopReason } from '../core/flow.js';
import { defineOptions, opt } from '../core/options.js';
import { parseEndpoint, registeredSchemes, schemeHelp, type Endpoint, type Role } from './endpoints.js';
import { ExitCodes, UsageError } from './errors.js';
import { concealSubstitutions, interpolate } from './interpolate.js';
import { createLogger, type LogFormat, type Logger } from './log.js';
import { cliKeys, coerce, readOptions } from './options.js';
import { Monitor } from './monitor.js';
import { OutageLog } from './outages.js';
import { startProgress } from './progress.js';
import { parseTransform, transformHelp } from './transforms.js';
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
durations need one of the units ms, s, m, h, d: 500ms, 30s, 5m, 12h):
  ${schemeHelp().join('\n  ')}

Transforms:
  ${transformHelp.join('\n  ')}

Options:
  --transform, -t <spec>   add a transform (repeatable, applied in order)
  --quiet, -q              no progress line, warnings and errors only
  --log-format text|json   log lines on stderr as text (default) or JSON (pino)
  --metrics-port <port>    serve Prometheus /metrics, /healthz (liveness) and /readyz (readiness)
  --metrics-host <host>    the address they listen on (default 127.0.0.1; 0.0.0.0 in a container)
  --close-timeout <dur>    bound on the graceful drain after SIGINT/SIGTERM, with a unit (default 30s)
  --retries <n|forever>    retries per outage of each connector (default forever: capped
                           exponential backoff, 200ms to 30s apart; each outage is logged when
                           it begins, every minute while it lasts, and when it ends)
  --help, -h               this text
  --version                the version

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
  # \${NAME} and \${NAME:-default} take values from the environment: "amqp://app:\${AMQP_PASSWORD}@host/"

SIGINT/SIGTERM: stop reading, deliver what is in flight, flush, exit 0. A second signal more than
1s after the first exits at once (one within 1s is the same signal passed on, as npx does).

Exit codes:
  0    the source ended or a signal stopped the pipeline gracefully
  1    the pipeline failed (a fatal error, or retries exhausted)
  2    bad usage or configuration; nothing was connected
  130  a second signal stopped it at once; messages in flight were not delivered
`;
}

type EndpointValue = string | ({ uri: string } & Record<string, unknown>);

const endpoint = (role: 'source' | 'sink') =>
  opt.custom<EndpointValue>(`The ${role}: a URI, or { uri, <option>: <value> } with the connector's options as keys.`, {
    type: 'string | { uri: string }',
    cli: role === 'source' ? 'from' : 'to',
    schema: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'object', required: ['uri'], properties: { uri: { type: 'string', minLength: 1 } } }] },
    required: true,
    check: (value, fail) => {
      if (typeof value === 'string' && value.length > 0) return value;
      if (value !== null && typeof value === 'object' && !Array.isArray(value) && typeof (value as { uri?: unknown }).uri === 'string') return value as EndpointValue;
      return fail('a URI, or a mapping with a uri key (quote URIs: YAML reads a trailing colon as a mapping)');
    },
  });

/** The pipeline file's own keys; `from` and `to` carry the connectors' options. */
export const pipelineFileOptions = defineOptions('pipeline file', {
  from: endpoint('source'),
  to: endpoint('sink'),
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
});

type PipelineFile = { from: EndpointValue; to: EndpointValue; transforms?: string[]; quiet?: boolean; logFormat?: LogFormat; metricsPort?: number; metricsHost?: string; closeTimeoutMs?: number; retries?: number };

/** A retry budget as the command takes it: a whole number, or forever (YAML's .inf too). */
function retriesOf(value: unknown): number | undefined {
  if (value === 'forever' || value === Infinity) return Infinity;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  if (typeof value === 'string' && /^\d+$/.test(value.trim())) return Number(value);
  return undefined;
}

/** Reads a parsed pipeline file by its declaration: unknown keys get a hint, wrong types say what they got. */
function readPipelineFile(display: string, raw: unknown): PipelineFile {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new UsageError(`${display} must be a mapping of settings (from, to, ...), got ${JSON.stringify(raw)}`);
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
  retriesOf: Record<Role, number | undefined>;
  /** `text` with the values the environment gave the pipeline file shown as the file writes them. */
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

/** The endpoint, and the retries per outage its connector was given (undefined: it takes no retry, or it is not known). */
function endpointOf(value: EndpointValue, role: Role, retries: number): { endpoint: Endpoint; retries: number | undefined } {
  const { uri, ...own } = typeof value === 'string' ? { uri: value } : value;
  const withRetry = withCommandRetry(uri, role, own, retries);
  return { endpoint: parseEndpoint(uri, role, withRetry.options), retries: withRetry.retries };
}

/** The line of a YAML error, the error's own words, and a hint when an unquoted value ends with a colon. */
function yamlError(path: string, text: string, error: YAMLError): UsageError {
  const at = error.linePos?.[0];
  const words = error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
  const where = at ? `, line ${at.line}, column ${at.col}` : '';
  const line = at ? (text.split('\n')[at.line - 1] ?? '') : '';
  // `from: stdin:` -- YAML takes the value's trailing colon for a mapping key: a URI with a colon and nothing after it wants quotes.
  const unquoted = /(^|[\s{,])([\w-]+):\s+([^\s"'{}[\],#][^\s,}\]#]*:)(?=[\s,}\]]|$)/.exec(line);
  const hint = unquoted ? `; quote the URI: ${unquoted[2]}: "${unquoted[3]}" (YAML reads a value ending with a colon as a mapping)` : '';
  return new UsageError(`pipeline file ${path}${where} is not valid YAML: ${words.charAt(0).toLowerCase()}${words.slice(1)}${hint}`);
}

/** Reads, parses and interpolates a pipeline file; `substituted` is filled for messages to conceal. */
function readPipelineFileAt(path: string, substituted: Map<string, string>): PipelineFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read pipeline file ${path}: ${(error as Error).message}`);
  }
  const document = parseDocument(text);
  if (document.errors.length > 0) throw yamlError(path, text, document.errors[0]!);
  // After parsing, so that YAML's quoting decides what is text, and an environment value cannot change the file's structure.
  for (const [shown, original] of interpolate(`pipeline file ${path}`, document)) substituted.set(shown, original);
  return readPipelineFile(`pipeline file ${path}`, document.toJS() ?? {});
}

const FLAGS = {
  transform: { type: 'string', short: 't', multiple: true },
  quiet: { type: 'boolean', short: 'q' },
  'log-format': { type: 'string' },
  'metrics-port': { type: 'string' },
  'metrics-host': { type: 'string' },
  'close-timeout': { type: 'string' },
  retries: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

type Flags = ReturnType<typeof parseArgs<{ options: typeof FLAGS; allowPositionals: true; strict: true }>>['values'];

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
  try {
    return settingsOf(values, positionals, substituted);
  } catch (error) {
    if (substituted.size > 0 && error instanceof Error) error.message = concealSubstitutions(error.message, substituted);
    throw error;
  }
}

function settingsOf(values: Flags, positionals: string[], substituted: Map<string, string>): Settings {
  let file: PipelineFile | undefined;
  if (positionals[0] === 'run') {
    if (positionals.length !== 2) throw new UsageError('manifold run takes one pipeline file: manifold run <pipeline.yaml>');
    file = readPipelineFileAt(positionals[1]!, substituted);
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
  const transforms = [...(file?.transforms ?? []), ...(values.transform ?? [])].map(parseTransform);
  const from = endpointOf(file ? file.from : positionals[0]!, 'source', retries);
  const to = endpointOf(file ? file.to : positionals[1]!, 'sink', retries);
  return {
    from: from.endpoint,
    to: to.endpoint,
    retriesOf: { source: from.retries, sink: to.retries },
    transforms,
    quiet: values.quiet ?? file?.quiet ?? false,
    logFormat,
    metricsPort,
    metricsHost,
    closeTimeoutMs,
    retries,
    conceal: (text) => concealSubstitutions(text, substituted),
  };
}

/** Runs the command; resolves with the exit code. */
export async function main(argv: string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  let settings: ReturnType<typeof parseCommandLine>;
  try {
    settings = parseCommandLine(argv);
  } catch (error) {
    if (error instanceof UsageError || (error instanceof ManifoldError && error.code === ErrorCodes.INVALID_OPTION)) {
      io.stderr.write(`manifold: ${error.message}\n`);
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

  const log = createLogger(settings.logFormat, settings.quiet, io.stderr);
  let source: Readable | undefined;
  let sink: Writable;
  try {
    // create() imports the connector (and its client library) first: a pipeline loads only the two it uses.
    source = (await settings.from.create()) as Readable;
    sink = (await settings.to.create()) as Writable;
  } catch (error) {
    // Connector factories validate their options synchronously: still a usage error, nothing connected.
    // A source made before its sink was refused must not keep the process alive with its connection.
    source?.destroy();
    io.stderr.write(`manifold: ${settings.conceal((error as Error).message)}\n`);
    return error instanceof ManifoldError && error.code === ErrorCodes.INVALID_OPTION ? ExitCodes.USAGE : ExitCodes.FAILED;
  }
  const running = flow({ source, transforms: settings.transforms.map((make) => make()), sink, handleSignals: true, closeTimeoutMs: settings.closeTimeoutMs });
  // Added before the monitor's own 'nack' listener, so it runs first (listeners run in the order they were added):
  // a message nacked because the reader of stdout went away (`manifold ... | head`) is what the user asked for,
  // not a warning per message.
  let notWritten = 0;
  let outputGone = false;
  running.events.on('nack', (_message: unknown, error: { code?: unknown } | undefined) => {
    outputGone = error?.code === ErrorCodes.OUTPUT_CLOSED;
    if (outputGone) notWritten += 1;
  });
  const monitor = new Monitor(running, source, sink, monitorLog(log, () => outputGone), { source: settings.from.display, sink: settings.to.display });
  const outages = new OutageLog([['source', source], ['sink', sink]], log, settings.retriesOf);
  running.events.on('stopping', (why: StopReason) => {
    if (why.reason === 'signal') {
      log.info({ event: 'stopping', signal: why.signal }, `${why.signal} received: draining (a second signal, ${SAME_SIGNAL_MS / 1000}s or more later, exits at once)`);
    } else if (why.reason === 'outputclose') {
      const cause = (why.error?.cause as Error | undefined)?.message ?? why.error?.message;
      log.info({ event: 'stopping', reason: 'outputclose' }, `the output was closed${cause ? ` (${cause})` : ''}: stopping`);
    }
  });
  const retries = settings.retries === Infinity ? 'forever' : settings.retries;
  log.info({ event: 'start', from: settings.from.display, to: settings.to.display, retries }, `streaming ${settings.from.display} -> ${settings.to.display}`);
  if (settings.metricsPort !== undefined) {
    try {
      const port = await monitor.listen(settings.metricsPort, settings.metricsHost);
      const host = settings.metricsHost.includes(':') ? `[${settings.metricsHost}]` : settings.metricsHost;
      log.info({ event: 'metrics', host: settings.metricsHost, port }, `metrics on http://${host}:${port}/metrics`);
    } catch (error) {
      running.stop().catch(() => undefined);
      io.stderr.write(`manifold: cannot serve metrics on port ${settings.metricsPort}: ${(error as Error).message}\n`);
      await running.catch(() => undefined);
      return ExitCodes.USAGE;
    }
  }
  const stderr = io.stderr as NodeJS.WriteStream;
  const stopProgress = !settings.quiet && stderr.isTTY ? startProgress(monitor, stderr) : undefined;
  try {
    const stats = await running;
    stopProgress?.();
    const gone = notWritten > 0 ? ` (${notWritten} not written: the output was closed)` : '';
    log.info({ event: 'done', ...stats }, `done: ${stats.messages} messages, ${stats.acks} acked, ${stats.nacks} nacked${gone}`);
    return ExitCodes.OK;
  } catch (error) {
    stopProgress?.();
    const err = error as Error & { code?: string };
    log.error({ event: 'failed', code: err.code }, `failed: ${settings.conceal(err.message)}`);
    return err.code === ErrorCodes.ABORTED ? ExitCodes.ABORTED : ExitCodes.FAILED;
  } finally {
    outages.close();
    await monitor.close();
    log.flush();
  }
}

/**
 * The monitor's log, less what other lines say better: a line per retry and per reconnection
 * (the outage lines tell each outage once: see OutageLog), the sink's 'outputclose' (the
 * 'stopping' line says it), and a warning per message nacked because the output went away.
 */
function monitorLog(log: Logger, outputGone: () => boolean): Logger {
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
    warn: (fields, message) => {
      if (fields.event === 'nack' && outputGone()) return;
      log.warn(fields, message);
    },
    error: (fields, message) => log.error(fields, message),
    flush: () => log.flush(),
  };
}
