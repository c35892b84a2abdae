import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ClosedError, Kvm, KvmError } from '@kvmpool/core';
import { collect, kvm, makeGuest } from '../support/guest.js';

describe('errors and guest crashes', () => {
  it('a triple-faulting guest (ud2 with no IDT) returns shutdown', () => {
    using g = makeGuest('long', [0x0f, 0x0b]); // ud2
    expect(g.vcpu.run().kind).toBe('shutdown');
  });

  it('HLT at CPL 3 faults and, with no guest kernel, ends in shutdown', () => {
    using g = makeGuest('user', [0xf4]);
    expect(collect(g.vcpu).exit.kind).toBe('shutdown');
  });

  it('a bad vCPU id throws KvmError naming the ioctl and errno', () => {
    using vm = kvm().createVm();
    let err: unknown;
    try {
      vm.createVcpu(1_000_000);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KvmError);
    expect(err).toMatchObject({ ioctl: 'KVM_CREATE_VCPU', errno: 22, code: 'EINVAL' });
    expect((err as Error).message).toBe('KVM_CREATE_VCPU: EINVAL (Invalid argument)');
  });

  it('a bad memory slot number throws KVM_SET_USER_MEMORY_REGION: EINVAL and adds no slot', () => {
    using vm = kvm().createVm();
    expect(() => vm.addMemory({ guestAddress: 0, size: '4 KiB', slot: 0x7fff })).toThrow('KVM_SET_USER_MEMORY_REGION: EINVAL (Invalid argument)');
    expect(vm.memorySlots()).toEqual([]);
  });

  it('a missing device gives ENOENT with a hint', () => {
    expect(() => Kvm.open('/dev/no-such-kvm')).toThrow(/open\(\/dev\/no-such-kvm\): ENOENT \(No such file or directory\) — no KVM device/);
  });

  it('closed handles refuse use, and closing twice is harmless', () => {
    const fds = readdirSync('/proc/self/fd').length;
    const vm = kvm().createVm();
    const vcpu = vm.createVcpu(0);
    vm.close();
    vm.close();
    expect(vcpu.closed).toBe(true);
    expect(() => vm.createVcpu(1)).toThrow(ClosedError);
    expect(() => vcpu.getRegs()).toThrow('vCPU 0 is closed');
    expect(readdirSync('/proc/self/fd').length).toBe(fds);
  });
});
