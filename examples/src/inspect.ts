/**
 * Inspect a running SMP guest: start the smp guest on N vCPUs with a long computation, pause
 * every vCPU, print a register table per vCPU and a hexdump around each rip (read through that
 * vCPU's page tables), then resume and let the guest finish.
 *   node examples/dist/inspect.js [--vcpus 4]
 */
import { parseArgs } from 'node:util';
import { createMachine, type VcpuInspection } from '@kvmpool/core';
import { GUEST_BASE, buildGuest } from './build-guest.js';
import { releaseOnSignal } from './signals.js';

const { values } = parseArgs({ options: { vcpus: { type: 'string', default: '4' } } });
const vcpus = Number(values.vcpus);
const hex = (v: bigint, w = 16): string => v.toString(16).padStart(w, '0');

function registerTable(v: VcpuInspection): string {
  const r = v.regs;
  const rows = [
    ['rax', r.rax, 'rbx', r.rbx, 'rcx', r.rcx, 'rdx', r.rdx],
    ['rsi', r.rsi, 'rdi', r.rdi, 'rbp', r.rbp, 'rsp', r.rsp],
    ['r8', r.r8, 'r9', r.r9, 'r10', r.r10, 'r11', r.r11],
    ['r12', r.r12, 'r13', r.r13, 'r14', r.r14, 'r15', r.r15],
  ] as const;
  const lines = rows.map((row) => {
    let s = '  ';
    for (let i = 0; i < row.length; i += 2) s += `${String(row[i]).padStart(3)} ${hex(row[i + 1] as bigint)}  `;
    return s.trimEnd();
  });
  const s = v.sregs;
  lines.push(`  rip ${hex(r.rip)}  rflags ${hex(r.rflags, 8)}  cs ${hex(BigInt(s.cs.selector), 4)} (CPL ${s.cs.selector & 3})  ss ${hex(BigInt(s.ss.selector), 4)}`);
  lines.push(`  cr0 ${hex(s.cr0, 8)}  cr3 ${hex(s.cr3, 8)}  cr4 ${hex(s.cr4, 8)}  efer ${hex(s.efer, 4)}  mp_state ${v.mpState}  exits ${v.exits}`);
  return lines.join('\n');
}

function hexdump(base: bigint, bytes: Uint8Array, mark: bigint): string {
  const lines: string[] = [];
  for (let at = 0; at < bytes.length; at += 16) {
    const row = [...bytes.subarray(at, at + 16)].map((b, i) => (base + BigInt(at + i) === mark ? `[${b.toString(16).padStart(2, '0')}]` : ` ${b.toString(16).padStart(2, '0')} `));
    lines.push(`  ${hex(base + BigInt(at), 8)} ${row.join('')}`);
  }
  return lines.join('\n');
}

await using vm = await createMachine({ memory: '2 MiB', vcpus });
releaseOnSignal(vm);
let output = '';
vm.serial(0).on('data', (c: Buffer) => (output += c.toString('latin1')));
vm.load(GUEST_BASE, buildGuest('smp'));
await vm.start({
  entry: GUEST_BASE,
  stack: (i) => 0x100000n - BigInt(i) * 0x4000n,
  regs: (i) => ({ rdi: BigInt(i), rsi: BigInt(vcpus), rdx: 3_000_000_000n }),
});
await new Promise((r) => setTimeout(r, 150));
await vm.pause();
const snap = await vm.inspect();
console.log(`${vcpus} vCPUs paused (${vm.vcpuStates().join(', ')}); memory slots: ${snap.slots.map((s) => `#${s.slot} 0x${s.guestAddress.toString(16)}+${s.size >> 20} MiB`).join(', ')}`);
for (const v of snap.vcpus) {
  console.log(`\nvCPU ${v.id}:`);
  console.log(registerTable(v));
  const from = (v.regs.rip & ~0xfn) - 16n;
  console.log(hexdump(from, await vm.readVirtual(v.id, from, 48), v.regs.rip));
}
await vm.resume();
console.log(`\nresumed; waiting for the guest to finish…`);
const exit = await vm.waitForExit();
console.log(`${exit.reason}: ${output.trim().split('\n').length} vCPUs reported`);
