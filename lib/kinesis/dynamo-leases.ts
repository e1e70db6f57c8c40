/**
 * Shard leases in a DynamoDB table, so several processes share a Kinesis
 * stream: each shard is read by one worker at a time, dead workers' shards
 * move to live ones, load is balanced, and the checkpoint lives in the lease
 * row, written only by the lease's current owner.
 *
 * The lease table, its rows and the conditional writes are in lease-table.ts.
 * Expiry does not compare clocks: a worker counts a lease as expired once its
 * counter has not moved for `leaseDurationMs` of its own time.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { SHARD_END, type Checkpoint } from './checkpoint.js';
import { awsConnection, type AwsConnection, type AwsTimeouts } from '../core/aws.js';
import { ErrorCodes, ManifoldError, describe, toError } from '../core/errors.js';
import { conflictingOptions, invalidOption } from '../core/options.js';
import type { CoordinatedSource, LeaseEvent, NewShard, ShardCoordinator } from './coordinator.js';
import { ConditionFailed, LeaseTable, type LeaseRow, type Owned } from './lease-table.js';
import { dynamoLeasesOptions, type DynamoLeasesOptions } from './options.js';

export type { DynamoLeasesOptions } from './options.js';

/** The coordinator returned by {@link dynamoLeases}. */
export interface DynamoLeases extends ShardCoordinator {
  readonly workerId: string;
  readonly tableName: string;
  /** Every lease row of `streamName` (default: the stream being coordinated), read consistently. */
  leases(streamName?: string): Promise<LeaseRow[]>;
  /** Shards this worker holds now. */
  held(): string[];
  /**
   * Takes `shardId` if it is still as `seen` (same owner and counter): the
   * conditional write every take goes through. Resolves whether it was won.
   */
  tryTake(seen: LeaseRow, reason?: string): Promise<boolean>;
}

const WHERE = 'dynamoLeases';
/**
 * A {@link ShardCoordinator} keeping shard leases and checkpoints in a
 * DynamoDB table, for several processes reading one Kinesis stream: pass it
 * as `kinesisSource({ coordinator })`, one per process, all with the same
 * `tableName`.
 *
 * - Each worker renews its leases every `renewIntervalMs`; a lease not renewed
 *   for `leaseDurationMs` is taken by a live worker, from its last checkpoint.
 * - Balancing: a worker holding fewer than its fair share takes free or
 *   expired leases; when there are none, it asks the most loaded workers for
 *   leases (up to its share, while the asked worker would still hold two or
 *   more leases more than it). The owner stops reading
 *   the shard, waits for its messages to be acked (up to `leaseDurationMs`),
 *   and hands the lease over with its final checkpoint: no duplicates.
 * - A child shard is leased only once its parents' checkpoints are `SHARD_END`.
 * - On `close()` of the source: final checkpoints, then the leases are
 *   released, so the other workers take them at their next renew.
 *
 * @example
 * ```ts
 * const coordinator = dynamoLeases({ tableName: 'orders-leases', region: 'eu-west-1' });
 * const source = kinesisSource({ streamName: 'orders', startingPosition: 'TRIM_HORIZON', coordinator });
 * source.on('lease', (e) => console.error(e.type, e.shardId));
 * ```
 */
export function dynamoLeases(options: DynamoLeasesOptions): DynamoLeases {
  return new DynamoLeaseCoordinator(options);
}

interface Held {
  shardId: string;
  counter: number;
  /** Local time at which the last successful write was sent: the lease is ours until this plus leaseDurationMs. */
  renewedAt: number;
  /** Writes of one lease run one at a time, so each knows the counter. */
  chain: Promise<unknown>;
  handingOff: boolean;
}

interface Seen {
  counter: number;
  owner: string | undefined;
  /** Local time at which this worker first saw this counter. */
  changedAt: number;
}

