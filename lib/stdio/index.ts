/**
 * stdin and stdout as a source and a sink: `manifold/stdio`.
 */
export { StdinSource, stdinSource, type StdinSourceOptions } from './source.js';
export { StdoutSink, stdoutSink, type DelimiterRejectEvent, type StdoutSinkOptions } from './sink.js';
