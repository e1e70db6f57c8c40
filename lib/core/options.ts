/**
 * Option validation. Every check throws synchronously, before any I/O, a
 * ManifoldError whose message names the factory, the option, the value it got
 * and what is allowed: `s3Sink: options.commitSizeBytes must be a positive number of bytes, got -1`.
 */
import { inspect } from 'node:util';
import { ErrorCodes, ManifoldError } from './errors.js';

/** A short, single-line rendering of a bad value (secrets are never passed here). */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  return inspect(value, { depth: 1, breakLength: Infinity, maxArrayLength: 5, maxStringLength: 60 });
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
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      const hint = known.find((k) => k.toLowerCase().startsWith(key.toLowerCase()) || key.toLowerCase().startsWith(k.toLowerCase()));
      throw new ManifoldError(
        `${where}: unknown option ${JSON.stringify(key)}${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ''}; known options are ${known.join(', ')}`,
        { code: ErrorCodes.INVALID_OPTION, details: { option: key } },
      );
    }
  }
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
    if (unit) expected += ` (${unit})`;
    invalidOption(where, name, expected, value);
  }
  return value as number;
}

/** A positive duration in milliseconds. */
export function durationOption(where: string, name: string, value: unknown, fallback: number, min = 1): number {
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
