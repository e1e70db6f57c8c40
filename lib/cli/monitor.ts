/**
 * Watches a running flow: lifecycle events of the source and sink become log
 * lines and Prometheus metrics, and the flow's counters feed the progress line.
 */
import { createServer, type Server } from 'node:http';
import type { Readable, Writable } from 'node:stream';
import { Counter, Gauge, Registry } from 'prom-client';
import type { Flow } from '../core/flow.js';
import type { Logger } from './log.js';

/** A stream may report gauges of its own (S3 buffer files, leases held) through this optional method. */
export interface GaugeSource {
  gauges(): Record<string, number>;
}

function hasGauges(stream: unknown): stream is GaugeSource {
  return typeof (stream as Partial<GaugeSource>).gauges === 'function';
}

/** Lifecycle events worth a log line, per the connectors' documentation. */
const LOGGED_EVENTS = ['ready', 'reconnect', 'retry', 'swap', 'rotate', 'commit', 'upload', 'uploaderror', 'quota', 'checkpoint', 'lease', 'leasegained', 'leaselost', 'leasestolen', 'outputclose', 'closetimeout', 'skip', 'rebalance'] as const;

export interface MonitorCounts {
  reconnects: number;
  retries: number;
  uploads: number;
}

/** Connects a flow's streams to logs and metrics. */
export class Monitor {
  readonly registry = new Registry();
  readonly counts: MonitorCounts = { reconnects: 0, retries: 0, uploads: 0 };
  readonly #gauges = new Map<string, number>();
  readonly #lag = new Map<string, number>();
  #server: Server | undefined;

  constructor(
    readonly flow: Flow,
    readonly source: Readable,
    readonly sink: Writable,
    readonly log: Logger,
  ) {
    for (const [role, stream] of [['source', source], ['sink', sink]] as const) {
      for (const event of LOGGED_EVENTS) {
        stream.on(event, (details: unknown) => {
          if (event === 'reconnect') this.counts.reconnects++;
          if (event === 'retry') this.counts.retries++;
          if (event === 'upload') this.counts.uploads++;
          this.log.info({ role, event, ...summarize(details) }, `${role} ${event}`);
        });
      }
      stream.on('lag', (details: unknown) => this.#recordLag(details));
    }
    this.flow.events.on('nack', (_message: unknown, error: Error) => this.log.warn({ event: 'nack' }, `nack: ${error.message}`));
    this.#defineMetrics();
  }

  #recordLag(details: unknown): void {
    const d = details as { shardId?: string; partition?: number; topic?: string; millisBehindLatest?: number; lag?: number } | undefined;
    const key = d?.shardId ?? (d?.partition !== undefined ? `${d.topic ?? ''}/${d.partition}` : undefined);
    const value = d?.millisBehindLatest ?? d?.lag;
    if (key !== undefined && typeof value === 'number') this.#lag.set(key, value);
  }

  /** Gauges reported by the streams, refreshed at each scrape and progress tick. */
  gauges(): Map<string, number> {
    this.#gauges.clear();
    for (const stream of [this.source, this.sink]) {
      if (!hasGauges(stream)) continue;
      try {
        for (const [k, v] of Object.entries(stream.gauges())) this.#gauges.set(k, v);
      } catch {
        // A stream mid-shutdown may not answer; skip it for this scrape.
      }
    }
    return this.#gauges;
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
    counter('manifold_nacks_total', 'Nacks: messages that could not be delivered.', () => stats.nacks);
    counter('manifold_reconnects_total', 'Connections re-made after a failure.', () => this.counts.reconnects);
    counter('manifold_retries_total', 'Operations retried after a transient failure.', () => this.counts.retries);
    counter('manifold_s3_uploads_total', 'Files uploaded to S3.', () => this.counts.uploads);
    const monitor = this;
    new Gauge({
      name: 'manifold_unacked_messages',
      help: 'Messages read and not yet acked or nacked.',
      registers: [this.registry],
      collect() {
        this.set(stats.messages - stats.acks - stats.nacks);
      },
    });
    new Gauge({
      name: 'manifold_stream_gauge',
      help: 'Gauges reported by the source and sink (S3 buffer files/bytes/oldest age, leases held, ...).',
      labelNames: ['name'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [name, value] of monitor.gauges()) this.set({ name }, value);
      },
    });
    new Gauge({
      name: 'manifold_lag',
      help: 'Lag per shard or partition as the source reports it (Kinesis MillisBehindLatest in ms, Kafka offsets).',
      labelNames: ['partition'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [partition, value] of monitor.#lag) this.set({ partition }, value);
      },
    });
  }

  /** Serves /metrics (Prometheus text) and /healthz on 127.0.0.1:`port`; resolves with the bound port. */
  async listen(port: number, host = '127.0.0.1'): Promise<number> {
    const server = createServer((req, res) => {
      if (req.url === '/metrics') {
        this.registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': this.registry.contentType });
            res.end(text);
          },
          (error: Error) => {
            res.writeHead(500);
            res.end(error.message);
          },
        );
        return;
      }
      if (req.url === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ status: 'ok', messages: this.flow.stats.messages }));
        return;
      }
      res.writeHead(404);
      res.end('try /metrics or /healthz\n');
    });
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const address = server.address();
    return typeof address === 'object' && address ? address.port : port;
  }

  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** Event details as flat log fields: errors become their message, Buffers and big values are left out. */
function summarize(details: unknown): Record<string, unknown> {
  if (details === null || typeof details !== 'object') return details === undefined ? {} : { value: details };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(details as Record<string, unknown>)) {
    if (v instanceof Error) out[k] = v.message;
    else if (v === null || ['string', 'number', 'boolean'].includes(typeof v)) out[k] = v;
  }
  return out;
}
