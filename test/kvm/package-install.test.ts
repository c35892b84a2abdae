/**
 * The packages as a user gets them: `npm pack` of the five workspaces, installed into a fresh app
 * in os.tmpdir() with its own package.json, compiled with strict TypeScript (skipLibCheck: false,
 * lib ES2022 only, so a type a Node-only app lacks is an error) and run with node. Nothing is
 * downloaded: koffi, @types/node, undici-types and every registry package @kvmpool/queue needs
 * (bullmq, prom-client and what they depend on, found by walking the repository's node_modules)
 * are packed from the repository's node_modules and installed with `npm install --offline` and an
 * empty npm cache of the test's own. The app's queue step runs a job against a redis-server the
 * test starts.
 */
import { execFileSync, type ExecFileSyncOptions } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis } from '../support/redis.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const modules = join(root, 'node_modules');
const WORKSPACES = ['core', 'devices', 'worker', 'js', 'queue'] as const;
/** Every child process is bounded: npm and tsc get this long, the app and the CLI less. */
const SLOW_MS = 45_000;
const FAST_MS = 20_000;

interface PackedFile { path: string; size: number }
interface Packed { name: string; version: string; filename: string; size: number; files: PackedFile[] }

let tmp = '';
let app = '';
let redis: TestRedis | undefined;
const packed = new Map<string, Packed>();
/** The registry packages @kvmpool/queue needs, as installed here: name → its directory. */
const queueDeps = new Map<string, string>();

/** The environment without npm's own variables (npx passes its config down through them). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  return env;
}

function run(cmd: string, args: string[], options: ExecFileSyncOptions & { timeout: number }): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv(), ...options }).toString();
}

function npm(args: string[], cwd: string): string {
  return run('npm', [...args, '--cache', join(tmp, 'npm-cache'), '--no-audit', '--no-fund', '--no-update-notifier'], { cwd, timeout: SLOW_MS });
}

function pack(paths: string[], cwd: string): Packed[] {
  // --ignore-scripts: an installed package's own prepack script (its build) must not run here.
  return JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', tmp, ...paths], cwd)) as Packed[];
}

/** Where Node would find package `name` from directory `from`: the nearest node_modules/name up to the repository root. */
function findPackage(from: string, name: string): string | undefined {
  const top = join(root, '.');
  for (let d = from; `${d}/`.startsWith(`${top}/`); d = dirname(d)) {
    const p = join(d, 'node_modules', name);
    if (existsSync(join(p, 'package.json'))) return realpathSync(p);
    if (d === top) break;
  }
  return undefined;
}

/**
 * Every registry package `dir`'s package needs, transitively (dependencies, and the optional ones
 * this machine has installed), @kvmpool/* excepted. Two versions of one name would need nesting,
 * which a flat list of file: dependencies cannot give: that is an error.
 */
