/**
 * The JSON Schema of a pipeline file (`manifold schema`), derived from the same
 * declarations that validate it: every connector's keys, with descriptions and
 * defaults, so an editor checks a pipeline file while it is typed.
 */
import { registeredSchemes } from './endpoints.js';
import { optionsSchema } from './options.js';
import { pipelineFileOptions } from './main.js';

type Schema = Record<string, unknown>;

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The endpoint (`from` or `to`) as a URI string or a mapping with a uri and that scheme's keys. */
function endpointSchema(role: 'source' | 'sink', description: string): Schema {
  const names: string[] = [];
  const mappings: Schema[] = [];
  for (const [name, entry] of registeredSchemes()) {
    if (!entry[role]) continue;
    names.push(name);
    const declarations = entry.options?.[role];
    const uri = { type: 'string', pattern: `^${escape(name)}:`, description: entry.help };
    mappings.push({
      type: 'object',
      required: ['uri'],
      properties: { uri, ...(declarations ? optionsSchema(declarations, entry.options?.except) : {}) },
      // A scheme that does not declare its keys yet takes any; a declared one refuses a misspelt key.
      additionalProperties: declarations === undefined,
    });
  }
  return {
    description,
    anyOf: [{ type: 'string', pattern: `^(${names.map(escape).join('|')}):`, description: 'A URI; its query keys are the options below.' }, ...mappings],
  };
}

/** The JSON Schema (draft 2020-12) of a pipeline file. */
export function pipelineSchema(): Schema {
  const properties: Schema = optionsSchema([pipelineFileOptions]);
  properties.from = endpointSchema('source', pipelineFileOptions.specs.from.doc);
  // The sink and the dead-letter sink take the same URIs and keys: described once, referred to twice.
  const { description: _, ...sink } = endpointSchema('sink', '');
  properties.to = { description: pipelineFileOptions.specs.to.doc, $ref: '#/$defs/sink' };
  properties.deadLetter = { description: pipelineFileOptions.specs.deadLetter.doc, $ref: '#/$defs/sink' };
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'urn:manifold:pipeline-file',
    title: 'manifold pipeline file',
    description: 'Run with `manifold run <file>`. Sizes take units (512KiB, 1MiB), durations too (500ms, 30s, 5m, 12h).',
    type: 'object',
    required: ['from', 'to'],
    properties,
    additionalProperties: false,
    $defs: { sink },
  };
}
