// A whole machine: vCPU threads, the exit bus, a COM1 UART and the halt port 0x500.
import { createMachine } from '@kvmpool/core';

// Each vCPU prints its index (rdi) as a digit, then spins until it reads 'g' from COM1,
// then writes to the halt port, which stops that vCPU.
// mov edx,0x3f8; lea eax,[rdi+'0']; out dx,al; wait: in al,dx; cmp al,'g'; jne wait;
// mov edx,0x500; out dx,al
const code = new Uint8Array([
  0xba, 0xf8, 0x03, 0x00, 0x00, 0x8d, 0x47, 0x30, 0xee, 0xec, 0x3c, 0x67, 0x75, 0xfb,
  0xba, 0x00, 0x05, 0x00, 0x00, 0xee,
]);

await using vm = await createMachine({ memory: '4 MiB', vcpus: 2 }); // mode 'user' (CPL 3) by default
let printed = '';
vm.serial(0).on('data', (chunk: Buffer) => (printed += chunk.toString('latin1')));
vm.load(0x10000n, code);
await vm.start({ entry: 0x10000n, stack: (i) => 0x200000n - BigInt(i) * 0x10000n, regs: (i) => ({ rdi: BigInt(i) }) });

while (printed.length < 2) await new Promise((r) => setTimeout(r, 1));
await vm.pause(); // returns once no vCPU is inside KVM_RUN, even one waiting on a device read
console.log(`printed ${[...printed].sort().join(' ')}; states while paused: ${vm.vcpuStates().join(', ')}`);
await vm.resume();

vm.serial(0).write('gg'); // each vCPU's IN takes one byte from the UART's receive FIFO
const exit = await vm.waitForExit();
console.log(`exit: ${exit.reason}`);
