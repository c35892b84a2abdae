/**
 * Property test of the host-call ABI: a guest (hostile-guest.c `raw_call`) makes one host call
 * whose op, pointers and lengths come straight from its input — arbitrary u64s, values near 2^64
 * and around the end of guest memory, and valid ranges. Every outcome is a valid result or a
 * typed per-call error (GuestError, GuestLimitError, HostFunctionError), never another
 * exception or a host crash, and the next call is normal. One in-thread SandboxVm.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GuestError, GuestLimitError, HostFunctionError, SandboxVm, parseElf } from '@kvmpool/core/internal';
import { buildSandboxGuest } from '../support/build-c.js';

const MIB = 1 << 20;
const MEMORY = 8 * MIB;
const INPUT_BASE = MEMORY - 2 * MIB; // sandboxLayout: input below the 1 MiB output region
const U64_MAX = (1n << 64n) - 1n;
const NAME_AT = BigInt(INPUT_BASE + 56); // "echo" follows the seven fields in the input
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

let vm: SandboxVm;
beforeAll(() => {
  const elf = new Uint8Array(readFileSync(buildSandboxGuest('hostile-guest.c')));
  vm = SandboxVm.create({
    image: parseElf(elf, 'hostile-guest.elf'), memory: MEMORY, inputSize: MIB, outputSize: MIB,
    hostFunctions: { echo: (arg) => arg, none: () => undefined },
  });
});
afterAll(() => vm?.close());

/** A u64 a hostile guest might pass: anything, near 2^64, around the memory end, small, valid. */
const u64 = fc.oneof(
  fc.bigInt({ min: 0n, max: U64_MAX }),
  fc.bigInt({ min: U64_MAX - 4096n, max: U64_MAX }),
  fc.bigInt({ min: BigInt(MEMORY) - 4096n, max: BigInt(MEMORY) + 4096n }),
  fc.bigInt({ min: 0n, max: 4096n }),
  fc.bigInt({ min: 0x100000n, max: BigInt(MEMORY) }),
  fc.constantFrom(0n, 1n, 1n << 63n, U64_MAX, BigInt(MEMORY), NAME_AT, 0xc000n),
);
const op = fc.oneof(fc.constantFrom(0n, 1n, 2n, 3n, 4n), u64);
/** A host-function name field: a real one ("echo", "none") at its place in the input, or arbitrary. */
const name = fc.oneof(
  fc.constant([NAME_AT, 4n] as const),
  fc.constant([NAME_AT + 5n, 4n] as const),
  fc.tuple(u64, u64),
);

function input(fields: readonly bigint[]): Uint8Array {
  const b = new Uint8Array(56 + 10);
  const v = new DataView(b.buffer);
  fields.forEach((x, i) => v.setBigUint64(8 * i, x, true));
  b.set(enc('echo\0none'), 56);
  return b;
}

describe('host-call ABI property', () => {
  it('arbitrary op, pointers and lengths: a valid result or a typed per-call error, and the next call is normal', () => {
    const seen = new Map<string, number>();
    fc.assert(
      fc.property(op, name, u64, u64, u64, u64, (o, [nPtr, nLen], argPtr, argLen, resPtr, resLen) => {
        let kind: string;
        try {
          const r = vm.call('raw_call', input([o, nPtr, nLen, argPtr, argLen, resPtr, resLen]));
          expect(r.output.length).toBe(8);
          kind = 'ok';
        } catch (e) {
          if (!(e instanceof GuestError || e instanceof GuestLimitError || e instanceof HostFunctionError)) throw e;
          kind = e.name;
        }
        seen.set(kind, (seen.get(kind) ?? 0) + 1);
        expect(dec(vm.call('echo', enc('next caller')).output)).toBe('next caller');
      }),
      { numRuns: 400 },
    );
    // The generators reach every kind of outcome.
    expect([...seen.keys()].sort()).toEqual(['GuestError', 'GuestLimitError', 'HostFunctionError', 'ok']);
  });

  it('a result buffer in the low area (system tables, page tables, call area) is refused; nothing there changes', () => {
    const spots = [0x1f00n, 0xa000n, 0xa008n];
    const peekAll = (): bigint[] => spots.map((at) => new DataView(vm.call('peek', input([at])).output.buffer).getBigUint64(0, true));
    const before = peekAll();
    for (const at of [0x1f00n, 0xa000n, 0xa008n, 0xc000n, 0xff000n]) {
      const b = input([3n, NAME_AT, 4n, NAME_AT, 8n, at, 8n]);
      expect(() => vm.call('raw_call', b)).toThrow(/result buffer .* below 0x100000/);
    }
    expect(peekAll()).toEqual(before);
  });

  it('host-function names are own names only: constructor, toString, __proto__ are "no such host function"', () => {
    for (const n of ['constructor', 'toString', 'valueOf', 'hasOwnProperty', '__proto__']) {
      const b = new Uint8Array(56 + n.length);
      const v = new DataView(b.buffer);
      [3n, NAME_AT, BigInt(n.length), NAME_AT, 4n, BigInt(INPUT_BASE + 0x1000), 8n].forEach((x, i) => v.setBigUint64(8 * i, x, true));
      b.set(enc(n), 56);
      expect(() => vm.call('raw_call', b)).toThrow(/no such host function/);
    }
  });
});
