/**
 * `npm run build`, which `prepare` runs too (so `npm install` in a checkout, `npm ci` and
 * `npm pack` build): emits dist/lib from lib/ with declarations and source maps (tsconfig.build.json).
 *
 * - dist/lib is removed first: a module deleted or renamed in lib/ must not live on in dist/ and
 *   so in the package.
 * - The command's file is made executable: tsc writes 0644, and `./dist/lib/cli/bin.js` should run
 *   from a checkout as the `manifold` that npm links runs (npm sets the mode only on what it links).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
// typescript's exports map lists package.json but not its bin.
const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');

rmSync(join(root, 'dist', 'lib'), { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root });
chmodSync(join(root, 'dist', 'lib', 'cli', 'bin.js'), 0o755);
