/**
 * A custom transform written as an async generator: it masks card numbers and
 * drops heartbeats. Copying a message with spread keeps its ack, and a dropped
 * message is acked by hand (intentionally dropped counts as delivered).
 *
 * Runs as-is:  printf '{"card":"4111111111111111"}\n{"type":"heartbeat"}\n' | npx tsx examples/custom-transform/index.ts
 */
import { flow, stdinSource, stdoutSink, type Message } from '../../lib/index.js';

async function* maskCards(messages: AsyncIterable<Message>): AsyncGenerator<Message> {
  for await (const message of messages) {
    const text = message.data.toString();
    if (text.includes('"heartbeat"')) {
      message.ack();
      continue;
    }
    yield { ...message, data: Buffer.from(text.replace(/\b(\d{4})\d{8}(\d{4})\b/g, '$1********$2')) };
  }
}

const stats = await flow({ source: stdinSource(), transforms: [maskCards], sink: stdoutSink(), handleSignals: true });
process.stderr.write(`${stats.messages} in, ${stats.acks} acked\n`);
