/**
 * ws:// and wss:// feeds. The URL is the target. Our keys (the declarations of websocketSource and
 * websocketSink in lib/websocket/options.ts, and a source's `subscribe`) are taken out of its query;
 * every other query key stays in the URL, because passing query strings to the server is how
 * WebSocket feeds are addressed. Options from a pipeline file are all meant for us: one we do not
 * know is refused with a hint, not sent to the server. The connector (and ws) is loaded by
 * create(), only for a pipeline that uses it.
 */
import { defineOptions, opt, type DeclaredOptions } from '../../core/options.js';
import { websocketSinkOptions, websocketSourceOptions, type WebSocketSinkOptions, type WebSocketSourceOptions } from '../../websocket/options.js';
import { registerScheme, type EndpointInput } from '../endpoints.js';
import { cliKeys, readEndpointOptions } from '../options.js';

/** What only the command line takes: subscriptions, which a program sends from `onOpen`. */
const subscribeOptions = defineOptions('ws:', {
  subscribe: opt.custom<string[]>('Text sent on every (re)connection, in order, before the source relies on it (repeatable in a URI).', {
    type: 'string | string[]',
    cli: 'subscribe',
    schema: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
    check: (value, fail) => {
      if (typeof value === 'string') return [value];
      if (Array.isArray(value) && value.every((s) => typeof s === 'string')) return [...(value as string[])];
      return fail('the text to send, or a list of texts');
    },
  }),
});

/** Reads our options out of the URI query and the pipeline file; returns them and the URL the server gets. */
function read(input: EndpointInput, declarations: DeclaredOptions[]): { target: string; options: Record<string, unknown> } {
  const { url } = input;
  const ours = new Set(declarations.flatMap((declaration) => [...cliKeys(declaration).keys()]));
  // A query key that is not ours is the server's.
  const options = readEndpointOptions(input, declarations, { passThrough: () => true });
  // A query key can repeat; the query keeps its last value only.
  if (ours.has('subscribe') && 'subscribe' in input.query && !('subscribe' in input.file)) options['subscribe'] = url.searchParams.getAll('subscribe');
  const target = new URL(url);
  // `tls.ca=` and the like are ours too (folded into the tls mapping): a certificate's path is not for the server.
  for (const key of [...target.searchParams.keys()]) if (ours.has(key) || ours.has(key.slice(0, Math.max(0, key.indexOf('.'))))) target.searchParams.delete(key);
  return { target: target.toString(), options };
}

registerScheme(['ws', 'wss'], {
  help: 'ws://host/feed?reconnectEvery=12h&subscribe=<text>   WebSocket feed (other query keys go to the server); wss:// with tls.ca=, tls.cert=, tls.key= (files) for TLS, bearerEnv=<VAR> for a bearer token',
  options: { source: [websocketSourceOptions, subscribeOptions], sink: [websocketSinkOptions] },
  source: (input) => {
    const { target, options } = read(input, [websocketSourceOptions, subscribeOptions]);
    const { subscribe, ...rest } = options as Partial<WebSocketSourceOptions> & { subscribe?: string[] };
    // The factory validates the whole set again: its cross-option checks (heartbeatTimeout with heartbeats off) are its own.
    return async () => {
      const { websocketSource } = await import('../../websocket/source.js');
      return websocketSource({
        ...rest,
        url: target,
        // Re-sent on every (re)connection: a new connection knows nothing of the old one's subscriptions.
        ...(subscribe?.length ? { onOpen: (socket) => subscribe.forEach((text) => socket.send(text)) } : {}),
      });
    };
  },
  sink: (input) => {
    const { target, options } = read(input, [websocketSinkOptions]);
    return async () => {
      const { websocketSink } = await import('../../websocket/sink.js');
      return websocketSink({ ...(options as Partial<WebSocketSinkOptions>), url: target });
    };
  },
});
