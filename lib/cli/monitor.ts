/**
 * Watches a running flow: lifecycle events of the source and sink become log
 * lines, Prometheus metrics and the readiness of each connector, and the flow's
 * counters feed the progress line.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP, isIPv6, type AddressInfo } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { Counter, Gauge, Registry } from 'prom-client';
import { redactText } from '../core/errors.js';
import type { Flow, FlowStats } from '../core/flow.js';
import { RetryingSink } from '../core/retrying-sink.js';
import { RetryingSource } from '../core/retrying-source.js';
import type { Logger } from './log.js';

/** A stream may report gauges of its own (S3 buffer files, leases held) through this optional method. */
export interface GaugeSource {
  gauges(): Record<string, number>;
}

function hasGauges(stream: unknown): stream is GaugeSource {
  return typeof (stream as Partial<GaugeSource>).gauges === 'function';
}

/** Lifecycle events worth a log line, per the connectors' documentation. */
const LOGGED_EVENTS = ['ready', 'reconnect', 'retry', 'swap', 'swapfailed', 'rotate', 'commit', 'upload', 'uploaderror', 'quota', 'checkpoint', 'checkpointerror', 'lease', 'leasegained', 'leaselost', 'leasestolen', 'outputclose', 'closetimeout', 'skip', 'rebalance', 'warning', 'malformed'] as const;

/**
 * Gauges the connectors report through `gauges()`, each exported as `manifold_<name>`.
 * A name not listed here is exported as `manifold_stream_gauge{name}`.
 */
const KNOWN_GAUGES: Record<string, string> = {
  s3_buffer_files: 'S3 sink: committed buffer files on disk waiting for upload.',
  s3_buffer_bytes: 'S3 sink: bytes in the buffer folder (the open buffer file and the files waiting for upload).',
  s3_buffer_oldest_age_seconds: 'S3 sink: age of the oldest file waiting for upload (0 when none waits).',
  kinesis_leases_held: 'Kinesis source with a lease table: shard leases this process holds.',
  kinesis_shards_reading: 'Kinesis source: shards being read by this process.',
  kinesis_in_flight_bytes: 'Kinesis source: payload bytes read and not yet acked (bounded by maxInFlightBytes).',
};

/**
 * Streams that are not a retrying source or sink but also say 'ready' once connected: until then they
 * count as connecting. Every other stream that is not a retrying one (stdin, stdout, S3, the Kinesis sink)
 * holds no connection of its own and counts as connected from the start.
 */
const READY_REPORTERS = new Set(['KinesisSource', 'WebSocketSource']);

/** Which end of the pipeline a connector is: the dead-letter sink takes what the error policy gives up on. */
export type ConnectorRole = 'source' | 'sink' | 'dead-letter';

/** What /readyz says of one connector. */
export interface ConnectorStatus {
  role: ConnectorRole;
  /** The stream's class: `RabbitmqSource`, `S3Sink`, ... */
  connector: string;
  /** The endpoint as the logs show it (password hidden), when known. */
  endpoint?: string;
  /** Connected and no retry running. */
  ready: boolean;
  /** `'connecting'` (before the first connection), `'connected'`, `'reconnecting'` (lost, retrying). */
  state: 'connecting' | 'connected' | 'reconnecting';
  connected: boolean;
  /** A reconnect, or a retry of an operation (an upload, a call), has not succeeded yet. */
  retrying: boolean;
  /** When `state` last changed (ISO 8601). */
  since: string;
  reconnects: number;
  /** The last failure the connector reported: `code` is manifold's, `reason` the system's own (AMQP reply code and text, WebSocket close code and reason, AWS error name, Kafka error). */
  lastError?: { code: string | undefined; reason: string | undefined; message: string; at: string };
  /** S3 sink: what waits in the buffer folder. */
  backlog?: { files: number; bytes: number; oldestAgeSeconds: number };
  /** Kafka source: messages between each partition's end and the group's committed offset (`topic/partition`). */
  lag?: Record<string, number>;
  /** Kinesis source: MillisBehindLatest per shard. */
  millisBehindLatest?: Record<string, number>;
  /** Kinesis source with a lease table: leases this process holds. */
  leasesHeld?: number;
}

