/** Test helpers: a VM with one vCPU in a given mode, and a serial-collecting run loop. */
import { Kvm, guestCpuid, setEntryPoint, setupCpuMode, type CpuMode, type Vcpu, type VcpuExit, type Vm } from '@kvmpool/core';

export const CODE = 0x10000n;
export const STACK = 0x20000n;

let shared: Kvm | undefined;
export function kvm(): Kvm {
  shared ??= Kvm.open();
  return shared;
}

export interface TestGuest {
  vm: Vm;
  vcpu: Vcpu;
  [Symbol.dispose](): void;
}

/** A VM with `memory` at GPA 0, `code` at 0x10000 and one vCPU in `mode` pointed at it. */
export function makeGuest(mode: CpuMode, code: ArrayLike<number>, memory = '2 MiB', opts: { dirtyLog?: boolean } = {}): TestGuest {
  const k = kvm();
  const vm = k.createVm();
  try {
    vm.addMemory({ guestAddress: 0, size: memory, dirtyLog: opts.dirtyLog ?? false });
    vm.memory.write(CODE, code);
    const vcpu = vm.createVcpu(0);
    vcpu.setCpuid(guestCpuid(k));
    setupCpuMode(vcpu, vm.memory, mode);
    setEntryPoint(vcpu, mode, CODE, STACK);
    return { vm, vcpu, [Symbol.dispose]: () => vm.close() };
  } catch (e) {
    vm.close();
    throw e;
  }
}

/** Runs until an exit other than an OUT to `port`; returns the bytes written there and that exit. */
export function collect(vcpu: Vcpu, port = 0x3f8, max = 100_000): { out: number[]; exit: VcpuExit; exits: number } {
  const out: number[] = [];
  for (let i = 1; i <= max; i++) {
    const exit = vcpu.run();
    if (exit.kind === 'io' && exit.direction === 'out' && exit.port === port) {
      out.push(...exit.data);
      continue;
    }
    return { out, exit, exits: i };
  }
  throw new Error(`guest still running after ${max} exits`);
}

/** Little-endian bytes of a 32-bit immediate. */
export function imm32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

export function imm64(v: bigint): number[] {
  return Array.from({ length: 8 }, (_, i) => Number((v >> BigInt(8 * i)) & 0xffn));
}
