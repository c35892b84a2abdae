/**
 * Linux programs as sandboxed functions: Debian's unmodified busybox-static (a static glibc
 * executable) runs in LinuxPools — one pool per applet (sha256sum, wc, sort, awk, gzip -c), each
 * VM warm-started at the applet's first read of stdin — over a stream of generated text inputs
 * (empty, no newline, one line, 5000 lines ≈ 120 KiB, then up to 300 lines each), with a
 * progress bar. Every result (stdout bytes and exit code) is checked against the same busybox
 * applet run on the host; any difference, or a missing /bin/busybox (Debian package
 * busybox-static), ends with status 1.
 *   node examples/dist/linux-busybox.js [--count 60]
 */
import { execFile } from 'node:child_process';
import { parseArgs } from 'node:util';
import { LinuxPool } from '@kvmpool/core';
import { closePoolsOnSignal, requireBusybox } from './linux-tools.js';
import { ProgressBar } from './progress.js';

const APPLETS: readonly (readonly string[])[] = [
  ['sha256sum'],
  ['wc'],
  ['sort'],
  ['awk', '{ words += NF } END { print NR, words }'],
  ['gzip', '-c'],
];
const IN_FLIGHT_PER_POOL = 2;
const WORDS = ['kvm', 'vcpu', 'guest', 'host', 'page', 'exit', 'port', 'syscall', 'musl', 'glibc', 'busybox', 'reset', 'pool', 'node'];

/** mulberry32: a small, fixed-seed generator, so every run sees the same inputs. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Input i: lines of random words; the first few are the edge cases (empty, no newline, one line). */
function makeInput(i: number, next: () => number): string {
  if (i === 0) return '';
  if (i === 1) return 'no trailing newline';
  if (i === 2) return 'one line\n';
  const lines = i === 3 ? 5000 : next() % 300;
  const out: string[] = [];
  for (let l = 0; l < lines; l++) {
    const n = 1 + (next() % 8);
    out.push(Array.from({ length: n }, () => WORDS[next() % WORDS.length]).join(' '));
  }
  return out.length > 0 ? `${out.join('\n')}\n` : '';
}

/** The applet on the host: its stdout and exit code. */
function onHost(busybox: string, argv: readonly string[], input: string): Promise<{ stdout: Buffer; code: number }> {
  return new Promise((resolve, reject) => {
    const child = execFile(busybox, argv, { encoding: 'buffer', maxBuffer: 64 << 20 }, (e, stdout) => {
      const code = e ? (typeof e.code === 'number' ? e.code : -1) : 0;
      if (e && code === -1) reject(e);
      else resolve({ stdout, code });
    });
    child.stdin?.end(input);
  });
}

