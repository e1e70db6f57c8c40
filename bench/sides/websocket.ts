/**
 * The sides of bench/websocket.ts, each run in its own process (bench/lib.ts runSide). Each
 * connects to the bench's server at `url`, sends `go:<warmup + count>` when open, and counts the
 * binary messages of 100 B; timed from the end of the `warmup` messages to the last one, so both
 * measure the steady state, after the JIT compiled their paths (a one-time cost of a few tens of ms).
 *
 * - ours: websocketSource({ url, heartbeatIntervalMs: 0, onOpen: send go }), consumed through a
 *   'data' handler (a Message per frame).
 * - ws: a plain ws WebSocket (perMessageDeflate off), a 'message' handler.
 * - partysocket: partysocket/ws ReconnectingWebSocket with ws's WebSocket as its WebSocket
 *   implementation (Node has none it can use), binaryType 'nodebuffer' (ws's own, no copy; the
 *   default 'blob' would make a Blob per message), an 'message' event listener.
 */
import { once } from 'node:events';
import { sideMain, stopwatch, type Measured, type SideArgs } from '../lib.js';

interface WsArgs extends SideArgs {
  url: string;
  count: number;
  warmup: number;
}

/** A 'message'/'data' handler: starts the clock after `warmup` messages, stops it `count` later. */
function counter({ count, warmup }: WsArgs, done: (measured: Measured) => void): () => void {
  const clock = stopwatch();
  let got = 0;
  return () => {
    got += 1;
    if (got === warmup) clock.start();
    else if (got === warmup + count) done(clock.stop(count));
  };
}

async function ours(args: WsArgs): Promise<Measured> {
  const { websocketSource } = await import('../../lib/websocket/source.js');
  const source = websocketSource({ url: args.url, heartbeatIntervalMs: 0, onOpen: (ws) => ws.send(`go:${args.warmup + args.count}`) });
  const measured = await new Promise<Measured>((resolve, reject) => {
    source.on('error', reject);
    source.on('data', counter(args, resolve));
  });
  source.destroy();
  await once(source, 'close');
  return measured;
}

async function ws(args: WsArgs): Promise<Measured> {
  const { default: WebSocket } = await import('ws');
  const socket = new WebSocket(args.url, { perMessageDeflate: false });
  await once(socket, 'open');
  const measured = await new Promise<Measured>((resolve) => {
    socket.on('message', counter(args, resolve));
    socket.send(`go:${args.warmup + args.count}`);
  });
  socket.terminate();
  return measured;
}

async function partysocket(args: WsArgs): Promise<Measured> {
  const { default: WebSocket } = await import('ws');
  const { default: ReconnectingWebSocket } = await import('partysocket/ws');
  const socket = new ReconnectingWebSocket(args.url, [], { WebSocket, maxRetries: 0 });
  (socket as unknown as { binaryType: string }).binaryType = 'nodebuffer';
  const measured = await new Promise<Measured>((resolve, reject) => {
    socket.addEventListener('error', (event) => reject(event.error ?? new Error('partysocket error')));
    socket.addEventListener('open', () => socket.send(`go:${args.warmup + args.count}`));
    socket.addEventListener('message', counter(args, resolve));
  });
  socket.close();
  return measured;
}

sideMain({
  ours: (a) => ours(a as WsArgs),
  ws: (a) => ws(a as WsArgs),
  partysocket: (a) => partysocket(a as WsArgs),
});
