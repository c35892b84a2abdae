/**
 * The shared benchmark harness: runs a benchmark's cases alternating in rounds (A B A B …) in
 * one process, so drift in the host (frequency, other load) lands on every case alike;
 * reports median and p99 per case and the ratio of medians to a baseline case; prints a table
 * and writes `bench/results/<name>.json`. Also builds the C baselines (`buildC`).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The bench package directory (dist/harness.js → bench/). */
export const BENCH_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
export const RESULTS_DIR = join(BENCH_DIR, 'results');
export const BUILD_DIR = join(BENCH_DIR, 'build');

export interface BenchOptions {
  /** Fewer iterations: a smoke run, not a measurement. */
  quick: boolean;
  /** Also print the benchmark's own breakdown (e.g. time per step), if it has one. */
  profile: boolean;
}

/** A named benchmark, as listed in registry.ts. */
export interface Benchmark {
  name: string;
  description: string;
  run(options: BenchOptions): Promise<BenchReport>;
}

export interface BenchCase {
  id: string;
  label: string;
  /** Runs `n` iterations; returns the duration of each in ns (`samplesPerIteration` per iteration). */
  runBatch(n: number): number[] | Promise<number[]>;
  /** The id of the case this one's ratio is taken against. Default: the first case. */
  ratioVs?: string;
  /** Samples one iteration yields (e.g. a batch of kicks, each timed). Default 1. */
  samplesPerIteration?: number;
  /** Extra numeric fields for this case's results, asked for once every round has run. */
  extras?: () => Record<string, number>;
  /** Called once the warm-up batches have run (e.g. to drop counts `extras` would report). */
  afterWarmup?: () => void;
}

/** A case whose iteration runs in this process: the harness times each call of `iteration`. */
export function inProcessCase(id: string, label: string, iteration: () => void): BenchCase {
  return {
    id,
    label,
    runBatch(n) {
      const out = new Array<number>(n);
      for (let i = 0; i < n; i++) {
        const t0 = process.hrtime.bigint();
        iteration();
        out[i] = Number(process.hrtime.bigint() - t0);
      }
      return out;
    },
  };
}

export interface RunPlan {
  /** Measured iterations per case. */
  iterations: number;
  /** Iterations per batch: each round runs one batch of every case, in order. */
  batch: number;
  /** Unmeasured batches per case before the first round. Default 1. */
  warmupBatches?: number;
}

export interface CaseResult {
  id: string;
  label: string;
  median_ns: number;
  p99_ns: number;
  /** The id of the case the ratio is taken against (the baseline's own id for the baseline). */
  ratio_vs: string;
  /** median_ns / the baseline's median_ns. */
  ratio: number;
  /** Extra numeric fields a benchmark may add. */
  [extra: string]: number | string;
}

export interface Target {
  /** The case held to the target. */
  id: string;
  /** Its ratio against its baseline (`ratio_vs`) must be at most this. */
  maxRatio?: number;
  /** Its p99 must be at most this many ns. */
  maxP99Ns?: number;
  /** Its p99 over its baseline's (`ratio_vs`) p99 must be at most this. */
  maxP99Ratio?: number;
}

export interface CheckedTarget {
  target: Target;
  ratio: number;
  p99_ns: number;
  /** p99 over the baseline's p99, when the target has `maxP99Ratio`. */
  p99_ratio?: number;
  pass: boolean;
}

export interface BenchReport {
  name: string;
  cases: CaseResult[];
  targets: CheckedTarget[];
}

/** The `q` quantile (0–1) of sorted samples, nearest rank. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1]!;
}

/** The median of sorted samples (mean of the middle two for an even count). */
export function median(sorted: readonly number[]): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const mid = n >> 1;
  return n % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function summarize(samples: readonly number[]): { median: number; p99: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  return { median: median(sorted), p99: quantile(sorted, 0.99) };
}

/**
 * Runs `cases` alternating in rounds and returns every case's samples, in case order. The
 * first case is run first in each round; batches of all cases have the same size.
 */
