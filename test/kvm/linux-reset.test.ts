/**
 * The reset after a Linux program's call: the short path (no settle, no debug-register or MSR
 * restore) only when the call ended by exit/exit_group at the syscall stub's own OUT; a fault
 * or a time-out takes the full path, and every call after either is pristine.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LinuxVm, PIE_BASE, SandboxTimeoutError, parseElf } from '@kvmpool/core/internal';

const src = fileURLToPath(new URL('../fixtures/linux-fault.c', import.meta.url));
const out = fileURLToPath(new URL('../.build/linux-fault-reset', import.meta.url));
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
const stdin = (s: string): { stdin: Uint8Array } => ({ stdin: new TextEncoder().encode(s) });

let vm: LinuxVm;
beforeAll(() => {
  mkdirSync(fileURLToPath(new URL('../.build/', import.meta.url)), { recursive: true });
  execFileSync('musl-gcc', ['-static', '-O1', '-o', out, src]);
  vm = LinuxVm.create({
    image: parseElf(new Uint8Array(readFileSync(out)), out, { loadBase: PIE_BASE, rejectInterp: true }),
    execPath: '/bin/linux-fault', argv: ['linux-fault'], env: [],
    config: { files: new Map(), maxOutput: 1 << 16, outputLimit: 'error', strict: false, ids: { uid: 1000, gid: 1000 } },
    memory: 16 << 20, stackSize: 1 << 20, start: 'first-read',
  });
});
afterAll(() => vm.close());

describe('LinuxVm reset paths', () => {
  it('a call that exits takes the short reset, and the calls after it are pristine', () => {
    const before = { ...vm.resetPaths };
    for (const c of 'abc') expect(dec(vm.run(stdin(c)).stdout)).toBe(`ok ${c}\n`);
    expect(vm.resetPaths.short - before.short).toBe(3);
    expect(vm.resetPaths.full - before.full).toBe(0);
  });

  it('a call killed by a fault takes the full reset; the next call exits normally and short', () => {
    const before = { ...vm.resetPaths };
    expect(vm.run(stdin('n'))).toMatchObject({ exitCode: null, signal: 11 });
    expect(vm.resetPaths.full - before.full).toBe(1);
    const next = vm.run(stdin('x'));
    expect({ code: next.exitCode, out: dec(next.stdout) }).toEqual({ code: 0, out: 'ok x\n' });
    expect(vm.resetPaths.short - before.short).toBe(1);
  });

  it('a call that times out takes the full reset', () => {
    const before = vm.resetPaths.full;
    expect(() => vm.run(stdin('s'), { timeoutMs: 50 })).toThrow(SandboxTimeoutError);
    expect(vm.resetPaths.full - before).toBe(1);
    expect(dec(vm.run(stdin('y')).stdout)).toBe('ok y\n');
  });
});
