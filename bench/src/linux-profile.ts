/**
 * The `linux` benchmark's --profile breakdown: where a LinuxPool call's time goes, alternating
 * in rounds on this thread:
 *   - LinuxVm.run (packages/core/src/linux/linux-vm.ts) of busybox sha256sum and of the getpid
 *     program with N = 0, here, with no pool: the pool's share is the pool case minus these;
 *   - the fixed per-call ioctls LinuxVm.run and its reset make, each timed alone on a bare
 *     user-mode vCPU: KVM_SET_REGS, the settle (KVM_RUN with immediate_exit), KVM_GET_DIRTY_LOG
 *     (64 MiB slot), KVM_SET_SREGS, KVM_SET_XSAVE, KVM_SET_DEBUGREGS, KVM_SET_VCPU_EVENTS,
 *     KVM_SET_MSRS (the 4 observable MSRs), and the call timer's arm + disarm (2 timer_settime).
 * With these and syscalls × the syscall-exit cost, a call's time is accounted for.
 */
import { readFileSync } from 'node:fs';
import {
  KICK_SIGNAL, Kvm, LinuxVm, PIE_BASE, ThreadTimer, OBSERVABLE_MSRS, blockSignal, consumePending, guestCpuid, parseElf,
  runMaskWithout, setVcpuMode, settlePendingExit, writeModeTables, type LinuxProgramConfig,
} from '@kvmpool/core/internal';
import { formatNs, summarize, table } from './harness.js';
import { SHA_INPUT, checkDigest } from './linux-spawn.js';

const MEMORY = 64 << 20;
const STACK = 8 << 20;
const CONFIG: LinuxProgramConfig = { files: new Map(), maxOutput: 1 << 20, outputLimit: 'error', strict: false, ids: { uid: 1000, gid: 1000 } };

function linuxVm(program: string, argv: string[]): LinuxVm {
  const image = parseElf(readFileSync(program), program, { loadBase: PIE_BASE, rejectInterp: true });
  return LinuxVm.create({ image, execPath: program, argv, env: [], config: CONFIG, memory: MEMORY, stackSize: STACK, start: 'first-read' });
}

type Step = { name: string; run: () => void };

function time(step: () => void): number {
  const t0 = process.hrtime.bigint();
  step();
  return Number(process.hrtime.bigint() - t0);
}

export async function profileLinux(busybox: string, getpid: string, rounds: number, perRound: number): Promise<void> {
  console.log(`\nlinux --profile: ${rounds} rounds × ${perRound} of each step, alternating, on this thread`);
  const sha = linuxVm(busybox, ['sha256sum']);
  const loop = linuxVm(getpid, ['linux-getpid']);
  blockSignal(KICK_SIGNAL);
  consumePending(KICK_SIGNAL);
  const kvm = Kvm.open();
  const vm = kvm.createVm();
  const slot = vm.addMemory({ guestAddress: 0, size: MEMORY, dirtyLog: true });
  writeModeTables(vm.memory, 'user', { systemArea: 0x1000n, mapSize: MEMORY });
  const vcpu = vm.createVcpu(0);
  const timer = new ThreadTimer(KICK_SIGNAL);
  try {
    vcpu.setCpuid(guestCpuid(kvm));
    setVcpuMode(vcpu, 'user', { systemArea: 0x1000n });
    vcpu.setSignalMask(runMaskWithout(KICK_SIGNAL));
    const regs = vcpu.getRegs();
    const sregs = vcpu.getSregsBytes();
    const xsave = vm.checkExtension('KVM_CAP_XSAVE') ? vcpu.getXsaveBytes(Math.max(vm.checkExtension('KVM_CAP_XSAVE2'), 4096)) : undefined;
    const debugRegs = vcpu.getDebugRegsBytes();
    const events = vcpu.getVcpuEventsBytes();
    const msrs = vcpu.getMsrs(Object.values(OBSERVABLE_MSRS)).filter((m) => {
      try {
        vcpu.setMsrs([m]);
        return true;
      } catch {
        return false;
      }
    });
    let syscalls = 0;
    const steps: Step[] = [
      { name: 'LinuxVm.run busybox sha256sum (4 KiB), no pool', run: () => {
        const r = sha.run({ stdin: SHA_INPUT });
        checkDigest('profile', r.stdout, r.exitCode);
        syscalls = r.stats.syscalls;
      } },
      { name: 'LinuxVm.run linux-getpid N=0, no pool', run: () => void loop.run({ stdin: new TextEncoder().encode('0\n') }) },
      { name: 'KVM_SET_REGS', run: () => vcpu.setRegs(regs) },
      { name: 'settle: KVM_RUN with immediate_exit', run: () => settlePendingExit(vcpu) },
      { name: 'KVM_GET_DIRTY_LOG (64 MiB slot) + page list', run: () => void vm.dirtyPages(slot) },
      { name: 'KVM_SET_SREGS', run: () => vcpu.setSregsBytes(sregs) },
      ...(xsave ? [{ name: 'KVM_SET_XSAVE', run: () => vcpu.setXsaveBytes(xsave) }] : []),
      { name: 'KVM_SET_DEBUGREGS', run: () => vcpu.setDebugRegsBytes(debugRegs) },
      { name: 'KVM_SET_VCPU_EVENTS', run: () => vcpu.setVcpuEventsBytes(events) },
      { name: `KVM_SET_MSRS (${msrs.length} MSRs)`, run: () => vcpu.setMsrs(msrs) },
      { name: 'call timer arm + disarm', run: () => {
        timer.arm(10_000);
        timer.disarm();
      } },
    ];
    const samples = steps.map(() => [] as number[]);
    for (const s of steps) for (let i = 0; i < perRound; i++) s.run(); // warm-up
    for (let r = 0; r < rounds; r++) {
      for (const [i, s] of steps.entries()) for (let j = 0; j < perRound; j++) samples[i]!.push(time(s.run));
    }
    const stats = samples.map(summarize);
    console.log(table(['step', 'median', 'p99'], steps.map((s, i) => [s.name, formatNs(stats[i]!.median), formatNs(stats[i]!.p99)]), new Set([1, 2])));
    const fixed = stats.slice(2).reduce((a, s) => a + s.median, 0);
    console.log(`sha256sum made ${syscalls} syscalls a call; the fixed ioctls and timer above sum to ${formatNs(fixed)} a call`);
  } finally {
    timer.close();
    vcpu.close();
    vm.close();
    kvm.close();
    sha.close();
    loop.close();
  }
}
