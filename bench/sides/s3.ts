/**
 * The sides of bench/s3.ts's end-to-end case, each run in its own process (bench/lib.ts
 * runSide): `count` messages of 100 B, newline-delimited, into `bucket` on s3rver (`endpoint`)
 * through a buffer folder `dir`, timed from the first write to the last object uploaded and its
 * file deleted. The same fsync policy on both sides: group commit, an fsync of the open file at most
 * every 100 ms while data arrives and before a file is closed, a message counted as acked once an
 * fsync covered it; files of 8 MiB; at most 4 uploads at once.
 *
 * - ours: pipeline(Readable.from(a generator making a Message per message), s3Sink({ bucket,
 *   endpoint, bufferPath: dir })) with its defaults (ackOn 'disk', syncIntervalMs 100,
 *   commitSizeBytes 8 MiB, uploadConcurrency 4, multipart parts of 8 MiB read from disk).
 * - handwritten: what a careful user writes with @aws-sdk/lib-storage as a pipeline's last step, fed
 *   the same stream of Messages as ours (Readable.from the same generator): a Writable (writev, the same
 *   high-water mark of 256 as s3Sink) gathering messages into 64 KiB writev() calls on a FileHandle,
 *   fsync when 100 ms passed since the last one (and at rotation), each message acked once an fsync
 *   covered it, rotation at 8 MiB, each closed file uploaded with Upload({ Body: createReadStream,
 *   partSize 8 MiB }) with at most 4 uploads in flight, then deleted.
 * - partitions20 / partition1: s3Sink as `ours` with keyTemplate 'region={json.region}' (the payload parsed
 *   as JSON for every message on both), the 100 B JSON payloads naming 20 regions in turn, or one region:
 *   what partitioning costs end to end (one buffer file per partition, 20 times as many, smaller objects).
 */
import { createMessage, type Message } from '../../lib/core/message.js';
import { measure, sideMain, type Measured, type SideArgs } from '../lib.js';

interface S3Args extends SideArgs {
  endpoint: string;
  bucket: string;
  dir: string;
  count: number;
}

const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
const FILE_BYTES = 8 * 1024 * 1024;
const SYNC_MS = 100;
const WRITE_BYTES = 64 * 1024;
const UPLOADS = 4;

const payload = (): Buffer => Buffer.alloc(100, 'p');

async function ours({ endpoint, bucket, dir, count }: S3Args): Promise<Measured> {
  const { Readable } = await import('node:stream');
  const { pipeline } = await import('node:stream/promises');
  const { s3Sink } = await import('../../lib/s3/sink.js');
  const data = payload();
  let acked = 0;
  const onAck = (): void => {
    acked += 1;
  };
  // Messages made as they are read, as a source makes them.
  const messages = function* (): Generator<Message> {
    for (let i = 0; i < count; i++) yield createMessage({ data, onAck });
  };
  return measure(count, async () => {
    await pipeline(Readable.from(messages()), s3Sink({ bucket, endpoint, region: 'us-east-1', credentials, bufferPath: dir, closeTimeoutMs: 300_000 }));
    if (acked !== count) throw new Error(`only ${acked} of ${count} acked`);
  });
}

/** 100 B of JSON naming region r<k>. */
function regionPayload(k: number): Buffer {
  const head = `{"region":"r${String(k).padStart(2, '0')}","pad":"`;
  return Buffer.from(`${head}${'p'.repeat(100 - head.length - 2)}"}`);
}

async function partitioned({ endpoint, bucket, dir, count }: S3Args, partitions: number): Promise<Measured> {
  const { Readable } = await import('node:stream');
  const { pipeline } = await import('node:stream/promises');
  const { s3Sink } = await import('../../lib/s3/sink.js');
  const data = Array.from({ length: partitions }, (_, k) => regionPayload(k));
  let acked = 0;
  const onAck = (): void => {
    acked += 1;
  };
  const messages = function* (): Generator<Message> {
    for (let i = 0; i < count; i++) yield createMessage({ data: data[i % partitions]!, onAck });
  };
  return measure(count, async () => {
    await pipeline(
      Readable.from(messages()),
      s3Sink({ bucket, endpoint, region: 'us-east-1', credentials, bufferPath: dir, closeTimeoutMs: 300_000, keyTemplate: 'region={json.region}' }),
    );
    if (acked !== count) throw new Error(`only ${acked} of ${count} acked`);
  });
}

