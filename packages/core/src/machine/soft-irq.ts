/**
 * The interrupt controller of a machine without the in-kernel irqchip: a small 8259-like model
 * whose state is a few words in a SharedArrayBuffer, delivered with KVM_INTERRUPT by vCPU 0's
 * thread (the 8259's INTR pin goes to the boot CPU only).
 *
 * Model. 24 input lines (IrqLine `n` = line n), fixed priority (line 0 highest), vector
 * `SOFT_IRQ.VECTOR_BASE + n`. A line is requested while it is high (level) or after a rising
 * edge that was not delivered yet (so a pulse is not lost). One interrupt is in service at a
 * time: no other is delivered until the guest writes the EOI port; a line still high after the
 * EOI is delivered again (level semantics, as the 8259 in level mode and the IOAPIC do). Lines
 * are masked by the mask ports. Guest ports (answered in the vCPU thread, never posted to the
 * dispatcher): `PORT + 0` OUT = EOI (any value), IN = the line in service (0xff: none);
 * `PORT + 1 … + 3` the mask bytes for lines 0–7, 8–15, 16–23 (1 = masked; power-on: none).
 *
 * Who writes what: the main thread (devices' IrqLines) changes LEVEL and LATCH with atomic RMWs;
 * vCPU 0's thread alone writes MASK and ISR and clears LATCH bits at injection.
 *
 * Memory ordering (x86-64; Atomics RMWs are lock-prefixed, Atomics.store is xchg, both full fences):
 *   main:  RMW LEVEL/LATCH  →  store kvm_run.immediate_exit = 1  →  bump+notify CONTROL.WAKE  →  tgkill
 *   vCPU:  store immediate_exit = 0 → RMW KICK_REQ (the run loop's safe point) → load LEVEL/LATCH → KVM_RUN
 * If the vCPU's load misses the RMW, the load came before it, so its clear of immediate_exit (fenced
 * before the load) came before the main thread's set: immediate_exit stays 1 and KVM_RUN returns at
 * once; the loop then sees the request. A vCPU inside KVM_RUN is reached by the signal. A vCPU waiting
 * in HLT (IF=1) reads CONTROL.WAKE before it looks at the lines and sleeps on that value, so the bump
 * after the RMW wakes it (or its wait returns at once).
 */
import type { IrqLine } from '@kvmpool/devices';
import { outOfRange } from '../errors.js';

/**
 * The no-irqchip controller's fixed numbers: its guest port base, first vector, line count.
 * @enum
 */
export const SOFT_IRQ = { PORT: 0x510, PORTS: 4, VECTOR_BASE: 0x20, LINES: 24 } as const;

/** Word indices in the controller's Int32Array. */
export const SOFT_IRQ_WORD = { LEVEL: 0, LATCH: 1, MASK: 2, ISR: 3, DELIVERED: 4, WORDS: 5 } as const;

const ALL = (1 << SOFT_IRQ.LINES) - 1;

/** The controller's state as snapshots record it. */
export interface SoftIrqSnapshot {
  /** Lines high now. */
  level: number;
  /** Rising edges not delivered yet. */
  latch: number;
  /** Masked lines. */
  mask: number;
  /** The line in service, or -1. */
  inService: number;
}

/** A fresh controller state (every line low, none masked, none in service). */
export function createSoftIrqState(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(SOFT_IRQ_WORD.WORDS * 4));
}

function checkLine(line: number): number {
  if (!Number.isInteger(line) || line < 0 || line >= SOFT_IRQ.LINES) {
    throw outOfRange('irq', `${line} is not a line of the interrupt controller (0–${SOFT_IRQ.LINES - 1})`);
  }
  return 1 << line;
}

/**
 * The main thread's half: drives line `line`. Returns true when the vCPU must be woken (a rising
 * edge on an unmasked line); the caller then kicks vCPU 0.
 */
export function softIrqSet(state: Int32Array, line: number, level: boolean): boolean {
  const bit = checkLine(line);
  if (!level) {
    Atomics.and(state, SOFT_IRQ_WORD.LEVEL, ~bit);
    return false;
  }
  const before = Atomics.or(state, SOFT_IRQ_WORD.LEVEL, bit);
  if (before & bit) return false;
  Atomics.or(state, SOFT_IRQ_WORD.LATCH, bit);
  return (Atomics.load(state, SOFT_IRQ_WORD.MASK) & bit) === 0;
}

