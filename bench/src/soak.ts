/**
 * `npm run soak`: a long run that must stay correct and flat.
 *
 *   1. `--calls N` sandbox calls (default 1,000,000) over two SandboxPools of `--threads`
 *      (default 2) warm VMs each running test/fixtures/soak-guest.c, mixing normal calls
 *      (checked against a local computation), sync and async host calls, guest errors,
 *      host-function errors, aborts, crashes and time-outs (bench/src/soak-calls.ts), `--lanes`
 *      calls in flight; the async host calls go to the pool that has async host functions, the
 *      rest to one without, which pipelines calls (pool.ts);
 *   2. `--vms N` cycles (default 10,000) of `createMachine` + run a guest to its debug exit +
 *      close, and as many of bare `Kvm.open()` → `createVm()` + memory + vCPU + one run → close.
 *
 * Each phase measures open fds, mappings, RSS and the live JS heap after a warm-up, half-way and
 * at its end (after a GC when run with --expose-gc, as `npm run soak` does). Growth over the
 * second half beyond the tolerances below is a leak: a leak grows with the work done, while
 * what the first calls of each kind set up once (allocator arenas, worker heaps, V8's young
 * generation) stops growing, and the warm-up runs every kind many times to get there. The process exits 1 on any wrong result, unexpected error class, leak or pool-counter
 * mismatch, and 3 if calls stop completing for a minute. A line of progress every
 * `--progress-ms` (default 5000), a summary table at the end.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kvm, SDK_DIR, SandboxPool, compileGuest, createMachine, setEntryPoint, setupCpuMode, type SandboxPoolStats } from '@kvmpool/core';
import { ASYNC_HOST_FUNCTIONS, CALL_KINDS, describeError, pickKind, type CallKind, type Outcome } from './soak-calls.js';
import { MiB, formatResources, leaks, settledResources, type Resources, type Tolerance } from './soak-resources.js';

const BENCH_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Pool phase: the warm VMs, their threads and the V8 heap are in place before "before". */
const POOL_TOLERANCE: Tolerance = { fds: 2, maps: 32, rss: 96 * MiB, heapUsed: 2 * MiB };
/** VM phase: every cycle releases all it took. */
const VM_TOLERANCE: Tolerance = { fds: 2, maps: 32, rss: 48 * MiB, heapUsed: 2 * MiB };
const STALL_MS = 60_000;

interface Options {
  calls: number;
  vms: number;
  threads: number;
  lanes: number;
  seed: number;
  progressMs: number;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { calls: 1_000_000, vms: 10_000, threads: 2, lanes: 8, seed: 1, progressMs: 5000 };
  const names: Record<string, keyof Options> = { '--calls': 'calls', '--vms': 'vms', '--threads': 'threads', '--lanes': 'lanes', '--seed': 'seed', '--progress-ms': 'progressMs' };
  for (let i = 0; i < argv.length; i++) {
    const key = names[argv[i]!];
    const value = Number(argv[i + 1]);
    if (!key || !Number.isSafeInteger(value) || value < 0) {
      throw new TypeError(`soak: usage: [--calls N] [--vms N] [--threads N] [--lanes N] [--seed N] [--progress-ms N]; got ${argv[i]} ${argv[i + 1] ?? ''}`);
    }
    o[key] = value;
    i++;
  }
  if (o.threads < 1 || o.lanes < 1) throw new RangeError('soak: --threads and --lanes must be at least 1');
  return o;
}

