/**
 * What the command derives from the connectors' option declarations: URI and
 * pipeline-file keys read into library options (text coerced with units), and the
 * JSON Schema of those keys.
 */
import { isSecretName, redactText } from '../core/errors.js';
import { closest, cliKey, DURATION_LIMIT_TEXT, MAX_DURATION_MS, type DeclaredOptions, type OptionSpec } from '../core/options.js';
import { UsageError, subject } from './errors.js';
import { DURATION_UNITS_TEXT, isUnitless, parseBytes, parseDuration } from './units.js';

/** A pipeline-file value, or a URI query value (always text). */
type Raw = unknown;

/**
 * A refused value as a message shows it: text (with any URI in it redacted) and numbers as they are; a
 * mapping or a list by its shape only, since a secret may sit anywhere in a value of the wrong type.
 */
export function shownValue(value: Raw): string {
  if (typeof value === 'string') return JSON.stringify(redactText(value));
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : `a list of ${value.length}`;
  if (value !== null && typeof value === 'object') return Object.keys(value).length === 0 ? 'an empty mapping' : 'a mapping';
  return JSON.stringify(value) ?? String(value);
}

/**
 * `display` is where the value was given (a URI, a pipeline file); empty for a command-line flag, whose `key` says it all.
 * The value of a secret option, or of a key named as a secret's (`token`, `password`), is never shown.
 */
function wrong(display: string, key: string, spec: OptionSpec, expected: string, value: Raw, hint = ''): never {
  const got = spec.secret || isSecretName(key) ? '(hidden)' : shownValue(value);
  throw new UsageError(`${display ? `${subject(display)} ${key}` : key} must be ${expected}, got ${got}${hint}`);
}

/**
 * Coerces one value from its text (or YAML) form to its library form, per its declaration.
 * `typed`: the value comes from a pipeline file, where numbers and booleans are written as
 * such, so `"9464"` is not taken for a number (sizes and durations still take text with units).
 */
export function coerce(display: string, key: string, spec: OptionSpec, value: Raw, typed = false): unknown {
  if (typed && (spec.kind === 'integer' || spec.kind === 'number') && typeof value !== 'number') {
    wrong(display, key, spec, `${spec.kind === 'integer' ? 'a whole number' : 'a number'}${range(spec)}`, value);
  }
  if (typed && spec.kind === 'boolean' && typeof value !== 'boolean') wrong(display, key, spec, 'true or false', value);
  switch (spec.kind) {
    case 'string':
      if (typeof value !== 'string' || value.length === 0) wrong(display, key, spec, 'a non-empty string', value);
      return value;
    case 'boolean':
      if (typeof value === 'boolean') return value;
      return (typeof value === 'string' ? booleanText(value) : undefined) ?? wrong(display, key, spec, 'true or false', value);
    case 'integer':
    case 'number': {
      const n = typeof value === 'number' ? value : typeof value === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(value) ? Number(value) : NaN;
      const whole = spec.kind === 'integer';
      const ok = Number.isFinite(n) && (!whole || Number.isInteger(n)) && (spec.min === undefined || n >= spec.min) && (spec.max === undefined || n <= spec.max);
      if (!ok) wrong(display, key, spec, `${whole ? 'a whole number' : 'a number'}${range(spec)}`, value);
      return n;
    }
    case 'duration': {
      // Text needs a unit ("30" could be ms or s); a pipeline file's YAML number is milliseconds, as the library takes it.
      const ms = typeof value === 'string' || typeof value === 'number' ? parseDuration(value) : undefined;
      // Node runs a longer timer after 1 ms: `25d` would be a 1 ms interval.
      if (ms !== undefined && ms > MAX_DURATION_MS && (spec.max === undefined || spec.max > MAX_DURATION_MS)) {
        wrong(display, key, spec, `a duration of ${DURATION_LIMIT_TEXT}`, value);
      }
      if (ms === undefined || ms < (spec.min ?? 1) || (spec.max !== undefined && ms > spec.max)) {
        const hint = isUnitless(value)
          ? `, which has no unit: write ${String(value).trim()}s or ${String(value).trim()}ms (units: ${DURATION_UNITS_TEXT})`
          : typeof value === 'string' && ms === undefined ? ` (units: ${DURATION_UNITS_TEXT})` : '';
        wrong(display, key, spec, `a duration such as 500ms, 30s, 5m or 12h${range(spec, 'ms')}`, value, hint);
      }
      return ms;
    }
    case 'bytes': {
      const bytes = typeof value === 'string' || typeof value === 'number' ? parseBytes(value) : undefined;
      if (bytes === undefined || bytes < (spec.min ?? 1) || (spec.max !== undefined && bytes > spec.max)) wrong(display, key, spec, `a size such as 512KiB, 1MiB or 1048576${range(spec, 'bytes')}`, value);
      return bytes;
    }
    case 'enum':
      if (typeof value !== 'string' || !spec.values?.includes(value)) wrong(display, key, spec, `one of ${(spec.values ?? []).join(', ')}`, value);
      return value;
    case 'strings': {
      const list = Array.isArray(value) ? value : typeof value === 'string' ? value.split(',') : undefined;
      if (!list || list.length === 0 || !list.every((s) => typeof s === 'string' && s.length > 0)) wrong(display, key, spec, 'a comma-separated list of names', value);
      return list;
    }
    case 'custom': {
      const parsed = spec.parse && typeof value === 'string' ? spec.parse(value) : value;
      return spec.check ? spec.check(parsed, (expected) => wrong(display, key, spec, expected, value), display) : parsed;
    }
  }
}