function registryClosure(dir: string, out: Map<string, string>): Map<string, string> {
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
  const deps = [...Object.keys(manifest.dependencies ?? {}).map((n) => [n, false] as const), ...Object.keys(manifest.optionalDependencies ?? {}).map((n) => [n, true] as const)];
  for (const [name, optional] of deps) {
    if (name.startsWith('@kvmpool/')) continue;
    const found = findPackage(dir, name);
    if (!found) {
      if (optional) continue;
      throw new Error(`${name} (needed by ${relative(root, dir)}) is not installed: run npm install`);
    }
    const known = out.get(name);
    if (known === found) continue;
    if (known !== undefined) throw new Error(`two copies of ${name} (${relative(root, known)}, ${relative(root, found)}): the app cannot list both`);
    out.set(name, found);
    registryClosure(found, out);
  }
  return out;
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'kvmpool-package-install-'));
  redis = await startRedis();
  for (const p of pack(WORKSPACES.map((w) => `--workspace=packages/${w}`), root)) packed.set(p.name, p);
  const [koffi, koffiX64, typesNode, undici] = pack(
    ['koffi', '@koromix/koffi-linux-x64', '@types/node', 'undici-types'].map((m) => join(modules, m)), tmp);
  registryClosure(join(root, 'packages/queue'), queueDeps);
  const names = [...queueDeps.keys()];
  const queuePacked = pack(names.map((n) => queueDeps.get(n)!), tmp);
  app = join(tmp, 'app');
  mkdirSync(app);
  const file = (p: Packed | undefined): string => `file:${join(tmp, p!.filename)}`;
  writeFileSync(join(app, 'package.json'), JSON.stringify({
    name: 'kvmpool-user-app',
    private: true,
    type: 'module',
    dependencies: {
      '@kvmpool/core': file(packed.get('@kvmpool/core')),
      '@kvmpool/devices': file(packed.get('@kvmpool/devices')),
      '@kvmpool/worker': file(packed.get('@kvmpool/worker')),
      '@kvmpool/js': file(packed.get('@kvmpool/js')),
      '@kvmpool/queue': file(packed.get('@kvmpool/queue')),
      koffi: file(koffi),
      '@koromix/koffi-linux-x64': file(koffiX64),
      ...Object.fromEntries(names.map((n, i) => [n, file(queuePacked[i])])),
    },
    devDependencies: { '@types/node': file(typesNode), 'undici-types': file(undici) },
  }, null, 2));
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'ES2022', lib: ['ES2022'], module: 'NodeNext', moduleResolution: 'NodeNext', types: ['node'],
      strict: true, skipLibCheck: false, outDir: 'dist',
    },
    files: ['main.ts'],
  }, null, 2));
  copyFileSync(join(root, 'test/fixtures/package-app/main.ts'), join(app, 'main.ts'));
  copyFileSync(join(root, 'test/fixtures/sandbox-guest.c'), join(app, 'guest.c'));
  npm(['install', '--offline', '--ignore-scripts'], app);
});

