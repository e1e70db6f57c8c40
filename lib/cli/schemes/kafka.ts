/**
 * kafka://host:9092[,host2:9092]/topic: brokers and topic from the URI, every other key read by the
 * declarations of kafkaSource and kafkaSink (lib/kafka/options.ts). The connector (and the Kafka
 * client) is loaded by create(), only for a pipeline that uses it.
 */
import { kafkaSinkOptions, kafkaSourceOptions, type KafkaSinkOptions, type KafkaSourceOptions } from '../../kafka/options.js';
import { registerScheme, type EndpointInput } from '../endpoints.js';
import { UsageError, subject } from '../errors.js';
import { readEndpointOptions } from '../options.js';

function kafkaTarget({ url, display }: EndpointInput): { brokers: string[]; topic: string } {
  const topic = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!url.host || !topic) throw new UsageError(`${subject(display)} give brokers and topic as kafka://host:9092/topic`);
  return { brokers: url.host.split(','), topic };
}

registerScheme(['kafka'], {
  help: 'kafka://host:9092/topic?group=archiver&from=earliest   Apache Kafka (consumer group for sources)',
  options: { source: [kafkaSourceOptions], sink: [kafkaSinkOptions] },
  source: (input) => {
    const { brokers, topic } = kafkaTarget(input);
    const { groupId, ...options } = readEndpointOptions(input, [kafkaSourceOptions]);
    if (typeof groupId !== 'string') throw new UsageError(`${subject(input.display)} a Kafka source reads as a consumer group: add group=<name> (processes with the same group share the partitions)`);
    // The factory validates the whole set again: cross-option checks (heartbeatInterval < sessionTimeout) are its own.
    return async () => {
      const { kafkaSource } = await import('../../kafka/source.js');
      return kafkaSource({ ...options, brokers, topics: topic.split(','), groupId } as KafkaSourceOptions);
    };
  },
  sink: (input) => {
    const { brokers, topic } = kafkaTarget(input);
    const options = readEndpointOptions(input, [kafkaSinkOptions]);
    return async () => {
      const { kafkaSink } = await import('../../kafka/sink.js');
      return kafkaSink({ ...options, brokers, topic } as KafkaSinkOptions);
    };
  },
});
