/**
 * kvm-hello-world in every CPU mode: the guest adds 2 + 2 and prints the result on port 0x3f8.
 *   node examples/dist/hello.js [--mode real|protected|paged|long|user]   (all modes by default)
 */
import { parseArgs } from 'node:util';
import {
  CPU_MODES, Kvm, KvmUnsupportedError, guestCpuid, setEntryPoint, setupCpuMode, type CpuMode,
} from '@kvmpool/core';
import { helloGuest } from './guests.js';
import { runToCompletion } from './run-guest.js';

const CODE = 0x10000n;
const STACK = 0x20000n;

function runMode(kvm: Kvm, mode: CpuMode): { ok: boolean; line: string } {
  using vm = kvm.createVm();
  vm.addMemory({ guestAddress: 0, size: '2 MiB' });
  vm.memory.write(CODE, helloGuest(mode));
  const vcpu = vm.createVcpu(0);
  vcpu.setCpuid(guestCpuid(kvm));
  try {
    setupCpuMode(vcpu, vm.memory, mode);
  } catch (e) {
    if (e instanceof KvmUnsupportedError) return { ok: true, line: `unsupported on this host (${kvm.module}): ${e.message}` };
    throw e;
  }
  setEntryPoint(vcpu, mode, CODE, STACK);
  vcpu.patchRegs({ rax: 2n, rbx: 2n });
  const r = runToCompletion(vcpu);
  const printed = r.output.trimEnd();
  const ok = printed === '4' && (r.stop === 'hlt' || r.stop === 'exit-port');
  return { ok, line: ok ? `guest printed ${printed}` : `FAILED: guest printed ${JSON.stringify(r.output)}, stopped by ${r.stop}` };
}

const { values } = parseArgs({ options: { mode: { type: 'string' } } });
const modes = values.mode === undefined ? CPU_MODES : [values.mode];
for (const m of modes) {
  if (!(CPU_MODES as readonly string[]).includes(m)) {
    console.error(`unknown mode ${JSON.stringify(m)}; use one of: ${CPU_MODES.join(', ')}`);
    process.exit(2);
  }
}

using kvm = Kvm.open();
console.log(`kvm-hello-world on ${kvm.path} (${kvm.module}):`);
let failed = 0;
for (const mode of modes as CpuMode[]) {
  const { ok, line } = runMode(kvm, mode);
  if (!ok) failed++;
  console.log(`  ${mode.padEnd(10)} ${line}`);
}
process.exitCode = failed ? 1 : 0;
