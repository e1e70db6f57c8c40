/**
 * The one error class of manifold, and the classification of any error as
 * transient (retry it) or fatal (stop and say why).
 */

/** The closed list of error codes. Callers match on `code`, never on message text. */
export const ErrorCodes = {
  /** An option is missing, has the wrong type, or conflicts with another. Never retried. */
  INVALID_OPTION: 'MANIFOLD_ERR_INVALID_OPTION',
  /** A record could not be processed (not JSON, too large, malformed). Names the record. */
  INVALID_MESSAGE: 'MANIFOLD_ERR_INVALID_MESSAGE',
  /** A record is larger than a configured or system limit. */
  MESSAGE_TOO_LARGE: 'MANIFOLD_ERR_MESSAGE_TOO_LARGE',
  /** A connection could not be made or was lost. Retryable. */
  CONNECTION: 'MANIFOLD_ERR_CONNECTION',
  /** The remote system refused the credentials or the permission. Never retried. */
  AUTH: 'MANIFOLD_ERR_AUTH',
  /**
   * A TLS handshake failed: the server's certificate is expired, signed by an unknown CA or for another
   * name, the server refused the client certificate, or the port does not speak TLS. Never retried;
   * names the host and the reason.
   */
  TLS: 'MANIFOLD_ERR_TLS',
  /** A stream, bucket, queue, topic or exchange does not exist. Never retried. */
  NOT_FOUND: 'MANIFOLD_ERR_NOT_FOUND',
  /** The remote system asked us to slow down. Retryable. */
  THROTTLED: 'MANIFOLD_ERR_THROTTLED',
  /** Every retry was used up; `cause` is the last failure. */
  RETRIES_EXHAUSTED: 'MANIFOLD_ERR_RETRIES_EXHAUSTED',
  /** A graceful close did not finish within its timeout. */
  CLOSE_TIMEOUT: 'MANIFOLD_ERR_CLOSE_TIMEOUT',
  /** The operation was aborted through a signal or a second shutdown signal. */
  ABORTED: 'MANIFOLD_ERR_ABORTED',
  /** The sink's output is gone (EPIPE, closed socket); the message was not delivered. */
  OUTPUT_CLOSED: 'MANIFOLD_ERR_OUTPUT_CLOSED',
  /** A sink could not deliver a message for a reason of the remote system. */
  DELIVERY: 'MANIFOLD_ERR_DELIVERY',
  /**
   * A message could not be delivered within its attempts and there is no dead-letter sink: flow() fails with it,
   * naming the record's position and the last cause. `details.lost` says whether the source can deliver it again.
   */
  UNDELIVERED: 'MANIFOLD_ERR_UNDELIVERED',
  /** A local file or disk operation failed. */
  IO: 'MANIFOLD_ERR_IO',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** What a {@link ManifoldError} is built from. Extra facts (shard, offset, queue) go in `details`. */
export interface ManifoldErrorInit {
  code: ErrorCode;
  /** Whether trying again could succeed. Defaults to `false`. */
  retryable?: boolean;
  cause?: unknown;
  /** System facts kept as properties on the error (status, shardId, queue, ...). */
  details?: Record<string, unknown>;
}

/**
 * The error every manifold stream fails with: a stable `code`, whether it is
 * `retryable`, and the underlying `cause`.
 *
 * @example
 * ```ts
 * stream.on('error', (err) => {
 *   if (err instanceof ManifoldError && err.code === ErrorCodes.NOT_FOUND) { ... }
 * });
 * ```
 */
export class ManifoldError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  [key: string]: unknown;

  constructor(message: string, init: ManifoldErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.retryable = init.retryable ?? false;
    if (init.details) {
      for (const [key, value] of Object.entries(init.details)) {
        if (!(key in this)) this[key] = value;
      }
    }
  }

  override get name(): string {
    return 'ManifoldError';
  }
}

// Node system error codes that describe a network or peer condition that may clear by itself.
const TRANSIENT_SYSTEM_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTCONN',
  'ESOCKETTIMEDOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

// AWS SDK v3 error names (err.name) that are throttling or transient service faults.
const TRANSIENT_AWS_NAMES = new Set([
  'ThrottlingException',
  'Throttling',
  'ThrottledException',
  'TooManyRequestsException',
  'ProvisionedThroughputExceededException',
  'LimitExceededException',
  'RequestLimitExceeded',
  'SlowDown',
  'InternalFailure',
  'InternalError',
  'InternalServerError',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'KMSThrottlingException',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
]);

