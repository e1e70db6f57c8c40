/**
 * The secrets the command was given, so that no line it writes shows one. Every URI and option is
 * redacted by parsing where it is shown (redactUrl: the password, secret query values, nested URLs),
 * but a client library may quote what it was given in its own words (a vhost, a host, a header), and
 * a value may reach a message by a path no redaction knew of. So the command also keeps the values it
 * hid, as parsed from the URIs and pipeline file, and {@link Secrets.conceal} replaces each of them in
 * every error, log line, /metrics and /readyz body and progress line it writes.
 */
import { isSecretName, redactText, uriCredentials, uriSecrets } from '../core/errors.js';

/**
 * Shorter values are not scrubbed from free text (a 3-letter password would turn every word holding it
 * into `***`); the parsing redaction still hides them wherever a URI or option is shown.
 */
const MIN_SCRUBBED_LENGTH = 4;

export class Secrets {
  readonly #values = new Set<string>();
  /** User names shown in URIs: a password equal to one is shown anyway (guest:guest), so scrubbing it hides nothing. */
  readonly #shown = new Set<string>();
  #forms: string[] | undefined;

  /** Keeps what `redactUrl` hides in `uri` (wherever URIs appear in it: a pipeline file's value may hold one). */
  addUri(uri: string): void {
    const credentials = uriCredentials(uri);
    if (credentials) this.#shown.add(credentials.username);
    for (const value of uriSecrets(uri)) this.#add(value);
  }

  /**
   * Keeps the text of `value` (a pipeline file's option) where it is a secret: under a secret name
   * (`password:`, `token:`, `X-Amz-Signature:`), or anywhere in it when `secret` (a declared secret option,
   * such as WebSocket `headers`); and the secrets of any URI among its strings.
   */
  addValue(value: unknown, secret = false, depth = 0): void {
    if (depth > 16) return;
    if (typeof value === 'string') {
      if (secret) this.#add(value);
      if (value.includes(':')) this.addUri(value);
    } else if (Array.isArray(value)) {
      for (const item of value) this.addValue(item, secret, depth + 1);
    } else if (value !== null && typeof value === 'object') {
      for (const [key, item] of Object.entries(value)) this.addValue(item, secret || isSecretName(key), depth + 1);
    } else if (secret && (typeof value === 'number' || typeof value === 'bigint')) {
      this.#add(String(value));
    }
  }

  #add(value: string): void {
    this.#values.add(value);
    this.#forms = undefined;
  }

  /** `text` with every URI redacted and every kept secret, as written, JSON-escaped or percent-encoded, replaced by `***`. */
  conceal(text: string): string {
    let out = redactText(text);
    for (const form of this.#scrubbed()) if (out.includes(form)) out = out.split(form).join('***');
    return out;
  }

  #scrubbed(): string[] {
    if (this.#forms) return this.#forms;
    const forms = new Set<string>();
    for (const value of this.#values) {
      if (value.length < MIN_SCRUBBED_LENGTH || value === '***' || this.#shown.has(value)) continue;
      forms.add(value);
      forms.add(JSON.stringify(value).slice(1, -1));
      forms.add(encodeURIComponent(value));
    }
    // Longest first: a secret that holds another is replaced whole.
    this.#forms = [...forms].filter((f) => f.length >= MIN_SCRUBBED_LENGTH).sort((a, b) => b.length - a.length);
    return this.#forms;
  }
}
