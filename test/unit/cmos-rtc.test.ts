import { describe, expect, it } from 'vitest';
import { Bus, CMOS_REG, CmosRtc, RTC_STATUS_B } from '@kvmpool/devices';

function reg(rtc: CmosRtc, index: number): number {
  rtc.write(0, Uint8Array.of(index));
  const d = new Uint8Array(1);
  rtc.read(1, d);
  return d[0]!;
}

function setReg(rtc: CmosRtc, index: number, value: number): void {
  rtc.write(0, Uint8Array.of(index));
  rtc.write(1, Uint8Array.of(value));
}

// Wednesday 2024-07-03 21:45:09 UTC
const when = new Date(Date.UTC(2024, 6, 3, 21, 45, 9));
const fixed = (): Date => when;

describe('CmosRtc', () => {
  it('shows the host clock in BCD, 24-hour mode, at power-on', () => {
    const rtc = new CmosRtc({ now: fixed });
    expect(reg(rtc, CMOS_REG.SECONDS)).toBe(0x09);
    expect(reg(rtc, CMOS_REG.MINUTES)).toBe(0x45);
    expect(reg(rtc, CMOS_REG.HOURS)).toBe(0x21);
    expect(reg(rtc, CMOS_REG.DAY_OF_WEEK)).toBe(0x04); // Sunday = 1
    expect(reg(rtc, CMOS_REG.DAY_OF_MONTH)).toBe(0x03);
    expect(reg(rtc, CMOS_REG.MONTH)).toBe(0x07);
    expect(reg(rtc, CMOS_REG.YEAR)).toBe(0x24);
    expect(reg(rtc, CMOS_REG.CENTURY)).toBe(0x20);
  });

  it('switches to binary and 12-hour mode through status B', () => {
    const rtc = new CmosRtc({ now: fixed });
    setReg(rtc, CMOS_REG.STATUS_B, RTC_STATUS_B.DM_BINARY | RTC_STATUS_B.HOUR_24);
    expect(reg(rtc, CMOS_REG.STATUS_B)).toBe(0x06);
    expect(reg(rtc, CMOS_REG.SECONDS)).toBe(9);
    expect(reg(rtc, CMOS_REG.MINUTES)).toBe(45);
    expect(reg(rtc, CMOS_REG.HOURS)).toBe(21);
    expect(reg(rtc, CMOS_REG.YEAR)).toBe(24);
    expect(reg(rtc, CMOS_REG.CENTURY)).toBe(20);
    setReg(rtc, CMOS_REG.STATUS_B, RTC_STATUS_B.DM_BINARY);
    expect(reg(rtc, CMOS_REG.HOURS)).toBe(0x80 | 9); // 9 PM
    setReg(rtc, CMOS_REG.STATUS_B, 0);
    expect(reg(rtc, CMOS_REG.HOURS)).toBe(0x80 | 0x09);
  });

  it('encodes midnight and noon in 12-hour mode', () => {
    let t = new Date(Date.UTC(2000, 0, 1, 0, 0, 0));
    const rtc = new CmosRtc({ now: () => t });
    setReg(rtc, CMOS_REG.STATUS_B, 0);
    expect(reg(rtc, CMOS_REG.HOURS)).toBe(0x12); // 12 AM
    t = new Date(Date.UTC(2000, 0, 1, 12, 0, 0));
    expect(reg(rtc, CMOS_REG.HOURS)).toBe(0x80 | 0x12); // 12 PM
    expect(reg(rtc, CMOS_REG.DAY_OF_WEEK)).toBe(7); // a Saturday
    expect(reg(rtc, CMOS_REG.CENTURY)).toBe(0x20);
  });

  it('reads the status registers: A without UIP, B masked, C zero, D with VRT', () => {
    const rtc = new CmosRtc({ now: fixed });
    expect(reg(rtc, CMOS_REG.STATUS_A)).toBe(0x26);
    setReg(rtc, CMOS_REG.STATUS_A, 0xa6);
    expect(reg(rtc, CMOS_REG.STATUS_A)).toBe(0x26);
    expect(reg(rtc, CMOS_REG.STATUS_B)).toBe(0x02);
    setReg(rtc, CMOS_REG.STATUS_B, 0xff);
    expect(reg(rtc, CMOS_REG.STATUS_B)).toBe(0x06);
    expect(reg(rtc, CMOS_REG.STATUS_C)).toBe(0);
    setReg(rtc, CMOS_REG.STATUS_D, 0);
    expect(reg(rtc, CMOS_REG.STATUS_D)).toBe(0x80);
  });

  it('ignores guest writes to the clock', () => {
    const rtc = new CmosRtc({ now: fixed });
    setReg(rtc, CMOS_REG.MINUTES, 0x00);
    expect(reg(rtc, CMOS_REG.MINUTES)).toBe(0x45);
  });

  it('keeps 128 bytes of CMOS RAM for the other indices', () => {
    const rtc = new CmosRtc({ now: fixed });
    for (const i of [0x01, 0x0e, 0x34, 0x7f]) setReg(rtc, i, i ^ 0x5a);
    for (const i of [0x01, 0x0e, 0x34, 0x7f]) expect(reg(rtc, i)).toBe(i ^ 0x5a);
    rtc.setRam(0x35, 0x12);
    expect(reg(rtc, 0x35)).toBe(0x12);
    expect(rtc.getRam(0x34)).toBe(0x34 ^ 0x5a);
    expect(() => rtc.setRam(0x80, 0)).toThrow(/CMOS index 128 is outside 0\.\.0x7f/);
    rtc.reset();
    expect(reg(rtc, 0x35)).toBe(0x12); // battery-backed
  });

  it('masks the NMI-disable bit off the index, and reads port 0x70 as 0xff', () => {
    const rtc = new CmosRtc({ now: fixed });
    rtc.write(0, Uint8Array.of(0x80 | CMOS_REG.MINUTES));
    expect(rtc.index).toBe(CMOS_REG.MINUTES);
    expect(rtc.nmiDisabled).toBe(true);
    const d = new Uint8Array(1);
    rtc.read(1, d);
    expect(d[0]).toBe(0x45);
    rtc.read(0, d);
    expect(d[0]).toBe(0xff);
    setReg(rtc, 0x80 | 0x40, 0x77);
    expect(reg(rtc, 0x40)).toBe(0x77);
    expect(rtc.nmiDisabled).toBe(false);
  });

  it('follows the clock between reads, and works at ports 0x70/0x71', () => {
    let t = new Date(Date.UTC(2099, 11, 31, 23, 59, 59));
    const rtc = new CmosRtc({ now: () => t });
    const bus = new Bus('pio');
    bus.register(0x70, 2, rtc);
    const d = new Uint8Array(1);
    bus.write(0x70n, Uint8Array.of(CMOS_REG.YEAR));
    bus.read(0x71n, d);
    expect(d[0]).toBe(0x99);
    t = new Date(t.getTime() + 1000);
    bus.read(0x71n, d);
    expect(d[0]).toBe(0x00);
    bus.write(0x70n, Uint8Array.of(CMOS_REG.CENTURY));
    bus.read(0x71n, d);
    expect(d[0]).toBe(0x21);
  });

  it('shows local time when asked', () => {
    const rtc = new CmosRtc({ now: fixed, localTime: true });
    setReg(rtc, CMOS_REG.STATUS_B, 0x06);
    expect(reg(rtc, CMOS_REG.HOURS)).toBe(when.getHours());
    expect(reg(rtc, CMOS_REG.MINUTES)).toBe(when.getMinutes());
  });
});
