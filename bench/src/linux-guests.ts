/**
 * The programs the `linux` benchmark runs: Debian's busybox-static at /bin/busybox, and
 * bench/c/<name>.c built with `musl-gcc -static -O2` into bench/build/<name> (only when the
 * binary is missing or older than its source). A missing tool fails naming its Debian package.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BENCH_DIR, BUILD_DIR } from './harness.js';

export const BUSYBOX = '/bin/busybox';

/** /bin/busybox, or an error naming the Debian package that installs it. */
export function requireBusybox(): string {
  if (!existsSync(BUSYBOX)) throw new Error(`linux: ${BUSYBOX} is missing; install Debian's busybox-static (apt-get install busybox-static)`);
  return BUSYBOX;
}

/** Compiles bench/c/<name>.c into a static musl executable bench/build/<name>; returns its path. */
export function buildMusl(name: string): string {
  const src = join(BENCH_DIR, 'c', `${name}.c`);
  const out = join(BUILD_DIR, name);
  if (!existsSync(src)) throw new Error(`buildMusl: no source ${src}`);
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return out;
  mkdirSync(BUILD_DIR, { recursive: true });
  const args = ['-static', '-O2', '-Wall', '-Wextra', '-Werror', '-o', out, src];
  try {
    execFileSync('musl-gcc', args, { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    const why = missing ? 'musl-gcc is not installed; install Debian\'s musl-tools (apt-get install musl-tools)' : `musl-gcc ${args.join(' ')} failed`;
    throw new Error(`buildMusl: ${why}`, { cause: e });
  }
  return out;
}
