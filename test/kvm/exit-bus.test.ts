import { describe, expect, it } from 'vitest';
import { GuestCrashError, VcpuThreadError, createMachine, type Machine } from '@kvmpool/core';
import type { Device } from '@kvmpool/devices';
import { DATA_PORT, DONE_PORT, READ_FOREVER, READ_PORT, SPIN, postedWrites, readsEchoed, Recorder } from '../support/machine-guests.js';

const CODE = 0x10000n;
const stack = (i: number): bigint => 0x80000n + BigInt(i) * 0x1000n;
const regs = (i: number) => ({ rdi: BigInt(i) });

/** Records every 32-bit value written to it. */
/** Answers each read with the next number of a counter. */
class Counter implements Device {
  readonly name = 'counter';
  next = 1;
  read(_o: number, d: Uint8Array): void {
    new DataView(d.buffer, d.byteOffset, d.length).setUint32(0, this.next++, true);
  }
  write(): void {}
}

const doneDevice: Device = {
  name: 'done',
  read: (_o, d) => {
    d.fill(0);
  },
  write: () => {},
};

async function machine(vcpus: number, code: Uint8Array, extra: Device[] = [], options: { vcpuSpinUs?: number } = {}): Promise<Machine> {
  const m = await createMachine({
    memory: '2 MiB',
    vcpus,
    ...options,
    devices: [
      { device: doneDevice, pio: { base: DONE_PORT, length: 1 }, stopsVcpu: true },
      ...extra.map((device, i) => ({ device, pio: { base: i === 0 ? DATA_PORT : READ_PORT, length: 4 } })),
    ],
  });
  m.load(CODE, code);
  return m;
}

describe('exit bus', () => {
  it('2 vCPUs × 100k posted writes: none lost, none duplicated, order per vCPU kept', async () => {
    const rec = new Recorder();
    await using m = await machine(2, postedWrites(100_000), [rec]);
    await m.start({ entry: CODE, stack, regs });
    expect(await m.waitForExit()).toEqual({ reason: 'halted' });
    expect(rec.values.length).toBe(200_000);
    const per = new Map<number, number[]>();
    for (const v of rec.values) {
      const id = v >>> 24;
      let list = per.get(id);
      if (!list) per.set(id, (list = []));
      list.push(v & 0xff_ffff);
    }
    expect([...per.keys()].sort()).toEqual([0, 1]);
    for (const list of per.values()) {
      expect(list.length).toBe(100_000);
      expect(list.every((seq, k) => seq === k)).toBe(true);
    }
  });

  it.each([0, 100])('concurrent reads from 3 vCPUs each get their own answer (vcpuSpinUs %i)', async (vcpuSpinUs) => {
    const rec = new Recorder();
    const counter = new Counter();
    await using m = await machine(3, readsEchoed(2000), [rec, counter], { vcpuSpinUs });
    await m.start({ entry: CODE, stack, regs });
    expect(await m.waitForExit()).toEqual({ reason: 'halted' });
    expect(rec.values.length).toBe(6000);
    // Every answer 1..6000 was handed out once and reported back by exactly one vCPU.
    const answers = rec.values.map((v) => v & 0xff_ffff).sort((a, b) => a - b);
    expect(answers).toEqual(Array.from({ length: 6000 }, (_, i) => i + 1));
    for (let id = 0; id < 3; id++) expect(rec.values.filter((v) => v >>> 24 === id).length).toBe(2000);
  });

  it('10k kicks to vCPUs spinning at CPL 3 are all acknowledged; pause/resume keeps state', async () => {
    await using m = await machine(2, SPIN);
    await m.start({ entry: CODE, stack, regs });
    for (let i = 0; i < 10_000; i++) await m.kick(i % 2);
    expect(m.vcpuStates()).toEqual(['running', 'running']);
    const seen: bigint[] = [];
    for (let i = 0; i < 20; i++) {
      await m.pause();
      expect(m.vcpuStates()).toEqual(['paused', 'paused']);
      const r = await m.getRegs(0);
      expect(r.rip === CODE || r.rip === CODE + 3n).toBe(true); // inside the 2-instruction loop
      seen.push(r.rax);
      await m.resume();
      await new Promise((res) => setTimeout(res, 2));
    }
    // Pausing keeps the guest's state: its counter never goes back, and it went on counting.
    expect(seen.every((v, i) => i === 0 || v >= seen[i - 1]!)).toBe(true);
    expect(seen.at(-1)!).toBeGreaterThan(seen[0]!);
    expect(await m.stop()).toEqual({ reason: 'stopped' });
    expect(m.vcpuStates()).toEqual(['stopped', 'stopped']);
  });

  it('stop() ends vCPUs that wait for a device read nobody answers', async () => {
    await using m = await machine(2, READ_FOREVER, [new Recorder(), new Counter()]);
    await m.start({ entry: CODE, stack, regs });
    await new Promise((r) => setTimeout(r, 20));
    await m.dispatcher.stop(); // nobody answers reads any more
    await new Promise((r) => setTimeout(r, 20));
    expect(m.vcpuStates()).toEqual(['running', 'running']);
    expect(await m.stop()).toEqual({ reason: 'stopped' });
    expect(m.vcpuStates()).toEqual(['stopped', 'stopped']);
  });

  it('a guest crash stops that VM with GuestCrashError naming vCPU, exit and rip', async () => {
    await using m = await machine(2, Uint8Array.from([0xf4])); // hlt at CPL 3: #GP, no IDT → shutdown
    const errors: Error[] = [];
    m.on('error', (e) => errors.push(e));
    await m.start({ entry: CODE, stack, regs });
    const exit = await m.waitForExit();
    expect(exit.reason).toBe('crashed');
    if (exit.reason !== 'crashed') throw new Error('unreachable');
    expect(exit.error).toBeInstanceOf(GuestCrashError);
    expect(exit.error).toMatchObject({ exit: 'shutdown', rip: CODE });
    expect(exit.error.message).toMatch(/^guest crashed on vCPU [01]: shutdown at rip 0x10000$/);
    expect(errors).toHaveLength(1);
  });

  it('an exception in a vCPU thread stops that VM with VcpuThreadError; another VM goes on', async () => {
    const rec = new Recorder();
    await using healthy = await machine(1, postedWrites(3000), [rec]);
    await using m = await machine(2, SPIN);
    await m.start({ entry: CODE, stack, regs });
    await healthy.start({ entry: CODE, stack, regs });
    await m.pause();
    await m.injectThreadFault(1, 'boom');
    const exit = await m.waitForExit();
    expect(exit.reason).toBe('error');
    if (exit.reason !== 'error') throw new Error('unreachable');
    expect(exit.error).toBeInstanceOf(VcpuThreadError);
    expect(exit.error.message).toMatch(/^vCPU 1 thread: .*boom/);
    expect(await healthy.waitForExit()).toEqual({ reason: 'halted' });
    expect(rec.values.length).toBe(3000);
  });

  it('the i8042 reset command (0xFE to port 0x64) emits reset and stops the VM', async () => {
    await using m = await createMachine({ memory: '2 MiB', i8042: true });
    // mov $0xfe, %al; out %al, $0x64; 1: jmp 1b
    m.load(CODE, Uint8Array.from([0xb0, 0xfe, 0xe6, 0x64, 0xeb, 0xfe]));
    let resets = 0;
    m.on('reset', () => resets++);
    await m.start({ entry: CODE, stack });
    expect(await m.waitForExit()).toEqual({ reason: 'reset' });
    expect(resets).toBe(1);
  });
});

