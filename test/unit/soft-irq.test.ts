import { describe, expect, it } from 'vitest';
import {
  SOFT_IRQ, createSoftIrqState, softIrqAccept, softIrqNext, softIrqPort, softIrqRestore, softIrqSet, softIrqSnapshot,
} from '@kvmpool/core/internal';

const eoi = (s: Int32Array): number => softIrqPort(s, 0, true, 0);

describe('the no-irqchip interrupt controller (soft-irq.ts)', () => {
  it('edge mode: one delivery per rising edge, a pulse is kept, a line held high is delivered once', () => {
    const s = createSoftIrqState();
    expect(softIrqNext(s)).toBe(-1);
    expect(softIrqSet(s, 4, true)).toBe(true); // wake the vCPU
    softIrqSet(s, 4, false);
    expect(softIrqNext(s)).toBe(4);
    expect(softIrqAccept(s, 4)).toBe(SOFT_IRQ.VECTOR_BASE + 4);
    expect(softIrqNext(s)).toBe(-1);
    eoi(s);
    expect(softIrqNext(s)).toBe(-1);
    softIrqSet(s, 4, true);
    expect(softIrqSet(s, 4, true)).toBe(false); // already high: no edge
    softIrqAccept(s, softIrqNext(s));
    eoi(s);
    expect(softIrqNext(s)).toBe(-1); // still high, but edge-triggered
  });

  it('level mode (ports +3/+4): redelivered after the EOI while high', () => {
    const s = createSoftIrqState();
    softIrqPort(s, 3, true, 1 << 4);
    softIrqSet(s, 4, true);
    softIrqAccept(s, softIrqNext(s));
    eoi(s);
    expect(softIrqNext(s)).toBe(4);
    softIrqSet(s, 4, false);
    softIrqAccept(s, 4);
    eoi(s);
    expect(softIrqNext(s)).toBe(-1);
  });

  it('one in service at a time, fixed priority, masks, and the ISR port', () => {
    const s = createSoftIrqState();
    softIrqSet(s, 9, true);
    softIrqSet(s, 3, true);
    expect(softIrqNext(s)).toBe(3);
    softIrqAccept(s, 3);
    expect(softIrqPort(s, 0, false, 0)).toBe(3);
    expect(softIrqSet(s, 1, true)).toBe(false); // in service: the EOI exit makes the vCPU look again
    expect(softIrqNext(s)).toBe(-1);
    eoi(s);
    expect(softIrqPort(s, 0, false, 0)).toBe(0xff);
    softIrqPort(s, 1, true, 0x02); // mask line 1
    expect(softIrqNext(s)).toBe(9);
    softIrqPort(s, 2, true, 0x02); // mask line 9
    expect(softIrqNext(s)).toBe(-1);
    expect(softIrqPort(s, 2, false, 0)).toBe(0x02);
    expect(softIrqPort(s, 7, false, 0)).toBe(0xff);
    expect(() => softIrqSet(s, 16, true)).toThrow(RangeError);
  });

  it('snapshots round-trip; restore bounds hostile values', () => {
    const s = createSoftIrqState();
    softIrqSet(s, 5, true);
    softIrqPort(s, 1, true, 0x80);
    softIrqPort(s, 4, true, 0x01);
    softIrqAccept(s, 5);
    softIrqSet(s, 6, true);
    const snap = softIrqSnapshot(s);
    const t = createSoftIrqState();
    softIrqRestore(t, JSON.parse(JSON.stringify(snap)));
    expect(softIrqSnapshot(t)).toEqual(snap);
    softIrqRestore(t, { level: -1, latch: -1, mask: 0, inService: 99, levelMode: 0 });
    expect(softIrqSnapshot(t)).toMatchObject({ level: 0xffff, latch: 0xffff, inService: -1 });
    expect(() => softIrqRestore(t, { level: 'x' } as never)).toThrow(TypeError);
  });
});
