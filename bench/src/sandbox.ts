/**
 * `sandbox`: one call on a fresh sandbox, per iteration, on the benchmark guest
 * (bench/guests/bench-guest.c, export `sum` over a 64-byte input):
 *   c-reset-call         the baseline: SandboxVm's reset + call loop in C (bench/c/sandbox.c)
 *   pool-call-1t / -2t   SandboxPool.call awaited one after another, 1 and 2 worker threads;
 *                        `calls_per_s` from separate bursts with many calls in flight
 *   pool-host-call       a call that makes one synchronous host call (run in the worker)
 *   pool-host-call-main  a call that makes one main-thread (async) host call
 *   ivm-context, ivm-isolate, node-vm   the same work in JS, in a fresh JS sandbox per call
 *                        (bench/src/sandbox-isolates.ts)
 * All cases alternate in rounds in one run (the C cases in a child process).
 *
 * With --profile, also: each step of a call timed in C and in a step-by-step replica of
 * SandboxVm.call in this thread, and the layers of a pool call (SandboxVm.call in this
 * thread, a piscina round trip with a no-op worker, the pool call).
 */
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Piscina } from 'piscina';
import {
  CALL_CONTROL, Kvm, KICK_SIGNAL, SDK_DIR, SandboxPool, SandboxVm, blockSignal, compileGuest, consumePending, currentTid,
  describeExit, guestCpuid, loadElf, parseElf, runMaskWithout, setVcpuMode, writeModeTables, type KvmFpu, type KvmRegs,
  type MemorySlot, type Vcpu, type Vm,
} from '@kvmpool/core';
import { CProcess, cBatchCase } from './c-process.js';
import {
  BENCH_DIR, BUILD_DIR, buildC, formatNs, median, runBenchmark, summarize, table, type BenchCase, type BenchOptions,
  type BenchReport, type Benchmark, type CheckedTarget, writeResults,
} from './harness.js';
import { inc } from './sandbox-host-functions.js';
import { ivmContextCase, ivmIsolateCase, loadIsolatedVm, nodeVmCase } from './sandbox-isolates.js';

/** The pool's defaults: 8 MiB of guest memory, 1 MiB input and output regions. Passed to the C program too. */
const MEMORY = 8 << 20;
const INPUT_SIZE = 1 << 20;
const OUTPUT_SIZE = 1 << 20;
const INPUT_LENGTH = 64;

/** Keep in step with STEP_NAMES in bench/c/sandbox.c. */
export const SANDBOX_STEPS = ['input', 'set-regs', 'run', 'output', 'dirty-log', 'copy-pages', 'zero-input', 'set-fpu'] as const;

/** Byte i = (i * 7 + 3) & 0xff, as in bench/c/sandbox.c. */
function makeInput(): Uint8Array {
  const b = new Uint8Array(INPUT_LENGTH);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + 3) & 0xff;
  return b;
}

const INPUT = makeInput();
const EXPECTED_SUM = INPUT.reduce((s, b) => s + b, 0);
const EXPECTED_INC = inc(INPUT);

/** Compiles bench/guests/bench-guest.c with the SDK into bench/build/, when missing or older than its sources. */
function buildGuest(): string {
  const src = join(BENCH_DIR, 'guests', 'bench-guest.c');
  const out = join(BUILD_DIR, 'bench-guest.elf');
  const inputs = [src, ...['kvmpool.h', 'kvmpool.ld', 'start.S', 'runtime.c'].map((f) => join(SDK_DIR, f))];
  if (existsSync(out) && inputs.every((f) => statSync(f).mtimeMs <= statSync(out).mtimeMs)) return out;
  mkdirSync(BUILD_DIR, { recursive: true });
  return compileGuest({ sources: [src], output: out });
}

function checkSum(id: string, out: Uint8Array): void {
  const got = out.length === 8 ? new DataView(out.buffer, out.byteOffset, 8).getBigUint64(0, true) : -1n;
  if (got !== BigInt(EXPECTED_SUM)) throw new Error(`${id}: sum returned ${got} (${out.length} bytes), expected ${EXPECTED_SUM}`);
}

