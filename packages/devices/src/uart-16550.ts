/**
 * A 16550A UART (the PC's COM port), eight byte-wide registers:
 *
 *   +0 RBR (read) / THR (write)    DLL when LCR.DLAB = 1
 *   +1 IER                         DLM when LCR.DLAB = 1
 *   +2 IIR (read) / FCR (write)
 *   +3 LCR   +4 MCR   +5 LSR   +6 MSR   +7 SCR
 *
 * The line is virtual. The transmitter hands each byte to a host-side buffer (the stream's
 * readable side) at once; that buffer is bounded. While it holds `txHighWater` bytes or more,
 * THRE and TEMT read clear (and the THR-empty interrupt waits), so a guest that polls LSR, or
 * waits for the interrupt, before each write is slowed to the pace of the host reader instead
 * of losing bytes — kvmtool's serial drops THRE at half-full the same way. At `txLimit` bytes
 * further writes are dropped and counted (`stats().txDropped`): a guest that ignores LSR cannot
 * grow the host heap. The receiver is a 16-byte FIFO (one byte in 16450 mode, FCR.0 = 0) fed
 * from host input that is queued, never dropped, and handed over as the guest reads. Overrun
 * (LSR.OE) can therefore only happen in loopback mode. Parity, framing and break errors are
 * never generated.
 *
 * Interrupts follow the datasheet priorities, highest first: receiver line status (IIR 0x06,
 * cleared by reading LSR), received data (0x04 once the FIFO holds its trigger level, else the
 * character timeout 0x0C, which here fires at once; cleared by reading RBR), THR empty (0x02,
 * cleared by reading IIR while it is the reported source or by writing THR, and raised again
 * as soon as THR drains — i.e. at once), modem status (0x00, cleared by reading MSR).
 * As on PC boards, the interrupt reaches `irq` only while MCR.OUT2 is set and loopback is off
 * (loopback forces the OUT2 pin inactive).
 *
 * Host side: `stream()` is a Duplex. Its readable side carries what the guest writes to THR;
 * what is written into it lands in the RX FIFO, with the write callback held back until the
 * guest has taken the bytes (back-pressure).
 *
 * Integration notes:
 * - Register over 8 ports (COM1: 0x3F8, IRQ 4); pass `irq` and call `stream()` before the
 *   guest runs, e.g. `uart.stream().pipe(process.stdout)` and `process.stdin.pipe(uart.stream())`.
 * - Accesses wider than a byte are split into byte accesses at consecutive offsets, as the
 *   ISA bus does for 8-bit devices; offsets past 7 read 0xff.
 * - LSR is served from `fastState`, updated (Atomics.store) before every read/write returns,
 *   on host input, and whenever the host-side transmit buffer crosses `txHighWater` (the
 *   stream's `_read`, i.e. the host reader taking bytes, and its destruction). A fast answer
 *   reflects only the writes the main thread has processed: guest writes are posted (and
 *   THR/DLL writes may be coalesced), so a fast LSR read issued right after an FCR clear or a
 *   loopback THR write can be stale unless the worker answers it only when the vCPU's exit ring
 *   and coalesced ring are empty. Outside loopback, THR writes change LSR only by filling the
 *   transmit buffer to `txHighWater`; a guest may see THRE still set for the THR writes still in
 *   flight (at most one exit ring plus KVM's coalesced ring, a few hundred bytes), which the
 *   room between `txHighWater` and `txLimit` takes without a loss. The Atomics.store of LSR
 *   and the worker's Atomics.load are the only shared access; LSR is one self-contained word.
 */
import { Duplex } from 'node:stream';
import type { Device, FastRegister, IrqLine } from './device.js';

/**
 * 16550 register offsets from the UART's base port (DLAB selects DLL/DLM at 0 and 1).
 * @enum
 */
