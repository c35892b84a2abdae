// What LinuxPool refuses at construction, at once and by name: bytes that are no ELF, a
// dynamically linked program (PT_INTERP), an ELF for another machine or class, an object file,
// an image below the system area or too big for the memory, and a missing file. Nothing is
// started for a refused program.
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { ElfError, LinuxPool } from '@kvmpool/core';
import { BUSYBOX, buildDynamic, buildGlibc, buildMusl, requireBusybox, text } from '../support/linux.js';

requireBusybox();
const busybox = new Uint8Array(readFileSync(BUSYBOX));
const patched = (edit: (b: Buffer) => void): Uint8Array => {
  const b = Buffer.from(busybox);
  edit(b);
  return b;
};

const pools: LinuxPool[] = [];
afterAll(() => Promise.all(pools.map((p) => p.close())));

function refusal(program: ConstructorParameters<typeof LinuxPool>[0]['program'], options: { memory?: string } = {}): Error {
  try {
    pools.push(new LinuxPool({ program, threads: 1, ...options }));
  } catch (e) {
    return e as Error;
  }
  throw new Error('LinuxPool accepted the program');
}

describe('LinuxPool refuses programs it cannot run', () => {
  it('bytes that are no ELF file', () => {
    for (const [bytes, words] of [
      [new Uint8Array(0), /not an ELF file \(0 bytes/],
      [Uint8Array.from([1, 2, 3]), /not an ELF file \(3 bytes/],
      [new TextEncoder().encode('#!/bin/sh\necho hi\n'.repeat(10)), /not an ELF file \(bad magic\)/],
      [busybox.subarray(0, 100), /program headers run past the end of the file/],
    ] as const) {
      const e = refusal(bytes);
      expect(e).toBeInstanceOf(ElfError);
      expect(e.message).toMatch(words);
    }
  });

  it('a dynamically linked program (PT_INTERP): /bin/ls and a gcc default build, naming the loader', () => {
    for (const program of ['/bin/ls', buildDynamic('hello.c')]) {
      const e = refusal(program);
      expect(e, program).toBeInstanceOf(ElfError);
      expect(e.message, program).toMatch(/dynamically linked executable \(its loader is \/lib64\/ld-linux-x86-64\.so\.2\).*link with -static/);
      expect(e.message, program).toContain(program); // which file
    }
  });

  it('an ELF for another machine, another class, or not an executable', () => {
    const cases: [Uint8Array, RegExp][] = [
      [patched((b) => b.writeUInt16LE(183, 18)), /not an x86-64 executable \(e_machine 183\)/], // EM_AARCH64
      [patched((b) => b.writeUInt16LE(3, 18)), /not an x86-64 executable \(e_machine 3\)/], // EM_386
      [patched((b) => (b[4] = 1)), /not a 64-bit ELF file \(class 1\)/],
      [patched((b) => (b[5] = 2)), /not a little-endian ELF file/],
      [patched((b) => b.writeUInt16LE(1, 16)), /not a static executable \(e_type 1/], // ET_REL
    ];
    for (const [bytes, words] of cases) {
      const e = refusal(bytes);
      expect(e).toBeInstanceOf(ElfError);
      expect(e.message).toMatch(words);
    }
  });

  it('an image linked below the system area, or too big for the memory, is a RangeError naming the numbers', () => {
    const low = buildGlibc('hello.c', ['-static', '-O2', '-Wl,-Ttext-segment=0x10000'], 'low');
    expect(refusal(low)).toBeInstanceOf(RangeError);
    expect(refusal(low).message).toMatch(/segment at 0x10000 is below 0x100000/);
    const big = refusal(buildMusl('big-bss.c'), { memory: '64 MiB' });
    expect(big).toBeInstanceOf(RangeError);
    expect(big.message).toMatch(/memory of 67108864 bytes is too small.*at least 110 MiB/);
  });

  it('a program file that does not exist', () => {
    expect(refusal('/no/such/program').message).toMatch(/cannot read program \/no\/such\/program: ENOENT/);
  });

  it('what it accepts instead: a static glibc ET_EXEC and a static-PIE (ET_DYN, loaded at a fixed base), and a big image given the memory', async () => {
    for (const program of [buildGlibc('hello.c'), buildGlibc('hello.c', ['-static-pie', '-O2'], 'pie'), buildMusl('hello.c')]) {
      const pool = new LinuxPool({ program, argv: ['hello', 'x y'], env: { GREETING: 'hi' }, threads: 1, timeoutMs: 5000 });
      pools.push(pool);
      const r = await pool.run('a\nb\n');
      expect(text(r.stdout), program).toBe('argv[0] hello\nargv[1] x y\nhi a\nhi b\n');
    }
    const pool = new LinuxPool({ program: buildMusl('big-bss.c'), memory: '128 MiB', threads: 1, timeoutMs: 5000 });
    pools.push(pool);
    expect(text((await pool.run()).stdout)).toBe('1\n');
  });
});
