/**
 * `linux`: unmodified static Linux programs in LinuxPool, against the same program spawned as a
 * host process, and the syscall path against a plain CPL 3 port exit, all alternating in one run:
 *
 *   spawn-sha256sum   /bin/busybox sha256sum spawned per call (child_process.spawn, 4 KiB on
 *                     stdin, digest read from stdout) from a plain Node process (linux-spawn.ts):
 *                     the baseline of the per-call cases. `from_bench_process_median_ns`: the same
 *                     spawn from the benchmark's own process, whose pools' guest memory makes
 *                     fork slower
 *   linux-call-1t     LinuxPool.run of the same binary and input, 1 thread, calls awaited one
 *                     after another (ratio vs spawn-sha256sum)
 *   linux-call-2t     the same on a 2-thread pool (latency, ratio vs linux-call-1t)
 *   c-out             bench/c/exit-bus.c's OUT loop: a CPL 3 `out` exit handled inline in C
 *                     (ns/exit, K-exit windows)
 *   syscall-exit      ns per syscall in the sandbox (ratio vs c-out), see below
 *
 * `calls_per_s` of linux-call-1t and -2t come from separate bursts with 8 calls in flight per
 * thread (the pools alternating); `calls_per_s_vs_1t` is the 2-thread pool's rate over the
 * 1-thread pool's. Every digest is checked against node:crypto's.
 *
 * syscall-exit: bench/c/linux-getpid.c reads N from stdin and makes N inline `syscall`s of
 * getpid, in a 1-thread LinuxPool with the default warm start (captured at that read). Each
 * window is one call with N = K and three with N = 0; its sample is (t(K) − median t(0)) / K.
 * The N = 0 calls carry everything but the loop — the pool round trip, the read, printf's write,
 * exit_group, the reset — so what is left is K round trips syscall → LSTAR stub → port exit →
 * KVM_RUN returns in the worker → SyscallLayer.serve() → KVM_RUN → stub → back, the exact path
 * every syscall takes. An rdtsc inside the guest would leave out the host's half of the ioctl's
 * return and the JS dispatch, which is the part in question; timing whole calls does not.
 * Samples are window means, as c-out's are, so both p99s are of the same kind.
 *
 * With --profile, also where a call's time goes (bench/src/linux-profile.ts).
 */
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { LinuxPool } from '@kvmpool/core';
import { PID } from '@kvmpool/core/internal';
import { CProcess } from './c-process.js';
import {
  customTarget, round3,
  measureBurst, type BurstMeasure, buildC, median, runBenchmark, summarize, type BenchCase, type BenchOptions, type BenchReport, type Benchmark, type CheckedTarget,
} from './harness.js';
import { buildMusl, requireBusybox } from './linux-guests.js';
import { profileLinux } from './linux-profile.js';
import { SHA_INPUT, checkDigest, spawnSha256sum } from './linux-spawn.js';

const dec = new TextDecoder();

interface Plan {
  /** Rounds: every case runs one iteration per round. */
  rounds: number;
  /** Calls timed per round in the per-call cases. */
  callsPerRound: number;
  /** getpid syscalls (syscall-exit) and OUT exits (c-out) per window. */
  k: number;
  /** Spawns from the benchmark's own process per round (spawn-sha256sum's extra field). */
  hereSpawnsPerRound: number;
  /** Throughput bursts per pool, and calls per burst. */
  bursts: number;
  burstCalls: number;
}

const FULL: Plan = { rounds: 40, callsPerRound: 25, k: 1000, hereSpawnsPerRound: 4, bursts: 5, burstCalls: 2000 };
const QUICK: Plan = { rounds: 5, callsPerRound: 8, k: 200, hereSpawnsPerRound: 2, bursts: 2, burstCalls: 200 };
const IN_FLIGHT_PER_THREAD = 8;
const BASE_CALLS_PER_WINDOW = 3;

async function poolOnce(pool: LinuxPool, id: string): Promise<number> {
  const r = await pool.run(SHA_INPUT);
  checkDigest(id, r.stdout, r.exitCode);
  return r.stats.syscalls;
}

/** `callsPerRound` calls of `once` per iteration, each timed from start to result. */
function perCall(id: string, label: string, callsPerRound: number, once: () => Promise<unknown>, more: Partial<BenchCase> = {}): BenchCase {
  return {
    id,
    label,
    samplesPerIteration: callsPerRound,
    async runBatch(n) {
      const out: number[] = [];
      for (let i = 0; i < n * callsPerRound; i++) {
        const t0 = process.hrtime.bigint();
        await once();
        out.push(Number(process.hrtime.bigint() - t0));
      }
      return out;
    },
    ...more,
  };
}

