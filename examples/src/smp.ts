/**
 * SMP: N vCPUs (default 4; more than the host has cores is fine) split one computation —
 * the sum of i² for i < n, mod 2^64 — over shared guest memory at CPL 3, combine it with a
 * locked add, and each report its share through the one shared UART. The host checks the
 * total against its own.
 *   node examples/dist/smp.js [--vcpus 4] [--n 100000000]
 */
import { parseArgs } from 'node:util';
import { createMachine } from '@kvmpool/core';
import { GUEST_BASE, buildGuest } from './build-guest.js';
import { releaseOnSignal } from './signals.js';

const TOTAL = 0x30000;
const DONE = 0x30008;
const STACK_TOP = 0x100000n;

const { values } = parseArgs({ options: { vcpus: { type: 'string', default: '4' }, n: { type: 'string', default: '100000000' } } });
const vcpus = Number(values.vcpus);
const n = BigInt(values.n);
if (!Number.isInteger(vcpus) || vcpus < 1) throw new RangeError(`--vcpus ${values.vcpus}: need a positive whole number`);

await using vm = await createMachine({ memory: '2 MiB', vcpus });
releaseOnSignal(vm);
let output = '';
vm.serial(0).on('data', (chunk: Buffer) => {
  output += chunk.toString('latin1');
  process.stdout.write(chunk);
});
vm.load(GUEST_BASE, buildGuest('smp'));
const t0 = performance.now();
await vm.start({
  entry: GUEST_BASE,
  stack: (i) => STACK_TOP - BigInt(i) * 0x4000n,
  regs: (i) => ({ rdi: BigInt(i), rsi: BigInt(vcpus), rdx: n }),
});
const exit = await vm.waitForExit();
const ms = performance.now() - t0;

let expected = 0n;
for (let i = 0n; i < n; i++) expected = (expected + i * i) & 0xffff_ffff_ffff_ffffn;
const total = vm.memory.readU64(TOTAL);
const shares = [...output.matchAll(/^vcpu (\d+): (\d+)$/gm)];
const sumOfShares = shares.reduce((s, m) => (s + BigInt(m[2]!)) & 0xffff_ffff_ffff_ffffn, 0n);
const ok = exit.reason === 'halted' && total === expected && sumOfShares === expected && shares.length === vcpus
  && vm.memory.readU64(DONE) === BigInt(vcpus);
console.log(`total ${total} from ${vcpus} vCPUs in ${ms.toFixed(1)} ms; host computed ${expected}: ${ok ? 'correct' : 'WRONG'}`);
if (!ok) {
  console.error(`exit ${JSON.stringify(exit, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}; ${shares.length} shares summing to ${sumOfShares}`);
  process.exitCode = 1;
}
