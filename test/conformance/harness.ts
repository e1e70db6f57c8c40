/**
 * What a connector gives the shared conformance suite (test/conformance/suite.ts).
 * Each `setup()` makes a fresh destination or origin (a random queue, stream,
 * bucket, topic, server) and returns the ways to use and inspect it.
 */
import type { Readable, Writable } from 'node:stream';

/** Options the suite passes when it creates a stream. */
export interface CreateOptions {
  signal?: AbortSignal;
}

export interface SourceFixture {
  /** Creates a source reading the fixture's origin. Called more than once per test (restart). */
  source(options?: CreateOptions): Readable;
  /** Puts these payloads into the origin, in order (through the raw client or server, not our sink). */
  produce(payloads: Buffer[]): Promise<void>;
  /** Releases everything setup() made (servers, queues, files). */
  cleanup(): Promise<void>;
}

export interface SourceHarness {
  /** Shown in test names. */
  name: string;
  setup(): Promise<SourceFixture>;
  /**
   * Whether unacked and nacked messages come back on a new source over the same
   * origin (AMQP requeue, Kinesis/Kafka checkpoints). Sources that cannot
   * redeliver (stdin, WebSocket) set false.
   */
  redelivers: boolean;
  /**
   * Whether the source only sees what is produced after it started (WebSocket
   * feeds, LATEST positions); the suite then starts reading before producing.
   */
  liveOnly?: boolean;
  /** Longest the suite waits for expected messages. Default 20,000 ms. */
  timeoutMs?: number;
  /** Messages in the backlog tests (produced before reading starts, unless liveOnly). Default 2,000. */
  backlog?: number;
}

export interface SinkFixture {
  /** Creates a sink writing to the fixture's destination. Called more than once per test. */
  sink(options?: CreateOptions): Writable;
  /** Everything that arrived at the destination so far (through the raw client or server), in arrival order. */
  readBack(): Promise<Buffer[]>;
  /** Releases everything setup() made. */
  cleanup(): Promise<void>;
}

export interface SinkHarness {
  name: string;
  setup(): Promise<SinkFixture>;
  /** Most messages the sink may hold written but not yet acked (its in-flight window). Default 2000. */
  maxUnacked?: number;
  /** Whether the destination keeps order for messages without keys. Default true. */
  ordered?: boolean;
  /** Longest the suite waits for acks and arrivals. Default 20,000 ms. */
  timeoutMs?: number;
}
