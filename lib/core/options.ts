/**
 * Option validation. Every check throws synchronously, before any I/O, a
 * ManifoldError whose message names the factory, the option, the value it got
 * and what is allowed: `s3Sink: options.commitSizeBytes must be a positive number of bytes, got -1`.
 */
import { inspect } from 'node:util';
import { ErrorCodes, ManifoldError, redactText } from './errors.js';

/**
 * The longest duration an option takes, in milliseconds: 2^31 - 1 (about 24.8 days). Node runs a
 * longer timer after 1 ms, so a `commitIntervalMs` of 25 days would commit after every record.
 */
export const MAX_DURATION_MS = 2_147_483_647;

/**
 * A short, single-line rendering of a bad value. A string is shown with any URI in it redacted; an
 * object or array by its shape only (its keys, its length), never its contents, which may hold a
 * secret in a field the validation did not expect. Values of secret options are never passed here.
 */
export function show(value: unknown): string {
  if (typeof value === 'string') {
    const text = redactText(value);
    return JSON.stringify(text.length > 60 ? `${text.slice(0, 57)}...` : text);
  }
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return value.length === 0 ? '[]' : `an array of ${value.length} ${value.length === 1 ? 'item' : 'items'}`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value);
    const proto: unknown = Object.getPrototypeOf(value);
    const kind = proto === Object.prototype || proto === null ? 'an object' : `an instance of ${(value as { constructor?: { name?: string } }).constructor?.name || 'a class'}`;
    if (keys.length === 0) return kind === 'an object' ? '{}' : kind;
    return `${kind} with keys ${keys.slice(0, 5).join(', ')}${keys.length > 5 ? ', ...' : ''}`;
  }
  return inspect(value);
}

/** Throws the standard invalid-option error. */
export function invalidOption(where: string, name: string, expected: string, value: unknown): never {
  throw new ManifoldError(`${where}: options.${name} must be ${expected}, got ${show(value)}`, {
    code: ErrorCodes.INVALID_OPTION,
    details: { option: name },
  });
}

/** Throws when two options make no sense together, naming both. */
export function conflictingOptions(where: string, a: string, b: string, why: string): never {
  throw new ManifoldError(`${where}: options.${a} and options.${b} ${why}`, {
    code: ErrorCodes.INVALID_OPTION,
    details: { option: a, conflictsWith: b },
  });
}

/**
 * Validates the options object itself and rejects unknown keys, so a typo
 * (`commitSize` for `commitSizeBytes`) fails loudly instead of being ignored.
 * Returns a shallow copy; the caller's object is never kept.
 */
export function checkOptions<T extends object>(where: string, options: T | undefined, known: readonly string[]): T {
  if (options === undefined) return {} as T;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new ManifoldError(`${where}: options must be an object, got ${show(options)}`, { code: ErrorCodes.INVALID_OPTION });
  }
  for (const key of Object.keys(options)) if (!known.includes(key)) unknownOption(where, key, known);
  return { ...options };
}

interface NumberRule {
  /** Smallest allowed value (inclusive). */
  min?: number;
  /** Largest allowed value (inclusive). */
  max?: number;
  integer?: boolean;
  /** Unit named in the message: "bytes", "milliseconds". */
  unit?: string;
  /** Why the bound is what it is, added to the message: "the GetRecords limit". */
  note?: string;
}

/** A number within bounds, or `fallback` when undefined. */
export function numberOption(where: string, name: string, value: unknown, fallback: number, rule: NumberRule = {}): number {
  if (value === undefined) return fallback;
  const { min, max, integer = false, unit } = rule;
  const ok =
    typeof value === 'number' &&
    !Number.isNaN(value) &&
    (integer ? Number.isInteger(value) || value === Infinity : true) &&
    (min === undefined || value >= min) &&
    (max === undefined || value <= max);
  if (!ok) {
    let expected = integer ? 'an integer' : 'a number';
    if (min === 1 && integer) expected = max === undefined ? 'a positive integer' : `a positive integer of at most ${max}`;
    else if (min === 0 && integer) expected = max === undefined ? 'a non-negative integer' : `a non-negative integer of at most ${max}`;
    else if (min !== undefined && max !== undefined) expected += ` from ${min} to ${max}`;
    else if (min !== undefined) expected += ` of at least ${min}`;
    else if (max !== undefined) expected += ` of at most ${max}`;
    const notes = [unit, rule.note].filter(Boolean);
    if (notes.length > 0) expected += ` (${notes.join('; ')})`;
    invalidOption(where, name, expected, value);
  }
  return value as number;
}

