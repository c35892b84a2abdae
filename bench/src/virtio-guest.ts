/**
 * The virtio guest driver (examples/guests/virtio-guest.c) for the `virtio` benchmark: built flat with
 * gcc + objcopy into bench/build/, and the guest's parameter page (struct params of the C file).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Machine } from '@kvmpool/core/internal';
import { BENCH_DIR, BUILD_DIR } from './harness.js';

export const CODE = 0x10000n;
export const STACK = 0x80000n;
const PARAMS = 0xf000n;
/** virtio-guest.c's modes. */
export const MODE = { BENCH_BLK: 3, BENCH_CONSOLE: 4, NOTIFY: 5 } as const;

const GUESTS = join(BENCH_DIR, '..', 'examples', 'guests');

/** The polling driver as a flat binary at 0x10000 (rebuilt when its source or flat.ld is newer). */
export function virtioGuest(): Uint8Array {
  const src = join(GUESTS, 'virtio-guest.c');
  const script = join(GUESTS, 'flat.ld');
  const elf = join(BUILD_DIR, 'virtio-guest.elf');
  const bin = join(BUILD_DIR, 'virtio-guest.bin');
  let fresh = false;
  try {
    const built = statSync(bin).mtimeMs;
    fresh = [src, script].every((f) => statSync(f).mtimeMs <= built);
  } catch {
    fresh = false;
  }
  if (!fresh) {
    mkdirSync(BUILD_DIR, { recursive: true });
    execFileSync('gcc', [
      '-O2', '-Wall', '-Werror', '-ffreestanding', '-nostdlib', '-static', '-fno-pie', '-no-pie', '-mgeneral-regs-only', '-mno-red-zone',
      '-fno-stack-protector', '-fcf-protection=none', '-fno-asynchronous-unwind-tables', '-Wl,--build-id=none', '-Wl,--no-warn-rwx-segments',
      '-T', script, src, '-o', elf,
    ], { stdio: ['ignore', 'inherit', 'inherit'] });
    execFileSync('objcopy', ['-O', 'binary', elf, bin], { stdio: ['ignore', 'inherit', 'inherit'] });
  }
  return new Uint8Array(readFileSync(bin));
}

/** Writes struct params { mode, flags, arg0, arg1, write_sector }. */
export function writeParams(m: Machine, mode: number, arg0: number, arg1 = 0): void {
  const b = new Uint8Array(32);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, mode, true);
  dv.setBigUint64(8, BigInt(arg0), true);
  dv.setBigUint64(16, BigInt(arg1), true);
  m.load(PARAMS, b);
}
