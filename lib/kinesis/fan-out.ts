/**
 * Enhanced fan-out: the stream consumer's registration, and the chain of
 * SubscribeToShard subscriptions that reads one shard. Kinesis ends each
 * subscription after 5 minutes; the next one starts after the last record
 * delivered, so renewals neither lose nor repeat records.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DeregisterStreamConsumerCommand,
  DescribeStreamConsumerCommand,
  RegisterStreamConsumerCommand,
  SubscribeToShardCommand,
  type ConsumerDescription,
  type KinesisClient,
  type _Record as KinesisRecord,
} from '@aws-sdk/client-kinesis';
import { awsCall, awsErrorName } from '../core/aws.js';
import { ErrorCodes, ManifoldError, describe, isRetryable, toError } from '../core/errors.js';
import { backoffDelay, type ResolvedRetry, type RetryEvent } from '../core/retry.js';
import type { StartingPositionParam } from './positions.js';

interface ConsumerOptions {
  client: KinesisClient;
  streamARN: string;
  consumerName: string;
  /** Runs one Kinesis call with the source's retry and error translation. */
  call<T>(operation: string, fn: () => Promise<T>): Promise<T>;
  signal: AbortSignal;
  /** Longest one call may take (the source's requestTimeoutMs). */
  requestTimeoutMs: number;
  /** Longest wait for the consumer to become ACTIVE. Default 120,000 ms (AWS takes tens of seconds). */
  activeTimeoutMs?: number;
}

/**
 * The ARN of the stream consumer `consumerName`, registering it when it does
 * not exist, once it is ACTIVE. Two processes registering at once both end up
 * with the same consumer.
 */
export async function ensureConsumer(o: ConsumerOptions): Promise<string> {
  const describeConsumer = (): Promise<ConsumerDescription | undefined> =>
    o.call('DescribeStreamConsumer', async () => {
      try {
        const out = await awsCall(
          { what: `kinesisSource: DescribeStreamConsumer ${JSON.stringify(o.consumerName)}`, timeoutMs: o.requestTimeoutMs, signal: o.signal },
          (abortSignal) => o.client.send(new DescribeStreamConsumerCommand({ StreamARN: o.streamARN, ConsumerName: o.consumerName }), { abortSignal }),
        );
        return out.ConsumerDescription;
      } catch (error) {
        if (awsErrorName(error) === 'ResourceNotFoundException') return undefined;
        throw error;
      }
    });
  const deadline = Date.now() + (o.activeTimeoutMs ?? 120_000);
  let consumer = await describeConsumer();
  for (;;) {
    if (consumer === undefined) {
      await o.call('RegisterStreamConsumer', async () => {
        try {
          await awsCall(
            { what: `kinesisSource: RegisterStreamConsumer ${JSON.stringify(o.consumerName)}`, timeoutMs: o.requestTimeoutMs, signal: o.signal },
            (abortSignal) => o.client.send(new RegisterStreamConsumerCommand({ StreamARN: o.streamARN, ConsumerName: o.consumerName }), { abortSignal }),
          );
        } catch (error) {
          // Someone else registered it between our describe and register: use theirs.
          if (awsErrorName(error) !== 'ResourceInUseException') throw error;
        }
      });
    } else if (consumer.ConsumerStatus === 'ACTIVE') {
      return consumer.ConsumerARN!;
    }
    if (Date.now() > deadline) {
      throw new ManifoldError(
        `kinesisSource: stream consumer ${JSON.stringify(o.consumerName)} did not become ACTIVE within ${o.activeTimeoutMs ?? 120_000} ms (status ${consumer?.ConsumerStatus ?? 'missing'})`,
        { code: ErrorCodes.CONNECTION, retryable: true, details: { consumerName: o.consumerName } },
      );
    }
    // CREATING takes a moment; DELETING must finish before the name can be registered again.
    await sleep(250, undefined, { signal: o.signal });
    consumer = await describeConsumer();
  }
}

/** Deregisters a stream consumer, within `timeoutMs`; one that is already gone is fine. */
export async function deregisterConsumer(client: KinesisClient, consumerARN: string, timeoutMs: number): Promise<void> {
  try {
    await awsCall({ what: `kinesisSource: DeregisterStreamConsumer ${consumerARN}`, timeoutMs }, (abortSignal) =>
      client.send(new DeregisterStreamConsumerCommand({ ConsumerARN: consumerARN }), { abortSignal }),
    );
  } catch (error) {
    if (awsErrorName(error) === 'ResourceNotFoundException') return;
    throw new ManifoldError(`kinesisSource: deregistering stream consumer ${consumerARN} failed: ${describe(error)}`, {
      code: isRetryable(error) ? ErrorCodes.CONNECTION : ErrorCodes.DELIVERY,
      cause: error,
      details: { consumerARN },
    });
  }
}

