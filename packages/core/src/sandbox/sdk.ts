/**
 * The guest SDK shipped with @kvmpool/core (sdk/): its location and a compiler driver for it.
 *
 * By default a guest is built with musl (`musl-gcc`, Debian package musl-tools) and has the C
 * library; `libc: 'none'` builds it freestanding with gcc (-ffreestanding -nostdlib) as before.
 * A musl guest is linked with ld's default script at 1 MiB (TLS, init_array and the rest where
 * musl expects them), then every global symbol that is not the guest's own (or the SDK
 * runtime's) is made local, so that the image exports what the guest exports and not libc.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The SDK directory inside the installed package (`kvmpool.h`, `kvmpool-linux.h`, `kvmpool.ld`,
 * `start.S`, `runtime.c`, `libc.c`), with a trailing slash.
 */
export const SDK_DIR = fileURLToPath(new URL('../../sdk/', import.meta.url));

/** Flags of a freestanding guest (`libc: 'none'`), linked with sdk/kvmpool.ld. */
export const GUEST_CFLAGS = [
  '-ffreestanding', '-nostdlib', '-static', '-no-pie', '-fno-pic', '-O2', '-fno-stack-protector', '-fcf-protection=none',
  '-fno-asynchronous-unwind-tables', '-mno-red-zone',
] as const;

/** Flags of a musl guest (the default): hosted C, static, not position-independent. */
export const GUEST_LIBC_CFLAGS = [
  '-DKVMPOOL_LIBC', '-static', '-no-pie', '-fno-pic', '-O2', '-fno-stack-protector', '-fcf-protection=none',
  '-fno-asynchronous-unwind-tables', '-mno-red-zone',
] as const;

/** Where a musl guest's image starts (sandbox/abi.ts IMAGE_MIN). */
const LIBC_LINK_FLAGS = ['-Wl,-Ttext-segment=0x100000'] as const;

/** SDK runtime symbols a musl guest keeps global beside its own (the host looks up the first two). */
const SDK_GLOBALS = ['_kvmpool_entry', '_kvmpool_libc_flush', 'kvmpool_host_call', 'kvmpool_print', 'kvmpool_puts', 'kvmpool_abort'];

/** Which C library a guest is built with: musl (`musl-gcc`) or none (freestanding). */
export type GuestLibc = 'musl' | 'none';

/** Options of `compileGuest()`. */
export interface CompileGuestOptions {
  /** C (or .S) sources of the guest; objects (.o) and archives (.a) are linked as they are. */
  sources: string[];
  /** Path of the ELF to write. */
  output: string;
  /** Extra compiler flags (e.g. -DNAME, -O3). */
  cflags?: string[];
  /** 'musl' (default): the C library, built with musl-gcc; 'none': freestanding, with gcc. */
  libc?: GuestLibc;
}

/** Compiles and links a sandbox guest; throws with the compiler's message on failure. */
export function compileGuest(options: CompileGuestOptions): string {
  const libc = options.libc ?? 'musl';
  if (libc !== 'musl' && libc !== 'none') throw new TypeError(`compileGuest: libc must be 'musl' or 'none' (got ${JSON.stringify(libc)})`);
  if (libc === 'none') {
    run('gcc', [
      ...GUEST_CFLAGS, ...(options.cflags ?? []), `-I${SDK_DIR}`, '-T', `${SDK_DIR}kvmpool.ld`, `${SDK_DIR}start.S`,
      `${SDK_DIR}runtime.c`, ...options.sources, '-o', options.output,
    ], options.sources);
    return options.output;
  }
  const flags = [...GUEST_LIBC_CFLAGS, ...(options.cflags ?? []), `-I${SDK_DIR}`];
  const dir = mkdtempSync(join(tmpdir(), 'kvmpool-guest-'));
  try {
    // The guest's own objects first: their global symbols are what the image exports.
    const objects = options.sources.map((src, i) => {
      if (/\.(o|a)$/.test(src)) return src;
      const obj = join(dir, `${i}-${basename(src)}.o`);
      run('musl-gcc', [...flags, '-c', src, '-o', obj], [src]);
      return obj;
    });
    const own = objects.length > 0 ? run('nm', ['-g', '--defined-only', '-P', ...objects], options.sources) : '';
    const names = new Set(SDK_GLOBALS);
    for (const line of own.split('\n')) {
      const name = line.split(' ')[0];
      if (name && !name.endsWith(':')) names.add(name); // "file.o:" heads an archive member's list
    }
    run('musl-gcc', [
      ...flags, ...LIBC_LINK_FLAGS, `${SDK_DIR}start.S`, `${SDK_DIR}runtime.c`, `${SDK_DIR}libc.c`, ...objects, '-lm', '-o', options.output,
    ], options.sources);
    const keep = join(dir, 'globals');
    writeFileSync(keep, `${[...names].join('\n')}\n`);
    run('objcopy', [`--keep-global-symbols=${keep}`, options.output], options.sources);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return options.output;
}

/** Runs a tool of the build; its stderr goes into the error. A missing musl-gcc names the package. */
function run(tool: string, args: string[], sources: readonly string[]): string {
  try {
    return execFileSync(tool, args, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 }).toString();
  } catch (e) {
    const err = e as { code?: string; stderr?: Buffer };
    if (err.code === 'ENOENT') {
      if (tool === 'musl-gcc') {
        throw new Error("compileGuest: musl-gcc was not found; install it (Debian/Ubuntu: apt-get install musl-tools) or build a freestanding guest with libc: 'none'", { cause: e });
      }
      throw new Error(`compileGuest: ${tool} was not found (it comes with gcc's binutils)`, { cause: e });
    }
    throw new Error(`compileGuest: ${tool} failed for ${sources.join(' ')}:\n${err.stderr?.toString() ?? ''}`, { cause: e });
  }
}
