/**
 * TLS, one option shape for every connector: `tls: true` (the system CAs) or
 * `tls: { ca, cert, key, passphrase, servername, rejectUnauthorized, minVersion }`.
 * Certificates and keys are PEM text, PEM bytes, or a file path; paths are read at
 * every connect ({@link tlsConnectOptions}), so a rotated certificate is used at the
 * next reconnect without a restart. A handshake that fails (expired, unknown CA,
 * name mismatch, client certificate refused, a plaintext port) is
 * MANIFOLD_ERR_TLS, never retried ({@link tlsFailure}).
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions, SecureVersion, TLSSocket } from 'node:tls';
import { ErrorCodes, ManifoldError, describe } from './errors.js';
import { invalidOption, opt, unknownOption } from './options.js';

/** A certificate, key or CA: PEM text, PEM bytes, or the path of a PEM file (read at every connect). */
export type TlsMaterial = string | Buffer;

/** The TLS settings every connector takes. */
export interface TlsOptions {
  /** CA certificate(s) to trust instead of the system's: PEM text or bytes, or file paths. */
  ca?: TlsMaterial | TlsMaterial[];
  /** Client certificate (chain) for mutual TLS: PEM text or bytes, or a file path. */
  cert?: TlsMaterial;
  /** The client certificate's private key: PEM text or bytes, or a file path. */
  key?: TlsMaterial;
  /** Passphrase of an encrypted `key`. Secret: never shown. */
  passphrase?: string;
  /** Server name to send (SNI) and to verify the certificate against, when it differs from the host connected to. */
  servername?: string;
  /** `false` accepts any server certificate: for a test set-up only. Default `true`. */
  rejectUnauthorized?: boolean;
  /** Lowest TLS version accepted. Default Node's (TLSv1.2). */
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
}

/** The keys of {@link TlsOptions}, which are also the CLI's `tls.<key>=` keys. */
export const TLS_KEYS = ['ca', 'cert', 'key', 'passphrase', 'servername', 'rejectUnauthorized', 'minVersion'] as const;

const VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;

function isPem(text: string): boolean {
  return text.includes('-----BEGIN ');
}

function checkMaterial(where: string, name: string, value: unknown): TlsMaterial {
  if (Buffer.isBuffer(value) && value.length > 0) return value;
  if (value instanceof Uint8Array && value.length > 0) return Buffer.from(value);
  if (typeof value === 'string' && value.trim().length > 0) return value;
  // A key's value is never shown: it may be the key itself.
  return invalidOption(where, `tls.${name}`, 'PEM text, PEM bytes or the path of a PEM file', name === 'key' ? '(hidden)' : value);
}

/** `true`/`false` from a program or as text (a URI's `tls.rejectUnauthorized=false`). */
function flag(where: string, name: string, value: unknown): boolean {
  if (typeof value === 'boolean') return value;
  if (value === 'true') return true;
  if (value === 'false') return false;
  return invalidOption(where, `tls.${name}`, 'true or false', value);
}

/**
 * Validates a `tls` option: `true` (or `{}`) for TLS with the system CAs, `false`/undefined for none,
 * or {@link TlsOptions}. Text values (`"true"`) are taken as a URI gives them.
 */
