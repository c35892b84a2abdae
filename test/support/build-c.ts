/** Builds a C fixture with the machine's gcc into test/.build/ and returns the binary's path. */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileGuest } from '@kvmpool/core';

const root = fileURLToPath(new URL('..', import.meta.url));

export function buildC(fixture: string, flags: string[] = []): string {
  const src = join(root, 'fixtures', fixture);
  const outDir = join(root, '.build');
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, basename(fixture).replace(/\.[cS]$/, ''));
  let fresh = false;
  try {
    fresh = statSync(out).mtimeMs >= statSync(src).mtimeMs;
  } catch {
    fresh = false;
  }
  if (!fresh) execFileSync('gcc', ['-O2', '-Wall', '-Werror', ...flags, '-o', out, src], { stdio: 'inherit' });
  return out;
}

/** Assembles a flat guest binary (linked at 0x10000, no libc) from a `.S` file with gcc. */
export function buildFlatGuest(source: string): Uint8Array {
  const outDir = join(root, '.build');
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, basename(source).replace(/\.S$/, '.bin'));
  let fresh = false;
  try {
    fresh = statSync(out).mtimeMs >= statSync(source).mtimeMs;
  } catch {
    fresh = false;
  }
  if (!fresh) {
    execFileSync('gcc', ['-nostdlib', '-static', '-Wl,--oformat=binary', '-Wl,-Ttext=0x10000', '-Wl,--build-id=none', '-Wl,-e,_start', '-o', out, source], { stdio: 'inherit' });
  }
  return new Uint8Array(readFileSync(out));
}

/** Path of a file in the repository's examples/guests folder. */
export function exampleGuest(name: string): string {
  return join(root, '..', 'examples', 'guests', name);
}

/** Builds a sandbox guest ELF from a C fixture with the SDK (cached by mtime). */
export function buildSandboxGuest(fixture: string): string {
  const src = join(root, 'fixtures', fixture);
  const outDir = join(root, '.build');
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, basename(fixture).replace(/\.c$/, '.elf'));
  let fresh = false;
  try {
    fresh = statSync(out).mtimeMs >= statSync(src).mtimeMs;
  } catch {
    fresh = false;
  }
  if (!fresh) compileGuest({ sources: [src], output: out });
  return out;
}