/** What a duration above {@link MAX_DURATION_MS} is told. */
export const DURATION_LIMIT_TEXT = `at most ${MAX_DURATION_MS} ms (about 24.8 days: Node runs a longer timer after 1 ms)`;

/** Refuses a duration above {@link MAX_DURATION_MS} (Infinity included) with its own message. */
function checkDurationLimit(where: string, name: string, value: unknown): void {
  if (typeof value === 'number' && value > MAX_DURATION_MS) invalidOption(where, name, `a duration of ${DURATION_LIMIT_TEXT}`, value);
}

/** A duration in milliseconds, from `min` (1 by default) to {@link MAX_DURATION_MS}. */
export function durationOption(where: string, name: string, value: unknown, fallback: number, min = 1): number {
  checkDurationLimit(where, name, value);
  return numberOption(where, name, value, fallback, { min, unit: 'milliseconds' });
}

/** A positive byte count. */
export function bytesOption(where: string, name: string, value: unknown, fallback: number, min = 1): number {
  return numberOption(where, name, value, fallback, { min, integer: true, unit: 'bytes' });
}

/** One of a fixed set of strings. */
export function enumOption<T extends string>(where: string, name: string, value: unknown, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    invalidOption(where, name, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`, value);
  }
  return value as T;
}

/** A boolean. */
export function booleanOption(where: string, name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') invalidOption(where, name, 'true or false', value);
  return value;
}

/** A non-empty string; `undefined` when optional and absent. */
export function stringOption(where: string, name: string, value: unknown, opts: { required: true }): string;
export function stringOption(where: string, name: string, value: unknown, opts?: { required?: false }): string | undefined;
export function stringOption(where: string, name: string, value: unknown, opts: { required?: boolean } = {}): string | undefined {
  if (value === undefined && !opts.required) return undefined;
  if (typeof value !== 'string' || value.length === 0) invalidOption(where, name, 'a non-empty string', value);
  return value;
}

/** A function; `undefined` when absent. */
export function functionOption<F extends (...args: never[]) => unknown>(where: string, name: string, value: unknown): F | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') invalidOption(where, name, 'a function', value);
  return value as F;
}

/** An AbortSignal; `undefined` when absent. */
export function signalOption(where: string, name: string, value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) invalidOption(where, name, 'an AbortSignal', value);
  return value;
}

/** A delimiter given as a string or bytes, returned as a non-empty Buffer. */
export function delimiterOption(where: string, name: string, value: unknown, fallback: string): Buffer {
  if (value === undefined) return Buffer.from(fallback);
  if (typeof value === 'string' && value.length > 0) return Buffer.from(value);
  if (value instanceof Uint8Array && value.length > 0) return Buffer.from(value);
  invalidOption(where, name, 'a non-empty string or Buffer', value);
}

// ---- Option declarations: each connector declares its options once ----

/** What kind of value an option takes; decides its validation, its CLI text form, its JSON Schema and its TypeScript type. */
export type OptionKind = 'string' | 'boolean' | 'integer' | 'number' | 'duration' | 'bytes' | 'enum' | 'strings' | 'custom';

/**
 * One option, declared once: the factory's validation, the command line's URI and
 * pipeline-file keys, the JSON Schema of the pipeline file, the TypeScript option
 * types and the docs tables all derive from it.
 */
export interface OptionSpec<T = unknown> {
  /** The value's type, for the compiler only: no spec has this property. */
  readonly __value?: T;
  readonly kind: OptionKind;
  /** One line for the docs, TSDoc and the JSON Schema. */
  readonly doc: string;
  readonly default?: T;
  /** The default in words, when it is not a constant (`"a third of sessionTimeoutMs"`). */
  readonly defaultText?: string;
  readonly required?: boolean;
  readonly min?: number;
  readonly max?: number;
  /** The allowed values of an `enum`. */
  readonly values?: readonly string[];
  /** Never shown in errors, logs or metrics. */
  readonly secret?: boolean;
  /** Why a bound is what it is, named in errors and docs: "the GetRecords limit". */
  readonly note?: string;
  /**
   * The key in URIs and pipeline files: by default the name without its unit suffix
   * (`commitIntervalMs` -> `commitInterval`, which takes `5m`); `false` for what only a
   * program can pass (clients, functions, signals, objects).
   */
  readonly cli?: string | false;
  /** The TypeScript type of a `custom` option, as written in the option types. */
  readonly type?: string;
  /** Validates a `custom` option's value; `fail(expected)` throws the standard message naming `where` and the option. */
  readonly check?: (value: unknown, fail: (expected: string) => never, where: string) => T;
  /** Turns a `custom` option's text (from a URI or pipeline file) into its value. */
  readonly parse?: (text: string) => unknown;
  /**
   * The keys of a `custom` option whose value is a mapping, which a URI writes one by one as
   * `<key>.<subkey>=` (`tls.ca=/etc/ca.pem`); the command folds them into the mapping.
   */
  readonly subkeys?: readonly string[];
  /** JSON Schema of a `custom` option in a pipeline file. */
  readonly schema?: Record<string, unknown>;
}

type Extra<T> = Omit<Partial<OptionSpec<T>>, 'kind' | 'doc' | '__value'>;

/** Builders for {@link OptionSpec}s: `opt.duration('How often ...', { default: 5000 })`. The extra settings' literal types are kept, so `required` and `default` reach the resolved type. */
export const opt = {
  string: <const E extends Extra<string> = {}>(doc: string, extra?: E) => ({ kind: 'string', doc, ...extra }) as OptionSpec<string> & E,
  boolean: <const E extends Extra<boolean> = {}>(doc: string, extra?: E) => ({ kind: 'boolean', doc, ...extra }) as OptionSpec<boolean> & E,
  integer: <const E extends Extra<number> = {}>(doc: string, extra?: E) => ({ kind: 'integer', doc, ...extra }) as OptionSpec<number> & E,
  number: <const E extends Extra<number> = {}>(doc: string, extra?: E) => ({ kind: 'number', doc, ...extra }) as OptionSpec<number> & E,
  /** Milliseconds; at least 1 unless `min` says otherwise. Text forms: `500ms`, `30s`, `5m`, `12h`. */
  duration: <const E extends Extra<number> = {}>(doc: string, extra?: E) => ({ kind: 'duration', doc, min: 1, ...extra }) as OptionSpec<number> & E,
  /** A whole number of bytes; at least 1 unless `min` says otherwise. Text forms: `512KiB`, `1MiB`. */
  bytes: <const E extends Extra<number> = {}>(doc: string, extra?: E) => ({ kind: 'bytes', doc, min: 1, ...extra }) as OptionSpec<number> & E,
  enum: <const V extends readonly string[], const E extends Extra<V[number]> = {}>(doc: string, values: V, extra?: E) =>
    ({ kind: 'enum', doc, values, ...extra }) as OptionSpec<V[number]> & E,
  /** One string or several (a comma-separated list in a URI). */
  strings: <const E extends Extra<string[]> = {}>(doc: string, extra?: E) => ({ kind: 'strings', doc, ...extra }) as OptionSpec<string[]> & E,
  custom: <T, D extends T | undefined = undefined>(doc: string, extra: Extra<T> & { type: string; check: (value: unknown, fail: (expected: string) => never, where: string) => T; default?: D }) =>
    ({ kind: 'custom', cli: false, ...extra, doc }) as OptionSpec<T> & { default: D },
};

/** The declared options of one factory. */
export type OptionSpecs = Record<string, OptionSpec<any>>; // eslint-disable-line @typescript-eslint/no-explicit-any

type ValueOf<S> = S extends { readonly __value?: infer T } ? Exclude<T, undefined> : never;
type Filled<S> = S extends { required: true } ? true : S extends { default: infer X } ? (undefined extends X ? false : true) : false;

/** What `resolve()` returns: every option, with defaults filled. */
export type ResolvedOptions<D extends OptionSpecs> = { -readonly [K in keyof D]: Filled<D[K]> extends true ? ValueOf<D[K]> : ValueOf<D[K]> | undefined };

/** Levenshtein distance, for "did you mean" hints. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/**
 * The known name closest to `key`: by edit distance (a third of the name's length at most),
 * or one that begins with the other (`commitSize` for `commitSizeBytes`). Case is ignored.
 */
export function closest(key: string, known: readonly string[]): string | undefined {
  const k = key.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const name of known) {
    const n = name.toLowerCase();
    const d = n.startsWith(k) || k.startsWith(n) ? Math.min(1, Math.abs(n.length - k.length)) : distance(k, n);
    if (d < bestDistance) {
      best = name;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/** The standard unknown-option error, with a "did you mean" hint. */
export function unknownOption(where: string, key: string, known: readonly string[], what = 'option'): never {
  const hint = closest(key, known);
  throw new ManifoldError(`${where}: unknown ${what} ${JSON.stringify(key)}${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ''}; known ${what}s are ${known.join(', ')}`, {
    code: ErrorCodes.INVALID_OPTION,
    details: { option: key, ...(hint ? { suggestion: hint } : {}) },
  });
}

/**
 * Validates one declared option's value (already in its library form), filling its default. A secret
 * option's value is never shown: whatever check refused it, its message ends `got "(hidden)"`.
 */
function checkValue(where: string, name: string, spec: OptionSpec, value: unknown): unknown {
  if (value === undefined) {
    if (spec.required) invalidOption(where, name, describeExpected(spec), value);
    return spec.default;
  }
  if (!spec.secret) return checkGiven(where, name, spec, value);
  try {
    return checkGiven(where, name, spec, value);
  } catch (error) {
    if (!(error instanceof ManifoldError) || error.code !== ErrorCodes.INVALID_OPTION) throw error;
    // Our messages end with ", got <value>": cut off. A custom check that shows the value redacted (a URL with its
    // password as ***) is trusted, unless its message holds any text of the value as it was given (a password in
    // the wrong field of `sasl`).
    const at = error.message.indexOf(', got ');
    if (at === -1 || (spec.kind === 'custom' && !textsOf(value).some((text) => error.message.slice(at).includes(text)))) throw error;
    throw new ManifoldError(`${error.message.slice(0, at)}, got "(hidden)"`, { code: ErrorCodes.INVALID_OPTION, details: { option: error.option ?? name } });
  }
}

/** Every string in `value` (its fields', its items'), for telling whether a message shows any of it. */
function textsOf(value: unknown, depth = 0): string[] {
  if (typeof value === 'string') return value === '' ? [] : [value];
  if (value instanceof URL) return [value.href];
  if (depth > 8 || value === null || typeof value !== 'object') return [];
  return Object.values(value).flatMap((v) => textsOf(v, depth + 1));
}

function checkGiven(where: string, name: string, spec: OptionSpec, value: unknown): unknown {
  const shown = spec.secret ? '(hidden)' : value;
  const fail = (expected: string): never => invalidOption(where, name, expected, shown);
  switch (spec.kind) {
    case 'string':
      if (typeof value !== 'string' || value.length === 0) fail('a non-empty string');
      return value;
    case 'boolean':
      return booleanOption(where, name, value, false);
    case 'integer':
      return numberOption(where, name, value, 0, { min: spec.min, max: spec.max, integer: true, note: spec.note });
    case 'number':
      return numberOption(where, name, value, 0, { min: spec.min, max: spec.max, note: spec.note });
    case 'duration':
      if (spec.max === undefined || spec.max > MAX_DURATION_MS) checkDurationLimit(where, name, value);
      return numberOption(where, name, value, 0, { min: spec.min, max: spec.max, unit: 'milliseconds', note: spec.note });
    case 'bytes':
      return numberOption(where, name, value, 0, { min: spec.min, max: spec.max, integer: true, unit: 'bytes', note: spec.note });
    case 'enum':
      return enumOption(where, name, value, spec.values ?? [], value as string);
    case 'strings': {
      const list = typeof value === 'string' ? [value] : value;
      if (!Array.isArray(list) || list.length === 0 || !list.every((s) => typeof s === 'string' && s.length > 0)) fail('a non-empty string or a non-empty array of them');
      return [...(list as string[])];
    }
    case 'custom':
      return spec.check ? spec.check(value, fail, where) : value;
  }
}

function describeExpected(spec: OptionSpec): string {
  switch (spec.kind) {
    case 'enum':
      return `one of ${(spec.values ?? []).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'strings':
      return 'a non-empty string or a non-empty array of them';
    case 'boolean':
      return 'true or false';
    case 'custom':
      return spec.type ?? 'a value';
    default:
      return spec.kind === 'string' ? 'a non-empty string' : `a ${spec.kind}`;
  }
}

/** The URI / pipeline-file key of an option, or undefined when only a program can pass it. */
export function cliKey(name: string, spec: OptionSpec): string | undefined {
  if (spec.cli === false) return undefined;
  if (typeof spec.cli === 'string') return spec.cli;
  if (spec.kind === 'duration') return name.replace(/Ms$/, '');
  if (spec.kind === 'bytes') return name.replace(/Bytes$/, '');
  return name;
}

/** The declared options of one factory, and what derives from them. */
export interface OptionDeclaration<D extends OptionSpecs> {
  /** The factory's name, as errors name it. */
  readonly where: string;
  readonly specs: D;
  /** Every option name. */
  readonly names: readonly (keyof D & string)[];
  /**
   * Validates `options` (an object whose keys are all declared) and fills the defaults;
   * returns a fresh object, never the caller's. Throws INVALID_OPTION naming the option.
   */
  resolve(options: unknown): ResolvedOptions<D>;
}

/** Any declaration, for what reads declarations without resolving through them (the CLI, docs, JSON Schema). */
export interface DeclaredOptions {
  readonly where: string;
  readonly specs: OptionSpecs;
  readonly names: readonly string[];
}

/** Declares a factory's options once; see {@link OptionSpec}. */
export function defineOptions<const D extends OptionSpecs>(where: string, specs: D): OptionDeclaration<D> {
  const names = Object.keys(specs) as (keyof D & string)[];
  return {
    where,
    specs,
    names,
    resolve(options) {
      if (options === undefined) options = {};
      if (options === null || typeof options !== 'object' || Array.isArray(options)) {
        throw new ManifoldError(`${where}: options must be an object, got ${show(options)}`, { code: ErrorCodes.INVALID_OPTION });
      }
      for (const key of Object.keys(options)) if (!Object.hasOwn(specs, key)) unknownOption(where, key, names);
      const out: Record<string, unknown> = {};
      for (const name of names) out[name] = checkValue(where, name, specs[name]!, (options as Record<string, unknown>)[name]);
      return out as ResolvedOptions<D>;
    },
  };
}

/** Options most streams take, declared once. */
export const common = {
  signal: (what = 'stream') =>
    opt.custom<AbortSignal>(`Destroys the ${what} when aborted.`, {
      type: 'AbortSignal',
      check: (value, fail) => (value instanceof AbortSignal ? value : fail('an AbortSignal')),
    }),
  highWaterMark: (fallback: number) => opt.integer('Object-mode high-water mark, in messages.', { default: fallback, min: 1, cli: false }),
  /** A record delimiter: text in URIs (`%0A`), a string or bytes in a program. */
  delimiter: (doc: string, fallback: string) =>
    opt.custom<Buffer, Buffer>(doc, {
      type: 'string | Buffer',
      default: Buffer.from(fallback),
      defaultText: JSON.stringify(fallback),
      cli: 'delimiter',
      schema: { type: 'string', minLength: 1 },
      check: (value, fail) => {
        if (typeof value === 'string' && value.length > 0) return Buffer.from(value);
        if (value instanceof Uint8Array && value.length > 0) return Buffer.from(value);
        return fail('a non-empty string or Buffer');
      },
    }),
};
