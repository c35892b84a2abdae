/**
 * A validated ELF64 loader for static x86-64 executables (what the guest SDK links). Every
 * field that points into the file or into guest memory is checked, and each problem is named:
 * not an ELF file, not x86-64, segments outside guest memory or overlapping each other.
 * Whatever the bytes, parseElf either returns an image or throws ElfError, in time linear in
 * the file's size (test/unit/elf-property.test.ts checks it with arbitrary and mutated files).
 */
import { ElfError } from '../errors.js';
import type { GuestMemory } from '../memory.js';

export { ElfError };

export interface ElfSegment {
  vaddr: bigint;
  memsz: number;
  filesz: number;
  offset: number;
  readable: boolean;
  writable: boolean;
  executable: boolean;
}

/** A function symbol (global or local) with its size, for naming a guest rip. */
export interface ElfSymbol {
  name: string;
  value: bigint;
  size: bigint;
}

export interface ElfImage {
  source: string;
  entry: bigint;
  segments: ElfSegment[];
  /** Global function symbols (name → address): what a guest exports. */
  functions: Map<string, bigint>;
  /** Global object symbols (name → address). */
  objects: Map<string, bigint>;
  /** Every function symbol, local ones too, sorted by address (see `symbolize`). */
  symbols: ElfSymbol[];
  bytes: Uint8Array;
  /** ET_EXEC (2), or ET_DYN (3) for a static-PIE loaded at `loadBase`. */
  type: number;
  /** Where the program headers are in the file, and how many (for AT_PHDR / AT_PHNUM). */
  phoff: number;
  phnum: number;
  /** What every address of an ET_DYN image was moved by (0n for ET_EXEC). */
  loadBase: bigint;
  /** The program's PT_INTERP (a dynamic executable's loader), if it has one. */
  interp: string | undefined;
}

export interface ParseElfOptions {
  /**
   * Accept a position-independent executable (ET_DYN) and load it at this page-aligned
   * address: every segment, symbol and the entry point move by it. Without it, only ET_EXEC.
   */
  loadBase?: bigint;
  /** Refuse a program with PT_INTERP (a dynamically linked one), naming its loader. Default false. */
  rejectInterp?: boolean;
}

const PT_LOAD = 1;
const PT_INTERP = 3;
const ET_EXEC = 2;
const ET_DYN = 3;
const EM_X86_64 = 62;
const SHT_SYMTAB = 2;
const STB_GLOBAL = 1;
const STT_OBJECT = 1;
const STT_FUNC = 2;
const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const SHDR_SIZE = 64;
const SYM_SIZE = 24;
/** Sanity bound on a segment's size in memory. */
const MAX_SEGMENT = 2 ** 32;
/** Longest symbol name kept; longer ones are skipped (bounds the scan for the NUL). */
const MAX_NAME = 4096;

