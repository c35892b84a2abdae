import { describe, expect, it } from 'vitest';
import { createMachine } from '@kvmpool/core';
import { READ_FOREVER, SPIN } from '../support/machine-guests.js';

const CODE = 0x10000n;
const stack = (i: number): bigint => 0x80000n + BigInt(i) * 0x1000n;

describe('introspection', () => {
  it('inspect() reads every vCPU while all are paused, then they go on; memory by virtual address; scan', async () => {
    await using m = await createMachine({ memory: '4 MiB', vcpus: 2 });
    m.load(CODE, SPIN);
    m.load(0x200000, new TextEncoder().encode('needle-in-guest-memory'));
    m.load(0x3ff000, new TextEncoder().encode('needle-in-guest-memory'));
    await m.start({ entry: CODE, stack, regs: (i) => ({ rbx: BigInt(0x1000 + i) }) });
    const snap = await m.inspect();
    expect(snap.vcpus.map((v) => v.state)).toEqual(['paused', 'paused']);
    expect(m.vcpuStates()).toEqual(['running', 'running']);
    for (const [i, v] of snap.vcpus.entries()) {
      expect(v.regs.rbx).toBe(BigInt(0x1000 + i));
      expect([CODE, CODE + 3n]).toContain(v.regs.rip);
      expect(v.sregs.cs.dpl).toBe(3);
      expect(v.mpState).toBe('runnable');
      expect(v.fpu.fcw).toBeGreaterThan(0);
      expect(v.lapic).toBeNull(); // no irqchip in this VM
    }
    expect(snap.slots).toEqual([{ slot: 0, guestAddress: 0n, size: 4 << 20, readOnly: false, dirtyLog: false }]);
    await m.pause();
    expect([...(await m.readVirtual(0, CODE, SPIN.length))]).toEqual([...SPIN]);
    await expect(m.readVirtual(0, 0x8000_0000n, 4)).rejects.toThrow('vCPU 0: guest-virtual 0x80000000 is not mapped');
    await m.resume();
    expect(await m.scanMemory('needle-in-guest-memory')).toEqual([0x200000n, 0x3ff000n]);
    expect([...m.readPhysical(0x200000, 6)]).toEqual([...new TextEncoder().encode('needle')]);
  });

  it('pause() works while vCPUs sit in HLT (in-kernel irqchip) or wait on device reads', async () => {
    await using halted = await createMachine({ memory: '2 MiB', vcpus: 2, irqchip: true, mode: 'long' });
    halted.load(CODE, Uint8Array.from([0xfa, 0xf4, 0xeb, 0xfd])); // cli; 1: hlt; jmp 1b
    await halted.start({ entry: CODE, stack });
    await new Promise((r) => setTimeout(r, 20));
    await halted.pause();
    expect(halted.vcpuStates()).toEqual(['paused', 'paused']);
    const s = await halted.inspect();
    expect(s.vcpus.every((v) => v.lapic !== null && v.mpState === 'halted')).toBe(true);
    await halted.resume();

    await using reading = await createMachine({ memory: '2 MiB', vcpus: 2 });
    reading.load(CODE, READ_FOREVER);
    await reading.start({ entry: CODE, stack });
    for (let i = 0; i < 20; i++) {
      await reading.pause();
      expect(reading.vcpuStates()).toEqual(['paused', 'paused']);
      await reading.resume();
    }
  });
});
