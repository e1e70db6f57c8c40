/**
 * The sides of bench/websocket.ts, each run in its own process (bench/lib.ts runSide). Each
 * connects to the bench's server at `url`, sends `go:<count>` when open, and counts `count`
 * binary messages of 100 B; timed from 'open' to the last message.
 *
 * - ours: websocketSource({ url, heartbeatIntervalMs: 0, onOpen: send go }), consumed through a
 *   'data' handler (a Message per frame).
 * - ws: a plain ws WebSocket (perMessageDeflate off), a 'message' handler.
 * - partysocket: partysocket/ws ReconnectingWebSocket with ws's WebSocket as its WebSocket
 *   implementation (Node has none it can use), binaryType 'nodebuffer' (ws's own, no copy; the
 *   default 'blob' would make a Blob per message), an 'message' event listener.
 */
import { once } from 'node:events';
import { measure, sideMain, stopwatch, type Measured, type SideArgs } from '../lib.js';

interface WsArgs extends SideArgs {
  url: string;
  count: number;
}

async function ours({ url, count }: WsArgs): Promise<Measured> {
  const { websocketSource } = await import('../../lib/websocket/source.js');
  const clock = stopwatch();
  const source = websocketSource({ url, heartbeatIntervalMs: 0, onOpen: (ws) => ws.send(`go:${count}`) });
  source.once('open', () => clock.start());
  let got = 0;
  const measured = await new Promise<Measured>((resolve, reject) => {
    source.on('error', reject);
    source.on('data', () => {
      if (++got === count) resolve(clock.stop(count));
    });
  });
  source.destroy();
  await once(source, 'close');
  return measured;
}

async function ws({ url, count }: WsArgs): Promise<Measured> {
  const { default: WebSocket } = await import('ws');
  const socket = new WebSocket(url, { perMessageDeflate: false });
  await once(socket, 'open');
  const measured = await measure(count, async () => {
    let got = 0;
    await new Promise<void>((resolve) => {
      socket.on('message', () => {
        if (++got === count) resolve();
      });
      socket.send(`go:${count}`);
    });
  });
  socket.terminate();
  return measured;
}

async function partysocket({ url, count }: WsArgs): Promise<Measured> {
  const { default: WebSocket } = await import('ws');
  const { default: ReconnectingWebSocket } = await import('partysocket/ws');
  const clock = stopwatch();
  const socket = new ReconnectingWebSocket(url, [], { WebSocket, maxRetries: 0 });
  (socket as unknown as { binaryType: string }).binaryType = 'nodebuffer';
  let got = 0;
  const measured = await new Promise<Measured>((resolve, reject) => {
    socket.addEventListener('error', (event) => reject(event.error ?? new Error('partysocket error')));
    socket.addEventListener('open', () => {
      clock.start();
      socket.send(`go:${count}`);
    });
    socket.addEventListener('message', () => {
      if (++got === count) resolve(clock.stop(count));
    });
  });
  socket.close();
  return measured;
}

sideMain({
  ours: (a) => ours(a as WsArgs),
  ws: (a) => ws(a as WsArgs),
  partysocket: (a) => partysocket(a as WsArgs),
});
