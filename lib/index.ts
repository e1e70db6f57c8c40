/**
 * manifold: stream data between Kinesis, S3, RabbitMQ, Kafka, WebSocket feeds
 * and stdio as native Node streams, with at-least-once delivery.
 *
 * This entry point loads every connector and its client library (about 125 MiB of RSS and most of
 * a second at start-up, @platformatic/kafka and the AWS SDK the most): a program that uses one
 * system imports its subpath instead — `manifold/core`, `manifold/stdio`, `manifold/s3`,
 * `manifold/websocket`, `manifold/kafka`, `manifold/kinesis`, `manifold/rabbitmq` — which load
 * only what they name.
 */
export * from './core/index.js';
export * from './stdio/index.js';
export * from './s3/index.js';
export * from './websocket/index.js';
export * from './kafka/index.js';
export * from './kinesis/index.js';
export * from './rabbitmq/index.js';
