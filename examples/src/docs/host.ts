// What this host's KVM offers, and one of its limits seen from code.
import { Kvm, KvmUnsupportedError, buildCapsReport, setupCpuMode } from '@kvmpool/core';

using kvm = Kvm.open();
const report = buildCapsReport(kvm);
console.log(`module ${report.module}, API ${report.apiVersion}, up to ${report.vcpus.max} vCPUs per VM`);
using vm = kvm.createVm();
vm.addMemory({ guestAddress: 0, size: '2 MiB' });
const vcpu = vm.createVcpu(0);
for (const mode of ['paged', 'user'] as const) {
  try {
    setupCpuMode(vcpu, vm.memory, mode); // reads the registers back: a host that keeps other values is refused
    console.log(`${mode}: supported`);
  } catch (e) {
    if (!(e instanceof KvmUnsupportedError)) throw e;
    console.log(`${mode}: unsupported (${e.feature})`);
  }
}
