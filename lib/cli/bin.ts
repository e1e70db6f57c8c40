#!/usr/bin/env node
/**
 * The `manifold` executable. It checks the Node.js version before it loads anything else: the
 * command and the connectors use what Node 22 added (Promise.withResolvers, ...), and on an older
 * Node they would fail deep inside instead of saying what to install. So this file imports
 * nothing statically and uses no syntax or API newer than Node 14's.
 */
const NEEDED_MAJOR = 22;
/** How long the process may take to exit by itself once the command returned. */
const EXIT_GRACE_MS = 500;
const major = Number(process.versions.node.split('.')[0]);

if (!(major >= NEEDED_MAJOR)) {
  process.stderr.write(
    `manifold needs Node.js ${NEEDED_MAJOR} or newer (this is ${process.versions.node}): install it from https://nodejs.org or with your version manager (nvm install ${NEEDED_MAJOR}, fnm install ${NEEDED_MAJOR}, volta install node@${NEEDED_MAJOR})\n`,
  );
  process.exitCode = 1;
} else {
  const { main } = await import('./main.js');
  try {
    process.exitCode = await main(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`manifold: ${(error as Error).stack ?? (error as Error).message}\n`);
    process.exitCode = 1;
  }
  // The command is done, and said so. The process exits by itself when nothing is left; a connection that a
  // client library failed to release (a connect still in progress when the pipeline stopped) must not keep it
  // running for ever with nothing to do, so it exits anyway a moment later. unref(): this timer keeps nothing alive.
  setTimeout(() => process.exit(), EXIT_GRACE_MS).unref();
}