/** mulberry32: a small seeded PRNG, so a failing mix can be replayed with --seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function buildGuest(): string {
  const src = join(BENCH_DIR, '..', 'test', 'fixtures', 'soak-guest.c');
  const out = join(BENCH_DIR, 'build', 'soak-guest.elf');
  const inputs = [src, ...['kvmpool.h', 'kvmpool.ld', 'start.S', 'runtime.c', 'libc.c'].map((f) => join(SDK_DIR, f))];
  if (existsSync(out) && inputs.every((f) => statSync(f).mtimeMs <= statSync(out).mtimeMs)) return out;
  mkdirSync(dirname(out), { recursive: true });
  return compileGuest({ sources: [src], output: out });
}

interface KindTally {
  calls: number;
  ok: number;
  expected: Map<string, number>;
  wrong: number;
  unexpected: Map<string, number>;
}

const tallies = new Map(CALL_KINDS.map((k) => [k.name, { calls: 0, ok: 0, expected: new Map(), wrong: 0, unexpected: new Map() } as KindTally]));
const problems: string[] = [];
const note = (line: string): void => {
  if (problems.length < 20) problems.push(line);
  if (problems.length <= 5) console.log(`  ! ${line}`);
};
const bump = (m: Map<string, number>, k: string): void => void m.set(k, (m.get(k) ?? 0) + 1);
const fmt = (n: number): string => n.toLocaleString('en-US');
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

let completed = 0;

/** The counters of two pools added up (the latency summary is the first's). */
function sumStats(a: SandboxPoolStats, b: SandboxPoolStats): SandboxPoolStats {
  const out = { ...a, timeoutsByKind: { ...a.timeoutsByKind } };
  for (const k of Object.keys(a) as (keyof SandboxPoolStats)[]) {
    if (typeof a[k] === 'number') (out as Record<string, unknown>)[k] = (a[k] as number) + (b[k] as number);
  }
  for (const k of Object.keys(a.timeoutsByKind) as (keyof SandboxPoolStats['timeoutsByKind'])[]) out.timeoutsByKind[k] += b.timeoutsByKind[k];
  return out;
}

/** Runs `count` calls over `lanes` concurrent lanes, of kinds `pick` chooses. */
/** The soak's two pools: one with async host functions, one without (so it pipelines calls, pool.ts). */
interface Pools {
  async: SandboxPool;
  pipelined: SandboxPool;
}

async function runCalls(pools: Pools, count: number, o: Options, rnd: () => number, pick: (i: number) => CallKind = () => pickKind(rnd)): Promise<void> {
  let issued = 0;
  const lane = async (): Promise<void> => {
    while (issued < count) {
      const kind = pick(issued++);
      const t = tallies.get(kind.name)!;
      t.calls++;
      let outcome: Outcome;
      try {
        outcome = await kind.run(kind.asyncHost ? pools.async : pools.pipelined, rnd);
      } catch (e) {
        const cls = e instanceof Error ? e.name : typeof e;
        bump(t.unexpected, cls);
        note(`${kind.name}: unexpected ${describeError(e)}`);
        completed++;
        continue;
      }
      if (outcome.ok === true) t.ok++;
      else if (outcome.ok === 'expected') bump(t.expected, outcome.error);
      else {
        t.wrong++;
        note(`${kind.name}: wrong: ${outcome.wrong}`);
      }
      completed++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.lanes, count) }, lane));
}

const machineGuest = Uint8Array.from([
  0x66, 0xba, 0x01, 0x05, //   mov  $0x501, %dx      (debug exit)
  0xb0, 0x07, //               mov  $7, %al
  0xee, //                     out  %al, (%dx)
]);
const bareGuest = Uint8Array.from([
  0x66, 0xba, 0xf8, 0x03, //   mov  $0x3f8, %dx
  0xb0, 0x4b, //               mov  $'K', %al
  0xee, //                     out  %al, (%dx)
  0xeb, 0xfe, //               jmp  .
]);

async function machineCycle(): Promise<void> {
  await using vm = await createMachine({ memory: '2 MiB' });
  vm.load(0x10000, machineGuest);
  await vm.start({ entry: 0x10000n, stack: 0x100000n });
  const exit = await vm.waitForExit();
  if (exit.reason !== 'debug-exit' || exit.code !== 7) throw new Error(`createMachine guest ended with ${JSON.stringify(exit)}, expected debug-exit 7`);
}