/** The line to deliver now (requested, unmasked, nothing in service), or -1. vCPU thread. */
export function softIrqNext(state: Int32Array): number {
  if (Atomics.load(state, SOFT_IRQ_WORD.ISR) !== 0) return -1;
  const req = (Atomics.load(state, SOFT_IRQ_WORD.LEVEL) | Atomics.load(state, SOFT_IRQ_WORD.LATCH)) & ~Atomics.load(state, SOFT_IRQ_WORD.MASK) & ALL;
  if (req === 0) return -1;
  return 31 - Math.clz32(req & -req);
}

/** Whether any unmasked line is requested, whatever is in service (a HLT wait ends on it). vCPU thread. */
export function softIrqRequested(state: Int32Array): boolean {
  return ((Atomics.load(state, SOFT_IRQ_WORD.LEVEL) | Atomics.load(state, SOFT_IRQ_WORD.LATCH)) & ~Atomics.load(state, SOFT_IRQ_WORD.MASK) & ALL) !== 0;
}

/** Line `line` was injected: it is in service, its edge is taken. Returns its vector. vCPU thread. */
export function softIrqAccept(state: Int32Array, line: number): number {
  const bit = checkLine(line);
  Atomics.and(state, SOFT_IRQ_WORD.LATCH, ~bit);
  Atomics.store(state, SOFT_IRQ_WORD.ISR, line + 1);
  Atomics.add(state, SOFT_IRQ_WORD.DELIVERED, 1);
  return SOFT_IRQ.VECTOR_BASE + line;
}

/**
 * A guest access to the controller's ports (`offset` 0–3 from SOFT_IRQ.PORT, one byte per port).
 * Returns the byte read for an IN. vCPU thread.
 */
export function softIrqPort(state: Int32Array, offset: number, write: boolean, value: number): number {
  if (offset === 0) {
    if (write) {
      Atomics.store(state, SOFT_IRQ_WORD.ISR, 0);
      return 0;
    }
    const isr = Atomics.load(state, SOFT_IRQ_WORD.ISR);
    return isr === 0 ? 0xff : isr - 1;
  }
  if (offset < 1 || offset >= SOFT_IRQ.PORTS) return 0xff;
  const shift = 8 * (offset - 1);
  if (!write) return (Atomics.load(state, SOFT_IRQ_WORD.MASK) >>> shift) & 0xff;
  const old = Atomics.load(state, SOFT_IRQ_WORD.MASK);
  Atomics.store(state, SOFT_IRQ_WORD.MASK, (old & ~(0xff << shift)) | ((value & 0xff) << shift));
  return 0;
}

/** The state as a snapshot records it. */
export function softIrqSnapshot(state: Int32Array): SoftIrqSnapshot {
  return {
    level: Atomics.load(state, SOFT_IRQ_WORD.LEVEL),
    latch: Atomics.load(state, SOFT_IRQ_WORD.LATCH),
    mask: Atomics.load(state, SOFT_IRQ_WORD.MASK),
    inService: Atomics.load(state, SOFT_IRQ_WORD.ISR) - 1,
  };
}

/** Puts a recorded state back (before the vCPUs run). */
export function softIrqRestore(state: Int32Array, s: SoftIrqSnapshot): void {
  const word = (v: unknown, what: string): number => {
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`interrupt controller state: ${what} is not an integer`);
    return v;
  };
  Atomics.store(state, SOFT_IRQ_WORD.LEVEL, word(s.level, 'level') & ALL);
  Atomics.store(state, SOFT_IRQ_WORD.LATCH, word(s.latch, 'latch') & ALL);
  Atomics.store(state, SOFT_IRQ_WORD.MASK, word(s.mask, 'mask') & ALL);
  const line = word(s.inService, 'inService');
  Atomics.store(state, SOFT_IRQ_WORD.ISR, line >= 0 && line < SOFT_IRQ.LINES ? line + 1 : 0);
}

/** An IrqLine into the controller; `wake` kicks vCPU 0 when a rising edge needs delivering. */
export function softIrqLine(state: Int32Array, line: number, wake: () => void): IrqLine {
  checkLine(line);
  return {
    set: (level: boolean) => {
      if (softIrqSet(state, line, level)) wake();
    },
  };
}
