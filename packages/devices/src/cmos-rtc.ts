/**
 * The PC's CMOS RTC (an MC146818): ports 0x70 (index, offset 0) and 0x71 (data, offset 1).
 *
 * The clock registers are a read-only view of the host clock, taken at each read:
 *   0x00 seconds  0x02 minutes  0x04 hours  0x06 day of week (1 = Sunday)  0x07 day of month
 *   0x08 month    0x09 year (two digits)    0x32 century
 * in BCD unless status B's DM bit (bit 2) is set, and in 24-hour mode when bit 1 is set (else
 * 12-hour, with bit 7 of the hours as the PM flag). The guest may change those two bits;
 * guest writes to the clock registers are ignored, so guest time cannot drift from the host's.
 *
 *   0x0A status A: UIP (bit 7) always 0 — an update is never in progress — and the divider /
 *        rate bits (0x26 at power-on, guest-writable).
 *   0x0B status B: only bits 1 (24h) and 2 (DM, binary) are kept; the interrupt enables read 0.
 *   0x0C status C: 0 — there is no RTC interrupt (IRQ 8 is never raised).
 *   0x0D status D: 0x80, VRT: the "battery" is good.
 * Every other index (alarms 0x01/0x03/0x05, 0x0E..0x7F) is plain CMOS RAM, 128 bytes in all,
 * read/write; the VMM can fill it (e.g. memory size for firmware) with `setRam()`.
 *
 * Bit 7 of the index is the NMI-disable gate on PCs: it is recorded and masked off. Port 0x70
 * is write-only (reads give 0xff), as in QEMU.
 */
import type { Device } from './device.js';

/**
 * CMOS register indices of the clock and status registers (the value written to port 0x70).
 * @enum
 */
export const CMOS_REG = {
  SECONDS: 0x00, MINUTES: 0x02, HOURS: 0x04, DAY_OF_WEEK: 0x06, DAY_OF_MONTH: 0x07, MONTH: 0x08, YEAR: 0x09,
  STATUS_A: 0x0a, STATUS_B: 0x0b, STATUS_C: 0x0c, STATUS_D: 0x0d, CENTURY: 0x32,
} as const;
/**
 * Status register A bits.
 * @enum
 */
export const RTC_STATUS_A = { UIP: 0x80 } as const;
/**
 * Status register B bits.
 * @enum
 */
export const RTC_STATUS_B = { SET: 0x80, PIE: 0x40, AIE: 0x20, UIE: 0x10, SQWE: 0x08, DM_BINARY: 0x04, HOUR_24: 0x02, DSE: 0x01 } as const;
/**
 * Status register D bits.
 * @enum
 */
export const RTC_STATUS_D = { VRT: 0x80 } as const;
/** Bit 7 of the index written to port 0x70: the NMI-disable gate, recorded and masked off. */
export const CMOS_NMI_DISABLE = 0x80;

const STATUS_A_WRITABLE = 0x7f;
const STATUS_B_WRITABLE = RTC_STATUS_B.DM_BINARY | RTC_STATUS_B.HOUR_24;
/** Divider 010 (32.768 kHz time base), rate 0110 (1024 Hz). */
const INITIAL_STATUS_A = 0x26;
/** 24-hour mode, BCD. */
const INITIAL_STATUS_B = RTC_STATUS_B.HOUR_24;

/** Options of `new CmosRtc()`. */
export interface CmosRtcOptions {
  /** Device name for messages; default "cmos-rtc". */
  name?: string;
  /** The clock to show; default `() => new Date()`. */
  now?: () => Date;
  /** Show local time instead of UTC (what Windows guests expect). Default false: UTC. */
  localTime?: boolean;
}

/** The CMOS RTC's state, as `exportState()` returns it for snapshots. */
export interface CmosRtcState {
  /** The device name. */
  name: string;
  /** The selected register (port 0x70). */
  index: number;
  /** Bit 7 of the last index write. */
  nmiDisabled: boolean;
  /** Status register A. */
  statusA: number;
  /** Status register B. */
  statusB: number;
  /** The 128 bytes of CMOS RAM. */
  ram: number[];
}

const toBcd = (v: number): number => (Math.floor(v / 10) << 4) | v % 10;

/**
 * The PC's MC146818 CMOS RTC at ports 0x70/0x71: the host clock in BCD or binary, 12- or 24-hour, and 128 bytes
 * of CMOS RAM. Read-only clock: guest writes to the time registers are ignored.
 */
export class CmosRtc implements Device {
  readonly name: string;
  readonly #now: () => Date;
  readonly #localTime: boolean;
  readonly #ram = new Uint8Array(128);
  #index = 0;
  #nmiDisabled = false;

  constructor(options: CmosRtcOptions = {}) {
    this.name = options.name ?? 'cmos-rtc';
    this.#now = options.now ?? (() => new Date());
    this.#localTime = options.localTime ?? false;
    this.#ram[CMOS_REG.STATUS_A] = INITIAL_STATUS_A;
    this.#ram[CMOS_REG.STATUS_B] = INITIAL_STATUS_B;
  }

  /** The index register (bit 7 masked off). */
  get index(): number {
    return this.#index;
  }

  /** Whether the guest last wrote the index with bit 7 (NMI disable) set. */
  get nmiDisabled(): boolean {
    return this.#nmiDisabled;
  }

