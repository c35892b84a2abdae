import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { DebugUnsupportedError, GdbStub, GuestDebugger, createMachine, debugSupport } from '@kvmpool/core';
import { kvm } from '../support/guest.js';

const support = debugSupport(kvm());

const CODE = 0x10000n;
// 1: inc %rax; inc %rax; inc %rax; jmp 1b     (instructions at +0, +3, +6, +9)
const LOOP = Uint8Array.from([0x48, 0xff, 0xc0, 0x48, 0xff, 0xc0, 0x48, 0xff, 0xc0, 0xeb, 0xf5]);
const stack = (i: number): bigint => 0x80000n + BigInt(i) * 0x1000n;

function gdb(port: number, commands: string[]): Promise<string> {
  const args = ['-batch', '-nx', '-ex', 'set architecture i386:x86-64', '-ex', `target remote 127.0.0.1:${port}`];
  for (const c of commands) args.push('-ex', c);
  return new Promise((resolve, reject) => {
    execFile('gdb', args, { timeout: 60_000 }, (err, stdout, stderr) => (err && !stdout ? reject(err) : resolve(stdout + stderr)));
  });
}

describe('guest debugging', () => {
  it('the host probe says what works; on kvm_pvm: step and hardware breakpoints at CPL 0 only', () => {
    const s = debugSupport(kvm());
    for (const level of [s.cpl0, s.cpl3]) for (const v of Object.values(level)) expect(typeof v).toBe('boolean');
    if (kvm().module === 'kvm_pvm') {
      expect(s).toEqual({
        cpl0: { singleStep: true, hardwareBreakpoints: true, softwareBreakpoints: false, watchpoints: false },
        cpl3: { singleStep: false, hardwareBreakpoints: false, softwareBreakpoints: false, watchpoints: false },
      });
    }
  });

  it('breakpoints stop every vCPU at the address; a step executes exactly one instruction', async () => {
    await using vm = await createMachine({ memory: '2 MiB', vcpus: 2, mode: 'long' });
    vm.load(CODE, LOOP);
    await vm.start({ entry: CODE, stack });
    await vm.pause();
    const dbg = new GuestDebugger(vm);
    await dbg.setBreakpoints([CODE + 6n]);
    const hit = await dbg.continue();
    expect(hit).toMatchObject({ kind: 'debug', stop: { pc: CODE + 6n } });
    if (hit.kind !== 'debug') throw new Error('unreachable');
    expect(vm.vcpuStates()).toEqual(['paused', 'paused']);
    const v = hit.stop.vcpu;
    expect((await vm.getRegs(v)).rip).toBe(CODE + 6n);
    await dbg.setBreakpoints([]);
    const before = (await vm.getRegs(v)).rax;
    expect(await dbg.step(v)).toMatchObject({ kind: 'debug', stop: { vcpu: v, pc: CODE + 9n } });
    expect((await vm.getRegs(v)).rax).toBe(before + 1n);
    expect(await dbg.step(v)).toMatchObject({ kind: 'debug', stop: { pc: CODE } }); // the jmp
    await dbg.detach();
    await vm.resume();
    expect(vm.vcpuStates()).toEqual(['running', 'running']);
  });

  it('what the host cannot do at CPL 3 is refused with a clear error and the guest runs on', async () => {
    const s = debugSupport(kvm());
    await using vm = await createMachine({ memory: '2 MiB', mode: 'user' });
    vm.load(CODE, LOOP);
    await vm.start({ entry: CODE, stack });
    await vm.pause();
    const dbg = new GuestDebugger(vm);
    if (s.cpl3.singleStep) {
      expect((await dbg.step(0)).kind).toBe('debug');
    } else {
      await expect(dbg.step(0)).rejects.toThrow(DebugUnsupportedError);
      await expect(dbg.step(0)).rejects.toThrow(`singleStep at CPL 3 does not work on this host (${kvm().module})`);
    }
    if (!s.cpl3.hardwareBreakpoints) await expect(dbg.setBreakpoints([CODE])).rejects.toThrow(/hardwareBreakpoints at CPL 3/);
    const rax = (await vm.getRegs(0)).rax;
    await vm.resume();
    await new Promise((r) => setTimeout(r, 20));
    await vm.pause();
    expect((await vm.getRegs(0)).rax).toBeGreaterThan(rax);
    expect(vm.vcpuStates()).toEqual(['paused']);
  });

  it('real gdb attaches over the remote protocol: threads, registers, memory, breakpoint, continue, stepi, detach', async () => {
    await using vm = await createMachine({ memory: '2 MiB', vcpus: 2, mode: 'long' });
    vm.load(CODE, LOOP);
    await vm.start({ entry: CODE, stack, regs: (i) => ({ rbx: BigInt(0x100 + i) }) });
    await using stub = await GdbStub.listen(vm);
    const out = await gdb(stub.port, [
      'info threads',
      'x/3xb 0x10000',
      'hbreak *0x10006',
      'continue',
      'info registers rip',
      'delete',
      'stepi',
      'info registers rip',
      'thread 2',
      'info registers rbx',
      'detach',
    ]);
    expect(out).toMatch(/Thread 1 \(vCPU 0 \(paused\)\)/);
    expect(out).toMatch(/Thread 2 \(vCPU 1 \(paused\)\)/);
    expect(out).toMatch(/0x10000:\s+0x48\s+0xff\s+0xc0/);
    expect(out).toMatch(/hit Breakpoint 1, 0x0000000000010006/);
    expect(out).toMatch(/rip\s+0x10006/);
    expect(out).toMatch(/rip\s+0x10009/);
    expect(out).toMatch(/rbx\s+0x101/);
    expect(out).toMatch(/detached/);
    await new Promise((r) => setTimeout(r, 20));
    expect(vm.vcpuStates()).toEqual(['running', 'running']);
  });

  // Only where the host cannot step CPL 3 code (kvm_pvm) is there a refusal to see.
  it.runIf(!support.cpl3.singleStep)('gdb stepping a CPL 3 guest on a host that cannot gets an error reply, not a dead guest', async () => {
    await using vm = await createMachine({ memory: '2 MiB', mode: 'user' });
    vm.load(CODE, LOOP);
    await vm.start({ entry: CODE, stack });
    await using stub = await GdbStub.listen(vm);
    const out = await gdb(stub.port, ['stepi', 'info registers rip', 'detach']);
    expect(out).toMatch(/E01/);
    expect(out).toMatch(/detached/);
    await new Promise((r) => setTimeout(r, 20));
    expect(vm.vcpuStates()).toEqual(['running']);
  });
});
