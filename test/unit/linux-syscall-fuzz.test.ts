// The syscall layer without KVM: whatever numbers a program puts in its registers, serve()
// never throws (a throw would take down the vCPU thread), returns a result or -errno in
// Linux's range, and never writes below the program's memory (system tables, stub) or past it.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SCRATCH, SCRATCH_ADDRESS, SyscallLayer, implementedSyscalls, type LayerHost, type ProcessLayout } from '@kvmpool/core/internal';

const MEMORY = 4 * 1024 * 1024;
const USER_MIN = 0x10000; // below: the system area a syscall must never touch (the scratch page is in it)
const GUARD = 4096; // bytes past the memory's end in the same buffer: must stay untouched
const layout: ProcessLayout = { userMin: USER_MIN, memory: MEMORY, brkStart: 0x40000, stackBottom: MEMORY - 0x40000, mmapTop: MEMORY - 0x41000 };

function layer(): { k: SyscallLayer; mem: Uint8Array; slept: number[] } {
  const buf = new Uint8Array(MEMORY + GUARD);
  const mem = buf.subarray(0, MEMORY);
  buf.fill(0x5a, 0, USER_MIN);
  buf.fill(0x5a, MEMORY);
  const slept: number[] = [];
  const host: LayerHost = {
    markDirty: () => {},
    setSegmentBase: (_w, v) => v < 2n ** 47n,
    getSegmentBase: () => 0x1234n,
    sleep: (ms) => void slept.push(ms),
  };
  const files = new Map([['/etc/words', new TextEncoder().encode('alpha\nbeta\n')]]);
  const k = new SyscallLayer(mem, { files, maxOutput: 4096, outputLimit: 'truncate', strict: false, ids: { uid: 1000, gid: 1000 } }, layout, host);
  k.state.fds[0]!.data = new Uint8Array(100).fill(7);
  // "/etc/words\0" and a timespec in the program's memory, for the pointers below
  mem.set(new TextEncoder().encode('/etc/words\0'), 0x20000);
  return { k, mem: buf, slept };
}

const u64 = (n: bigint): bigint => BigInt.asUintN(64, n);
const interesting = fc.oneof(
  fc.constantFrom(0n, 1n, 2n, 3n, 8n, 16n, 0x1000n, 0xb000n, BigInt(SCRATCH_ADDRESS), BigInt(USER_MIN), 0x20000n, BigInt(MEMORY - 1), BigInt(MEMORY),
    BigInt(MEMORY - 8), 0x7fff_f000n, 2n ** 31n, 2n ** 32n, 2n ** 47n, 2n ** 53n + 1n, 2n ** 63n, u64(-1n), u64(-100n), u64(-4096n)),
  fc.bigInt({ min: BigInt(USER_MIN), max: BigInt(MEMORY) }),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
);
const implemented = implementedSyscalls();
const nr = fc.oneof(fc.constantFrom(...implemented), fc.integer({ min: 0, max: 600 }));

describe('syscall layer fuzz', () => {
  it('serve() never throws, returns a value or -errno, and writes nothing outside the program memory', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(nr, fc.array(interesting, { minLength: 6, maxLength: 6 })), { minLength: 1, maxLength: 25 }), (calls) => {
        const { k, mem } = layer();
        const v = new DataView(mem.buffer);
        const low = mem.slice(0, USER_MIN);
        const high = Buffer.from(mem.slice(MEMORY));
        for (const [n, args] of calls) {
          k.end = undefined;
          v.setBigUint64(SCRATCH_ADDRESS + SCRATCH.NR, BigInt(n), true);
          args.forEach((a, i) => v.setBigUint64(SCRATCH_ADDRESS + SCRATCH.ARGS + 8 * i, a, true));
          const argsBefore = Buffer.from(mem.slice(SCRATCH_ADDRESS + SCRATCH.ARGS, SCRATCH_ADDRESS + SCRATCH.ARGS + 48));
          expect(() => k.serve(), `syscall ${n}(${args.join(', ')})`).not.toThrow();
          const r = v.getBigInt64(SCRATCH_ADDRESS + SCRATCH.NR, true);
          expect(r >= 0n || r >= -4095n, `syscall ${n} returned ${r}`).toBe(true);
          if (r >= 0n) expect(r < 2n ** 53n, `syscall ${n} returned ${r}`).toBe(true);
          // Below userMin only the result slot of the scratch page changed (the arguments are checked next).
          const slot = SCRATCH_ADDRESS + SCRATCH.NR;
          const same = (a: number, b: number): boolean => Buffer.from(mem.buffer, a, b - a).equals(Buffer.from(low.buffer, a, b - a));
          expect(same(0, slot) && same(slot + 8, SCRATCH_ADDRESS + SCRATCH.ARGS) && same(SCRATCH_ADDRESS + SCRATCH.ARGS + 48, USER_MIN), `syscall ${n}(${args.join(', ')}) wrote below userMin`).toBe(true);
          expect(Buffer.from(mem.subarray(SCRATCH_ADDRESS + SCRATCH.ARGS, SCRATCH_ADDRESS + SCRATCH.ARGS + 48)).equals(argsBefore)).toBe(true);
          expect(Buffer.from(mem.buffer, MEMORY).equals(high), `syscall ${n} wrote past the memory`).toBe(true);
          // The program's streams stay within maxOutput (truncate).
          expect(k.state.stdout.length).toBeLessThanOrEqual(4096);
        }
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 400) },
    );
  }, 120_000);
});
