/**
 * Sandbox: SHA-256 as a hardware-isolated function. A freestanding C guest (guests/sha256.c,
 * built with the core SDK) runs in a SandboxPool: one warm single-vCPU micro-VM per thread,
 * every call starting from the guest's pristine state. N deterministic pseudo-random inputs
 * (0–4096 bytes, padding edge cases first) go through pool.call('sha256', …) with a bounded
 * number in flight, and every digest is checked against node:crypto.
 *   node examples/dist/sandbox.js [--count 5000]
 */
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { SandboxPool } from '@kvmpool/core';
import { buildSandboxGuest } from './build-guest.js';
import { ProgressBar } from './progress.js';
import { closePoolOnSignal } from './signals.js';

const MAX_LENGTH = 4096;
/** Around the padding boundaries (55/56 bytes: one final block or two) and the block size. */
const EDGE_LENGTHS = [0, 55, 56, 63, 64, 65, 119, 120, 128, MAX_LENGTH];
const IN_FLIGHT_PER_THREAD = 4;

/** mulberry32: a small, fixed-seed generator, so every run hashes the same inputs. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function makeInputs(count: number): Uint8Array[] {
  const next = random(0x5a256);
  return Array.from({ length: count }, (_, i) => {
    const input = new Uint8Array(EDGE_LENGTHS[i] ?? next() % (MAX_LENGTH + 1));
    for (let j = 0; j < input.length; j += 4) {
      const word = next();
      for (let k = 0; k < 4 && j + k < input.length; k++) input[j + k] = (word >>> (8 * k)) & 0xff;
    }
    return input;
  });
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const ms = (micros: number): string => `${(micros / 1000).toFixed(micros < 10_000 ? 2 : 1)} ms`;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { count: { type: 'string', default: '5000' } } });
  const count = Number(values.count);
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`--count ${values.count}: need a positive whole number`);

  const guest = buildSandboxGuest('sha256');
  const inputs = makeInputs(count);
  const totalBytes = inputs.reduce((s, x) => s + x.length, 0);
  const threads = availableParallelism();
  const inFlight = Math.min(count, IN_FLIGHT_PER_THREAD * threads);

  const pool = new SandboxPool({ guest, memory: '8 MiB', threads, timeoutMs: 2000 });
  const stop = new AbortController();
  closePoolOnSignal(pool, stop);

  const progress = new ProgressBar('sha256', count);
  let next = 0;
  let failures = 0;
  let first: string | undefined;
  let firstResultMs = 0;
  const t0 = performance.now();
  // `inFlight` loops, each with one call outstanding: the pool's queue never holds more.
  const worker = async (): Promise<void> => {
    while (next < count && !stop.signal.aborted) {
      const i = next++;
      const input = inputs[i]!;
      let problem: string | undefined;
      try {
        const digest = await pool.call('sha256', input, { signal: stop.signal });
        const want = createHash('sha256').update(input).digest();
        if (!want.equals(digest)) problem = `guest gave ${hex(digest)}, node:crypto ${hex(want)}`;
      } catch (e) {
        if (stop.signal.aborted) return;
        problem = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      }
      if (problem !== undefined) {
        failures++;
        first ??= `input #${i} (${input.length} bytes): ${problem}`;
      }
      if (firstResultMs === 0) firstResultMs = performance.now() - t0;
      progress.tick();
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const wall = performance.now() - t0;
  if (stop.signal.aborted) return; // the signal handler closes the pool and exits
  progress.finish();
  const s = pool.stats();
  await pool.close();

  console.log(`sha256 in KVM sandboxes: ${count} inputs of 0–${MAX_LENGTH} bytes (${(totalBytes / 1e6).toFixed(1)} MB), ${threads} threads, ${inFlight} calls in flight`);
  console.log(failures === 0 ? `all ${count} digests match node:crypto` : `${failures} of ${count} calls FAILED verification; first: ${first}`);
  console.log(`wall ${(wall / 1000).toFixed(2)} s: ${Math.round(count / (wall / 1000))} calls/s, ${(totalBytes / 1e6 / (wall / 1000)).toFixed(1)} MB/s (first result after ${firstResultMs.toFixed(0)} ms, while the workers start their VMs)`);
  console.log(`latency (call to result, queueing included) p50 ${ms(s.latency.p50)}, p99 ${ms(s.latency.p99)}, max ${ms(s.latency.max)}`);
  console.log(`${s.resets} resets to the pristine state (${(s.resetPages / Math.max(s.resets, 1)).toFixed(1)} pages each), ${s.crashes} crashes, ${s.timeouts} timeouts`);
  if (failures > 0) process.exitCode = 1;
}

await main();