/** The body of /readyz. */
export interface Readiness {
  status: 'ready' | 'not ready';
  /** Set once a signal asked the pipeline to stop: it takes no more work. */
  stopping: boolean;
  connectors: ConnectorStatus[];
}

export interface MonitorCounts {
  reconnects: number;
  retries: number;
  uploads: number;
  /** Kinesis `'malformed'` events: KPL aggregates that failed their digest or structure. */
  malformed: number;
}

/** What the monitor keeps of one stream between events. */
interface Tracked {
  role: ConnectorRole;
  stream: Readable | Writable;
  endpoint: string | undefined;
  state: ConnectorStatus['state'];
  since: number;
  /** Set by 'retry' and 'uploaderror': an operation is being retried. Cleared by a sign of success. */
  retrying: boolean;
  /** Acks the flow had counted when the retry began: a sink's later ack means the retried operation went through. */
  acksAtRetry: number;
  /** The sink buffers (it emitted 'commit'): its acks do not mean delivery, so only 'upload' ends its retry. */
  buffering: boolean;
  reconnects: number;
  lastError: ConnectorStatus['lastError'];
  lag: Map<string, number>;
  millisBehind: Map<string, number>;
  gauges: Record<string, number>;
}

/** Connects a flow's streams to logs, metrics and readiness. */
export class Monitor {
  readonly registry = new Registry();
  readonly counts: MonitorCounts = { reconnects: 0, retries: 0, uploads: 0, malformed: 0 };
  readonly #gauges = new Map<string, number>();
  readonly #tracked: Tracked[];
  #stopping = false;
  #server: MetricsServer | undefined;
  readonly #redact: (text: string) => string;

