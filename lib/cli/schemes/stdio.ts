/** stdin: and stdout:, their query keys read by the declarations in lib/stdio/options.ts. */
import { stdinSourceOptions, stdoutSinkOptions, type StdinSourceOptions, type StdoutSinkOptions } from '../../stdio/options.js';
import { stdoutSink } from '../../stdio/sink.js';
import { stdinSource } from '../../stdio/source.js';
import { registerScheme } from '../endpoints.js';
import { readEndpointOptions } from '../options.js';

registerScheme(['stdin'], {
  help: 'stdin:                       lines of standard input (?maxMessage=1MiB&delimiter=%0A)',
  options: { source: [stdinSourceOptions] },
  source: (input) => {
    const options = readEndpointOptions(input, [stdinSourceOptions]);
    return () => stdinSource(options as StdinSourceOptions);
  },
});

registerScheme(['stdout'], {
  help: 'stdout:                      one line per message on standard output (?delimiter=%0A)',
  options: { sink: [stdoutSinkOptions] },
  sink: (input) => {
    const options = readEndpointOptions(input, [stdoutSinkOptions]);
    return () => stdoutSink(options as StdoutSinkOptions);
  },
});
