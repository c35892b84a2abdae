// virtio devices on a machine: a disk over a Buffer, a console, an entropy source, and the guest
// driver of examples/guests/virtio-guest.c (it finds them in the virtio window and uses their rings).
import { createMachine, virtioBlk, virtioConsole, virtioRng } from '@kvmpool/core';
import { GUEST_BASE, buildFlatCGuest } from '../build-guest.js';

const disk = Buffer.alloc(64 * 512); // 64 sectors of 512 bytes, used in place
disk.write("Hello from the host's disk\n");

await using vm = await createMachine({ memory: '8 MiB', devices: [virtioBlk({ backing: disk }), virtioConsole(), virtioRng()] });
for (const p of vm.virtio) console.log(`${p.name} at 0x${p.address.toString(16)}, irq ${p.irq}: ${p.cmdline}`);

// The guest's parameter page (struct params): mode 1 (every device once), no console echo, write sector 9.
const params = new DataView(new ArrayBuffer(32));
params.setUint32(0, 1, true);
params.setUint32(4, 1, true);
params.setBigUint64(24, 9n, true);
vm.load(0xf000n, new Uint8Array(params.buffer));
vm.load(GUEST_BASE, buildFlatCGuest('virtio-guest'));

let text = '';
vm.virtioConsole(0).on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
await vm.start({ entry: GUEST_BASE, stack: 0x80000n });
const exit = await vm.waitForExit();
for (let i = 0; i < 1000 && !text.endsWith('done\n'); i++) await new Promise((r) => setTimeout(r, 1)); // the last chunk may follow the halt
for (const line of text.trimEnd().split('\n')) console.log(`guest: ${line}`);
console.log(`exit: ${exit.reason}; sector 9 now reads: ${disk.toString('latin1', 9 * 512, 9 * 512 + 23)}`);