async function handwritten({ endpoint, bucket, dir, count }: S3Args): Promise<Measured> {
  const { Readable, Writable } = await import('node:stream');
  const { pipeline } = await import('node:stream/promises');
  const { open, unlink } = await import('node:fs/promises');
  const { createReadStream } = await import('node:fs');
  const { join } = await import('node:path');
  const { S3Client } = await import('@aws-sdk/client-s3');
  const { Upload } = await import('@aws-sdk/lib-storage');
  type FileHandle = Awaited<ReturnType<typeof open>>;
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    credentials,
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const data = payload();
  const nl = Buffer.from('\n');
  let acked = 0;
  const onAck = (): void => {
    acked += 1;
  };
  // The same input as ours: Messages made as they are read, as a source makes them.
  const messages = function* (): Generator<Message> {
    for (let i = 0; i < count; i++) yield createMessage({ data, onAck });
  };
  /** What a careful user writes as a pipeline's last step: a Writable taking batches (writev). */
  class Uploader extends Writable {
    #file: FileHandle | undefined;
    #fileNo = 0;
    #path = '';
    #fileBytes = 0;
    #parts: Buffer[] = [];
    #partBytes = 0;
    #unsynced: Message[] = [];
    #lastSync = Date.now();
    readonly #uploads = new Set<Promise<void>>();

    constructor() {
      super({ objectMode: true, highWaterMark: 256 });
    }

    override _writev(chunks: Array<{ chunk: Message }>, callback: (error?: Error | null) => void): void {
      this.#take(chunks).then(() => callback(), callback);
    }

    override _final(callback: (error?: Error | null) => void): void {
      this.#finish().then(() => callback(), callback);
    }

    async #take(chunks: Array<{ chunk: Message }>): Promise<void> {
      for (const { chunk } of chunks) {
        const size = chunk.data.length + 1;
        if (this.#file && this.#fileBytes + size > FILE_BYTES) await this.#rotate();
        if (!this.#file) await this.#open();
        this.#parts.push(chunk.data, nl);
        this.#partBytes += size;
        this.#fileBytes += size;
        this.#unsynced.push(chunk);
        if (this.#partBytes >= WRITE_BYTES) await this.#flush();
      }
    }

    async #open(): Promise<void> {
      this.#path = join(dir, `part-${this.#fileNo}`);
      this.#file = await open(this.#path, 'w');
      this.#fileBytes = 0;
    }

    async #sync(): Promise<void> {
      await this.#file!.sync();
      const synced = this.#unsynced;
      this.#unsynced = [];
      for (const message of synced) message.ack();
      this.#lastSync = Date.now();
    }

    async #flush(): Promise<void> {
      if (this.#parts.length === 0) return;
      const chunk = this.#parts;
      this.#parts = [];
      this.#partBytes = 0;
      await this.#file!.writev(chunk);
      if (Date.now() - this.#lastSync >= SYNC_MS) await this.#sync();
    }

    async #rotate(): Promise<void> {
      await this.#flush();
      await this.#sync();
      await this.#file!.close();
      this.#file = undefined;
      while (this.#uploads.size >= UPLOADS) await Promise.race(this.#uploads);
      this.#upload(this.#path, `handwritten/part-${this.#fileNo}`);
      this.#fileNo += 1;
    }

    #upload(from: string, key: string): void {
      const done = new Upload({ client, params: { Bucket: bucket, Key: key, Body: createReadStream(from) }, partSize: FILE_BYTES, queueSize: 1 })
        .done()
        .then(() => unlink(from))
        .finally(() => this.#uploads.delete(done));
      this.#uploads.add(done);
    }

    async #finish(): Promise<void> {
      if (this.#file) {
        await this.#flush();
        await this.#sync();
        await this.#file.close();
        this.#upload(this.#path, `handwritten/part-${this.#fileNo}`);
      }
      await Promise.all(this.#uploads);
    }
  }
  return measure(count, async () => {
    await pipeline(Readable.from(messages()), new Uploader());
    if (acked !== count) throw new Error(`only ${acked} of ${count} acked`);
  });
}

sideMain({
  ours: (a) => ours(a as S3Args),
  handwritten: (a) => handwritten(a as S3Args),
  partitions20: (a) => partitioned(a as S3Args, 20),
  partition1: (a) => partitioned(a as S3Args, 1),
});
