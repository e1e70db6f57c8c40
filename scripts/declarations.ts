/** Every declared option set, where its interface is generated and which docs page shows its table. */
import type { DeclaredOptions } from '../lib/core/options.js';
import { kafkaSinkOptions, kafkaSourceOptions } from '../lib/kafka/options.js';
import { dynamoLeasesOptions, kinesisSinkOptions, kinesisSourceOptions } from '../lib/kinesis/options.js';
import { amqplibUrlParameters, rabbitmqSinkOptions, rabbitmqSourceOptions } from '../lib/rabbitmq/options.js';
import { s3CollectorOptions, s3SinkOptions, s3UploaderOptions } from '../lib/s3/options.js';
import { stdinSourceOptions, stdoutSinkOptions } from '../lib/stdio/options.js';
import { websocketSinkOptions, websocketSourceOptions } from '../lib/websocket/options.js';

export interface DeclarationEntry {
  declaration: DeclaredOptions;
  /** The file holding the `// <options Type>` markers. */
  file: string;
  /** The generated interface's name. */
  type: string;
  /** What it extends (an interface written elsewhere), and the options that come from it. */
  extends?: string;
  inherited?: readonly string[];
  /** The docs page holding the `<!-- options factory -->` markers. */
  docs: string;
}

export const DECLARATIONS: DeclarationEntry[] = [
  { declaration: stdinSourceOptions, file: 'lib/stdio/options.ts', type: 'StdinSourceOptions', docs: 'docs/stdio.md' },
  { declaration: stdoutSinkOptions, file: 'lib/stdio/options.ts', type: 'StdoutSinkOptions', docs: 'docs/stdio.md' },
  { declaration: websocketSourceOptions, file: 'lib/websocket/options.ts', type: 'WebSocketSourceOptions', docs: 'docs/websocket.md' },
  { declaration: websocketSinkOptions, file: 'lib/websocket/options.ts', type: 'WebSocketSinkOptions', docs: 'docs/websocket.md' },
  { declaration: kafkaSourceOptions, file: 'lib/kafka/options.ts', type: 'KafkaSourceOptions', docs: 'docs/kafka.md' },
  { declaration: kafkaSinkOptions, file: 'lib/kafka/options.ts', type: 'KafkaSinkOptions', docs: 'docs/kafka.md' },
  { declaration: rabbitmqSourceOptions, file: 'lib/rabbitmq/options.ts', type: 'RabbitmqSourceOptions', docs: 'docs/rabbitmq.md' },
  { declaration: rabbitmqSinkOptions, file: 'lib/rabbitmq/options.ts', type: 'RabbitmqSinkOptions', docs: 'docs/rabbitmq.md' },
  { declaration: amqplibUrlParameters, file: 'lib/rabbitmq/options.ts', type: 'AmqplibUrlParameters', docs: 'docs/rabbitmq.md' },
  { declaration: s3SinkOptions, file: 'lib/s3/options.ts', type: 'S3SinkOptions', docs: 'docs/s3.md' },
  { declaration: s3CollectorOptions, file: 'lib/s3/options.ts', type: 'S3CollectorOptions', docs: 'docs/s3.md' },
  { declaration: s3UploaderOptions, file: 'lib/s3/options.ts', type: 'S3UploaderOptions', docs: 'docs/s3.md' },
  { declaration: kinesisSourceOptions, file: 'lib/kinesis/options.ts', type: 'KinesisSourceOptions', docs: 'docs/kinesis.md' },
  { declaration: kinesisSinkOptions, file: 'lib/kinesis/options.ts', type: 'KinesisSinkOptions', docs: 'docs/kinesis.md' },
  { declaration: dynamoLeasesOptions, file: 'lib/kinesis/options.ts', type: 'DynamoLeasesOptions', docs: 'docs/kinesis.md' },
];
