import { describe, expect, it } from 'vitest';
import { setImmediate as tick } from 'node:timers/promises';
import { UART_IER, UART_IIR, UART_MCR, UART_REG, Uart16550, type IrqLine } from '@kvmpool/devices';

const R = UART_REG;
const rd = (u: Uart16550, offset: number): number => {
  const d = new Uint8Array(1);
  u.read(offset, d);
  return d[0]!;
};
const wr = (u: Uart16550, offset: number, v: number): void => u.write(offset, Uint8Array.of(v));

/** The IRQ line as an edge-triggered controller sees it: the level, and how many rising edges. */
function line(): IrqLine & { level: boolean; edges: number } {
  const l = {
    level: false,
    edges: 0,
    set(level: boolean) {
      if (level && !l.level) l.edges++;
      l.level = level;
    },
  };
  return l;
}

/** A guest's interrupt handler, as Linux's 8250 driver does it: serve until IIR says none. */
function serve(u: Uart16550, echo: (b: number) => void): string[] {
  const seen: string[] = [];
  for (let i = 0; i < 100; i++) {
    const iir = rd(u, R.IIR) & 0x0f;
    if (iir & UART_IIR.NO_INT) return seen;
    seen.push(iir.toString(16));
    if (iir === UART_IIR.RDI || iir === UART_IIR.TIMEOUT) echo(rd(u, R.RBR));
    else if (iir === UART_IIR.RLSI) rd(u, R.LSR);
    else if (iir === UART_IIR.MSI) rd(u, R.MSR);
  }
  throw new Error('the UART kept an interrupt pending');
}

describe('16550 interrupts (IRQ 4 logic)', () => {
  it('received data raises the line (ERBFI + OUT2); reading RBR lowers it; each new byte is a new edge', async () => {
    const irq = line();
    const u = new Uart16550({ irq });
    const s = u.stream();
    wr(u, R.IER, UART_IER.ERBFI);
    s.write('a');
    await tick();
    expect(irq.level).toBe(false); // OUT2 clear: the PC's interrupt gate is closed
    wr(u, R.MCR, UART_MCR.OUT2);
    expect(irq.level).toBe(true);
    expect(rd(u, R.IIR)).toBe(UART_IIR.RDI);
    expect(irq.level).toBe(true); // an IIR read does not clear received data
    expect(rd(u, R.RBR)).toBe(0x61);
    expect(irq.level).toBe(false);
    s.write('b');
    await tick();
    expect(irq).toMatchObject({ level: true, edges: 2 });
  });

  it('a burst is served by one handler run on an edge-triggered line, and the line ends low', async () => {
    const irq = line();
    const u = new Uart16550({ irq });
    const s = u.stream();
    wr(u, R.IER, UART_IER.ERBFI);
    wr(u, R.MCR, UART_MCR.OUT2);
    s.write('hello');
    await tick();
    expect(irq.edges).toBe(1);
    const got: number[] = [];
    serve(u, (b) => got.push(b));
    expect(Buffer.from(got).toString()).toBe('hello');
    expect(irq.level).toBe(false);
  });

  it('THR empty: raised on enabling ETBEI, cleared by the IIR read that reports it, raised again by a THR write', () => {
    const irq = line();
    const u = new Uart16550({ irq });
    wr(u, R.MCR, UART_MCR.OUT2);
    wr(u, R.IER, UART_IER.ETBEI);
    expect(irq.level).toBe(true);
    expect(rd(u, R.IIR)).toBe(UART_IIR.THRI);
    expect(irq.level).toBe(false);
    wr(u, R.THR, 0x41);
    expect(irq).toMatchObject({ level: true, edges: 2 });
    wr(u, R.IER, 0); // disabling ETBEI drops it
    expect(irq.level).toBe(false);
  });

  it('received data outranks THR empty: an IIR read reporting RX leaves THRI pending, served next', async () => {
    const irq = line();
    const u = new Uart16550({ irq });
    const s = u.stream();
    wr(u, R.MCR, UART_MCR.OUT2);
    wr(u, R.IER, UART_IER.ETBEI | UART_IER.ERBFI);
    s.write('x');
    await tick();
    expect(serve(u, () => {})).toEqual(['4', '2']);
    expect(irq.level).toBe(false);
  });

  it('line status (overrun in loopback) outranks data and is cleared by reading LSR', () => {
    const irq = line();
    const u = new Uart16550({ irq });
    wr(u, R.MCR, UART_MCR.OUT2 | UART_MCR.LOOP);
    wr(u, R.IER, UART_IER.ELSI | UART_IER.ERBFI);
    wr(u, R.THR, 1);
    wr(u, R.THR, 2); // 16450 mode: one-byte RBR, overrun
    expect(rd(u, R.IIR)).toBe(UART_IIR.RLSI);
    expect(irq.level).toBe(false); // loopback forces OUT2 inactive: nothing reaches the line
    rd(u, R.LSR);
    expect(rd(u, R.IIR)).toBe(UART_IIR.RDI); // what is left: the byte in RBR
  });

  it('snapshot state carries the line level: importState drives the line to it', () => {
    const a = new Uart16550({ irq: line() });
    wr(a, R.MCR, UART_MCR.OUT2);
    wr(a, R.IER, UART_IER.ETBEI);
    const st = a.exportState();
    expect(st.irqLevel).toBe(true);
    const irq = line();
    new Uart16550({ irq }).importState(st);
    expect(irq.level).toBe(true);
  });
});
