/**
 * `lifecycle`: the whole life of a tiny VM, per iteration — create a VM, give it 2 MiB of
 * memory, copy a one-byte real-mode guest (`hlt`), create a vCPU, set up real mode, run to the
 * HLT exit, close everything. The baseline is the same sequence in C (bench/c/lifecycle.c),
 * run in batches by a child process, alternating with the Node batches.
 *
 * With --profile, a second pass times each step in both (same alternation) and prints the
 * medians side by side.
 */
import { Kvm, describeExit, setupCpuMode } from '@kvmpool/core/internal';
import { CProcess, cBatchCase } from './c-process.js';
import {
  buildC, formatNs, inProcessCase, runBenchmark, summarize, table, type BenchOptions, type BenchReport, type Benchmark,
} from './harness.js';

/** Where the guest goes and where it starts (CS:IP = 0:0x1000). Same as GUEST_AT in the C. */
const GUEST_AT = 0x1000;
const GUEST = Uint8Array.of(0xf4); // hlt

/** Keep in step with STEP_NAMES in bench/c/lifecycle.c. */
export const LIFECYCLE_STEPS = ['create-vm', 'add-memory', 'write-guest', 'create-vcpu', 'setup-regs', 'run', 'close'] as const;

/** One lifecycle with kvmpool's API. */
function iteration(kvm: Kvm): void {
  const vm = kvm.createVm();
  try {
    vm.addMemory({ guestAddress: 0, size: '2 MiB' });
    vm.memory.write(GUEST_AT, GUEST);
    const vcpu = vm.createVcpu(0);
    setupCpuMode(vcpu, vm.memory, 'real', { regs: { rip: BigInt(GUEST_AT) } });
    const exit = vcpu.run();
    if (exit.kind !== 'hlt') throw new Error(`lifecycle: expected a HLT exit, got ${describeExit(exit)}`);
  } finally {
    vm.close();
  }
}

/** The same lifecycle, storing the duration of each LIFECYCLE_STEPS step at out[at…]. */
function stepIteration(kvm: Kvm, out: number[], at: number): void {
  const t: bigint[] = [process.hrtime.bigint()];
  const vm = kvm.createVm();
  t.push(process.hrtime.bigint());
  try {
    vm.addMemory({ guestAddress: 0, size: '2 MiB' });
    t.push(process.hrtime.bigint());
    vm.memory.write(GUEST_AT, GUEST);
    t.push(process.hrtime.bigint());
    const vcpu = vm.createVcpu(0);
    t.push(process.hrtime.bigint());
    setupCpuMode(vcpu, vm.memory, 'real', { regs: { rip: BigInt(GUEST_AT) } });
    t.push(process.hrtime.bigint());
    const exit = vcpu.run();
    if (exit.kind !== 'hlt') throw new Error(`lifecycle: expected a HLT exit, got ${describeExit(exit)}`);
    t.push(process.hrtime.bigint());
  } finally {
    vm.close();
  }
  t.push(process.hrtime.bigint());
  for (let s = 0; s < LIFECYCLE_STEPS.length; s++) out[at + s] = Number(t[s + 1]! - t[s]!);
}

async function profileSteps(kvm: Kvm, proc: CProcess, iterations: number, batch: number): Promise<void> {
  const steps = LIFECYCLE_STEPS.length;
  if (proc.readyWords.join(' ') !== LIFECYCLE_STEPS.join(' ')) {
    throw new Error(`lifecycle: the C program's steps (${proc.readyWords.join(' ')}) differ from LIFECYCLE_STEPS`);
  }
  const c: number[][] = LIFECYCLE_STEPS.map(() => []);
  const node: number[][] = LIFECYCLE_STEPS.map(() => []);
  const rounds = Math.ceil(iterations / batch) + 1; // the first round warms up
  for (let r = 0; r < rounds; r++) {
    const cRaw = await proc.requestNumbers(`S ${batch}`);
    if (cRaw.length !== batch * steps) throw new Error(`lifecycle: asked for ${batch}×${steps} step times, got ${cRaw.length}`);
    const nodeRaw = new Array<number>(batch * steps);
    for (let i = 0; i < batch; i++) stepIteration(kvm, nodeRaw, i * steps);
    if (r === 0) continue;
    for (let i = 0; i < batch * steps; i++) {
      c[i % steps]!.push(cRaw[i]!);
      node[i % steps]!.push(nodeRaw[i]!);
    }
  }
  const rows = LIFECYCLE_STEPS.map((name, s) => {
    const cs = summarize(c[s]!);
    const ns = summarize(node[s]!);
    return [name, formatNs(cs.median), formatNs(ns.median), formatNs(ns.median - cs.median), formatNs(cs.p99), formatNs(ns.p99)];
  });
  console.log(`\nper step (${(rounds - 1) * batch} iterations each, medians unless noted):`);
  console.log(table(['step', 'C', 'node', 'node − C', 'C p99', 'node p99'], rows, new Set([1, 2, 3, 4, 5])));
}

export const lifecycle: Benchmark = {
  name: 'lifecycle',
  description: 'create VM + vCPU + 2 MiB, run a real-mode guest to HLT, close: kvmpool vs C',
  async run(options: BenchOptions): Promise<BenchReport> {
    const binary = buildC('lifecycle');
    const kvm = Kvm.open();
    const proc = await CProcess.start(binary);
    try {
      const plan = options.quick ? { iterations: 100, batch: 20 } : { iterations: 400, batch: 20 };
      const report = await runBenchmark(
        'lifecycle',
        [
          cBatchCase('c-lifecycle', 'C: create VM + vCPU + 2 MiB, run to HLT, close', proc),
          inProcessCase('node-lifecycle', 'kvmpool: create VM + vCPU + 2 MiB, run to HLT, close', () => iteration(kvm)),
        ],
        plan,
        [{ id: 'node-lifecycle', maxRatio: 1.15 }],
      );
      if (options.profile) await profileSteps(kvm, proc, plan.iterations, plan.batch);
      return report;
    } finally {
      await proc.close();
      kvm.close();
    }
  },
};
