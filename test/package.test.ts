/**
 * The package as users get it: `npm pack` (which builds, through `prepare`), then `npm install
 * <tarball>` into a temporary project, as child processes. The installed `manifold` runs (and on
 * an older Node says what it needs), a TypeScript file compiles against the published types with
 * `skipLibCheck: false` and `strict`, each subpath loads only its own client library, and every
 * source map resolves inside the package.
 *
 * It installs the package's dependencies from the npm cache or the registry (`--prefer-offline`):
 * 5 to 15 s with a warm cache.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

const root = join(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

interface PackedFile {
  path: string;
  mode: number;
}

function run(command: string, args: string[], cwd: string, input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(command, args, { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  proc.stdin.on('error', () => {});
  proc.stdin.end(input);
  return new Promise((done) => proc.once('close', (code) => done({ code, stdout, stderr })));
}

/** A Node.js older than 22 on this machine, if any. */
function olderNode(): string | undefined {
  for (const candidate of ['/usr/bin/node', '/usr/local/bin/node']) {
    if (!existsSync(candidate)) continue;
    const version = execFileSync(candidate, ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim();
    if (Number(version.split('.')[0]) < 22) return candidate;
  }
  return undefined;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((f) => join(dir, f)).filter((f) => statSync(f).isFile());
}

describe('the npm package', () => {
  let dir: string;
  let project: string;
  let packed: PackedFile[];
  let manifold: string;
  let installed: string;

  after(() => rmSync(dir, { recursive: true, force: true }));
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'manifold-package-'));
    const { stdout } = await promisify(execFile)(npm, ['pack', '--json', '--pack-destination', dir], { cwd: root, maxBuffer: 64 << 20 });
    const [info] = JSON.parse(stdout) as Array<{ filename: string; files: PackedFile[] }>;
    packed = info!.files;
    project = join(dir, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    // @types/node as any TypeScript project on Node has it (the package's own types use node:stream).
    await promisify(execFile)(npm, ['install', join(dir, info!.filename), '@types/node@22', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], {
      cwd: project,
      maxBuffer: 64 << 20,
    });
    manifold = join(project, 'node_modules', '.bin', 'manifold');
    installed = join(project, 'node_modules', 'manifold');
  });

  it('npm pack builds: the tarball holds the built library, its types, the command (executable), the sources, LICENSE and README, and no tests', () => {
    const paths = new Map(packed.map((f) => [f.path, f.mode]));
    for (const path of ['LICENSE', 'README.md', 'package.json', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/lib/kafka/source.js', 'lib/index.ts']) {
      assert.ok(paths.has(path), `${path} is in the tarball`);
    }
    assert.equal(paths.get('dist/lib/cli/bin.js')! & 0o111, 0o111, 'the command is executable');
    assert.deepEqual(
      packed.filter((f) => !/^(dist\/)?lib\//.test(f.path)).map((f) => f.path).sort(),
      ['LICENSE', 'README.md', 'package.json'],
    );
  });

  it('the installed manifold runs: --help, --version, stdin: -> stdout:', async () => {
    const help = await run(manifold, ['--help'], project);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, new RegExp(`^manifold ${pkg.version.replace(/\./g, '\\.')}: `));
    assert.match(help.stdout, /kafka:\/\/host:9092\/topic/);
    const version = await run(manifold, ['--version'], project);
    assert.equal(version.stdout, `${pkg.version}\n`);
    const piped = await run(manifold, ['stdin:', 'stdout:', '--quiet'], project, 'a\nb\n');
    assert.equal(piped.code, 0, piped.stderr);
    assert.equal(piped.stdout, 'a\nb\n');
  });

  it('the installed manifold, run by a Node older than 22, says what it needs', { skip: olderNode() === undefined && 'no Node.js older than 22 on this machine' }, async () => {
    const { code, stdout, stderr } = await run(olderNode()!, [manifold, '--help'], project);
    assert.equal(code, 1);
    assert.equal(stdout, '');
    assert.match(stderr, /^manifold needs Node\.js 22 or newer \(this is 2?\d\.\d+\.\d+\): install it from https:\/\/nodejs\.org/);
  });

  it('a TypeScript file compiles against the published types with skipLibCheck false and strict', async () => {
    writeFileSync(
      join(project, 'consumer.ts'),
      `import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createMessage, kafkaSource, map, s3Sink, websocketSource, type KafkaSourceOptions, type Message, type S3SinkOptions } from 'manifold';
import { flow, type TlsOptions } from 'manifold/core';
import { rabbitmqSource, type RabbitmqSourceOptions } from 'manifold/rabbitmq';

const source: KafkaSourceOptions = { brokers: 'localhost:9092', topics: 'orders', groupId: 'archiver', startFrom: 'earliest' };
const sink: S3SinkOptions = { bucket: 'archive', prefix: 'orders/', bufferPath: './buffer', commitSizeBytes: 64 << 20 };
const upper = map((m: Message) => m.data.toString().toUpperCase());
const one: Message = createMessage({ data: Buffer.from('x') });

export async function archive(): Promise<void> {
  await pipeline(kafkaSource(source), upper, s3Sink(sink));
  await pipeline(Readable.from([one]), s3Sink(sink));
  websocketSource({ url: 'wss://feed.example.com', onOpen: (ws) => ws.send('subscribe') });
  const tls: TlsOptions = { ca: './ca.pem' };
  const queue: RabbitmqSourceOptions = { url: 'amqp://localhost', queue: 'orders' };
  await flow({ source: rabbitmqSource(queue), sink: s3Sink(sink) });
  return void tls;
}

// @ts-expect-error: an option that does not exist
export const wrong: S3SinkOptions = { bucket: 'b', bufferPath: './b', commitSize: 1 };
`,
    );
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2023', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, skipLibCheck: false, noEmit: true },
        files: ['consumer.ts'],
      }),
    );
    const { code, stdout, stderr } = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], project);
    assert.equal(code, 0, stdout + stderr);
  });

  it('each subpath (manifold/rabbitmq, ...) loads its own client library and no other', async () => {
    // A resolve hook records every module the import pulls in; the packages among them are what it loaded.
    writeFileSync(
      join(project, 'loads.mjs'),
      `import { registerHooks } from 'node:module';
const seen = new Set();
registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); seen.add(r.url); return r; } });
const exported = Object.keys(await import(process.argv[2]));
const packages = new Set();
for (const url of seen) {
  const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(url.slice(url.lastIndexOf('node_modules/')));
  if (m && m[1] !== 'manifold') packages.add(m[1]);
}
console.log(JSON.stringify({ exported, packages: [...packages].sort() }));
`,
    );
    const clients = { rabbitmq: ['amqplib'], websocket: ['ws'], kafka: ['@platformatic/kafka'], s3: ['@aws-sdk/client-s3'], kinesis: ['@aws-sdk/client-kinesis'], core: [], stdio: [] } as Record<string, string[]>;
    const all = ['amqplib', 'ws', '@platformatic/kafka', '@aws-sdk/client-s3', '@aws-sdk/client-kinesis', '@aws-sdk/client-dynamodb'];
    for (const [subpath, own] of Object.entries(clients)) {
      const { code, stdout, stderr } = await run(process.execPath, ['loads.mjs', `manifold/${subpath}`], project);
      assert.equal(code, 0, stderr);
      const { exported, packages } = JSON.parse(stdout) as { exported: string[]; packages: string[] };
      assert.ok(exported.length > 0, `manifold/${subpath} exports something`);
      for (const name of own) assert.ok(packages.includes(name), `manifold/${subpath} loads ${name}: ${packages.join(', ')}`);
      const others = all.filter((name) => !own.includes(name) && packages.includes(name) && !(subpath === 'kinesis' && name === '@aws-sdk/client-dynamodb'));
      assert.deepEqual(others, [], `manifold/${subpath} loads only its own client`);
    }
  });

  it("every source map (code and declarations) resolves to a file in the package", () => {
    const maps = filesUnder(join(installed, 'dist')).filter((f) => f.endsWith('.map'));
    assert.ok(maps.length > 50, `${maps.length} maps`);
    const missing: string[] = [];
    for (const map of maps) {
      const { sources, sourceRoot = '' } = JSON.parse(readFileSync(map, 'utf8')) as { sources: string[]; sourceRoot?: string };
      for (const source of sources) {
        const file = resolve(dirname(map), sourceRoot, source);
        if (!file.startsWith(installed) || !existsSync(file)) missing.push(`${map.slice(installed.length)} -> ${source}`);
      }
    }
    assert.deepEqual(missing, []);
  });
});
