/**
 * virtio: a machine with a virtio-blk disk (a file), a virtio console and a virtio-rng, and the guest
 * driver of examples/guests/virtio-guest.c. The guest finds the devices in the virtio window, reads
 * the disk's first sector, writes sector 9 and reads it back, takes 32 random bytes, echoes a line
 * the host sends it, all through virtio rings; its console output comes out here.
 *   node examples/dist/virtio.js
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMachine, virtioBlk, virtioConsole, virtioRng } from '@kvmpool/core';
import { GUEST_BASE, buildFlatCGuest } from './build-guest.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmpool-virtio-'));
try {
  const disk = join(dir, 'disk.img');
  const image = Buffer.alloc(64 * 512);
  image.write('Hello from a virtio-blk disk image on the host!\n');
  writeFileSync(disk, image);

  await using vm = await createMachine({
    memory: '8 MiB',
    devices: [virtioBlk({ backing: { path: disk } }), virtioConsole(), virtioRng()],
  });
  for (const p of vm.virtio) console.log(`${p.name.padEnd(16)} ${p.cmdline}  (notify: ${p.notify})`);

  // The guest's parameter page (struct params in virtio-guest.c): mode 1 (the tour), write to sector 9.
  const params = new DataView(new ArrayBuffer(32));
  params.setUint32(0, 1, true);
  params.setBigUint64(24, 9n, true);
  vm.load(0xf000, new Uint8Array(params.buffer));
  vm.load(GUEST_BASE, buildFlatCGuest('virtio-guest'));

  const con = vm.virtioConsole(0);
  let line = '';
  let answered = false;
  con.on('data', (chunk: Buffer) => {
    line += chunk.toString('latin1');
    for (let nl = line.indexOf('\n'); nl >= 0; nl = line.indexOf('\n')) {
      const text = line.slice(0, nl);
      line = line.slice(nl + 1);
      console.log(`guest | ${text}`);
      // Answer once the guest has posted its receive buffers and said it is ready.
      if (text === 'virtio-guest: ready' && !answered) {
        answered = true;
        con.write('hello, guest\n');
      }
    }
  });
  await vm.start({ entry: GUEST_BASE, stack: 0x80000n });
  const exit = await vm.waitForExit();
  await vm.close(); // closes the disk file too
  console.log(`guest ended: ${exit.reason}`);
  console.log(`sector 9 of ${disk} now starts with: ${JSON.stringify(readFileSync(disk).subarray(9 * 512, 9 * 512 + 24).toString('latin1'))}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