export const UART_REG = { RBR: 0, THR: 0, DLL: 0, IER: 1, DLM: 1, IIR: 2, FCR: 2, LCR: 3, MCR: 4, LSR: 5, MSR: 6, SCR: 7 } as const;
/**
 * Interrupt Enable Register bits.
 * @enum
 */
export const UART_IER = { ERBFI: 0x01, ETBEI: 0x02, ELSI: 0x04, EDSSI: 0x08 } as const;
/**
 * Interrupt Identification Register values.
 * @enum
 */
export const UART_IIR = { NO_INT: 0x01, MSI: 0x00, THRI: 0x02, RDI: 0x04, RLSI: 0x06, TIMEOUT: 0x0c, FIFO_ENABLED: 0xc0 } as const;
/**
 * FIFO Control Register bits.
 * @enum
 */
export const UART_FCR = { ENABLE: 0x01, CLEAR_RX: 0x02, CLEAR_TX: 0x04, DMA_MODE: 0x08, TRIGGER_MASK: 0xc0 } as const;
/**
 * Line Control Register bits.
 * @enum
 */
export const UART_LCR = { DLAB: 0x80, BREAK: 0x40 } as const;
/**
 * Modem Control Register bits.
 * @enum
 */
export const UART_MCR = { DTR: 0x01, RTS: 0x02, OUT1: 0x04, OUT2: 0x08, LOOP: 0x10 } as const;
/**
 * Line Status Register bits.
 * @enum
 */
export const UART_LSR = { DR: 0x01, OE: 0x02, PE: 0x04, FE: 0x08, BI: 0x10, THRE: 0x20, TEMT: 0x40, RX_FIFO_ERROR: 0x80 } as const;
/**
 * Modem Status Register bits.
 * @enum
 */
export const UART_MSR = { DCTS: 0x01, DDSR: 0x02, TERI: 0x04, DDCD: 0x08, CTS: 0x10, DSR: 0x20, RI: 0x40, DCD: 0x80 } as const;

/** RX FIFO depth in FIFO mode. */
export const UART_FIFO_SIZE = 16;
/** Index of LSR in `fastState`. */
export const UART_FAST_LSR = 0;

/** Modem inputs of the virtual line outside loopback: carrier, data set ready and clear to send. */
const IDLE_MODEM_LINES = UART_MSR.DCD | UART_MSR.DSR | UART_MSR.CTS;
const TRIGGER_LEVELS = [1, 4, 8, 14] as const;
const LSR_ERRORS = UART_LSR.OE | UART_LSR.PE | UART_LSR.FE | UART_LSR.BI;
/** Power-on divisor: 12, i.e. 9600 baud from the 1.8432 MHz clock. */
const DEFAULT_DIVISOR = 12;
/** Default host-side transmit bounds: THRE clears at 64 KiB buffered, bytes drop at 1 MiB. */
export const UART_TX_LIMIT = 1 << 20;
/** Default `txHighWater`: 64 KiB. */
export const UART_TX_HIGH_WATER = 64 << 10;

/** Options of `new Uart16550()`. */
export interface Uart16550Options {
  /** Device name for messages; default "uart". */
  name?: string;
  /** The interrupt line (IRQ 4 for COM1). Without it, interrupts only show in IIR. */
  irq?: IrqLine;
  /**
   * Most bytes of guest output held for the host reader; bytes written beyond it are dropped
   * and counted. Default 1 MiB.
   */
  txLimit?: number;
  /**
   * Buffered guest output at which LSR's THRE and TEMT clear until the host reader takes some:
   * back-pressure for a guest that polls LSR. At most `txLimit`; default 64 KiB (or `txLimit`
   * if that is smaller).
   */
  txHighWater?: number;
}

/** Transmit-side counters of a UART. */
export interface UartStats {
  /** Guest bytes handed to the host-side buffer. */
  txBytes: number;
  /** Guest bytes dropped because the host-side buffer held `txLimit` bytes. */
  txDropped: number;
  /** Bytes held now for the host reader. */
  txBuffered: number;
  /** The `txLimit` in force, bytes. */
  txLimit: number;
  /** The `txHighWater` in force, bytes. */
  txHighWater: number;
}

