// How a Linux program's call ends, and that the next call on the same VM works after each:
// fork → ENOSYS handled by the program, abort() and kill → killed by the signal, an unknown
// syscall (ENOSYS and counted, or in strict mode the call fails naming it), malloc until NULL →
// ENOMEM at the memory limit, a runaway loop → SandboxTimeoutError, faults and privileged
// instructions → the signal Linux sends (SIGSEGV).
import { afterAll, describe, expect, it } from 'vitest';
import { GuestCrashError, GuestError, GuestLimitError, LinuxPool, SandboxTimeoutError } from '@kvmpool/core';
import { BUSYBOX, buildGlibc, buildMusl, report, requireBusybox, text } from '../support/linux.js';

const ENOSYS = 38;
const ENOMEM = 12;
const processProgram = buildMusl('process.c');
const pools: LinuxPool[] = [];
afterAll(() => Promise.all(pools.map((p) => p.close())));

function pool(options: Partial<ConstructorParameters<typeof LinuxPool>[0]> = {}): LinuxPool {
  const p = new LinuxPool({ program: processProgram, threads: 1, timeoutMs: 5000, ...options });
  pools.push(p);
  return p;
}

async function expectWorks(p: LinuxPool, code = 7): Promise<void> {
  const r = await p.run(`exit ${code}\n`);
  expect(text(r.stdout)).toBe(`exiting ${code}\n`);
  expect(r.exitCode).toBe(code);
  expect(r.stats.start).toBe('first-read');
}