/** `n` posted writes (as postedWrites), then a spin with no more exits. */
function writesThenSpin(n: number): Uint8Array {
  const w = postedWrites(n);
  return Uint8Array.from([...w.subarray(0, 21), 0xeb, 0xfe]); // the loop, then jmp .
}

describe('exit bus: the lazy doorbell for posted writes', () => {
  const machineWith = async (code: Uint8Array, rec: Recorder, postedWriteBoundMs?: number): Promise<Machine> => {
    const m = await createMachine({
      memory: '2 MiB',
      devices: [{ device: doneDevice, pio: { base: DONE_PORT, length: 1 }, stopsVcpu: true }, { device: rec, pio: { base: DATA_PORT, length: 4 } }],
      // With a bound set, the dispatcher must not spin: a spinning dispatcher sees posted writes
      // as they come (within the bound, so correct), and the test could not tell the two apart.
      ...(postedWriteBoundMs === undefined ? {} : { postedWriteBoundMs, dispatcherSpinUs: 0 }),
    });
    m.load(CODE, code);
    return m;
  };

  it('back-to-back posted writes do not wake the main thread once each (fewer than 0.25 wake-ups per write)', async () => {
    const rec = new Recorder();
    await using m = await machineWith(postedWrites(20_000), rec);
    const before = { ...m.dispatcher.stats };
    await m.start({ entry: CODE, stack, regs });
    expect(await m.waitForExit()).toEqual({ reason: 'halted' });
    expect(rec.values.length).toBe(20_000);
    const wakeups = m.dispatcher.stats.wakeups - before.wakeups;
    expect(wakeups / 20_000).toBeLessThan(0.25);
  });

  it('writes followed by no exit at all reach their device within the bound', async () => {
    const rec = new Recorder();
    await using m = await machineWith(writesThenSpin(100), rec);
    await m.start({ entry: CODE, stack, regs });
    const t0 = performance.now();
    while (rec.values.length < 100 && performance.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 1));
    expect(rec.values.length).toBe(100);
    expect(rec.values).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it('with a long bound, writes wait for it — and a pause sees every one of them before it resolves', async () => {
    const rec = new Recorder();
    await using m = await machineWith(writesThenSpin(100), rec, 60_000);
    await m.start({ entry: CODE, stack, regs });
    await new Promise((r) => setTimeout(r, 300));
    // The first write woke the dispatcher; the rest wait (the guest spins, nothing else exits).
    expect(rec.values.length).toBeLessThan(100);
    await m.pause();
    expect(rec.values).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(await m.stop()).toEqual({ reason: 'stopped' });
  });

  it('refuses a bound that is not a number of ms ≥ 0, and a vCPU spin outside 0–100 µs', async () => {
    await expect(createMachine({ memory: '2 MiB', postedWriteBoundMs: -1 })).rejects.toThrow(TypeError);
    await expect(createMachine({ memory: '2 MiB', vcpuSpinUs: 101 })).rejects.toThrow(/vcpuSpinUs must be a number of µs from 0 to 100/);
    await expect(createMachine({ memory: '2 MiB', vcpuSpinUs: -1 })).rejects.toThrow(TypeError);
  });
});
