/**
 * SDK guests with musl's C library (compileGuest's default): malloc/free, printf, snprintf,
 * string.h, qsort and math.h work in calls, printf's text arrives as the call's prints, the heap
 * and static data of one call are gone in the next, malloc at the heap's end returns NULL with
 * ENOMEM, exit() and abort() end only their call, and freestanding guests (libc: 'none') still
 * run. Guest code: test/fixtures/libc-guest.c.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GuestCrashError, GuestError, SANDBOX_LIMITS, SandboxPool, SandboxVm, compileGuest, parseElf } from '@kvmpool/core/internal';
import { buildSandboxGuest } from '../support/build-c.js';

const MIB = 1 << 20;
const ENOMEM = 12n;
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
const view = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);
const u64s = (...v: bigint[]): Uint8Array => {
  const b = new Uint8Array(8 * v.length);
  v.forEach((x, i) => view(b).setBigUint64(8 * i, x, true));
  return b;
};

let guest: string;
let vm: SandboxVm;
beforeAll(() => {
  guest = buildSandboxGuest('libc-guest.c');
  vm = SandboxVm.create({ image: parseElf(new Uint8Array(readFileSync(guest)), 'libc-guest.elf'), memory: 8 * MIB, inputSize: MIB, outputSize: MIB });
});
afterAll(() => {
  vm?.close();
});

describe('the C library in calls', () => {
  it('malloc, printf and snprintf: the output is snprintf’s, the printed lines are the call’s prints', () => {
    for (const name of ['world', 'kvmpool']) {
      const r = vm.call('greet', enc(name));
      expect(dec(r.output)).toBe(`${name} has ${name.length} bytes, pi ~ 3.1416`);
      // Line-buffered stdout: one print per line, and the unfinished last line at the call's end.
      expect(r.prints).toEqual([`hello, ${name}!\n`, 'no newline at the end']);
    }
  });

  it('qsort, sqrt and sin give the values the host computes', () => {
    const values = [41, -7, 1_000_000, 3, 0, 12];
    const input = new Uint8Array(4 * values.length);
    values.forEach((x, i) => view(input).setInt32(4 * i, x, true));
    const out = vm.call('sort_math', input).output;
    const sorted = [...values].sort((a, b) => a - b);
    expect(Array.from({ length: values.length }, (_, i) => view(out).getInt32(4 * i, true))).toEqual(sorted);
    expect(view(out).getFloat64(4 * values.length, true)).toBe(Math.sqrt(1_000_000));
    expect(view(out).getFloat64(4 * values.length + 8, true)).toBeCloseTo(Math.sin(-7), 15);
  });

  it('prints from printf are bounded like kvmpool_print: 2,000 lines keep PRINT_RECORDS, the rest is counted', () => {
    const r = vm.call('lines', u64s(2000n));
    expect(r.prints.length).toBe(SANDBOX_LIMITS.PRINT_RECORDS);
    expect(r.prints[0]).toBe('line 0\n');
    expect(r.printsDropped).toBe(2000 - SANDBOX_LIMITS.PRINT_RECORDS);
  });
});

describe('every call starts from the state after kvmpool_init', () => {
  it('a static pointer and the block it points at, set in one call, are pristine in the next', () => {
    const first = vm.call('leave_heap', new Uint8Array(0)).output;
    const block = view(first).getBigUint64(0, true);
    expect(block).not.toBe(0n);
    expect(view(first).getBigUint64(8, true)).toBe(0n);
    const second = vm.call('leave_heap', new Uint8Array(0)).output;
    expect(view(second).getBigUint64(8, true)).toBe(0n); // the pointer the first call left is gone
    expect(view(second).getBigUint64(0, true)).toBe(block); // and the heap hands out the same block again
    const seen = vm.call('look', u64s(block)).output;
    expect(view(seen).getBigUint64(0, true)).toBe(0n);
    expect(dec(seen.subarray(8, 20))).toBe('made in init'); // what init malloc'd is part of the pristine state
    expect(dec(seen.subarray(21, 45))).not.toContain('LEFT-BEHIND');
  });

  it('malloc until NULL: NULL with ENOMEM at the heap’s end, the call returns, and the next call has the whole heap again', () => {
    const a = vm.call('exhaust', u64s(64n * 1024n)).output;
    const blocks = view(a).getBigUint64(0, true);
    expect(view(a).getBigUint64(8, true)).toBe(ENOMEM);
    expect(blocks).toBeGreaterThan(40n); // most of the ~4.9 MiB between image and stack
    expect(blocks).toBeLessThan(80n);
    expect(dec(vm.call('greet', enc('after')).output)).toBe('after has 5 bytes, pi ~ 3.1416');
    expect(view(vm.call('exhaust', u64s(64n * 1024n)).output).getBigUint64(0, true)).toBe(blocks);
    expect(view(vm.call('exhaust', u64s(1024n * 1024n)).output).getBigUint64(8, true)).toBe(ENOMEM);
  });
});

describe('how a libc call can fail', () => {
  it('abort() is "killed by SIGABRT", exit(3) is "called exit(3)", kvmpool_abort still works; the next call is normal', () => {
    expect(() => vm.call('die', new Uint8Array(0))).toThrow(new GuestError('guest function die was killed by SIGABRT', -6));
    expect(() => vm.call('quit', new Uint8Array(0))).toThrow(/^guest function quit called exit\(3\)$/);
    expect(() => vm.call('give_up', new Uint8Array(0))).toThrow(/guest aborted: gave up/);
    expect(vm.call('greet', enc('again')).prints).toEqual(['hello, again!\n', 'no newline at the end']);
  });

  it('page 0 is not mapped: a NULL dereference crashes the call', () => {
    expect(() => vm.call('look', u64s(0n))).toThrow(GuestCrashError);
    expect(dec(vm.call('greet', enc('x')).output)).toBe('x has 1 bytes, pi ~ 3.1416');
  });
});

describe('SandboxPool with a libc guest', () => {
  it('printf reaches onPrint; exports are the guest’s own functions, not libc’s', async () => {
    const printed: string[] = [];
    const pool = new SandboxPool({ guest, memory: 8 * MIB, threads: 1, onPrint: (text) => printed.push(text) });
    try {
      expect(dec(await pool.call('greet', 'pool'))).toBe('pool has 4 bytes, pi ~ 3.1416');
      expect(printed).toEqual(['hello, pool!\n', 'no newline at the end']);
      expect(pool.exports.sort()).toEqual(['die', 'exhaust', 'give_up', 'greet', 'leave_heap', 'lines', 'look', 'quit', 'sort_math']);
    } finally {
      await pool.close();
    }
  });
});

describe('compileGuest', () => {
  it("libc: 'none' still builds freestanding guests, which run as before", () => {
    const elf = buildSandboxGuest('sandbox-guest.c', 'none');
    const image = parseElf(new Uint8Array(readFileSync(elf)), 'sandbox-guest.elf');
    expect(image.functions.has('printf')).toBe(false);
    expect(image.functions.has('_kvmpool_libc_flush')).toBe(false);
    const free = SandboxVm.create({ image, memory: 8 * MIB, inputSize: MIB, outputSize: MIB });
    try {
      expect(dec(free.call('echo', enc('freestanding')).output)).toBe('freestanding');
      for (let i = 0; i < 3; i++) expect(view(free.call('state', new Uint8Array(0)).output).getBigUint64(8, true)).toBe(1n);
    } finally {
      free.close();
    }
  });

  it('without musl-gcc on PATH the error names the Debian package', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvmpool-nomusl-'));
    const path = process.env.PATH;
    process.env.PATH = dir;
    try {
      expect(() => compileGuest({ sources: [fileURLToPath(new URL('../fixtures/libc-guest.c', import.meta.url))], output: join(dir, 'g.elf') }))
        .toThrow(/musl-gcc was not found; install it \(Debian\/Ubuntu: apt-get install musl-tools\) or build a freestanding guest with libc: 'none'/);
    } finally {
      process.env.PATH = path;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
