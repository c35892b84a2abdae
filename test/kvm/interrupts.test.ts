import { describe, expect, it } from 'vitest';
import { createMachine, type Machine } from '@kvmpool/core';
import { buildFlatGuest } from '../support/build-c.js';
import { fileURLToPath } from 'node:url';

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
const IDT = 0x30000n;
const INTERRUPT_STACK = 0x2f000n;
const HANDLED = 0x40000n;
const WAKEUPS = 0x40008n;

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 1));
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * The echo guest (test/fixtures/irq-echo.S) serves COM1 only from its IRQ 4 interrupt. Proof that its
 * main loop does not poll: while no byte is typed, its vCPU makes no exit at all (it waits in hlt) and
 * wakes up only for the bytes; every byte is echoed, one interrupt each.
 */
async function echoTest(m: Machine, label: string): Promise<void> {
  const serial = m.serial(0);
  let out = '';
  serial.on('data', (c: Buffer) => (out += c.toString('latin1')));
  await m.start({ entry: 0x10000n, stack: 0x28000n, interrupts: { idt: IDT, stack: INTERRUPT_STACK } });
  // Set-up done (a few port exits), then idle: no exits while nothing arrives.
  await new Promise((r) => setTimeout(r, 50));
  const idleFrom = m.vcpuExits()[0]!;
  await new Promise((r) => setTimeout(r, 200));
  expect(m.vcpuExits()[0]! - idleFrom).toBe(0);
  expect(m.readPhysical(WAKEUPS, 1)[0]).toBe(0);

  const text = 'interrupts, end to end! 0123456789';
  const rtt: number[] = [];
  for (const ch of text) {
    const want = out.length + 1;
    const t0 = performance.now();
    serial.write(ch);
    await until(() => out.length >= want);
    rtt.push(performance.now() - t0);
  }
  expect(out).toBe(text);
  const dv = new DataView(m.readPhysical(HANDLED, 16).buffer);
  expect(Number(dv.getBigUint64(0, true))).toBe(text.length);
  // hlt returns only after an interrupt: at most one wake-up per byte (fewer when the next byte came
  // while the guest was still serving the last), so the guest never spun.
  const wakeups = Number(dv.getBigUint64(8, true));
  expect(wakeups).toBeGreaterThanOrEqual(1);
  expect(wakeups).toBeLessThanOrEqual(text.length);
  console.log(`${label}: byte typed → interrupt → echo, median ${(median(rtt) * 1000).toFixed(0)} µs over ${rtt.length} bytes`);

  // Several bytes at once: the level-triggered line stays up until the guest has read them all.
  serial.write('abc');
  await until(() => out.endsWith('abc'));
  serial.write('\x04');
  expect(await m.waitForExit()).toEqual({ reason: 'halted' });
}

/** Pulses a line `n` times, each after the guest answered the one before; returns the median µs per interrupt. */
async function pulses(out: () => string, pulse: () => void, n: number): Promise<number> {
  const t: number[] = [];
  for (let i = 1; i <= n; i++) {
    expect(out().length).toBe(i); // 'R', then one digit per interrupt so far: none early, none twice
    const t0 = performance.now();
    pulse();
    const end = t0 + 5000;
    while (out().length <= i) {
      if (performance.now() > end) throw new Error(`interrupt ${i} was not answered`);
      await new Promise((r) => setImmediate(r));
    }
    t.push(performance.now() - t0);
  }
  expect(out()).toBe('R' + Array.from({ length: n }, (_, i) => String((i + 1) % 10)).join(''));
  return median(t) * 1000;
}