  /**
   * `endpoints`: how the source, sink and dead-letter sink are shown (passwords hidden), for /readyz.
   * `deadLetter`: the dead-letter sink, watched as the sink is (its reconnects, readiness, gauges).
   */
  constructor(
    readonly flow: Flow,
    readonly source: Readable,
    readonly sink: Writable,
    readonly log: Logger,
    endpoints: { source?: string; sink?: string; deadLetter?: string } = {},
    readonly deadLetter?: Writable,
    options: { redact?: (text: string) => string } = {},
  ) {
    this.#redact = options.redact ?? redactText;
    const now = Date.now();
    const streams: Array<readonly [ConnectorRole, Readable | Writable, string | undefined]> = [
      ['source', source, endpoints.source],
      ['sink', sink, endpoints.sink],
    ];
    if (deadLetter) streams.push(['dead-letter', deadLetter, endpoints.deadLetter]);
    this.#tracked = streams.map(([role, stream, endpoint]) => ({
      role,
      stream,
      endpoint,
      state: expectsReady(stream) ? 'connecting' : 'connected',
      since: now,
      retrying: false,
      acksAtRetry: 0,
      buffering: false,
      reconnects: 0,
      lastError: undefined,
      lag: new Map(),
      millisBehind: new Map(),
      gauges: {},
    }));
    for (const tracked of this.#tracked) {
      const { role, stream } = tracked;
      for (const event of LOGGED_EVENTS) {
        stream.on(event, (details: unknown) => {
          if (event === 'reconnect') this.counts.reconnects++;
          if (event === 'retry') this.counts.retries++;
          if (event === 'upload') this.counts.uploads++;
          if (event === 'malformed') this.counts.malformed++;
          this.#track(tracked, event, details);
          this.log.info({ role, event, ...summarize(details) }, `${role} ${event}`);
        });
      }
      stream.on('lag', (details: unknown) => this.#recordLag(tracked, details));
      stream.on('shard', (details: unknown) => {
        const d = details as { shardId?: string; state?: string } | undefined;
        if (d?.shardId !== undefined && d.state !== 'reading') tracked.millisBehind.delete(d.shardId);
      });
    }
    this.flow.events.on('stopping', () => {
      this.#stopping = true;
    });
    this.#defineMetrics();
  }

  /** Moves a connector's state on a lifecycle event. */
  #track(t: Tracked, event: string, details: unknown): void {
    const now = Date.now();
    const setState = (state: Tracked['state']): void => {
      if (t.state !== state) t.since = now;
      t.state = state;
    };
    const error = (details as { error?: unknown } | undefined)?.error ?? (details instanceof Error ? details : undefined);
    if (error instanceof Error) t.lastError = { ...errorFacts(error), at: new Date(now).toISOString() };
    switch (event) {
      case 'ready':
      case 'swap':
        setState('connected');
        t.retrying = false;
        break;
      case 'reconnect':
        t.reconnects += 1;
        setState(t.state === 'connecting' ? 'connecting' : 'reconnecting');
        t.retrying = true;
        break;
      case 'retry':
      case 'uploaderror':
        t.retrying = true;
        t.acksAtRetry = t.role === 'dead-letter' ? this.flow.stats.deadLettered : this.flow.stats.acks;
        break;
      case 'commit':
        t.buffering = true;
        break;
      case 'upload':
      case 'checkpoint':
        t.retrying = false;
        break;
      case 'rebalance': {
        // Partitions no longer assigned to this member have no lag of ours any more.
        const assigned = new Set(((details as { assignments?: Array<{ topic: string; partition: number }> }).assignments ?? []).map((a) => `${a.topic}/${a.partition}`));
        for (const key of t.lag.keys()) if (!assigned.has(key)) t.lag.delete(key);
        break;
      }
      case 'lease': {
        const d = details as { type?: string; shardId?: string };
        if (d.type !== 'gained' && d.shardId !== undefined) t.millisBehind.delete(d.shardId);
        break;
      }
    }
  }

  #recordLag(t: Tracked, details: unknown): void {
    const d = details as { shardId?: string; partition?: number; topic?: string; millisBehindLatest?: number; lag?: number } | undefined;
    if (d?.shardId !== undefined && typeof d.millisBehindLatest === 'number') t.millisBehind.set(d.shardId, d.millisBehindLatest);
    else if (d?.partition !== undefined && typeof d.lag === 'number') t.lag.set(`${d.topic ?? ''}/${d.partition}`, d.lag);
    // A read went through: whatever was being retried on the source works again.
    t.retrying = false;
  }

  /** Gauges reported by the streams, refreshed at each scrape, readiness check and progress tick. */
  gauges(): Map<string, number> {
    this.#gauges.clear();
    for (const t of this.#tracked) {
      if (!hasGauges(t.stream)) continue;
      try {
        t.gauges = t.stream.gauges();
        for (const [k, v] of Object.entries(t.gauges)) this.#gauges.set(k, v);
      } catch {
        // A stream mid-shutdown may not answer; keep its last figures for this scrape.
      }
    }
    return this.#gauges;
  }

  /** Each connector's state, as /readyz serves it; ready when every connector is connected with no retry running. */
  readiness(): Readiness {
    this.gauges();
    const connectors = this.#tracked.map((t) => this.#status(t));
    const ready = !this.#stopping && connectors.every((c) => c.ready);
    return { status: ready ? 'ready' : 'not ready', stopping: this.#stopping, connectors };
  }

  #status(t: Tracked): ConnectorStatus {
    // A sink whose acks mean delivery (not a buffering one) has got past its retry once an ack came after it.
    if (t.retrying && t.state === 'connected' && t.role === 'sink' && !t.buffering && this.flow.stats.acks > t.acksAtRetry) t.retrying = false;
    // The dead-letter sink's acks are counted as dead-lettered messages.
    if (t.retrying && t.state === 'connected' && t.role === 'dead-letter' && !t.buffering && this.flow.stats.deadLettered > t.acksAtRetry) t.retrying = false;
    const connected = t.state === 'connected';
    const status: ConnectorStatus = {
      role: t.role,
      connector: t.stream.constructor.name,
      ready: connected && !t.retrying,
      state: t.state,
      connected,
      retrying: t.retrying,
      since: new Date(t.since).toISOString(),
      reconnects: t.reconnects,
    };
    if (t.endpoint !== undefined) status.endpoint = t.endpoint;
    if (t.lastError) status.lastError = t.lastError;
    const g = t.gauges;
    if (g.s3_buffer_files !== undefined) {
      status.backlog = { files: g.s3_buffer_files, bytes: g.s3_buffer_bytes ?? 0, oldestAgeSeconds: g.s3_buffer_oldest_age_seconds ?? 0 };
    }
    if (t.lag.size > 0) status.lag = Object.fromEntries(t.lag);
    if (t.millisBehind.size > 0) status.millisBehindLatest = Object.fromEntries(t.millisBehind);
    if (g.kinesis_leases_held !== undefined) status.leasesHeld = g.kinesis_leases_held;
    return status;
  }

  #defineMetrics(): void {
    const stats = this.flow.stats;
    const counter = (name: string, help: string, read: () => number): void => {
      let last = 0;
      new Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          const now = read();
          if (now > last) this.inc(now - last);
          last = now;
        },
      });
    };
    counter('manifold_messages_in_total', 'Messages read from the source.', () => stats.messages);
    counter('manifold_bytes_in_total', 'Payload bytes read from the source.', () => stats.bytes);
    counter('manifold_messages_out_total', 'Messages delivered (acked by the sink, or dropped on purpose by a filter).', () => stats.acks);
    counter('manifold_bytes_out_total', 'Payload bytes of acked messages.', () => stats.bytesAcked);
    counter('manifold_acks_total', 'Acks received from the sink.', () => stats.acks);
    counter('manifold_nacks_total', 'Messages handed back unacked to a source that redelivers them (RabbitMQ requeues them; Kafka and Kinesis read them again on the next start).', () => stats.nacks);
    counter('manifold_redeliveries_total', 'Messages delivered again in-process after a nack, with backoff (a message delivered three times counts 2).', () => stats.redeliveries);
    counter('manifold_dead_lettered_total', 'Messages given up on and written to the dead-letter sink (acked to their source once it acked them).', () => stats.deadLettered);
    counter('manifold_lost_total', 'Messages given up on from a source that cannot redeliver them (stdin, WebSocket), with no dead-letter sink to take them.', () => stats.lost);
    counter('manifold_reconnects_total', 'Connections re-made after a failure.', () => this.counts.reconnects);
    counter('manifold_retries_total', 'Operations retried after a transient failure.', () => this.counts.retries);
    counter('manifold_s3_uploads_total', 'Files uploaded to S3.', () => this.counts.uploads);
    counter('manifold_kpl_malformed_total', 'Kinesis records with the KPL magic that failed their digest or structure (given to the error policy as they were written).', () => this.counts.malformed);
    const monitor = this;
    const tracked = this.#tracked;
    new Gauge({
      name: 'manifold_unacked_messages',
      help: 'Messages read and not yet settled: neither acked, dead-lettered, handed back (nacked) nor lost.',
      registers: [this.registry],
      collect() {
        this.set(unsettled(stats));
      },
    });
    new Gauge({
      name: 'manifold_connector_ready',
      help: 'Per connector: 1 when connected with no retry running (what /readyz checks), else 0.',
      labelNames: ['role'],
      registers: [this.registry],
      collect() {
        for (const t of tracked) this.set({ role: t.role }, monitor.#status(t).ready ? 1 : 0);
      },
    });
    new Gauge({
      name: 'manifold_connector_connected',
      help: 'Per connector: 1 while connected, 0 while connecting or reconnecting.',
      labelNames: ['role'],
      registers: [this.registry],
      collect() {
        for (const t of tracked) this.set({ role: t.role }, t.state === 'connected' ? 1 : 0);
      },
    });
    const reported = (): Map<string, number> => this.gauges();
    for (const [name, help] of Object.entries(KNOWN_GAUGES)) {
      new Gauge({
        name: `manifold_${name}`,
        help,
        registers: [this.registry],
        collect() {
          // Only connectors that report it: a pipeline without S3 has no S3 figures, not zeros.
          this.reset();
          const value = reported().get(name);
          if (value !== undefined) this.set(value);
        },
      });
    }
    new Gauge({
      name: 'manifold_stream_gauge',
      help: 'Other gauges reported by the source and sink.',
      labelNames: ['name'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [name, value] of reported()) if (!(name in KNOWN_GAUGES)) this.set({ name }, value);
      },
    });
    new Gauge({
      name: 'manifold_kafka_lag',
      help: 'Kafka source: messages between a partition\'s end offset (high watermark) and the group\'s committed offset.',
      labelNames: ['topic', 'partition'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const t of tracked) {
          for (const [key, value] of t.lag) {
            const at = key.lastIndexOf('/');
            this.set({ topic: key.slice(0, at), partition: key.slice(at + 1) }, value);
          }
        }
      },
    });
    new Gauge({
      name: 'manifold_kinesis_millis_behind_latest',
      help: 'Kinesis source: MillisBehindLatest of the last read of each shard this process reads.',
      labelNames: ['shard'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const t of tracked) for (const [shard, value] of t.millisBehind) this.set({ shard }, value);
      },
    });
  }

  /**
   * Serves /metrics (Prometheus text), /healthz (liveness: the process answers) and /readyz
   * (readiness: 503 while a connector is not connected or retrying) on `host`:`port`
   * (127.0.0.1 by default; `0.0.0.0` in a container). Resolves with the bound port.
   * The command binds first and attaches later (see {@link listenMetrics}); this is both at once.
   */
  async listen(port: number, host = '127.0.0.1'): Promise<number> {
    const server = await listenMetrics(port, host);
    server.attach(this);
    this.#server = server;
    return server.port;
  }

  /** Where the metrics server listens, once `listen()` resolved. */
  get address(): AddressInfo | undefined {
    return this.#server?.address;
  }

  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    await server?.close();
  }

  /** The body of /metrics (Prometheus text), with what `redact` hides hidden. */
  async metricsText(): Promise<string> {
    return this.#redact(await this.registry.metrics());
  }

  /** The body of /readyz (JSON), with what `redact` hides hidden, and whether it is ready. */
  readyzText(): { ready: boolean; body: string } {
    const readiness = this.readiness();
    return { ready: readiness.status === 'ready', body: this.#redact(JSON.stringify(readiness)) };
  }
}

