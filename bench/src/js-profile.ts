/**
 * The `js` benchmark's --profile breakdown: where a JsSandboxPool call's time goes, per workload,
 * alternating in rounds on this thread:
 *   - JsSandboxPool.eval on 1 thread (the pool call);
 *   - the same call made here with no pool: the request encoded (JSON, the run codec), the
 *     worker's codecs, LinuxVm.run of the QuickJS guest (packages/core/src/linux/linux-vm.ts)
 *     with its own time stamps (LinuxVm.profile: KVM_RUN and the exits, the syscalls served,
 *     and the reset's steps: settle, dirty log, pages put back, vCPU state, process state), and
 *     the reply decoded (the run codec, JSON);
 * then the pool's share (pool call − the call here: the hops to the worker and back, its serve
 * loop) and the main thread's CPU time per call in a burst of sequential calls.
 */
import { readFileSync } from 'node:fs';
import {
  LinuxVm, PIE_BASE, decodeRunRequest, decodeRunResult, encodeRunRequest, encodeRunResult, linuxConfig, linuxVmProfile, parseElf,
  type LinuxVmProfile,
} from '@kvmpool/core/internal';
import { GUEST_PATH, JsSandboxPool, decodeReply, encodeRequest, engineOptions } from '@kvmpool/js/internal';
import { formatNs, mainThreadCpuUs, summarize, table } from './harness.js';

export interface ProfileWorkload {
  suffix: string;
  code: string;
  expected: unknown;
}

/** The QuickJS guest's VM, as a JsSandboxPool worker makes it, on this thread. */
function engineVm(): { vm: LinuxVm; maxInput: number } {
  const { linux, maxInput } = engineOptions({ threads: 1 });
  const vm = LinuxVm.create({
    image: parseElf(readFileSync(GUEST_PATH), GUEST_PATH, { loadBase: PIE_BASE, rejectInterp: true }),
    execPath: GUEST_PATH,
    argv: linux.argv ?? [],
    env: [],
    config: linuxConfig({ files: [], maxOutput: linux.maxOutput as number, outputLimit: 'error', strict: false }),
    memory: linux.memory as number,
    stackSize: linux.stackSize as number,
    start: 'first-read',
  });
  return { vm, maxInput };
}

const PARTS = [
  ['request: JSON + run codec (main thread)', 'encode'],
  ['worker: run codecs', 'codec'],
  ['LinuxVm.run total', 'run'],
  ['  KVM_RUN (guest + entry/exit)', 'kvmRunNs'],
  ['  syscalls served', 'serveNs'],
  ['  reset: settle pending exit', 'settleNs'],
  ['  reset: KVM_GET_DIRTY_LOG + page list', 'dirtyLogNs'],
  ['  reset: dirtied pages put back', 'copyNs'],
  ['  reset: vCPU state', 'cpuNs'],
  ['  reset: process state', 'stateNs'],
  ['  rest of run (stdin, AT_RANDOM, timer, result)', 'other'],
  ['reply: run codec + JSON (main thread)', 'decode'],
] as const;
const COLUMNS = [...PARTS.map(([, k]) => k), 'total', 'exits', 'pages', 'syscalls'] as const;
type Column = (typeof COLUMNS)[number];

function time<T>(f: () => T): [T, number] {
  const t0 = process.hrtime.bigint();
  const v = f();
  return [v, Number(process.hrtime.bigint() - t0)];
}