function checkInc(id: string, out: Uint8Array): void {
  if (out.length !== EXPECTED_INC.length || out.some((b, i) => b !== EXPECTED_INC[i])) throw new Error(`${id}: the host call returned wrong bytes`);
}

/** Sequential awaited pool calls, each timed on the main thread from call() to its result. */
function poolCase(id: string, label: string, pool: SandboxPool, fn: string, check: (id: string, out: Uint8Array) => void, extra: Partial<BenchCase> = {}): BenchCase {
  return {
    id,
    label,
    ...extra,
    async runBatch(n) {
      const out = new Array<number>(n);
      for (let i = 0; i < n; i++) {
        const t0 = process.hrtime.bigint();
        const got = await pool.call(fn, INPUT);
        out[i] = Number(process.hrtime.bigint() - t0);
        check(id, got);
      }
      return out;
    },
  };
}

/** `total` calls of `sum` with `inFlight` outstanding at any time; returns calls per second. */
async function burst(pool: SandboxPool, total: number, inFlight: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  let started = 0;
  await new Promise<void>((resolve, reject) => {
    let done = 0;
    const next = (): void => {
      started++;
      pool.call('sum', INPUT).then(
        (out) => {
          checkSum('burst', out);
          if (++done === total) resolve();
          else if (started < total) next();
        },
        reject,
      );
    };
    for (let i = 0; i < Math.min(inFlight, total); i++) next();
  });
  return total / (Number(process.hrtime.bigint() - t0) / 1e9);
}

/** Bursts on the 1- and 2-thread pools, alternating; the median rate of each. */
async function throughput(pools: readonly SandboxPool[], rounds: number, total: number): Promise<number[]> {
  const rates = pools.map(() => [] as number[]);
  for (const p of pools) await burst(p, Math.min(total, 200), 32); // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const [i, p] of pools.entries()) rates[i]!.push(await burst(p, total, 16 * p.threads));
  }
  return rates.map((rs) => median([...rs].sort((a, b) => a - b)));
}

/** A target the harness's ratio-of-medians form cannot state, printed in its style. */
function customTarget(what: string, pass: boolean, got: string): void {
  console.log(`target: ${what}: ${pass ? 'PASS' : 'MISS'} (${got})`);
}

