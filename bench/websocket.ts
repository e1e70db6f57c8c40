/**
 * WebSocket: 1,000,000 messages of 100 bytes from a local `ws` server, read by
 * a plain `ws` client's 'message' handler (raw) and by websocketSource
 * consumed through 'data' (ours), in the same run.
 *
 * The server runs in a worker thread, so its sending does not share the event
 * loop being measured, and writes pre-framed blocks of messages straight to
 * the socket, so the figures measure the client, not the server. Timing runs from the client's 'open' to the
 * last message. Each side runs twice, alternating, after a small untimed
 * warm-up; the best run of each is reported.
 */
import { createRequire } from 'node:module';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import WebSocket from 'ws';
import { websocketSource } from '../lib/websocket/source.js';
import { withPeakRss, type BenchArea, type BenchRow } from './lib.js';

const SIZE = 100;

// CommonJS, evaluated in the worker: `ws` is resolved from here and passed in.
const SERVER = `
const { parentPort, workerData } = require('node:worker_threads');
const { WebSocketServer } = require(workerData.wsPath);
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
// Pre-framed binary messages (FIN + binary opcode, 7-bit length, unmasked as server frames are), written to the
// socket in 1,000-message blocks: the server costs next to nothing, so the figures are the client's.
const frame = Buffer.concat([Buffer.from([0x82, ${SIZE}]), Buffer.alloc(${SIZE}, 0x61)]);
const BLOCK = 1000;
const block = Buffer.concat(Array.from({ length: BLOCK }, () => frame));
wss.on('listening', () => parentPort.postMessage(wss.address().port));
wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.once('message', async (data) => {
    const count = Number(String(data).slice(3));
    const socket = ws._socket;
    for (let sent = 0; sent < count && ws.readyState === 1; sent += BLOCK) {
      const n = Math.min(BLOCK, count - sent);
      const ok = socket.write(n === BLOCK ? block : block.subarray(0, n * frame.length));
      if (!ok) await new Promise((resolve) => socket.once('drain', resolve));
    }
  });
});
parentPort.on('message', () => {
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => process.exit(0));
});
`;

async function startServer(): Promise<{ url: string; stop(): Promise<void> }> {
  const wsPath = createRequire(import.meta.url).resolve('ws');
  const worker = new Worker(SERVER, { eval: true, workerData: { wsPath } });
  const [port] = (await once(worker, 'message')) as [number];
  return {
    url: `ws://127.0.0.1:${port}/`,
    async stop() {
      worker.postMessage('stop');
      await once(worker, 'exit');
    },
  };
}

/** Plain ws: count in the 'message' handler. Returns messages per second. */
async function raw(url: string, count: number): Promise<number> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  await once(ws, 'open');
  const start = performance.now();
  let got = 0;
  await new Promise<void>((resolve) => {
    ws.on('message', () => {
      got += 1;
      if (got === count) resolve();
    });
    ws.send(`go:${count}`);
  });
  const seconds = (performance.now() - start) / 1000;
  ws.terminate();
  await once(ws, 'close');
  return count / seconds;
}

/** websocketSource: count in a 'data' handler. Returns messages per second. */
async function ours(url: string, count: number): Promise<number> {
  const source = websocketSource({ url, heartbeatIntervalMs: 0, onOpen: (ws) => ws.send(`go:${count}`) });
  let start = 0;
  source.once('open', () => (start = performance.now()));
  let got = 0;
  await new Promise<void>((resolve, reject) => {
    source.on('error', reject);
    source.on('data', () => {
      got += 1;
      if (got === count) resolve();
    });
  });
  const seconds = (performance.now() - start) / 1000;
  source.destroy();
  await once(source, 'close');
  return count / seconds;
}

const websocket: BenchArea = async (scale) => {
  const count = Math.max(1000, Math.round(1_000_000 * scale));
  const server = await startServer();
  try {
    await raw(server.url, Math.min(count, 20_000));
    await ours(server.url, Math.min(count, 20_000));
    let bestRaw = 0;
    let bestOurs = 0;
    let peakRssMiB = 0;
    for (let round = 0; round < 2; round++) {
      bestRaw = Math.max(bestRaw, await raw(server.url, count));
      const measured = await withPeakRss(() => ours(server.url, count));
      bestOurs = Math.max(bestOurs, measured.result);
      peakRssMiB = Math.max(peakRssMiB, measured.peakRssMiB);
    }
    const row: BenchRow = {
      area: 'websocket',
      case: `receive ${count.toLocaleString('en-US')} x ${SIZE} B from a local server`,
      unit: 'msg/s',
      raw: bestRaw,
      ours: bestOurs,
      goal: 0.85,
      peakRssMiB,
      note: "raw: ws 'message' handler; ours: websocketSource 'data' (a Message per frame); server in a worker thread writing pre-framed blocks",
    };
    return [row];
  } finally {
    await server.stop();
  }
};

export default websocket;
