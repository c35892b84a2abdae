import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createMachine, drainVcpuThreads, vcpuThreads } from '@kvmpool/core/internal';
import { SPIN } from '../support/machine-guests.js';

const threads = (): number => readdirSync('/proc/self/task').length;
const fds = (): number => readdirSync('/proc/self/fd').length;
const mapLines = (): string[] => readFileSync('/proc/self/maps', 'utf8').trim().split('\n');
/** Mappings of vCPU fds (kvm_run, coalesced ring): `anon_inode:kvm-vcpu:N`. */
const kvmMaps = (): number => mapLines().filter((l) => l.includes('kvm-vcpu')).length;
/** Mappings exactly the guest memory's size (an unusual 3 MiB, to tell them from V8's). */
const GUEST_BYTES = 3 * 2 ** 20;
const guestMaps = (): number =>
  mapLines().filter((l) => {
    const [range] = l.split(' ');
    const [a, b] = (range ?? '0-0').split('-');
    return Number(BigInt(`0x${b}`) - BigInt(`0x${a}`)) === GUEST_BYTES;
  }).length;
const gc = (): void => (globalThis as { gc?: () => void }).gc?.();
/**
 * Collects with pauses between until `done()` holds or 30 rounds (3 s) have passed:
 * SharedArrayBuffer memory is freed only after its last view dies in every isolate that saw it,
 * and a vCPU thread's isolate lets go of it some time after the thread has ended (under CI
 * load, later than 300 ms). A real leak of 200 VMs never settles and still fails below.
 */
async function settle(done: () => boolean = () => false): Promise<void> {
  for (let i = 0; i < 30 && (i < 3 || !done()); i++) {
    await new Promise((r) => setTimeout(r, 100));
    gc();
  }
}

async function cycle(): Promise<void> {
  await using vm = await createMachine({ memory: GUEST_BYTES, vcpus: 2 });
  vm.load(0x10000, SPIN);
  await vm.start({ entry: 0x10000n, stack: (i) => 0x80000n + BigInt(i) * 0x1000n });
  await vm.kick(1);
  expect(vm.vcpuStates()).toEqual(['running', 'running']);
}

describe('machine lifecycle', () => {
  it('200 VMs × 2 vCPUs started and stopped leave no thread, fd or mapping behind', async () => {
    for (let i = 0; i < 10; i++) await cycle(); // warm-up: JIT, koffi, worker code caches
    await drainVcpuThreads();
    await settle();
    const before = { threads: threads(), fds: fds(), guestMaps: guestMaps(), all: mapLines().length };
    expect(kvmMaps()).toBe(0);
    const started = vcpuThreads.started;
    for (let i = 0; i < 200; i++) await cycle();
    // vCPU threads were reused from VM to VM, not started anew each time.
    expect(vcpuThreads.started - started).toBeLessThanOrEqual(4);
    await drainVcpuThreads();
    await settle(() => threads() === before.threads && guestMaps() === before.guestMaps);
    expect(threads()).toBe(before.threads);
    expect(fds()).toBe(before.fds);
    expect(kvmMaps()).toBe(0);
    expect(guestMaps()).toBe(before.guestMaps);
    // The rest may move with V8's heap, and koffi keeps 3 mappings per thread it ever ran in
    // (its call stack and heap blocks), but 200 VMs must not add a mapping or more each.
    expect(mapLines().length - before.all).toBeLessThan(200);
  });
});
