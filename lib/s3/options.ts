/**
 * The options of s3Collector, s3Uploader and s3Sink, declared once (see `defineOptions`).
 * s3Sink takes the collector's and the uploader's: each group below is one specs object
 * spread into the declarations that take it. What concerns two options at once (a client
 * with region or forcePathStyle) is checked in code: the AWS ones by `awsConnection()`,
 * forcePathStyle by the uploader.
 */
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { awsConnectionOptions } from '../core/aws-options.js';
import { common, defineOptions, opt, type OptionSpecs } from '../core/options.js';
import { retryOption, type RetryOptions } from '../core/retry.js';

/** AWS credentials, as the SDK takes them (or a provider function). */
export type S3Credentials = S3ClientConfig['credentials'];

/** S3's smallest multipart part (the last part excepted). */
export const MIN_PART_BYTES = 5 * 1024 * 1024;

/** Where the object goes: set by a program, or by the s3://bucket/prefix URI itself. */
export const s3Target = {
  bucket: opt.string('The bucket; it must exist (a missing bucket fails the stream with `MANIFOLD_ERR_NOT_FOUND`).', { required: true, cli: false }),
  prefix: opt.custom<string, string>('Key prefix, used as a folder: `logs` and `logs/` both give `logs/<day>/<file>`.', {
    type: 'string',
    default: '',
    defaultText: 'none',
    check: (value, fail) => {
      if (typeof value !== 'string' || value.startsWith('/')) return fail('a key prefix without a leading "/"');
      return value === '' || value.endsWith('/') ? value : `${value}/`;
    },
  }),
} satisfies OptionSpecs;

const { requestTimeoutMs, connectTimeoutMs, ...client } = awsConnectionOptions({
  client: 'S3Client',
  credentials: 'S3Credentials',
  requestTimeoutMs: 30_000,
  requestTimeoutDoc:
    'How long an S3 request may stall before it is aborted and the upload retried: a socket idle timeout on the client the sink builds; every request, through a client you pass too, is also aborted after this plus 1 s per 64 KiB it carries.',
});

/** How the client is made: the AWS connection options, and S3's own. */
export const s3Connection = {
  ...client,
  endpoint: {
    ...client.endpoint,
    doc: 'Endpoint URL of an S3-compatible server (s3rver, MinIO, Ceph): the client built for it uses path-style URLs and sends checksums only where S3 requires them.',
  },
  // No constant default: it depends on endpoint, and a client excludes it only when it is given.
  forcePathStyle: opt.boolean('Path-style URLs (`http://host/bucket/key`), which S3-compatible servers need; with `client`, set it on that client.', {
    defaultText: 'true with `endpoint`, else false',
  }),
} satisfies OptionSpecs;

const bufferPath = opt.string('The local buffer folder, created with mode 0700; one live process per folder.');

/** What the collector does with messages. */
export const s3Collecting = {
  commitSizeBytes: opt.bytes('Commit the buffer file once it holds this many bytes (records are never split).', { default: 8 * 1024 * 1024 }),
  commitIntervalMs: opt.duration('Commit the buffer file this long after its first record, so an idle stream still commits.', { default: 60_000 }),
  delimiter: common.delimiter('Written after each message; a payload should not contain it (recovery cuts files at the last one).', '\n'),
  ackOn: opt.enum("When a message is acked: `'disk'` once fsynced in the buffer file, `'upload'` once the file holding it is in S3.", ['disk', 'upload'], { default: 'disk' }),
  syncIntervalMs: opt.duration('Group commit: fsync the buffer file at most this often and ack everything written before it; 0 fsyncs after every write.', {
    default: 100,
    min: 0,
  }),
  maxBufferBytes: opt.bytes('Disk quota of the whole buffer folder (committed and open files); at the quota writes wait, nothing is dropped.', {
    default: 1024 * 1024 * 1024,
  }),
} satisfies OptionSpecs;

