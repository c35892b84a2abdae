import { describe, expect, it } from 'vitest';
import { CPU_MODES, KvmUnsupportedError, setupCpuMode } from '@kvmpool/core';
import { collect, kvm, makeGuest } from '../support/guest.js';

// kvm-hello-world: 2 + 2 printed as "4\n" on port 0x3f8, then HLT (or, at CPL 3, a write to 0x501).
const HELLO_16 = [0xba, 0xf8, 0x03, 0x00, 0xd8, 0x04, 0x30, 0xee, 0xb0, 0x0a, 0xee, 0xf4];
const HELLO_32 = [0x66, 0xba, 0xf8, 0x03, 0x00, 0xd8, 0x04, 0x30, 0xee, 0xb0, 0x0a, 0xee, 0xf4];
const HELLO_USER = [...HELLO_32.slice(0, -1), 0x66, 0xba, 0x01, 0x05, 0xee]; // mov $0x501,%dx; out %al,(%dx)

function hello(mode: (typeof CPU_MODES)[number]): string {
  const code = mode === 'real' ? HELLO_16 : mode === 'user' ? HELLO_USER : HELLO_32;
  using g = makeGuest(mode, code);
  g.vcpu.patchRegs({ rax: 2n, rbx: 2n });
  const { out, exit } = collect(g.vcpu);
  if (mode === 'user') expect(exit).toMatchObject({ kind: 'io', port: 0x501, direction: 'out' });
  else expect(exit.kind).toBe('hlt');
  return String.fromCharCode(...out);
}

describe('CPU modes run the kvm-hello-world guest', () => {
  for (const mode of ['real', 'protected', 'long', 'user'] as const) {
    it(`${mode} mode prints 4`, () => {
      expect(hello(mode)).toBe('4\n');
    });
  }

  it('user mode really runs at CPL 3 with user pages', () => {
    using g = makeGuest('user', HELLO_USER);
    const s = g.vcpu.getSregs();
    expect(s.cs.dpl).toBe(3);
    expect(s.cs.selector & 3).toBe(3);
    expect(s.cs.l).toBe(1);
    expect(s.efer & 0x400n).toBe(0x400n); // LMA
  });

  // 32-bit paging: kvm_pvm keeps CR0.PG clear outside long mode (the kernel log says so), and
  // the original kvm-hello-world then ends in SHUTDOWN. kvmpool reads CR0 back and reports it.
  for (const paging of ['pae', 'legacy'] as const) {
    it(`paged mode (${paging}) prints 4 where the host supports 32-bit paging, else says why`, () => {
      const k = kvm();
      using vm = k.createVm();
      vm.addMemory({ guestAddress: 0, size: '2 MiB' });
      vm.memory.write(0x10000, HELLO_32);
      const vcpu = vm.createVcpu(0);
      if (k.module === 'kvm_pvm') {
        expect(() => setupCpuMode(vcpu, vm.memory, 'paged', { paging })).toThrow(KvmUnsupportedError);
        expect(() => setupCpuMode(vcpu, vm.memory, 'paged', { paging })).toThrow(/CR0 0x8\w+ became 0x\w+ \(the host refuses paging outside long mode\)/);
        return;
      }
      setupCpuMode(vcpu, vm.memory, 'paged', { paging });
      vcpu.patchRegs({ rip: 0x10000n, rax: 2n, rbx: 2n });
      const { out, exit } = collect(vcpu);
      expect(exit.kind).toBe('hlt');
      expect(String.fromCharCode(...out)).toBe('4\n');
    });
  }
});
