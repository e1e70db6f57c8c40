/**
 * WebSocket feeds as a source and a sink: `manifold/websocket`, which loads ws.
 */
export { WebSocketSource, websocketSource, type WebSocketSourceOptions, type WebSocketOpenInfo, type OpenReason } from './source.js';
export { WebSocketSink, websocketSink, type WebSocketSinkOptions, type WebSocketSinkOpenInfo } from './sink.js';
export type { WebSocketConnectionOptions } from './options.js';