export async function profileJs(pool: JsSandboxPool, workloads: readonly ProfileWorkload[], rounds: number, perRound: number): Promise<void> {
  if (pool.threads !== 1) throw new RangeError('profileJs: expected a 1-thread pool');
  console.log(`\njs --profile: ${rounds} rounds × ${perRound} calls of each workload, pool and here alternating, on this thread`);
  const { vm, maxInput } = engineVm();
  const check = (w: ProfileWorkload, got: unknown): void => {
    if (got !== w.expected) throw new Error(`js --profile${w.suffix}: got ${String(got).slice(0, 80)}, expected ${String(w.expected).slice(0, 80)}`);
  };
  try {
    /** One call made here, no pool: each part's time, and the call's exits, pages reset and syscalls. */
    const here = (w: ProfileWorkload): Record<Column, number> => {
      const prof: LinuxVmProfile = linuxVmProfile();
      vm.profile = prof;
      const t0 = process.hrtime.bigint();
      const [input, encode] = time(() => encodeRunRequest(encodeRequest({ code: w.code }, maxInput), {}));
      const [request, c1] = time(() => decodeRunRequest(input));
      const [result, run] = time(() => vm.run(request));
      const [output, c2] = time(() => encodeRunResult(result, vm.start));
      const [reply, decode] = time(() => {
        const d = decodeRunResult(output);
        return decodeReply({ stdout: d.stdout, stderr: d.stderr, exitCode: d.exitCode, stats: d.stats });
      });
      const total = Number(process.hrtime.bigint() - t0);
      vm.profile = undefined;
      check(w, reply.value);
      const { exits, kvmRunNs, serveNs, settleNs, dirtyLogNs, copyNs, cpuNs, stateNs } = prof;
      const measured = kvmRunNs + serveNs + settleNs + dirtyLogNs + copyNs + cpuNs + stateNs;
      return {
        encode, codec: c1 + c2, run, decode, other: Math.max(0, run - measured), kvmRunNs, serveNs, settleNs, dirtyLogNs, copyNs, cpuNs, stateNs,
        total, exits, pages: result.stats.resetPages, syscalls: result.stats.syscalls,
      };
    };
    for (const w of workloads) {
      const samples = Object.fromEntries(COLUMNS.map((k) => [k, [] as number[]])) as Record<Column, number[]>;
      const poolNs: number[] = [];
      for (let i = 0; i < perRound; i++) {
        check(w, await pool.eval(w.code)); // warm-up
        here(w);
      }
      for (let r = 0; r < rounds; r++) {
        for (let i = 0; i < perRound; i++) {
          const t0 = process.hrtime.bigint();
          const got = await pool.eval(w.code);
          poolNs.push(Number(process.hrtime.bigint() - t0));
          check(w, got);
        }
        for (let i = 0; i < perRound; i++) {
          const one = here(w);
          for (const k of COLUMNS) samples[k].push(one[k]);
        }
      }
      // Main-thread CPU per call: sequential calls for ≥ 1 s (the kernel counts it in 10 ms ticks).
      const cpu0 = mainThreadCpuUs();
      const t0 = performance.now();
      let n = 0;
      while (performance.now() - t0 < 1000 || n < 50) {
        check(w, await pool.eval(w.code));
        n++;
      }
      const mainUs = (mainThreadCpuUs() - cpu0) / n;

      const p = summarize(poolNs);
      const h = summarize(samples.total);
      const med = (xs: number[]) => summarize(xs).median;
      const rows: string[][] = [
        ['JsSandboxPool.eval, 1 thread (pool call)', formatNs(p.median), formatNs(p.p99)],
        ['the same call here, no pool', formatNs(h.median), formatNs(h.p99)],
        ...PARTS.map(([label, k]) => {
          const s = summarize(samples[k]);
          const note = k === 'kvmRunNs' ? ` (${med(samples.exits)} exits)` : k === 'serveNs' ? ` (${med(samples.syscalls)})` : k === 'copyNs' ? ` (${med(samples.pages)} pages)` : '';
          return [`  ${label}${note}`, formatNs(s.median), formatNs(s.p99)];
        }),
        ['pool share: hops, worker loop (pool − here, medians)', formatNs(Math.max(0, p.median - h.median)), ''],
        [`main-thread CPU per call (${n} sequential calls)`, formatNs(mainUs * 1000), ''],
      ];
      console.log(`\njs${w.suffix || ' (plain)'}: ${w.code.length > 60 ? `${w.code.slice(0, 57)}...` : w.code}`);
      console.log(table(['step', 'median', 'p99'], rows, new Set([1, 2])));
    }
  } finally {
    vm.profile = undefined;
    vm.close();
  }
}
