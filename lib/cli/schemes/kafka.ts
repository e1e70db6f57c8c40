/**
 * kafka://host:9092[,host2:9092]/topic: brokers and topic from the URI, every other key read by the
 * declarations of kafkaSource and kafkaSink (lib/kafka/options.ts). Credentials in the URI
 * (`kafka://user:password@host:9092/topic`) are SASL's, with the mechanism named by `saslMechanism=`:
 * Kafka has no default one, and credentials given and then ignored would connect without them. The
 * connector (and the Kafka client) is loaded by create(), only for a pipeline that uses it.
 */
import { uriCredentials } from '../../core/errors.js';
import { defineOptions, opt } from '../../core/options.js';
import { kafkaSinkOptions, kafkaSourceOptions, type KafkaSaslOptions, type KafkaSinkOptions, type KafkaSourceOptions } from '../../kafka/options.js';
import { registerScheme, type EndpointInput } from '../endpoints.js';
import { UsageError, subject } from '../errors.js';
import { readEndpointOptions } from '../options.js';

const MECHANISMS = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const;

/** What only the command line takes: the SASL mechanism of the URI's user and password. */
export const kafkaUriOptions = defineOptions('kafka:', {
  saslMechanism: opt.enum('SASL mechanism of the user and password in the URI (`kafka://user:password@host:9092/topic`); required with them, as Kafka has no default.', MECHANISMS),
});

function kafkaTarget({ url, display }: EndpointInput): { brokers: string[]; topic: string } {
  const topic = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!url.host || !topic) throw new UsageError(`${subject(display)} give brokers and topic as kafka://host:9092/topic`);
  return { brokers: url.host.split(','), topic };
}

/** The library's `sasl` from the URI's credentials and `saslMechanism`; refuses either without the other. */
function saslOf(input: EndpointInput, mechanism: unknown): KafkaSaslOptions | undefined {
  const credentials = uriCredentials(input.uri);
  const { display } = input;
  if (credentials === undefined) {
    if (mechanism === undefined) return undefined;
    throw new UsageError(`${subject(display)} saslMechanism=${String(mechanism)} needs a user and password: kafka://user:password@host:9092/topic (percent-encode / ? # @ in them)`);
  }
  if (mechanism === undefined) {
    throw new UsageError(
      `${subject(display)} the user and password would be ignored: Kafka sends them only with SASL, whose mechanism the URI must name: add saslMechanism=PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (what the brokers take), or remove user:password@ to connect without SASL`,
    );
  }
  if (credentials.username === '' || !credentials.password) {
    throw new UsageError(`${subject(display)} SASL needs both a user and a password: kafka://user:password@host:9092/topic`);
  }
  return { mechanism: mechanism as KafkaSaslOptions['mechanism'], username: credentials.username, password: credentials.password };
}

registerScheme(['kafka'], {
  help: 'kafka://host:9092/topic?group=archiver&from=earliest   Apache Kafka (consumer group for sources; kafka://user:password@host:9092/topic?saslMechanism=SCRAM-SHA-256 for SASL)',
  options: { source: [kafkaSourceOptions, kafkaUriOptions], sink: [kafkaSinkOptions, kafkaUriOptions] },
  source: (input) => {
    const { brokers, topic } = kafkaTarget(input);
    const { groupId, saslMechanism, ...options } = readEndpointOptions(input, [kafkaSourceOptions, kafkaUriOptions]);
    const sasl = saslOf(input, saslMechanism);
    if (typeof groupId !== 'string') throw new UsageError(`${subject(input.display)} a Kafka source reads as a consumer group: add group=<name> (processes with the same group share the partitions)`);
    // The factory validates the whole set again: cross-option checks (heartbeatInterval < sessionTimeout) are its own.
    return async () => {
      const { kafkaSource } = await import('../../kafka/source.js');
      return kafkaSource({ ...options, brokers, topics: topic.split(','), groupId, ...(sasl ? { sasl } : {}) } as KafkaSourceOptions);
    };
  },
  sink: (input) => {
    const { brokers, topic } = kafkaTarget(input);
    const { saslMechanism, ...options } = readEndpointOptions(input, [kafkaSinkOptions, kafkaUriOptions]);
    const sasl = saslOf(input, saslMechanism);
    return async () => {
      const { kafkaSink } = await import('../../kafka/sink.js');
      return kafkaSink({ ...options, brokers, topic, ...(sasl ? { sasl } : {}) } as KafkaSinkOptions);
    };
  },
});
