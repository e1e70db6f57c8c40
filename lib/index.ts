/**
 * manifold: stream data between Kinesis, S3, RabbitMQ, Kafka, WebSocket feeds
 * and stdio as native Node streams, with at-least-once delivery.
 */
export { ErrorCodes, ManifoldError, isRetryable, redactText, redactUrl, type ErrorCode, type ManifoldErrorInit } from './core/errors.js';
export { createMessage, derive, isMessage, relay, settleAll, toMessage, type Message, type MessageInit, type MessageLike } from './core/message.js';
export { AckTracker, type AckTrackerOptions, type NackRecord, type Ticket } from './core/acks.js';
export { backoffDelay, resolveRetry, withRetry, type FactoryContext, type ResolvedRetry, type RetryEvent, type RetryOptions, type RetryingOptions } from './core/retry.js';
export { RetryingSource, retryingSource } from './core/retrying-source.js';
export { RetryingSink, retryingSink } from './core/retrying-sink.js';
export { flow, SAME_SIGNAL_MS, type DeadLetterEvent, type Flow, type FlowOptions, type FlowStats, type RedeliverEvent, type StopReason } from './core/flow.js';
export {
  DEAD_LETTER_HEADER,
  defaultShouldRetry,
  describePosition,
  positionOf,
  type DeadLetterEnvelope,
  type ErrorPolicyOptions,
  type RetryBackoffOptions,
} from './core/error-policy.js';
export { map, withData, type MapResult } from './transforms/map.js';
export { filter } from './transforms/filter.js';
export type { TransformOptions } from './transforms/per-message.js';
export { batch, type BatchMessage, type BatchOptions } from './transforms/batch.js';
export { lines, type LinesOptions } from './transforms/lines.js';
export { jsonAppend, type FieldValue, type JsonAppendOptions } from './transforms/json-append.js';
export { unwrapDeadLetter, type UnwrapDeadLetterOptions } from './transforms/unwrap-dead-letter.js';
export { StdinSource, stdinSource, type StdinSourceOptions } from './stdio/source.js';
export { StdoutSink, stdoutSink, type DelimiterRejectEvent, type StdoutSinkOptions } from './stdio/sink.js';
export { S3Sink, s3Sink, type S3SinkOptions } from './s3/sink.js';
export { S3Collector, s3Collector, type S3CollectorOptions, type CommittedFile, type AckPair, type CommitEvent, type CommitReason, type RotateEvent, type QuotaEvent } from './s3/collector.js';
export { S3Uploader, s3Uploader, type S3UploaderOptions, type S3Credentials, type UploadEvent, type UploadErrorEvent, type CloseTimeoutEvent } from './s3/uploader.js';
export { WebSocketSource, websocketSource, type WebSocketSourceOptions, type WebSocketOpenInfo, type OpenReason } from './websocket/source.js';
export { WebSocketSink, websocketSink, type WebSocketSinkOptions, type WebSocketSinkOpenInfo } from './websocket/sink.js';
export { KafkaConsumerSource, kafkaSource, type KafkaSourceOptions, type KafkaCheckpointEvent, type KafkaLagEvent, type KafkaNackEvent } from './kafka/source.js';
export type { KafkaSaslOptions } from './kafka/connection.js';
export { KafkaProducerSink, kafkaSink, type KafkaSinkOptions } from './kafka/sink.js';
export { KinesisSink, kinesisSink, type KinesisSinkOptions, type PartialRetryEvent, type RejectEvent } from './kinesis/sink.js';
export {
  KinesisSource,
  kinesisSource,
  type KinesisSourceOptions,
  type CheckpointEvent,
  type LagEvent,
  type ShardEvent,
} from './kinesis/source.js';
export type { StartingPosition } from './kinesis/positions.js';
export { SHARD_END, type Checkpoint, type Checkpointer } from './kinesis/checkpoint.js';
export { memoryCheckpointer, type MemoryCheckpointer } from './kinesis/memory-checkpointer.js';
export { fileCheckpointer, type FileCheckpointer } from './kinesis/file-checkpointer.js';
export { dynamoLeases, type DynamoLeases, type DynamoLeasesOptions } from './kinesis/dynamo-leases.js';
export type { LeaseRow } from './kinesis/lease-table.js';
export type { ShardCoordinator, CoordinatedSource, GrantedShard, NewShard, LeaseStart, LeaseEvent } from './kinesis/coordinator.js';
export { RabbitmqSource, rabbitmqSource, type RabbitmqSourceOptions, type RabbitmqSourceAssert, type RabbitmqSourceStats } from './rabbitmq/source.js';
export {
  RabbitmqSink,
  rabbitmqSink,
  type RabbitmqSinkOptions,
  type RabbitmqSinkAssert,
  type RabbitmqSinkQueue,
  type RabbitmqPublishProperties,
  type RabbitmqSinkStats,
} from './rabbitmq/sink.js';
export type { BindingSpec } from './rabbitmq/connection.js';
export type { KafkaConnectionOptions } from './kafka/options.js';
export type { KinesisStreamOptions } from './kinesis/options.js';
export type { RabbitmqConnectionOptions } from './rabbitmq/options.js';
export type { WebSocketConnectionOptions } from './websocket/options.js';
export type { S3CollectingOptions, S3ConnectionOptions, S3TargetOptions, S3UploadingOptions } from './s3/options.js';
