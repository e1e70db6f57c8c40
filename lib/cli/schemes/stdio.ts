/**
 * stdin: and stdout:, their query keys read by the declarations in lib/stdio/options.ts. The
 * connector modules are loaded by create(), as every scheme's are: see lib/cli/endpoints.ts.
 */
import { stdinSourceOptions, stdoutSinkOptions, type StdinSourceOptions, type StdoutSinkOptions } from '../../stdio/options.js';
import { refuseCredentials, registerScheme } from '../endpoints.js';
import { readEndpointOptions } from '../options.js';

registerScheme(['stdin'], {
  help: 'stdin:                       lines of standard input (?maxMessage=1MiB&delimiter=%0A)',
  options: { source: [stdinSourceOptions] },
  source: (input) => {
    refuseCredentials(input, 'standard input and output take none');
    const options = readEndpointOptions(input, [stdinSourceOptions]);
    return async () => {
      const { stdinSource } = await import('../../stdio/source.js');
      return stdinSource(options as StdinSourceOptions);
    };
  },
});

registerScheme(['stdout'], {
  help: 'stdout:                      one line per message on standard output (?delimiter=%0A)',
  options: { sink: [stdoutSinkOptions] },
  sink: (input) => {
    refuseCredentials(input, 'standard input and output take none');
    const options = readEndpointOptions(input, [stdoutSinkOptions]);
    return async () => {
      const { stdoutSink } = await import('../../stdio/sink.js');
      return stdoutSink(options as StdoutSinkOptions);
    };
  },
});