/** The host end of a UART's line (a Duplex), with the UART's transmit counters. */
export interface UartLine extends Duplex {
  /** Transmit counts and bounds. */
  stats(): UartStats;
}

/** The UART's registers and FIFO, as `exportState()` returns them for snapshots (names of the 16550 registers). */
export interface Uart16550State {
  /** The device name. */
  name: string;
  /** Receive buffer register. */
  rbr: number;
  /** Interrupt enable register. */
  ier: number;
  /** Interrupt identification register. */
  iir: number;
  /** FIFO control register. */
  fcr: number;
  /** Line control register. */
  lcr: number;
  /** Modem control register. */
  mcr: number;
  /** Line status register. */
  lsr: number;
  /** Modem status register. */
  msr: number;
  /** Scratch register. */
  scr: number;
  /** Divisor latch, low byte. */
  dll: number;
  /** Divisor latch, high byte. */
  dlm: number;
  /** A THR-empty interrupt is pending. */
  thrInterruptPending: boolean;
  /** The interrupt line's level. */
  irqLevel: boolean;
  /** Bytes in the receive FIFO (at most 16). */
  rxFifo: number[];
  /** Host input bytes queued behind the RX FIFO. */
  hostBacklog: number;
}

type WriteCallback = (error?: Error | null) => void;


interface UartStreamHooks {
  input: (chunk: Uint8Array, done: WriteCallback) => void;
  pulled: () => void;
  closed: () => void;
  stats: () => UartStats;
}

/**
 * The host end of the line: readable = guest output, writable = guest input. Its readable
 * high-water mark is the UART's `txHighWater`, so a `push` that fills it returns false, and
 * Node calls `_read` once the reader has taken the buffer below it again.
 */
class UartStream extends Duplex implements UartLine {
  readonly #hooks: UartStreamHooks;

  constructor(hooks: UartStreamHooks, highWater: number) {
    super({ allowHalfOpen: true, readableHighWaterMark: highWater });
    this.#hooks = hooks;
  }

  stats(): UartStats {
    return this.#hooks.stats();
  }

  override _read(): void {
    // Guest output is pushed as it is written; a pull means the reader took bytes, which may
    // give THRE back.
    this.#hooks.pulled();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: WriteCallback): void {
    this.#hooks.input(chunk, callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#hooks.closed();
    callback(error);
  }
}

/**
 * A 16550A UART (a PC COM port) over 8 ports. Guest output goes to `stream()`'s readable side,
 * bounded by `txLimit` (dropped bytes counted in `stats()`), with LSR reading busy past `txHighWater`;
 * what the host writes into the stream reaches the guest through the 16-byte RX FIFO.
 */
export class Uart16550 implements Device {
  readonly name: string;
  /**
   * LSR is answered by the vCPU worker from `fastState[UART_FAST_LSR]`. Such reads cannot
   * clear LSR's error bits, so reading RBR clears them too (see `#readRegister`).
   */
  readonly fastRegisters: readonly FastRegister[] = [{ offset: UART_REG.LSR, size: 1, index: UART_FAST_LSR }];
  /** LSR, kept current for the vCPU worker (index `UART_FAST_LSR`). */
  readonly fastState = new Int32Array(new SharedArrayBuffer(4));
  /**
   * THR writes may be coalesced: the host drains THR at once, so a write has no effect the
   * guest could observe before its next exit, except in loopback and when it fills the
   * transmit buffer to its high-water mark (a bounded lag; see the file's notes).
   * DLL shares offset 0 under DLAB; that stays correct because KVM's coalesced ring is drained
   * in order before any other exit of the vCPU is handled, so a later LCR write (DLAB off) or
   * read never overtakes a batched DLL/THR write.
   */
  /** THR: guest output may be batched in KVM's coalesced ring. */
  readonly coalescable: readonly {
    /** First register offset. */
    offset: number;
    /** Bytes from there. */
    length: number;
  }[] = [{ offset: UART_REG.THR, length: 1 }];