/** Host names every metrics server answers to, with any port: the loopback ones. */
const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]']);

/** `host[:port]` of a Host header, without the port and a final dot, lower case. */
function hostName(header: string): string {
  const text = header.trim().toLowerCase();
  const name = text.startsWith('[') ? text.slice(0, text.indexOf(']') + 1 || text.length) : text.replace(/:\d*$/, '');
  return name.replace(/\.$/, '');
}

function isIpLiteral(name: string): boolean {
  return isIP(name) !== 0 || (name.startsWith('[') && name.endsWith(']') && isIPv6(name.slice(1, -1)));
}

/**
 * Whether a request with this Host header is answered. A page in a browser can reach a server on this
 * machine by DNS rebinding (attacker.example resolving to 127.0.0.1), but its requests then name the
 * attacker's host: only loopback names (`localhost`, `127.0.0.1`, `[::1]`) and the address the server
 * listens on (`--metrics-host`) are answered, with any port (a forwarded port changes it); when it listens
 * on every address (`0.0.0.0` in a container), any IP address too, since no rebinding stands for an IP
 * address. A request without a Host (HTTP/1.0) comes from no browser and is answered.
 */
export function allowedHost(header: string | undefined, listenHost: string): boolean {
  if (header === undefined || header.trim() === '') return true;
  const name = hostName(header);
  if (LOOPBACK_NAMES.has(name)) return true;
  const listen = hostName(listenHost.includes(':') && !listenHost.startsWith('[') ? `[${listenHost}]` : listenHost);
  if (name === listen) return true;
  return (listen === '0.0.0.0' || listen === '[::]') && isIpLiteral(name);
}

