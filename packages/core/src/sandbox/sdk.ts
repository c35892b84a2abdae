/** The guest SDK shipped with @kvmpool/core (sdk/): its location and a gcc driver for it. */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Folder with kvmpool.h, kvmpool.ld, start.S and runtime.c. */
/**
 * The SDK directory inside the installed package (`kvmpool.h`, `kvmpool.ld`, `start.S`, `runtime.c`), with a
 * trailing slash.
 */
export const SDK_DIR = fileURLToPath(new URL('../../sdk/', import.meta.url));

export const GUEST_CFLAGS = [
  '-ffreestanding', '-nostdlib', '-static', '-no-pie', '-fno-pic', '-O2', '-fno-stack-protector', '-fcf-protection=none',
  '-fno-asynchronous-unwind-tables', '-mno-red-zone',
] as const;

/** Options of `compileGuest()`. */
export interface CompileGuestOptions {
  /** C (or .S) sources of the guest. */
  sources: string[];
  /** Path of the ELF to write. */
  output: string;
  /** Extra gcc flags (e.g. -DNAME, -O3). */
  cflags?: string[];
}

/** Compiles and links a sandbox guest with the machine's gcc; throws with gcc's message on failure. */
export function compileGuest(options: CompileGuestOptions): string {
  const args = [
    ...GUEST_CFLAGS, ...(options.cflags ?? []), `-I${SDK_DIR}`, '-T', `${SDK_DIR}kvmpool.ld`, `${SDK_DIR}start.S`,
    `${SDK_DIR}runtime.c`, ...options.sources, '-o', options.output,
  ];
  try {
    execFileSync('gcc', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`compileGuest: gcc failed for ${options.sources.join(' ')}:\n${stderr}`);
  }
  return options.output;
}
