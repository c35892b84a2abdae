/**
 * The initial stack of a Linux process, as the kernel's ELF loader builds it (System V x86-64
 * psABI §3.4.1; fs/binfmt_elf.c `create_elf_tables`), from the top of the stack down:
 *
 *   [top]  AT_EXECFN string, environment strings, argument strings, "x86_64" (AT_PLATFORM),
 *          16 AT_RANDOM bytes, padding to 16 bytes
 *          auxv (type, value) pairs ending with AT_NULL
 *          envp[] ending with NULL, argv[] ending with NULL
 *   [rsp]  argc                                   (rsp is 16-byte aligned)
 *
 * Pure: it returns the bytes to copy to [sp, top) and where AT_RANDOM went, so that the VM can
 * refresh those bytes for every call.
 */
import type { ElfImage } from '../loader/elf.js';

export const AT = {
  NULL: 0, PHDR: 3, PHENT: 4, PHNUM: 5, PAGESZ: 6, BASE: 7, FLAGS: 8, ENTRY: 9, UID: 11, EUID: 12, GID: 13, EGID: 14,
  PLATFORM: 15, HWCAP: 16, CLKTCK: 17, SECURE: 23, RANDOM: 25, HWCAP2: 26, EXECFN: 31,
} as const;

/** Most bytes of argument and environment strings (with their NULs) a process may start with. */
export const MAX_ARG_BYTES = 256 * 1024;
/** Most arguments plus environment entries. */
export const MAX_ARG_STRINGS = 16_384;

export interface ProcessStackInput {
  /** Address one past the stack's highest byte (16-byte aligned). */
  top: bigint;
  argv: readonly string[];
  /** `NAME=value` entries. */
  env: readonly string[];
  /** AT_EXECFN: the program's path as given. */
  execfn: string;
  /** Auxiliary vector entries other than AT_RANDOM, AT_PLATFORM, AT_EXECFN and AT_NULL. */
  auxv: readonly (readonly [number, bigint])[];
  /** The 16 AT_RANDOM bytes. */
  random: Uint8Array;
}

export interface ProcessStack {
  /** The initial rsp (where argc is). */
  sp: bigint;
  /** The bytes of [sp, top). */
  bytes: Uint8Array;
  /** Guest address of the 16 AT_RANDOM bytes. */
  randomAt: bigint;
}

const enc = new TextEncoder();

/** Throws RangeError (naming the limit) when argv and env are too many or too long. */
export function buildProcessStack(p: ProcessStackInput): ProcessStack {
  if (p.top % 16n !== 0n) throw new RangeError(`stack top 0x${p.top.toString(16)} is not 16-byte aligned`);
  if (p.random.length !== 16) throw new RangeError(`AT_RANDOM needs 16 bytes, got ${p.random.length}`);
  if (p.argv.length + p.env.length > MAX_ARG_STRINGS) {
    throw new RangeError(`argv and env hold ${p.argv.length + p.env.length} strings; at most ${MAX_ARG_STRINGS}`);
  }
  const strings = [p.execfn, ...p.env, ...p.argv, 'x86_64'].map((s) => {
    if (typeof s !== 'string') throw new TypeError(`argv, env and the program name must be strings (got ${typeof s})`);
    const b = enc.encode(s);
    if (b.includes(0)) throw new RangeError(`argument or environment string ${JSON.stringify(s.slice(0, 40))} contains a NUL byte`);
    return b;
  });
  const stringBytes = strings.reduce((n, b) => n + b.length + 1, 0);
  if (stringBytes > MAX_ARG_BYTES) throw new RangeError(`argv and env take ${stringBytes} bytes; at most ${MAX_ARG_BYTES}`);

  // Strings at the top, in the order above; remember each one's address.
  let cursor = p.top - 8n; // 8 bytes of zero at the very top, as Linux leaves
  const addrs: bigint[] = [];
  for (const b of strings) {
    cursor -= BigInt(b.length + 1);
    addrs.push(cursor);
  }
  const randomAt = (cursor - 16n) & ~15n;
  const auxv: [number, bigint][] = [
    ...p.auxv.map(([k, v]) => [k, v] as [number, bigint]),
    [AT.RANDOM, randomAt],
    [AT.PLATFORM, addrs[addrs.length - 1]!],
    [AT.EXECFN, addrs[0]!],
    [AT.NULL, 0n],
  ];
  const words = 1 + p.argv.length + 1 + p.env.length + 1 + auxv.length * 2;
  const sp = (randomAt - BigInt(words * 8)) & ~15n;
  const bytes = new Uint8Array(Number(p.top - sp));
  const view = new DataView(bytes.buffer);
  const put = (addr: bigint, v: bigint): void => view.setBigUint64(Number(addr - sp), v, true);
  strings.forEach((b, i) => bytes.set(b, Number(addrs[i]! - sp)));
  bytes.set(p.random, Number(randomAt - sp));
  let w = sp;
  const push = (v: bigint): void => {
    put(w, v);
    w += 8n;
  };
  push(BigInt(p.argv.length));
  const envAddrs = addrs.slice(1, 1 + p.env.length);
  const argAddrs = addrs.slice(1 + p.env.length, 1 + p.env.length + p.argv.length);
  for (const a of argAddrs) push(a);
  push(0n);
  for (const a of envAddrs) push(a);
  push(0n);
  for (const [k, v] of auxv) {
    push(BigInt(k));
    push(v);
  }
  return { sp, bytes, randomAt };
}

/** Where AT_PHDR points: the program headers inside a loaded segment (0 when none holds them). */
export function programHeaders(image: Pick<ElfImage, 'segments' | 'phoff' | 'phnum'>): bigint {
  const seg = image.segments.find((s) => image.phoff >= s.offset && image.phoff + image.phnum * 56 <= s.offset + s.filesz);
  return seg ? seg.vaddr + BigInt(image.phoff - seg.offset) : 0n;
}

/** The auxiliary vector Linux gives a static executable (but AT_RANDOM, AT_PLATFORM, AT_EXECFN, which buildProcessStack adds). */
export function standardAuxv(image: Pick<ElfImage, 'segments' | 'phoff' | 'phnum' | 'entry'>, ids: { uid: number; gid: number }, hwcap: number): [number, bigint][] {
  return [
    [AT.PHDR, programHeaders(image)],
    [AT.PHENT, 56n],
    [AT.PHNUM, BigInt(image.phnum)],
    [AT.PAGESZ, 4096n],
    [AT.BASE, 0n],
    [AT.FLAGS, 0n],
    [AT.ENTRY, image.entry],
    [AT.UID, BigInt(ids.uid)],
    [AT.EUID, BigInt(ids.uid)],
    [AT.GID, BigInt(ids.gid)],
    [AT.EGID, BigInt(ids.gid)],
    [AT.HWCAP, BigInt(hwcap >>> 0)],
    [AT.HWCAP2, 0n],
    [AT.CLKTCK, 100n],
    [AT.SECURE, 0n],
  ];
}
