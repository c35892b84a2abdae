/**
 * What the Linux-program examples need from the host: Debian's busybox-static at /bin/busybox,
 * musl-gcc (Debian's musl-tools) to build examples/guests/<name>.c into a static executable in
 * examples/build/, and a Ctrl-C handler that closes the pools. A missing tool ends the example
 * with status 1 and the package to install.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
export const BUSYBOX = '/bin/busybox';

function missing(what: string, pkg: string): never {
  console.error(`${what}; install Debian's ${pkg} (apt-get install ${pkg})`);
  process.exit(1);
}

/** /bin/busybox, or exits naming busybox-static. */
export function requireBusybox(): string {
  if (!existsSync(BUSYBOX)) missing(`${BUSYBOX} is missing`, 'busybox-static');
  return BUSYBOX;
}

/** Builds examples/guests/<name>.c with `musl-gcc -static -O2` (when the binary is older than its source); exits naming musl-tools without musl-gcc. */
export function buildMuslProgram(name: string): string {
  const src = `${root}guests/${name}.c`;
  const out = `${root}build/${name}`;
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return out;
  mkdirSync(`${root}build`, { recursive: true });
  try {
    execFileSync('musl-gcc', ['-static', '-O2', '-Wall', '-Wextra', '-o', out, src], { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') missing('musl-gcc is not installed', 'musl-tools');
    throw new Error(`musl-gcc failed to build ${src}`, { cause: e });
  }
  return out;
}

/** Ctrl-C (or SIGTERM): aborts `calls`, closes every pool (workers and VMs), exits. */
export function closePoolsOnSignal(pools: readonly { close(): Promise<void> }[], calls?: AbortController): void {
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\n${signal}: closing the pools\n`);
    calls?.abort(new Error(`${signal} received`));
    void Promise.all(pools.map((p) => p.close())).then(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}