export async function collect(cases: readonly BenchCase[], plan: RunPlan): Promise<number[][]> {
  const batch = Math.max(1, Math.min(plan.batch, plan.iterations));
  const rounds = Math.ceil(plan.iterations / batch);
  for (let w = 0; w < (plan.warmupBatches ?? 1); w++) {
    for (const c of cases) await c.runBatch(batch);
  }
  for (const c of cases) c.afterWarmup?.();
  const samples = cases.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    const n = Math.min(batch, plan.iterations - r * batch);
    for (const [i, c] of cases.entries()) {
      const got = await c.runBatch(n);
      const want = n * (c.samplesPerIteration ?? 1);
      if (got.length !== want) throw new Error(`${c.id}: batch of ${n} returned ${got.length} samples, expected ${want}`);
      samples[i]!.push(...got);
    }
  }
  return samples;
}

/**
 * Runs a benchmark: `cases[0]` is the baseline, unless a case names its own (`ratioVs`).
 * Prints the table and the targets, writes `bench/results/<name>.json`, and returns the report.
 */
export async function runBenchmark(name: string, cases: readonly BenchCase[], plan: RunPlan, targets: readonly Target[] = []): Promise<BenchReport> {
  const baseline = cases[0];
  if (!baseline) throw new Error(`${name}: no cases`);
  for (const c of cases) {
    if (c.ratioVs !== undefined && !cases.some((b) => b.id === c.ratioVs)) throw new Error(`${name}: ${c.id} is compared with unknown case ${c.ratioVs}`);
  }
  console.log(`${name}: ${cases.length} cases × ${plan.iterations} iterations, alternating in batches of ${plan.batch}`);
  const samples = await collect(cases, plan);
  const stats = samples.map(summarize);
  const results: CaseResult[] = cases.map((c, i) => {
    const vs = c.ratioVs ?? baseline.id;
    const base = stats[cases.findIndex((b) => b.id === vs)]!.median;
    return {
      id: c.id,
      label: c.label,
      median_ns: Math.round(stats[i]!.median),
      p99_ns: Math.round(stats[i]!.p99),
      ratio_vs: vs,
      ratio: round3(stats[i]!.median / base),
      ...c.extras?.(),
    };
  });
  const checked = checkTargets(name, results, targets);
  console.log(formatTable(results));
  for (const t of checked) console.log(formatTarget(t, results));
  const file = writeResults(name, results);
  console.log(`results: ${relative(process.cwd(), file) || file}`);
  return { name, cases: results, targets: checked };
}

function checkTargets(name: string, results: readonly CaseResult[], targets: readonly Target[]): CheckedTarget[] {
  return targets.map((target) => {
    const r = results.find((c) => c.id === target.id);
    if (!r) throw new Error(`${name}: target names unknown case ${target.id}`);
    const base = results.find((c) => c.id === r.ratio_vs);
    const p99Ratio = base ? round3(r.p99_ns / base.p99_ns) : Number.NaN;
    const pass = (target.maxRatio === undefined || r.ratio <= target.maxRatio) && (target.maxP99Ns === undefined || r.p99_ns <= target.maxP99Ns) &&
      (target.maxP99Ratio === undefined || p99Ratio <= target.maxP99Ratio);
    return { target, ratio: r.ratio, p99_ns: r.p99_ns, ...(target.maxP99Ratio === undefined ? {} : { p99_ratio: p99Ratio }), pass };
  });
}

/** "target: <id> ≤ 1.1× <baseline>: PASS (1.042×)", or the p99 form. */
function formatTarget(t: CheckedTarget, results: readonly CaseResult[]): string {
  const { target } = t;
  const parts: string[] = [];
  const got: string[] = [];
  if (target.maxRatio !== undefined) {
    const vs = results.find((r) => r.id === target.id)?.ratio_vs ?? '?';
    const faster = target.maxRatio < 1 ? ` (≥ ${round3(1 / target.maxRatio)}× faster)` : '';
    parts.push(`≤ ${target.maxRatio}× ${vs}${faster}`);
    got.push(`${t.ratio.toFixed(3)}×`);
  }
  if (target.maxP99Ns !== undefined) {
    parts.push(`p99 ≤ ${formatNs(target.maxP99Ns)}`);
    got.push(`p99 ${formatNs(t.p99_ns)}`);
  }
  if (target.maxP99Ratio !== undefined) {
    const vs = results.find((r) => r.id === target.id)?.ratio_vs ?? '?';
    parts.push(`p99 ≤ ${target.maxP99Ratio}× ${vs} p99`);
    got.push(`p99 ${formatNs(t.p99_ns)}, ${(t.p99_ratio ?? Number.NaN).toFixed(3)}×`);
  }
  return `target: ${target.id} ${parts.join(', ')}: ${t.pass ? 'PASS' : 'MISS'} (${got.join(', ')})`;
}

