/** `--transform` specs: `json-append:receivedAt=$now,source=orders`, `unwrap-dead-letter`. */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Transform } from 'node:stream';
import { jsonAppend, type FieldValue } from '../transforms/json-append.js';
import { unwrapDeadLetter } from '../transforms/unwrap-dead-letter.js';
import { UsageError } from './errors.js';

/** Values a json-append field may take besides a literal. */
const DYNAMIC: Record<string, () => unknown> = {
  $now: () => Date.now(),
  $nowIso: () => new Date().toISOString(),
  $uuid: () => randomUUID(),
};

function literal(text: string): unknown {
  if (text === '$hostname') return hostname();
  // Numbers, booleans, null and quoted strings are JSON; anything else is a plain string.
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Known transforms, for --help. */
export const transformHelp = [
  'json-append:field=value,...   add fields to each JSON object; values are JSON literals or text,',
  '                              or $now (ms), $nowIso, $uuid (per message), $hostname',
  '                              (&onError=nack|skip|pass after the fields: what to do with non-JSON)',
  'unwrap-dead-letter            dead-letter records (JSON envelopes, x-manifold-dead-letter-* headers)',
  '                              back into the messages they were, to re-send them where they failed',
  '                              (:onOther=pass re-sends other records unchanged; default: refuse them)',
];

const KNOWN = ['json-append', 'unwrap-dead-letter'];

/** `unwrap-dead-letter[:onOther=nack|pass]`. */
function parseUnwrap(spec: string, body: string): () => Transform {
  let onOther: 'nack' | 'pass' = 'nack';
  for (const pair of body.split(',').filter(Boolean)) {
    const [k, v] = pair.split('=');
    if (k !== 'onOther' || (v !== 'nack' && v !== 'pass')) throw new UsageError(`--transform ${JSON.stringify(spec)}: "${pair}" is not an option; allowed: onOther=nack|pass`);
    onOther = v;
  }
  return () => unwrapDeadLetter({ onOther });
}

/** Parses one `--transform` spec into a Transform factory. */
export function parseTransform(spec: string): () => Transform {
  const colon = spec.indexOf(':');
  const name = colon === -1 ? spec : spec.slice(0, colon);
  const body = colon === -1 ? '' : spec.slice(colon + 1);
  if (name === 'unwrap-dead-letter') return parseUnwrap(spec, body);
  if (name !== 'json-append') throw new UsageError(`--transform ${JSON.stringify(spec)}: unknown transform "${name}"; known transforms: ${KNOWN.join(', ')}`);
  const [fieldsText, optionsText = ''] = body.split('&');
  const fields: Record<string, FieldValue> = {};
  for (const pair of (fieldsText ?? '').split(',').filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--transform ${JSON.stringify(spec)}: "${pair}" must be field=value`);
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    fields[key] = DYNAMIC[value] ?? literal(value);
  }
  if (Object.keys(fields).length === 0) throw new UsageError(`--transform ${JSON.stringify(spec)}: give at least one field, e.g. json-append:receivedAt=$now`);
  let onError: 'nack' | 'skip' | 'pass' = 'nack';
  for (const pair of optionsText.split(',').filter(Boolean)) {
    const [k, v] = pair.split('=');
    if (k !== 'onError' || (v !== 'nack' && v !== 'skip' && v !== 'pass')) {
      throw new UsageError(`--transform ${JSON.stringify(spec)}: "${pair}" is not an option; allowed: onError=nack|skip|pass`);
    }
    onError = v;
  }
  return () => jsonAppend(fields, { onError });
}