export const sandbox: Benchmark = {
  name: 'sandbox',
  description: 'fresh-sandbox call latency/throughput of SandboxPool vs the same reset+call loop in C, and vs JS isolates',
  async run(options: BenchOptions): Promise<BenchReport> {
    const guest = buildGuest();
    const binary = buildC('sandbox');
    const ivm = await loadIsolatedVm();
    const proc = await CProcess.start(binary, [guest, String(MEMORY), String(INPUT_SIZE), String(OUTPUT_SIZE), String(INPUT_LENGTH)]);
    const cResetPages = Number(proc.readyWords[0]);
    const poolOptions = { guest, memory: MEMORY, inputSize: INPUT_SIZE, outputSize: OUTPUT_SIZE };
    const pool1 = new SandboxPool({ ...poolOptions, threads: 1 });
    const pool2 = new SandboxPool({ ...poolOptions, threads: 2 });
    const hostPool = new SandboxPool({
      ...poolOptions,
      threads: 1,
      hostFunctions: new URL('./sandbox-host-functions.js', import.meta.url),
      asyncHostFunctions: { inc_main: async (arg) => inc(arg) },
    });
    const ivmContext = ivm.ok ? ivmContextCase(ivm.ivm, INPUT, EXPECTED_SUM, 'pool-call-1t') : undefined;
    try {
      // Every worker's VM warm before anything is timed.
      await Promise.all([pool1, pool2, pool2, hostPool].map((p) => p.call('sum', INPUT)));

      const tp = options.quick ? { rounds: 2, total: 400 } : { rounds: 5, total: 3000 };
      console.log(`sandbox: throughput: ${tp.rounds} bursts of ${tp.total} calls per pool (16 in flight per thread), alternating`);
      const [cps1, cps2] = (await throughput([pool1, pool2], tp.rounds, tp.total)) as [number, number];

      const cHostSamples: number[] = [];
      const hostCase = poolCase('pool-host-call', 'SandboxPool.call with 1 sync host call (worker)', hostPool, 'host_once', checkInc, {
        ratioVs: 'pool-call-1t',
        extras: () => ({ c_host_call_median_ns: Math.round(summarize(cHostSamples).median) }),
      });
      const cases: BenchCase[] = [
        { ...cBatchCase('c-reset-call', 'C: reset + call `sum` (same ELF, layout, dirty log)', proc), extras: () => ({ reset_pages: cResetPages }) },
        poolCase('pool-call-1t', 'SandboxPool.call `sum`, 1 thread', pool1, 'sum', checkSum, {
          extras: () => ({ calls_per_s: Math.round(cps1), reset_pages: Math.round(pool1.stats().resetPages / Math.max(1, pool1.stats().resets)) }),
        }),
        poolCase('pool-call-2t', 'SandboxPool.call `sum`, 2 threads', pool2, 'sum', checkSum, {
          extras: () => ({ calls_per_s: Math.round(cps2), calls_per_s_vs_1t: round3(cps2 / cps1) }),
        }),
        {
          ...hostCase,
          // The C program's `host_once` loop runs first, for the extra field c_host_call_median_ns.
          async runBatch(n) {
            cHostSamples.push(...(await proc.requestNumbers(`H ${n}`)));
            return hostCase.runBatch(n);
          },
        },
        poolCase('pool-host-call-main', 'SandboxPool.call with 1 async host call (main thread)', hostPool, 'host_main_once', checkInc, { ratioVs: 'pool-call-1t' }),
        ...(ivm.ok && ivmContext ? [ivmContext, ivmIsolateCase(ivm.ivm, INPUT, EXPECTED_SUM, 'pool-call-1t')] : []),
        nodeVmCase(INPUT, EXPECTED_SUM, 'pool-call-1t'),
      ];

      const plan = options.quick ? { iterations: 150, batch: 25 } : { iterations: 1500, batch: 50 };
      if (!ivm.ok) console.log(`sandbox: ivm-context and ivm-isolate: isolated-vm unavailable: ${ivm.reason}`);
      const report = await runBenchmark('sandbox', cases, plan, [{ id: 'pool-call-1t', maxRatio: 1.25 }]);

      const byId = (id: string) => report.cases.find((c) => c.id === id);
      const p1 = byId('pool-call-1t')!;
      const scale = cps2 / cps1;
      customTarget(`pool-call-2t calls/s ≥ 1.7× pool-call-1t`, scale >= 1.7, `${scale.toFixed(3)}×: ${formatRate(cps2)} vs ${formatRate(cps1)} calls/s on ${availableParallelism()} cores`);
      const extra: CheckedTarget[] = [{ target: { id: 'pool-call-2t', maxRatio: round3(1 / 1.7) }, ratio: round3(cps1 / cps2), p99_ns: byId('pool-call-2t')!.p99_ns, pass: scale >= 1.7 }];
      const ctx = byId('ivm-context');
      if (ctx) {
        const faster = ctx.median_ns / p1.median_ns;
        customTarget('pool-call-1t ≥ 8× faster than ivm-context', faster >= 8, `${faster.toFixed(3)}×`);
        extra.push({ target: { id: 'pool-call-1t', maxRatio: 0.125 }, ratio: round3(1 / faster), p99_ns: p1.p99_ns, pass: faster >= 8 });
      } else if (!ivm.ok) {
        console.log(`target: pool-call-1t ≥ 8× faster than ivm-context: NOT MEASURED (isolated-vm unavailable: ${ivm.reason})`);
        writeUnavailable(report, ivm.reason);
      }
      report.targets.push(...extra);

      if (options.profile) {
        await profile(proc, pool1, guest, options.quick ? 100 : 600, 50);
      }
      return report;
    } finally {
      ivmContext?.close();
      await Promise.all([pool1.close(), pool2.close(), hostPool.close()]);
      await proc.close();
    }
  },
};

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function formatRate(r: number): string {
  return Math.round(r).toLocaleString('en-US');
}

