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

/** Whether `data` starts with the KPL magic bytes and is long enough to be an aggregate. */
export function isAggregated(data: Uint8Array): boolean {
  return (
    data.length >= KPL_MAGIC.length + MD5_BYTES &&
    data[0] === KPL_MAGIC[0] &&
    data[1] === KPL_MAGIC[1] &&
    data[2] === KPL_MAGIC[2] &&
    data[3] === KPL_MAGIC[3]
  );
}

/**
 * The user records of a KPL aggregated record, in order, or `undefined` when
 * `data` is not one: no magic bytes, an MD5 that does not match, or a protobuf
 * that does not parse. Like the KCL, a record that only looks aggregated is
 * delivered as it is rather than failing the stream.
 */
export function deaggregate(data: Buffer): UserRecord[] | undefined {
  if (!isAggregated(data)) return undefined;
  const start = KPL_MAGIC.length;
  const end = data.length - MD5_BYTES;
  const digest = createHash('md5').update(data.subarray(start, end)).digest();
  if (!digest.equals(data.subarray(end))) return undefined;
  try {
    return decode(data, start, end);
  } catch {
    return undefined;
  }
}

function decode(buf: Buffer, start: number, end: number): UserRecord[] {
  const keys: string[] = [];
  const hashKeys: string[] = [];
  const raw: Array<{ keyIndex: number; hashIndex: number | undefined; data: Buffer }> = [];
  const reader = new Reader(buf, start, end);
  while (reader.pos < end) {
    const tag = reader.varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 1 && wire === 2) keys.push(reader.bytes().toString('utf8'));
    else if (field === 2 && wire === 2) hashKeys.push(reader.bytes().toString('utf8'));
    else if (field === 3 && wire === 2) {
      const body = reader.bytes();
      raw.push(decodeRecord(body));
    } else reader.skip(wire);
  }
  return raw.map((r) => {
    const partitionKey = keys[r.keyIndex];
    if (partitionKey === undefined) throw new Error(`partition key index ${r.keyIndex} out of range`);
    if (r.hashIndex !== undefined && hashKeys[r.hashIndex] === undefined) throw new Error(`explicit hash key index ${r.hashIndex} out of range`);
    return { data: r.data, partitionKey, explicitHashKey: r.hashIndex === undefined ? undefined : hashKeys[r.hashIndex] };
  });
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
