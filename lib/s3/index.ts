/**
 * The S3 sink (collector + uploader) and source (objects read back as lines): `manifold/s3`, which loads the AWS S3 client.
 */
export { S3Sink, s3Sink, type S3SinkOptions } from './sink.js';
export { S3Collector, s3Collector, type S3CollectorOptions, type CommittedFile, type AckPair, type CommitEvent, type CommitReason, type RotateEvent, type QuotaEvent } from './collector.js';
export { S3Uploader, s3Uploader, type S3UploaderOptions, type S3Credentials, type UploadEvent, type UploadErrorEvent, type CloseTimeoutEvent } from './uploader.js';
export type { S3CollectingOptions, S3ConnectionOptions, S3SourceOptions, S3TargetOptions, S3UploadingOptions } from './options.js';
export { S3Source, s3Source, S3_CHECKPOINT_ID, type S3CheckpointEvent, type S3LineMeta, type S3ObjectEvent } from './source.js';