describe('interrupts end to end', () => {
  it('in-kernel irqchip: the UART raises IRQ 4 through the IOAPIC; the guest echoes from its handler only, waiting in hlt', async () => {
    await using m = await createMachine({ memory: '4 MiB', irqchip: true });
    m.load(0x10000, buildFlatGuest(fixture('irq-echo.S')));
    await echoTest(m, 'irqchip (IOAPIC + LAPIC, KVM_IRQ_LINE)');
  });

  it('no irqchip: the UART line goes through the KVM_INTERRUPT controller; same guest, EOI on port 0x510', async () => {
    await using m = await createMachine({ memory: '4 MiB' });
    m.load(0x10000, buildFlatGuest(fixture('irq-echo.S'), ['SOFT_IRQ']));
    await echoTest(m, 'no irqchip (KVM_INTERRUPT from the vCPU thread)');
  });

  it('a LAPIC periodic timer (1 ms) counted by a hlt-waiting guest: 200 ticks in 200 ms ± 50%', async () => {
    await using m = await createMachine({ memory: '4 MiB', irqchip: true });
    m.load(0x10000, buildFlatGuest(fixture('irq-timer.S')));
    const t0 = performance.now();
    await m.start({ entry: 0x10000n, stack: 0x28000n, interrupts: { idt: IDT, stack: INTERRUPT_STACK } });
    expect(await m.waitForExit()).toEqual({ reason: 'halted' });
    const ms = performance.now() - t0;
    const dv = new DataView(m.readPhysical(HANDLED, 16).buffer);
    // The loop checks after each wake-up; two ticks delivered back to back (a late vCPU) end it at 201.
    expect(Number(dv.getBigUint64(0, true))).toBeGreaterThanOrEqual(200);
    expect(Number(dv.getBigUint64(0, true))).toBeLessThanOrEqual(201);
    // 200 ticks at 1 kHz: the elapsed time says the rate (start-up included, a few ms).
    expect(ms).toBeGreaterThan(200 / 1.5);
    expect(ms).toBeLessThan(200 / 0.5);
    // The guest slept between ticks: about one hlt return per tick, not a spin.
    expect(Number(dv.getBigUint64(8, true))).toBeLessThanOrEqual(200);
    console.log(`LAPIC timer: 200 ticks of 1 ms in ${ms.toFixed(0)} ms`);
  });

  /**
   * Pulses line 10 `n` times at a guest that answers each interrupt on COM1 (irq-count.S); returns
   * the median µs per interrupt. coalesce: false — the answer's THR write then exits at once
   * instead of waiting for the 10 ms flush.
   */
  async function pulseLine(irqchip: boolean, n: number): Promise<number> {
    await using m = await createMachine({ memory: '4 MiB', irqchip, coalesce: false });
    let out = '';
    m.serial(0).on('data', (c: Buffer) => (out += c.toString('latin1')));
    m.load(0x10000, buildFlatGuest(fixture('irq-count.S'), irqchip ? [] : ['SOFT_IRQ']));
    await m.start({ entry: 0x10000n, stack: 0x28000n, interrupts: { idt: IDT, stack: INTERRUPT_STACK }, regs: () => ({ rdi: 10n, rsi: BigInt(n) }) });
    await until(() => out === 'R');
    const line = m.irqLine(10);
    const us = await pulses(() => out, () => {
      line.set(true);
      line.set(false);
    }, n);
    expect(await m.waitForExit()).toEqual({ reason: 'halted' });
    return us;
  }

  it('no irqchip: KVM_INTERRUPT delivers each pulse of a line to a CPL 3 guest (cost per interrupt logged)', async () => {
    const us = await pulseLine(false, 100);
    console.log(`no irqchip: pulse → KVM_INTERRUPT → guest answers on COM1, median ${us.toFixed(0)} µs per interrupt (100)`);
  });

  it('irqchip: KVM_IRQ_LINE pulses on an edge-triggered IOAPIC pin, one interrupt each (cost per interrupt logged)', async () => {
    const us = await pulseLine(true, 100);
    console.log(`irqchip: KVM_IRQ_LINE pulse → guest answers on COM1, median ${us.toFixed(0)} µs per interrupt (100)`);
  });
});