class DynamoLeaseCoordinator implements DynamoLeases {
  readonly workerId: string;
  readonly tableName: string;
  readonly #client: DynamoDBClient;
  readonly #ownsClient: boolean;
  readonly #table: LeaseTable;
  readonly #leaseDurationMs: number;
  readonly #renewIntervalMs: number;
  readonly #createTable: boolean;
  #source: CoordinatedSource | undefined;
  #streamName = '';
  readonly #held = new Map<string, Held>();
  readonly #seen = new Map<string, Seen>();
  readonly #known = new Set<string>();
  /** Outstanding requests for other workers' leases, by shard. */
  readonly #requests = new Map<string, { owner: string; since: number }>();
  #timer: NodeJS.Timeout | undefined;
  /** Checks our own leases' deadlines even while a round hangs on a request that does not return. */
  #watchdog: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  #again = false;
  #stopped = false;
  #stopping: Promise<void> | undefined;

  constructor(options: DynamoLeasesOptions) {
    const o = dynamoLeasesOptions.resolve(options);
    // Not in the declaration: a missing tableName is told as a missing string, not as a malformed name.
    if (!/^[a-zA-Z0-9_.-]{3,255}$/.test(o.tableName)) invalidOption(WHERE, 'tableName', 'a DynamoDB table name (3 to 255 of a-z, A-Z, 0-9, _ . -)', o.tableName);
    this.tableName = o.tableName;
    this.workerId = o.workerId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.#leaseDurationMs = o.leaseDurationMs;
    this.#renewIntervalMs = o.renewIntervalMs ?? Math.floor(this.#leaseDurationMs / 3);
    if (this.#renewIntervalMs * 2 > this.#leaseDurationMs) {
      conflictingOptions(WHERE, 'renewIntervalMs', 'leaseDurationMs', `do not fit: renew at least twice per lease duration (renewIntervalMs ${this.#renewIntervalMs} > leaseDurationMs ${this.#leaseDurationMs} / 2)`);
    }
    this.#createTable = o.createTable;
    const defaultTimeoutMs = Math.min(30_000, Math.max(1_000, Math.floor(this.#renewIntervalMs / 2)));
    const { client, owned, timeouts } = resolveDynamoClient(o as AwsConnection<DynamoDBClient, DynamoDBClientConfig['credentials']>, defaultTimeoutMs);
    this.#client = client;
    this.#ownsClient = owned;
    this.#table = new LeaseTable(client, this.tableName, timeouts.requestTimeoutMs);
  }

  held(): string[] {
    return [...this.#held.keys()];
  }

  async start(source: CoordinatedSource): Promise<void> {
    if (this.#source) throw new ManifoldError(`${WHERE}: already coordinating stream ${JSON.stringify(this.#streamName)}; use one dynamoLeases() per source`, { code: ErrorCodes.INVALID_OPTION, details: { option: 'coordinator' } });
    this.#source = source;
    this.#streamName = source.streamName;
    await this.#table.ensure(this.#createTable);
    this.#watchdog = setInterval(() => this.#expireOwn(), this.#renewIntervalMs);
    this.#schedule(0);
  }

  // ---- the table --------------------------------------------------------

  leases(streamName = this.#streamName): Promise<LeaseRow[]> {
    return this.#table.query(streamName, (item) =>
      this.#source?.warn(new ManifoldError(`${WHERE}: ignoring a malformed lease row in ${JSON.stringify(this.tableName)}: ${JSON.stringify(item)}`, { code: ErrorCodes.IO })),
    );
  }

  async sync(shards: readonly NewShard[]): Promise<void> {
    if (this.#known.size === 0) for (const row of await this.leases()) this.#known.add(row.shardId);
    let created = false;
    for (const shard of shards) {
      if (this.#known.has(shard.shardId)) continue;
      if (await this.#table.create(this.#streamName, shard)) created = true;
      this.#known.add(shard.shardId);
    }
    if (created) this.#poke();
  }

  /** Runs `write` after the lease's earlier writes; a failed condition means the lease is no longer ours. */
  #write<T>(held: Held, write: () => Promise<T>): Promise<T> {
    const run = held.chain.then(write, write);
    held.chain = run.catch(() => {});
    return run;
  }

  /** What every write of ours is conditional on: still ours, at the counter we know. */
  #owned(held: Held): Owned {
    return { workerId: this.workerId, counter: held.counter };
  }

  #lose(held: Held, reason: string): void {
    if (this.#held.get(held.shardId) !== held) return;
    this.#held.delete(held.shardId);
    this.#source?.revoke(held.shardId);
    this.#emit({ type: 'lost', shardId: held.shardId, workerId: this.workerId, reason });
  }

  #emit(event: LeaseEvent): void {
    this.#source?.lease(event);
  }

  async #renew(held: Held): Promise<void> {
    await this.#write(held, async () => {
      if (this.#held.get(held.shardId) !== held) return;
      const sentAt = Date.now();
      try {
        const { pendingOwner: pending } = await this.#table.renew(this.#streamName, held.shardId, this.#owned(held));
        held.counter += 1;
        held.renewedAt = sentAt;
        if (pending !== undefined && pending !== this.workerId && !held.handingOff && !this.#stopped) {
          held.handingOff = true;
          this.#handOff(held, pending).catch((error: unknown) => this.#source?.warn(toError(error)));
        }
      } catch (error) {
        if (error instanceof ConditionFailed) this.#lose(held, 'taken by another worker (renew refused)');
        else throw error;
      }
    });
  }

  async checkpoint(shardId: string, checkpoint: Checkpoint): Promise<boolean> {
    const held = this.#held.get(shardId);
    if (!held) return false;
    return this.#write(held, async () => {
      if (this.#held.get(shardId) !== held) return false;
      const sentAt = Date.now();
      const end = checkpoint.sequenceNumber === SHARD_END;
      try {
        await this.#table.checkpoint(this.#streamName, shardId, this.#owned(held), checkpoint);
      } catch (error) {
        if (error instanceof ConditionFailed) {
          this.#lose(held, 'taken by another worker (checkpoint refused)');
          return false;
        }
        throw error;
      }
      held.counter += 1;
      held.renewedAt = sentAt;
      if (end) {
        this.#held.delete(shardId);
        this.#poke();
      }
      return true;
    });
  }

  async tryTake(seen: LeaseRow, reason = 'free', previousOwner = seen.owner): Promise<boolean> {
    const sentAt = Date.now();
    let row: LeaseRow | undefined;
    try {
      row = await this.#table.take(this.#streamName, seen, this.workerId);
    } catch (error) {
      if (error instanceof ConditionFailed) return false;
      throw error;
    }
    if (!row) return false;
    if (this.#held.has(row.shardId)) return true;
    this.#held.set(row.shardId, { shardId: row.shardId, counter: row.counter, renewedAt: sentAt, chain: Promise.resolve(), handingOff: false });
    this.#requests.delete(row.shardId);
    this.#emit({ type: 'gained', shardId: row.shardId, workerId: this.workerId, ...(previousOwner && previousOwner !== this.workerId ? { otherWorker: previousOwner } : {}), reason });
    this.#source?.acquire({ shardId: row.shardId, parents: row.parents, checkpoint: row.checkpoint, start: row.start });
    return true;
  }

  /** Hands a lease to the worker that asked for it, after the final checkpoint of what we delivered. */
  async #handOff(held: Held, to: string): Promise<void> {
    const source = this.#source!;
    const checkpoint = await source.drain(held.shardId, this.#leaseDurationMs);
    if (this.#stopped || this.#held.get(held.shardId) !== held) return;
    await this.#write(held, async () => {
      try {
        await this.#table.handOff(this.#streamName, held.shardId, this.#owned(held), to, checkpoint);
      } catch (error) {
        if (error instanceof ConditionFailed) {
          this.#lose(held, 'taken by another worker during the handoff');
          return;
        }
        // Could not hand over: the shard is not being read; give it back to the reader side by forgetting it (it expires, then is retaken).
        this.#lose(held, `handoff failed: ${describe(error)}`);
        throw error;
      }
      this.#held.delete(held.shardId);
      this.#emit({ type: 'stolen', shardId: held.shardId, workerId: this.workerId, otherWorker: to });
    });
  }

  // ---- the loop ---------------------------------------------------------

  #schedule(ms: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#run(), ms);
  }

