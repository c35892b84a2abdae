/**
 * The packages as a user gets them: `npm pack` of the four workspaces, installed into a fresh app
 * in os.tmpdir() with its own package.json, compiled with strict TypeScript (skipLibCheck: false,
 * lib ES2022 only, so a type a Node-only app lacks is an error) and run with node. Nothing is
 * downloaded: koffi, @types/node and undici-types are packed from the repository's node_modules
 * and installed with `npm install --offline` and an empty npm cache of the test's own.
 */
import { execFileSync, type ExecFileSyncOptions } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const modules = join(root, 'node_modules');
const WORKSPACES = ['core', 'devices', 'worker', 'js'] as const;
/** Every child process is bounded: npm and tsc get this long, the app and the CLI less. */
const SLOW_MS = 45_000;
const FAST_MS = 20_000;

interface PackedFile { path: string; size: number }
interface Packed { name: string; version: string; filename: string; size: number; files: PackedFile[] }

let tmp = '';
let app = '';
const packed = new Map<string, Packed>();

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
  return JSON.parse(npm(['pack', '--json', '--pack-destination', tmp, ...paths], cwd)) as Packed[];
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'kvmpool-package-install-'));
  for (const p of pack(WORKSPACES.map((w) => `--workspace=packages/${w}`), root)) packed.set(p.name, p);
  const [koffi, koffiX64, typesNode, undici] = pack(
    ['koffi', '@koromix/koffi-linux-x64', '@types/node', 'undici-types'].map((m) => join(modules, m)), tmp);
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
      koffi: file(koffi),
      '@koromix/koffi-linux-x64': file(koffiX64),
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

afterAll(() => {
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
    const [core, devices, worker, js] = WORKSPACES.map(manifest);
    const version = core!['version'];
    expect(devices!['version']).toBe(version);
    expect(worker!['version']).toBe(version);
    expect(js!['version']).toBe(version);
    expect(js!['dependencies']).toEqual({ '@kvmpool/core': version });
    expect(core!['dependencies']).toMatchObject({ '@kvmpool/devices': version });
    expect(core!['peerDependencies']).toEqual({ '@kvmpool/worker': version });
    expect(worker!['dependencies']).toEqual({ '@kvmpool/core': version, '@kvmpool/devices': version });
  });

  it('a strict TypeScript app (skipLibCheck: false, no DOM types) compiles against them, then runs a vCPU, a machine, a sandbox, a Linux program and a JavaScript sandbox', () => {
    // tsc prints its diagnostics on stdout; a failure shows them in the thrown error.
    let diagnostics = '';
    try {
      run(process.execPath, [join(modules, 'typescript/bin/tsc'), '-p', app], { cwd: app, timeout: SLOW_MS });
    } catch (e) {
      diagnostics = String((e as { stdout?: string }).stdout ?? e);
    }
    expect(diagnostics).toBe('');

    const out = run(process.execPath, [join(app, 'dist/main.js'), app], { cwd: app, timeout: FAST_MS });
    const steps = out.trimEnd().split('\n').map((l) => JSON.parse(l) as { step: string; value: unknown });
    expect(steps).toEqual([
      { step: 'vcpu', value: { kind: 'io', direction: 'out', port: 0x3f8, data: [0x6b] } },
      { step: 'machine', value: { exit: { reason: 'debug-exit', code: 0 }, output: 'ok\n' } },
      { step: 'sandbox', value: 'hello from the app' },
      { step: 'linux', value: { stdout: 'hi from busybox\n', exitCode: 0 } },
      { step: 'js', value: { a: [1, 4, 9] } },
      { step: 'done', value: true },
    ]);
  });

  it('the installed kvmpool command (npx kvmpool) prints its version and the caps report as JSON', () => {
    const version = (packed.get('@kvmpool/core')!).version;
    expect(run('npx', ['--offline', '--no-install', 'kvmpool', '--version'], { cwd: app, timeout: FAST_MS }).trim())
      .toBe(`@kvmpool/core ${version}`);
    const caps = JSON.parse(run('npx', ['--offline', '--no-install', 'kvmpool', 'caps', '--json'], { cwd: app, timeout: FAST_MS })) as Record<string, unknown>;
    expect(caps).toMatchObject({ path: '/dev/kvm', apiVersion: 12 });
    expect(typeof caps['module']).toBe('string');
  });
});
