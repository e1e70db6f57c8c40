/**
 * De-aggregation of records written by the Kinesis Producer Library (KPL)
 * with aggregation on. Such a record's data is the 4 magic bytes F3 89 9A C2,
 * a protobuf `AggregatedRecord`, and the 16-byte MD5 of that protobuf:
 *
 * ```proto
 * message AggregatedRecord {
 *   repeated string partition_key_table = 1;
 *   repeated string explicit_hash_key_table = 2;
 *   repeated Record records = 3;
 * }
 * message Record {
 *   required uint64 partition_key_index = 1;
 *   optional uint64 explicit_hash_key_index = 2;
 *   required bytes data = 3;
 *   repeated Tag tags = 4;
 * }
 * ```
 *
 * The decoder reads only the wire types this message uses; it is small
 * enough not to justify a protobuf dependency.
 *
 * An aggregate of at most 1 MiB can hold some 100,000 tiny user records, so the
 * source does not materialise them: {@link openAggregate} checks the whole
 * record first (digest, structure, key indexes) without allocating per user
 * record, then hands out a cursor that decodes one user record at a time, as
 * the source has room for it.
 */
import { createHash } from 'node:crypto';

/** The first bytes of every KPL aggregated record. */
export const KPL_MAGIC = Buffer.from([0xf3, 0x89, 0x9a, 0xc2]);
const MD5_BYTES = 16;

/** One user record inside an aggregated record. */
export interface UserRecord {
  data: Buffer;
  partitionKey: string;
  explicitHashKey: string | undefined;
}

class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  varint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.end) throw new Error('truncated varint');
      const byte = this.buf[this.pos++]!;
      // Indexes and lengths fit in 53 bits; multiplication keeps precision past 32 bits where shifts would not.
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7;
      if (shift > 63) throw new Error('varint too long');
    }
  }

  bytes(): Buffer {
    const length = this.varint();
    if (this.pos + length > this.end) throw new Error('truncated length-delimited field');
    const out = this.buf.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        return;
      case 1:
        this.pos += 8;
        break;
      case 2:
        this.bytes();
        return;
      case 5:
        this.pos += 4;
        break;
      default:
        throw new Error(`unsupported wire type ${wireType}`);
    }
    if (this.pos > this.end) throw new Error('truncated fixed field');
  }
}

/** Whether `data` starts with the KPL magic bytes (it claims to be an aggregate). */
export function hasMagic(data: Uint8Array): boolean {
  return data.length >= KPL_MAGIC.length && data[0] === KPL_MAGIC[0] && data[1] === KPL_MAGIC[1] && data[2] === KPL_MAGIC[2] && data[3] === KPL_MAGIC[3];
}

/** Whether `data` starts with the KPL magic bytes and is long enough to be an aggregate. */
export function isAggregated(data: Uint8Array): boolean {
  return data.length >= KPL_MAGIC.length + MD5_BYTES && hasMagic(data);
}

/** Why a record that starts with the KPL magic bytes is not a valid aggregate. */
export type MalformedFault = 'truncated' | 'digest' | 'protobuf';

/** A record with the KPL magic bytes that does not decode: what is wrong with it. */
export interface MalformedAggregate {
  malformed: true;
  fault: MalformedFault;
  /** A sentence for logs and dead-letter records. */
  reason: string;
}

/**
 * The user records of one valid aggregate, decoded one at a time. `count` is
 * known up front (the whole record was checked when it was opened), so the
 * source can tell the last user record (whose checkpoint completes the
 * aggregate) and skip those already processed.
 */
export class AggregateCursor {
  readonly malformed = false;
  /** User records in the aggregate. */
  readonly count: number;
  /** Index of the user record `next()` returns. */
  index = 0;
  readonly #buf: Buffer;
  readonly #end: number;
  /** Start and end of each partition key (and explicit hash key) in `#buf`, two entries per key. */
  readonly #keys: number[];
  readonly #hashKeys: number[];
  readonly #keyText: Array<string | undefined>;
  #pos: number;

  /** @internal Built by {@link openAggregate} once the record checked out. */
  constructor(buf: Buffer, start: number, end: number, count: number, keys: number[], hashKeys: number[]) {
    this.#buf = buf;
    this.#pos = start;
    this.#end = end;
    this.count = count;
    this.#keys = keys;
    this.#hashKeys = hashKeys;
    this.#keyText = new Array<string | undefined>(keys.length / 2);
  }

  /** Whether every user record was handed out. */
  get done(): boolean {
    return this.index >= this.count;
  }

  /**
   * The next user record, or undefined after the last. Its `data` is a view
   * into the aggregate: copy it to let the aggregate go.
   */
  next(): UserRecord | undefined {
    const body = this.#nextBody();
    if (body === undefined) return undefined;
    const r = decodeRecord(body);
    this.index += 1;
    return { data: r.data, partitionKey: this.#key(r.keyIndex), explicitHashKey: r.hashIndex === undefined ? undefined : this.#hashKey(r.hashIndex) };
  }

  /** Skips up to `n` user records without decoding them. */
  skip(n: number): void {
    for (let i = 0; i < n && this.#nextBody() !== undefined; i++) this.index += 1;
  }

  /** The body of the next `records` field, or undefined at the end; the record was checked, so this cannot throw. */
  #nextBody(): Buffer | undefined {
    if (this.index >= this.count) return undefined;
    const reader = new Reader(this.#buf, this.#pos, this.#end);
    while (reader.pos < this.#end) {
      const tag = reader.varint();
      if (tag === RECORD_TAG) {
        const body = reader.bytes();
        this.#pos = reader.pos;
        return body;
      }
      reader.skip(tag & 7);
    }
    /* c8 ignore next 2 -- count was taken from the same bytes: the loop always finds the record */
    this.#pos = this.#end;
    return undefined;
  }

  #key(index: number): string {
    let text = this.#keyText[index];
    if (text === undefined) {
      text = this.#buf.toString('utf8', this.#keys[index * 2], this.#keys[index * 2 + 1]);
      this.#keyText[index] = text;
    }
    return text;
  }

  #hashKey(index: number): string {
    return this.#buf.toString('utf8', this.#hashKeys[index * 2], this.#hashKeys[index * 2 + 1]);
  }
}

