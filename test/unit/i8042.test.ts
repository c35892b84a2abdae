import { describe, expect, it } from 'vitest';
import { Bus, I8042, I8042_CMD, I8042_STATUS, type IrqLine } from '@kvmpool/devices';

const DATA = 0;
const CMD = 4;

function rd(dev: I8042, offset: number): number {
  const d = new Uint8Array(1);
  dev.read(offset, d);
  return d[0]!;
}

function wr(dev: I8042, offset: number, value: number): void {
  dev.write(offset, Uint8Array.of(value));
}

function make(): { dev: I8042; resets: () => number } {
  let n = 0;
  const dev = new I8042({ onReset: () => void n++ });
  return { dev, resets: () => n };
}

describe('I8042', () => {
  it('reads a sane status at power-on: system flag, command last, not inhibited', () => {
    const { dev } = make();
    expect(rd(dev, CMD)).toBe(0x1c);
    wr(dev, DATA, 0x00); // a byte for the (absent) keyboard
    expect(rd(dev, CMD) & I8042_STATUS.A2).toBe(0);
    expect(rd(dev, CMD) & (I8042_STATUS.OBF | I8042_STATUS.IBF)).toBe(0);
  });

  it('pulses the CPU reset on command 0xFE (and other even pulse commands), not on 0xFF', () => {
    const { dev, resets } = make();
    wr(dev, CMD, I8042_CMD.PULSE_RESET);
    expect(resets()).toBe(1);
    wr(dev, CMD, 0xff);
    expect(resets()).toBe(1);
    wr(dev, CMD, 0xf0);
    expect(resets()).toBe(2);
  });

  it('resets when the output port is written with bit 0 clear (0xD1)', () => {
    const { dev, resets } = make();
    wr(dev, CMD, I8042_CMD.WRITE_OUTPUT);
    wr(dev, DATA, 0x03);
    expect(resets()).toBe(0);
    wr(dev, CMD, I8042_CMD.READ_OUTPUT);
    expect(rd(dev, DATA) & 0x03).toBe(0x03);
    wr(dev, CMD, I8042_CMD.WRITE_OUTPUT);
    wr(dev, DATA, 0x02);
    expect(resets()).toBe(1);
  });

  it('reads and writes the controller command byte (0x20 / 0x60)', () => {
    const { dev } = make();
    wr(dev, CMD, I8042_CMD.READ_CTR);
    expect(rd(dev, CMD) & I8042_STATUS.OBF).toBe(I8042_STATUS.OBF);
    expect(rd(dev, DATA)).toBe(0x45);
    expect(rd(dev, CMD) & I8042_STATUS.OBF).toBe(0);
    wr(dev, CMD, I8042_CMD.WRITE_CTR);
    wr(dev, DATA, 0x30); // both ports disabled, no interrupts, no system flag
    expect(rd(dev, CMD) & I8042_STATUS.SYS).toBe(0);
    wr(dev, CMD, I8042_CMD.READ_CTR);
    expect(rd(dev, DATA)).toBe(0x30);
    wr(dev, CMD, I8042_CMD.KBD_ENABLE);
    wr(dev, CMD, I8042_CMD.AUX_ENABLE);
    wr(dev, CMD, I8042_CMD.READ_CTR);
    expect(rd(dev, DATA)).toBe(0x00);
  });

  it('answers the self-test with 0x55 and port tests with 0x00', () => {
    const { dev } = make();
    wr(dev, CMD, I8042_CMD.WRITE_CTR);
    wr(dev, DATA, 0x00);
    wr(dev, CMD, I8042_CMD.SELF_TEST);
    expect(rd(dev, DATA)).toBe(0x55);
    expect(rd(dev, CMD) & I8042_STATUS.SYS).toBe(I8042_STATUS.SYS);
    wr(dev, CMD, I8042_CMD.KBD_TEST);
    expect(rd(dev, DATA)).toBe(0x00);
    wr(dev, CMD, I8042_CMD.AUX_TEST);
    expect(rd(dev, DATA)).toBe(0x00);
  });

  it('raises IRQ 1 / IRQ 12 for output buffer data when the command byte enables them', () => {
    const kbd: boolean[] = [];
    const aux: boolean[] = [];
    const line = (into: boolean[]): IrqLine => ({ set: (l) => void into.push(l) });
    const dev = new I8042({ onReset: () => {}, irq: line(kbd), auxIrq: line(aux) });
    wr(dev, CMD, I8042_CMD.SELF_TEST); // CTR has KBD_INT at power-on
    expect(kbd).toEqual([true]);
    rd(dev, DATA);
    expect(kbd).toEqual([true, false]);
    wr(dev, CMD, I8042_CMD.WRITE_CTR);
    wr(dev, DATA, 0x47);
    wr(dev, CMD, I8042_CMD.WRITE_AUX_OBUF);
    wr(dev, DATA, 0xfa);
    expect(rd(dev, CMD) & I8042_STATUS.AUX_OBF).toBe(I8042_STATUS.AUX_OBF);
    expect(aux).toEqual([true]);
    expect(rd(dev, DATA)).toBe(0xfa);
    expect(aux).toEqual([true, false]);
    expect(kbd).toEqual([true, false]);
  });

  it('maps 0x60 and 0x64 on a bus over [0x60, 0x65), leaving 0x61..0x63 as all-ones', () => {
    const { dev, resets } = make();
    const bus = new Bus('pio');
    bus.register(0x60, 5, dev);
    const d = new Uint8Array(1);
    bus.read(0x64n, d);
    expect(d[0]).toBe(0x1c);
    bus.read(0x61n, d);
    expect(d[0]).toBe(0xff);
    bus.write(0x64n, Uint8Array.of(0xfe));
    expect(resets()).toBe(1);
  });

  it('resets to power-on state and exports it', () => {
    const { dev } = make();
    wr(dev, CMD, I8042_CMD.WRITE_CTR);
    wr(dev, DATA, 0x00);
    wr(dev, CMD, I8042_CMD.WRITE_KBD_OBUF);
    wr(dev, DATA, 0x12);
    expect(dev.exportState()).toMatchObject({ ctr: 0, outputBuffer: 0x12, outputFull: true, pendingCommand: null });
    dev.reset();
    expect(dev.exportState()).toMatchObject({ ctr: 0x45, outputFull: false, status: 0x1c });
  });
});
