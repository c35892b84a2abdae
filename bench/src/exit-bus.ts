/**
 * `exit-bus`: what a port-I/O exit of a user-mode (CPL 3) guest costs through kvmpool's exit
 * paths, against a C program that handles each exit inline in its KVM_RUN loop
 * (bench/c/exit-bus.c), all in one run with the cases alternating:
 *
 *   c-out, c-in            C baselines: OUT / IN loop, exit handled inline
 *   node-direct-out        Vcpu.run() on the main thread, no bus
 *   bus-posted-out         createMachine: OUT posted through the exit ring to a sink device
 *   bus-in                 IN answered by the main-thread dispatcher (device read)
 *   bus-posted-out-nospin, bus-in-nospin   the same with neither the dispatcher nor the vCPU
 *                          thread spinning (dispatcherSpinUs: 0, vcpuSpinUs: 0): what the spin
 *                          policy (devices' spin-policy.ts) buys
 *   bus-in-dispatcher-spin as bus-in with only the dispatcher spinning (vcpuSpinUs: 0): what the
 *                          vCPU thread's spin for the answer adds
 *   worker-fast-in         IN answered in the vCPU worker from a device's shared fastState
 *   c-uart-bulk/uart-bulk  bulk output through COM1's THR: one exit per byte in C; kvmpool's
 *                          Uart16550 with coalesced PIO, read from uart.stream(). Times are
 *                          for a smaller transfer scaled to 1 MiB (field measured_bytes).
 *   uart-bulk-rep          the same with a `rep outsb` guest (not the same guest: for comparison)
 *   c-kick/kick            m.kick(0) → resolution while the guest spins at CPL 3; the same
 *                          protocol in C (a futex-blocked kicker) for reference
 *
 * Per-exit cases report ns per exit, from windows of K exits (one window per round).
 * With --profile, probes of where the time goes follow (exit-bus-probes.ts).
 */
import { KICK_WAITS, Kvm, type Machine, type Vcpu, type Vm } from '@kvmpool/core/internal';
import { CProcess } from './c-process.js';
import {
  buildC, summarize, runBenchmark, type BenchCase, type BenchOptions, type BenchReport, type Benchmark,
} from './harness.js';
import { IN_LOOP, IN_PORT, OUT_LOOP, SINK_PORT, SPIN, fastInMarked } from './exit-bus-guests.js';
import { CountingDevice, directVcpu, pausedMachine, sleep, timeKicks, timeWindow, type StatsDelta } from './exit-bus-machines.js';
import { runProbes } from './exit-bus-probes.js';
import { uartBulkRun } from './exit-bus-uart.js';

const MIB = 1 << 20;

interface Plan {
  rounds: number;
  /** Exits per timed window. */
  k: number;
  /** Exits let through after a resume before the window starts. */
  warm: number;
  uartBytes: number;
  kicksPerRound: number;
}

const FULL: Plan = { rounds: 25, k: 2000, warm: 20, uartBytes: 32 * 1024, kicksPerRound: 100 };
const QUICK: Plan = { rounds: 5, k: 500, warm: 10, uartBytes: 4 * 1024, kicksPerRound: 40 };

/** A case of one sample per iteration, from `sample()`. */
function perIteration(id: string, label: string, sample: () => Promise<number>, more: Partial<BenchCase> = {}): BenchCase {
  return {
    id,
    label,
    async runBatch(n) {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push(await sample());
      return out;
    },
    ...more,
  };
}

/** Dispatcher work per exit over every measured window of a case. */
class StatsTally {
  records = 0;
  wakeups = 0;
  batches = 0;
  spinHits = 0;
  exits = 0;
  windows = 0;
  add(s: StatsDelta, exits: number): void {
    this.records += s.records;
    this.wakeups += s.wakeups;
    this.batches += s.batches;
    this.spinHits += s.spinHits;
    this.exits += exits;
    this.windows++;
  }
  reset(): void {
    this.records = this.wakeups = this.batches = this.spinHits = this.exits = this.windows = 0;
  }
  extras(): Record<string, number> {
    const per = (x: number) => Math.round((x / Math.max(1, this.exits)) * 1000) / 1000;
    return { wakeups_per_exit: per(this.wakeups), batches_per_exit: per(this.batches), records_per_exit: per(this.records), spin_hits_per_exit: per(this.spinHits) };
  }
}

