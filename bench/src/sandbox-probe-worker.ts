/**
 * Piscina worker for the `sandbox` benchmark's --profile breakdown: answers a task shaped
 * like a SandboxPool task (64-byte input, a control SharedArrayBuffer) at once, with a result
 * shaped like a pool worker's, so the round trip is piscina's cost alone.
 */
interface ProbeTask {
  name: string;
  input: Uint8Array;
  timeoutMs: number;
  control: SharedArrayBuffer;
}

const output = new Uint8Array(8);

export default function probe(task: ProbeTask): { ok: true; output: Uint8Array; prints: string[]; resetPages: number; micros: number } {
  let s = 0;
  for (let i = 0; i < task.input.length; i++) s += task.input[i]!;
  new DataView(output.buffer).setBigUint64(0, BigInt(s), true);
  return { ok: true, output: output.slice(), prints: [], resetPages: 0, micros: 0 };
}
