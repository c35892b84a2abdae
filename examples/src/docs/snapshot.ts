// Snapshot and restore a running machine, and ask what guest debugging this host supports.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GdbStub, Kvm, Machine, createMachine, debugSupport } from '@kvmpool/core';

const dir = mkdtempSync(join(tmpdir(), 'kvmpool-docs-'));
try {
  const path = join(dir, 'counter.kvmsnap');
  {
    await using vm = await createMachine({ memory: '2 MiB' });
    vm.load(0x10000n, new Uint8Array([0x48, 0xff, 0xc0, 0xeb, 0xfb])); // again: inc rax; jmp again
    await vm.start({ entry: 0x10000n, stack: 0x100000n });
    await new Promise((r) => setTimeout(r, 20));
    await vm.pause();
    const rax = (await vm.getRegs(0)).rax;
    const info = await vm.snapshot(path); // vCPU state, devices, non-zero pages, checksummed
    console.log(`snapshot: rax ${rax > 0n ? '> 0' : '= 0'}, ${info.pages} non-zero pages, ${info.bytes} bytes`);
    await using gdb = await GdbStub.listen(vm); // gdb -ex 'target remote 127.0.0.1:PORT'
    console.log(`gdb stub listening: ${gdb.port > 0}`);
  }
  await using restored = await Machine.restore(path); // a fresh VM at the same state
  const before = (await restored.getRegs(0)).rax;
  await restored.start();
  await new Promise((r) => setTimeout(r, 20));
  await restored.pause();
  const after = (await restored.getRegs(0)).rax;
  console.log(`restored: counting on from the snapshot: ${after > before}`);
  await restored.stop();
  console.log(`exit: ${(await restored.waitForExit()).reason}`);

  using kvm = Kvm.open();
  const s = debugSupport(kvm); // measured once with throwaway VMs
  for (const [cpl, level] of Object.entries(s)) console.log(`${cpl}: ${Object.entries(level).map(([k, v]) => `${k} ${v ? 'yes' : 'no'}`).join(', ')}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
