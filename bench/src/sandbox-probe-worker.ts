/**
 * Piscina worker for the `sandbox` benchmark's --profile breakdown. Takes a task shaped like a
 * SandboxPool task (64-byte input, a control SharedArrayBuffer) and answers with a result
 * shaped like a pool worker's:
 *   - without workerData: at once (sums the input in JS), so the round trip is piscina's alone;
 *   - with workerData `{ elf, memory, inputSize, outputSize }`: on a SandboxVm made in this
 *     thread, as packages/core/src/sandbox/pool-worker.ts does, reporting the time spent in
 *     vm.call (`micros`), so the round trip can be split into the worker's part and the rest.
 */
import { workerData } from 'node:worker_threads';
import { SandboxVm, parseElf } from '@kvmpool/core/internal';

interface ProbeTask {
  name: string;
  input: Uint8Array;
  timeoutMs: number;
  control: SharedArrayBuffer;
}

interface ProbeResult {
  ok: true;
  output: Uint8Array;
  prints: string[];
  resetPages: number;
  micros: number;
}

interface ProbeData {
  elf: Uint8Array;
  memory: number;
  inputSize: number;
  outputSize: number;
}

const data = workerData as ProbeData | null | undefined;
const vm = data?.elf
  ? SandboxVm.create({ image: parseElf(data.elf, 'bench-guest.elf'), memory: data.memory, inputSize: data.inputSize, outputSize: data.outputSize })
  : undefined;

export default function probe(task: ProbeTask): ProbeResult {
  if (vm) {
    const t0 = performance.now();
    const r = vm.call(task.name, task.input, { timeoutMs: task.timeoutMs, control: new Int32Array(task.control) });
    return { ok: true, output: r.output, prints: r.prints, resetPages: r.resetPages, micros: (performance.now() - t0) * 1000 };
  }
  let s = 0;
  for (let i = 0; i < task.input.length; i++) s += task.input[i]!;
  const output = new Uint8Array(8);
  new DataView(output.buffer).setBigUint64(0, BigInt(s), true);
  return { ok: true, output, prints: [], resetPages: 0, micros: 0 };
}