// AMQP reply codes (amqplib puts them on err.code) that a reconnect can get past:
// 320 connection-forced (broker shutdown), 501 frame-error, 504 channel-error, 505 unexpected-frame, 506 resource-error.
const TRANSIENT_AMQP_CODES = new Set([320, 501, 504, 505, 506]);

function prop(value: unknown, key: string): unknown {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return undefined;
  return (value as Record<string, unknown>)[key];
}

/**
 * Whether an error describes a transient condition (network, throttling, 5xx,
 * closed connection) worth retrying. Never throws, whatever it is given.
 *
 * Order of evidence: an explicit boolean `retryable` property (ManifoldError,
 * Kafka client errors), AWS SDK retry hints and status codes, AMQP reply codes,
 * Node system error codes, then the `cause` chain. Anything unknown is fatal:
 * retrying a bug forever hides it.
 */
export function isRetryable(error: unknown): boolean {
  try {
    return classify(error, 0);
    /* c8 ignore next 3 -- only reachable with hostile getters (Proxy traps that throw) */
  } catch {
    return false;
  }
}

function classify(error: unknown, depth: number): boolean {
  if (depth > 8 || error === null || typeof error !== 'object') return false;
  const name = prop(error, 'name');
  if (name === 'AbortError') return false;

  const explicit = prop(error, 'retryable');
  if (typeof explicit === 'boolean') return explicit;
  const canRetry = prop(error, 'canRetry');
  if (typeof canRetry === 'boolean') return canRetry;

  // AWS SDK v3: $retryable is set for throttling and transient faults; $metadata carries the status.
  if (prop(error, '$retryable') !== undefined) return true;
  if (typeof name === 'string' && TRANSIENT_AWS_NAMES.has(name)) return true;
  const status = prop(prop(error, '$metadata'), 'httpStatusCode') ?? prop(error, 'statusCode') ?? prop(error, 'status');
  if (typeof status === 'number') {
    if (status >= 500 || status === 429 || status === 408) return true;
    if (status >= 400) return false;
  }

  const code = prop(error, 'code');
  if (typeof code === 'number') return TRANSIENT_AMQP_CODES.has(code);
  if (typeof code === 'string' && TRANSIENT_SYSTEM_CODES.has(code)) return true;

  const cause = prop(error, 'cause');
  if (cause !== undefined && cause !== error) return classify(cause, depth + 1);
  if (error instanceof AggregateError) return error.errors.some((e) => classify(e, depth + 1));
  return false;
}

/** The message of anything thrown, for composing a clearer message around it. */
export function describe(error: unknown): string {
  try {
    if (error instanceof Error) return error.message || error.name;
    return String(error);
    /* c8 ignore next 3 -- only reachable with objects whose toString throws */
  } catch {
    return 'unknown error';
  }
}

/** `error` as an Error (wrapping non-Error throws so stack and `cause` work). */
export function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(describe(error));
}

// ---- Redaction: secrets never appear in errors, events, logs or metrics ----
//
// Redaction parses: a URI's userinfo is found whatever its password holds (an unencoded `/`, `?`,
// `#`, `@` or `:` included), a query parameter is a secret by its name (a fixed list, and the words
// of the name: `sessionToken`, `X-Amz-Credential`), and a parameter whose value is itself a URL is
// redacted as one. It is not a pattern over the text: a pattern cannot tell where a password that
// holds a `/` ends.

/** Whole parameter or option names (lower case, separators removed) that are secrets. */
const SECRET_NAMES = new Set([
  'password', 'pass', 'passwd', 'pwd', 'passphrase', 'secret', 'token', 'auth', 'authorization', 'sig', 'signature', 'jwt',
  'key', 'apikey', 'xapikey', 'accesstoken', 'refreshtoken', 'idtoken', 'sessiontoken', 'securitytoken', 'secretaccesskey',
  'secretkey', 'clientsecret', 'privatekey', 'sasl', 'credential', 'credentials', 'cookie', 'bearer',
]);