type Burst = BurstMeasure;

/** `total` calls with `inFlight` outstanding at any time. */
function burst(pool: LinuxPool, total: number, inFlight: number): Promise<Burst> {
  return measureBurst(() => poolOnce(pool, 'burst'), total, inFlight);
}

/** Bursts on each pool, alternating; the median of each measure per pool. */
async function throughput(pools: readonly LinuxPool[], plan: Plan): Promise<Burst[]> {
  const got = pools.map(() => [] as Burst[]);
  for (const p of pools) await burst(p, Math.min(plan.burstCalls, 200), IN_FLIGHT_PER_THREAD * p.threads); // warm-up
  for (let r = 0; r < plan.bursts; r++) {
    for (const [i, p] of pools.entries()) got[i]!.push(await burst(p, plan.burstCalls, IN_FLIGHT_PER_THREAD * p.threads));
  }
  const med = (xs: number[]): number => median([...xs].sort((a, b) => a - b));
  return got.map((bs) => ({
    callsPerS: med(bs.map((b) => b.callsPerS)),
    processCpuUs: med(bs.map((b) => b.processCpuUs)),
    otherCpus: med(bs.map((b) => b.otherCpus)),
    stealCpus: med(bs.map((b) => b.stealCpus)),
  }));
}

function burstExtras(b: Burst): Record<string, number> {
  return {
    calls_per_s: Math.round(b.callsPerS),
    process_cpu_us_per_call: Math.round(b.processCpuUs),
    other_load_cpus: round3(b.otherCpus),
    steal_cpus: round3(b.stealCpus),
  };
}

/** One getpid-loop call with N = n; its wall time in ns. */
async function getpidCall(pool: LinuxPool, n: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  const r = await pool.run(`${n}\n`);
  const ns = Number(process.hrtime.bigint() - t0);
  const got = dec.decode(r.stdout);
  if (r.exitCode !== 0 || got !== `${n * PID}\n`) throw new Error(`syscall-exit: N = ${n} printed ${JSON.stringify(got)} (exit ${String(r.exitCode)}), expected ${n * PID}`);
  if (r.stats.syscalls < n) throw new Error(`syscall-exit: N = ${n} made only ${r.stats.syscalls} syscalls`);
  return ns;
}

