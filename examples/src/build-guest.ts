/**
 * Builds a flat guest binary from `examples/guests/<name>.S` with the machine's gcc (linked at
 * 0x10000, no libc), into `examples/build/`, when the source is newer than the binary.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
export const GUEST_BASE = 0x10000n;

export function buildGuest(name: string): Uint8Array {
  const src = `${root}guests/${name}.S`;
  const out = `${root}build/${name}.bin`;
  mkdirSync(`${root}build`, { recursive: true });
  let fresh = false;
  try {
    fresh = statSync(out).mtimeMs >= statSync(src).mtimeMs;
  } catch {
    fresh = false;
  }
  if (!fresh) {
    execFileSync('gcc', [
      '-nostdlib', '-static', '-Wl,--oformat=binary', `-Wl,-Ttext=0x${GUEST_BASE.toString(16)}`, '-Wl,--build-id=none',
      '-Wl,-e,_start', '-o', out, src,
    ], { stdio: ['ignore', 'inherit', 'inherit'] });
  }
  return new Uint8Array(readFileSync(out));
}