const writerId = opt.custom<string>("Names this process's files and keys: up to 64 letters, digits, `_` or `-`.", {
  type: 'string',
  defaultText: '`<pid>-<8 random hex>`',
  check: (value, fail) => (typeof value === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(value) ? value : fail('up to 64 letters, digits, "_" or "-"')),
});

/** What the uploader does with committed files. */
export const s3Uploading = {
  uploadIntervalMs: opt.duration('Rescan the buffer folder this often for files left by an earlier run or a failed upload.', { default: 30_000 }),
  uploadConcurrency: opt.integer('Uploads at the same time.', { default: 4, min: 1, max: 64 }),
  compression: opt.enum("`'gzip'` compresses while uploading (the key gets `.gz`, content type `application/gzip`).", ['none', 'gzip'], { default: 'none' }),
  partSizeBytes: opt.bytes('Multipart part size, at least 5 MiB; each upload holds about two parts in memory at most.', { default: 8 * 1024 * 1024, min: MIN_PART_BYTES }),
  closeTimeoutMs: opt.duration('On `end()`, how long uploads may go on; what is left stays on disk for the next start.', { default: 30_000, min: 0 }),
  retry: retryOption('Retries of one upload (`retries`, `minTimeoutMs`, `maxTimeoutMs`, `factor`); when they run out the file waits for the next rescan.'),
  requestTimeoutMs,
  connectTimeoutMs,
} satisfies OptionSpecs;

export const s3CollectorOptions = defineOptions('s3Collector', {
  bufferPath: { ...bufferPath, required: true as const },
  ...s3Collecting,
  writerId,
  signal: common.signal('collector'),
  highWaterMark: common.highWaterMark(256),
});

export const s3UploaderOptions = defineOptions('s3Uploader', {
  ...s3Target,
  ...s3Connection,
  bufferPath: { ...bufferPath, required: true as const },
  ...s3Uploading,
  signal: common.signal('uploader'),
});

export const s3SinkOptions = defineOptions('s3Sink', {
  ...s3Target,
  ...s3Connection,
  bufferPath: { ...bufferPath, defaultText: '`<os temp dir>/manifold/s3/<bucket>`' },
  ...s3Collecting,
  ...s3Uploading,
  writerId,
  signal: common.signal('sink (and both its parts)'),
  highWaterMark: common.highWaterMark(256),
});

// <options S3TargetOptions>
/** Where objects go. Generated by `npm run options`. */
export interface S3TargetOptions {
  /** The bucket; it must exist (a missing bucket fails the stream with `MANIFOLD_ERR_NOT_FOUND`). Required. */
  bucket: string;
  /** Key prefix, used as a folder: `logs` and `logs/` both give `logs/<day>/<file>`. Default none. */
  prefix?: string;
}
// </options>

// <options S3ConnectionOptions>
/** How the S3 client is made. Generated by `npm run options`. */
export interface S3ConnectionOptions {
  /** A ready S3Client to use; region, endpoint, credentials and connectTimeoutMs then belong to it. */
  client?: S3Client;
  /** AWS region. Default: from the environment (AWS_REGION) or the shared config; "us-east-1" with a local endpoint on the command line. */
  region?: string;
  /** Endpoint URL of an S3-compatible server (s3rver, MinIO, Ceph): the client built for it uses path-style URLs and sends checksums only where S3 requires them. */
  endpoint?: string;
  /** AWS credentials ({ accessKeyId, secretAccessKey, sessionToken }) or a credential provider. Default: the SDK chain. */
  credentials?: S3Credentials;
  /** Path-style URLs (`http://host/bucket/key`), which S3-compatible servers need; with `client`, set it on that client. Default true with `endpoint`, else false. */
  forcePathStyle?: boolean;
}
// </options>

