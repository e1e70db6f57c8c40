/**
 * manifold: stream data between Kinesis, S3, RabbitMQ, Kafka, WebSocket feeds
 * and stdio as native Node streams, with at-least-once delivery.
 */
export { ErrorCodes, ManifoldError, isRetryable, redactUrl, type ErrorCode, type ManifoldErrorInit } from './core/errors.js';
export { createMessage, derive, isMessage, settleAll, toMessage, type Message, type MessageInit, type MessageLike } from './core/message.js';
export { AckTracker, type AckTrackerOptions, type NackRecord, type Ticket } from './core/acks.js';
export {
  RetryingSink,
  RetryingSource,
  backoffDelay,
  resolveRetry,
  retryingSink,
  retryingSource,
  withRetry,
  type FactoryContext,
  type ResolvedRetry,
  type RetryEvent,
  type RetryOptions,
  type RetryingOptions,
} from './core/retry.js';
export { flow, type Flow, type FlowOptions, type FlowStats } from './core/flow.js';
export { map, withData, type MapResult } from './transforms/map.js';
export { filter } from './transforms/filter.js';
export type { TransformOptions } from './transforms/per-message.js';
export { batch, type BatchMessage, type BatchOptions } from './transforms/batch.js';
export { lines, type LinesOptions } from './transforms/lines.js';
export { jsonAppend, type FieldValue, type JsonAppendOptions } from './transforms/json-append.js';
export { StdinSource, stdinSource, type StdinSourceOptions } from './sources/stdin.js';
export { StdoutSink, stdoutSink, type StdoutSinkOptions } from './sinks/stdout.js';