export function checkTls(where: string, value: unknown): TlsOptions | undefined {
  if (value === undefined || value === false || value === 'false') return undefined;
  if (value === true || value === 'true') return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value) || Buffer.isBuffer(value)) {
    return invalidOption(where, 'tls', `true, false or { ${TLS_KEYS.join(', ')} }`, value);
  }
  const given = value as Record<string, unknown>;
  for (const key of Object.keys(given)) if (!(TLS_KEYS as readonly string[]).includes(key)) unknownOption(`${where}: options.tls`, key, TLS_KEYS);
  const out: TlsOptions = {};
  if (given.ca !== undefined) {
    const list = Array.isArray(given.ca) ? given.ca : [given.ca];
    if (list.length === 0) invalidOption(where, 'tls.ca', 'PEM text, PEM bytes or a file path, or a non-empty list of them', given.ca);
    out.ca = list.map((ca) => checkMaterial(where, 'ca', ca));
  }
  if (given.cert !== undefined) out.cert = checkMaterial(where, 'cert', given.cert);
  if (given.key !== undefined) out.key = checkMaterial(where, 'key', given.key);
  if ((out.cert === undefined) !== (out.key === undefined)) {
    invalidOption(where, out.cert === undefined ? 'tls.cert' : 'tls.key', `given with tls.${out.cert === undefined ? 'key' : 'cert'}: a client certificate needs its key, and a key its certificate`, undefined);
  }
  if (given.passphrase !== undefined) {
    if (typeof given.passphrase !== 'string') invalidOption(where, 'tls.passphrase', 'a string', '(hidden)');
    out.passphrase = given.passphrase;
  }
  if (given.servername !== undefined) {
    if (typeof given.servername !== 'string' || given.servername.length === 0) invalidOption(where, 'tls.servername', 'a host name', given.servername);
    out.servername = given.servername;
  }
  if (given.rejectUnauthorized !== undefined) out.rejectUnauthorized = flag(where, 'rejectUnauthorized', given.rejectUnauthorized);
  if (given.minVersion !== undefined) {
    if (!(VERSIONS as readonly unknown[]).includes(given.minVersion)) invalidOption(where, 'tls.minVersion', VERSIONS.join(' or '), given.minVersion);
    out.minVersion = given.minVersion as TlsOptions['minVersion'];
  }
  // A file that cannot be read is a mistake to name now, not at the first connect.
  for (const [name, material] of materials(out)) readMaterial(where, name, material);
  return out;
}

function* materials(tls: TlsOptions): Generator<[string, TlsMaterial]> {
  for (const ca of (tls.ca as TlsMaterial[] | undefined) ?? []) yield ['ca', ca];
  if (tls.cert !== undefined) yield ['cert', tls.cert];
  if (tls.key !== undefined) yield ['key', tls.key];
}

function readMaterial(where: string, name: string, material: TlsMaterial): string | Buffer {
  if (typeof material !== 'string' || isPem(material)) return material;
  try {
    return readFileSync(material);
  } catch (error) {
    throw new ManifoldError(`${where}: cannot read tls.${name} from ${JSON.stringify(material)}: ${describe(error)}; give the path of a PEM file or the PEM text itself`, {
      code: ErrorCodes.INVALID_OPTION,
      cause: error,
      details: { option: `tls.${name}`, path: material },
    });
  }
}

/**
 * The `tls` option declaration shared by the connectors. In a URI: `tls=true`, and
 * `tls.ca=/path/ca.pem&tls.cert=...&tls.key=...`; in a pipeline file, a `tls:` mapping.
 */
export function tlsOption(doc = 'TLS: `true` for the system CAs, or `{ ca, cert, key, passphrase, servername, rejectUnauthorized, minVersion }` with PEM text, bytes or file paths (re-read at every connect).') {
  return opt.custom<TlsOptions | undefined>(doc, {
    type: 'boolean | TlsOptions',
    cli: 'tls',
    subkeys: TLS_KEYS,
    defaultText: 'none (plain TCP), unless the URL says TLS',
    schema: {
      anyOf: [
        { type: 'boolean' },
        {
          type: 'object',
          additionalProperties: false,
          properties: {
            ca: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 }], description: 'CA certificate(s): a PEM file path or PEM text.' },
            cert: { type: 'string', minLength: 1, description: 'Client certificate: a PEM file path or PEM text.' },
            key: { type: 'string', minLength: 1, description: "The client certificate's key: a PEM file path or PEM text." },
            passphrase: { type: 'string', description: 'Passphrase of an encrypted key (secret; write ${ENV}).' },
            servername: { type: 'string', minLength: 1, description: 'Server name for SNI and verification.' },
            rejectUnauthorized: { type: 'boolean', description: 'false accepts any server certificate (tests only).' },
            minVersion: { enum: [...VERSIONS] },
          },
        },
      ],
    },
    check: (value, _fail, where) => checkTls(where, value),
  });
}

