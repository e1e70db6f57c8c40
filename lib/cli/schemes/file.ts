/**
 * file:<path>: newline-delimited records in a local file, read as stdin's are (a source, one
 * message per line) and appended as stdout's are (a sink: acked once written, the file fsynced when
 * the pipeline ends). Its first use is the dead-letter file (`--dead-letter file:dead.jsonl`), read
 * back later with `manifold file:dead.jsonl <original-uri> --transform unwrap-dead-letter`. The
 * keys are stdin's and stdout's (lib/stdio/options.ts); the file is opened by create().
 */
import { redactUrl } from '../../core/errors.js';
import { stdinSourceOptions, stdoutSinkOptions, type StdinSourceOptions, type StdoutSinkOptions } from '../../stdio/options.js';
import { registerScheme } from '../endpoints.js';
import { appendFile, filePath, readFile } from '../file.js';
import { readEndpointOptions } from '../options.js';

registerScheme(['file'], {
  help: 'file:<path>                  lines of a file (source), or lines appended to it, fsynced at the end (sink); file:dead.jsonl, file:///var/x.jsonl',
  options: { source: [stdinSourceOptions], sink: [stdoutSinkOptions] },
  // The path as written: the URL parser would make file:dead.jsonl read file:///dead.jsonl. (A file: URI holds no
  // password, the URL parser refuses one.)
  display: (uri) => redactUrl(uri, { asWritten: true }),
  source: (input) => {
    const path = filePath(input.uri);
    const options = readEndpointOptions(input, [stdinSourceOptions]);
    return async () => {
      const file = await readFile(path, input.display);
      const { stdinSource } = await import('../../stdio/source.js');
      const source = stdinSource({ ...(options as StdinSourceOptions), input: file });
      // stdinSource leaves its input open when it stops early (stdin belongs to the caller); this file is ours.
      source.once('close', () => file.destroy());
      return source;
    };
  },
  sink: (input) => {
    const path = filePath(input.uri);
    const options = readEndpointOptions(input, [stdoutSinkOptions]);
    return async () => {
      const file = await appendFile(path, input.display);
      const { stdoutSink } = await import('../../stdio/sink.js');
      const sink = stdoutSink({ ...(options as StdoutSinkOptions), output: file, end: true });
      // Ended, the sink ends the file (fsync, close); destroyed, it leaves it: close it without the fsync.
      sink.once('close', () => {
        if (!file.writableFinished) file.destroy();
      });
      return sink;
    };
  },
});
