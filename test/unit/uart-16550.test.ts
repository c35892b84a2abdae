import { describe, expect, it } from 'vitest';
import { setImmediate as tick } from 'node:timers/promises';
import { UART_IER, UART_LSR, UART_MCR, UART_REG, Uart16550, type IrqLine } from '@kvmpool/devices';

const R = UART_REG;

function rd(u: Uart16550, offset: number): number {
  const d = new Uint8Array(1);
  u.read(offset, d);
  return d[0]!;
}

function wr(u: Uart16550, offset: number, ...values: number[]): void {
  for (const v of values) u.write(offset, Uint8Array.of(v));
}

function recorder(): IrqLine & { levels: boolean[] } {
  const levels: boolean[] = [];
  return { levels, set: (level: boolean) => void levels.push(level) };
}

/** Reads RBR while LSR.DR is set. */
function drain(u: Uart16550): number[] {
  const out: number[] = [];
  while (rd(u, R.LSR) & UART_LSR.DR) out.push(rd(u, R.RBR));
  return out;
}

describe('Uart16550 registers', () => {
  it('has the power-on values of a 16550A', () => {
    const u = new Uart16550();
    expect(u.name).toBe('uart');
    expect(rd(u, R.IER)).toBe(0);
    expect(rd(u, R.IIR)).toBe(0x01);
    expect(rd(u, R.LCR)).toBe(0);
    expect(rd(u, R.MCR)).toBe(0);
    expect(rd(u, R.LSR)).toBe(UART_LSR.THRE | UART_LSR.TEMT);
    expect(rd(u, R.MSR)).toBe(0xb0); // DCD, DSR, CTS asserted, no deltas
    wr(u, R.LCR, 0x80);
    expect([rd(u, R.DLL), rd(u, R.DLM)]).toEqual([12, 0]);
  });

  it('switches offsets 0 and 1 to the divisor latch under LCR.DLAB', async () => {
    const u = new Uart16550();
    const s = u.stream();
    wr(u, R.IER, 0x05);
    wr(u, R.LCR, 0x83);
    wr(u, R.DLL, 0x01);
    wr(u, R.DLM, 0x02);
    expect([rd(u, R.DLL), rd(u, R.DLM), rd(u, R.LCR)]).toEqual([0x01, 0x02, 0x83]);
    wr(u, R.LCR, 0x03);
    expect(rd(u, R.IER)).toBe(0x05);
    expect(rd(u, R.RBR)).toBe(0); // not the divisor
    wr(u, R.LCR, 0x80);
    expect([rd(u, R.DLL), rd(u, R.DLM)]).toEqual([0x01, 0x02]);
    await tick();
    expect(s.read()).toBeNull(); // DLL writes are not transmitted
  });

  it('keeps SCR and masks IER and MCR to their implemented bits', () => {
    const u = new Uart16550();
    wr(u, R.SCR, 0xa5);
    expect(rd(u, R.SCR)).toBe(0xa5);
    wr(u, R.IER, 0xff);
    expect(rd(u, R.IER)).toBe(0x0f);
    wr(u, R.MCR, 0xff);
    expect(rd(u, R.MCR)).toBe(0x1f);
  });

  it('raises the THR empty interrupt on enabling ETBEI, clears it on an IIR read, re-arms it on a THR write', () => {
    const u = new Uart16550();
    wr(u, R.IER, UART_IER.ETBEI);
    expect(rd(u, R.IIR)).toBe(0x02);
    expect(rd(u, R.IIR)).toBe(0x01); // the read cleared it
    wr(u, R.THR, 0x41);
    expect(rd(u, R.IIR)).toBe(0x02);
    wr(u, R.IER, 0);
    wr(u, R.THR, 0x41);
    expect(rd(u, R.IIR)).toBe(0x01); // masked while ETBEI is off
  });

  it('drives the IRQ line only on level changes, gated by MCR.OUT2', () => {
    const irq = recorder();
    const u = new Uart16550({ irq, name: 'ttyS0' });
    expect(u.name).toBe('ttyS0');
    wr(u, R.IER, UART_IER.ETBEI);
    expect(irq.levels).toEqual([]); // OUT2 clear: nothing reaches the line
    wr(u, R.MCR, UART_MCR.OUT2);
    expect(irq.levels).toEqual([true]);
    rd(u, R.IIR);
    expect(irq.levels).toEqual([true, false]);
    wr(u, R.THR, 0x41);
    wr(u, R.THR, 0x42);
    expect(irq.levels).toEqual([true, false, true]);
    wr(u, R.MCR, UART_MCR.OUT2 | UART_MCR.LOOP); // loopback forces OUT2 inactive
    expect(irq.levels).toEqual([true, false, true, false]);
    wr(u, R.MCR, UART_MCR.OUT2);
    wr(u, R.IER, 0);
    expect(irq.levels).toEqual([true, false, true, false, true, false]);
  });

  it('orders IIR by priority: line status > RX data > THR empty > modem status', () => {
    const u = new Uart16550();
    wr(u, R.FCR, 0x01);
    wr(u, R.MCR, UART_MCR.LOOP); // modem lines drop: DCTS, DDSR, DDCD
    wr(u, R.IER, 0x0f);
    expect(rd(u, R.IIR)).toBe(0xc2);
    for (let i = 0; i < 17; i++) wr(u, R.THR, 0x30 + i); // one more than the FIFO holds
    expect(rd(u, R.IIR)).toBe(0xc6);
    expect(rd(u, R.LSR)).toBe(UART_LSR.DR | UART_LSR.OE | UART_LSR.THRE | UART_LSR.TEMT);
    expect(rd(u, R.LSR) & UART_LSR.OE).toBe(0); // cleared by the read
    expect(rd(u, R.IIR)).toBe(0xc4);
    const got = drain(u);
    expect(got).toEqual(Array.from({ length: 16 }, (_, i) => 0x30 + i)); // the 17th was lost
    expect(rd(u, R.IIR)).toBe(0xc2);
    expect(rd(u, R.IIR)).toBe(0xc0); // THRI cleared by the previous read; modem status left
    expect(rd(u, R.MSR)).toBe(0x0b);
    expect(rd(u, R.IIR)).toBe(0xc1);
  });

  it('enables, clears and disables the FIFOs through FCR', () => {
    const u = new Uart16550();
    wr(u, R.FCR, 0x07);
    expect(rd(u, R.IIR) & 0xc0).toBe(0xc0);
    wr(u, R.MCR, UART_MCR.LOOP);
    wr(u, R.THR, 1, 2, 3);
    expect(u.exportState().rxFifo).toEqual([1, 2, 3]);
    wr(u, R.FCR, 0x03); // clear RX, FIFO stays on
    expect(rd(u, R.LSR) & UART_LSR.DR).toBe(0);
    wr(u, R.THR, 4);
    wr(u, R.FCR, 0x00); // back to 16450 mode: FIFOs emptied, IIR bits 7:6 clear
    expect(rd(u, R.LSR) & UART_LSR.DR).toBe(0);
    expect(rd(u, R.IIR) & 0xc0).toBe(0);
    wr(u, R.FCR, 0x02); // FCR.0 = 0: the clear bit is not programmed, nothing happens
    // 16450 mode: one holding register, and an overrun overwrites it.
    wr(u, R.THR, 5, 6);
    expect(rd(u, R.LSR)).toBe(UART_LSR.DR | UART_LSR.OE | UART_LSR.THRE | UART_LSR.TEMT);
    expect(drain(u)).toEqual([6]);
  });

  it('reports received data by trigger level, and the character timeout below it', () => {
    const u = new Uart16550();
    wr(u, R.FCR, 0x81); // FIFO, trigger level 8
    wr(u, R.MCR, UART_MCR.LOOP);
    wr(u, R.IER, UART_IER.ERBFI);
    wr(u, R.THR, 1, 2, 3);
    expect(rd(u, R.IIR)).toBe(0xcc);
    wr(u, R.THR, 4, 5, 6, 7, 8);
    expect(rd(u, R.IIR)).toBe(0xc4);
    drain(u);
    expect(rd(u, R.IIR)).toBe(0xc1);
  });

  it('loops MCR outputs to MSR inputs in loopback, with delta bits', () => {
    const u = new Uart16550();
    wr(u, R.MCR, UART_MCR.LOOP | UART_MCR.RTS | UART_MCR.OUT2);
    expect(rd(u, R.MSR) & 0xf0).toBe(0x90); // CTS + DCD: what Linux's 8250 probe checks
    wr(u, R.MCR, UART_MCR.LOOP | UART_MCR.DTR | UART_MCR.OUT1);
    expect(rd(u, R.MSR)).toBe(0x60 | 0x01 | 0x02 | 0x08); // DSR, RI; DCTS, DDSR, DDCD
    wr(u, R.MCR, UART_MCR.LOOP | UART_MCR.DTR);
    expect(rd(u, R.MSR)).toBe(0x20 | 0x04); // TERI on the trailing edge of RI
    wr(u, R.MCR, 0);
    expect(rd(u, R.MSR)).toBe(0xb0 | 0x01 | 0x08); // back to the line: CTS, DCD changed
  });

  it('raises the modem status interrupt when EDSSI is set', () => {
    const u = new Uart16550();
    wr(u, R.IER, UART_IER.EDSSI);
    expect(rd(u, R.IIR)).toBe(0x01);
    wr(u, R.MCR, UART_MCR.LOOP);
    expect(rd(u, R.IIR)).toBe(0x00);
    rd(u, R.MSR);
    expect(rd(u, R.IIR)).toBe(0x01);
  });

  it('keeps fastState LSR current (DR follows the FIFO)', async () => {
    const u = new Uart16550();
    expect(u.fastRegisters).toEqual([{ offset: 5, size: 1, index: 0 }]);
    expect(u.fastState.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(u.coalescable).toEqual([{ offset: 0, length: 1 }]);
    const lsr = (): number => Atomics.load(u.fastState, 0);
    expect(lsr()).toBe(0x60);
    u.stream().write(Uint8Array.of(0x7a, 0x7b));
    await tick();
    expect(lsr()).toBe(0x61);
    expect(rd(u, R.RBR)).toBe(0x7a); // 16450 mode: the second byte waits behind RBR
    expect(lsr()).toBe(0x61);
    expect(rd(u, R.RBR)).toBe(0x7b);
    expect(lsr()).toBe(0x60);
    wr(u, R.FCR, 0x01);
    wr(u, R.MCR, UART_MCR.LOOP);
    for (let i = 0; i < 17; i++) wr(u, R.THR, i);
    expect(lsr()).toBe(0x63); // DR + OE
    rd(u, R.RBR); // the fast path cannot clear OE on an LSR read; RBR does
    expect(lsr()).toBe(0x61);
  });

  it('serves multi-byte accesses as consecutive byte registers', () => {
    const u = new Uart16550();
    const d = new Uint8Array(2);
    u.read(R.LSR, d);
    expect([...d]).toEqual([0x60, 0xb0]);
    const e = new Uint8Array(2);
    u.read(R.SCR, e);
    expect(e[1]).toBe(0xff); // past the device
  });

  it('resets to power-on state and exports registers and FIFO contents', () => {
    const u = new Uart16550();
    wr(u, R.FCR, 0xc1);
    wr(u, R.MCR, UART_MCR.LOOP | UART_MCR.OUT2);
    wr(u, R.IER, 0x03);
    wr(u, R.SCR, 0x11);
    wr(u, R.THR, 0x61, 0x62);
    const st = u.exportState();
    expect(st).toMatchObject({ ier: 0x03, fcr: 0xc1, mcr: 0x18, scr: 0x11, lsr: 0x61, rxFifo: [0x61, 0x62], dll: 12, dlm: 0 });
    expect(st.iir).toBe(0xcc); // 2 bytes under a trigger level of 14: timeout
    expect(JSON.parse(JSON.stringify(st))).toEqual(st);
    u.reset();
    expect(u.exportState()).toMatchObject({ ier: 0, fcr: 0, mcr: 0, lcr: 0, lsr: 0x60, iir: 0x01, msr: 0xb0, rxFifo: [], irqLevel: false });
  });
});

describe('Uart16550 stream', () => {
  it('carries guest THR writes to the readable side', async () => {
    const u = new Uart16550();
    wr(u, R.THR, 0x21); // before stream(): the cable is unplugged
    const s = u.stream();
    expect(u.stream()).toBe(s);
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    for (const c of Buffer.from('hello, world\n')) wr(u, R.THR, c);
    await tick();
    expect(Buffer.concat(chunks).toString()).toBe('hello, world\n');
    expect(chunks).toHaveLength(1); // one synchronous burst, one chunk
    wr(u, R.MCR, UART_MCR.LOOP);
    wr(u, R.THR, 0x21); // loopback: not on the line
    await tick();
    expect(Buffer.concat(chunks).toString()).toBe('hello, world\n');
  });

  it('feeds host input into RBR and raises the RX interrupt', async () => {
    const irq = recorder();
    const u = new Uart16550({ irq });
    wr(u, R.FCR, 0x01);
    wr(u, R.MCR, UART_MCR.OUT2);
    wr(u, R.IER, UART_IER.ERBFI);
    u.stream().write('ok');
    await tick();
    expect(irq.levels).toEqual([true]);
    expect(rd(u, R.IIR)).toBe(0xc4);
    expect(drain(u)).toEqual([0x6f, 0x6b]);
    expect(irq.levels).toEqual([true, false]);
  });

  it('delivers more than 16 bytes of host input in order as the guest reads, holding the write callback', async () => {
    const u = new Uart16550();
    wr(u, R.FCR, 0x01);
    const s = u.stream();
    const input = Buffer.from(Array.from({ length: 100 }, (_, i) => i));
    let written = false;
    s.write(input, () => {
      written = true;
    });
    expect(u.exportState().rxFifo).toHaveLength(16);
    expect(u.exportState().hostBacklog).toBe(84);
    const got: number[] = [];
    for (let i = 0; i < 16; i++) got.push(rd(u, R.RBR));
    await tick();
    expect(written).toBe(false); // back-pressure: the guest has not taken it all
    s.write(Buffer.from([200, 201])); // queued behind, by the Writable
    got.push(...drain(u));
    await tick();
    expect(written).toBe(true);
    got.push(...drain(u));
    expect(got).toEqual([...input, 200, 201]);
  });

  it('holds host input during loopback and delivers it afterwards', async () => {
    const u = new Uart16550();
    wr(u, R.FCR, 0x01);
    wr(u, R.MCR, UART_MCR.LOOP);
    u.stream().write('abc');
    await tick();
    expect(rd(u, R.LSR) & UART_LSR.DR).toBe(0);
    wr(u, R.MCR, 0);
    expect(Buffer.from(drain(u)).toString()).toBe('abc');
  });

  it('keeps queued host input across reset, and unplugs on destroy', async () => {
    const u = new Uart16550();
    const s = u.stream();
    s.write('xyz');
    await tick();
    u.reset(); // RBR emptied; the host bytes behind it are not lost
    expect(Buffer.from(drain(u)).toString()).toBe('yz');
    s.destroy();
    await tick();
    const t = u.stream();
    expect(t).not.toBe(s);
  });
});

describe('Uart16550 bounded transmit buffer', () => {
  const fast = (u: Uart16550): number => Atomics.load(u.fastState, 0);
  const THRE_TEMT = UART_LSR.THRE | UART_LSR.TEMT;

  it('holds at most txLimit bytes for a reader that never reads, and counts the bytes it drops', async () => {
    const u = new Uart16550({ txLimit: 1000, txHighWater: 500 });
    const s = u.stream();
    for (let burst = 0; burst < 50; burst++) {
      for (let i = 0; i < 100; i++) wr(u, R.THR, (burst * 100 + i) & 0xff);
      await tick();
    }
    expect(s.readableLength).toBe(1000);
    expect(u.stats()).toEqual({ txBytes: 1000, txDropped: 4000, txBuffered: 1000, txLimit: 1000, txHighWater: 500 });
    expect(s.stats()).toEqual(u.stats());
    const got = s.read() as Buffer;
    expect([...got]).toEqual(Array.from({ length: 1000 }, (_, i) => i & 0xff)); // the first 1000, in order
  });

  it('bounds an unread stream at 1 MiB by default', async () => {
    const u = new Uart16550();
    const s = u.stream();
    const total = 1_100_000;
    for (let i = 0; i < total; i++) {
      wr(u, R.THR, 0x2e);
      if (i % 65536 === 0) await tick();
    }
    await tick();
    expect(s.readableLength).toBe(1 << 20);
    expect(u.stats().txDropped).toBe(total - (1 << 20));
  });

  it('clears THRE and TEMT at the high-water mark, in LSR and the fast-path state, until the reader takes bytes', async () => {
    const irq = recorder();
    const u = new Uart16550({ irq, txLimit: 400, txHighWater: 100 });
    const s = u.stream();
    wr(u, R.MCR, UART_MCR.OUT2);
    wr(u, R.IER, UART_IER.ETBEI);
    expect(rd(u, R.IIR)).toBe(0x02);
    for (let i = 0; i < 99; i++) wr(u, R.THR, i);
    expect(rd(u, R.LSR) & THRE_TEMT).toBe(THRE_TEMT);
    wr(u, R.THR, 99); // the 100th byte reaches the mark
    expect(rd(u, R.LSR) & THRE_TEMT).toBe(0);
    expect(fast(u) & THRE_TEMT).toBe(0);
    expect(rd(u, R.IIR)).toBe(0x01); // THR not empty: no THRE interrupt
    expect(irq.levels.at(-1)).toBe(false);
    await tick();
    expect(rd(u, R.LSR) & THRE_TEMT).toBe(0); // still full once pushed into the stream
    expect(fast(u) & THRE_TEMT).toBe(0);
    expect((s.read(60) as Buffer).length).toBe(60);
    await tick();
    expect(rd(u, R.LSR) & THRE_TEMT).toBe(THRE_TEMT);
    expect(fast(u)).toBe(rd(u, R.LSR));
    expect(irq.levels.at(-1)).toBe(true); // THR empty again: the interrupt is raised
    expect(rd(u, R.IIR)).toBe(0x02);
    expect(u.stats().txDropped).toBe(0);
  });

  it('slows a guest that polls LSR to the reader, losing nothing', async () => {
    const u = new Uart16550({ txLimit: 64, txHighWater: 32 });
    const s = u.stream();
    const got: number[] = [];
    const n = 5000;
    let sent = 0;
    let waits = 0;
    while (sent < n) {
      if (rd(u, R.LSR) & UART_LSR.THRE) {
        wr(u, R.THR, sent++ & 0xff);
        continue;
      }
      waits++;
      await tick(); // the guest spins on LSR; the host reader takes a few bytes meanwhile
      const chunk = s.read(7) as Buffer | null;
      if (chunk) got.push(...chunk);
      await tick();
    }
    await tick();
    for (let c = s.read() as Buffer | null; c; c = s.read() as Buffer | null) got.push(...c);
    expect(got).toEqual(Array.from({ length: n }, (_, i) => i & 0xff));
    expect(waits).toBeGreaterThan(n / 32); // the guest saw THRE clear, again and again
    expect(u.stats()).toMatchObject({ txBytes: n, txDropped: 0 });
  });

  it('gives THRE back when the stream is destroyed', async () => {
    const u = new Uart16550({ txLimit: 20, txHighWater: 10 });
    const s = u.stream();
    for (let i = 0; i < 10; i++) wr(u, R.THR, i);
    await tick();
    expect(rd(u, R.LSR) & THRE_TEMT).toBe(0);
    s.destroy();
    await tick();
    expect(rd(u, R.LSR) & THRE_TEMT).toBe(THRE_TEMT);
    expect(fast(u) & THRE_TEMT).toBe(THRE_TEMT);
  });

  it('refuses bounds that are not positive integers, or a high-water mark above the limit', () => {
    expect(() => new Uart16550({ txLimit: 0 })).toThrow(/txLimit must be a positive integer/);
    expect(() => new Uart16550({ txLimit: 1.5 })).toThrow(RangeError);
    expect(() => new Uart16550({ txLimit: 10, txHighWater: 11 })).toThrow(/txHighWater must be an integer from 1 to txLimit \(10\)/);
    expect(new Uart16550({ txLimit: 10 }).stats().txHighWater).toBe(10);
  });
});
