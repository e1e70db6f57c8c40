/** Logging for the command: human lines by default, pino JSON with --log-format json. Always on stderr. */
import { createRequire } from 'node:module';
import type pinoModule from 'pino';
import { isSecretName, redactText } from '../core/errors.js';

export interface Logger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
  flush(): void;
}

export type LogFormat = 'text' | 'json';

/**
 * Characters that must not reach a terminal as they are: C0 controls (ESC starts an escape sequence,
 * CR rewrites the line, LF forges one), DEL, C1 controls (0x9b is a CSI in some terminals), the line
 * and paragraph separators, and the bidirectional overrides that make text read other than it is.
 * Tab is left: it moves the cursor and no more. Log lines carry text from outside (a payload excerpt,
 * a server's error text), so every line goes through {@link escapeControls}.
 */
const CONTROLS = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `text` with every control character written as an escape: `\n`, `\r`, `\u001b`. */
export function escapeControls(text: string): string {
  return text.replace(CONTROLS, (c) => (c === '\n' ? '\\n' : c === '\r' ? '\\r' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

/** A field value as a text line shows it: quoted when it holds a space, a quote, a `=` or a control character. */
function fieldText(value: unknown): string {
  if (typeof value !== 'string') return escapeControls(String(value));
  // JSON.stringify escapes C0 controls, quotes and backslashes; escapeControls the rest (C1, bidi overrides).
  return value === '' || /[\s"=\\\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/.test(value) ? escapeControls(JSON.stringify(value)) : value;
}

/** What JSON leaves as it is: DEL, C1 controls, the separators and the bidi overrides (it escapes C0 itself). */
const UNESCAPED_BY_JSON = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function escapeForJson(text: string): string {
  return text.replace(UNESCAPED_BY_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * The fields as a line may show them: a field named as a secret's (`password`, `token`) is `***`, text is
 * redacted (URIs, the command's known secrets), and anything but a number, boolean or null is redacted as text.
 */
function redactFields(fields: Record<string, unknown>, redact: (text: string) => string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    out[k] = isSecretName(k) ? '***' : typeof v === 'string' ? redact(v) : typeof v === 'number' || typeof v === 'boolean' || v === null ? v : redact(String(v));
  }
  return out;
}

/** String fields with what JSON leaves as it is escaped, for pino. */
function escapeFields(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = typeof v === 'string' ? escapeForJson(v) : v;
  return out;
}

/**
 * A logger writing to `stream` (stderr by default); `quiet` keeps warnings and errors only. Every message
 * and field goes through `redact` (by default: URIs redacted, see redactText) before it is written: no
 * line shows a secret, whatever event or error it came from.
 */
export function createLogger(format: LogFormat, quiet: boolean, stream: NodeJS.WritableStream = process.stderr, redact: (text: string) => string = redactText): Logger {
  if (format === 'json') {
    // Loaded here, for --log-format json only: pino takes about 20 ms to load, at every start of the command.
    const pino = createRequire(import.meta.url)('pino') as typeof pinoModule;
    const logger = pino({ level: quiet ? 'warn' : 'info', base: { name: 'manifold' } }, pino.destination({ dest: 2, sync: true }));
    const json = (f: Record<string, unknown>): Record<string, unknown> => escapeFields(redactFields(f, redact));
    return {
      info: (f, m) => logger.info(json(f), escapeForJson(redact(m))),
      warn: (f, m) => logger.warn(json(f), escapeForJson(redact(m))),
      error: (f, m) => logger.error(json(f), escapeForJson(redact(m))),
      flush: () => logger.flush(),
    };
  }
  const line = (level: string, fields: Record<string, unknown>, message: string): void => {
    const extra = Object.entries(redactFields(fields, redact))
      .filter(([k]) => k !== 'role' && k !== 'event')
      .map(([k, v]) => `${k}=${fieldText(v)}`)
      .join(' ');
    stream.write(`${new Date().toISOString()} ${level} ${escapeControls(redact(message))}${extra ? ` ${extra}` : ''}\n`);
  };
  return {
    info: (f, m) => {
      if (!quiet) line('info', f, m);
    },
    warn: (f, m) => line('warn', f, m),
    error: (f, m) => line('error', f, m),
    flush: () => {},
  };
}