/**
 * Node `tls.connect` options from validated settings, the files read now: call it at every
 * connect so a certificate replaced on disk is used at the next one.
 */
export function tlsConnectOptions(where: string, tls: TlsOptions): ConnectionOptions {
  const out: ConnectionOptions = {};
  if (tls.ca !== undefined) out.ca = (tls.ca as TlsMaterial[]).map((ca) => readMaterial(where, 'ca', ca));
  if (tls.cert !== undefined) out.cert = readMaterial(where, 'cert', tls.cert);
  if (tls.key !== undefined) out.key = readMaterial(where, 'key', tls.key);
  if (tls.passphrase !== undefined) out.passphrase = tls.passphrase;
  if (tls.servername !== undefined) out.servername = tls.servername;
  if (tls.rejectUnauthorized !== undefined) out.rejectUnauthorized = tls.rejectUnauthorized;
  if (tls.minVersion !== undefined) out.minVersion = tls.minVersion as SecureVersion;
  return out;
}

/** Node's and OpenSSL's codes for a certificate the client refused, with the reason in words. */
const VERIFY_REASONS: Record<string, string> = {
  CERT_HAS_EXPIRED: 'the server certificate has expired',
  CERT_NOT_YET_VALID: 'the server certificate is not valid yet',
  ERR_TLS_CERT_ALTNAME_INVALID: 'name mismatch: the server certificate is not for this host (tls.servername names another)',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'unknown CA: the server certificate is not signed by a CA in tls.ca (or the system CAs)',
  UNABLE_TO_GET_ISSUER_CERT: 'unknown CA: the server certificate is not signed by a CA in tls.ca (or the system CAs)',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unknown CA: the server certificate is not signed by a CA in tls.ca (or the system CAs)',
  SELF_SIGNED_CERT_IN_CHAIN: 'unknown CA: the server certificate chains to a CA not in tls.ca (or the system CAs)',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'unknown CA: the server certificate is self-signed; give it in tls.ca to trust it',
  CERT_SIGNATURE_FAILURE: 'the server certificate signature is invalid',
  CERT_REVOKED: 'the server certificate is revoked',
  CERT_UNTRUSTED: 'unknown CA: the server certificate is not trusted',
  CERT_REJECTED: 'the server certificate was rejected',
  INVALID_CA: 'unknown CA: a CA certificate in the chain is invalid',
  ERR_TLS_CERT_SIGNATURE_ALGORITHM_UNSUPPORTED: 'the server certificate uses an unsupported signature algorithm',
};

const KEY_REASON = 'the client certificate or key cannot be used (wrong tls.passphrase, a key that does not match tls.cert, or not PEM)';

/** What an OpenSSL alert or error from the handshake says, by a fragment of Node's `ERR_SSL_*` code. */
const SSL_REASONS: Array<[RegExp, string]> = [
  [/CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|ACCESS_DENIED|DECRYPT_ERROR/, 'the server refused the handshake or the client certificate (give tls.cert and tls.key signed by a CA the server trusts)'],
  [/CERTIFICATE_EXPIRED/, 'the server refused the client certificate: it has expired'],
  [/WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|HTTP_REQUEST|RECORD_LAYER_FAILURE/, 'the server did not answer in TLS: is this a plaintext port?'],
  [/PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|NO_PROTOCOLS_AVAILABLE|VERSION_TOO_LOW/, 'no TLS version both sides accept (tls.minVersion)'],
  [/BAD_DECRYPT|BAD_PASSWORD_READ|PEM_LIB|KEY_VALUES_MISMATCH|NO_START_LINE/, KEY_REASON],
];

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * The reason in words when `error` (or one of its causes) is a TLS failure; undefined otherwise.
 * A failure that says only that the socket closed during the handshake is not recognised here:
 * see {@link tlsFailure}'s `handshaking`.
 */
