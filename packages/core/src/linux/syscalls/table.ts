/**
 * The syscall table: number → function, one group per file. A number missing here returns
 * ENOSYS and is counted by name (syscall-layer.ts).
 */
import type { SyscallFn } from '../syscall-layer.js';
import { FS_SYSCALLS } from './fs.js';
import { MEMORY_SYSCALLS } from './memory.js';
import { PROCESS_SYSCALLS } from './process.js';
import { SIGNAL_SYSCALLS } from './signals.js';
import { TIME_SYSCALLS } from './time.js';

const GROUPS = [FS_SYSCALLS, MEMORY_SYSCALLS, PROCESS_SYSCALLS, SIGNAL_SYSCALLS, TIME_SYSCALLS];

function build(): readonly (SyscallFn | undefined)[] {
  const table: (SyscallFn | undefined)[] = new Array(512).fill(undefined);
  for (const group of GROUPS) {
    for (const [nr, fn] of Object.entries(group)) {
      if (table[Number(nr)]) throw new Error(`syscall ${nr} is defined twice`);
      table[Number(nr)] = fn;
    }
  }
  return table;
}

export const SYSCALLS = build();

/** The names of the syscalls the layer implements. */
export function implementedSyscalls(): number[] {
  return SYSCALLS.flatMap((fn, nr) => (fn ? [nr] : []));
}
