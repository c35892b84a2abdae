/**
 * A GDB remote-protocol stub on loopback, so `gdb -ex 'target remote 127.0.0.1:PORT'` attaches
 * to a running machine: all vCPUs as threads, registers, memory (by virtual address), continue,
 * step, hardware breakpoints (also used for gdb's software breakpoints: an int3 written into
 * guest code is exactly what some hosts cannot run), watchpoints where the host has them.
 * What the host cannot do fails with an error reply; the guest is never put at risk.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Machine } from '../machine/machine.js';
import { readVirtual, writeVirtual } from '../machine/inspect.js';
import { GuestDebugger, type StopEvent } from './debugger.js';
import {
  PacketReader, decodeRegisters, decodeValue, encodeRegister, encodeRegisters, frame, fromHex, hexText, registerName, toHex,
} from './gdb-protocol.js';
import { DebugUnsupportedError } from './support.js';

const SIGTRAP = '05';
const SIGINT = '02';

/** Options of `GdbStub.listen()`. */
export interface GdbStubOptions {
  /** TCP port on 127.0.0.1; 0 picks a free one. */
  port?: number;
  /** Called with each packet exchanged, for troubleshooting. */
  log?: (line: string) => void;
}

/**
 * A GDB remote-protocol server for a `Machine` on 127.0.0.1 (`GdbStub.listen(machine)`): each vCPU is a gdb
 * thread; registers, memory, `continue`, `stepi` and breakpoints work as far as `debugSupport()` says. gdb's
 * software breakpoints are set as hardware ones, so the stub never writes int3 into the guest.
 */
export class GdbStub implements AsyncDisposable {
  /** The machine served. */
  readonly machine: Machine;
  readonly #server: Server;
  readonly #log: (line: string) => void;
  #session: Session | undefined;

  private constructor(machine: Machine, server: Server, log: (line: string) => void) {
    this.machine = machine;
    this.#server = server;
    this.#log = log;
  }