/** Without isolated-vm: its cases go to the results file with null numbers and the reason in the label. */
function writeUnavailable(report: BenchReport, reason: string): void {
  for (const id of ['ivm-context', 'ivm-isolate']) {
    report.cases.push({ id, label: `isolated-vm unavailable: ${reason}`, median_ns: Number.NaN, p99_ns: Number.NaN, ratio_vs: 'pool-call-1t', ratio: Number.NaN });
  }
  writeResults('sandbox', report.cases);
}

// ---------------------------------------------------------------------------------------------
// --profile

/**
 * SandboxVm.call step by step, in this thread: the same VM set-up as SandboxVm.create
 * (packages/core/src/sandbox/sandbox-vm.ts) and the same work per call, with a timestamp
 * between the steps, so each can be held against the C program's.
 */
class ReplicaVm {
  readonly #kvm: Kvm;
  readonly #vm: Vm;
  readonly #vcpu: Vcpu;
  readonly #slot: MemorySlot;
  readonly #mem: Uint8Array;
  readonly #view: DataView;
  readonly #pristine: Uint8Array;
  readonly #pristineFpu: KvmFpu;
  readonly #regs: KvmRegs;
  readonly #entry: bigint;
  readonly #fn: bigint;
  readonly #ctl = new Int32Array(new SharedArrayBuffer(CALL_CONTROL.WORDS * 4));
  readonly #inputBase = MEMORY - OUTPUT_SIZE - INPUT_SIZE;
  readonly #outputBase = MEMORY - OUTPUT_SIZE;

