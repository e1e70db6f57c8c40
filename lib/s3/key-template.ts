/**
 * `keyTemplate`: the partition path of each record, from its event time and its fields.
 *
 * A template is literal text and tokens separated by `/` into segments:
 *
 * - `{yyyy}` `{MM}` `{dd}` `{HH}` `{mm}`: the event time (`message.timestamp`, else arrival) in `timeZone`.
 * - `{key}`: the message key; `{header.<name>}`: a header; `{json.<a>.<b>}`: a field of the payload parsed as JSON
 *   (parsed once per record, only when the template has a json token).
 *
 * Every value is made safe for a key and a folder name: characters other than letters, digits, `-`, `_`, `.`
 * and `=` become `_`, a leading `.` becomes `_` (so no `.`, `..` or hidden segment), at most 64 characters; a
 * missing field, a payload that is not JSON, or a value that is not a string, number or boolean gives `_unknown`,
 * an empty one `_empty`. The rendered path is thus segments of safe characters, never empty, `.` or `..`.
 */
import { ErrorCodes, ManifoldError } from '../core/errors.js';
import type { Message } from '../core/message.js';

/** A partition folder name (a rendered segment): safe characters, not starting with `.`. */
export const PARTITION_SEGMENT = /^[A-Za-z0-9_=-][A-Za-z0-9._=-]{0,254}$/;
/** Segments a template may have. */
export const MAX_SEGMENTS = 16;
/** Longest rendered partition path, in characters (all ASCII): keeps the buffer paths and keys well inside the limits. */
export const MAX_PARTITION_LENGTH = 512;
/** What a missing field, a payload that is not JSON, or a non-scalar value gives. */
export const UNKNOWN = '_unknown';
/** What an empty value gives. */
export const EMPTY = '_empty';
const MAX_VALUE_LENGTH = 64;
const MAX_SEGMENT_LENGTH = 200;

type Part =
  | { kind: 'literal'; text: string }
  | { kind: 'time'; unit: 'yyyy' | 'MM' | 'dd' | 'HH' | 'mm' }
  | { kind: 'key' }
  | { kind: 'header'; name: string }
  | { kind: 'json'; path: string[] };

const TIME_UNITS = new Set(['yyyy', 'MM', 'dd', 'HH', 'mm']);
const LITERAL = /^[A-Za-z0-9._=-]*$/;
const FIELD_NAME = /^[A-Za-z0-9_-]+$/;

function invalid(where: string, template: string, why: string): never {
  throw new ManifoldError(`${where}: options.keyTemplate ${JSON.stringify(template)} ${why}`, {
    code: ErrorCodes.INVALID_OPTION,
    details: { option: 'keyTemplate' },
  });
}

/** Makes a field's value safe as a key segment and a folder name. */
export function sanitizeValue(value: string): string {
  if (value.length === 0) return EMPTY;
  let out = '';
  for (const ch of value) {
    if (out.length >= MAX_VALUE_LENGTH) break;
    out += /^[A-Za-z0-9._=-]$/.test(ch) ? ch : '_';
  }
  if (out.startsWith('.')) out = `_${out.slice(1)}`;
  return out;
}

/** The parts of the event time in a zone, cached per second (every zone's offset is whole seconds). */
class Clock {
  readonly #format: Intl.DateTimeFormat | undefined;
  #second = Number.NaN;
  #parts: Record<'yyyy' | 'MM' | 'dd' | 'HH' | 'mm', string> = { yyyy: '', MM: '', dd: '', HH: '', mm: '' };

  constructor(timeZone: string) {
    this.#format =
      timeZone === 'UTC'
        ? undefined
        : new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  }

