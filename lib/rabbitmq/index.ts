/**
 * RabbitMQ as a source and a sink: `manifold/rabbitmq`, which loads amqplib only.
 */
export { RabbitmqSource, rabbitmqSource, type RabbitmqSourceOptions, type RabbitmqSourceAssert, type RabbitmqSourceStats } from './source.js';
export {
  RabbitmqSink,
  rabbitmqSink,
  type RabbitmqSinkOptions,
  type RabbitmqSinkAssert,
  type RabbitmqSinkQueue,
  type RabbitmqPublishProperties,
  type RabbitmqSinkStats,
} from './sink.js';
export type { BindingSpec } from './connection.js';
export type { RabbitmqConnectionOptions } from './options.js';
