/** The schemes the command knows, each mapping URI query keys to a connector's options. */
import { z } from 'zod';
import { stdinSource } from '../sources/stdin.js';
import { stdoutSink } from '../sinks/stdout.js';
import { registerScheme, validate, zBytes } from './endpoints.js';

registerScheme(['stdin'], {
  help: 'stdin:                       lines of standard input (?maxMessageBytes=1MiB&delimiter=%0A)',
  source: ({ display, params }) => {
    const o = validate(display, z.strictObject({ maxMessageBytes: zBytes.optional(), delimiter: z.string().min(1).optional() }), params);
    return () => stdinSource({ ...(o.maxMessageBytes ? { maxMessageBytes: o.maxMessageBytes } : {}), ...(o.delimiter ? { delimiter: o.delimiter } : {}) });
  },
});

registerScheme(['stdout'], {
  help: 'stdout:                      one line per message on standard output (?delimiter=%0A)',
  sink: ({ display, params }) => {
    const o = validate(display, z.strictObject({ delimiter: z.string().min(1).optional() }), params);
    return () => stdoutSink(o.delimiter ? { delimiter: o.delimiter } : {});
  },
});
