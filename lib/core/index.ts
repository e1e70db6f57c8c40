/**
 * The core of manifold without any connector: the Message envelope, errors, acks, retries, flow() with its error policy, the transforms and the TLS option types. `import { flow, map } from 'manifold/core'` loads no client library.
 */
export { ErrorCodes, ManifoldError, isRetryable, redactText, redactUrl, type ErrorCode, type ManifoldErrorInit } from './errors.js';
export { createMessage, derive, isMessage, relay, settleAll, toMessage, type Message, type MessageInit, type MessageLike } from './message.js';
export { AckTracker, type AckTrackerOptions, type Delivery, type NackRecord, type Ticket } from './acks.js';
export { backoffDelay, resolveRetry, withRetry, type FactoryContext, type ResolvedRetry, type RetryEvent, type RetryOptions, type RetryingOptions } from './retry.js';
export { RetryingSource, retryingSource } from './retrying-source.js';
export { RetryingSink, retryingSink } from './retrying-sink.js';
export { flow, SAME_SIGNAL_MS, type DeadLetterEvent, type Flow, type FlowOptions, type FlowStats, type RedeliverEvent, type StopReason } from './flow.js';
export {
  DEAD_LETTER_HEADER,
  defaultShouldRetry,
  describePosition,
  positionOf,
  type DeadLetterEnvelope,
  type ErrorPolicyOptions,
  type RetryBackoffOptions,
} from './error-policy.js';
export { map, withData, type MapResult } from '../transforms/map.js';
export { filter } from '../transforms/filter.js';
export type { TransformOptions } from '../transforms/per-message.js';
export { batch, type BatchMessage, type BatchOptions } from '../transforms/batch.js';
export { lines, type LinesOptions } from '../transforms/lines.js';
export { jsonAppend, type FieldValue, type JsonAppendOptions } from '../transforms/json-append.js';
export { unwrapDeadLetter, type UnwrapDeadLetterOptions } from '../transforms/unwrap-dead-letter.js';
export type { TlsMaterial, TlsOptions } from './tls.js';
