/**
 * Kinesis as a source (with checkpointers and DynamoDB leases) and a sink: `manifold/kinesis`, which loads the AWS Kinesis and DynamoDB clients.
 */
export { KinesisSink, kinesisSink, type KinesisSinkOptions, type PartialRetryEvent, type RejectEvent } from './sink.js';
export {
  KinesisSource,
  kinesisSource,
  type KinesisSourceOptions,
  type CheckpointEvent,
  type LagEvent,
  type ShardEvent,
} from './source.js';
export type { StartingPosition } from './positions.js';
export { SHARD_END, type Checkpoint, type Checkpointer } from './checkpoint.js';
export { memoryCheckpointer, type MemoryCheckpointer } from './memory-checkpointer.js';
export { fileCheckpointer, type FileCheckpointer } from './file-checkpointer.js';
export { dynamoLeases, type DynamoLeases, type DynamoLeasesOptions } from './dynamo-leases.js';
export type { LeaseRow } from './lease-table.js';
export type { ShardCoordinator, CoordinatedSource, GrantedShard, NewShard, LeaseStart, LeaseEvent } from './coordinator.js';
export type { KinesisStreamOptions } from './options.js';