  readonly #irq: IrqLine | undefined;
  #ier = 0;
  #fcr = 0;
  #lcr = 0;
  #mcr = 0;
  #scr = 0;
  #dll = DEFAULT_DIVISOR;
  #dlm = 0;
  /** Sticky LSR error bits (OE). */
  #lsrErrors = 0;
  /** MSR delta bits (low nibble). */
  #msrDelta = 0;
  #thrPending = false;
  #rbr = 0;
  #rx: number[] = [];
  #irqLevel = false;

  /** Host input not yet in the RX FIFO, oldest first; `#hostOffset` indexes the first chunk. */
  #host: Uint8Array[] = [];
  #hostOffset = 0;
  #hostBacklog = 0;
  /** The write callback of the chunk still (partly) in the backlog. */
  #hostWaiter: WriteCallback | undefined;

  #stream: UartStream | undefined;
  /** Guest output of the current burst, not yet pushed into the stream. */
  #tx: number[] = [];
  #txScheduled = false;
  readonly #txLimit: number;
  readonly #txHighWater: number;
  #txBytes = 0;
  #txDropped = 0;
  /** THRE as last published: false while the host-side buffer is at or over its high-water mark. */
  #thre = true;

  constructor(options: Uart16550Options = {}) {
    this.name = options.name ?? 'uart';
    this.#irq = options.irq;
    const limit = options.txLimit ?? UART_TX_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new RangeError(`${this.name}: option txLimit must be a positive integer (bytes), got ${String(limit)}`);
    }
    const high = options.txHighWater ?? Math.min(UART_TX_HIGH_WATER, limit);
    if (!Number.isSafeInteger(high) || high < 1 || high > limit) {
      throw new RangeError(`${this.name}: option txHighWater must be an integer from 1 to txLimit (${limit}), got ${String(high)}`);
    }
    this.#txLimit = limit;
    this.#txHighWater = high;
    this.#update();
  }

  /** Transmit counters: bytes passed on, dropped at the limit, buffered now. */
  stats(): UartStats {
    return { txBytes: this.#txBytes, txDropped: this.#txDropped, txBuffered: this.#txBuffered(), txLimit: this.#txLimit, txHighWater: this.#txHighWater };
  }

  /**
   * The host end of the line, created on first call. Bytes the guest transmits before the
   * first call are discarded, like on an unplugged cable; after it they are buffered for the
   * reader up to `txLimit` (see the file's notes). Destroying the stream unplugs it again.
   */
  stream(): UartLine {
    if (!this.#stream || this.#stream.destroyed) {
      const s: UartStream = new UartStream(
        {
          input: (chunk, done) => this.#hostInput(chunk, done),
          // `_read` runs inside `read()` before the bytes leave the buffer: look afterwards.
          pulled: () => queueMicrotask(() => this.#txChanged()),
          closed: () => {
            if (this.#stream === s) this.#stream = undefined;
            this.#hostWaiter = undefined;
            this.#txChanged();
          },
          stats: () => this.stats(),
        },
        this.#txHighWater,
      );
      this.#stream = s;
    }
    return this.#stream;
  }

  read(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) data[i] = offset + i < 8 ? this.#readRegister(offset + i) : 0xff;
    this.#update();
  }

  write(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) if (offset + i < 8) this.#writeRegister(offset + i, data[i]!);
    this.#update();
  }

  /** Master reset: registers to power-on values, FIFOs emptied. Queued host input is kept. */
  reset(): void {
    this.#ier = 0;
    this.#fcr = 0;
    this.#lcr = 0;
    this.#mcr = 0;
    this.#lsrErrors = 0;
    this.#msrDelta = 0;
    this.#thrPending = false;
    this.#rx = [];
    this.#refill();
    this.#update();
  }

  exportState(): Uart16550State {
    return {
      name: this.name,
      rbr: this.#rbr,
      ier: this.#ier,
      iir: this.#iir(),
      fcr: this.#fcr,
      lcr: this.#lcr,
      mcr: this.#mcr,
      lsr: this.#lsr(),
      msr: this.#modemLines() | this.#msrDelta,
      scr: this.#scr,
      dll: this.#dll,
      dlm: this.#dlm,
      thrInterruptPending: this.#thrPending,
      irqLevel: this.#irqLevel,
      rxFifo: [...this.#rx],
      hostBacklog: this.#hostBacklog,
    };
  }

  /** Puts back registers and RX FIFO from `exportState()` (host-side input backlog excepted). */
  importState(state: unknown): void {
    const s = state as Uart16550State;
    for (const k of ['rbr', 'ier', 'fcr', 'lcr', 'mcr', 'lsr', 'msr', 'scr', 'dll', 'dlm'] as const) {
      if (typeof s[k] !== 'number') throw new TypeError(`${this.name}: importState: field ${k} is missing`);
    }
    this.#rbr = s.rbr;
    this.#ier = s.ier;
    this.#fcr = s.fcr;
    this.#lcr = s.lcr;
    this.#mcr = s.mcr;
    this.#scr = s.scr;
    this.#dll = s.dll;
    this.#dlm = s.dlm;
    this.#lsrErrors = s.lsr & LSR_ERRORS;
    this.#msrDelta = s.msr & 0x0f;
    this.#thrPending = s.thrInterruptPending === true;
    this.#rx = Array.isArray(s.rxFifo) ? s.rxFifo.map((b) => b & 0xff) : [];
    this.#irqLevel = !s.irqLevel; // make #update drive the line to the restored level
    this.#update();
  }

  get #dlab(): boolean {
    return (this.#lcr & UART_LCR.DLAB) !== 0;
  }

  get #fifoEnabled(): boolean {
    return (this.#fcr & UART_FCR.ENABLE) !== 0;
  }

  get #loopback(): boolean {
    return (this.#mcr & UART_MCR.LOOP) !== 0;
  }

  #readRegister(reg: number): number {
    switch (reg) {
      case UART_REG.RBR: {
        if (this.#dlab) return this.#dll;
        const byte = this.#rx.shift();
        if (byte !== undefined) this.#rbr = byte;
        // Datasheet: only an LSR read clears the error bits. LSR reads served from fastState
        // never reach us, and a receive loop reads LSR then RBR, so RBR clears them as well.
        this.#lsrErrors = 0;
        this.#refill();
        return this.#rbr;
      }
      case UART_REG.IER:
        return this.#dlab ? this.#dlm : this.#ier;
      case UART_REG.IIR: {
        const iir = this.#iir();
        if ((iir & 0x0f) === UART_IIR.THRI) this.#thrPending = false;
        return iir;
      }
      case UART_REG.LCR:
        return this.#lcr;
      case UART_REG.MCR:
        return this.#mcr;
      case UART_REG.LSR: {
        const lsr = this.#lsr();
        this.#lsrErrors = 0;
        return lsr;
      }
      case UART_REG.MSR: {
        const msr = this.#modemLines() | this.#msrDelta;
        this.#msrDelta = 0;
        return msr;
      }
      default:
        return this.#scr;
    }
  }

  #writeRegister(reg: number, value: number): void {
    switch (reg) {
      case UART_REG.THR:
        if (this.#dlab) this.#dll = value;
        else this.#transmit(value);
        return;
      case UART_REG.IER: {
        if (this.#dlab) {
          this.#dlm = value;
          return;
        }
        const enabledThri = value & ~this.#ier & UART_IER.ETBEI;
        this.#ier = value & 0x0f;
        // Enabling ETBEI while THR is empty raises the THRE interrupt at once; disabling it
        // drops a pending one.
        if (enabledThri && this.#thre) this.#thrPending = true;
        else if (!(this.#ier & UART_IER.ETBEI)) this.#thrPending = false;
        return;
      }
      case UART_REG.FCR:
        this.#writeFcr(value);
        return;
      case UART_REG.LCR:
        this.#lcr = value;
        return;
      case UART_REG.MCR:
        this.#writeMcr(value & 0x1f);
        return;
      case UART_REG.SCR:
        this.#scr = value;
        return;
      default:
        // LSR and MSR are read-only (their writes are factory-test only).
        return;
    }
  }

  #writeFcr(value: number): void {
    const enable = value & UART_FCR.ENABLE;
    // Switching between 16450 and FIFO mode empties both FIFOs.
    if (enable !== (this.#fcr & UART_FCR.ENABLE)) this.#rx = [];
    if (!enable) {
      // The other FCR bits are only programmed together with FCR.0 = 1.
      this.#fcr = 0;
    } else {
      if (value & UART_FCR.CLEAR_RX) this.#rx = [];
      // CLEAR_TX: the TX FIFO is always empty.
      this.#fcr = value & (UART_FCR.ENABLE | UART_FCR.DMA_MODE | UART_FCR.TRIGGER_MASK);
    }
    this.#refill();
  }

  #writeMcr(value: number): void {
    const before = this.#modemLines();
    this.#mcr = value;
    const after = this.#modemLines();
    const changed = before ^ after;
    if (changed & UART_MSR.CTS) this.#msrDelta |= UART_MSR.DCTS;
    if (changed & UART_MSR.DSR) this.#msrDelta |= UART_MSR.DDSR;
    if (changed & UART_MSR.DCD) this.#msrDelta |= UART_MSR.DDCD;
    if (before & ~after & UART_MSR.RI) this.#msrDelta |= UART_MSR.TERI;
    this.#refill();
  }

  /** MSR's upper nibble: the virtual line's inputs, or the MCR outputs in loopback. */
  #modemLines(): number {
    if (!this.#loopback) return IDLE_MODEM_LINES;
    const m = this.#mcr;
    return (
      (m & UART_MCR.RTS ? UART_MSR.CTS : 0) |
      (m & UART_MCR.DTR ? UART_MSR.DSR : 0) |
      (m & UART_MCR.OUT1 ? UART_MSR.RI : 0) |
      (m & UART_MCR.OUT2 ? UART_MSR.DCD : 0)
    );
  }

  #transmit(byte: number): void {
    if (this.#loopback) this.#receive(byte);
    else this.#emit(byte);
    // Writing THR clears the THRE interrupt; the host drains THR at once, which raises it again
    // unless the host-side buffer is at its high-water mark (then `#txChanged` raises it later).
    this.#thre = this.#txBuffered() < this.#txHighWater;
    this.#thrPending = this.#thre;
  }

  /** A byte arriving from the shift register (loopback): overrun if the FIFO/RBR is full. */
  #receive(byte: number): void {
    if (this.#rx.length < this.#rxCapacity()) {
      this.#rx.push(byte);
      return;
    }
    this.#lsrErrors |= UART_LSR.OE;
    // 16450 mode: the new character overwrites RBR. FIFO mode: the FIFO is kept, it is lost.
    if (!this.#fifoEnabled) this.#rx[0] = byte;
  }

  #rxCapacity(): number {
    return this.#fifoEnabled ? UART_FIFO_SIZE : 1;
  }

  #iir(): number {
    let id: number = UART_IIR.NO_INT;
    const ier = this.#ier;
    if (ier & UART_IER.ELSI && this.#lsrErrors) id = UART_IIR.RLSI;
    else if (ier & UART_IER.ERBFI && this.#rx.length > 0) {
      const trigger = this.#fifoEnabled ? TRIGGER_LEVELS[this.#fcr >>> 6]! : 1;
      id = this.#rx.length >= trigger ? UART_IIR.RDI : UART_IIR.TIMEOUT;
    } else if (ier & UART_IER.ETBEI && this.#thrPending) id = UART_IIR.THRI;
    else if (ier & UART_IER.EDSSI && this.#msrDelta) id = UART_IIR.MSI;
    return id | (this.#fifoEnabled ? UART_IIR.FIFO_ENABLED : 0);
  }

  #lsr(): number {
    return (this.#rx.length > 0 ? UART_LSR.DR : 0) | this.#lsrErrors | (this.#thre ? UART_LSR.THRE | UART_LSR.TEMT : 0);
  }

  /** Publishes LSR for the fast path and drives the IRQ line on a change of level. */
  #update(): void {
    Atomics.store(this.fastState, UART_FAST_LSR, this.#lsr());
    const level = (this.#iir() & UART_IIR.NO_INT) === 0 && (this.#mcr & (UART_MCR.OUT2 | UART_MCR.LOOP)) === UART_MCR.OUT2;
    if (level !== this.#irqLevel) {
      this.#irqLevel = level;
      this.#irq?.set(level);
    }
  }

  // ---- host side ----

  /** Guest output held for the host reader: this burst plus what the stream has buffered. */
  #txBuffered(): number {
    const s = this.#stream;
    return this.#tx.length + (s && !s.destroyed ? s.readableLength : 0);
  }

  #emit(byte: number): void {
    const s = this.#stream;
    if (!s || s.destroyed) return;
    if (this.#txBuffered() >= this.#txLimit) {
      this.#txDropped++;
      return;
    }
    this.#tx.push(byte);
    this.#txBytes++;
    if (this.#txScheduled) return;
    this.#txScheduled = true;
    // One chunk per burst of writes (a dispatcher batch or a coalesced ring drain).
    queueMicrotask(() => {
      this.#txScheduled = false;
      const bytes = Buffer.from(this.#tx);
      this.#tx = [];
      const target = this.#stream;
      // A push that reaches the stream's high-water mark (= txHighWater) returns false; Node
      // then calls `_read` when the reader has taken bytes, which re-checks THRE.
      if (target && !target.destroyed) target.push(bytes);
      else this.#txChanged();
    });
  }

  /** The host-side buffer shrank (the reader took bytes, or the stream went): THRE may be back. */
  #txChanged(): void {
    const thre = this.#txBuffered() < this.#txHighWater;
    if (thre === this.#thre) return;
    this.#thre = thre;
    // THR became empty: the THRE interrupt, as on the chip.
    if (thre) this.#thrPending = true;
    this.#update();
  }

  #hostInput(chunk: Uint8Array, done: WriteCallback): void {
    if (chunk.length > 0) {
      this.#host.push(chunk);
      this.#hostBacklog += chunk.length;
    }
    this.#refill();
    this.#update();
    if (this.#hostBacklog === 0) done();
    else this.#hostWaiter = done;
  }

  /** Moves queued host input into the RX FIFO while it has room (not in loopback). */
  #refill(): void {
    if (this.#loopback) return;
    const capacity = this.#rxCapacity();
    while (this.#rx.length < capacity && this.#hostBacklog > 0) {
      const chunk = this.#host[0]!;
      this.#rx.push(chunk[this.#hostOffset++]!);
      this.#hostBacklog--;
      if (this.#hostOffset === chunk.length) {
        this.#host.shift();
        this.#hostOffset = 0;
      }
    }
    const waiter = this.#hostWaiter;
    if (this.#hostBacklog === 0 && waiter) {
      this.#hostWaiter = undefined;
      // Not from inside a guest access: the stream may call _write again synchronously.
      process.nextTick(waiter);
    }
  }
}