/** p50 and p99 of durations in ms, as "p50 1.23 ms, p99 4.56 ms". */
function percentiles(xs: number[]): string {
  const sorted = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
  return `p50 ${at(0.5).toFixed(2)} ms, p99 ${at(0.99).toFixed(2)} ms`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { count: { type: 'string', default: '60' } } });
  const count = Number(values.count);
  if (!Number.isInteger(count) || count < 5) throw new RangeError(`--count ${values.count}: need a whole number of at least 5`);
  const busybox = requireBusybox();

  const next = random(0xb05b0c5);
  const inputs = Array.from({ length: count }, (_, i) => makeInput(i, next));
  const totalBytes = inputs.reduce((s, x) => s + Buffer.byteLength(x), 0);
  const calls = count * APPLETS.length;

  // The expected results first, from the host's busybox: spawned before any pool exists, since
  // fork from a process that maps the pools' guest memory is many times slower.
  const hostBar = new ProgressBar('busybox on the host', calls);
  const expected = await Promise.all(APPLETS.map(async (argv) => {
    const out: { stdout: Buffer; code: number }[] = [];
    for (const input of inputs) {
      out.push(await onHost(busybox, argv, input));
      hostBar.tick();
    }
    return out;
  }));
  hostBar.finish();

  // argv[0] picks the applet; each pool's VM starts the applet once and is warm from there on.
  const pools = APPLETS.map((argv) => new LinuxPool({ program: busybox, argv, threads: 1, memory: '32 MiB', timeoutMs: 5000 }));
  const stop = new AbortController();
  closePoolsOnSignal(pools, stop);
  const s0 = performance.now();
  await Promise.all(pools.map((p) => p.run('')));
  const startMs = performance.now() - s0;

  // Per pool, a few loops with one call outstanding each, over the same stream of inputs.
  const bar = new ProgressBar('busybox in KVM', calls);
  const perApplet = APPLETS.map(() => ({ ms: [] as number[], syscalls: 0, mismatches: 0, first: undefined as string | undefined }));
  const t0 = performance.now();
  await Promise.all(APPLETS.flatMap((_, a) => {
    const stat = perApplet[a]!;
    let i = 0;
    const loop = async (): Promise<void> => {
      while (i < count && !stop.signal.aborted) {
        const n = i++;
        const want = expected[a]![n]!;
        let problem: string | undefined;
        try {
          const c0 = performance.now();
          const got = await pools[a]!.run(inputs[n]!, { signal: stop.signal });
          stat.ms.push(performance.now() - c0);
          stat.syscalls += got.stats.syscalls;
          if (got.exitCode !== want.code) problem = `exit ${String(got.exitCode)}${got.signal ? ` (${got.signal})` : ''}, host ${want.code}`;
          else if (!want.stdout.equals(got.stdout)) problem = `stdout differs: ${got.stdout.length} bytes, host ${want.stdout.length}`;
        } catch (e) {
          if (stop.signal.aborted) return;
          problem = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
        }
        if (problem !== undefined) {
          stat.mismatches++;
          stat.first ??= `input #${n} (${Buffer.byteLength(inputs[n]!)} bytes): ${problem}`;
        }
        bar.tick();
      }
    };
    return Array.from({ length: IN_FLIGHT_PER_POOL }, loop);
  }));
  const wall = performance.now() - t0;
  if (stop.signal.aborted) return; // the signal handler closes the pools and exits
  bar.finish();

  // One sample, shown: the applets' output for input #4.
  const sample = inputs[4]!;
  console.log(`input #4: ${sample.split('\n').length - 1} lines, ${Buffer.byteLength(sample)} bytes`);
  for (const [a, argv] of APPLETS.entries()) {
    if (argv[0] === 'gzip' || argv[0] === 'sort') continue;
    const r = await pools[a]!.run(sample);
    console.log(`  busybox ${argv.map((x) => (x.includes(' ') ? `'${x}'` : x)).join(' ')}: ${new TextDecoder().decode(r.stdout).trim()}`);
  }

  console.log(`\n${count} inputs (${(totalBytes / 1024).toFixed(0)} KiB) × ${APPLETS.length} applets: ${calls} calls in ${(wall / 1000).toFixed(2)} s, ${Math.round(calls / (wall / 1000))} calls/s ` +
    `(${APPLETS.length} pools of 1 VM, ${IN_FLIGHT_PER_POOL} calls in flight each; the pools started in ${startMs.toFixed(0)} ms)`);
  let failures = 0;
  for (const [a, argv] of APPLETS.entries()) {
    const st = perApplet[a]!;
    const s = pools[a]!.stats();
    failures += st.mismatches;
    const verdict = st.mismatches === 0 ? `all ${count} match the host` : `${st.mismatches} MISMATCHED, first: ${st.first}`;
    console.log(`  ${argv[0]!.padEnd(9)} ${percentiles(st.ms)} (queueing included), ${(st.syscalls / count).toFixed(1)} syscalls, ` +
      `${(s.resetPages / Math.max(s.resets, 1)).toFixed(0)} pages reset a call: ${verdict}`);
  }
  await Promise.all(pools.map((p) => p.close()));
  if (failures > 0) {
    console.error(`${failures} of ${calls} calls differ from the host's busybox`);
    process.exitCode = 1;
  }
}

await main();