  /** Listens on 127.0.0.1; one debugger at a time. */
  static async listen(machine: Machine, options: GdbStubOptions = {}): Promise<GdbStub> {
    const server = createServer();
    const stub = new GdbStub(machine, server, options.log ?? (() => {}));
    server.on('connection', (socket) => stub.#accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
    });
    return stub;
  }

  /** The TCP port it listens on. */
  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  #accept(socket: Socket): void {
    if (this.#session) {
      socket.end();
      return;
    }
    const session = new Session(this.machine, socket, this.#log);
    this.#session = session;
    socket.on('close', () => {
      if (this.#session === session) this.#session = undefined;
      void session.end();
    });
  }

  /** Stops listening, ends the session (the guest runs on) and closes the socket. Idempotent. */
  async close(): Promise<void> {
    await this.#session?.end();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

class Session {
  readonly #m: Machine;
  readonly #socket: Socket;
  readonly #log: (line: string) => void;
  readonly #reader = new PacketReader();
  #debugger: GuestDebugger | undefined;
  #noAck = false;
  /** gdb thread ids are vCPU index + 1. */
  #gThread = 1;
  #cThread = 1;
  #queue: Promise<void> = Promise.resolve();
  #running = false;
  #ended = false;

  constructor(machine: Machine, socket: Socket, log: (line: string) => void) {
    this.#m = machine;
    this.#socket = socket;
    this.#log = log;
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => this.#onData(chunk));
    socket.on('error', () => void this.end());
  }

  #onData(chunk: string): void {
    for (const item of this.#reader.push(chunk)) {
      if (item.kind === 'interrupt') {
        if (this.#running) void this.#debugger?.interrupt();
        continue;
      }
      if (item.kind === 'bad-packet') {
        this.#socket.write('-');
        continue;
      }
      if (item.kind !== 'packet') continue;
      if (!this.#noAck) this.#socket.write('+');
      const data = item.data;
      this.#queue = this.#queue.then(() => this.#handle(data)).catch((e: unknown) => {
        this.#log(`error: ${e instanceof Error ? e.message : String(e)}`);
        this.#reply('E01');
      });
    }
  }

  #reply(data: string): void {
    this.#log(`-> ${data.length > 80 ? `${data.slice(0, 80)}…` : data}`);
    if (!this.#socket.destroyed) this.#socket.write(frame(data));
  }

  async #dbg(): Promise<GuestDebugger> {
    if (!this.#debugger) {
      const dbg = new GuestDebugger(this.#m);
      await dbg.hold(); // attaching stops the machine (all-stop) and holds it paused
      this.#debugger = dbg;
    }
    return this.#debugger;
  }

  #vcpu(thread: number): number {
    const i = thread <= 0 ? 0 : thread - 1;
    if (i >= this.#m.vcpuCount) throw new RangeError(`no thread ${thread}`);
    return i;
  }

  #stopReply(e: StopEvent, thread: number): string {
    if (e.kind === 'exit') return e.exit.reason === 'debug-exit' ? `W${(e.exit.code & 0xff).toString(16).padStart(2, '0')}` : 'X09';
    if (e.kind === 'interrupt') return `T${SIGINT}thread:${thread.toString(16)};`;
    const t = e.stop.vcpu + 1;
    this.#gThread = t;
    this.#cThread = t;
    const dr6 = e.stop.dr6;
    const watch = (dr6 & 0xfn) !== 0n ? [...(this.#debugger?.watchpoints ?? [])] : [];
    const hit = Number(dr6 & 0xfn).toString(2).length - 1; // which of DR0–DR3 fired
    const bps = this.#debugger?.breakpoints.length ?? 0;
    const w = hit >= bps ? watch[hit - bps] : undefined;
    return `T${SIGTRAP}thread:${t.toString(16)};${w ? `${w.kind === 'write' ? 'watch' : 'awatch'}:${w.address.toString(16)};` : ''}`;
  }

  async #handle(p: string): Promise<void> {
    this.#log(`<- ${p}`);
    const dbg = await this.#dbg();
    const m = this.#m;
    const [cmd, rest] = [p[0] ?? '', p.slice(1)];
    switch (cmd) {
      case '?':
        return this.#reply(`T${SIGTRAP}thread:${this.#gThread.toString(16)};`);
      case 'g': {
        const v = this.#vcpu(this.#gThread);
        return this.#reply(encodeRegisters(await m.getRegs(v), await m.getSregs(v)));
      }
      case 'G': {
        const v = this.#vcpu(this.#gThread);
        await m.setRegs(v, decodeRegisters(rest, await m.getRegs(v)));
        return this.#reply('OK');
      }
      case 'p': {
        const hex = encodeRegister(await m.getRegs(this.#vcpu(this.#gThread)), Number.parseInt(rest, 16));
        return this.#reply(hex ?? 'E45');
      }
      case 'P': {
        const [n, value] = rest.split('=');
        const name = registerName(Number.parseInt(n ?? '', 16));
        if (!name || value === undefined) return this.#reply('E45');
        const v = this.#vcpu(this.#gThread);
        await m.setRegs(v, { ...(await m.getRegs(v)), [name]: decodeValue(value) });
        return this.#reply('OK');
      }
      case 'm': {
        const [addr, len] = rest.split(',');
        try {
          return this.#reply(toHex(await readVirtual(m, this.#vcpu(this.#gThread), BigInt(`0x${addr}`), Number.parseInt(len ?? '0', 16))));
        } catch {
          return this.#reply('E14');
        }
      }
      case 'M': {
        const [where, hex] = rest.split(':');
        const [addr] = (where ?? '').split(',');
        try {
          await writeVirtual(m, this.#vcpu(this.#gThread), BigInt(`0x${addr}`), fromHex(hex ?? ''));
          return this.#reply('OK');
        } catch {
          return this.#reply('E14');
        }
      }
      case 'H': {
        const t = Number.parseInt(rest.slice(1), 16);
        if (rest[0] === 'g') this.#gThread = t > 0 ? t : 1;
        else this.#cThread = t > 0 ? t : this.#gThread;
        return this.#reply('OK');
      }
      case 'T':
        return this.#reply(Number.parseInt(rest, 16) - 1 < m.vcpuCount ? 'OK' : 'E01');
      case 'c':
        return this.#resume(() => dbg.continue());
      case 's': {
        const v = this.#vcpu(this.#cThread);
        try {
          return await this.#resume(() => dbg.step(v));
        } catch (e) {
          if (e instanceof DebugUnsupportedError) return this.#reply('E01');
          throw e;
        }
      }
      case 'Z':
      case 'z':
        return this.#breakpoint(dbg, cmd === 'Z', rest);
      case 'k':
        this.#reply('OK');
        await m.stop();
        this.#socket.end();
        return;
      case 'D':
        await this.#detach();
        this.#reply('OK');
        this.#socket.end();
        return;
      case 'q':
      case 'Q':
        return this.#query(p);
      default:
        return this.#reply(''); // unsupported: vCont, X, etc.
    }
  }

  async #resume(run: () => Promise<StopEvent>): Promise<void> {
    this.#running = true;
    try {
      const e = await run();
      this.#reply(this.#stopReply(e, this.#gThread));
    } finally {
      this.#running = false;
    }
  }

  async #breakpoint(dbg: GuestDebugger, insert: boolean, rest: string): Promise<void> {
    const [type, addrHex, kindHex] = rest.split(',');
    const address = BigInt(`0x${addrHex ?? '0'}`);
    const length = Number.parseInt(kindHex ?? '1', 16);
    try {
      if (type === '0' || type === '1') {
        // Software breakpoints are set as hardware ones: no int3 is ever written to the guest.
        const list = dbg.breakpoints.filter((a) => a !== address);
        await dbg.setBreakpoints(insert ? [...list, address] : list);
        return this.#reply('OK');
      }
      if (type === '2' || type === '4') {
        if (length !== 1 && length !== 2 && length !== 4 && length !== 8) return this.#reply('E22');
        const kind = type === '2' ? 'write' : 'access';
        const list = dbg.watchpoints.filter((w) => w.address !== address);
        await dbg.setWatchpoints(insert ? [...list, { address, length, kind }] : list);
        return this.#reply('OK');
      }
      return this.#reply(''); // read watchpoints: x86 has none
    } catch (e) {
      this.#log(`breakpoint refused: ${e instanceof Error ? e.message : String(e)}`);
      return this.#reply('E01');
    }
  }

  #query(p: string): void {
    const m = this.#m;
    if (p.startsWith('qSupported')) return this.#reply('PacketSize=4000;QStartNoAckMode+;hwbreak+;swbreak-');
    if (p === 'QStartNoAckMode') {
      this.#reply('OK');
      this.#noAck = true;
      return;
    }
    if (p === 'qfThreadInfo') return this.#reply(`m${Array.from({ length: m.vcpuCount }, (_, i) => (i + 1).toString(16)).join(',')}`);
    if (p === 'qsThreadInfo') return this.#reply('l');
    if (p === 'qC') return this.#reply(`QC${this.#gThread.toString(16)}`);
    if (p === 'qAttached') return this.#reply('1');
    if (p.startsWith('qThreadExtraInfo,')) {
      const i = Number.parseInt(p.split(',')[1] ?? '1', 16) - 1;
      return this.#reply(hexText(`vCPU ${i} (${m.vcpuStates()[i] ?? '?'})`));
    }
    if (p.startsWith('qSymbol')) return this.#reply('OK');
    return this.#reply('');
  }

  async #detach(): Promise<void> {
    if (!this.#debugger) return;
    // Detaching gives the debugger's pause hold up: the guest runs on unless someone else holds it.
    await this.#debugger.detach();
    this.#debugger = undefined;
  }

  /** The debugger went away: take our breakpoints out and let the guest run. */
  async end(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    await this.#queue.catch(() => {});
    await this.#detach().catch(() => {});
    this.#socket.destroy();
  }
}