/** What {@link subscribeShard} needs from the source. */
export interface SubscribeOptions {
  client: KinesisClient;
  consumerARN: string;
  shardId: string;
  /** Position of the first subscription. */
  start: StartingPositionParam;
  /** Position of a renewal: after the last record delivered, or `start` when none was. */
  resumePosition(): StartingPositionParam;
  retry: ResolvedRetry;
  resubscribeAfterMs: number;
  /** Longest the wait for a subscription's response may be (the source's requestTimeoutMs); the events that follow are not bounded by it. */
  requestTimeoutMs: number;
  /** Stops every subscription of the source. */
  signal: AbortSignal;
  /** Resolves when the source may take more records from this shard (backpressure). */
  gate(): Promise<void>;
  onEvent(records: readonly KinesisRecord[], millisBehindLatest: number | undefined): void;
  /** Whether the shard is known to be closed (ListShards gave it an ending sequence number). */
  isClosed(): boolean;
  onRetry(event: RetryEvent): void;
  /** Each subscription made, with its starting position (the first, renewals, resubscriptions after failures). */
  onSubscribe(position: StartingPositionParam): void;
  /** Translates an SDK failure into the source's error. */
  toError(error: unknown): Error;
}

/**
 * Reads one shard through successive subscriptions until the shard ends
 * (an event without a continuation sequence number) or `signal` aborts.
 * Transient failures resubscribe with backoff; fatal ones reject.
 */
export async function subscribeShard(o: SubscribeOptions): Promise<void> {
  let position = o.start;
  let failures = 0;
  let continuation: string | undefined;
  while (!o.signal.aborted) {
    await o.gate();
    if (o.signal.aborted) return;
    // Renewed before Kinesis' own 5-minute end, so the switch happens on our terms, between events.
    const renew = new AbortController();
    const timer = setTimeout(() => renew.abort(), o.resubscribeAfterMs);
    const onStop = (): void => renew.abort();
    o.signal.addEventListener('abort', onStop, { once: true });
    let ended = false;
    try {
      const out = await awsCall(
        { what: `kinesisSource: SubscribeToShard on ${o.shardId}`, timeoutMs: o.requestTimeoutMs, signal: renew.signal },
        (abortSignal) => o.client.send(new SubscribeToShardCommand({ ConsumerARN: o.consumerARN, ShardId: o.shardId, StartingPosition: position }), { abortSignal }),
      );
      o.onSubscribe(position);
      for await (const event of out.EventStream ?? []) {
        const shardEvent = event.SubscribeToShardEvent;
        if (shardEvent === undefined) {
          // A modeled error event (ResourceNotFound, ResourceInUse, KMS..., InternalFailure).
          const [name, body] = Object.entries(event).find(([, value]) => value !== undefined) ?? ['UnknownEvent', {}];
          const error = Object.assign(new Error(describe((body as { message?: string }).message ?? name)), { name });
          throw error;
        }
        failures = 0;
        o.onEvent(shardEvent.Records ?? [], shardEvent.MillisBehindLatest);
        continuation = shardEvent.ContinuationSequenceNumber ?? undefined;
        const records = shardEvent.Records ?? [];
        // Kinesis marks the end of a closed shard with an event without continuation (ChildShards name the
        // children). Some servers (kinesis-mock) never send it; a closed shard with nothing left to read and
        // nothing behind is at its end too, since no record can be added to a closed shard.
        const caughtUpClosed = records.length === 0 && shardEvent.MillisBehindLatest === 0 && o.isClosed();
        if (continuation === undefined || caughtUpClosed) {
          ended = true;
          break;
        }
        // Not pulling the next event leaves it in the socket: TCP carries the backpressure to Kinesis.
        await o.gate();
        if (renew.signal.aborted) break;
      }
    } catch (error) {
      if (o.signal.aborted) return;
      if (!renew.signal.aborted) {
        const err = classify(error, o.toError);
        failures += 1;
        if (!isRetryable(err) || failures > o.retry.retries) {
          if (failures > 1 && isRetryable(err)) {
            throw new ManifoldError(`kinesisSource: SubscribeToShard on ${o.shardId} failed after ${failures} attempts: ${describe(err)}`, {
              code: ErrorCodes.RETRIES_EXHAUSTED,
              cause: err,
              details: { shardId: o.shardId, attempts: failures },
            });
          }
          throw err;
        }
        const delayMs = backoffDelay(o.retry, failures);
        o.onRetry({ attempt: failures, delayMs, error: err });
        try {
          await sleep(delayMs, undefined, { signal: o.signal });
        } catch {
          return;
        }
      }
    } finally {
      clearTimeout(timer);
      o.signal.removeEventListener('abort', onStop);
      // Releases the HTTP response if the loop left it early.
      renew.abort();
    }
    if (ended) return;
    const resume = o.resumePosition();
    position =
      resume === o.start && continuation !== undefined ? { Type: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: continuation } : resume;
  }
}

function classify(error: unknown, translate: (error: unknown) => Error): Error {
  // A previous subscription to the shard is still open (a renewal raced its end): it clears by itself.
  if (awsErrorName(error) === 'ResourceInUseException') {
    return new ManifoldError(`kinesisSource: SubscribeToShard: the shard is still subscribed: ${describe(error)}`, {
      code: ErrorCodes.THROTTLED,
      retryable: true,
      cause: error,
    });
  }
  return translate(toError(error));
}
