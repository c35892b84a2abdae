// The bare handles: Kvm → Vm → Vcpu, one memory slot, CPU mode `user` (64-bit, CPL 3), and a
// run loop on this thread that answers every exit itself.
import { Kvm, setEntryPoint, setupCpuMode } from '@kvmpool/core';

// mov edx, 0x3f8; mov al, 'h'; out dx, al; mov al, 'i'; out dx, al; mov al, '\n'; out dx, al
// in al, dx (the host answers); mov edx, 0x500; out dx, al (the "done" port we chose)
const code = [
  0xba, 0xf8, 0x03, 0x00, 0x00, 0xb0, 0x68, 0xee, 0xb0, 0x69, 0xee, 0xb0, 0x0a, 0xee,
  0xec, 0xba, 0x00, 0x05, 0x00, 0x00, 0xee,
];

using kvm = Kvm.open();
using vm = kvm.createVm();
vm.addMemory({ guestAddress: 0, size: '2 MiB', dirtyLog: true });
vm.memory.write(0x10000, code); // zero-copy, bounds-checked guest-physical access
const vcpu = vm.createVcpu(0);
setupCpuMode(vcpu, vm.memory, 'user'); // GDT, TSS, page tables in 0x1000–0xafff, then the registers
setEntryPoint(vcpu, 'user', 0x10000n, 0x20000n);

let out = '';
for (;;) {
  const exit = vcpu.run(); // blocks this thread in KVM_RUN until the next exit
  if (exit.kind === 'io' && exit.direction === 'out' && exit.port === 0x3f8) out += String.fromCharCode(...exit.data);
  else if (exit.kind === 'io' && exit.direction === 'in') exit.data.set([0x2a]); // answer before the next run
  else if (exit.kind === 'io' && exit.port === 0x500) break;
  else throw new Error(`unexpected exit: ${exit.kind}`);
}
const regs = vcpu.getRegs();
process.stdout.write(out);
console.log(`al = 0x${(regs.rax & 0xffn).toString(16)}, rip = 0x${regs.rip.toString(16)}`);
console.log(`pages written since the slot was made: ${vm.dirtyPages(0).length}`);