export const linux: Benchmark = {
  name: 'linux',
  description: 'static Linux programs in LinuxPool (busybox sha256sum) vs a spawned host process; ns per syscall vs a C port exit',
  async run(options: BenchOptions): Promise<BenchReport> {
    const plan = options.quick ? QUICK : FULL;
    const busybox = requireBusybox();
    const getpid = buildMusl('linux-getpid');
    const proc = await CProcess.start(buildC('exit-bus', { flags: ['-pthread'] }));
    const spawner = await CProcess.start(process.execPath, [fileURLToPath(new URL('./linux-spawn.js', import.meta.url))]);
    const sha = { program: busybox, argv: ['sha256sum'], timeoutMs: 10_000 };
    const pool1 = new LinuxPool({ ...sha, threads: 1 });
    const pool2 = new LinuxPool({ ...sha, threads: 2 });
    const loop = new LinuxPool({ program: getpid, threads: 1, timeoutMs: 60_000 });
    try {
      // Every worker's VM warm before anything is timed.
      await Promise.all([poolOnce(pool1, 'warm-up'), poolOnce(pool2, 'warm-up'), poolOnce(pool2, 'warm-up'), getpidCall(loop, 1)]);

      console.log(`linux: throughput: ${plan.bursts} bursts of ${plan.burstCalls} calls per pool (${IN_FLIGHT_PER_THREAD} in flight per thread), alternating`);
      const [tp1, tp2] = (await throughput([pool1, pool2], plan)) as [Burst, Burst];
      const scale = tp2.callsPerS / tp1.callsPerS;

      let syscallsPerCall = 0;
      const spawnsHere: number[] = [];
      const baseCalls: number[] = [];
      const cases: BenchCase[] = [
        {
          id: 'spawn-sha256sum',
          label: 'host: spawn busybox sha256sum per call, 4 KiB stdin (from a plain Node process)',
          samplesPerIteration: plan.callsPerRound,
          async runBatch(n) {
            const out = await spawner.requestNumbers(String(n * plan.callsPerRound));
            // A few spawns from this process too, for the extra field: fork pays for its page tables.
            for (let i = 0; i < n * plan.hereSpawnsPerRound; i++) {
              const t0 = process.hrtime.bigint();
              await spawnSha256sum();
              spawnsHere.push(Number(process.hrtime.bigint() - t0));
            }
            return out;
          },
          afterWarmup: () => spawnsHere.splice(0),
          extras: () => ({ from_bench_process_median_ns: Math.round(summarize(spawnsHere).median) }),
        },
        perCall('linux-call-1t', 'LinuxPool.run busybox sha256sum, 4 KiB stdin, 1 thread', plan.callsPerRound, async () => {
          syscallsPerCall = await poolOnce(pool1, 'linux-call-1t');
        }, {
          extras: () => ({
            ...burstExtras(tp1),
            syscalls_per_call: syscallsPerCall,
            reset_pages: Math.round(pool1.stats().resetPages / Math.max(1, pool1.stats().resets)),
          }),
        }),
        perCall('linux-call-2t', 'LinuxPool.run busybox sha256sum, 4 KiB stdin, 2 threads', plan.callsPerRound, () => poolOnce(pool2, 'linux-call-2t'), {
          ratioVs: 'linux-call-1t',
          extras: () => ({ ...burstExtras(tp2), calls_per_s_vs_1t: round3(scale) }),
        }),
        {
          id: 'c-out',
          label: `C: CPL 3 OUT loop, exit handled inline (bench/c/exit-bus.c; ns/exit, ${plan.k}-exit windows)`,
          ratioVs: 'c-out',
          async runBatch(n) {
            const out: number[] = [];
            for (let i = 0; i < n; i++) out.push((await proc.requestNumbers(`OUT ${plan.k}`))[0]! / plan.k);
            return out;
          },
        },
        {
          id: 'syscall-exit',
          label: `LinuxPool: getpid syscall round trip (ns/syscall: (t(N=${plan.k}) - t(N=0)) / ${plan.k} per call)`,
          ratioVs: 'c-out',
          async runBatch(n) {
            const out: number[] = [];
            for (let i = 0; i < n; i++) {
              const base: number[] = [];
              base.push(await getpidCall(loop, 0));
              const full = await getpidCall(loop, plan.k);
              for (let j = 1; j < BASE_CALLS_PER_WINDOW; j++) base.push(await getpidCall(loop, 0));
              const b = summarize(base).median;
              baseCalls.push(...base);
              out.push((full - b) / plan.k);
            }
            return out;
          },
          afterWarmup: () => baseCalls.splice(0),
          extras: () => ({ syscalls_per_window: plan.k, base_call_median_ns: Math.round(summarize(baseCalls).median) }),
        },
      ];

      const report = await runBenchmark('linux', cases, { iterations: plan.rounds, batch: 1 }, [
        { id: 'linux-call-1t', maxRatio: 0.05 },
        { id: 'syscall-exit', maxRatio: 1.2 },
      ]);
      const byId = (id: string) => report.cases.find((c) => c.id === id)!;
      const faster = byId('spawn-sha256sum').median_ns / byId('linux-call-1t').median_ns;
      console.log(`linux-call-1t is ${faster.toFixed(2)}× faster than spawn-sha256sum (median per call)`);
      customTarget(
        'linux-call-2t calls/s ≥ 1.7× linux-call-1t',
        scale >= 1.7,
        `${scale.toFixed(3)}×: ${formatRate(tp2.callsPerS)} vs ${formatRate(tp1.callsPerS)} calls/s on ${availableParallelism()} cores; ` +
          `CPU per call ${Math.round(tp2.processCpuUs)} µs (2t) vs ${Math.round(tp1.processCpuUs)} µs (1t); ` +
          `other load ${tp2.otherCpus.toFixed(2)} CPUs, steal ${tp2.stealCpus.toFixed(2)}`,
      );
      const extra: CheckedTarget = { target: { id: 'linux-call-2t', maxRatio: round3(1 / 1.7) }, ratio: round3(1 / scale), p99_ns: byId('linux-call-2t').p99_ns, pass: scale >= 1.7 };
      report.targets.push(extra);
      if (options.profile) await profileLinux(busybox, getpid, options.quick ? 3 : 15, options.quick ? 5 : 20);
      return report;
    } finally {
      await Promise.all([pool1.close(), pool2.close(), loop.close()]);
      await Promise.all([proc.close(), spawner.close()]);
    }
  },
};

function formatRate(r: number): string {
  return Math.round(r).toLocaleString('en-US');
}
