/**
 * The DynamoDB lease table of {@link dynamoLeases}: its schema, every call made
 * to it (DescribeTable, CreateTable, Query, PutItem, UpdateItem), each within
 * the request timeout, the parsing of its rows, and the conditional updates
 * the lease loop (dynamo-leases.ts) is made of.
 *
 * The table (one item per shard):
 *
 * | attribute | type | meaning |
 * |---|---|---|
 * | `streamName` | S, hash key | the stream (one table can serve several) |
 * | `shardId` | S, range key | the shard |
 * | `leaseOwner` | S | the worker holding the lease; absent: free |
 * | `leaseCounter` | N | bumped by every write of the owner (renew, checkpoint) and every change of owner |
 * | `checkpoint` | S | last processed sequence number, or `SHARD_END`; absent: nothing processed yet |
 * | `checkpointSubSequenceNumber` | N | inside a KPL aggregate: the last user record processed |
 * | `startingPosition` | S | where a shard without checkpoint starts: `TRIM_HORIZON` or `AT_TIMESTAMP` |
 * | `startingTimestamp` | N | ms since the epoch, for `AT_TIMESTAMP` |
 * | `parentShardIds` | L of S | parents (a split has one, a merge two) |
 * | `pendingOwner` | S | a worker that asked for the lease to balance the load |
 * | `ownerSwitches` | N | how many times the lease changed hands |
 * | `updatedAt` | N | ms since the epoch of the last write (for people; expiry never reads clocks) |
 *
 * Every write of an owner is conditional on `leaseOwner` and `leaseCounter`
 * being what the writer last saw, so a worker that lost a lease can neither
 * renew it nor move its checkpoint.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CreateTableCommand,
  DescribeTableCommand,
  PutItemCommand,
  QueryCommand,
  UpdateItemCommand,
  type AttributeValue,
  type DynamoDBClient,
  type UpdateItemCommandInput,
} from '@aws-sdk/client-dynamodb';
import { SHARD_END, type Checkpoint } from './checkpoint.js';
import { awsCall, awsError, awsErrorName } from '../core/aws.js';
import { ErrorCodes, ManifoldError } from '../core/errors.js';
import type { LeaseStart, NewShard } from './coordinator.js';

const WHERE = 'dynamoLeases';

/** A lease row as read from the table. */
export interface LeaseRow {
  streamName: string;
  shardId: string;
  owner: string | undefined;
  counter: number;
  checkpoint: Checkpoint | undefined;
  start: LeaseStart;
  parents: string[];
  pendingOwner: string | undefined;
  ownerSwitches: number;
}

/** A conditional write was refused: the row is not as the writer saw it (the lease is someone else's now). */
export class ConditionFailed extends Error {}

/** What an owner's write is conditional on: the lease is still `workerId`'s, at the counter it last wrote. */
export interface Owned {
  workerId: string;
  counter: number;
}

/** One lease table, reached through `client`; every call gives up after `requestTimeoutMs`. */
export class LeaseTable {
  readonly #client: DynamoDBClient;
  readonly tableName: string;
  readonly #requestTimeoutMs: number;

  constructor(client: DynamoDBClient, tableName: string, requestTimeoutMs: number) {
    this.#client = client;
    this.tableName = tableName;
    this.#requestTimeoutMs = requestTimeoutMs;
  }