function directOutWindow(vcpu: Vcpu, k: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < k; i++) {
    const exit = vcpu.run();
    if (exit.kind !== 'io' || exit.direction !== 'out' || exit.port !== SINK_PORT) {
      throw new Error(`node-direct-out: expected an OUT to 0x${SINK_PORT.toString(16)}, got ${exit.kind}`);
    }
  }
  return Number(process.hrtime.bigint() - t0) / k;
}

async function cPerExit(proc: CProcess, op: 'OUT' | 'IN', k: number): Promise<number> {
  const [ns] = await proc.requestNumbers(`${op} ${k}`);
  return ns! / k;
}

/** Median of what `values` collects, rounded. */
function medianOf(values: readonly number[]): number {
  return Math.round(summarize(values).median);
}

export const exitBus: Benchmark = {
  name: 'exit-bus',
  description: 'port-I/O exits of a CPL 3 guest: C inline vs Vcpu.run vs exit ring/dispatcher/worker fast path; UART bulk; kick latency',
  async run(options: BenchOptions): Promise<BenchReport> {
    const plan = options.quick ? QUICK : FULL;
    const { k, warm } = plan;
    const binary = buildC('exit-bus', { flags: ['-pthread'] });
    const kvm = Kvm.open();
    const machines: Machine[] = [];
    let proc: CProcess | undefined;
    let direct: { vm: Vm; vcpu: Vcpu } | undefined;
    try {
      proc = await CProcess.start(binary);
      const c = proc;
      direct = directVcpu(kvm);
      const { vcpu } = direct;

      const sink = new CountingDevice('sink');
      const outM = await pausedMachine({ memory: '2 MiB', devices: [{ device: sink, pio: { base: SINK_PORT, length: 1 } }] }, OUT_LOOP);
      machines.push(outM);
      const reader = new CountingDevice('reader');
      const inM = await pausedMachine({ memory: '2 MiB', devices: [{ device: reader, pio: { base: IN_PORT, length: 1 } }] }, IN_LOOP);
      machines.push(inM);
      // The same two machines with nothing spinning, side by side; and the reader with only the dispatcher spinning.
      const sinkNoSpin = new CountingDevice('sink');
      const outNoSpinM = await pausedMachine({ memory: '2 MiB', dispatcherSpinUs: 0, vcpuSpinUs: 0, devices: [{ device: sinkNoSpin, pio: { base: SINK_PORT, length: 1 } }] }, OUT_LOOP);
      machines.push(outNoSpinM);
      const readerNoSpin = new CountingDevice('reader');
      const inNoSpinM = await pausedMachine({ memory: '2 MiB', dispatcherSpinUs: 0, vcpuSpinUs: 0, devices: [{ device: readerNoSpin, pio: { base: IN_PORT, length: 1 } }] }, IN_LOOP);
      machines.push(inNoSpinM);
      const readerDSpin = new CountingDevice('reader');
      const inDSpinM = await pausedMachine({ memory: '2 MiB', vcpuSpinUs: 0, devices: [{ device: readerDSpin, pio: { base: IN_PORT, length: 1 } }] }, IN_LOOP);
      machines.push(inDSpinM);
      const fast = new CountingDevice('fast-reader', { fast: true });
      const marker = new CountingDevice('marker');
      const fastM = await pausedMachine({
        memory: '2 MiB',
        devices: [{ device: fast, pio: { base: IN_PORT, length: 1 } }, { device: marker, pio: { base: SINK_PORT, length: 1 } }],
      }, fastInMarked(k));
      machines.push(fastM);
      const spinM = await pausedMachine({ memory: '2 MiB' }, SPIN);
      machines.push(spinM);

      const outTally = new StatsTally();
      const inTally = new StatsTally();
      const fastTally = new StatsTally();
      const outNoSpinTally = new StatsTally();
      const inNoSpinTally = new StatsTally();
      const inDSpinTally = new StatsTally();
      const uartRuns: { startNs: number; exits: number; misordered: number }[] = [];
      const repRuns: { startNs: number; exits: number; misordered: number }[] = [];
      const kicks: number[] = [];
      let waits0 = { ...KICK_WAITS };
      const scale = MIB / plan.uartBytes;
      const scaled = `${plan.uartBytes / 1024} KiB measured, ×${scale} to 1 MiB`;

      const uartExtras = (runs: typeof uartRuns) => (): Record<string, number> => ({
        measured_bytes: plan.uartBytes,
        start_ns: medianOf(runs.map((r) => r.startNs)),
        userspace_exits: medianOf(runs.map((r) => r.exits)),
        misordered_bytes: runs.reduce((a, r) => a + r.misordered, 0),
        runs_with_misordered_bytes: runs.filter((r) => r.misordered > 0).length,
      });

      const cases: BenchCase[] = [
        perIteration('c-out', `C: OUT loop, exit handled inline (ns/exit, ${k}-exit windows)`, () => cPerExit(c, 'OUT', k)),
        perIteration('c-in', `C: IN loop, answer written into kvm_run inline (ns/exit)`, () => cPerExit(c, 'IN', k), { ratioVs: 'c-in' }),
        perIteration('node-direct-out', 'kvmpool: Vcpu.run() on the main thread, no bus, OUT loop (ns/exit)', async () => directOutWindow(vcpu, k)),
        perIteration('bus-posted-out', 'kvmpool: OUT posted through the exit ring, main-thread dispatcher (ns/exit)', async () => {
          const w = await timeWindow(outM, sink, 'write', warm, k);
          outTally.add(w.stats, k);
          return w.perExit;
        }, { extras: () => outTally.extras(), afterWarmup: () => outTally.reset() }),
        perIteration('bus-in', 'kvmpool: IN answered by the main-thread dispatcher (ns/exit)', async () => {
          const w = await timeWindow(inM, reader, 'read', warm, k);
          inTally.add(w.stats, k);
          return w.perExit;
        }, { ratioVs: 'c-in', extras: () => inTally.extras(), afterWarmup: () => inTally.reset() }),
        perIteration('bus-posted-out-nospin', 'kvmpool: as bus-posted-out, nothing spins (dispatcherSpinUs: 0, vcpuSpinUs: 0) (ns/exit)', async () => {
          const w = await timeWindow(outNoSpinM, sinkNoSpin, 'write', warm, k);
          outNoSpinTally.add(w.stats, k);
          return w.perExit;
        }, { extras: () => outNoSpinTally.extras(), afterWarmup: () => outNoSpinTally.reset() }),
        perIteration('bus-in-nospin', 'kvmpool: as bus-in, nothing spins (dispatcherSpinUs: 0, vcpuSpinUs: 0) (ns/exit)', async () => {
          const w = await timeWindow(inNoSpinM, readerNoSpin, 'read', warm, k);
          inNoSpinTally.add(w.stats, k);
          return w.perExit;
        }, { ratioVs: 'c-in', extras: () => inNoSpinTally.extras(), afterWarmup: () => inNoSpinTally.reset() }),
        perIteration('bus-in-dispatcher-spin', 'kvmpool: as bus-in, only the dispatcher spins (vcpuSpinUs: 0) (ns/exit)', async () => {
          const w = await timeWindow(inDSpinM, readerDSpin, 'read', warm, k);
          inDSpinTally.add(w.stats, k);
          return w.perExit;
        }, { ratioVs: 'c-in', extras: () => inDSpinTally.extras(), afterWarmup: () => inDSpinTally.reset() }),
        perIteration('worker-fast-in', `kvmpool: IN answered in the worker from fastState (${k} INs + 1 marker OUT, ns/exit)`, async () => {
          // One window is one round of the guest: k INs and the marker; records_per_exit then
          // shows the INs that went through the ring instead (the one after each marker).
          const w = await timeWindow(fastM, marker, 'write', 1, 1, k + 1);
          fastTally.add(w.stats, k + 1);
          return w.perExit;
        }, { ratioVs: 'c-in', extras: () => fastTally.extras(), afterWarmup: () => fastTally.reset() }),
        perIteration('c-uart-bulk', `C: 1 MiB out to THR, one exit per byte, inline (${scaled})`, async () => {
          const [ns] = await c.requestNumbers(`UART ${plan.uartBytes}`);
          return ns! * scale;
        }, { ratioVs: 'c-uart-bulk', extras: () => ({ measured_bytes: plan.uartBytes }) }),
        perIteration('uart-bulk', `kvmpool: 1 MiB out to Uart16550 THR (coalesced PIO), read from uart.stream() (${scaled})`, async () => {
          const r = await uartBulkRun(plan.uartBytes, false);
          uartRuns.push(r);
          return r.ns * scale;
        }, { ratioVs: 'c-uart-bulk', extras: uartExtras(uartRuns), afterWarmup: () => uartRuns.splice(0) }),
        perIteration('uart-bulk-rep', `kvmpool: as uart-bulk, but the guest uses rep outsb (1 KiB strings) (${scaled})`, async () => {
          const r = await uartBulkRun(plan.uartBytes, true);
          repRuns.push(r);
          return r.ns * scale;
        }, { ratioVs: 'c-uart-bulk', extras: uartExtras(repRuns), afterWarmup: () => repRuns.splice(0) }),
        {
          id: 'c-kick',
          label: `C: same kick protocol (immediate_exit + signal, ack awaited in a futex) (${plan.kicksPerRound} kicks per round)`,
          samplesPerIteration: plan.kicksPerRound,
          ratioVs: 'c-kick',
          async runBatch(n) {
            const out: number[] = [];
            for (let i = 0; i < n; i++) out.push(...(await c.requestNumbers(`KICK ${plan.kicksPerRound}`)));
            return out;
          },
        },
        {
          id: 'kick',
          label: `kvmpool: m.kick(0) → resolved, guest spinning at CPL 3 (${plan.kicksPerRound} kicks per round)`,
          samplesPerIteration: plan.kicksPerRound,
          ratioVs: 'c-kick',
          async runBatch(n) {
            const out: number[] = [];
            for (let i = 0; i < n; i++) {
              spinM.resume();
              await sleep(2); // let the vCPU get back into KVM_RUN
              const got = await timeKicks(spinM, plan.kicksPerRound);
              await spinM.pause();
              out.push(...got);
              kicks.push(...got);
            }
            return out;
          },
          // Where the kicks' waits went (core's KICK_WAITS): late ones are the host's scheduler.
          extras: () => ({
            kicks: kicks.length, max_ns: Math.max(...kicks), over_1ms: kicks.filter((x) => x > 1e6).length,
            acked_before_wait: KICK_WAITS.immediate - waits0.immediate, acked_in_sync_wait: KICK_WAITS.sync - waits0.sync,
            acked_async: KICK_WAITS.async - waits0.async, sync_wait_woke_over_1ms: KICK_WAITS.lateSync - waits0.lateSync,
            async_wait_over_1ms: KICK_WAITS.lateAsync - waits0.lateAsync,
          }),
          afterWarmup: () => {
            kicks.splice(0);
            waits0 = { ...KICK_WAITS };
          },
        },
      ];

      const report = await runBenchmark('exit-bus', cases, { iterations: plan.rounds, batch: 1 }, [
        { id: 'bus-posted-out', maxRatio: 1.1 },
        { id: 'bus-in', maxRatio: 1.5 },
        { id: 'worker-fast-in', maxRatio: 1.05 },
        { id: 'uart-bulk', maxRatio: 0.2 },
        { id: 'kick', maxP99Ratio: 2 },
      ]);
      const bad = [...uartRuns, ...repRuns].filter((r) => r.misordered > 0).length;
      if (bad > 0) console.log(`warning: ${bad} UART run(s) delivered bytes out of order (see misordered_bytes in the results)`);
      if (options.profile) await runProbes(kvm, c, plan.k);
      return report;
    } finally {
      for (const m of machines) await m.close();
      direct?.vm.close();
      await proc?.close();
      kvm.close();
    }
  },
};
