/**
 * lib/cli/bin.ts, as a child process: the Node.js version check that comes before anything else is
 * loaded, and what the command loads. A resolve hook in the child (test/fixtures/module-recorder.ts)
 * records every module it resolved: `--help`, `--version`, `schema` and a refused URI must load no
 * connector and no client library (nor prom-client, yaml or pino, which only a run needs), and a
 * pipeline only the connectors it uses.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';

const bin = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'bin.ts');
const recorder = join(import.meta.dirname, '..', 'fixtures', 'module-recorder.ts');

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(node: string, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Exit> {
  const proc = spawn(node, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  proc.stdin.on('error', () => {});
  proc.stdin.end(options.input ?? '');
  return new Promise((resolve) => proc.once('close', (code) => resolve({ code, stdout, stderr })));
}

/** Runs the command with the recorder; returns its exit and the modules it resolved. */
async function manifoldLoading(t: TestContext, args: string[], input?: string): Promise<Exit & { modules: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'manifold-bin-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'modules.json');
  const exit = await run(process.execPath, ['--import', 'tsx', '--import', recorder, bin, ...args], { input, env: { MANIFOLD_TEST_MODULES: file } });
  return { ...exit, modules: JSON.parse(readFileSync(file, 'utf8')) as string[] };
}

const SYSTEMS = ['stdio', 'kafka', 'rabbitmq', 'websocket', 's3', 'kinesis'];
const CLIENTS = ['@platformatic/kafka', '@aws-sdk/', '@smithy/', 'amqplib', 'ws'];

/** The connector modules (anything of lib/<system>/ but its declarations) and client libraries among `modules`. */
function connectorsIn(modules: string[]): string[] {
  return modules.filter((url) => {
    const inLib = /\/lib\/([a-z0-9]+)\/([a-z0-9-]+)\.(ts|js)$/.exec(url);
    // Declarations (and the starting positions and key templates they check) are what the command validates with.
    if (inLib && SYSTEMS.includes(inLib[1]!)) return !['options', 'positions', 'key-template'].includes(inLib[2]!);
    return CLIENTS.some((name) => url.includes(`/node_modules/${name}${name.endsWith('/') ? '' : '/'}`));
  });
}

describe('manifold: what it loads', () => {
  for (const args of [['--help'], ['--version'], ['schema'], ['kafka://127.0.0.1:9092/orders', 'stdout:']]) {
    it(`manifold ${args.join(' ')} loads no connector and no client library`, async (t) => {
      const { code, stderr, modules } = await manifoldLoading(t, args);
      // The last one is refused (a Kafka source needs group=): validation reads the declarations only.
      assert.equal(code, args[0]!.startsWith('kafka') ? 2 : 0, stderr);
      assert.ok(modules.some((url) => url.endsWith('/lib/kafka/options.ts')), 'the declarations are loaded');
      assert.deepEqual(connectorsIn(modules), []);
      // What only a run needs, each tens of milliseconds of every start: the metrics library, the pipeline file's parser, the JSON logger.
      const heavy = modules.filter((url) => ['prom-client', 'yaml', 'pino'].some((name) => url.includes(`/node_modules/${name}/`)));
      assert.deepEqual(heavy, []);
    });
  }

  it('a pipeline loads the connectors it uses, and no other', async (t) => {
    const { code, stdout, stderr, modules } = await manifoldLoading(t, ['stdin:', 'stdout:', '-q'], 'a\nb\n');
    assert.equal(code, 0, stderr);
    assert.equal(stdout, 'a\nb\n');
    const loaded = connectorsIn(modules).map((url) => url.replace(/^.*\/lib\//, 'lib/'));
    assert.deepEqual(loaded.sort(), ['lib/stdio/sink.ts', 'lib/stdio/source.ts']);
    // The recorder sees what is required as well as what is imported: a run loads the metrics library (the
    // monitor behind the progress line and the done line), so its absence above is not the recorder's blind spot.
    assert.ok(modules.some((url) => url.includes('/node_modules/prom-client/')), 'a run loads prom-client');
  });

  it('a pipeline file loads its parser, and --log-format json its logger', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'manifold-bin-file-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'pipeline.yaml');
    writeFileSync(file, 'from: "stdin:"\nto: "stdout:"\n');
    const { code, stdout, stderr, modules } = await manifoldLoading(t, ['run', file, '--log-format', 'json'], 'a\n');
    assert.equal(code, 0, stderr);
    assert.equal(stdout, 'a\n');
    assert.match(stderr, /"name":"manifold"/);
    for (const name of ['yaml', 'pino']) assert.ok(modules.some((url) => url.includes(`/node_modules/${name}/`)), `loads ${name}`);
  });
});

/** A Node.js older than 22 on this machine, if any. */
function olderNode(): string | undefined {
  for (const candidate of ['/usr/bin/node', '/usr/local/bin/node']) {
    if (!existsSync(candidate)) continue;
    const version = execFileSync(candidate, ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim();
    if (Number(version.split('.')[0]) < 22) return candidate;
  }
  return undefined;
}

describe('manifold: the Node.js version', () => {
  const old = olderNode();
  it('on Node.js older than 22 says which version it needs and where to get it, and exits 1', { skip: old === undefined && 'no Node.js older than 22 on this machine' }, async () => {
    const version = execFileSync(old!, ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim();
    for (const args of [['--help'], ['stdin:', 'stdout:']]) {
      const { code, stdout, stderr } = await run(old!, ['--import', 'tsx', bin, ...args], { input: 'a\n' });
      assert.equal(code, 1);
      assert.equal(stdout, '');
      assert.equal(
        stderr,
        `manifold needs Node.js 22 or newer (this is ${version}): install it from https://nodejs.org or with your version manager (nvm install 22, fnm install 22, volta install node@22)\n`,
      );
    }
  });
});
