/**
 * The schemes the command knows, each mapping URI parts and query keys to a
 * connector's options. Keys are the connectors' option names without their unit
 * suffix (`commitSize` for commitSizeBytes, `commitInterval` for commitIntervalMs),
 * and take units (`1MiB`, `5m`).
 */
import { z } from 'zod';
import { stdoutSink } from '../stdio/sink.js';
import { stdinSource } from '../stdio/source.js';
import { registerScheme, validate, zBytes, type EndpointInput } from './endpoints.js';
import './schemes/kafka.js';
import './schemes/rabbitmq.js';
import './schemes/websocket.js';
import './schemes/s3.js';
import './schemes/kinesis.js';

/** Copies the defined entries of `o`, so connectors fill their own defaults. */
function defined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

// ---- stdio ----

registerScheme(['stdin'], {
  help: 'stdin:                       lines of standard input (?maxMessageBytes=1MiB)',
  source: ({ display, params }) => {
    const o = validate(display, z.strictObject({ maxMessageBytes: zBytes.optional(), delimiter: z.string().min(1).optional() }), params);
    return () => stdinSource(defined(o));
  },
});

registerScheme(['stdout'], {
  help: 'stdout:                      one line per message on standard output (?delimiter=%0A)',
  sink: ({ display, params }) => {
    const o = validate(display, z.strictObject({ delimiter: z.string().min(1).optional() }), params);
    return () => stdoutSink(defined(o));
  },
});

/**
 * Takes our option keys out of a URI whose other query keys belong to the server (WebSocket
 * feeds, amqplib's heartbeat/frameMax). Options from a pipeline file that are not ours are kept
 * with ours, so they are reported as unknown rather than sent to the server.
 */
function splitUrl({ url, params }: EndpointInput, schema: z.ZodObject): { target: string; ours: Record<string, unknown> } {
  // Our keys are the schema's: one list, so a new option cannot be validated yet sent to the server.
  const keys = Object.keys(schema.shape);
  const target = new URL(url);
  const ours: Record<string, unknown> = {};
  for (const key of keys) target.searchParams.delete(key);
  for (const [key, value] of Object.entries(params)) if (keys.includes(key) || !url.searchParams.has(key)) ours[key] = value;
  return { target: target.toString(), ours };
}