function bareCycle(): void {
  using kvm = Kvm.open();
  using vm = kvm.createVm();
  vm.addMemory({ guestAddress: 0, size: '2 MiB' });
  vm.memory.write(0x10000, bareGuest);
  const vcpu = vm.createVcpu(0);
  setupCpuMode(vcpu, vm.memory, 'user');
  setEntryPoint(vcpu, 'user', 0x10000n, 0x20000n);
  const exit = vcpu.run();
  if (exit.kind !== 'io' || exit.direction !== 'out' || exit.port !== 0x3f8 || exit.data[0] !== 0x4b) {
    throw new Error(`bare VM guest: unexpected first exit ${exit.kind}`);
  }
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const rnd = prng(o.seed);
  const started = performance.now();
  console.log(`soak: ${fmt(o.calls)} sandbox calls on ${o.threads} threads (${o.lanes} in flight), then ${fmt(o.vms)} + ${fmt(o.vms)} VM cycles; seed ${o.seed}`);
  if (!(globalThis as { gc?: unknown }).gc) console.log('soak: no --expose-gc; resource figures include uncollected garbage');
  const guest = buildGuest();
  const rows: [string, Resources][] = [['start', await settledResources()]];
  const leaksFound: string[] = [];

  // ---- 1. sandbox calls ----
  const hostFunctions = new URL('./soak-host-functions.js', import.meta.url);
  const pool: Pools = {
    async: new SandboxPool({ guest, memory: '8 MiB', threads: o.threads, timeoutMs: 5000, hostFunctions, asyncHostFunctions: ASYNC_HOST_FUNCTIONS }),
    pipelined: new SandboxPool({ guest, memory: '8 MiB', threads: o.threads, timeoutMs: 5000, hostFunctions }),
  };
  const poolStats = (): SandboxPoolStats => sumStats(pool.async.stats(), pool.pipelined.stats());
  let lastCompleted = -1;
  let lastChange = performance.now();
  let phaseStart = performance.now();
  let phaseDone = 0;
  const progress = setInterval(() => {
    const now = performance.now();
    if (completed !== lastCompleted) {
      lastCompleted = completed;
      lastChange = now;
    } else if (now - lastChange > STALL_MS) {
      console.log(`soak: STALLED: no call completed for ${seconds(now - lastChange)} at ${fmt(completed)} calls; pools ${JSON.stringify(poolStats(), (_k, v) => (typeof v === 'bigint' ? String(v) : v))}`);
      process.exit(3);
    }
    const bad = [...tallies.values()].reduce((s, t) => s + t.wrong + [...t.unexpected.values()].reduce((a, b) => a + b, 0), 0);
    const rate = ((completed - phaseDone) * 1000) / (now - phaseStart);
    console.log(`[${seconds(now - started).padStart(8)}] calls ${fmt(completed).padStart(9)}/${fmt(o.calls)} ${((100 * completed) / Math.max(1, o.calls)).toFixed(1).padStart(5)}%  ${fmt(Math.round(rate)).padStart(6)} calls/s  bad ${bad}  rss ${(process.memoryUsage().rss / MiB).toFixed(0)} MiB`);
  }, o.progressMs);
  progress.unref();

  // Warm-up: every kind WARM_EACH times, in turn, then mixed calls up to 2% of the run.
  const WARM_EACH = 100;
  const warmKinds = Math.min(o.calls, CALL_KINDS.length * WARM_EACH);
  await runCalls(pool, warmKinds, o, rnd, (i) => CALL_KINDS[i % CALL_KINDS.length]!);
  const warm = Math.min(o.calls, Math.max(warmKinds, Math.floor(o.calls / 50)));
  await runCalls(pool, warm - warmKinds, o, rnd);
  rows.push(['pool before', await settledResources()]);
  phaseStart = performance.now();
  phaseDone = completed;
  const half = Math.floor((o.calls - warm) / 2);
  await runCalls(pool, half, o, rnd);
  const poolHalf = await settledResources();
  rows.push(['pool half-way', poolHalf]);
  await runCalls(pool, o.calls - warm - half, o, rnd);
  const callMs = performance.now() - phaseStart;
  const poolAfter = await settledResources();
  rows.push(['pool after', poolAfter]);
  for (const l of leaks(poolHalf, poolAfter, POOL_TOLERANCE)) leaksFound.push(`sandbox calls, second half: ${l}`);
  const stats = poolStats();
  await Promise.all([pool.async.close(), pool.pipelined.close()]);
  clearInterval(progress);
  rows.push(['pool closed', await settledResources()]);

  const expectedOf = (kind: string, cls: string): number => tallies.get(kind)?.expected.get(cls) ?? 0;
  const mismatches: string[] = [];
  if (stats.crashes !== expectedOf('crash', 'GuestCrashError')) mismatches.push(`pool.stats().crashes ${stats.crashes}, GuestCrashErrors seen ${expectedOf('crash', 'GuestCrashError')}`);
  const hostErrors = expectedOf('host-error-sync', 'HostFunctionError') + expectedOf('host-error-async', 'HostFunctionError');
  if (stats.hostFunctionErrors !== hostErrors) mismatches.push(`pool.stats().hostFunctionErrors ${stats.hostFunctionErrors}, HostFunctionErrors seen ${hostErrors}`);
  if (stats.timeouts !== expectedOf('timeout', 'SandboxTimeoutError')) mismatches.push(`pool.stats().timeouts ${stats.timeouts}, SandboxTimeoutErrors seen ${expectedOf('timeout', 'SandboxTimeoutError')}`);

  // ---- 2. VM cycles ----
  let vmMs = 0;
  if (o.vms > 0) {
    const warmVms = Math.min(o.vms, 20);
    for (let i = 0; i < warmVms; i++) {
      await machineCycle();
      bareCycle();
    }
    rows.push(['vms before', await settledResources()]);
    const t0 = performance.now();
    let last = t0;
    const halfVms = warmVms + Math.floor((o.vms - warmVms) / 2);
    let vmHalf: Resources | undefined;
    for (let i = warmVms; i < o.vms; i++) {
      if (i === halfVms) {
        vmHalf = await settledResources();
        rows.push(['vms half-way', vmHalf]);
      }
      try {
        await machineCycle();
        bareCycle();
      } catch (e) {
        note(`vm cycle ${i}: ${describeError(e)}`);
        leaksFound.push(`vm cycle ${i} failed: ${describeError(e)}`);
        break;
      }
      const now = performance.now();
      if (now - last >= o.progressMs) {
        last = now;
        console.log(`[${seconds(now - started).padStart(8)}] vm cycles ${fmt(i + 1).padStart(7)}/${fmt(o.vms)}  ${Math.round(((i + 1 - warmVms) * 1000) / (now - t0))} cycles/s  rss ${(process.memoryUsage().rss / MiB).toFixed(0)} MiB`);
      }
    }
    vmMs = performance.now() - t0;
    const vmAfter = await settledResources();
    rows.push(['vms after', vmAfter]);
    for (const l of leaks(vmHalf ?? vmAfter, vmAfter, VM_TOLERANCE)) leaksFound.push(`vm cycles, second half: ${l}`);
  }

  // ---- summary ----
  console.log('');
  console.log(`sandbox calls: ${fmt(completed)} in ${seconds(callMs)} after ${fmt(warm)} warm-up calls: ${fmt(Math.round(((completed - warm) * 1000) / callMs))} calls/s`);
  console.log(`kind              calls         ok   expected failures                 wrong  unexpected`);
  let wrong = 0;
  let unexpected = 0;
  for (const [name, t] of tallies) {
    const exp = [...t.expected].map(([c, n]) => `${c} ${fmt(n)}`).join(', ') || '-';
    const unx = [...t.unexpected.values()].reduce((a, b) => a + b, 0);
    wrong += t.wrong;
    unexpected += unx;
    console.log(`${name.padEnd(16)} ${fmt(t.calls).padStart(9)} ${fmt(t.ok).padStart(10)}   ${exp.padEnd(32)} ${String(t.wrong).padStart(5)} ${String(unx).padStart(11)}`);
  }
  console.log(`pool.stats() of both pools: calls ${fmt(stats.calls)}, completed ${fmt(stats.completed)}, failed ${fmt(stats.failed)}, crashes ${stats.crashes}, timeouts ${stats.timeouts}, aborted ${stats.aborted}, hostFunctionErrors ${stats.hostFunctionErrors}, resets ${fmt(stats.resets)}, pipelined ${fmt(stats.pipelined)} (moved back ${fmt(stats.pipelinedMoved)})`);
  if (o.vms > 0) console.log(`vm cycles: ${fmt(o.vms)} createMachine + ${fmt(o.vms)} bare createVm in ${seconds(vmMs)} (${Math.round(((o.vms - Math.min(o.vms, 20)) * 1000) / Math.max(1, vmMs))} pairs/s)`);
  console.log('');
  console.log(`resources           fds    maps   rss MiB  heap MiB  heap reserved`);
  for (const [label, r] of rows) console.log(formatResources(label, r));
  const tol = (t: Tolerance): string => `fds +${t.fds}, maps +${t.maps} (V8 heap and code pages left out), rss +${t.rss / MiB} MiB, live heap +${t.heapUsed / MiB} MiB`;
  console.log(`leak check: growth from half-way to the end of each phase; tolerance: pool phase ${tol(POOL_TOLERANCE)}; vm phase ${tol(VM_TOLERANCE)}`);
  console.log(`duration: ${seconds(performance.now() - started)}`);
  const failures = [
    ...(wrong ? [`${wrong} wrong results`] : []),
    ...(unexpected ? [`${unexpected} unexpected errors`] : []),
    ...leaksFound,
    ...mismatches,
  ];
  for (const p of problems) console.log(`  ! ${p}`);
  console.log(failures.length === 0 ? 'result: PASS' : `result: FAIL: ${failures.join('; ')}`);
  return failures.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error('soak: failed:', e);
    process.exit(2);
  },
);