export function tlsReason(error: unknown): string | undefined {
  const seen = new Set<unknown>();
  let current: unknown = error;
  while (current !== null && typeof current === 'object' && !seen.has(current)) {
    seen.add(current);
    if (current instanceof ManifoldError && current.code === ErrorCodes.TLS) return (current.reason as string | undefined) ?? current.message;
    const code = codeOf(current);
    const library = (current as { library?: unknown }).library;
    if (code !== undefined) {
      const verify = VERIFY_REASONS[code];
      if (verify) return verify;
      if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_OSSL_')) {
        // No decoder could read the key. A wrong passphrase ends here about one time in 200, when the
        // wrong decryption happens to end in valid padding and the garbage is then parsed as a key.
        if (library === 'DECODER routines') return KEY_REASON;
        for (const [pattern, reason] of SSL_REASONS) if (pattern.test(code)) return reason;
        return `the TLS handshake failed (${code})`;
      }
    }
    // A write that met a non-TLS answer: `write EPROTO ...:SSL routines:...:wrong version number:...`, no ERR_SSL_ code.
    if (code === 'EPROTO' && current instanceof Error && /SSL routines/.test(current.message)) {
      const words = current.message.toUpperCase().replace(/ /g, '_');
      for (const [pattern, reason] of SSL_REASONS) if (pattern.test(words)) return reason;
      return `the TLS handshake failed (${current.message.replace(/^.*SSL routines:[^:]*:([^:]+):.*$/s, '$1')})`;
    }
    if (library === 'SSL routines' || library === 'PEM routines') return `the TLS handshake failed (${String((current as { reason?: unknown }).reason ?? (current as Error).message)})`;
    if (current instanceof AggregateError) {
      for (const inner of current.errors) {
        const reason = tlsReason(inner);
        if (reason) return reason;
      }
    }
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * MANIFOLD_ERR_TLS (never retried) naming `where`, the host and the reason, when `error` is a TLS
 * failure; undefined when it is something else (retry it as today). `handshaking`: the socket
 * closed before the handshake finished, which with TLS 1.3 is how a server refuses a client
 * certificate (the alert may be lost) — counted as TLS only then.
 */
export function tlsFailure(where: string, host: string, error: unknown, handshaking = false): ManifoldError | undefined {
  let reason = tlsReason(error);
  if (reason === undefined && handshaking) {
    const code = codeOf(error) ?? codeOf((error as { cause?: unknown } | null)?.cause);
    if (code === 'ECONNRESET' || code === 'EPIPE' || /socket disconnected before secure TLS connection/i.test(describe(error))) {
      reason = 'the server closed the connection during the TLS handshake (it may require a client certificate: tls.cert and tls.key)';
    }
  }
  if (reason === undefined) return undefined;
  if (error instanceof ManifoldError && error.code === ErrorCodes.TLS) return error;
  return new ManifoldError(`${where}: TLS with ${host} failed: ${reason}`, { code: ErrorCodes.TLS, cause: error, details: { host, reason } });
}

/**
 * Calls `accepted` once the server has accepted the TLS handshake of `socket`. With TLS 1.3 the client sees
 * the handshake complete before the server has checked its certificate, and a server refusing it may just
 * hang up: the handshake then counts as accepted at the server's first session ticket (sent once it verified
 * the client). With TLS 1.2, at `secureConnect`. Until then, a closed socket is a TLS failure
 * ({@link tlsFailure}'s `handshaking`).
 */
export function whenServerAccepts(socket: TLSSocket, accepted: () => void): void {
  socket.once('secureConnect', () => {
    if (socket.getProtocol() === 'TLSv1.3') socket.once('session', () => accepted());
    else accepted();
  });
}
