/**
 * Shard discovery and the parent-before-child order that keeps per-key order
 * across resharding: after a split or merge, a key's older records are in the
 * parent shard(s) and its newer ones in a child, so a child is read only once
 * every parent has been read to its end.
 */
import { ListShardsCommand, type KinesisClient, type ListShardsCommandInput, type Shard } from '@aws-sdk/client-kinesis';
import { DEFAULT_REQUEST_TIMEOUT_MS, awsCall } from '../core/aws.js';
import type { StreamRef } from './client.js';

/** What the source needs to know of a shard. */
export interface ShardInfo {
  shardId: string;
  /** ParentShardId and AdjacentParentShardId (merges have two parents). */
  parents: string[];
  /** Whether the shard is closed (has an ending sequence number): a split or merge retired it. */
  closed: boolean;
}

/** Every shard of the stream (open and closed, within retention), following ListShards pages, each within `timeoutMs`. */
export async function listShards(client: KinesisClient, stream: StreamRef, signal?: AbortSignal, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Promise<ShardInfo[]> {
  const shards: ShardInfo[] = [];
  let nextToken: string | undefined;
  do {
    // With a NextToken, ListShards rejects the stream parameters: the token carries them.
    const input: ListShardsCommandInput = nextToken === undefined ? { ...stream.params } : { NextToken: nextToken };
    const page = await awsCall({ what: `kinesisSource: ListShards on ${JSON.stringify(stream.label)}`, timeoutMs, signal }, (abortSignal) =>
      client.send(new ListShardsCommand(input), { abortSignal }),
    );
    for (const shard of page.Shards ?? []) shards.push(toInfo(shard));
    nextToken = page.NextToken;
  } while (nextToken !== undefined);
  return shards;
}

function toInfo(shard: Shard): ShardInfo {
  const parents = [shard.ParentShardId, shard.AdjacentParentShardId].filter((p): p is string => typeof p === 'string' && p.length > 0);
  return { shardId: shard.ShardId!, parents, closed: shard.SequenceNumberRange?.EndingSequenceNumber !== undefined };
}

/**
 * Whether `shard` may be read: each parent is either done (read to its end) or
 * not ours to wait for (expired past retention, or outside `shardIds`).
 */
export function parentsDone(shard: ShardInfo, isKnown: (shardId: string) => boolean, isDone: (shardId: string) => boolean): boolean {
  return shard.parents.every((parent) => !isKnown(parent) || isDone(parent));
}
