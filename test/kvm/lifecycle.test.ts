import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { setupCpuMode } from '@kvmpool/core';
import { kvm } from '../support/guest.js';

const fdCount = (): number => readdirSync('/proc/self/fd').length;
/**
 * Mappings, less V8's own heap pages (anonymous rw-p, 256 KiB each: the heap may keep pages it
 * grew into after a GC, which is not a leak of ours); kvm-vcpu mappings and guest memory count.
 */
const mappings = (): number =>
  readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => {
      const m = /^([0-9a-f]+)-([0-9a-f]+) rw-p 00000000 00:00 0\s*$/.exec(l);
      return !(m && BigInt(`0x${m[2]}`) - BigInt(`0x${m[1]}`) === 0x40000n);
    }).length;
const rssMiB = (): number => process.memoryUsage.rss() / 2 ** 20;
const gc = (): void => (globalThis as { gc?: () => void }).gc?.();

/** create VM + 2 MiB + 1 vCPU, run a real-mode HLT, close. */
function cycle(): void {
  using vm = kvm().createVm();
  vm.addMemory({ guestAddress: 0, size: '2 MiB' });
  vm.memory.writeU8(0, 0xf4); // hlt
  const vcpu = vm.createVcpu(0);
  setupCpuMode(vcpu, vm.memory, 'real');
  vcpu.patchRegs({ rip: 0n });
  const exit = vcpu.run();
  if (exit.kind !== 'hlt') throw new Error(`expected hlt, got ${exit.kind}`);
}

describe('VM lifecycle', () => {
  it('1,000 create/run/close cycles leave fds, mappings and RSS where they were', async () => {
    expect(typeof (globalThis as { gc?: unknown }).gc).toBe('function');
    // Warm up first: JIT code and heap growth of the first cycles are not leaks.
    for (let i = 0; i < 300; i++) cycle();
    gc();
    const fds = fdCount();
    const maps = mappings();
    const rss = rssMiB();
    const heap = process.memoryUsage();
    for (let i = 0; i < 1000; i++) cycle();
    // Guest memory is a SharedArrayBuffer: the allocator gets it back only after its finaliser,
    // which runs some time after the collection that found it dead. Collect with pauses (at most
    // 2 s) until RSS is back within bounds; a leak of 1,000 × 2 MiB never gets there.
    const grown = (): number => rssMiB() - rss - (process.memoryUsage().heapTotal - heap.heapTotal) / 2 ** 20;
    for (let i = 0; i < 20; i++) {
      gc();
      if (i >= 1 && grown() < 8) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(fdCount()).toBe(fds);
    expect(Math.abs(mappings() - maps)).toBeLessThanOrEqual(8);
    // RSS beyond what V8's heap reservation grew by (the live heap must stay flat on its own).
    const after = process.memoryUsage();
    expect(after.heapUsed - heap.heapUsed).toBeLessThan(2 * 2 ** 20);
    expect(rssMiB() - rss - (after.heapTotal - heap.heapTotal) / 2 ** 20).toBeLessThan(8);
  });
});