  parts(ms: number): Record<'yyyy' | 'MM' | 'dd' | 'HH' | 'mm', string> {
    const second = Math.floor(ms / 1000);
    if (second === this.#second) return this.#parts;
    this.#second = second;
    if (this.#format === undefined) {
      const iso = new Date(second * 1000).toISOString(); // 2026-11-28T04:15:00.000Z (years 0-9999)
      this.#parts = { yyyy: iso.slice(0, 4), MM: iso.slice(5, 7), dd: iso.slice(8, 10), HH: iso.slice(11, 13), mm: iso.slice(14, 16) };
    } else {
      const got: Record<string, string> = {};
      for (const part of this.#format.formatToParts(new Date(second * 1000))) got[part.type] = part.value;
      this.#parts = { yyyy: (got.year ?? '').padStart(4, '0'), MM: got.month ?? '', dd: got.day ?? '', HH: got.hour ?? '', mm: got.minute ?? '' };
    }
    return this.#parts;
  }
}

/** Checks `timeZone` (an IANA name, or UTC); throws INVALID_OPTION naming it. */
export function checkTimeZone(where: string, timeZone: string): void {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
  } catch {
    throw new ManifoldError(`${where}: options.timeZone must be an IANA time zone name such as "UTC" or "Europe/Paris", got ${JSON.stringify(timeZone)}`, {
      code: ErrorCodes.INVALID_OPTION,
      details: { option: 'timeZone' },
    });
  }
}

/** A parsed, validated keyTemplate. */
export class KeyTemplate {
  readonly source: string;
  readonly #segments: Part[][];
  readonly #json: boolean;
  readonly #clock: Clock;

  /** Parses and validates `template`; throws INVALID_OPTION naming keyTemplate (or timeZone). */
  constructor(where: string, template: string, timeZone: string) {
    this.source = template;
    if (template.length === 0) invalid(where, template, 'is empty: leave keyTemplate out for the default layout');
    if (template.startsWith('/') || template.endsWith('/')) invalid(where, template, 'must not start or end with "/" (the prefix is a folder already)');
    // Braces first, over the whole template, so a "/" inside a token is named as such.
    for (let depth = 0, i = 0; i < template.length; i++) {
      const ch = template[i];
      if (ch === '{') depth += 1;
      else if (ch === '}') depth -= 1;
      else if (ch === '/' && depth > 0) invalid(where, template, 'has a "/" inside a token: a token names one value');
      if (depth < 0) invalid(where, template, 'has a "}" without its "{"');
      if (depth > 1) invalid(where, template, 'has a "{" inside a token');
      if (i === template.length - 1 && depth !== 0) invalid(where, template, 'has a "{" without its "}"');
    }
    const segments = template.split('/');
    if (segments.length > MAX_SEGMENTS) invalid(where, template, `has ${segments.length} segments; at most ${MAX_SEGMENTS}`);
    this.#segments = segments.map((segment) => parseSegment(where, template, segment));
    this.#json = this.#segments.some((parts) => parts.some((p) => p.kind === 'json'));
    checkTimeZone(where, timeZone);
    this.#clock = new Clock(timeZone);
  }

  /** The partition path of `message` (segments joined by `/`), arriving at `arrivalMs` when it carries no timestamp. */
  render(message: Pick<Message, 'data' | 'key' | 'headers' | 'timestamp'>, arrivalMs: number): string {
    const ts = message.timestamp;
    const time = this.#clock.parts(typeof ts === 'number' && Number.isFinite(ts) && ts >= 0 && ts < 253_402_300_800_000 ? ts : arrivalMs);
    let json: unknown;
    let parsed = !this.#json;
    let out = '';
    for (let s = 0; s < this.#segments.length; s++) {
      let segment = '';
      for (const part of this.#segments[s]!) {
        switch (part.kind) {
          case 'literal':
            segment += part.text;
            break;
          case 'time':
            segment += time[part.unit];
            break;
          case 'key':
            segment += message.key === undefined || message.key === null ? UNKNOWN : sanitizeValue(String(message.key));
            break;
          case 'header': {
            const value = message.headers && Object.hasOwn(message.headers, part.name) ? message.headers[part.name] : undefined;
            segment += value === undefined || value === null ? UNKNOWN : sanitizeValue(String(value));
            break;
          }
          case 'json': {
            if (!parsed) {
              parsed = true;
              try {
                json = JSON.parse(message.data.toString('utf8'));
              } catch {
                json = undefined;
              }
            }
            segment += jsonValue(json, part.path);
            break;
          }
        }
      }
      // A folder name stays well under the file system's 255 bytes.
      out += (s > 0 ? '/' : '') + (segment.length > MAX_SEGMENT_LENGTH ? segment.slice(0, MAX_SEGMENT_LENGTH) : segment);
    }
    return out.length > MAX_PARTITION_LENGTH ? out.slice(0, MAX_PARTITION_LENGTH).replace(/\/+$/, '') : out;
  }