/**
 * The metrics server, bound before the pipeline starts (a busy port must fail the command before anything
 * connects) and attached to its Monitor once the flow exists. Until then /healthz answers, /readyz is 503
 * (starting) and /metrics is empty.
 */
export class MetricsServer {
  readonly #server: Server;
  #monitor: Monitor | undefined;

  constructor(server: Server) {
    this.#server = server;
  }

  /** The monitor whose figures are served from now on. */
  attach(monitor: Monitor): void {
    this.#monitor = monitor;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  get address(): AddressInfo | undefined {
    const address = this.#server.address();
    return typeof address === 'object' && address !== null ? address : undefined;
  }

  /** Answers one request (see {@link listenMetrics}). */
  handle(req: IncomingMessage, res: ServerResponse, host: string): void {
    if (!allowedHost(req.headers.host, host)) {
      // 421 Misdirected Request: this server is not the one the name is for.
      res.writeHead(421, { 'content-type': 'text/plain' });
      res.end(`this manifold metrics server answers to localhost, 127.0.0.1, [::1] and ${host}, not to ${JSON.stringify(hostName(req.headers.host ?? ''))}\n`);
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    const monitor = this.#monitor;
    if (path === '/metrics') {
      if (!monitor) {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end('');
        return;
      }
      monitor.metricsText().then(
        (text) => {
          res.writeHead(200, { 'content-type': monitor.registry.contentType });
          res.end(text);
        },
        () => {
          res.writeHead(500);
          res.end('the metrics could not be collected\n');
        },
      );
      return;
    }
    if (path === '/healthz') {
      // Liveness only: the event loop turns and answers. A broker outage is readiness' business, not a reason to restart us.
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'ok', messages: monitor?.flow.stats.messages ?? 0 }));
      return;
    }
    if (path === '/readyz') {
      if (!monitor) {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ status: 'not ready', stopping: false, connectors: [] }));
        return;
      }
      const { ready, body } = monitor.readyzText();
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' });
      res.end(body);
      return;
    }
    res.writeHead(404);
    res.end('try /metrics, /healthz or /readyz\n');
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** Binds the metrics server on `host`:`port`; rejects when it cannot (the port is taken, the address is not ours). */
export async function listenMetrics(port: number, host = '127.0.0.1'): Promise<MetricsServer> {
  let metrics: MetricsServer | undefined;
  const server = createServer((req, res) => metrics!.handle(req, res, host));
  metrics = new MetricsServer(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return metrics;
}

/** Messages read and not yet acked, dead-lettered, handed back or lost: the unacked gauge and the progress line. */
export function unsettled(stats: FlowStats): number {
  return stats.messages - stats.acks - stats.deadLettered - stats.nacks - stats.lost;
}

function expectsReady(stream: Readable | Writable): boolean {
  return stream instanceof RetryingSource || stream instanceof RetryingSink || READY_REPORTERS.has(stream.constructor.name);
}

interface ErrorNode {
  code?: unknown;
  cause?: unknown;
  name?: unknown;
  message?: unknown;
  replyCode?: unknown;
  replyText?: unknown;
  closeCode?: unknown;
  closeReason?: unknown;
  kafkaError?: unknown;
  $metadata?: unknown;
}

/**
 * manifold's code of an error and the system's own reason found along its cause chain: the AMQP reply
 * code and text, the WebSocket close code and reason, the AWS error name, the Kafka error, a socket error code.
 */
export function errorFacts(error: Error): { code: string | undefined; reason: string | undefined; message: string } {
  let code: string | undefined;
  let reason: string | undefined;
  let node: unknown = error;
  for (let depth = 0; depth < 8 && node !== null && typeof node === 'object'; depth++) {
    const e = node as ErrorNode;
    if (code === undefined && typeof e.code === 'string' && e.code.startsWith('MANIFOLD_ERR_')) code = e.code;
    if (reason === undefined) {
      if (typeof e.replyCode === 'number') reason = `AMQP ${e.replyCode}${typeof e.replyText === 'string' ? ` ${e.replyText}` : ''}`;
      else if (typeof e.closeCode === 'number') reason = `WebSocket close ${e.closeCode}${typeof e.closeReason === 'string' && e.closeReason ? ` ${e.closeReason}` : ''}`;
      else if (typeof e.kafkaError === 'string') reason = `Kafka ${e.kafkaError}`;
      else if (e.$metadata !== undefined && typeof e.name === 'string') reason = `AWS ${e.name}`;
      else if (typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code)) reason = e.code;
    }
    node = e.cause;
  }
  return { code, reason, message: error.message };
}

/** Event details as flat log fields: errors become their message, Buffers and big values are left out. */
function summarize(details: unknown): Record<string, unknown> {
  if (details === null || typeof details !== 'object') return details === undefined ? {} : { value: details };
  if (details instanceof Error) return { error: details.message };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(details as Record<string, unknown>)) {
    if (v instanceof Error) out[k] = v.message;
    else if (v === null || ['string', 'number', 'boolean'].includes(typeof v)) out[k] = v;
  }
  return out;
}
