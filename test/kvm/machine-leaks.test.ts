import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createVm } from '@kvmpool/core';
import { SPIN } from '../support/machine-guests.js';

const threads = (): number => readdirSync('/proc/self/task').length;
const fds = (): number => readdirSync('/proc/self/fd').length;
const maps = (): number => readFileSync('/proc/self/maps', 'utf8').split('\n').length;
const gc = (): void => (globalThis as { gc?: () => void }).gc?.();

async function cycle(): Promise<void> {
  await using vm = await createVm({ memory: '1 MiB', vcpus: 2 });
  vm.load(0x10000, SPIN);
  await vm.start({ entry: 0x10000n, stack: (i) => 0x80000n + BigInt(i) * 0x1000n });
  await vm.kick(1);
  expect(vm.vcpuStates()).toEqual(['running', 'running']);
}

describe('machine lifecycle', () => {
  it('200 VMs × 2 vCPUs started and stopped leave no thread, fd or mapping behind', async () => {
    for (let i = 0; i < 10; i++) await cycle(); // warm-up: JIT, koffi, worker code caches
    await new Promise((r) => setTimeout(r, 200));
    gc();
    const before = { threads: threads(), fds: fds(), maps: maps() };
    for (let i = 0; i < 200; i++) await cycle();
    await new Promise((r) => setTimeout(r, 200));
    gc();
    expect(threads()).toBe(before.threads);
    expect(fds()).toBe(before.fds);
    expect(Math.abs(maps() - before.maps)).toBeLessThanOrEqual(16);
  });
});
