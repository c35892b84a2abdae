/**
 * The `idle-vm-memory` case of the `sandbox` benchmark, run in a child process of its own
 * (`node bench/dist/sandbox-memory.js <guest.elf> <memory> <inputSize> <outputSize> [count]`,
 * one JSON line on stdout) so that nothing else the benchmark holds is in its RSS.
 *
 * Host memory per idle warm sandbox VM: `count` (100) SandboxVms of `memory` (8 MiB) guest
 * memory each, built in this thread and each called once (warm), idle; RSS from
 * /proc/self/status (VmRSS) before and after, per VM. From that the guest pages the VM touched
 * are taken off: they are counted exactly on a replica of the same VM (the same image, layout
 * and call, built with the library's Vm in this process) by reading /proc/self/pagemap's
 * "present" bit for every page of its guest memory slot. `bytes` = RSS per VM − touched guest
 * bytes: what an idle VM costs the host beyond the memory its guest uses (the pristine copy of
 * guest memory, page tables KVM keeps, kvm_run, dirty bitmaps, JS objects).
 *
 * Lazily committed guest memory: a page the guest never touched is never in RSS (growable
 * SharedArrayBuffer, reserved and committed by the kernel on first touch). `touched_guest_pages`
 * (the replica's slot, read from pagemap) shows it: a few dozen pages of 2048.
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { Kvm, SandboxVm, guestCpuid, loadElf, parseElf, setVcpuMode, writeModeTables } from '@kvmpool/core/internal';

const PAGE = 4096;
const SYSTEM_AREA = 0x1000n;
const PORT_RETURN = 0x701;

function vmRssBytes(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  if (!m) throw new Error('no VmRSS in /proc/self/status');
  return Number(m[1]) * 1024;
}

/** Pages of [address, address + size) present in RAM, from /proc/self/pagemap (bit 63 of each entry). */
function presentPages(address: bigint, size: number): number {
  const pages = size / PAGE;
  const buf = Buffer.alloc(pages * 8);
  const fd = openSync('/proc/self/pagemap', 'r');
  try {
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, Number((address / BigInt(PAGE)) * 8n) + got);
      if (n <= 0) break;
      got += n;
    }
  } finally {
    closeSync(fd);
  }
  let present = 0;
  for (let i = 0; i < pages; i++) if ((buf.readBigUInt64LE(i * 8) >> 63n) & 1n) present++;
  return present;
}

/** The replica: SandboxVm's layout and its one call of `sum`, with its guest slot in reach. Returns the slot's present pages. */
function replicaTouchedPages(elf: Uint8Array, memory: number, inputSize: number, outputSize: number, input: Uint8Array): number {
  const image = parseElf(elf, 'bench-guest.elf');
  const fn = image.functions.get('sum');
  if (fn === undefined) throw new Error('bench-guest.elf exports no sum');
  const outputBase = memory - outputSize;
  const inputBase = outputBase - inputSize;
  const kvm = Kvm.open();
  const vm = kvm.createVm();
  try {
    const slot = vm.addMemory({ guestAddress: 0, size: memory, dirtyLog: true });
    writeModeTables(vm.memory, 'user', { systemArea: SYSTEM_AREA, mapSize: Math.ceil(memory / 0x20_0000) * 0x20_0000 });
    loadElf(image, vm.memory);
    const vcpu = vm.createVcpu(0);
    vcpu.setCpuid(guestCpuid(kvm));
    setVcpuMode(vcpu, 'user', { systemArea: SYSTEM_AREA });
    slot.bytes.set(input, inputBase);
    const r = vcpu.getRegs();
    Object.assign(r, {
      rip: image.entry, rsp: BigInt(inputBase), rflags: 0x3002n, r15: fn, rdi: BigInt(inputBase), rsi: BigInt(input.length),
      rdx: BigInt(outputBase), rcx: BigInt(outputSize),
    });
    vcpu.setRegs(r);
    const exit = vcpu.run();
    if (exit.kind !== 'io' || exit.port !== PORT_RETURN) throw new Error(`replica: unexpected exit ${exit.kind}`);
    slot.bytes.fill(0, inputBase, inputBase + input.length);
    return presentPages(slot.hostAddress, memory);
  } finally {
    vm.close();
    kvm.close();
  }
}

async function main(): Promise<void> {
  const [guest, memArg, inArg, outArg, countArg] = process.argv.slice(2);
  if (!guest || !memArg || !inArg || !outArg) throw new Error('usage: sandbox-memory <guest.elf> <memory> <inputSize> <outputSize> [count]');
  const memory = Number(memArg);
  const inputSize = Number(inArg);
  const outputSize = Number(outArg);
  const count = Number(countArg ?? 100);
  const elf = new Uint8Array(readFileSync(guest));
  const input = Uint8Array.from({ length: 64 }, (_, i) => (i * 7 + 3) & 0xff);
  const opts = { image: parseElf(elf, 'bench-guest.elf'), memory, inputSize, outputSize };
  const gc = (globalThis as { gc?: () => void }).gc;
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 3; i++) {
      gc?.();
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  // Warm the code paths (koffi, V8) so their one-time allocations are not counted per VM.
  for (let i = 0; i < 3; i++) {
    const vm = SandboxVm.create(opts);
    vm.call('sum', input);
    vm.close();
  }
  const touched = replicaTouchedPages(elf, memory, inputSize, outputSize, input);
  await settle();
  const before = vmRssBytes();
  const vms: SandboxVm[] = [];
  for (let i = 0; i < count; i++) {
    const vm = SandboxVm.create(opts);
    vm.call('sum', input);
    vms.push(vm);
  }
  await settle();
  const after = vmRssBytes();
  for (const vm of vms) vm.close();
  const perVm = (after - before) / count;
  const touchedBytes = touched * PAGE;
  console.log(JSON.stringify({
    vms: count, memory, rss_before: before, rss_after: after, rss_per_vm: Math.round(perVm), touched_guest_pages: touched,
    bytes: Math.round(perVm - touchedBytes),
  }));
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exit(1);
});
