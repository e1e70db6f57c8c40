/** Every declared option set, where its interface is generated and which docs page shows its table. */
import type { DeclaredOptions, OptionSpecs } from '../lib/core/options.js';
import { kafkaConnection, kafkaSinkOptions, kafkaSourceOptions } from '../lib/kafka/options.js';
import { dynamoLeasesOptions, kinesisSinkOptions, kinesisSourceOptions, kinesisStream } from '../lib/kinesis/options.js';
import { amqplibUrlParameters, rabbitmqConnection, rabbitmqSinkOptions, rabbitmqSourceOptions } from '../lib/rabbitmq/options.js';
import { s3Collecting as s3Collecting_, s3CollectorOptions, s3Connection as s3Connection_, s3SinkOptions, s3SourceOptions, s3Target as s3Target_, s3UploaderOptions, s3Uploading as s3Uploading_ } from '../lib/s3/options.js';
import { stdinSourceOptions, stdoutSinkOptions } from '../lib/stdio/options.js';
import { websocketConnection, websocketSinkOptions, websocketSourceOptions } from '../lib/websocket/options.js';

/** Options several factories of a system share: one generated interface that theirs extend, so no option is written twice. */
export interface OptionGroup {
  type: string;
  /** One line: what the group is. */
  doc: string;
  specs: OptionSpecs;
  /** The file holding its `// <options Type>` markers. */
  file: string;
}

const kafka: OptionGroup = { type: 'KafkaConnectionOptions', doc: 'How a Kafka client connects: brokers, client id, TLS and SASL.', specs: kafkaConnection, file: 'lib/kafka/options.ts' };
const kinesis: OptionGroup = { type: 'KinesisStreamOptions', doc: 'Which stream, and how the Kinesis client is made.', specs: kinesisStream, file: 'lib/kinesis/options.ts' };
const rabbitmq: OptionGroup = { type: 'RabbitmqConnectionOptions', doc: 'How the AMQP connection is made and kept.', specs: rabbitmqConnection, file: 'lib/rabbitmq/options.ts' };
const websocket: OptionGroup = { type: 'WebSocketConnectionOptions', doc: 'How the WebSocket connection is made and kept.', specs: websocketConnection, file: 'lib/websocket/options.ts' };
const s3Target: OptionGroup = { type: 'S3TargetOptions', doc: 'Where objects go.', specs: s3Target_, file: 'lib/s3/options.ts' };
const s3Connection: OptionGroup = { type: 'S3ConnectionOptions', doc: 'How the S3 client is made.', specs: s3Connection_, file: 'lib/s3/options.ts' };
const s3Collecting: OptionGroup = { type: 'S3CollectingOptions', doc: 'How messages become local files.', specs: s3Collecting_, file: 'lib/s3/options.ts' };
const s3Uploading: OptionGroup = { type: 'S3UploadingOptions', doc: 'How local files are uploaded.', specs: s3Uploading_, file: 'lib/s3/options.ts' };

export const GROUPS: OptionGroup[] = [kafka, kinesis, rabbitmq, websocket, s3Target, s3Connection, s3Collecting, s3Uploading];

export interface DeclarationEntry {
  declaration: DeclaredOptions;
  /** The file holding the `// <options Type>` markers. */
  file: string;
  /** The generated interface's name. */
  type: string;
  /** The groups it takes whole: its interface extends theirs. */
  groups?: readonly OptionGroup[];
  /** The docs page holding the `<!-- options factory -->` markers. */
  docs: string;
}

export const DECLARATIONS: DeclarationEntry[] = [
  { declaration: stdinSourceOptions, file: 'lib/stdio/options.ts', type: 'StdinSourceOptions', docs: 'docs/stdio.md' },
  { declaration: stdoutSinkOptions, file: 'lib/stdio/options.ts', type: 'StdoutSinkOptions', docs: 'docs/stdio.md' },
  { declaration: websocketSourceOptions, file: 'lib/websocket/options.ts', type: 'WebSocketSourceOptions', groups: [websocket], docs: 'docs/websocket.md' },
  { declaration: websocketSinkOptions, file: 'lib/websocket/options.ts', type: 'WebSocketSinkOptions', groups: [websocket], docs: 'docs/websocket.md' },
  { declaration: kafkaSourceOptions, file: 'lib/kafka/options.ts', type: 'KafkaSourceOptions', groups: [kafka], docs: 'docs/kafka.md' },
  { declaration: kafkaSinkOptions, file: 'lib/kafka/options.ts', type: 'KafkaSinkOptions', groups: [kafka], docs: 'docs/kafka.md' },
  { declaration: rabbitmqSourceOptions, file: 'lib/rabbitmq/options.ts', type: 'RabbitmqSourceOptions', groups: [rabbitmq], docs: 'docs/rabbitmq.md' },
  { declaration: rabbitmqSinkOptions, file: 'lib/rabbitmq/options.ts', type: 'RabbitmqSinkOptions', groups: [rabbitmq], docs: 'docs/rabbitmq.md' },
  { declaration: amqplibUrlParameters, file: 'lib/rabbitmq/options.ts', type: 'AmqplibUrlParameters', docs: 'docs/rabbitmq.md' },
  { declaration: s3SinkOptions, file: 'lib/s3/options.ts', type: 'S3SinkOptions', groups: [s3Target, s3Connection, s3Collecting, s3Uploading], docs: 'docs/s3.md' },
  { declaration: s3CollectorOptions, file: 'lib/s3/options.ts', type: 'S3CollectorOptions', groups: [s3Collecting], docs: 'docs/s3.md' },
  { declaration: s3UploaderOptions, file: 'lib/s3/options.ts', type: 'S3UploaderOptions', groups: [s3Target, s3Connection, s3Uploading], docs: 'docs/s3.md' },
  { declaration: s3SourceOptions, file: 'lib/s3/options.ts', type: 'S3SourceOptions', groups: [s3Connection], docs: 'docs/s3.md' },
  { declaration: kinesisSourceOptions, file: 'lib/kinesis/options.ts', type: 'KinesisSourceOptions', groups: [kinesis], docs: 'docs/kinesis.md' },
  { declaration: kinesisSinkOptions, file: 'lib/kinesis/options.ts', type: 'KinesisSinkOptions', groups: [kinesis], docs: 'docs/kinesis.md' },
  { declaration: dynamoLeasesOptions, file: 'lib/kinesis/options.ts', type: 'DynamoLeasesOptions', docs: 'docs/kinesis.md' },
];
