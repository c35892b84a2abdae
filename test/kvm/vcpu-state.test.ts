import { describe, expect, it } from 'vitest';
import { cpuidSignature, guestCpuid } from '@kvmpool/core';

interface KvmCpuidEntryLike { function: number; index: number; flags: number; eax: number; ebx: number; ecx: number; edx: number }
import { kvm, makeGuest } from '../support/guest.js';

describe('vCPU state round-trips through KVM', () => {
  it('regs', () => {
    using g = makeGuest('long', [0xf4]);
    const regs = g.vcpu.getRegs();
    g.vcpu.setRegs({ ...regs, r15: 0xfedc_ba98_7654_3210n, rsi: 42n });
    expect(g.vcpu.getRegs()).toMatchObject({ r15: 0xfedc_ba98_7654_3210n, rsi: 42n, rip: regs.rip });
  });

  it('sregs keep the long-mode segments and control registers set up by kvmpool', () => {
    using g = makeGuest('long', [0xf4]);
    const s = g.vcpu.getSregs();
    expect(s.cs).toMatchObject({ selector: 8, l: 1, present: 1, dpl: 0 });
    expect(s.cr0 & 0x8000_0001n).toBe(0x8000_0001n);
    expect(s.efer & 0x500n).toBe(0x500n);
  });

  it('fpu: control word, x87 and SSE registers', () => {
    using g = makeGuest('long', [0xf4]);
    const fpu = g.vcpu.getFpu();
    fpu.fcw = 0x27f;
    fpu.fpr[3] = 7;
    fpu.xmm[0] = 0xab;
    fpu.xmm[17] = 0xcd;
    fpu.mxcsr = 0x7f80;
    g.vcpu.setFpu(fpu);
    const back = g.vcpu.getFpu();
    expect({ fcw: back.fcw, fpr3: back.fpr[3], xmm0: back.xmm[0], xmm17: back.xmm[17] }).toEqual({ fcw: 0x27f, fpr3: 7, xmm0: 0xab, xmm17: 0xcd });
    // kvm_pvm neither reports nor takes MXCSR through KVM_GET/SET_FPU (it reads 0 from reset on).
    expect(back.mxcsr).toBe(kvm().module === 'kvm_pvm' ? 0 : 0x7f80);
  });

  it('msrs: set and read back, and an unknown MSR is refused by index', () => {
    using g = makeGuest('long', [0xf4]);
    const KERNEL_GS_BASE = 0xc000_0102;
    const SYSENTER_CS = 0x174;
    g.vcpu.setMsrs([{ index: KERNEL_GS_BASE, data: 0xffff_8000_1234_0000n }, { index: SYSENTER_CS, data: 0x10n }]);
    expect(g.vcpu.getMsrs([KERNEL_GS_BASE, SYSENTER_CS]).map((m) => [m.index, m.data])).toEqual([
      [KERNEL_GS_BASE, 0xffff_8000_1234_0000n],
      [SYSENTER_CS, 0x10n],
    ]);
    expect(() => g.vcpu.setMsrs([{ index: 0xdead_0000, data: 1n }])).toThrow(/refused MSR 0xdead0000/);
  });

  it('cpuid: the table set is the table read, with the KVM signature leaf', () => {
    using g = makeGuest('long', [0xf4]);
    const leaf = g.vcpu.getCpuid().find((e) => e.function === 0x4000_0000);
    expect(leaf && cpuidSignature(leaf)).toBe('KVMKVMKVM\0\0\0');
    // Every leaf set with a value is read back (KVM adjusts dynamic bits such as leaf 1's OSXSAVE
    // and APIC, so values are not compared) and no other; KVM may leave out all-zero leaves (this
    // host's kernel drops 0x1d and 0x1e, the AMX tile leaves, which its own table lists as zero).
    const key = (e: { function: number; index: number }): string => `${e.function}/${e.index}`;
    const set = new Map(guestCpuid(kvm()).map((e) => [key(e), e as KvmCpuidEntryLike]));
    const read = g.vcpu.getCpuid();
    expect(read.map(key).filter((k) => !set.has(k))).toEqual([]);
    const readKeys = new Set(read.map(key));
    const dropped = [...set.values()].filter((e) => !readKeys.has(key(e)));
    expect(dropped.filter((e) => e.eax !== 0 || e.ebx !== 0 || e.ecx !== 0 || e.edx !== 0)).toEqual([]);
    expect(read.length).toBeGreaterThan(set.size / 2);
  });

  it('mp_state, vcpu events and debug registers', () => {
    using g = makeGuest('long', [0xf4]);
    expect(g.vcpu.getMpState()).toBe('runnable');
    const events = g.vcpu.getVcpuEvents();
    expect(events.exception.injected).toBe(0);
    g.vcpu.setVcpuEvents(events);
    const dr = g.vcpu.getDebugRegs();
    g.vcpu.setDebugRegs({ ...dr, db: BigUint64Array.from([0x1000n, 0x2000n, 0n, 0n]) });
    expect([...g.vcpu.getDebugRegs().db]).toEqual([0x1000n, 0x2000n, 0n, 0n]);
  });

  it('lapic state with an in-kernel irqchip: the APIC id register holds the vCPU id', () => {
    using vm = kvm().createVm({ irqchip: true });
    vm.addMemory({ guestAddress: 0, size: '1 MiB' });
    vm.createVcpu(0);
    const v1 = vm.createVcpu(1);
    const lapic = v1.getLapic();
    expect(lapic.regs.length).toBe(1024);
    expect(lapic.regs[0x23]).toBe(1); // APIC ID register (0x20), id in bits 31:24
    v1.setLapic(lapic);
    // Secondary vCPUs wait for INIT/SIPI under an in-kernel irqchip; a bare guest makes them runnable.
    expect(v1.getMpState()).toBe('uninitialized');
    v1.setMpState('runnable');
    expect(v1.getMpState()).toBe('runnable');
  });

  it('VM set-up on request: irqchip, PIT, TSS and identity-map addresses; their state reads back', () => {
    using vm = kvm().createVm({ irqchip: true, pit: true, tssAddress: 0xfffb_d000n, identityMapAddress: 0xfffb_c000n });
    expect(vm.hasIrqchip).toBe(true);
    expect(vm.hasPit).toBe(true);
    expect(vm.getPit().channels).toHaveLength(3);
    const ioapic = vm.getIrqchip(2);
    expect(ioapic.length).toBe(512);
    vm.setIrqchip(2, ioapic);
    expect(vm.getClock().clock).toBeGreaterThanOrEqual(0n);
    expect(() => kvm().createVm({ pit: true })).toThrow(/KVM_CREATE_PIT2: (ENOENT|EINVAL|EEXIST|ENXIO)/);
  });
});
