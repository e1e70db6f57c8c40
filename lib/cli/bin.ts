#!/usr/bin/env node
/** The `manifold` executable. */
import { main } from './main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: Error) => {
    process.stderr.write(`manifold: ${error.stack ?? error.message}\n`);
    process.exitCode = 1;
  },
);