// <options S3CollectingOptions>
/** How messages become local files. Generated by `npm run options`. */
export interface S3CollectingOptions {
  /** Commit the buffer file once it holds this many bytes (records are never split). Default 8 MiB. */
  commitSizeBytes?: number;
  /** Commit the buffer file this long after its first record, so an idle stream still commits. Default 60,000 ms. */
  commitIntervalMs?: number;
  /** Written after each message; a payload should not contain it (recovery cuts files at the last one). Default "\n". */
  delimiter?: string | Buffer;
  /** When a message is acked: `'disk'` once fsynced in the buffer file, `'upload'` once the file holding it is in S3. Default 'disk'. */
  ackOn?: 'disk' | 'upload';
  /** Group commit: fsync the buffer file at most this often and ack everything written before it; 0 fsyncs after every write. Default 100 ms. */
  syncIntervalMs?: number;
  /** Disk quota of the whole buffer folder (committed and open files); at the quota writes wait, nothing is dropped. Default 1 GiB. */
  maxBufferBytes?: number;
}
// </options>

// <options S3UploadingOptions>
/** How local files are uploaded. Generated by `npm run options`. */
export interface S3UploadingOptions {
  /** Rescan the buffer folder this often for files left by an earlier run or a failed upload. Default 30,000 ms. */
  uploadIntervalMs?: number;
  /** Uploads at the same time. Default 4. */
  uploadConcurrency?: number;
  /** `'gzip'` compresses while uploading (the key gets `.gz`, content type `application/gzip`). Default 'none'. */
  compression?: 'none' | 'gzip';
  /** Multipart part size, at least 5 MiB; each upload holds about two parts in memory at most. Default 8 MiB. */
  partSizeBytes?: number;
  /** On `end()`, how long uploads may go on; what is left stays on disk for the next start. Default 30,000 ms. */
  closeTimeoutMs?: number;
  /** Retries of one upload (`retries`, `minTimeoutMs`, `maxTimeoutMs`, `factor`); when they run out the file waits for the next rescan. Default 10 retries, 200 ms to 30 s apart (the `manifold` command: for ever). */
  retry?: RetryOptions | false;
  /** How long an S3 request may stall before it is aborted and the upload retried: a socket idle timeout on the client the sink builds; every request, through a client you pass too, is also aborted after this plus 1 s per 64 KiB it carries. Default 30,000 ms. */
  requestTimeoutMs?: number;
  /** Longest opening a connection may take, for the client the connector builds. Default 5,000 ms. */
  connectTimeoutMs?: number;
}
// </options>

// <options S3CollectorOptions>
/** Options of {@link s3Collector}. Generated from its declaration by `npm run options`. */
export interface S3CollectorOptions extends S3CollectingOptions {
  /** The local buffer folder, created with mode 0700; one live process per folder. Required. */
  bufferPath: string;
  /** Names this process's files and keys: up to 64 letters, digits, `_` or `-`. Default `<pid>-<8 random hex>`. */
  writerId?: string;
  /** Destroys the collector when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark, in messages. Default 256. */
  highWaterMark?: number;
}
// </options>

// <options S3UploaderOptions>
/** Options of {@link s3Uploader}. Generated from its declaration by `npm run options`. */
export interface S3UploaderOptions extends S3TargetOptions, S3ConnectionOptions, S3UploadingOptions {
  /** The local buffer folder, created with mode 0700; one live process per folder. Required. */
  bufferPath: string;
  /** Destroys the uploader when aborted. */
  signal?: AbortSignal;
}
// </options>

// <options S3SinkOptions>
/** Options of {@link s3Sink}. Generated from its declaration by `npm run options`. */
export interface S3SinkOptions extends S3TargetOptions, S3ConnectionOptions, S3CollectingOptions, S3UploadingOptions {
  /** The local buffer folder, created with mode 0700; one live process per folder. Default `<os temp dir>/manifold/s3/<bucket>`. */
  bufferPath?: string;
  /** Names this process's files and keys: up to 64 letters, digits, `_` or `-`. Default `<pid>-<8 random hex>`. */
  writerId?: string;
  /** Destroys the sink (and both its parts) when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark, in messages. Default 256. */
  highWaterMark?: number;
}
// </options>