const RECORD_TAG = (3 << 3) | 2;

/**
 * Opens a record: `undefined` when it is not a KPL aggregate (no magic bytes: an
 * ordinary record), a {@link MalformedAggregate} when it has the magic bytes
 * but is too short, its MD5 does not match, or its protobuf does not parse
 * (or names a partition key that is not in its table), else a cursor over
 * its user records. The whole record is checked before the first user
 * record is handed out, so a bad aggregate is never half delivered.
 */
export function openAggregate(data: Buffer): AggregateCursor | MalformedAggregate | undefined {
  if (!hasMagic(data)) return undefined;
  if (data.length < KPL_MAGIC.length + MD5_BYTES) {
    return { malformed: true, fault: 'truncated', reason: `a KPL aggregate of ${data.length} bytes: it needs at least ${KPL_MAGIC.length + MD5_BYTES} (magic and MD5)` };
  }
  const start = KPL_MAGIC.length;
  const end = data.length - MD5_BYTES;
  const digest = createHash('md5').update(data.subarray(start, end)).digest();
  if (!digest.equals(data.subarray(end))) return { malformed: true, fault: 'digest', reason: 'the MD5 digest of the KPL aggregate does not match its contents' };
  try {
    return check(data, start, end);
  } catch (error) {
    return { malformed: true, fault: 'protobuf', reason: `the KPL aggregate does not decode: ${(error as Error).message}` };
  }
}

/** Walks the whole aggregate once, allocating nothing per user record; throws what is wrong with it. */
function check(buf: Buffer, start: number, end: number): AggregateCursor {
  const keys: number[] = [];
  const hashKeys: number[] = [];
  let count = 0;
  let maxKey = -1;
  let maxHash = -1;
  const reader = new Reader(buf, start, end);
  while (reader.pos < end) {
    const tag = reader.varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if ((field === 1 || field === 2) && wire === 2) {
      const length = reader.varint();
      if (reader.pos + length > end) throw new Error('truncated length-delimited field');
      (field === 1 ? keys : hashKeys).push(reader.pos, reader.pos + length);
      reader.pos += length;
    } else if (field === 3 && wire === 2) {
      const length = reader.varint();
      if (reader.pos + length > end) throw new Error('truncated length-delimited field');
      const r = checkRecord(buf, reader.pos, reader.pos + length);
      if (r.keyIndex > maxKey) maxKey = r.keyIndex;
      if (r.hashIndex > maxHash) maxHash = r.hashIndex;
      reader.pos += length;
      count += 1;
    } else reader.skip(wire);
  }
  if (maxKey >= keys.length / 2) throw new Error(`partition key index ${maxKey} out of range`);
  if (maxHash >= hashKeys.length / 2) throw new Error(`explicit hash key index ${maxHash} out of range`);
  return new AggregateCursor(buf, start, end, count, keys, hashKeys);
}

function checkRecord(buf: Buffer, start: number, end: number): { keyIndex: number; hashIndex: number } {
  const reader = new Reader(buf, start, end);
  let keyIndex = -1;
  let hashIndex = -1;
  let data = false;
  while (reader.pos < end) {
    const tag = reader.varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 1 && wire === 0) keyIndex = reader.varint();
    else if (field === 2 && wire === 0) hashIndex = reader.varint();
    else if (field === 3 && wire === 2) {
      reader.bytes();
      data = true;
    } else reader.skip(wire);
  }
  if (keyIndex < 0 || !data) throw new Error('record without partition key index or data');
  return { keyIndex, hashIndex };
}

/**
 * The user records of a KPL aggregated record, in order, or `undefined` when
 * `data` is not a valid one: no magic bytes, an MD5 that does not match, or a
 * protobuf that does not parse. Materialises every user record: the source
 * uses {@link openAggregate} instead.
 */
export function deaggregate(data: Buffer): UserRecord[] | undefined {
  const cursor = openAggregate(data);
  if (cursor === undefined || cursor.malformed) return undefined;
  const out: UserRecord[] = [];
  for (let r = cursor.next(); r !== undefined; r = cursor.next()) out.push(r);
  return out;
}

function decodeRecord(body: Buffer): { keyIndex: number; hashIndex: number | undefined; data: Buffer } {
  const reader = new Reader(body, 0, body.length);
  let keyIndex: number | undefined;
  let hashIndex: number | undefined;
  let data: Buffer | undefined;
  while (reader.pos < body.length) {
    const tag = reader.varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 1 && wire === 0) keyIndex = reader.varint();
    else if (field === 2 && wire === 0) hashIndex = reader.varint();
    else if (field === 3 && wire === 2) data = reader.bytes();
    else reader.skip(wire); // tags (field 4) carry nothing a Message has a place for
  }
  if (keyIndex === undefined || data === undefined) throw new Error('record without partition key index or data');
  return { keyIndex, hashIndex, data };
}
