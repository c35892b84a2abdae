/** GDB remote serial protocol pieces: packet framing, hex, and the x86-64 register file. */
import type { KvmRegs, KvmSregs } from '../ffi/index.js';

export function checksum(data: string): string {
  let sum = 0;
  for (let i = 0; i < data.length; i++) sum = (sum + data.charCodeAt(i)) & 0xff;
  return sum.toString(16).padStart(2, '0');
}

export function frame(data: string): string {
  return `$${data}#${checksum(data)}`;
}

export type Incoming = { kind: 'packet'; data: string } | { kind: 'bad-packet' } | { kind: 'interrupt' } | { kind: 'ack' } | { kind: 'nack' };

/** Splits a byte stream into packets, acks and Ctrl-C; keeps what is incomplete. */
export class PacketReader {
  #buf = '';

  push(chunk: string): Incoming[] {
    this.#buf += chunk;
    const out: Incoming[] = [];
    for (;;) {
      const c = this.#buf[0];
      if (c === undefined) break;
      if (c === '+') out.push({ kind: 'ack' });
      else if (c === '-') out.push({ kind: 'nack' });
      else if (c === '\x03') out.push({ kind: 'interrupt' });
      else if (c === '$') {
        const end = this.#buf.indexOf('#');
        if (end < 0 || end + 3 > this.#buf.length) break;
        const data = this.#buf.slice(1, end);
        const sum = this.#buf.slice(end + 1, end + 3);
        this.#buf = this.#buf.slice(end + 3);
        out.push(sum.toLowerCase() === checksum(data) ? { kind: 'packet', data: unescape(data) } : { kind: 'bad-packet' });
        continue;
      }
      this.#buf = this.#buf.slice(1);
    }
    return out;
  }
}

function unescape(data: string): string {
  return data.replace(/\}(.)/g, (_m, c: string) => String.fromCharCode(c.charCodeAt(0) ^ 0x20));
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

export function fromHex(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

export function hexText(text: string): string {
  return Buffer.from(text, 'utf8').toString('hex');
}

function le(value: bigint, bytes: number): string {
  let s = '';
  for (let i = 0; i < bytes; i++) s += Number((value >> BigInt(8 * i)) & 0xffn).toString(16).padStart(2, '0');
  return s;
}

function fromLe(hex: string): bigint {
  let v = 0n;
  for (let i = hex.length - 2; i >= 0; i -= 2) v = (v << 8n) | BigInt(Number.parseInt(hex.slice(i, i + 2), 16));
  return v;
}

/** gdb's amd64 core register order: 16 GPRs, rip (8 bytes each), then eflags and 6 selectors (4 bytes each). */
export const GPR_ORDER = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip'] as const;
const EFLAGS = 17;
const SEGMENTS = ['cs', 'ss', 'ds', 'es', 'fs', 'gs'] as const;

/** The 'g' reply: the core registers (gdb treats those past the end as unavailable). */
export function encodeRegisters(regs: KvmRegs, sregs: KvmSregs): string {
  let s = '';
  for (const r of GPR_ORDER) s += le(regs[r], 8);
  s += le(regs.rflags, 4);
  for (const seg of SEGMENTS) s += le(BigInt(sregs[seg].selector), 4);
  return s;
}

/** Applies a 'G' payload (as much of it as covers GPRs, rip and eflags) to `regs`. */
export function decodeRegisters(hex: string, regs: KvmRegs): KvmRegs {
  const out = { ...regs };
  GPR_ORDER.forEach((r, i) => {
    const chunk = hex.slice(i * 16, i * 16 + 16);
    if (chunk.length === 16) out[r] = fromLe(chunk);
  });
  const fl = hex.slice(17 * 16, 17 * 16 + 8);
  if (fl.length === 8) out.rflags = fromLe(fl);
  return out;
}

/** A single register for 'p' / 'P' by gdb's number (GPRs, rip, eflags); undefined otherwise. */
export function registerName(n: number): (typeof GPR_ORDER)[number] | 'rflags' | undefined {
  if (n < GPR_ORDER.length) return GPR_ORDER[n];
  if (n === EFLAGS) return 'rflags';
  return undefined;
}

export function encodeRegister(regs: KvmRegs, n: number): string | undefined {
  const name = registerName(n);
  if (!name) return undefined;
  return le(regs[name], name === 'rflags' ? 4 : 8);
}

export function decodeValue(hex: string): bigint {
  return fromLe(hex);
}