  /** Runs a round soon (a lease row appeared or a shard finished), without waiting for the interval. */
  #poke(): void {
    if (this.#stopped) return;
    if (this.#ticking) this.#again = true;
    else this.#schedule(0);
  }

  #run(): void {
    if (this.#stopped || this.#ticking) return;
    this.#ticking = this.#tick()
      .catch((error: unknown) => {
        const err = toError(error);
        if (err instanceof ManifoldError && !err.retryable) this.#source?.fail(err);
        else this.#source?.warn(err);
      })
      .finally(() => {
        this.#ticking = undefined;
        if (this.#again) {
          this.#again = false;
          this.#schedule(0);
        } else this.#schedule(this.#renewIntervalMs);
      });
  }

  /** A lease we could not renew for a whole lease duration may be someone else's by now: stop reading it. */
  #expireOwn(): void {
    const now = Date.now();
    for (const held of [...this.#held.values()]) {
      if (now - held.renewedAt >= this.#leaseDurationMs) this.#lose(held, `not renewed for ${this.#leaseDurationMs} ms (lease table unreachable?)`);
    }
  }

  async #tick(): Promise<void> {
    const renewals = await Promise.allSettled([...this.#held.values()].map((held) => this.#renew(held)));
    const failed = renewals.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    if (this.#stopped) return;
    const rows = await this.leases();
    const now = Date.now();
    for (const row of rows) {
      this.#known.add(row.shardId);
      const before = this.#seen.get(row.shardId);
      if (!before || before.counter !== row.counter || before.owner !== row.owner) this.#seen.set(row.shardId, { counter: row.counter, owner: row.owner, changedAt: now });
    }
    if (this.#stopped || !this.#source?.active) return;
    await this.#balance(rows, now);
  }

  async #balance(rows: LeaseRow[], now: number): Promise<void> {
    const byId = new Map(rows.map((r) => [r.shardId, r]));
    const finished = (r: LeaseRow | undefined): boolean => r?.checkpoint?.sequenceNumber === SHARD_END;
    // Children wait until every parent we have a lease for is read to its end.
    const eligible = rows.filter((r) => !finished(r) && r.parents.every((p) => !byId.has(p) || finished(byId.get(p))));
    const expired = (r: LeaseRow): boolean =>
      r.owner === undefined || (r.owner !== this.workerId && now - (this.#seen.get(r.shardId)?.changedAt ?? now) >= this.#leaseDurationMs);
    const load = new Map<string, LeaseRow[]>([[this.workerId, []]]);
    for (const r of eligible) {
      const owner = this.#held.has(r.shardId) ? this.workerId : r.owner;
      if (owner === undefined || (owner !== this.workerId && expired(r))) continue;
      if (!load.has(owner)) load.set(owner, []);
      load.get(owner)!.push(r);
    }
    const mine = eligible.filter((r) => this.#held.has(r.shardId)).length;
    const target = Math.ceil(eligible.length / load.size);

    // Ours in the table but not held here: handed to us, held by this workerId before a restart, or one we stopped renewing in time.
    const toUs = eligible.filter((r) => r.owner === this.workerId && !this.#held.has(r.shardId));
    const takeable = shuffle(eligible.filter((r) => r.owner !== this.workerId && expired(r)));
    takeable.sort((a, b) => Number(a.owner !== undefined) - Number(b.owner !== undefined));
    let taken = 0;
    for (const row of toUs) {
      if (!this.#source?.active) return;
      const request = this.#requests.get(row.shardId);
      if (await this.tryTake(row, request ? 'handoff' : 'recovered', request?.owner)) taken += 1;
    }
    for (const row of takeable) {
      if (mine + taken >= target || !this.#source?.active) break;
      if (await this.tryTake(row, row.owner === undefined ? 'free' : 'expired')) taken += 1;
    }
    if (taken > 0 || takeable.length > 0) return;

    // Balance: ask the most loaded workers for leases while one holds two or more than we would.
    for (const [shardId, request] of [...this.#requests]) {
      const row = byId.get(shardId);
      if (!row || row.owner !== request.owner || row.pendingOwner !== this.workerId) this.#requests.delete(shardId);
      else if (now - request.since > 3 * this.#leaseDurationMs) {
        // The owner renews but does not hand over: take it.
        this.#requests.delete(shardId);
        await this.tryTake(row, 'forced', request.owner);
      }
    }
    const asked = new Map<string, number>();
    for (const request of this.#requests.values()) asked.set(request.owner, (asked.get(request.owner) ?? 0) + 1);
    let coming = mine + this.#requests.size;
    while (coming < target) {
      let richest: [string, LeaseRow[]] | undefined;
      const left = (entry: [string, LeaseRow[]]): number => entry[1].length - (asked.get(entry[0]) ?? 0);
      for (const entry of load) if (entry[0] !== this.workerId && (!richest || left(entry) > left(richest))) richest = entry;
      if (!richest || left(richest) - coming < 2) return;
      const [owner, theirs] = richest;
      const victim = shuffle(theirs.filter((r) => r.pendingOwner === undefined && !this.#requests.has(r.shardId)))[0];
      if (!victim) return;
      asked.set(owner, (asked.get(owner) ?? 0) + 1);
      try {
        await this.#table.request(this.#streamName, victim.shardId, owner, this.workerId);
        this.#requests.set(victim.shardId, { owner, since: now });
        coming += 1;
      } catch (error) {
        if (!(error instanceof ConditionFailed)) throw error;
      }
    }
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#stopped = true;
      clearTimeout(this.#timer);
      clearInterval(this.#watchdog);
      await this.#ticking;
      await Promise.allSettled([...this.#held.values()].map((held) => this.#release(held)));
      if (this.#ownsClient) this.#client.destroy();
    })();
    return this.#stopping;
  }

  async #release(held: Held): Promise<void> {
    await this.#write(held, async () => {
      if (this.#held.get(held.shardId) !== held) return;
      try {
        await this.#table.release(this.#streamName, held.shardId, this.#owned(held));
        this.#held.delete(held.shardId);
        this.#emit({ type: 'released', shardId: held.shardId, workerId: this.workerId });
      } catch (error) {
        if (error instanceof ConditionFailed) this.#lose(held, 'taken by another worker before release');
        else {
          this.#source?.warn(toError(error));
          throw error;
        }
      }
    });
  }
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

function resolveDynamoClient(o: AwsConnection<DynamoDBClient, DynamoDBClientConfig['credentials']>, defaultTimeoutMs: number): { client: DynamoDBClient; owned: boolean; timeouts: AwsTimeouts } {
  const connection = awsConnection(WHERE, o, 'a DynamoDBClient', { requestTimeoutMs: defaultTimeoutMs });
  if ('client' in connection) return { client: connection.client, owned: false, timeouts: connection.timeouts };
  // maxAttempts 1 (in the settings): a failed call fails its round, and the next round (renewIntervalMs later) is the retry;
  // SDK retries underneath would stretch one round past the lease's deadline.
  return { client: new DynamoDBClient(connection.settings), owned: true, timeouts: connection.timeouts };
}
