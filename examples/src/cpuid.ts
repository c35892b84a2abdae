/**
 * Hypervisor detection seen from inside: a CPL 3 guest executes CPUID 0x40000000 and writes
 * the signature registers (EBX, ECX, EDX) to the serial port; a KVM guest sees "KVMKVMKVM".
 */
import { Kvm, guestCpuid, setEntryPoint, setupCpuMode } from '@kvmpool/core';
import { cpuidGuest } from './guests.js';
import { runToCompletion } from './run-guest.js';

const CODE = 0x10000n;
const BUFFER = 0x18000;

using kvm = Kvm.open();
using vm = kvm.createVm();
vm.addMemory({ guestAddress: 0, size: '2 MiB' });
vm.memory.write(CODE, cpuidGuest(BUFFER));
const vcpu = vm.createVcpu(0);
vcpu.setCpuid(guestCpuid(kvm));
setupCpuMode(vcpu, vm.memory, 'user');
setEntryPoint(vcpu, 'user', CODE, 0x20000n);
const r = runToCompletion(vcpu);
const signature = r.output.replace(/\0+$/, '');
console.log(`CPUID 0x40000000 inside the guest: ${signature}`);
if (signature !== 'KVMKVMKVM' || r.stop !== 'exit-port') {
  console.error(`unexpected: signature ${JSON.stringify(r.output)}, stopped by ${r.stop}`);
  process.exitCode = 1;
}
