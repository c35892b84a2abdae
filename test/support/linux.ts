/**
 * Helpers for the Linux-program tests: the host tools they need (a missing one fails the test
 * with the Debian package to install, never skips it), musl builds of the C fixtures in
 * test/fixtures/linux/ (cached by mtime in test/.build/linux/), a seeded PRNG for inputs, and
 * the host run of a program to compare a sandbox's result with.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

export const BUSYBOX = '/bin/busybox';

function onPath(tool: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const p = join(dir, tool);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** /bin/busybox, or throws naming the Debian package that installs it. */
export function requireBusybox(): string {
  try {
    accessSync(BUSYBOX, constants.X_OK);
  } catch {
    throw new Error(`${BUSYBOX} is missing: these tests run Debian's static busybox; install the Debian package busybox-static (apt-get install busybox-static)`);
  }
  return BUSYBOX;
}

/** musl-gcc's path, or throws naming the Debian package that installs it. */
export function requireMusl(): string {
  const p = onPath('musl-gcc');
  if (!p) throw new Error('musl-gcc is missing: these tests build static C fixtures with musl; install the Debian package musl-tools (apt-get install musl-tools)');
  return p;
}

function fresh(out: string, src: string): boolean {
  try {
    return statSync(src).mtimeMs <= statSync(out).mtimeMs;
  } catch {
    return false;
  }
}

/** Builds test/fixtures/linux/`name` as a static musl executable; returns its path. */
export function buildMusl(name: string, flags: readonly string[] = ['-O2']): string {
  const gcc = requireMusl();
  const src = join(root, 'fixtures', 'linux', name);
  const outDir = join(root, '.build', 'linux');
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, basename(name).replace(/\.c$/, ''));
  if (!fresh(out, src)) execFileSync(gcc, ['-static', '-Wall', '-Werror', ...flags, '-o', out, src], { stdio: 'inherit' });
  return out;
}

/** Builds test/fixtures/linux/`name` as a static glibc executable (gcc -static), or with other flags under the name `<name>-glibc-<tag>`. */
export function buildGlibc(name: string, flags: readonly string[] = ['-static', '-O2'], tag = ''): string {
  const src = join(root, 'fixtures', 'linux', name);
  const outDir = join(root, '.build', 'linux');
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, `${basename(name).replace(/\.c$/, '')}-glibc${tag ? `-${tag}` : ''}`);
  if (!fresh(out, src)) execFileSync('gcc', ['-Wall', '-Werror', ...flags, '-o', out, src], { stdio: 'inherit' });
  return out;
}

/** Builds test/fixtures/linux/`name` with the machine's gcc and its defaults (a dynamic PIE). */
export function buildDynamic(name: string): string {
  const src = join(root, 'fixtures', 'linux', name);
  const outDir = join(root, '.build', 'linux');
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, `${basename(name).replace(/\.c$/, '')}-dynamic`);
  if (!fresh(out, src)) execFileSync('gcc', ['-O2', '-o', out, src], { stdio: 'inherit' });
  return out;
}

/** mulberry32: a small seeded PRNG, floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface HostRun {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number | null;
  signal: string | null;
}

/** Runs `program` on the host with argv (argv[0] included), an empty environment and `input` as stdin. */
export function runOnHost(program: string, argv: readonly string[], input: Uint8Array, env: Record<string, string> = {}): HostRun {
  const r = spawnSync(program, argv.slice(1), { argv0: argv[0], input, env, maxBuffer: 64 * 1024 * 1024 });
  // EPIPE: the program exited before it read all of stdin (its status is still there).
  if (r.error && !((r.error as NodeJS.ErrnoException).code === 'EPIPE' && r.status !== null)) throw r.error;
  return { stdout: r.stdout, stderr: r.stderr, exitCode: r.status, signal: r.signal };
}

/**
 * Runs `program` once per input, as runOnHost does (an empty environment: `exec -c`), from one bash process: a spawn from the test
 * process costs 10–30 ms here (it is large); bash's fork and exec cost about 1 ms.
 */
export function runOnHostBatch(program: string, argv: readonly string[], inputs: readonly Uint8Array[]): HostRun[] {
  const dir = mkdtempSync(join(tmpdir(), 'kvmpool-host-'));
  try {
    inputs.forEach((b, i) => writeFileSync(join(dir, `in.${i}`), b));
    const script = 'n=$1; shift; prog=$1; shift; argv0=$1; shift; i=0\n' +
      'while [ $i -lt $n ]; do (exec -c -a "$argv0" "$prog" "$@" <in.$i >out.$i 2>err.$i); echo $? >code.$i; i=$((i + 1)); done';
    const r = spawnSync('/bin/bash', ['-c', script, 'bash', String(inputs.length), program, argv[0]!, ...argv.slice(1)], { cwd: dir, env: {} });
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`host batch run failed (${r.status}): ${r.stderr.toString()}`);
    return inputs.map((_, i) => {
      const code = Number(readFileSync(join(dir, `code.${i}`), 'utf8'));
      return {
        stdout: readFileSync(join(dir, `out.${i}`)),
        stderr: readFileSync(join(dir, `err.${i}`)),
        exitCode: code > 128 ? null : code,
        signal: code > 128 ? `signal ${code - 128}` : null,
      };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const text = (b: Uint8Array): string => new TextDecoder().decode(b);
export const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

/** `key value` lines (the fixtures' reports) as a record. */
export function report(b: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text(b).split('\n')) {
    const sp = line.indexOf(' ');
    if (sp > 0) out[line.slice(0, sp)] = line.slice(sp + 1);
  }
  return out;
}