export function parseElf(bytes: Uint8Array, source = 'guest', options: ParseElfOptions = {}): ElfImage {
  const fail = (msg: string): never => {
    throw new ElfError(source, msg);
  };
  if (bytes.length < EHDR_SIZE) fail(`not an ELF file (${bytes.length} bytes, shorter than an ELF header)`);
  if (bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46) fail('not an ELF file (bad magic)');
  if (bytes[4] !== 2) fail(`not a 64-bit ELF file (class ${bytes[4]})`);
  if (bytes[5] !== 1) fail('not a little-endian ELF file');
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = v.getUint16(16, true);
  const machine = v.getUint16(18, true);
  if (machine !== EM_X86_64) fail(`not an x86-64 executable (e_machine ${machine})`);
  const pie = type === ET_DYN && options.loadBase !== undefined;
  if (type !== ET_EXEC && !pie) {
    fail(`not a static executable (e_type ${type}${type === ET_DYN ? ': position-independent' : ''}; link with -static${options.loadBase === undefined ? ' -no-pie' : ''})`);
  }
  const base = pie ? options.loadBase! : 0n;
  if (base % 0x1000n !== 0n || base < 0n) fail(`load base 0x${base.toString(16)} is not a page-aligned address`);
  const entry = v.getBigUint64(24, true) + base;
  const phoff = Number(v.getBigUint64(32, true));
  const shoff = Number(v.getBigUint64(40, true));
  const phentsize = v.getUint16(54, true);
  const phnum = v.getUint16(56, true);
  const shentsize = v.getUint16(58, true);
  const shnum = v.getUint16(60, true);
  if (phnum === 0) fail('no program headers');
  if (phentsize !== PHDR_SIZE) fail(`program header size ${phentsize}, expected ${PHDR_SIZE}`);
  if (phoff + phnum * PHDR_SIZE > bytes.length) fail('program headers run past the end of the file');

  const segments: ElfSegment[] = [];
  let interp: string | undefined;
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * PHDR_SIZE;
    const ptype = v.getUint32(at, true);
    if (ptype === PT_INTERP) {
      const off = Number(v.getBigUint64(at + 8, true));
      const len = Math.min(Number(v.getBigUint64(at + 32, true)), MAX_NAME);
      interp = off + len <= bytes.length ? decoder.decode(bytes.subarray(off, off + len)).replace(/\0.*$/s, '') : '?';
      if (options.rejectInterp) fail(`a dynamically linked executable (its loader is ${interp}); kvmpool runs static executables: link with -static`);
    }
    if (ptype !== PT_LOAD) continue;
    const flags = v.getUint32(at + 4, true);
    const offset = Number(v.getBigUint64(at + 8, true));
    const vaddr = v.getBigUint64(at + 16, true) + base;
    const filesz = Number(v.getBigUint64(at + 32, true));
    const memsz = Number(v.getBigUint64(at + 40, true));
    const name = `segment ${i} at 0x${vaddr.toString(16)}`;
    if (filesz > memsz) fail(`${name}: file size ${filesz} exceeds memory size ${memsz}`);
    if (memsz > MAX_SEGMENT) fail(`${name}: memory size ${memsz} is implausible`);
    if (offset + filesz > bytes.length) fail(`${name}: file range [${offset}, ${offset + filesz}) runs past the end of the file (${bytes.length} bytes)`);
    segments.push({ vaddr, memsz, filesz, offset, readable: (flags & 4) !== 0, writable: (flags & 2) !== 0, executable: (flags & 1) !== 0 });
  }
  if (segments.length === 0) fail('no loadable (PT_LOAD) segments');
  const sorted = [...segments].sort((a, b) => (a.vaddr < b.vaddr ? -1 : 1));
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (prev.vaddr + BigInt(prev.memsz) > cur.vaddr) {
      fail(`segments overlap: [0x${prev.vaddr.toString(16)}, 0x${(prev.vaddr + BigInt(prev.memsz)).toString(16)}) and 0x${cur.vaddr.toString(16)}`);
    }
  }
  if (!segments.some((s) => s.executable && entry >= s.vaddr && entry < s.vaddr + BigInt(s.memsz))) {
    fail(`entry point 0x${entry.toString(16)} is not inside an executable segment`);
  }

  const functions = new Map<string, bigint>();
  const objects = new Map<string, bigint>();
  const symbols: ElfSymbol[] = [];
  if (shoff !== 0 && shnum > 0) {
    if (shentsize !== SHDR_SIZE) fail(`section header size ${shentsize}, expected ${SHDR_SIZE}`);
    if (shoff + shnum * SHDR_SIZE > bytes.length) fail('section headers run past the end of the file');
    const sh = (i: number) => {
      const at = shoff + i * SHDR_SIZE;
      return {
        type: v.getUint32(at + 4, true),
        offset: Number(v.getBigUint64(at + 24, true)),
        size: Number(v.getBigUint64(at + 32, true)),
        link: v.getUint32(at + 40, true),
      };
    };
    for (let i = 0; i < shnum; i++) {
      const s = sh(i);
      if (s.type !== SHT_SYMTAB) continue;
      if (s.link >= shnum) fail(`symbol table ${i} links to string table ${s.link}, which does not exist`);
      const str = sh(s.link);
      if (s.offset + s.size > bytes.length || str.offset + str.size > bytes.length) fail('symbol table runs past the end of the file');
      for (let at = s.offset; at + SYM_SIZE <= s.offset + s.size; at += SYM_SIZE) {
        const info = v.getUint8(at + 4);
        const bind = info >> 4;
        const kind = info & 0xf;
        if (kind !== STT_FUNC && (bind !== STB_GLOBAL || kind !== STT_OBJECT)) continue;
        const nameOff = str.offset + v.getUint32(at, true);
        const limit = Math.min(str.offset + str.size, nameOff + MAX_NAME);
        let end = nameOff;
        while (end < limit && bytes[end] !== 0) end++;
        if (end >= limit && end !== str.offset + str.size) continue; // no NUL within MAX_NAME bytes
        const name = decoder.decode(bytes.subarray(nameOff, end));
        const value = v.getBigUint64(at + 8, true) + base;
        if (kind === STT_FUNC && name !== '') symbols.push({ name, value, size: v.getBigUint64(at + 16, true) });
        if (bind === STB_GLOBAL) (kind === STT_FUNC ? functions : objects).set(name, value);
      }
    }
  }
  symbols.sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0));
  return { source, entry, segments, functions, objects, symbols, bytes, type, phoff, phnum, loadBase: base, interp };
}

const decoder = new TextDecoder();

/**
 * `rip` as `symbol+0xoffset` when it falls inside a function symbol of the image (within its
 * size; a symbol of size 0 only at its own address), else undefined.
 */
export function symbolize(image: Pick<ElfImage, 'symbols'>, rip: bigint): string | undefined {
  const syms = image.symbols;
  let lo = 0;
  let hi = syms.length - 1;
  let best = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (syms[mid]!.value <= rip) {
      best = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  // Several symbols may start at or below rip; the nearest one that contains it wins.
  for (let i = best; i >= 0 && i > best - 8; i--) {
    const s = syms[i]!;
    const off = rip - s.value;
    if (off < s.size || (s.size === 0n && off === 0n)) return off === 0n ? s.name : `${s.name}+0x${off.toString(16)}`;
  }
  return undefined;
}

/**
 * Copies the image's segments into guest memory (zero-filling .bss). Throws if a segment
 * falls outside guest memory or into a `reserved` range (e.g. the CPU-mode system area).
 */
export function loadElf(image: ElfImage, memory: GuestMemory, reserved: readonly { start: bigint; end: bigint; what: string }[] = []): void {
  for (const s of image.segments) {
    const end = s.vaddr + BigInt(s.memsz);
    const range = `[0x${s.vaddr.toString(16)}, 0x${end.toString(16)})`;
    for (const r of reserved) {
      if (s.vaddr < r.end && r.start < end) throw new ElfError(image.source, `segment ${range} overlaps the ${r.what} [0x${r.start.toString(16)}, 0x${r.end.toString(16)})`);
    }
    let view: Uint8Array;
    try {
      view = memory.view(s.vaddr, s.memsz);
    } catch (e) {
      throw new ElfError(image.source, `segment ${range} is outside guest memory (${e instanceof Error ? e.message : String(e)})`);
    }
    view.set(image.bytes.subarray(s.offset, s.offset + s.filesz));
    view.fill(0, s.filesz);
  }
}