afterAll(async () => {
  await redis?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('the packages installed into a fresh app', () => {
  it('each tarball holds README.md, LICENSE, package.json and dist .js/.d.ts (core also sdk/ and bin/), no source maps and nothing else', () => {
    const allowed: Record<string, RegExp> = {
      '@kvmpool/core': /^(README\.md|LICENSE|package\.json|dist\/.+\.(js|d\.ts)|sdk\/[^/]+|bin\/kvmpool\.js)$/,
      '@kvmpool/devices': /^(README\.md|LICENSE|package\.json|dist\/.+\.(js|d\.ts))$/,
      '@kvmpool/worker': /^(README\.md|LICENSE|package\.json|dist\/.+\.(js|d\.ts))$/,
      // The QuickJS guest ships built (dist/guest/), with the sources and script that build it.
      '@kvmpool/js': /^(README\.md|LICENSE|package\.json|dist\/.+\.(js|d\.ts)|dist\/guest\/quickjs-guest|guest\/[^/]+|scripts\/[^/]+)$/,
      '@kvmpool/queue': /^(README\.md|LICENSE|package\.json|dist\/.+\.(js|d\.ts))$/,
    };
    expect([...packed.keys()].sort()).toEqual(Object.keys(allowed).sort());
    for (const [name, p] of packed) {
      const paths = p.files.map((f) => f.path);
      expect(paths.filter((f) => !allowed[name]!.test(f)), name).toEqual([]);
      for (const f of ['README.md', 'LICENSE', 'package.json', 'dist/index.js', 'dist/index.d.ts']) expect(paths, name).toContain(f);
    }
    const core = packed.get('@kvmpool/core')!.files.map((f) => f.path);
    for (const f of ['bin/kvmpool.js', 'dist/cli.js', 'sdk/kvmpool.h', 'sdk/kvmpool.ld', 'sdk/start.S', 'sdk/runtime.c']) expect(core).toContain(f);
  });

  it('the packages depend on each other at exactly their shared version', () => {
    const manifest = (w: string): Record<string, Record<string, string> | string> =>
      JSON.parse(readFileSync(join(app, 'node_modules/@kvmpool', w, 'package.json'), 'utf8')) as Record<string, Record<string, string> | string>;
    const [core, devices, worker, js, queue] = WORKSPACES.map(manifest);
    const version = core!['version'];
    expect(devices!['version']).toBe(version);
    expect(worker!['version']).toBe(version);
    expect(js!['version']).toBe(version);
    expect(queue!['version']).toBe(version);
    // Its registry dependencies pinned, as tested here; core not depending on it (the CLI imports it at run time).
    expect(queue!['dependencies']).toEqual({ '@kvmpool/core': version, bullmq: expect.stringMatching(/^\d+\.\d+\.\d+$/), 'prom-client': expect.stringMatching(/^\d+\.\d+\.\d+$/) });
    expect(queue!['peerDependencies']).toEqual({ '@kvmpool/js': version, '@kvmpool/worker': version });
    expect(Object.keys((core!['dependencies'] ?? {}) as Record<string, string>)).not.toContain('@kvmpool/queue');
    // The installed bullmq is the one the repository tested with (the packed copy, not another).
    expect(manifest('../bullmq')['version']).toBe((queue!['dependencies'] as Record<string, string>)['bullmq']);
    expect(js!['dependencies']).toEqual({ '@kvmpool/core': version });
    expect(core!['dependencies']).toMatchObject({ '@kvmpool/devices': version });
    expect(core!['peerDependencies']).toEqual({ '@kvmpool/worker': version });
    expect(worker!['dependencies']).toEqual({ '@kvmpool/core': version, '@kvmpool/devices': version });
  });

  it('a strict TypeScript app (skipLibCheck: false, no DOM types) compiles against them, then runs a vCPU, a machine, a sandbox, a Linux program, a JavaScript sandbox and a queue job', () => {
    // tsc prints its diagnostics on stdout; a failure shows them in the thrown error.
    let diagnostics = '';
    try {
      run(process.execPath, [join(modules, 'typescript/bin/tsc'), '-p', app], { cwd: app, timeout: SLOW_MS });
    } catch (e) {
      diagnostics = String((e as { stdout?: string }).stdout ?? e);
    }
    expect(diagnostics).toBe('');

    const out = run(process.execPath, [join(app, 'dist/main.js'), app, redis!.url], { cwd: app, timeout: FAST_MS });
    const steps = out.trimEnd().split('\n').map((l) => JSON.parse(l) as { step: string; value: unknown });
    expect(steps).toEqual([
      { step: 'vcpu', value: { kind: 'io', direction: 'out', port: 0x3f8, data: [0x6b] } },
      { step: 'machine', value: { exit: { reason: 'debug-exit', code: 0 }, output: 'ok\n' } },
      { step: 'sandbox', value: 'hello from the app' },
      { step: 'linux', value: { stdout: 'hi from busybox\n', exitCode: 0 } },
      { step: 'js', value: { a: [1, 4, 9] } },
      { step: 'queue', value: { output: 'hello through the queue', worker: 'app-worker', counts: { completed: 1, failed: 0 } } },
      { step: 'done', value: true },
    ]);
  });

  it('the installed kvmpool command (npx kvmpool) prints its version, the caps report as JSON and the worker command\'s usage', () => {
    const version = (packed.get('@kvmpool/core')!).version;
    expect(run('npx', ['--offline', '--no-install', 'kvmpool', '--version'], { cwd: app, timeout: FAST_MS }).trim())
      .toBe(`@kvmpool/core ${version}`);
    const caps = JSON.parse(run('npx', ['--offline', '--no-install', 'kvmpool', 'caps', '--json'], { cwd: app, timeout: FAST_MS })) as Record<string, unknown>;
    expect(caps).toMatchObject({ path: '/dev/kvm', apiVersion: 12 });
    expect(typeof caps['module']).toBe('string');
    // `kvmpool worker` finds the installed @kvmpool/queue at run time.
    expect(run('npx', ['--offline', '--no-install', 'kvmpool', 'worker', '--help'], { cwd: app, timeout: FAST_MS })).toMatch(/^usage: kvmpool worker --queue NAME/);
  });
});
