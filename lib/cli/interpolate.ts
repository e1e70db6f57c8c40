/**
 * `${NAME}` and `${NAME:-default}` in a pipeline file, from the environment: a password or
 * token need not be written in the file. Applied to the parsed YAML document's values, so
 * quoting stays YAML's and a substitution can only ever produce a value, never structure.
 */
import { createRequire } from 'node:module';
import type { Document } from 'yaml';
import { UsageError, subject } from './errors.js';

let yamlModule: typeof import('yaml') | undefined;

/** The yaml package, loaded at its first use: it takes about 45 ms to load, which a command without a pipeline file need not pay at start. */
export function yaml(): typeof import('yaml') {
  return (yamlModule ??= createRequire(import.meta.url)('yaml') as typeof import('yaml'));
}

// `$${` is a literal `${`, as in Docker Compose.
const REFERENCE = /\$(\$?)\{([^}]*)\}/g;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const WHOLE_REFERENCE = /^\$\{[^}]*\}$/;

/**
 * What an unquoted value that is one reference becomes, as YAML reads a plain scalar:
 * `metricsPort: ${PORT}` is the number 9464, `quiet: ${QUIET}` true or false.
 */
function plainScalar(text: string): unknown {
  if (/^[-+]?\d+(\.\d+)?$/.test(text)) return Number(text);
  if (/^(true|false)$/i.test(text)) return text.toLowerCase() === 'true';
  return text;
}

/**
 * Replaces, in every value of `document` (not in mapping keys), `${NAME}` with the variable's
 * value (an unset variable is a UsageError naming it, and where it is used) and
 * `${NAME:-default}` with the value, or the default when the variable is unset or empty.
 * Returns how each changed value would be quoted in a message, with the file's own text
 * quoted so: messages about a value show what the file says (`"${AMQP_PASSWORD}"`), never what
 * the environment held (see {@link concealSubstitutions}). `display` names the file in errors.
 */
export function interpolate(display: string, document: Document, env: NodeJS.ProcessEnv = process.env): Map<string, string> {
  const { isMap, isPair, isScalar, isSeq } = yaml();
  const substituted = new Map<string, string>();
  const text = (value: string, path: string): string => {
    if (!value.includes('${')) return value;
    const out = value.replace(REFERENCE, (reference: string, escaped: string, body: string) => {
      if (escaped) return reference.slice(1);
      const at = body.indexOf(':-');
      const name = at === -1 ? body : body.slice(0, at);
      if (!NAME.test(name)) {
        throw new UsageError(`${subject(display)} ${path}: ${JSON.stringify(reference)} is not a variable reference; write \${NAME} or \${NAME:-default} ($\${ for a literal \${)`);
      }
      const set = env[name];
      if (at !== -1) return set === undefined || set === '' ? body.slice(at + 2) : set;
      if (set === undefined) {
        throw new UsageError(`${subject(display)} ${path} uses the environment variable ${name}, which is not set: set it, or give a default with \${${name}:-default}`);
      }
      return set;
    });
    if (out !== value) substituted.set(JSON.stringify(out), JSON.stringify(value));
    return out;
  };
  const walk = (node: unknown, path: string): void => {
    if (isScalar(node)) {
      if (typeof node.value !== 'string') return;
      const before = node.value;
      const after = text(before, path);
      node.value = node.type === 'PLAIN' && WHOLE_REFERENCE.test(before) ? plainScalar(after) : after;
      // Option errors end with `got <value>`: a number shows unquoted there.
      if (typeof node.value !== 'string') substituted.set(`got ${String(node.value)}`, `got ${JSON.stringify(before)}`);
    } else if (isMap(node)) {
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        walk(pair.value, path ? `${path}.${key}` : key);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => walk(item, `${path}[${i}]`));
    }
  };
  walk(document.contents, '');
  return substituted;
}

/**
 * `message` with every substituted value that it quotes (as JSON, the way option errors quote
 * what they got) shown as the file writes it, so an error never reveals an environment value.
 */
export function concealSubstitutions(message: string, substituted: ReadonlyMap<string, string>): string {
  let out = message;
  for (const [shown, original] of substituted) out = out.split(shown).join(original);
  return out;
}