function range(spec: OptionSpec, unit = ''): string {
  const u = unit ? ` ${unit}` : '';
  const note = spec.note ? ` (${spec.note})` : '';
  if (spec.min !== undefined && spec.max !== undefined) return ` from ${spec.min} to ${spec.max}${u}${note}`;
  if (spec.min !== undefined && spec.min > (spec.kind === 'integer' || spec.kind === 'number' ? -Infinity : 1)) return ` of at least ${spec.min}${u}${note}`;
  if (spec.max !== undefined) return ` of at most ${spec.max}${u}${note}`;
  return '';
}

/** The URI / pipeline-file keys of a declaration, each with its option name. */
export function cliKeys(declaration: DeclaredOptions, except: readonly string[] = []): Map<string, string> {
  const keys = new Map<string, string>();
  for (const name of declaration.names) {
    if (except.includes(name)) continue;
    const key = cliKey(name, declaration.specs[name]!);
    if (key !== undefined) keys.set(key, name);
  }
  return keys;
}

/**
 * Reads `params` (URI query values and pipeline-file options) into library options by the
 * declaration(s): keys are the CLI keys, values are coerced from text. A key no declaration
 * knows is refused with a hint, unless `passThrough` says it belongs to someone else.
 * Options named in `except` are set from the URI itself, not from keys. `typed`: every value
 * comes from a pipeline file (see {@link coerce}).
 */
export function readOptions(
  display: string,
  params: Record<string, Raw>,
  declarations: ReadonlyArray<DeclaredOptions>,
  extra: { except?: readonly string[]; passThrough?: (key: string) => boolean; typed?: boolean } = {},
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const known = new Map<string, { name: string; spec: OptionSpec }>();
  for (const declaration of declarations) {
    for (const [key, name] of cliKeys(declaration, extra.except)) known.set(key, { name, spec: declaration.specs[name]! });
  }
  for (const [key, value] of Object.entries(foldSubkeys(display, params, known))) {
    const entry = known.get(key);
    if (!entry) {
      if (extra.passThrough?.(key)) continue;
      const hint = closest(key, [...known.keys()]);
      throw new UsageError(`${subject(display)} unknown option ${JSON.stringify(key)}${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ''}; known options are ${[...known.keys()].join(', ')}`);
    }
    if (value === undefined) continue;
    out[entry.name] = coerce(display, key, entry.spec, value, extra.typed);
  }
  return out;
}

/** A boolean as a URI writes it (`true`, `yes`, `1`, `on` and their opposites, any case); undefined for other text. */
function booleanText(value: string): boolean | undefined {
  const v = value.toLowerCase();
  if (['true', 'yes', '1', 'on'].includes(v)) return true;
  if (['false', 'no', '0', 'off'].includes(v)) return false;
  return undefined;
}

/**
 * `tls.ca=...&tls.cert=...` as one `tls` mapping, for an option that declares `subkeys`; `tls=true`
 * beside them adds nothing, `tls=false` beside them is a contradiction. Other keys pass unchanged.
 */
