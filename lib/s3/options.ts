/**
 * The options of s3Collector, s3Uploader and s3Sink, declared once (see `defineOptions`).
 * s3Sink takes the collector's and the uploader's: each group below is one specs object
 * spread into the declarations that take it. What concerns two options at once (a client
 * with region or forcePathStyle) is checked in code: the AWS ones by `awsConnection()`,
 * forcePathStyle by the uploader.
 */
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { awsConnectionOptions } from '../core/aws-options.js';
import { ErrorCodes, ManifoldError } from '../core/errors.js';
import { common, defineOptions, invalidOption, opt, type OptionSpecs } from '../core/options.js';
import { retryOption, type RetryOptions } from '../core/retry.js';
import { onDelimiterOption } from '../core/delimiter.js';
import type { TlsOptions } from '../core/tls.js';
import type { Checkpointer } from '../kinesis/checkpoint.js';
import { KeyTemplate, checkTimeZone } from './key-template.js';

/** AWS credentials, as the SDK takes them (or a provider function). */
export type S3Credentials = S3ClientConfig['credentials'];

/** S3's smallest multipart part (the last part excepted). */
export const MIN_PART_BYTES = 5 * 1024 * 1024;

/** The longest prefix: an S3 key is at most 1,024 bytes, and the file's path under it takes up to 95. */
export const MAX_PREFIX_BYTES = 900;

// C0 controls (NUL, newline, ESC ...), DEL and C1 controls.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * What is wrong with a key prefix, as the end of "must be ...", or undefined when it is fine.
 * Keys cannot escape: a `.` or `..` segment is resolved by servers that take the key as a path
 * (a path-style endpoint then writes into another bucket), NUL and control characters make
 * requests that fail for ever or that a log shows as something else, `\` is a separator to some
 * servers, and an empty segment (`a//b`) is a folder nobody meant.
 */
export function prefixProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return 'a key prefix (text)';
  if (value === '') return undefined;
  if (value.startsWith('/')) return 'a key prefix without a leading "/"';
  if (CONTROL.test(value)) return 'a key prefix without NUL or other control characters';
  if (Buffer.from(value).toString() !== value) return 'a key prefix of valid Unicode text (no lone surrogate)';
  if (value.includes('\\')) return 'a key prefix without "\\" (a path separator to some servers)';
  const segments = value.replace(/\/$/, '').split('/');
  if (segments.some((segment) => segment === '.' || segment === '..')) return 'a key prefix without "." or ".." segments (they would leave the bucket or the prefix)';
  if (segments.some((segment) => segment === '')) return 'a key prefix without empty segments ("//")';
  if (Buffer.byteLength(value) > MAX_PREFIX_BYTES) return `a key prefix of at most ${MAX_PREFIX_BYTES} bytes (an S3 key is at most 1,024)`;
  return undefined;
}

/**
 * What is wrong with a bucket name, or undefined: a name of letters, digits, `.`, `_` and `-` (S3's
 * rules and the legacy ones), or an access point ARN. Nothing that a URL or a path would resolve.
 */
export function bucketProblem(value: string): string | undefined {
  if (/^arn:[A-Za-z0-9-]+:s3[A-Za-z0-9-]*:[A-Za-z0-9-]*:\d*:[A-Za-z0-9._:/-]+$/.test(value) && !value.split(/[/:]/).some((s) => s === '.' || s === '..')) return undefined;
  if (/^[A-Za-z0-9._-]{1,255}$/.test(value) && !/^\.+$/.test(value)) return undefined;
  return 'a bucket name (letters, digits, ".", "_" and "-") or an access point ARN';
}

/**
 * A refused key or name as a message shows it: quoted, shortened, and with every control character
 * escaped (JSON escapes C0 ones; DEL and C1 ones too here, which a terminal may act on).
 */