  constructor(elf: Uint8Array) {
    const image = parseElf(elf, 'bench-guest.elf');
    this.#entry = image.entry;
    const fn = image.functions.get('sum');
    if (fn === undefined) throw new Error('bench-guest.elf exports no sum');
    this.#fn = fn;
    blockSignal(KICK_SIGNAL);
    consumePending(KICK_SIGNAL);
    this.#kvm = Kvm.open();
    this.#vm = this.#kvm.createVm();
    this.#slot = this.#vm.addMemory({ guestAddress: 0, size: MEMORY, dirtyLog: true });
    writeModeTables(this.#vm.memory, 'user', { systemArea: 0x1000n, mapSize: Math.ceil(MEMORY / 0x20_0000) * 0x20_0000 });
    loadElf(image, this.#vm.memory);
    this.#vcpu = this.#vm.createVcpu(0);
    this.#vcpu.setCpuid(guestCpuid(this.#kvm));
    setVcpuMode(this.#vcpu, 'user', { systemArea: 0x1000n });
    this.#vcpu.setSignalMask(runMaskWithout(KICK_SIGNAL));
    this.#mem = this.#slot.bytes;
    this.#view = new DataView(this.#slot.buffer);
    this.#regs = this.#vcpu.getRegs();
    this.#vm.dirtyPages(this.#slot);
    this.#pristine = this.#mem.slice();
    this.#pristineFpu = this.#vcpu.getFpu();
  }

  /** One call of `sum` plus the reset; stores SANDBOX_STEPS durations at out[at…] and the control-word cost at tid[i]. */
  stepCall(input: Uint8Array, out: number[], at: number, tidOut: number[], i: number): void {
    const t: bigint[] = [process.hrtime.bigint()];
    const mem = this.#mem;
    mem.set(input, this.#inputBase);
    t.push(process.hrtime.bigint());
    const r = this.#regs;
    r.rip = this.#entry;
    r.rsp = BigInt(this.#inputBase);
    r.rflags = 0x3002n;
    r.r15 = this.#fn;
    r.rdi = BigInt(this.#inputBase);
    r.rsi = BigInt(input.length);
    r.rdx = BigInt(this.#outputBase);
    r.rcx = BigInt(OUTPUT_SIZE);
    this.#vcpu.setRegs(r);
    t.push(process.hrtime.bigint());
    const c0 = process.hrtime.bigint();
    Atomics.store(this.#ctl, CALL_CONTROL.TID, currentTid());
    tidOut[i] = Number(process.hrtime.bigint() - c0);
    const r0 = process.hrtime.bigint();
    for (;;) {
      if (Atomics.load(this.#ctl, CALL_CONTROL.CANCEL) !== 0) throw new Error('cancelled');
      const exit = this.#vcpu.run();
      if (exit.kind === 'io' && exit.direction === 'out' && exit.port === 0x701) break;
      throw new Error(`replica: unexpected exit ${describeExit(exit)}`);
    }
    const r1 = process.hrtime.bigint();
    Atomics.store(this.#ctl, CALL_CONTROL.TID, 0);
    t.push(t[2]! + (r1 - r0));
    const value = this.#view.getBigInt64(0xc000 + 64, true);
    if (value !== 8n) throw new Error(`replica: sum returned ${value}`);
    const output = mem.slice(this.#outputBase, this.#outputBase + Number(value));
    checkSum('replica', output);
    const o1 = process.hrtime.bigint();
    t.push(t[3]! + (o1 - r1));
    const dirty = this.#vm.dirtyPages(this.#slot);
    t.push(t[4]! + (process.hrtime.bigint() - o1));
    const d1 = process.hrtime.bigint();
    for (const p of dirty) {
      const a = p * 4096;
      mem.set(this.#pristine.subarray(a, a + 4096), a);
    }
    const p1 = process.hrtime.bigint();
    t.push(t[5]! + (p1 - d1));
    mem.fill(0, this.#inputBase, this.#inputBase + input.length);
    const z1 = process.hrtime.bigint();
    t.push(t[6]! + (z1 - p1));
    this.#vcpu.setFpu(this.#pristineFpu);
    t.push(t[7]! + (process.hrtime.bigint() - z1));
    for (let s = 0; s < SANDBOX_STEPS.length; s++) out[at + s] = Number(t[s + 1]! - t[s]!);
  }

  close(): void {
    this.#vm.close();
    this.#kvm.close();
  }
}

async function profile(proc: CProcess, pool1: SandboxPool, guest: string, iterations: number, batch: number): Promise<void> {
  const steps = SANDBOX_STEPS.length;
  if (proc.readyWords.slice(1).join(' ') !== SANDBOX_STEPS.join(' ')) {
    throw new Error(`sandbox: the C program's steps (${proc.readyWords.slice(1).join(' ')}) differ from SANDBOX_STEPS`);
  }
  const elf = new Uint8Array(readFileSync(guest));
  const replica = new ReplicaVm(elf);
  const inThread = SandboxVm.create({ image: parseElf(elf, 'bench-guest.elf'), memory: MEMORY, inputSize: INPUT_SIZE, outputSize: OUTPUT_SIZE });
  const piscina = new Piscina({ filename: new URL('./sandbox-probe-worker.js', import.meta.url).href, minThreads: 1, maxThreads: 1, idleTimeout: Infinity });
  try {
    const c: number[][] = SANDBOX_STEPS.map(() => []);
    const node: number[][] = SANDBOX_STEPS.map(() => []);
    const tid: number[] = [];
    const layers = { c: [] as number[], vmCall: [] as number[], piscina: [] as number[], pool: [] as number[] };
    const ctl = new Int32Array(new SharedArrayBuffer(CALL_CONTROL.WORDS * 4));
    const rounds = Math.ceil(iterations / batch) + 1; // the first round warms up
    for (let r = 0; r < rounds; r++) {
      const keep = r > 0;
      const cRaw = await proc.requestNumbers(`S ${batch}`);
      if (cRaw.length !== batch * steps) throw new Error(`sandbox: asked for ${batch}×${steps} step times, got ${cRaw.length}`);
      const nodeRaw = new Array<number>(batch * steps);
      const tidRaw = new Array<number>(batch);
      for (let i = 0; i < batch; i++) replica.stepCall(INPUT, nodeRaw, i * steps, tidRaw, i);
      const cWhole = await proc.requestNumbers(String(batch));
      const vmCall: number[] = [];
      for (let i = 0; i < batch; i++) {
        const t0 = process.hrtime.bigint();
        const res = inThread.call('sum', INPUT, { timeoutMs: 0, control: ctl });
        vmCall.push(Number(process.hrtime.bigint() - t0));
        checkSum('SandboxVm.call', res.output);
      }
      const pisc: number[] = [];
      for (let i = 0; i < batch; i++) {
        const t0 = process.hrtime.bigint();
        const res = (await piscina.run({ name: 'sum', input: INPUT, timeoutMs: 0, control: new SharedArrayBuffer(CALL_CONTROL.WORDS * 4) })) as { output: Uint8Array };
        pisc.push(Number(process.hrtime.bigint() - t0));
        checkSum('piscina probe', res.output);
      }
      const pool: number[] = [];
      for (let i = 0; i < batch; i++) {
        const t0 = process.hrtime.bigint();
        const out = await pool1.call('sum', INPUT);
        pool.push(Number(process.hrtime.bigint() - t0));
        checkSum('pool', out);
      }
      if (!keep) continue;
      for (let i = 0; i < batch * steps; i++) {
        c[i % steps]!.push(cRaw[i]!);
        node[i % steps]!.push(nodeRaw[i]!);
      }
      tid.push(...tidRaw);
      layers.c.push(...cWhole);
      layers.vmCall.push(...vmCall);
      layers.piscina.push(...pisc);
      layers.pool.push(...pool);
    }
    const n = (rounds - 1) * batch;
    const rows = SANDBOX_STEPS.map((name, s) => {
      const cs = summarize(c[s]!);
      const ns = summarize(node[s]!);
      return [name, formatNs(cs.median), formatNs(ns.median), formatNs(ns.median - cs.median), formatNs(cs.p99), formatNs(ns.p99)];
    });
    const ts = summarize(tid);
    rows.push(['control-tid', '–', formatNs(ts.median), formatNs(ts.median), '–', formatNs(ts.p99)]);
    const sumMed = (xs: number[][]): number => xs.reduce((a, x) => a + summarize(x).median, 0);
    rows.push(['(sum of medians)', formatNs(sumMed(c)), formatNs(sumMed(node) + ts.median), formatNs(sumMed(node) + ts.median - sumMed(c)), '', '']);
    console.log(`\nper step of one call + reset (${n} calls each; node = a step-by-step replica of SandboxVm.call in the main thread; medians unless noted):`);
    console.log(table(['step', 'C', 'node', 'node − C', 'C p99', 'node p99'], rows, new Set([1, 2, 3, 4, 5])));

    const l = {
      c: summarize(layers.c),
      vmCall: summarize(layers.vmCall),
      piscina: summarize(layers.piscina),
      pool: summarize(layers.pool),
    };
    console.log(`\nlayers of a pool call (${n} calls each, alternating; medians):`);
    console.log(table(['layer', 'median', 'p99', 'Δ median'], [
      ['C reset + call', formatNs(l.c.median), formatNs(l.c.p99), ''],
      ['SandboxVm.call, in this thread', formatNs(l.vmCall.median), formatNs(l.vmCall.p99), `+${formatNs(l.vmCall.median - l.c.median)} vs C`],
      ['piscina round trip, no-op worker', formatNs(l.piscina.median), formatNs(l.piscina.p99), ''],
      ['SandboxPool.call, 1 thread', formatNs(l.pool.median), formatNs(l.pool.p99), `+${formatNs(l.pool.median - l.vmCall.median)} vs SandboxVm.call`],
    ], new Set([1, 2, 3])));
  } finally {
    await piscina.close();
    inThread.close();
    replica.close();
  }
}
