/**
 * The interrupt controller of a machine without the in-kernel irqchip: a small 8259-like model
 * whose state is a few words in a SharedArrayBuffer, delivered with KVM_INTERRUPT by vCPU 0's
 * thread (the 8259's INTR pin goes to the boot CPU only).
 *
 * Model. 16 input lines (an 8259 pair's) (IrqLine `n` = line n), fixed priority (line 0 highest), vector
 * `SOFT_IRQ.VECTOR_BASE + n`. Each line is edge-triggered (power-on, as ISA lines and the 8259
 * are) or level-triggered (the trigger-mode ports, like the PC's ELCR): an edge-triggered line is
 * requested by each rising edge until that is delivered (a pulse is never lost, a line held high
 * is delivered once); a level-triggered one while it is high. One interrupt is in service at a
 * time: no other is delivered until the guest writes the EOI port; a level line still high after
 * the EOI is delivered again. Lines are masked by the mask ports. Guest ports (answered in the vCPU thread, never posted to the
 * dispatcher): `PORT + 0` OUT = EOI (any value), IN = the line in service (0xff: none);
 * `PORT + 1`, `PORT + 2` the mask bytes for lines 0–7 and 8–15 (1 = masked; power-on: none);
 * `PORT + 3`, `PORT + 4` the trigger-mode bytes for lines 0–7 and 8–15 (1 = level; power-on: edge).
 *
 * Who writes what: the main thread (devices' IrqLines) changes the LINES word with atomic RMWs;
 * vCPU 0's thread alone writes MASK and ISR and clears edge bits of LINES at injection.
 *
 * Memory ordering (x86-64; Atomics RMWs are lock-prefixed, Atomics.store is xchg, both full fences):
 *   main:  RMW LINES  →  store kvm_run.immediate_exit = 1  →  bump+notify CONTROL.WAKE  →  tgkill
 *   vCPU:  store immediate_exit = 0 → RMW KICK_REQ (the run loop's safe point) → load LINES → KVM_RUN
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
export const SOFT_IRQ = { PORT: 0x510, PORTS: 5, VECTOR_BASE: 0x20, LINES: 16 } as const;

/**
 * Word indices in the controller's Int32Array. LINES holds the levels (bits 0–15) and the undelivered rising
 * edges (bits 16–31) in one word, so that a rising edge sets both in one atomic step (a vCPU never sees a
 * line high whose edge is not recorded yet).
 */
export const SOFT_IRQ_WORD = { LINES: 0, MASK: 1, ISR: 2, DELIVERED: 3, LEVEL_MODE: 4, WORDS: 5 } as const;

const ALL = (1 << SOFT_IRQ.LINES) - 1;

/** Lines requested now, unmasked: with an undelivered rising edge, or high in level mode. */
function requested(state: Int32Array): number {
  const w = Atomics.load(state, SOFT_IRQ_WORD.LINES);
  return ((w >>> 16) | (w & Atomics.load(state, SOFT_IRQ_WORD.LEVEL_MODE))) & ~Atomics.load(state, SOFT_IRQ_WORD.MASK) & ALL;
}

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
  /** Level-triggered lines (the others are edge-triggered). */
  levelMode?: number;
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
 * The main thread's half: drives line `line`. Returns true when the vCPU must be woken: a rising edge on
 * an unmasked line while nothing is in service (the caller then kicks vCPU 0). While one is in service the
 * guest's EOI (an exit this vCPU's loop serves) makes the loop look again: RMW LINES → load ISR here,
 * store ISR → load LINES there (all seq-cst), so one side sees the other's write. Not kicking then also
 * spares a signal to a vCPU that is running its handler.
 */
export function softIrqSet(state: Int32Array, line: number, level: boolean): boolean {
  const bit = checkLine(line);
  if (!level) {
    Atomics.and(state, SOFT_IRQ_WORD.LINES, ~bit);
    return false;
  }
  for (;;) {
    const old = Atomics.load(state, SOFT_IRQ_WORD.LINES);
    if (old & bit) return false; // already high: no edge
    if (Atomics.compareExchange(state, SOFT_IRQ_WORD.LINES, old, old | bit | (bit << 16)) === old) break;
  }
  return (Atomics.load(state, SOFT_IRQ_WORD.MASK) & bit) === 0 && Atomics.load(state, SOFT_IRQ_WORD.ISR) === 0;
}

/** The line to deliver now (requested, unmasked, nothing in service), or -1. vCPU thread. */
export function softIrqNext(state: Int32Array): number {
  if (Atomics.load(state, SOFT_IRQ_WORD.ISR) !== 0) return -1;
  const req = requested(state);
  if (req === 0) return -1;
  return 31 - Math.clz32(req & -req);
}

/** Whether any unmasked line is requested, whatever is in service. vCPU thread. */
export function softIrqRequested(state: Int32Array): boolean {
  return requested(state) !== 0;
}

/** Line `line` was injected: it is in service, its edge is taken. Returns its vector. vCPU thread. */
export function softIrqAccept(state: Int32Array, line: number): number {
  const bit = checkLine(line);
  Atomics.and(state, SOFT_IRQ_WORD.LINES, ~(bit << 16));
  Atomics.store(state, SOFT_IRQ_WORD.ISR, line + 1);
  Atomics.add(state, SOFT_IRQ_WORD.DELIVERED, 1);
  return SOFT_IRQ.VECTOR_BASE + line;
}

/**
 * A guest access to the controller's ports (`offset` 0–2 from SOFT_IRQ.PORT, one byte per port).
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
  const index = offset < 3 ? SOFT_IRQ_WORD.MASK : SOFT_IRQ_WORD.LEVEL_MODE;
  const shift = 8 * ((offset - 1) % 2);
  if (!write) return (Atomics.load(state, index) >>> shift) & 0xff;
  const old = Atomics.load(state, index);
  Atomics.store(state, index, (old & ~(0xff << shift)) | ((value & 0xff) << shift));
  return 0;
}

/** The state as a snapshot records it. */
export function softIrqSnapshot(state: Int32Array): SoftIrqSnapshot {
  const w = Atomics.load(state, SOFT_IRQ_WORD.LINES);
  return {
    level: w & ALL,
    latch: (w >>> 16) & ALL,
    mask: Atomics.load(state, SOFT_IRQ_WORD.MASK),
    inService: Atomics.load(state, SOFT_IRQ_WORD.ISR) - 1,
    levelMode: Atomics.load(state, SOFT_IRQ_WORD.LEVEL_MODE),
  };
}

/** Puts a recorded state back (before the vCPUs run). */
export function softIrqRestore(state: Int32Array, s: SoftIrqSnapshot): void {
  const word = (v: unknown, what: string): number => {
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`interrupt controller state: ${what} is not an integer`);
    return v;
  };
  Atomics.store(state, SOFT_IRQ_WORD.LINES, (word(s.level, 'level') & ALL) | ((word(s.latch, 'latch') & ALL) << 16));
  Atomics.store(state, SOFT_IRQ_WORD.MASK, word(s.mask, 'mask') & ALL);
  Atomics.store(state, SOFT_IRQ_WORD.LEVEL_MODE, word(s.levelMode ?? 0, 'levelMode') & ALL);
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