  /** Sets a CMOS RAM byte from the host (any index; clock and status indices are not RAM). */
  setRam(index: number, value: number): void {
    if (!Number.isInteger(index) || index < 0 || index > 0x7f) throw new RangeError(`${this.name}: CMOS index ${index} is outside 0..0x7f`);
    this.#ram[index] = value;
  }

  /** Reads byte `index` of CMOS RAM. */
  getRam(index: number): number {
    if (!Number.isInteger(index) || index < 0 || index > 0x7f) throw new RangeError(`${this.name}: CMOS index ${index} is outside 0..0x7f`);
    return this.#ram[index]!;
  }

  read(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) data[i] = offset + i === 1 ? this.#readRegister(this.#index) : 0xff;
  }

  write(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const value = data[i]!;
      if (offset + i === 0) {
        this.#index = value & 0x7f;
        this.#nmiDisabled = (value & CMOS_NMI_DISABLE) !== 0;
      } else if (offset + i === 1) {
        this.#writeRegister(this.#index, value);
      }
    }
  }

  /** The RESET pin: clears the index; CMOS RAM and the status bits kept are battery-backed. */
  reset(): void {
    this.#index = 0;
    this.#nmiDisabled = false;
  }

  importState(state: unknown): void {
    const s = state as CmosRtcState;
    if (!Array.isArray(s.ram) || typeof s.index !== 'number') throw new TypeError(`${this.name}: importState: not a CMOS RTC state`);
    s.ram.forEach((v, i) => {
      if (i < this.#ram.length) this.#ram[i] = v & 0xff;
    });
    this.#index = s.index & 0x7f;
    this.#nmiDisabled = s.nmiDisabled;
  }

  exportState(): CmosRtcState {
    return {
      name: this.name,
      index: this.#index,
      nmiDisabled: this.#nmiDisabled,
      statusA: this.#ram[CMOS_REG.STATUS_A]!,
      statusB: this.#ram[CMOS_REG.STATUS_B]!,
      ram: [...this.#ram],
    };
  }

  #readRegister(index: number): number {
    switch (index) {
      case CMOS_REG.SECONDS:
      case CMOS_REG.MINUTES:
      case CMOS_REG.HOURS:
      case CMOS_REG.DAY_OF_WEEK:
      case CMOS_REG.DAY_OF_MONTH:
      case CMOS_REG.MONTH:
      case CMOS_REG.YEAR:
      case CMOS_REG.CENTURY:
        return this.#clock(index);
      case CMOS_REG.STATUS_A:
        return this.#ram[index]! & ~RTC_STATUS_A.UIP;
      case CMOS_REG.STATUS_C:
        return 0;
      case CMOS_REG.STATUS_D:
        return RTC_STATUS_D.VRT;
      default:
        return this.#ram[index]!;
    }
  }

  #writeRegister(index: number, value: number): void {
    switch (index) {
      case CMOS_REG.SECONDS:
      case CMOS_REG.MINUTES:
      case CMOS_REG.HOURS:
      case CMOS_REG.DAY_OF_WEEK:
      case CMOS_REG.DAY_OF_MONTH:
      case CMOS_REG.MONTH:
      case CMOS_REG.YEAR:
      case CMOS_REG.CENTURY:
      case CMOS_REG.STATUS_C:
      case CMOS_REG.STATUS_D:
        return; // The clock follows the host; C and D are read-only.
      case CMOS_REG.STATUS_A:
        this.#ram[index] = value & STATUS_A_WRITABLE;
        return;
      case CMOS_REG.STATUS_B:
        this.#ram[index] = value & STATUS_B_WRITABLE;
        return;
      default:
        this.#ram[index] = value;
    }
  }

  #clock(index: number): number {
    const d = this.#now();
    if (Number.isNaN(d.getTime())) throw new RangeError(`${this.name}: the clock returned an invalid Date`);
    const local = this.#localTime;
    const statusB = this.#ram[CMOS_REG.STATUS_B]!;
    const encode = (v: number): number => (statusB & RTC_STATUS_B.DM_BINARY ? v : toBcd(v));
    switch (index) {
      case CMOS_REG.SECONDS:
        return encode(local ? d.getSeconds() : d.getUTCSeconds());
      case CMOS_REG.MINUTES:
        return encode(local ? d.getMinutes() : d.getUTCMinutes());
      case CMOS_REG.HOURS: {
        const h = local ? d.getHours() : d.getUTCHours();
        if (statusB & RTC_STATUS_B.HOUR_24) return encode(h);
        return encode(h % 12 || 12) | (h >= 12 ? 0x80 : 0);
      }
      case CMOS_REG.DAY_OF_WEEK:
        return encode((local ? d.getDay() : d.getUTCDay()) + 1);
      case CMOS_REG.DAY_OF_MONTH:
        return encode(local ? d.getDate() : d.getUTCDate());
      case CMOS_REG.MONTH:
        return encode((local ? d.getMonth() : d.getUTCMonth()) + 1);
      case CMOS_REG.YEAR:
        return encode((local ? d.getFullYear() : d.getUTCFullYear()) % 100);
      default:
        return encode(Math.floor((local ? d.getFullYear() : d.getUTCFullYear()) / 100) % 100);
    }
  }
}
