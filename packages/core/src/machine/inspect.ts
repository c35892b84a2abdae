/**
 * Looking inside a live machine: a consistent per-vCPU state (all vCPUs paused while it is
 * read), guest memory by physical or virtual address, and a byte-pattern scan over every slot
 * (the research doc's memory scan, without copying pages).
 */
import type { MemorySlotInfo } from '../memory.js';
import { walkPageTables } from '../cpu/page-walk.js';
import type { VcpuSnapshot } from '../vcpu-state.js';
import type { Machine } from './machine.js';
import type { VcpuState } from './vcpu-lifecycle.js';

/** One vCPU as `machine.inspect()` read it: its whole saved state, its lifecycle state and exit count. */
export interface VcpuInspection extends VcpuSnapshot {
  /** Its lifecycle state when it was read. */
  state: VcpuState;
  /** Exits its thread has handled so far. */
  exits: number;
}

/** What `machine.inspect()` returns: every vCPU, read while all were paused, and the memory slots. */
export interface Inspection {
  /** Every vCPU, by index. */
  vcpus: VcpuInspection[];
  /** The memory slots. */
  slots: MemorySlotInfo[];
}

/** Pauses every vCPU, reads them all, and lets them go on if they were running. */
export function inspectMachine(m: Machine): Promise<Inspection> {
  return m.whilePaused(async () => {
    const states = m.vcpuStates();
    const exits = m.vcpuExits();
    const vcpus: VcpuInspection[] = [];
    for (let i = 0; i < m.vcpuCount; i++) {
      vcpus.push({ ...(await m.saveVcpuState(i)), state: states[i] ?? 'crashed', exits: exits[i] ?? 0 });
    }
    return { vcpus, slots: m.vm.memorySlots() };
  });
}

/**
 * Reads `length` bytes at guest-virtual `gva` as vCPU `vcpu` sees them (the vCPU must be paused).
 * Each page goes through KVM_TRANSLATE, or a walk of the guest's page tables where KVM cannot
 * translate. Throws RangeError naming the first unmapped address.
 */
export async function readVirtual(m: Machine, vcpu: number, gva: bigint, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await eachPage(m, vcpu, gva, length, (pa, done, chunk) => out.set(m.memory.view(pa, chunk), done));
  return out;
}

/**
 * Calls `visit(physical, offset, length)` for each page-bounded piece of [gva, gva+length),
 * translating with KVM_TRANSLATE, or by walking the page tables where KVM cannot translate.
 */
async function eachPage(m: Machine, vcpu: number, gva: bigint, length: number, visit: (pa: bigint, done: number, chunk: number) => void): Promise<void> {
  let sregs: Awaited<ReturnType<Machine['getSregs']>> | undefined;
  for (let done = 0; done < length; ) {
    const va = gva + BigInt(done);
    const chunk = Math.min(length - done, 4096 - Number(va & 0xfffn));
    let pa: bigint | undefined;
    try {
      const t = await m.translate(vcpu, va);
      if (t.valid) pa = t.physicalAddress;
    } catch {
      sregs ??= await m.getSregs(vcpu);
      pa = walkPageTables(m.memory, sregs, va)?.physicalAddress;
    }
    if (pa === undefined) throw new RangeError(`vCPU ${vcpu}: guest-virtual 0x${va.toString(16)} is not mapped`);
    visit(pa, done, chunk);
    done += chunk;
  }
}

/** Writes `data` at guest-virtual `gva` as vCPU `vcpu` sees it (vCPU paused). */
export async function writeVirtual(m: Machine, vcpu: number, gva: bigint, data: Uint8Array): Promise<void> {
  await eachPage(m, vcpu, gva, data.length, (pa, done, chunk) => m.memory.write(pa, data.subarray(done, done + chunk)));
}

/** Guest-physical addresses of every occurrence of `pattern` in guest memory. */
export function scanMemory(m: Machine, pattern: Uint8Array | string, limit = 10_000): bigint[] {
  const needle = typeof pattern === 'string' ? Buffer.from(pattern, 'utf8') : Buffer.from(pattern.buffer, pattern.byteOffset, pattern.byteLength);
  if (needle.length === 0) throw new RangeError('scanMemory: empty pattern');
  const found: bigint[] = [];
  for (const slot of m.vm.memory.slots) {
    const hay = Buffer.from(slot.buffer, 0, slot.size); // a view, not a copy
    for (let at = hay.indexOf(needle); at !== -1 && found.length < limit; at = hay.indexOf(needle, at + 1)) {
      found.push(slot.guestAddress + BigInt(at));
    }
  }
  return found;
}