/** Words that make any name holding them a secret's: `authToken`, `client_secret`, `X-Amz-Signature`, `db.password`. */
const SECRET_WORDS = new Set(['password', 'passwd', 'pwd', 'passphrase', 'secret', 'token', 'signature', 'credential', 'credentials', 'jwt', 'apikey']);

/** Words that name a secret when they end the name: `basicAuth`, `x-sig`. (Not `key`: `routingKey` is no secret.) */
const SECRET_LAST_WORDS = new Set(['auth', 'sig', 'pass']);

/** The words before a final `key` that make it a secret: `apiKey`, `private_key`, `AccountKey`. */
const SECRET_KEY_KINDS = new Set(['api', 'private', 'secret', 'subscription', 'account', 'master', 'shared', 'signing', 'encryption']);

/**
 * Whether a query parameter or option called `name` holds a secret: `password`, `pwd`, `token`,
 * `auth`, `sig`, `signature`, `jwt`, `apikey`/`api_key`/`api-key`, `access_token`, `sessionToken`,
 * `secretAccessKey`, `sasl`, `credentials`, `X-Amz-Signature`, `X-Amz-Credential`, ... A name that
 * merely ends in "key" is not one: `routingKey` and `partitionKey` stay visible.
 */
export function isSecretName(name: string): boolean {
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w) => w.toLowerCase());
  if (words.length === 0) return false;
  if (SECRET_NAMES.has(words.join(''))) return true;
  if (words.some((w) => SECRET_WORDS.has(w))) return true;
  const last = words[words.length - 1]!;
  if (SECRET_LAST_WORDS.has(last)) return true;
  return last === 'key' && words.length > 1 && SECRET_KEY_KINDS.has(words[words.length - 2]!);
}

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;
/** Schemes the WHATWG URL parser treats as special: their paths may hold an `@` (`wss://host/ws/btcusdt@trade`). */
const SPECIAL_SCHEMES = new Set(['http', 'https', 'ws', 'wss', 'ftp', 'file']);
const HOST = String.raw`(?:\[[0-9A-Za-z:.%]*\]|[A-Za-z0-9._~%!$&'()*+;=-]*)(?::\d*)?`;
/** What may follow the `@` that ends a userinfo: a host (a Kafka URI's list of them), then the path, query, fragment or the end. */
const AFTER_USERINFO = new RegExp(`^${HOST}(?:,${HOST})*(?=[/?#]|$)`);
const AUTHORITY = new RegExp(`^${HOST}$`);
/** Where a query parameter's value is itself a URL (`?endpoint=http://...`): an `@` from there on is the nested URL's. */
const NESTED_URL = /[?&;#][^=&#]*=[A-Za-z][A-Za-z0-9+.-]*:\/\//;

interface UriParts {
  /** `scheme://`, `scheme:` or `//`. */
  head: string;
  /** Everything between `//` and the `@` that ends it, as written (percent-encoded or not). */
  userinfo: string | undefined;
  /** Host, path, query and fragment. */
  tail: string;
}

/**
 * Splits a URI into the part before its userinfo, the userinfo, and the rest, as the text is written.
 * The userinfo ends at an `@` followed by a host and then `/`, `?`, `#` or the end, so a password's
 * own `/`, `?`, `#`, `@` or `:` stay in it. Where a text reads both ways (`wss://host:443/ws/a@b`
 * is a path to the WHATWG parser), a special scheme (ws, http) reads as the WHATWG parser does when
 * its authority is plainly a host (a dotted name, localhost or an IP, with a port: not `u:pa`);
 * otherwise, and for other schemes (amqp, kafka, s3), the password reading wins: its worst case hides
 * too much rather than too little.
 */
function splitUri(text: string): UriParts | undefined {
  let scheme = '';
  let at: number;
  if (text.startsWith('//')) {
    at = 2;
  } else {
    const match = SCHEME.exec(text);
    if (!match) return undefined;
    scheme = match[1]!.toLowerCase();
    at = match[0].length;
    if (!text.startsWith('//', at)) return { head: text.slice(0, at), userinfo: undefined, tail: text.slice(at) };
    at += 2;
  }
  const head = text.slice(0, at);
  const rest = text.slice(at);
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd === -1 ? rest : rest.slice(0, authorityEnd);
  const lastAtInAuthority = authority.lastIndexOf('@');
  const nested = NESTED_URL.exec(rest);
  const limit = nested ? nested.index : rest.length;
  let candidate: number | undefined;
  for (let i = rest.lastIndexOf('@', limit - 1); i >= 0; i = i === 0 ? -1 : rest.lastIndexOf('@', i - 1)) {
    if (AFTER_USERINFO.test(rest.slice(i + 1))) {
      candidate = i;
      break;
    }
  }
  let end: number | undefined = lastAtInAuthority === -1 ? undefined : lastAtInAuthority;
  if (candidate !== undefined && candidate > authority.length && authority.includes(':')) {
    // The WHATWG reading would end the userinfo early (or see none): take the password reading, but
    // on a special scheme only when the authority could not be a host (see above).
    if (!SPECIAL_SCHEMES.has(scheme) || lastAtInAuthority !== -1 || !looksLikeHost(authority)) end = candidate;
  }
  if (end === undefined) return { head, userinfo: undefined, tail: rest };
  return { head, userinfo: rest.slice(0, end), tail: rest.slice(end + 1) };
}

/** `host[:port]` whose host is a name with a dot, `localhost` or an IP literal: not `user:password`. */
function looksLikeHost(authority: string): boolean {
  if (!AUTHORITY.test(authority)) return false;
  const host = authority.replace(/:\d*$/, '');
  return host.includes('.') || host.startsWith('[') || host.toLowerCase() === 'localhost';
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * A URI the WHATWG parser reads as we do (the same password, or none) is shown as it serializes it, as
 * errors and events always showed URLs; one it cannot read, or reads otherwise, is shown as written.
 */
function normalized(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return text;
  }
  const ours = splitUri(text)?.userinfo;
  const password = ours === undefined || !ours.includes(':') ? '' : decode(ours.slice(ours.indexOf(':') + 1));
  return password === decode(url.password) ? url.href : text;
}

/** `found` collects what was hidden (as written and decoded), for a caller that scrubs it from other text. */
function redactUri(text: string, found?: Set<string>, asWritten = false): string {
  const parts = splitUri(asWritten ? text : normalized(text));
  if (!parts) return text;
  let out = parts.head;
  if (parts.userinfo !== undefined) {
    const colon = parts.userinfo.indexOf(':');
    if (colon === -1) {
      out += `${parts.userinfo}@`;
    } else {
      const password = parts.userinfo.slice(colon + 1);
      found?.add(password).add(decode(password));
      out += `${parts.userinfo.slice(0, colon)}:***@`;
    }
  }
  return out + redactParams(parts.tail, found);
}

/**
 * The host and path as they are, then every `name=value` of the query and fragment with the value of
 * a secret name hidden, and a value that is itself a URL redacted as one.
 */
function redactParams(tail: string, found?: Set<string>): string {
  const start = tail.search(/[?#]/);
  if (start === -1) return tail;
  let out = tail.slice(0, start);
  let i = start;
  while (i < tail.length) {
    let j = i + 1;
    while (j < tail.length && tail[j] !== '&' && tail[j] !== '#') j++;
    const piece = tail.slice(i + 1, j);
    const eq = piece.indexOf('=');
    if (eq === -1) {
      out += tail[i] + piece;
    } else {
      const name = piece.slice(0, eq);
      const value = piece.slice(eq + 1);
      if (isSecretName(decode(name))) {
        if (value !== '') found?.add(value).add(decode(value));
        out += `${tail[i]}${name}=${value === '' ? '' : '***'}`;
      } else {
        out += `${tail[i]}${name}=${redactValue(value, found)}`;
      }
    }
    i = j;
  }
  return out;
}

/** A query value that holds a URL (as written, or percent-encoded) is redacted as one. */
function redactValue(value: string, found?: Set<string>): string {
  if (value.includes('://')) return redactTextInto(value, found);
  if (!value.includes('%')) return value;
  const decoded = decode(value);
  if (!decoded.includes('://')) return value;
  const redacted = redactTextInto(decoded, found);
  return redacted === decoded ? value : encodeURIComponent(redacted).replace(/%2A/g, '*');
}

/** The start of a URI in free text: a scheme and `//`, not in the middle of a word. */
const URI_START = /(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*:\/\//g;

/** A PEM private key block (a `tls.key` given as text), whole. */
const PEM_PRIVATE_KEY = /-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?(?:-----END \1PRIVATE KEY-----|$)/g;

function redactTextInto(text: string, found?: Set<string>): string {
  if (text.includes('PRIVATE KEY-----')) text = text.replace(PEM_PRIVATE_KEY, '-----BEGIN $1PRIVATE KEY----- *** -----END $1PRIVATE KEY-----');
  if (!text.includes('//')) return text;
  let out = '';
  let last = 0;
  URI_START.lastIndex = 0;
  for (let match = URI_START.exec(text); match; match = URI_START.exec(text)) {
    // A URI in a message ends at white space or a quote, and the punctuation of the sentence is not its own
    // (`... at amqp://h/?token=***: unknown option`).
    let end = match.index;
    while (end < text.length && !/[\s"'<>`]/.test(text[end]!)) end++;
    while (end > match.index && /[.,:;!)]/.test(text[end - 1]!)) end--;
    out += text.slice(last, match.index) + redactUri(text.slice(match.index, end), found, true);
    last = end;
    URI_START.lastIndex = end;
  }
  return out + text.slice(last);
}

/**
 * A URI with its password replaced by `***` (whatever the password holds), the values of secret
 * query parameters (see {@link isSecretName}) replaced by `***`, and URLs in query values redacted
 * the same way. A URI the WHATWG parser reads as we do is shown as it serializes it (`ws://h` as
 * `ws://h/`); one it cannot read, or would read otherwise (`amqp://u:pa/ss@h`), as written. Text
 * that is not a URI comes back unchanged. `asWritten`: never normalized (`file:x.jsonl` stays so).
 *
 * @example
 * ```ts
 * redactUrl('amqp://app:pa/ss@rabbit/?queue=q'); // 'amqp://app:***@rabbit/?queue=q'
 * redactUrl('wss://feed/x?sig=abc&symbol=BTC');   // 'wss://feed/x?sig=***&symbol=BTC'
 * ```
 */
export function redactUrl(url: string | URL, options: { asWritten?: boolean } = {}): string {
  return redactUri(String(url), undefined, options.asWritten);
}

/** `text` (a message, a log line) with every URI in it redacted as {@link redactUrl} does. */
export function redactText(text: string): string {
  return redactTextInto(text);
}

/**
 * What {@link redactUrl} hides in `uri` (the password, secret parameter values, those of nested URLs),
 * each as written and percent-decoded: for a caller that must also scrub them from text it did not
 * write (a client library's error message).
 */
export function uriSecrets(uri: string): string[] {
  const found = new Set<string>();
  redactUri(uri, found);
  redactUri(uri, found, true);
  found.delete('');
  return [...found];
}

/**
 * The user and password of a URI's userinfo, percent-decoded, read as {@link redactUrl} reads it
 * (a password holding an unencoded `/` included); undefined when there is no userinfo.
 */
export function uriCredentials(uri: string): { username: string; password: string | undefined } | undefined {
  const parts = splitUri(uri);
  if (parts?.userinfo === undefined) return undefined;
  const colon = parts.userinfo.indexOf(':');
  if (colon === -1) return { username: decode(parts.userinfo), password: undefined };
  return { username: decode(parts.userinfo.slice(0, colon)), password: decode(parts.userinfo.slice(colon + 1)) };
}

/**
 * Whether the URL parser reads `uri` otherwise than as `user:password@host`: a password holding an unencoded
 * `/ ? #` (`amqp://u:12/ss@host` is host u, port 12 to the parser), or an `@` in the path. A client would connect
 * somewhere else and send part of the password as a path: callers refuse such a URI, asking to percent-encode.
 */
export function readsTwoWays(uri: string, parsed: URL): boolean {
  const credentials = uriCredentials(uri);
  if (credentials?.password === undefined) return false;
  let password = parsed.password;
  try {
    password = decodeURIComponent(password);
  } catch {
    // Kept as written: compared as is.
  }
  return credentials.password !== password;
}

/** The message of a URI that {@link readsTwoWays}: what to percent-encode. */
export const READS_TWO_WAYS =
  'reads two ways: as user:password@host with a password holding / ? or #, or with an @ in its path or query; percent-encode those characters in the password (%2F %3F %23), or the @ (%40)';