export function quoted(value: string): string {
  const short = value.length > 60 ? `${value.slice(0, 57)}...` : value;
  return JSON.stringify(short).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Throws INVALID_OPTION for options.<name>, showing the value with its control characters escaped. */
function refuseKeyOption(where: string, name: string, expected: string, value: unknown): never {
  if (typeof value !== 'string') invalidOption(where, name, expected, value);
  throw new ManifoldError(`${where}: options.${name} must be ${expected}, got ${quoted(value)}`, { code: ErrorCodes.INVALID_OPTION, details: { option: name } });
}

/** Throws INVALID_OPTION naming options.bucket when it is not a bucket name. */
export function checkBucket(where: string, bucket: string): void {
  const problem = bucketProblem(bucket);
  if (problem !== undefined) refuseKeyOption(where, 'bucket', problem, bucket);
}

/** Where the object goes: set by a program, or by the s3://bucket/prefix URI itself. */
export const s3Target = {
  bucket: opt.string('The bucket; it must exist (a missing bucket fails the stream with `MANIFOLD_ERR_NOT_FOUND`).', { required: true, cli: false }),
  prefix: opt.custom<string, string>(
    'Key prefix, used as a folder: `logs` and `logs/` both give `logs/<day>/<file>`. No `.` or `..` segment, empty segment, leading `/`, `\\` or control character, at most 900 bytes.',
    {
      type: 'string',
      default: '',
      defaultText: 'none',
      check: (value, _fail, where) => {
        const problem = prefixProblem(value);
        if (problem !== undefined) refuseKeyOption(where, 'prefix', problem, value);
        const prefix = value as string;
        return prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
      },
    },
  ),
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

const bufferPath = opt.string(
  'The local buffer folder, created with mode 0700; one live process per folder. A folder that another user owns or that group or others may write to is refused (see `allowSharedBufferPath`).',
);

const allowSharedBufferPath = opt.boolean(
  'Accept a `bufferPath` that another user owns or that group or others may write to (a shared spool folder): whoever can write there can have files uploaded.',
  { default: false },
);

/** A flat mapping of text to text (object tags, metadata); text form `k:v,k2:v2`. */
function stringMap(doc: string, cli: string, most: number) {
  return opt.custom<Record<string, string>>(doc, {
    type: 'Record<string, string>',
    cli,
    schema: { type: 'object', additionalProperties: { type: 'string' } },
    parse: (text) => Object.fromEntries(text.split(',').filter(Boolean).map((pair) => [pair.slice(0, pair.indexOf(':') < 0 ? pair.length : pair.indexOf(':')), pair.includes(':') ? pair.slice(pair.indexOf(':') + 1) : ''])),
    check: (value, fail) => {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return fail(`a mapping of names to text values (at most ${most})`);
      const entries = Object.entries(value as Record<string, unknown>);
      if (entries.length === 0 || entries.length > most) return fail(`a mapping of 1 to ${most} names to text values`);
      for (const [name, text] of entries) {
        if (!/^[A-Za-z0-9 +\-=._:/@]{1,128}$/.test(name) || typeof text !== 'string' || text.length > 256 || /[\u0000-\u001f\u007f]/.test(text)) {
          return fail(`names of 1 to 128 letters, digits, spaces and + - = . _ : / @, each with text of at most 256 characters (${JSON.stringify(name)} is not)`);
        }
      }
      return { ...(value as Record<string, string>) };
    },
  });
}

/** What the collector does with messages. */
export const s3Collecting = {
  commitSizeBytes: opt.bytes('Commit the buffer file once it holds this many bytes (records are never split).', { default: 8 * 1024 * 1024 }),
  commitIntervalMs: opt.duration('Commit the buffer file this long after its first record, so an idle stream still commits.', { default: 60_000 }),
  delimiter: common.delimiter('Written after each message; a message containing it is refused or escaped (`onDelimiter`).', '\n'),
  onDelimiter: onDelimiterOption(),
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

/** How objects are laid out by partition (keyTemplate); on the collector, which writes one buffer file per partition. */
export const s3Partitioning = {
  keyTemplate: opt.custom<string>(
    'Partition path of each record, between the prefix and the file name: `{yyyy}/{MM}/{dd}/{HH}`, Hive style `dt={yyyy}-{MM}-{dd}/hour={HH}`, or by field: `{key}`, `{header.<name>}`, `{json.<field>.<field>}`. Values are made safe (letters, digits, `-`, `_`, `.`, `=`; others become `_`); a missing field or a payload that is not JSON gives `_unknown`, an empty value `_empty`. Default: the `YYYY-MM-DD` of the commit (UTC). See docs/s3.md.',
    {
      type: 'string',
      cli: 'keyTemplate',
      defaultText: 'none (`YYYY-MM-DD/` of the commit)',
      check: (value, fail, where) => {
        if (typeof value !== 'string') return fail('a string such as "dt={yyyy}-{MM}-{dd}/hour={HH}"');
        // Throws INVALID_OPTION naming keyTemplate for an unknown token, unbalanced braces or a literal that would make a bad key.
        new KeyTemplate(where, value, 'UTC');
        return value;
      },
    },
  ),
  timeZone: opt.custom<string, string>('With `keyTemplate`: the time zone of its time tokens, an IANA name (`Europe/Paris`) or `UTC`.', {
    type: 'string',
    cli: 'timeZone',
    default: 'UTC',
    defaultText: "'UTC'",
    check: (value, fail, where) => {
      if (typeof value !== 'string' || value.length === 0) return fail('an IANA time zone name such as "UTC" or "Europe/Paris"');
      checkTimeZone(where, value);
      return value;
    },
  }),
  maxOpenPartitions: opt.integer('With `keyTemplate`: most partitions with an open buffer file; writing to one more commits the least recently written one.', {
    default: 64,
    min: 1,
    max: 4096,
  }),
} satisfies OptionSpecs;

/** What the uploader does with committed files. */
export const s3Uploading = {
  uploadIntervalMs: opt.duration('Rescan the buffer folder this often for files left by an earlier run or a failed upload.', { default: 30_000 }),
  uploadConcurrency: opt.integer('Uploads at the same time.', { default: 4, min: 1, max: 64 }),
  compression: opt.enum(
    "`'gzip'` or `'zstd'` compresses while uploading (the key gets `.gz` or `.zst`, content type `application/gzip` or `application/zstd`); `'none'` stores the lines as they are (`application/octet-stream`).",
    ['none', 'gzip', 'zstd'],
    { default: 'none' },
  ),
  storageClass: opt.enum('Storage class of every object; default the bucket\'s (STANDARD).', ['STANDARD', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER', 'GLACIER_IR', 'DEEP_ARCHIVE', 'REDUCED_REDUNDANCY', 'EXPRESS_ONEZONE'], {
    defaultText: "the bucket's",
  }),
  serverSideEncryption: opt.enum("Server-side encryption of every object: `'AES256'` (S3-managed keys) or `'aws:kms'` (with `sseKmsKeyId`, else the account's default KMS key); default the bucket's.", ['AES256', 'aws:kms', 'aws:kms:dsse'], {
    defaultText: "the bucket's",
  }),
  sseKmsKeyId: opt.string("The KMS key (id, ARN or alias) of `serverSideEncryption: 'aws:kms'`."),
  tags: stringMap('Object tags of every object: `{ team: "data" }`; on the command line `tags=team:data,env:prod`.', 'tags', 10),
  metadata: stringMap('User metadata of every object (`x-amz-meta-*`): `{ source: "orders" }`; on the command line `metadata=source:orders`.', 'metadata', 50),
  partSizeBytes: opt.bytes('Multipart part size, at least 5 MiB; each upload holds about two parts in memory at most.', { default: 8 * 1024 * 1024, min: MIN_PART_BYTES }),
  closeTimeoutMs: opt.duration('On `end()`, how long uploads may go on; what is left stays on disk for the next start.', { default: 30_000, min: 0 }),
  verify: opt.enum(
    "Start-up check: `'bucket'` sends HeadBucket, so a missing bucket (`MANIFOLD_ERR_NOT_FOUND`) or refused credentials (`MANIFOLD_ERR_AUTH`) fail the stream at once rather than at the first upload; `'write'` also writes and deletes a small object `<prefix>_manifold-verify-<pid>-<hex>` (the write permission, encryption and storage class settings); `'none'` checks nothing. S3 unreachable at start is a `'warning'`, not a failure: messages go on to disk.",
    ['bucket', 'write', 'none'],
    { default: 'bucket' },
  ),
  retry: retryOption('Retries of one upload (`retries`, `minTimeoutMs`, `maxTimeoutMs`, `factor`); when they run out the file waits for the next rescan.'),
  requestTimeoutMs,
  connectTimeoutMs,
} satisfies OptionSpecs;

export const s3CollectorOptions = defineOptions('s3Collector', {
  bufferPath: { ...bufferPath, required: true as const },
  ...s3Collecting,
  ...s3Partitioning,
  writerId,
  allowSharedBufferPath,
  signal: common.signal('collector'),
  highWaterMark: common.highWaterMark(256),
});

export const s3UploaderOptions = defineOptions('s3Uploader', {
  ...s3Target,
  ...s3Connection,
  bufferPath: { ...bufferPath, required: true as const },
  ...s3Uploading,
  allowSharedBufferPath,
  signal: common.signal('uploader'),
});

export const s3SinkOptions = defineOptions('s3Sink', {
  ...s3Target,
  ...s3Connection,
  bufferPath: { ...bufferPath, defaultText: '`$XDG_STATE_HOME/manifold/s3/<bucket>/<prefix>-<hash>` (`~/.local/state` without XDG_STATE_HOME)' },
  ...s3Collecting,
  ...s3Partitioning,
  ...s3Uploading,
  writerId,
  allowSharedBufferPath,
  signal: common.signal('sink (and both its parts)'),
  highWaterMark: common.highWaterMark(256),
});

/** What s3Source reads, and how it keeps its place. */
export const s3SourceOptions = defineOptions('s3Source', {
  bucket: opt.string('The bucket to read; it must exist (a missing bucket fails the stream with `MANIFOLD_ERR_NOT_FOUND`).', { required: true, cli: false }),
  prefix: { ...s3Target.prefix, doc: 'Key prefix to read under, used as a folder (`orders` and `orders/` both read `orders/...`); same rules as the sink\'s.' },
  ...s3Connection,
  requestTimeoutMs: { ...requestTimeoutMs, doc: 'How long a List or Get request may stall before it is aborted and retried (a socket idle timeout on the client the source builds).' },
  connectTimeoutMs,
  from: opt.string('Start after this key (a full key, as listed), when no checkpoint is stored; default the first key under the prefix.'),
  checkpointer: opt.custom<Checkpointer>('Stores the last object whose every line was acked (scope `s3://<bucket>/<prefix>`): `fileCheckpointer(path)`, `memoryCheckpointer()` or your own.', {
    type: 'Checkpointer',
    check: (value, fail) =>
      value !== null && typeof value === 'object' && typeof (value as Checkpointer).load === 'function' && typeof (value as Checkpointer).store === 'function'
        ? (value as Checkpointer)
        : fail('a Checkpointer ({ load(scope), store(scope, checkpoints) })'),
  }),
  checkpointFile: opt.string('A JSON file to store the checkpoint in (`fileCheckpointer`); on the command line `checkpoint=`.', { cli: 'checkpoint' }),
  watch: opt.boolean('After the last object, list again every `pollIntervalMs` for new keys (that sort after the last one read) instead of ending.', { default: false }),
  pollIntervalMs: opt.duration('With `watch`: how often to list for new objects.', { default: 10_000, min: 100 }),
  maxInFlight: opt.integer('Most lines handed out and not yet acked; reading waits at this many.', { default: 10_000, min: 1 }),
  readAhead: opt.integer('Objects whose GetObject is under way while the one before is read (many small objects are bound by the latency of each request); each holds a connection.', { default: 4, min: 1, max: 64 }),
  maxInFlightBytes: opt.bytes('Most payload bytes handed out and not yet acked; reading waits at this many.', { default: 64 * 1024 * 1024, cli: 'maxInFlightBytes' }),
  closeTimeoutMs: opt.duration('Longest `close()` waits for the lines in flight to be acked before storing the checkpoint.', { default: 30_000, min: 0 }),
  retry: retryOption('Retries of each List and Get call on throttling and transient faults; `false` for none.'),
  signal: common.signal('source'),
  highWaterMark: common.highWaterMark(256),
});

// <options S3TargetOptions>
/** Where objects go. Generated by `npm run options`. */
export interface S3TargetOptions {
  /** The bucket; it must exist (a missing bucket fails the stream with `MANIFOLD_ERR_NOT_FOUND`). Required. */
  bucket: string;
  /** Key prefix, used as a folder: `logs` and `logs/` both give `logs/<day>/<file>`. No `.` or `..` segment, empty segment, leading `/`, `\` or control character, at most 900 bytes. Default none. */
  prefix?: string;
}
// </options>

// <options S3ConnectionOptions>
/** How the S3 client is made. Generated by `npm run options`. */
export interface S3ConnectionOptions {
  /** A ready S3Client to use; region, endpoint, tls, credentials and connectTimeoutMs then belong to it. */
  client?: S3Client;
  /** AWS region. Default: from the environment (AWS_REGION) or the shared config; "us-east-1" with a local endpoint on the command line. */
  region?: string;
  /** Endpoint URL of an S3-compatible server (s3rver, MinIO, Ceph): the client built for it uses path-style URLs and sends checksums only where S3 requires them. */
  endpoint?: string;
  /** AWS credentials ({ accessKeyId, secretAccessKey, sessionToken }) or a credential provider. Default: the SDK chain. */
  credentials?: S3Credentials;
  /** TLS of an `https://` endpoint: `{ ca, cert, key, passphrase, servername, rejectUnauthorized, minVersion }` for a private CA or a client certificate (PEM text, bytes or file paths, re-read at every new connection); for the client the connector builds, refused with an `http://` endpoint. Default none (plain TCP), unless the URL says TLS. */
  tls?: boolean | TlsOptions;
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
  /** Written after each message; a message containing it is refused or escaped (`onDelimiter`). Default "\n". */
  delimiter?: string | Buffer;
  /** A message containing the delimiter: `'refuse'` nacks it with `MANIFOLD_ERR_INVALID_MESSAGE` (flow() dead-letters it without retrying) and emits `'reject'`; `'escape'` writes every record with `\` as `\\` and the delimiter's characters as `\n`, `\r`, `\t`, `\u00XX`, reversibly. Default 'refuse'. */
  onDelimiter?: 'refuse' | 'escape';
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
  /** `'gzip'` or `'zstd'` compresses while uploading (the key gets `.gz` or `.zst`, content type `application/gzip` or `application/zstd`); `'none'` stores the lines as they are (`application/octet-stream`). Default 'none'. */
  compression?: 'none' | 'gzip' | 'zstd';
  /** Storage class of every object; default the bucket's (STANDARD). Default the bucket's. */
  storageClass?: 'STANDARD' | 'STANDARD_IA' | 'ONEZONE_IA' | 'INTELLIGENT_TIERING' | 'GLACIER' | 'GLACIER_IR' | 'DEEP_ARCHIVE' | 'REDUCED_REDUNDANCY' | 'EXPRESS_ONEZONE';
  /** Server-side encryption of every object: `'AES256'` (S3-managed keys) or `'aws:kms'` (with `sseKmsKeyId`, else the account's default KMS key); default the bucket's. Default the bucket's. */
  serverSideEncryption?: 'AES256' | 'aws:kms' | 'aws:kms:dsse';
  /** The KMS key (id, ARN or alias) of `serverSideEncryption: 'aws:kms'`. */
  sseKmsKeyId?: string;
  /** Object tags of every object: `{ team: "data" }`; on the command line `tags=team:data,env:prod`. */
  tags?: Record<string, string>;
  /** User metadata of every object (`x-amz-meta-*`): `{ source: "orders" }`; on the command line `metadata=source:orders`. */
  metadata?: Record<string, string>;
  /** Multipart part size, at least 5 MiB; each upload holds about two parts in memory at most. Default 8 MiB. */
  partSizeBytes?: number;
  /** On `end()`, how long uploads may go on; what is left stays on disk for the next start. Default 30,000 ms. */
  closeTimeoutMs?: number;
  /** Start-up check: `'bucket'` sends HeadBucket, so a missing bucket (`MANIFOLD_ERR_NOT_FOUND`) or refused credentials (`MANIFOLD_ERR_AUTH`) fail the stream at once rather than at the first upload; `'write'` also writes and deletes a small object `<prefix>_manifold-verify-<pid>-<hex>` (the write permission, encryption and storage class settings); `'none'` checks nothing. S3 unreachable at start is a `'warning'`, not a failure: messages go on to disk. Default 'bucket'. */
  verify?: 'bucket' | 'write' | 'none';
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
  /** The local buffer folder, created with mode 0700; one live process per folder. A folder that another user owns or that group or others may write to is refused (see `allowSharedBufferPath`). Required. */
  bufferPath: string;
  /** Partition path of each record, between the prefix and the file name: `{yyyy}/{MM}/{dd}/{HH}`, Hive style `dt={yyyy}-{MM}-{dd}/hour={HH}`, or by field: `{key}`, `{header.<name>}`, `{json.<field>.<field>}`. Values are made safe (letters, digits, `-`, `_`, `.`, `=`; others become `_`); a missing field or a payload that is not JSON gives `_unknown`, an empty value `_empty`. Default: the `YYYY-MM-DD` of the commit (UTC). See docs/s3.md. Default none (`YYYY-MM-DD/` of the commit). */
  keyTemplate?: string;
  /** With `keyTemplate`: the time zone of its time tokens, an IANA name (`Europe/Paris`) or `UTC`. Default 'UTC'. */
  timeZone?: string;
  /** With `keyTemplate`: most partitions with an open buffer file; writing to one more commits the least recently written one. Default 64. */
  maxOpenPartitions?: number;
  /** Names this process's files and keys: up to 64 letters, digits, `_` or `-`. Default `<pid>-<8 random hex>`. */
  writerId?: string;
  /** Accept a `bufferPath` that another user owns or that group or others may write to (a shared spool folder): whoever can write there can have files uploaded. Default false. */
  allowSharedBufferPath?: boolean;
  /** Destroys the collector when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark, in messages. Default 256. */
  highWaterMark?: number;
}
// </options>

// <options S3UploaderOptions>
/** Options of {@link s3Uploader}. Generated from its declaration by `npm run options`. */
export interface S3UploaderOptions extends S3TargetOptions, S3ConnectionOptions, S3UploadingOptions {
  /** The local buffer folder, created with mode 0700; one live process per folder. A folder that another user owns or that group or others may write to is refused (see `allowSharedBufferPath`). Required. */
  bufferPath: string;
  /** Accept a `bufferPath` that another user owns or that group or others may write to (a shared spool folder): whoever can write there can have files uploaded. Default false. */
  allowSharedBufferPath?: boolean;
  /** Destroys the uploader when aborted. */
  signal?: AbortSignal;
}
// </options>

// <options S3SinkOptions>
/** Options of {@link s3Sink}. Generated from its declaration by `npm run options`. */
export interface S3SinkOptions extends S3TargetOptions, S3ConnectionOptions, S3CollectingOptions, S3UploadingOptions {
  /** The local buffer folder, created with mode 0700; one live process per folder. A folder that another user owns or that group or others may write to is refused (see `allowSharedBufferPath`). Default `$XDG_STATE_HOME/manifold/s3/<bucket>/<prefix>-<hash>` (`~/.local/state` without XDG_STATE_HOME). */
  bufferPath?: string;
  /** Partition path of each record, between the prefix and the file name: `{yyyy}/{MM}/{dd}/{HH}`, Hive style `dt={yyyy}-{MM}-{dd}/hour={HH}`, or by field: `{key}`, `{header.<name>}`, `{json.<field>.<field>}`. Values are made safe (letters, digits, `-`, `_`, `.`, `=`; others become `_`); a missing field or a payload that is not JSON gives `_unknown`, an empty value `_empty`. Default: the `YYYY-MM-DD` of the commit (UTC). See docs/s3.md. Default none (`YYYY-MM-DD/` of the commit). */
  keyTemplate?: string;
  /** With `keyTemplate`: the time zone of its time tokens, an IANA name (`Europe/Paris`) or `UTC`. Default 'UTC'. */
  timeZone?: string;
  /** With `keyTemplate`: most partitions with an open buffer file; writing to one more commits the least recently written one. Default 64. */
  maxOpenPartitions?: number;
  /** Names this process's files and keys: up to 64 letters, digits, `_` or `-`. Default `<pid>-<8 random hex>`. */
  writerId?: string;
  /** Accept a `bufferPath` that another user owns or that group or others may write to (a shared spool folder): whoever can write there can have files uploaded. Default false. */
  allowSharedBufferPath?: boolean;
  /** Destroys the sink (and both its parts) when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark, in messages. Default 256. */
  highWaterMark?: number;
}
// </options>

// <options S3SourceOptions>
/** Options of {@link s3Source}. Generated from its declaration by `npm run options`. */
export interface S3SourceOptions extends S3ConnectionOptions {
  /** The bucket to read; it must exist (a missing bucket fails the stream with `MANIFOLD_ERR_NOT_FOUND`). Required. */
  bucket: string;
  /** Key prefix to read under, used as a folder (`orders` and `orders/` both read `orders/...`); same rules as the sink's. Default none. */
  prefix?: string;
  /** How long a List or Get request may stall before it is aborted and retried (a socket idle timeout on the client the source builds). Default 30,000 ms. */
  requestTimeoutMs?: number;
  /** Longest opening a connection may take, for the client the connector builds. Default 5,000 ms. */
  connectTimeoutMs?: number;
  /** Start after this key (a full key, as listed), when no checkpoint is stored; default the first key under the prefix. */
  from?: string;
  /** Stores the last object whose every line was acked (scope `s3://<bucket>/<prefix>`): `fileCheckpointer(path)`, `memoryCheckpointer()` or your own. */
  checkpointer?: Checkpointer;
  /** A JSON file to store the checkpoint in (`fileCheckpointer`); on the command line `checkpoint=`. */
  checkpointFile?: string;
  /** After the last object, list again every `pollIntervalMs` for new keys (that sort after the last one read) instead of ending. Default false. */
  watch?: boolean;
  /** With `watch`: how often to list for new objects. Default 10,000 ms. */
  pollIntervalMs?: number;
  /** Most lines handed out and not yet acked; reading waits at this many. Default 10,000. */
  maxInFlight?: number;
  /** Objects whose GetObject is under way while the one before is read (many small objects are bound by the latency of each request); each holds a connection. Default 4. */
  readAhead?: number;
  /** Most payload bytes handed out and not yet acked; reading waits at this many. Default 64 MiB. */
  maxInFlightBytes?: number;
  /** Longest `close()` waits for the lines in flight to be acked before storing the checkpoint. Default 30,000 ms. */
  closeTimeoutMs?: number;
  /** Retries of each List and Get call on throttling and transient faults; `false` for none. Default 10 retries, 200 ms to 30 s apart (the `manifold` command: for ever). */
  retry?: RetryOptions | false;
  /** Destroys the source when aborted. */
  signal?: AbortSignal;
  /** Object-mode high-water mark, in messages. Default 256. */
  highWaterMark?: number;
}
// </options>