  /** Runs one call of the table within requestTimeoutMs; `fn` passes the abort signal to `client.send`. */
  async #send<T>(operation: string, fn: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    try {
      return await this.#timed(operation, fn);
    } catch (error) {
      if (awsErrorName(error) === 'ConditionalCheckFailedException') throw new ConditionFailed();
      throw dynamoError(operation, this.tableName, error);
    }
  }

  #timed<T>(operation: string, fn: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    return awsCall({ what: `${WHERE}: ${operation} on lease table ${JSON.stringify(this.tableName)}`, timeoutMs: this.#requestTimeoutMs }, fn);
  }

  /** Waits for the table to be ACTIVE, creating it first when it is missing and `create` is true; checks that its key is a lease table's. */
  async ensure(create: boolean): Promise<void> {
    const describeTable = async (): Promise<{ status: string | undefined; keys: string } | undefined> => {
      try {
        const out = await this.#timed('DescribeTable', (abortSignal) => this.#client.send(new DescribeTableCommand({ TableName: this.tableName }), { abortSignal }));
        const keys = (out.Table?.KeySchema ?? []).map((k) => `${k.AttributeName}:${k.KeyType}`).join(',');
        return { status: out.Table?.TableStatus, keys };
      } catch (error) {
        if (awsErrorName(error) === 'ResourceNotFoundException') return undefined;
        throw dynamoError('DescribeTable', this.tableName, error);
      }
    };
    let table = await describeTable();
    if (table === undefined) {
      if (!create) {
        throw new ManifoldError(`${WHERE}: lease table ${JSON.stringify(this.tableName)} does not exist; create it (see docs/kinesis.md) or set createTable: true`, {
          code: ErrorCodes.NOT_FOUND,
          details: { option: 'tableName', tableName: this.tableName },
        });
      }
      await this.#send('CreateTable', (abortSignal) =>
        this.#client.send(
          new CreateTableCommand({
            TableName: this.tableName,
            BillingMode: 'PAY_PER_REQUEST',
            AttributeDefinitions: [
              { AttributeName: 'streamName', AttributeType: 'S' },
              { AttributeName: 'shardId', AttributeType: 'S' },
            ],
            KeySchema: [
              { AttributeName: 'streamName', KeyType: 'HASH' },
              { AttributeName: 'shardId', KeyType: 'RANGE' },
            ],
          }),
          { abortSignal },
        ),
      ).catch((error: unknown) => {
        // Another worker created it first.
        if (!(error instanceof ManifoldError && awsErrorName(error.cause) === 'ResourceInUseException')) throw error;
      });
      table = await describeTable();
    }
    const deadline = Date.now() + 120_000;
    while (table?.status !== 'ACTIVE') {
      if (Date.now() > deadline) {
        throw new ManifoldError(`${WHERE}: lease table ${JSON.stringify(this.tableName)} did not become ACTIVE within 120 s (status ${table?.status})`, { code: ErrorCodes.CONNECTION, retryable: true });
      }
      await sleep(500);
      table = await describeTable();
    }
    if (table.keys !== 'streamName:HASH,shardId:RANGE') {
      throw new ManifoldError(`${WHERE}: table ${JSON.stringify(this.tableName)} is not a lease table (its key is ${table.keys || 'unknown'}, not streamName:HASH,shardId:RANGE); give another tableName`, {
        code: ErrorCodes.INVALID_OPTION,
        details: { option: 'tableName', tableName: this.tableName },
      });
    }
  }

  /** Every lease row of `streamName`, read consistently; `malformed` hears of items that are not lease rows (they are skipped). */
  async query(streamName: string, malformed: (item: Record<string, AttributeValue>) => void): Promise<LeaseRow[]> {
    const rows: LeaseRow[] = [];
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.#send('Query', (abortSignal) =>
        this.#client.send(
          new QueryCommand({
            TableName: this.tableName,
            KeyConditionExpression: 'streamName = :s',
            ExpressionAttributeValues: { ':s': { S: streamName } },
            ConsistentRead: true,
            ...(startKey ? { ExclusiveStartKey: startKey } : {}),
          }),
          { abortSignal },
        ),
      );
      for (const item of page.Items ?? []) {
        const row = parseRow(item);
        if (row) rows.push(row);
        else malformed(item);
      }
      startKey = page.LastEvaluatedKey;
    } while (startKey !== undefined);
    return rows;
  }

  /** Creates the lease of a new shard, free, with its start; resolves false when it exists already. */
  async create(streamName: string, shard: NewShard): Promise<boolean> {
    const item: Record<string, AttributeValue> = {
      ...key(streamName, shard.shardId),
      leaseCounter: { N: '0' },
      ownerSwitches: { N: '0' },
      parentShardIds: { L: shard.parents.map((p) => ({ S: p })) },
      startingPosition: { S: shard.start.type },
      updatedAt: { N: String(Date.now()) },
    };
    if (shard.start.type === 'AT_TIMESTAMP') item.startingTimestamp = { N: String(shard.start.timestamp) };
    if (shard.finished) item.checkpoint = { S: SHARD_END };
    try {
      await this.#send('PutItem', (abortSignal) =>
        this.#client.send(new PutItemCommand({ TableName: this.tableName, Item: item, ConditionExpression: 'attribute_not_exists(shardId)' }), { abortSignal }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionFailed) return false;
      throw error;
    }
  }

  /** Bumps the counter of a lease `owned`; resolves the worker that asked for it, if any. */
  async renew(streamName: string, shardId: string, owned: Owned): Promise<{ pendingOwner: string | undefined }> {
    const { ConditionExpression, values } = ownedBy(owned);
    const after = await this.#update(
      streamName,
      shardId,
      {
        UpdateExpression: 'SET leaseCounter = leaseCounter + :one, updatedAt = :now',
        ConditionExpression,
        ExpressionAttributeValues: values,
        ReturnValues: 'ALL_NEW',
      },
      'UpdateItem (renew)',
    );
    return { pendingOwner: after?.pendingOwner?.S };
  }

  /** Stores the checkpoint of a lease `owned`; a {@link SHARD_END} one also frees the lease (a finished shard is nobody's). */
  async checkpoint(streamName: string, shardId: string, owned: Owned, checkpoint: Checkpoint): Promise<void> {
    const { ConditionExpression, values } = ownedBy(owned);
    const set = ['checkpoint = :cp', 'leaseCounter = leaseCounter + :one', 'updatedAt = :now'];
    const remove: string[] = [];
    values[':cp'] = { S: checkpoint.sequenceNumber };
    if (checkpoint.subSequenceNumber !== undefined) {
      set.push('checkpointSubSequenceNumber = :sub');
      values[':sub'] = { N: String(checkpoint.subSequenceNumber) };
    } else remove.push('checkpointSubSequenceNumber');
    // A finished shard is nobody's: it no longer counts as load, and its children may be taken.
    if (checkpoint.sequenceNumber === SHARD_END) remove.push('leaseOwner', 'pendingOwner');
    await this.#update(streamName, shardId, { UpdateExpression: updateExpression(set, remove), ConditionExpression, ExpressionAttributeValues: values }, 'UpdateItem (checkpoint)');
  }

  /** Makes `workerId` the owner of the lease of `seen.shardId` if it is still as `seen` (same owner and counter); resolves the row after, if readable. */
  async take(streamName: string, seen: LeaseRow, workerId: string): Promise<LeaseRow | undefined> {
    const values: Record<string, AttributeValue> = {
      ':me': { S: workerId },
      ':counter': { N: String(seen.counter) },
      ':one': { N: '1' },
      ':zero': { N: '0' },
      ':now': { N: String(Date.now()) },
    };
    let condition = 'leaseCounter = :counter AND ';
    if (seen.owner === undefined) condition += 'attribute_not_exists(leaseOwner)';
    else {
      condition += 'leaseOwner = :owner';
      values[':owner'] = { S: seen.owner };
    }
    const after = await this.#update(
      streamName,
      seen.shardId,
      {
        UpdateExpression: 'SET leaseOwner = :me, leaseCounter = leaseCounter + :one, ownerSwitches = if_not_exists(ownerSwitches, :zero) + :one, updatedAt = :now REMOVE pendingOwner',
        ConditionExpression: condition,
        ExpressionAttributeValues: values,
        ReturnValues: 'ALL_NEW',
      },
      'UpdateItem (take)',
    );
    return after ? parseRow(after) : undefined;
  }

  /** Gives a lease `owned` to `to`, the worker that asked for it, with the final checkpoint (when there is one). */
  async handOff(streamName: string, shardId: string, owned: Owned, to: string, checkpoint: Checkpoint | undefined): Promise<void> {
    const { ConditionExpression, values } = ownedBy(owned);
    const set = ['leaseOwner = :to', 'leaseCounter = leaseCounter + :one', 'ownerSwitches = if_not_exists(ownerSwitches, :zero) + :one', 'updatedAt = :now'];
    const remove = ['pendingOwner'];
    values[':to'] = { S: to };
    values[':zero'] = { N: '0' };
    if (checkpoint) {
      set.push('checkpoint = :cp');
      values[':cp'] = { S: checkpoint.sequenceNumber };
      if (checkpoint.subSequenceNumber !== undefined) {
        set.push('checkpointSubSequenceNumber = :sub');
        values[':sub'] = { N: String(checkpoint.subSequenceNumber) };
      } else remove.push('checkpointSubSequenceNumber');
    }
    await this.#update(
      streamName,
      shardId,
      { UpdateExpression: updateExpression(set, remove), ConditionExpression: `${ConditionExpression} AND pendingOwner = :to`, ExpressionAttributeValues: values },
      'UpdateItem (handoff)',
    );
  }

  /** Frees a lease `owned`, so another worker can take it at once. */
  async release(streamName: string, shardId: string, owned: Owned): Promise<void> {
    const { ConditionExpression, values } = ownedBy(owned);
    await this.#update(
      streamName,
      shardId,
      { UpdateExpression: 'SET leaseCounter = leaseCounter + :one, updatedAt = :now REMOVE leaseOwner, pendingOwner', ConditionExpression, ExpressionAttributeValues: values },
      'UpdateItem (release)',
    );
  }

  /** Asks `owner` for its lease on behalf of `workerId` (sets pendingOwner), unless someone asked already. */
  async request(streamName: string, shardId: string, owner: string, workerId: string): Promise<void> {
    await this.#update(
      streamName,
      shardId,
      {
        UpdateExpression: 'SET pendingOwner = :me',
        ConditionExpression: 'leaseOwner = :owner AND attribute_not_exists(pendingOwner)',
        ExpressionAttributeValues: { ':me': { S: workerId }, ':owner': { S: owner } },
      },
      'UpdateItem (request)',
    );
  }

  #update(streamName: string, shardId: string, input: Omit<UpdateItemCommandInput, 'TableName' | 'Key'>, operation: string): Promise<Record<string, AttributeValue> | undefined> {
    return this.#send(operation, async (abortSignal) => {
      const out = await this.#client.send(new UpdateItemCommand({ TableName: this.tableName, Key: key(streamName, shardId), ...input }), { abortSignal });
      return out.Attributes;
    });
  }
}

