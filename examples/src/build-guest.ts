/**
 * Builds the example guests with the machine's gcc into `examples/build/`, each only when one
 * of its sources is newer than the output:
 *   buildGuest(name)         examples/guests/<name>.S → <name>.bin, a flat binary linked at 0x10000, no libc
 *   buildSandboxGuest(name)  examples/guests/<name>.c → <name>.elf, a sandbox guest built with the core SDK
 *   buildFlatCGuest(name)    examples/guests/<name>.c → <name>.bin, a flat machine guest in C (flat.ld, at 0x10000)
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SDK_DIR, compileGuest } from '@kvmpool/core';

const root = fileURLToPath(new URL('..', import.meta.url));
export const GUEST_BASE = 0x10000n;

/** True when `output` exists and is at least as new as every input. */
function upToDate(output: string, inputs: readonly string[]): boolean {
  try {
    const built = statSync(output).mtimeMs;
    return inputs.every((input) => statSync(input).mtimeMs <= built);
  } catch {
    return false;
  }
}

export function buildGuest(name: string): Uint8Array {
  const src = `${root}guests/${name}.S`;
  const out = `${root}build/${name}.bin`;
  mkdirSync(`${root}build`, { recursive: true });
  if (!upToDate(out, [src, `${root}guests/uart.inc`])) {
    execFileSync('gcc', [
      '-nostdlib', '-static', '-Wl,--oformat=binary', `-Wl,-Ttext=0x${GUEST_BASE.toString(16)}`, '-Wl,--build-id=none',
      '-Wl,-e,_start', '-o', out, src,
    ], { stdio: ['ignore', 'inherit', 'inherit'] });
  }
  return new Uint8Array(readFileSync(out));
}

/** The SDK files a sandbox guest is built from: a change to any of them rebuilds the guest too. */
const SDK_FILES = ['kvmpool.h', 'kvmpool.ld', 'start.S', 'runtime.c', 'libc.c'].map((f) => `${SDK_DIR}${f}`);

/** Builds a sandbox guest ELF with compileGuest() (-O2, SSE2 at most) and returns its path. */
export function buildSandboxGuest(name: string, cflags: string[] = []): string {
  const src = `${root}guests/${name}.c`;
  const out = `${root}build/${name}.elf`;
  mkdirSync(`${root}build`, { recursive: true });
  if (!upToDate(out, [src, ...SDK_FILES])) compileGuest({ sources: [src], output: out, cflags });
  return out;
}

/** Builds a freestanding C machine guest: linked by guests/flat.ld at 0x10000 (`_start` first), then objcopy -O binary. */
export function buildFlatCGuest(name: string): Uint8Array {
  const src = `${root}guests/${name}.c`;
  const script = `${root}guests/flat.ld`;
  const elf = `${root}build/${name}.elf`;
  const out = `${root}build/${name}.bin`;
  mkdirSync(`${root}build`, { recursive: true });
  if (!upToDate(out, [src, script])) {
    execFileSync('gcc', [
      '-O2', '-Wall', '-Werror', '-ffreestanding', '-nostdlib', '-static', '-fno-pie', '-no-pie', '-mgeneral-regs-only', '-mno-red-zone',
      '-fno-stack-protector', '-fcf-protection=none', '-fno-asynchronous-unwind-tables', '-Wl,--build-id=none', '-Wl,--no-warn-rwx-segments',
      '-T', script, src, '-o', elf,
    ], { stdio: ['ignore', 'inherit', 'inherit'] });
    execFileSync('objcopy', ['-O', 'binary', elf, out], { stdio: ['ignore', 'inherit', 'inherit'] });
  }
  return new Uint8Array(readFileSync(out));
}
