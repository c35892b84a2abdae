/** Builds a C fixture with the machine's gcc into test/.build/ and returns the binary's path. */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SDK_DIR, compileGuest } from '@kvmpool/core';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Whether `out` exists and is newer than `src` and what it includes (then it need not be built again). */
function fresh(out: string, src: string, includes: readonly string[] = []): boolean {
  try {
    const built = statSync(out).mtimeMs;
    return [src, ...includes].every((f) => statSync(f).mtimeMs <= built);
  } catch {
    return false;
  }
}

export function buildC(fixture: string, flags: string[] = []): string {
  const src = join(root, 'fixtures', fixture);
  const outDir = join(root, '.build');
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, basename(fixture).replace(/\.[cS]$/, ''));
  if (!fresh(out, src)) execFileSync('gcc', ['-O2', '-Wall', '-Werror', ...flags, '-o', out, src], { stdio: 'inherit' });
  return out;
}

/**
 * Assembles a flat guest binary (linked at 0x10000, no libc) from a `.S` file with gcc. `defines` become
 * -D flags (and part of the cached binary's name); the SDK directory is on the include path, so a
 * guest may `.include "interrupts.inc"`.
 */
export function buildFlatGuest(source: string, defines: readonly string[] = []): Uint8Array {
  const outDir = join(root, '.build');
  mkdirSync(outDir, { recursive: true });
  const suffix = defines.map((d) => `-${d.replace(/[^A-Za-z0-9]/g, '_')}`).join('');
  const out = join(outDir, basename(source).replace(/\.S$/, `${suffix}.bin`));
  const deps = [join(dirname(source), 'uart.inc'), join(SDK_DIR, 'interrupts.inc')].filter((f) => existsSync(f));
  if (!fresh(out, source, deps)) {
    execFileSync('gcc', [
      '-nostdlib', '-static', '-Wl,--oformat=binary', '-Wl,-Ttext=0x10000', '-Wl,--build-id=none', '-Wl,-e,_start',
      `-Wa,-I${SDK_DIR}`, `-I${SDK_DIR}`, ...defines.map((d) => `-D${d}`), '-o', out, source,
    ], { stdio: 'inherit' });
  }
  return new Uint8Array(readFileSync(out));
}

/**
 * Builds a flat machine guest from C (and .S) sources with gcc: freestanding, linked by examples/guests/flat.ld at
 * 0x10000 with `_start` first, then `objcopy -O binary`. `defines` become -D flags and part of the cached name.
 */
export function buildFlatCGuest(sources: readonly string[], defines: readonly string[] = []): Uint8Array {
  const outDir = join(root, '.build');
  mkdirSync(outDir, { recursive: true });
  const suffix = defines.map((d) => `-${d.replace(/[^A-Za-z0-9]/g, '_')}`).join('');
  const base = join(outDir, basename(sources[0]!).replace(/\.[cS]$/, suffix));
  const script = exampleGuest('flat.ld');
  const deps = [...sources.slice(1), script, join(SDK_DIR, 'interrupts.inc')];
  if (!fresh(`${base}.bin`, sources[0]!, deps)) {
    execFileSync('gcc', [
      '-O2', '-Wall', '-Werror', '-ffreestanding', '-nostdlib', '-static', '-fno-pie', '-no-pie', '-mgeneral-regs-only', '-mno-red-zone',
      '-fno-stack-protector', '-fcf-protection=none', '-fno-asynchronous-unwind-tables', '-Wl,--build-id=none', '-Wl,--no-warn-rwx-segments',
      `-Wa,-I${SDK_DIR}`, `-I${SDK_DIR}`, ...defines.map((d) => `-D${d}`), '-T', script, ...sources, '-o', `${base}.elf`,
    ], { stdio: 'inherit' });
    execFileSync('objcopy', ['-O', 'binary', `${base}.elf`, `${base}.bin`], { stdio: 'inherit' });
  }
  return new Uint8Array(readFileSync(`${base}.bin`));
}

/** Path of a file in the repository's examples/guests folder. */
export function exampleGuest(name: string): string {
  return join(root, '..', 'examples', 'guests', name);
}

/** The SDK files a sandbox guest is built from: a change to any of them rebuilds the fixtures too. */
const SDK_FILES = ['kvmpool.h', 'kvmpool.ld', 'start.S', 'runtime.c', 'libc.c'].map((f) => join(SDK_DIR, f));

/** Builds a sandbox guest ELF from a C fixture with the SDK (cached by mtime); `libc: 'none'` builds it freestanding. */
export function buildSandboxGuest(fixture: string, libc: 'musl' | 'none' = 'musl'): string {
  const src = join(root, 'fixtures', fixture);
  const outDir = join(root, '.build');
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, basename(fixture).replace(/\.c$/, libc === 'none' ? '.freestanding.elf' : '.elf'));
  if (!fresh(out, src, SDK_FILES)) compileGuest({ sources: [src], output: out, libc });
  return out;
}