function key(streamName: string, shardId: string): Record<string, AttributeValue> {
  return { streamName: { S: streamName }, shardId: { S: shardId } };
}

/** Condition and values every owner write carries: still ours, at the counter we know. */
function ownedBy(owned: Owned): { ConditionExpression: string; values: Record<string, AttributeValue> } {
  return {
    ConditionExpression: 'leaseOwner = :me AND leaseCounter = :counter',
    values: { ':me': { S: owned.workerId }, ':counter': { N: String(owned.counter) }, ':one': { N: '1' }, ':now': { N: String(Date.now()) } },
  };
}

function updateExpression(set: string[], remove: string[]): string {
  return remove.length === 0 ? `SET ${set.join(', ')}` : `SET ${set.join(', ')} REMOVE ${remove.join(', ')}`;
}

/** A lease row from a table item; undefined when the item is not one. */
export function parseRow(item: Record<string, AttributeValue>): LeaseRow | undefined {
  const streamName = item.streamName?.S;
  const shardId = item.shardId?.S;
  const counter = Number(item.leaseCounter?.N);
  if (streamName === undefined || shardId === undefined || !Number.isInteger(counter)) return undefined;
  let checkpoint: Checkpoint | undefined;
  if (item.checkpoint?.S !== undefined) {
    checkpoint = { sequenceNumber: item.checkpoint.S };
    if (item.checkpointSubSequenceNumber?.N !== undefined) checkpoint.subSequenceNumber = Number(item.checkpointSubSequenceNumber.N);
  }
  const start: LeaseStart =
    item.startingPosition?.S === 'AT_TIMESTAMP' && item.startingTimestamp?.N !== undefined
      ? { type: 'AT_TIMESTAMP', timestamp: Number(item.startingTimestamp.N) }
      : { type: 'TRIM_HORIZON' };
  return {
    streamName,
    shardId,
    owner: item.leaseOwner?.S,
    counter,
    checkpoint,
    start,
    parents: (item.parentShardIds?.L ?? []).map((p) => p.S).filter((p): p is string => typeof p === 'string'),
    pendingOwner: item.pendingOwner?.S,
    ownerSwitches: Number(item.ownerSwitches?.N ?? 0),
  };
}

/** A DynamoDB failure as a ManifoldError (through the one AWS mapping), naming the lease table. */
function dynamoError(operation: string, tableName: string, error: unknown): Error {
  const table = `lease table ${JSON.stringify(tableName)}`;
  return awsError({ where: WHERE, operation, resource: table, missing: `${table} does not exist (deleted while in use?)`, details: { tableName } }, error);
}
