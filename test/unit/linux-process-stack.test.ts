// The initial process stack (process-stack.ts) parses back as a Linux program's start-up code
// reads it: argc, argv, envp, auxv, the strings they point to and AT_RANDOM; 16-byte aligned,
// within [sp, top); its limits are refused with RangeError / TypeError.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AT, MAX_ARG_BYTES, MAX_ARG_STRINGS, buildProcessStack, type ProcessStackInput } from '@kvmpool/core/internal';

const dec = new TextDecoder();

/** Reads the stack back as musl's __init_libc and glibc's _dl_aux_init do. */
function parse(bytes: Uint8Array, sp: bigint, top: bigint) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const word = (addr: bigint): bigint => {
    expect(addr >= sp && addr + 8n <= top, `word at 0x${addr.toString(16)} inside the stack`).toBe(true);
    return v.getBigUint64(Number(addr - sp), true);
  };
  const str = (addr: bigint): string => {
    expect(addr >= sp && addr < top).toBe(true);
    const at = Number(addr - sp);
    const end = bytes.indexOf(0, at);
    expect(end).toBeGreaterThanOrEqual(0);
    return dec.decode(bytes.subarray(at, end));
  };
  let at = sp;
  const next = (): bigint => {
    const w = word(at);
    at += 8n;
    return w;
  };
  const argc = Number(next());
  const argv = Array.from({ length: argc }, () => str(next()));
  expect(next()).toBe(0n);
  const env: string[] = [];
  for (let p = next(); p !== 0n; p = next()) env.push(str(p));
  const auxv: [number, bigint][] = [];
  for (let k = next(); ; k = next()) {
    const val = next();
    auxv.push([Number(k), val]);
    if (k === 0n) break;
  }
  return { argv, env, auxv, str, raw: (addr: bigint, n: number) => bytes.subarray(Number(addr - sp), Number(addr - sp) + n) };
}

const noNul = fc.string({ unit: 'grapheme', maxLength: 40 }).filter((s) => !s.includes('\0'));

describe('process stack', () => {
  it('parses back: argc, argv, envp, auxv in order, AT_RANDOM, AT_EXECFN, AT_PLATFORM; aligned and inside [sp, top)', () => {
    fc.assert(
      fc.property(
        fc.array(noNul, { minLength: 1, maxLength: 12 }),
        fc.array(noNul.map((s) => `K=${s}`), { maxLength: 12 }),
        noNul,
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.integer({ min: 1, max: 1 << 20 }),
        fc.array(fc.tuple(fc.constantFrom(AT.PHDR, AT.PAGESZ, AT.ENTRY, AT.UID, AT.HWCAP), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })), { maxLength: 6 }),
        (argv, env, execfn, random, topPages, aux) => {
          const top = BigInt(topPages) * 4096n;
          const input: ProcessStackInput = { top, argv, env, execfn, random, auxv: aux };
          const s = buildProcessStack(input);
          expect(s.sp % 16n).toBe(0n);
          expect(s.sp + BigInt(s.bytes.length)).toBe(top);
          expect([...s.bytes.subarray(-8)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
          const p = parse(s.bytes, s.sp, top);
          expect(p.argv).toEqual(argv);
          expect(p.env).toEqual(env);
          const byType = new Map(p.auxv);
          expect(p.auxv.slice(0, aux.length)).toEqual(aux.map(([k, v]) => [k, v]));
          expect(p.auxv.at(-1)).toEqual([AT.NULL, 0n]);
          const randomAt = byType.get(AT.RANDOM)!;
          expect(randomAt).toBe(s.randomAt);
          expect(randomAt % 16n).toBe(0n);
          expect([...p.raw(randomAt, 16)]).toEqual([...random]);
          expect(p.str(byType.get(AT.EXECFN)!)).toBe(execfn);
          expect(p.str(byType.get(AT.PLATFORM)!)).toBe('x86_64');
        },
      ),
      { numRuns: 200 },
    );
  });

  const base = (over: Partial<ProcessStackInput>): ProcessStackInput => ({ top: 0x100000n, argv: ['p'], env: [], execfn: 'p', auxv: [], random: new Uint8Array(16), ...over });

  it('takes argument strings up to MAX_ARG_BYTES (NULs, execfn and "x86_64" included), and no byte more', () => {
    const fixed = 'p'.length + 1 + 'x86_64'.length + 1 + 1; // execfn, platform, the argument's NUL
    const ok = base({ argv: ['a'.repeat(MAX_ARG_BYTES - fixed)], top: 0x1000000n });
    expect(() => buildProcessStack(ok)).not.toThrow();
    expect(() => buildProcessStack({ ...ok, argv: ['a'.repeat(MAX_ARG_BYTES - fixed + 1)] })).toThrow(new RangeError(`argv and env take ${MAX_ARG_BYTES + 1} bytes; at most ${MAX_ARG_BYTES}`));
  });

  it('refuses too many strings, a NUL byte, a misaligned top, AT_RANDOM of the wrong size, a non-string', () => {
    expect(() => buildProcessStack(base({ argv: new Array<string>(MAX_ARG_STRINGS).fill(''), env: ['A='] }))).toThrow(/at most 16384/);
    expect(() => buildProcessStack(base({ argv: ['a\0b'] }))).toThrow(/contains a NUL byte/);
    expect(() => buildProcessStack(base({ env: ['A=\0'] }))).toThrow(RangeError);
    expect(() => buildProcessStack(base({ top: 0x100008n }))).toThrow(/not 16-byte aligned/);
    expect(() => buildProcessStack(base({ random: new Uint8Array(15) }))).toThrow(/16 bytes, got 15/);
    expect(() => buildProcessStack(base({ argv: [42 as unknown as string] }))).toThrow(TypeError);
  });
});