describe('Linux programs: process endings', () => {
  it('fork() returns ENOSYS, the program reports it and exits 0', async () => {
    const p = pool();
    const r = await p.run('fork\n');
    expect(text(r.stdout)).toBe(`fork -1 errno ${ENOSYS} Function not implemented\n`);
    expect(r.exitCode).toBe(0);
    expect(r.signal).toBeUndefined();
    await expectWorks(p);
  });

  it("abort() ends the call as killed by SIGABRT (exitCode null); kill(getpid(), SIGTERM) as SIGTERM; SIGCHLD is ignored", async () => {
    const p = pool();
    const r = await p.run('abort\n');
    expect(r).toMatchObject({ exitCode: null, signal: 'SIGABRT' });
    expect(await p.run('term\n')).toMatchObject({ exitCode: null, signal: 'SIGTERM' });
    const chld = await p.run('chld\n');
    expect(chld).toMatchObject({ exitCode: 0 });
    expect(chld.signal).toBeUndefined();
    expect(text(chld.stdout)).toBe('survived SIGCHLD\n');
    await expectWorks(p);
  });

  it('an unimplemented syscall returns ENOSYS and is counted in stats.unknownSyscalls by name', async () => {
    const p = pool();
    const r = await p.run('unknown\n');
    expect(text(r.stdout)).toBe(`io_uring_setup -1 errno ${ENOSYS}\npkey_alloc -1 errno ${ENOSYS}\n1000 -1 errno ${ENOSYS}\n`);
    expect(r.stats.unknownSyscalls).toEqual({ io_uring_setup: 2, pkey_alloc: 1, syscall_1000: 1 });
    // Per call: the next call's stats start from nothing.
    const next = await p.run('exit 0\n');
    expect(next.stats.unknownSyscalls).toEqual({});
    expect(next.stats.syscalls).toBeGreaterThan(0);
  });

  it('strict: true fails the call with a GuestError naming the syscall; the next call works', async () => {
    const p = pool({ strict: true });
    const err = await p.run('unknown\n').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GuestError);
    expect((err as Error).message).toMatch(/io_uring_setup \(425\).*strict/);
    await expectWorks(p);
  });

  it("strict: true runs busybox sha256sum: every syscall glibc's start-up and the applet make is implemented", async () => {
    requireBusybox();
    const p = new LinuxPool({ program: BUSYBOX, argv: ['sha256sum'], strict: true, threads: 1, timeoutMs: 5000 });
    pools.push(p);
    const r = await p.run('abc');
    expect(text(r.stdout)).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  -\n');
  });

  it('warmUp: the pages of one run of our own stay writable; every call still gets its own answer; a bad warmUp is refused', async () => {
    requireBusybox();
    expect(() => new LinuxPool({ program: BUSYBOX, argv: ['sha256sum'], warmUp: 'abc' as never })).toThrow(/^warmUp: /);
    expect(() => new LinuxPool({ program: BUSYBOX, argv: ['sha256sum'], maxInput: 4096, warmUp: new Uint8Array(8192) })).toThrow(/^warmUp: .*maxInput/);
    const p = new LinuxPool({ program: BUSYBOX, argv: ['sha256sum'], threads: 1, timeoutMs: 5000, warmUp: new TextEncoder().encode('a warm-up line\n') });
    pools.push(p);
    for (let i = 0; i < 20; i++) {
      const r = await p.run(i % 2 === 0 ? 'abc' : '');
      expect(text(r.stdout), `call ${i}`).toBe(i % 2 === 0
        ? 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  -\n'
        : 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  -\n');
    }
  });

  it('a runaway loop times out with SandboxTimeoutError, and the next call works', async () => {
    const p = pool();
    for (let i = 0; i < 2; i++) {
      const t0 = performance.now();
      const err = await p.run('spin\n', { timeoutMs: 150 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SandboxTimeoutError);
      expect(performance.now() - t0).toBeLessThan(3000);
      await expectWorks(p);
    }
    // The pool's own timeoutMs applies too.
    const short = pool({ timeoutMs: 100 });
    await expect(short.run('spin\n')).rejects.toThrow(SandboxTimeoutError);
    await expectWorks(short);
  });

  it('cli at CPL 3 is #GP, as on Linux: killed by SIGSEGV; the next call works', async () => {
    const p = pool();
    const r = await p.run('cli-spin\n', { timeoutMs: 2000 });
    expect(r).toMatchObject({ exitCode: null, signal: 'SIGSEGV' });
    expect(r.fault).toMatch(/^general protection \(#GP\), rip 0x[0-9a-f]+ \(main\+0x[0-9a-f]+\)$/);
    await expectWorks(p);
  });

  it('faults and privileged instructions end the program with the signal Linux sends (SIGSEGV), saying where; the next call works', async () => {
    const p = pool();
    const faults: Record<string, RegExp> = {
      segv: /^page fault \(#PF\) at 0x0, rip /,
      'poke-system': /^page fault \(#PF\) at 0x1000, rip /,
      'poke-stub': /^page fault \(#PF\) at 0xb000, rip /,
      hlt: /^general protection \(#GP\), rip /,
      port: /^general protection \(#GP\), rip /,
    };
    for (const [mode, fault] of Object.entries(faults)) {
      const r = await p.run(`${mode}\n`);
      expect(r, mode).toMatchObject({ exitCode: null, signal: 'SIGSEGV' });
      expect(r.fault, mode).toMatch(fault);
      expect(r.fault, mode).toMatch(/\(main\+0x[0-9a-f]+\)$/); // where, by symbol
      await expectWorks(p, 3);
    }
    // A program that maps zeroes over all of its own memory runs into them: a fault (a signal,
    // or a triple fault if nothing is left to deliver it with) or a spin.
    const wiped = await p.run(`wipe ${64 * 1024 * 1024}\n`, { timeoutMs: 2000 }).catch((e: unknown) => e);
    const ended = wiped instanceof GuestCrashError || wiped instanceof SandboxTimeoutError || (wiped as { signal?: string }).signal !== undefined;
    expect(ended, String(wiped)).toBe(true);
    // The stub and the system tables are what every syscall goes through: still intact.
    for (let i = 0; i < 5; i++) await expectWorks(p, i);
  });
});

describe('Linux programs: output limits', () => {
  it("past maxOutput, outputLimit 'error' fails the call with GuestLimitError; the next call works", async () => {
    const p = pool({ maxOutput: '64 KiB' });
    const err = await p.run('flood 100000\n').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GuestLimitError);
    expect((err as Error).message).toMatch(/stdout.*maxOutput/);
    // Exactly at the limit is not over it.
    const at = await p.run(`flood ${64 * 1024 - 1000}\n`);
    expect(at.stdout.length).toBe(64 * 1024);
    await expectWorks(p);
  });

  it("outputLimit 'truncate' keeps the first maxOutput bytes of each stream and counts the rest in dropped", async () => {
    const p = pool({ maxOutput: '64 KiB', outputLimit: 'truncate' });
    const n = 300_000;
    const r = await p.run(`flood ${n}\n`);
    expect(r.exitCode).toBe(0);
    expect(r.stdout.length).toBe(64 * 1024);
    expect(r.stderr.length).toBe(64 * 1024);
    expect(text(r.stdout)).toBe('y'.repeat(64 * 1024));
    expect(r.dropped).toEqual({ stdout: n + 1000 - 64 * 1024, stderr: n / 2 - 64 * 1024 });
    const small = await p.run('flood 10\n');
    expect(text(small.stdout)).toBe(`${'y'.repeat(10)}${'z'.repeat(1000)}`);
    expect(small.dropped).toEqual({ stdout: 0, stderr: 0 });
  });
});

describe('Linux programs: memory limit', () => {
  // musl's malloc (mmap for large blocks, brk and mmap for small) and glibc's (brk, then mmap when brk fails).
  const programs = { musl: buildMusl('malloc-limit.c'), glibc: buildGlibc('malloc-limit.c') };

  for (const [what, input] of [
    ['small blocks, written', '200 touch'],
    ['128 KiB blocks', '131072'],
    ['1 MiB blocks, written', '1048576 touch'],
  ] as const) {
    for (const [libc, program] of Object.entries(programs)) {
      it(`${libc}: malloc until NULL gets ENOMEM at the limit and exits cleanly: ${what}; the next calls find the same room`, async () => {
        const p = new LinuxPool({ program, memory: '16 MiB', stackSize: '256 KiB', threads: 1, timeoutMs: 20_000 });
        pools.push(p);
        const first = await p.run(`${input}\n`);
        const got = report(first.stdout);
        expect(first.exitCode, text(first.stdout)).toBe(3);
        expect(got.errno).toBe(String(ENOMEM));
        expect(got['after-free']).toBe('ok');
        // Most of the 16 MiB less the stack and image was handed out, none of it past the limit.
        expect(Number(got.bytes)).toBeGreaterThan(8 * 1024 * 1024);
        expect(Number(got.bytes)).toBeLessThan(16 * 1024 * 1024);
        // A pristine start every time: the same allocator state, so the same count.
        const again = await p.run(`${input}\n`);
        expect(report(again.stdout)).toEqual(got);
        expect((await p.run('4096\n')).exitCode).toBe(3);
      });
    }
  }
});