/** x rounded to 3 decimals (ratios in the results). */
export function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** A duration in ns, in the unit that keeps 3–4 significant digits. */
export function formatNs(ns: number): string {
  if (!Number.isFinite(ns)) return String(ns);
  if (ns >= 1e9) return `${(ns / 1e9).toFixed(3)} s`;
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(3)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} µs`;
  return `${Math.round(ns)} ns`;
}

/** An aligned text table; columns listed in `right` are right-aligned. */
export function table(header: readonly string[], rows: readonly (readonly string[])[], right: ReadonlySet<number> = new Set()): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export function formatTable(results: readonly CaseResult[]): string {
  return table(
    ['case', 'label', 'median', 'p99', 'ratio'],
    results.map((r) => [r.id, r.label, formatNs(r.median_ns), formatNs(r.p99_ns), `${r.ratio.toFixed(3)}× ${r.ratio_vs}`]),
    new Set([2, 3]),
  );
}

/** Writes `{ "cases": [...] }` to bench/results/<name>.json (through a .tmp file and a rename). */
export function writeResults(name: string, cases: readonly CaseResult[]): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${name}.json`);
  writeFileSync(`${file}.tmp`, `${JSON.stringify({ cases }, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
  return file;
}

/**
 * Compiles bench/c/<name>.c into bench/build/<name> with gcc, only when the binary is missing
 * or older than the source. Returns the binary's path.
 */
export function buildC(name: string, options: { flags?: readonly string[]; libs?: readonly string[] } = {}): string {
  const src = join(BENCH_DIR, 'c', `${name}.c`);
  const out = join(BUILD_DIR, name);
  if (!existsSync(src)) throw new Error(`buildC: no source ${src}`);
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return out;
  mkdirSync(BUILD_DIR, { recursive: true });
  const args = ['-O2', '-Wall', '-Wextra', '-Werror', ...(options.flags ?? []), '-o', out, src, ...(options.libs ?? [])];
  try {
    execFileSync('gcc', args, { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (e) {
    throw new Error(`buildC: gcc ${args.join(' ')} failed`, { cause: e });
  }
  return out;
}

/** Machine-wide CPU time from /proc/stat, µs: busy (user + nice + system + irq + softirq; guest time is in user) and steal. */
export function machineCpuUs(): { busy: number; steal: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const tick = 10_000; // USER_HZ = 100
  return { busy: (f[0]! + f[1]! + f[2]! + f[5]! + f[6]!) * tick, steal: (f[7] ?? 0) * tick };
}

/** CPU time of the main thread (this process's first thread), µs; the kernel counts it in 10 ms ticks. */
export function mainThreadCpuUs(): number {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000; // utime + stime, at USER_HZ = 100
}

/** What a throughput burst measured. */
export interface BurstMeasure {
  callsPerS: number;
  /** CPU time per call, all threads of this process, µs. */
  processCpuUs: number;
  /** CPUs busy outside this process during the burst, on average (other load on the machine). */
  otherCpus: number;
  /** CPUs stolen by the hypervisor during the burst, on average. */
  stealCpus: number;
}

/** `total` calls of `once` with `inFlight` outstanding at any time; calls/s and where the CPU went. */
export async function measureBurst(once: () => Promise<unknown>, total: number, inFlight: number): Promise<BurstMeasure> {
  const cpu0 = process.cpuUsage();
  const machine0 = machineCpuUs();
  const t0 = process.hrtime.bigint();
  let started = 0;
  await new Promise<void>((resolve, reject) => {
    let done = 0;
    const next = (): void => {
      started++;
      once().then(() => {
        if (++done === total) resolve();
        else if (started < total) next();
      }, reject);
    };
    for (let i = 0; i < Math.min(inFlight, total); i++) next();
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const machine = machineCpuUs();
  const processUs = cpu.user + cpu.system;
  return {
    callsPerS: total / seconds,
    processCpuUs: processUs / total,
    otherCpus: Math.max(0, machine.busy - machine0.busy - processUs) / (seconds * 1e6),
    stealCpus: (machine.steal - machine0.steal) / (seconds * 1e6),
  };
}

/** A target the harness's ratio-of-medians form cannot state, printed in its style. */
export function customTarget(what: string, pass: boolean, got: string): void {
  console.log(`target: ${what}: ${pass ? 'PASS' : 'MISS'} (${got})`);
}
