/**
 * The `manifold` command: `manifold <from> <to> [--transform ...]` or
 * `manifold run <pipeline.yaml>`, with the same options either way.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Readable, Transform, Writable } from 'node:stream';
import { parse as parseYaml } from 'yaml';
import { ErrorCodes, ManifoldError, redactUrl } from '../core/errors.js';
import { flow } from '../core/flow.js';
import { defineOptions, opt } from '../core/options.js';
import { parseEndpoint, schemeHelp, type Endpoint } from './endpoints.js';
import { ExitCodes, UsageError } from './errors.js';
import { createLogger, type LogFormat } from './log.js';
import { coerce, readOptions } from './options.js';
import { Monitor } from './monitor.js';
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

Endpoints (URIs; query keys are the connector's options; sizes take units such as 1MiB,
durations such as 500ms, 30s, 5m, 12h):
  ${schemeHelp().join('\n  ')}

Transforms:
  ${transformHelp.join('\n  ')}

Options:
  --transform, -t <spec>   add a transform (repeatable, applied in order)
  --quiet, -q              no progress line, warnings and errors only
  --log-format text|json   log lines on stderr as text (default) or JSON (pino)
  --metrics-port <port>    serve Prometheus /metrics and /healthz on 127.0.0.1:<port>
  --close-timeout <dur>    bound on the graceful drain after SIGINT/SIGTERM (default 30s)
  --help, -h               this text
  --version                the version

A pipeline file holds the same settings (quote URIs: YAML reads a trailing colon as a mapping):
  from: "amqp://user:pass@host/vhost?queue=orders"    # or { uri: "...", <option>: <value> }
  to: "s3://bucket/prefix?commitSize=1MiB&commitInterval=5m"
  transforms: [ "json-append:receivedAt=$now" ]
  quiet: false
  logFormat: json
  metricsPort: 9464
  closeTimeout: 30s

SIGINT/SIGTERM: stop reading, deliver what is in flight, flush, exit 0. A second signal exits at once.

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
  metricsPort: opt.integer('Serve Prometheus /metrics and /healthz on 127.0.0.1 at this port (0: any free port).', { min: 0, max: 65535 }),
  closeTimeoutMs: opt.duration('Bound on the graceful drain after SIGINT/SIGTERM.', { default: 30_000 }),
});

type PipelineFile = { from: EndpointValue; to: EndpointValue; transforms?: string[]; quiet?: boolean; logFormat?: LogFormat; metricsPort?: number; closeTimeoutMs?: number };

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
  closeTimeoutMs: number;
}

function endpointOf(value: EndpointValue, role: 'source' | 'sink'): Endpoint {
  if (typeof value === 'string') return parseEndpoint(value, role);
  const { uri, ...options } = value;
  return parseEndpoint(uri, role, options);
}

/** Reads argv into validated settings; throws UsageError on anything wrong, before any I/O but reading a pipeline file. */
export function parseCommandLine(argv: string[]): Settings | 'help' | 'version' | 'schema' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        transform: { type: 'string', short: 't', multiple: true },
        quiet: { type: 'boolean', short: 'q' },
        'log-format': { type: 'string' },
        'metrics-port': { type: 'string' },
        'close-timeout': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
      },
    });
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

  let file: PipelineFile | undefined;
  if (positionals[0] === 'run') {
    if (positionals.length !== 2) throw new UsageError('manifold run takes one pipeline file: manifold run <pipeline.yaml>');
    const path = positionals[1]!;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read pipeline file ${path}: ${(error as Error).message}`);
    }
    let raw: unknown;
    try {
      raw = parseYaml(text);
    } catch (error) {
      throw new UsageError(`pipeline file ${path} is not valid YAML: ${(error as Error).message.split('\n')[0]}`);
    }
    file = readPipelineFile(`pipeline file ${path}`, raw ?? {});
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
  let closeTimeoutMs = file?.closeTimeoutMs ?? 30_000;
  if (values['close-timeout'] !== undefined) {
    closeTimeoutMs = coerce('--close-timeout', 'value', pipelineFileOptions.specs.closeTimeoutMs, values['close-timeout']) as number;
  }
  const transforms = [...(file?.transforms ?? []), ...(values.transform ?? [])].map(parseTransform);
  return {
    from: file ? endpointOf(file.from, 'source') : parseEndpoint(positionals[0]!, 'source'),
    to: file ? endpointOf(file.to, 'sink') : parseEndpoint(positionals[1]!, 'sink'),
    transforms,
    quiet: values.quiet ?? file?.quiet ?? false,
    logFormat,
    metricsPort,
    closeTimeoutMs,
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
    io.stderr.write(`manifold: ${(error as Error).message}\n`);
    return error instanceof ManifoldError && error.code === ErrorCodes.INVALID_OPTION ? ExitCodes.USAGE : ExitCodes.FAILED;
  }
  const running = flow({ source, transforms: settings.transforms.map((make) => make()), sink, handleSignals: true, closeTimeoutMs: settings.closeTimeoutMs });
  const monitor = new Monitor(running, source, sink, log);
  running.events.on('stopping', () => log.info({ event: 'stopping' }, 'signal received: draining (a second signal exits at once)'));
  log.info({ event: 'start', from: settings.from.display, to: settings.to.display }, `streaming ${settings.from.display} -> ${settings.to.display}`);
  if (settings.metricsPort !== undefined) {
    try {
      const port = await monitor.listen(settings.metricsPort);
      log.info({ event: 'metrics', port }, `metrics on http://127.0.0.1:${port}/metrics`);
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
    log.info({ event: 'done', ...stats }, `done: ${stats.messages} messages, ${stats.acks} acked, ${stats.nacks} nacked`);
    return ExitCodes.OK;
  } catch (error) {
    stopProgress?.();
    const err = error as Error & { code?: string };
    log.error({ event: 'failed', code: err.code }, `failed: ${err.message}`);
    return err.code === ErrorCodes.ABORTED ? ExitCodes.ABORTED : ExitCodes.FAILED;
  } finally {
    await monitor.close();
    log.flush();
  }
}