  /** The longest partition path this template can render, in bytes (all ASCII). */
  get maxLength(): number {
    let total = this.#segments.length - 1;
    for (const parts of this.#segments) {
      let length = 0;
      for (const part of parts) length += part.kind === 'literal' ? part.text.length : part.kind === 'time' ? part.unit.length : MAX_VALUE_LENGTH;
      total += Math.min(length, MAX_SEGMENT_LENGTH);
    }
    return Math.min(total, MAX_PARTITION_LENGTH);
  }
}

function jsonValue(json: unknown, path: string[]): string {
  let at: unknown = json;
  for (const name of path) {
    if (typeof at !== 'object' || at === null || Array.isArray(at) || !Object.hasOwn(at, name)) return UNKNOWN;
    at = (at as Record<string, unknown>)[name];
  }
  if (typeof at === 'string') return sanitizeValue(at);
  if ((typeof at === 'number' && Number.isFinite(at)) || typeof at === 'boolean') return sanitizeValue(String(at));
  return UNKNOWN;
}

function parseSegment(where: string, template: string, segment: string): Part[] {
  if (segment.length === 0) invalid(where, template, 'has an empty segment ("//")');
  const parts: Part[] = [];
  let literalOnly = true;
  let i = 0;
  while (i < segment.length) {
    const open = segment.indexOf('{', i);
    const close = segment.indexOf('}', i);
    if (close >= 0 && (open < 0 || close < open)) invalid(where, template, `has a "}" without its "{"`);
    const text = segment.slice(i, open < 0 ? segment.length : open);
    if (text.length > 0) {
      if (!LITERAL.test(text)) invalid(where, template, `has ${JSON.stringify(text)} outside a token: only letters, digits, "-", "_", "." and "=" may be (and "/" between segments)`);
      parts.push({ kind: 'literal', text });
    }
    if (open < 0) break;
    const end = segment.indexOf('}', open);
    if (end < 0) invalid(where, template, 'has a "{" without its "}"');
    const token = segment.slice(open + 1, end);
    if (token.includes('{')) invalid(where, template, 'has a "{" inside a token');
    parts.push(parseToken(where, template, token));
    literalOnly = false;
    i = end + 1;
  }
  if (literalOnly || parts[0]?.kind === 'literal') {
    const first = parts[0];
    if (first?.kind === 'literal' && first.text.startsWith('.')) invalid(where, template, `has a segment starting with "." (${JSON.stringify(segment)}): no ".", ".." or hidden segment`);
  }
  return parts;
}

function parseToken(where: string, template: string, token: string): Part {
  if (TIME_UNITS.has(token)) return { kind: 'time', unit: token as 'yyyy' };
  if (token === 'key') return { kind: 'key' };
  if (token.startsWith('header.')) {
    const name = token.slice('header.'.length);
    if (!FIELD_NAME.test(name)) invalid(where, template, `has {${token}}: a header name is letters, digits, "_" or "-"`);
    return { kind: 'header', name };
  }
  if (token.startsWith('json.')) {
    const path = token.slice('json.'.length).split('.');
    if (path.some((name) => !FIELD_NAME.test(name))) invalid(where, template, `has {${token}}: a JSON field path is names of letters, digits, "_" or "-" joined by "."`);
    return { kind: 'json', path };
  }
  invalid(where, template, `has an unknown token {${token}}: known are {yyyy} {MM} {dd} {HH} {mm} {key} {header.<name>} {json.<field>[.<field>...]}`);
}