function foldSubkeys(display: string, params: Record<string, Raw>, known: Map<string, { name: string; spec: OptionSpec }>): Record<string, Raw> {
  const out: Record<string, Raw> = {};
  const folded = new Map<string, Record<string, Raw>>();
  for (const [key, value] of Object.entries(params)) {
    const dot = key.indexOf('.');
    const parent = dot > 0 ? known.get(key.slice(0, dot)) : undefined;
    if (!parent?.spec.subkeys) {
      out[key] = value;
      continue;
    }
    const prefix = key.slice(0, dot);
    const subkey = key.slice(dot + 1);
    if (!parent.spec.subkeys.includes(subkey)) {
      const hint = closest(subkey, parent.spec.subkeys);
      throw new UsageError(`${subject(display)} unknown option ${JSON.stringify(key)}${hint ? ` (did you mean "${prefix}.${hint}"?)` : ''}; ${prefix} takes ${parent.spec.subkeys.map((k) => `${prefix}.${k}`).join(', ')}`);
    }
    const mapping = folded.get(prefix) ?? {};
    mapping[subkey] = value;
    folded.set(prefix, mapping);
  }
  for (const [prefix, mapping] of folded) {
    const whole = out[prefix];
    const said = typeof whole === 'string' ? booleanText(whole) : undefined;
    if (whole === false || said === false) {
      throw new UsageError(`${subject(display)} ${prefix}=false contradicts ${Object.keys(mapping).map((k) => `${prefix}.${k}`).join(', ')}: remove one or the other`);
    }
    if (whole !== undefined && whole !== true && said !== true) {
      if (whole === null || typeof whole !== 'object' || Array.isArray(whole)) wrong(display, prefix, known.get(prefix)!.spec, 'true, false or a mapping', whole);
      out[prefix] = { ...(whole as Record<string, Raw>), ...mapping };
    } else {
      out[prefix] = mapping;
    }
  }
  return out;
}

/** JSON Schema of one option, as a pipeline file writes it. */
export function optionSchema(spec: OptionSpec): Record<string, unknown> {
  const base: Record<string, unknown> = { description: spec.doc };
  if (spec.default !== undefined && typeof spec.default !== 'function' && typeof spec.default !== 'object') base.default = spec.default;
  switch (spec.kind) {
    case 'string':
      return { ...base, type: 'string', minLength: 1 };
    case 'boolean':
      return { ...base, type: 'boolean' };
    case 'integer':
    case 'number':
      return { ...base, type: spec.kind, ...(spec.min !== undefined ? { minimum: spec.min } : {}), ...(spec.max !== undefined ? { maximum: spec.max } : {}) };
    case 'duration':
      return {
        ...base,
        description: `${spec.doc} A duration with a unit: 500ms, 30s, 5m, 12h; a number is milliseconds.`,
        anyOf: [{ type: 'string', pattern: '^\\s*((\\d+(\\.\\d+)?\\s*(ms|sec|min|s|m|h|d))+|0)\\s*$' }, { type: 'number', minimum: spec.min ?? 1, maximum: Math.min(spec.max ?? MAX_DURATION_MS, MAX_DURATION_MS) }],
      };
    case 'bytes':
      return { ...base, description: `${spec.doc} A size: 512KiB, 1MiB, 1GB, or bytes.`, anyOf: [{ type: 'string', pattern: '^\\s*\\d+(\\.\\d+)?\\s*([kKmMgG]([iI]?[bB])?|[bB])?\\s*$' }, { type: 'integer', minimum: spec.min ?? 1 }] };
    case 'enum':
      return { ...base, enum: [...(spec.values ?? [])] };
    case 'strings':
      return { ...base, anyOf: [{ type: 'string', minLength: 1 }, { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 }] };
    case 'custom':
      return { ...base, ...(spec.schema ?? {}) };
  }
}

/** JSON Schema properties for every CLI key of the declaration(s). */
export function optionsSchema(declarations: ReadonlyArray<DeclaredOptions>, except: readonly string[] = []): Record<string, unknown> {
  const properties: Record<string, unknown> = {};
  for (const declaration of declarations) {
    for (const [key, name] of cliKeys(declaration, except)) properties[key] = optionSchema(declaration.specs[name]!);
  }
  return properties;
}

/**
 * Reads an endpoint's keys by the declaration(s): the URI query as text, the pipeline
 * file's options as typed values (a quoted number there is not a number), the file's
 * winning. `passThrough` applies to query keys only: a pipeline-file key that is no
 * option is refused, never passed on.
 */
export function readEndpointOptions(
  input: { display: string; query: Record<string, string>; file: Record<string, unknown> },
  declarations: ReadonlyArray<DeclaredOptions>,
  extra: { except?: readonly string[]; passThrough?: (key: string) => boolean } = {},
): Record<string, unknown> {
  return {
    ...readOptions(input.display, input.query, declarations, extra),
    ...readOptions(input.display, input.file, declarations, { except: extra.except, typed: true }),
  };
}
