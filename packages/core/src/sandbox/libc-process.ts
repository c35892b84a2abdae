/**
 * What a sandbox guest built with musl (sdk.ts, `libc: 'musl'`) needs beside the SDK's call
 * ABI: the memory layout of its stack and heap, the process stack musl starts from, and the
 * syscall layer (linux/syscall-layer.ts) that serves its syscalls, with stdout and stderr turned
 * into the call's prints.
 *
 * Guest memory of a musl guest (the freestanding layout, sandbox-vm.ts, plus):
 *   [0x1000 system tables | 0xb000 syscall stub (read-only) | 0xc000 call area | 0xd000 syscall
 *   scratch][1 MiB image … brk →][← mmap][guard page][stack][input][output]
 *   (page 0 unmapped: a NULL dereference faults). The stack is a quarter of the room between the
 *   image and the input region, 64 KiB to 1 MiB; the heap is the rest. At the stack's top sits
 *   the process stack (argc, argv, envp, auxv) musl's _start reads; each call's stack starts
 *   below main's frame (the host reads rsp at main's hand-over).
 */
import { randomBytes } from 'node:crypto';
import type { ElfImage } from '../loader/elf.js';
import { buildProcessStack, standardAuxv } from '../linux/process-stack.js';
import type { ProcessLayout } from '../linux/process-state.js';
import { PROGRAM_IDS } from '../linux/linux-config.js';
import { SyscallLayer, type LayerHost, type LinuxProgramConfig } from '../linux/syscall-layer.js';
import { PAGE_SIZE } from '../util/size.js';
import { IMAGE_MIN } from './abi.js';
import { SANDBOX_LIMITS, type PrintLog } from './host-call.js';

/** The scratch page of a musl guest's syscall stub (0xc000, the linux layer's, is the call area here). */
export const LIBC_SCRATCH = 0xd000;
/** CPL 3 may not write below this: the system tables and the stub's page. */
export const LIBC_PROTECTED_END = 0xc000n;
/** The most stack a musl guest gets, and the least stack and heap. */
const MAX_STACK = 1 << 20;
const MIN_STACK = 64 * 1024;
const MIN_HEAP = 64 * 1024;
/** The symbol libc.c defines: its presence marks an image built with musl. */
const LIBC_MARK = '_kvmpool_libc_flush';

const pageDown = (n: number): number => Math.floor(n / PAGE_SIZE) * PAGE_SIZE;
const pageUp = (n: number): number => Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;

/** Whether `image` was built with the SDK's libc runtime (it enters at musl's _start, not at _kvmpool_entry). */
export function isLibcGuest(image: Pick<ElfImage, 'functions'>): boolean {
  return image.functions.has(LIBC_MARK) && image.functions.has('_kvmpool_entry');
}

/** The heap and stack of a musl guest whose input region starts at `inputBase`; RangeError naming the numbers when they do not fit. */
export function libcLayout(image: Pick<ElfImage, 'segments' | 'source'>, memory: number, inputBase: number): ProcessLayout {
  let end = 0;
  for (const s of image.segments) end = Math.max(end, Number(s.vaddr) + s.memsz);
  const brkStart = pageUp(end);
  const room = inputBase - brkStart;
  const stack = Math.min(MAX_STACK, Math.max(MIN_STACK, pageDown(room / 4)));
  const stackBottom = inputBase - stack;
  const mmapTop = stackBottom - PAGE_SIZE;
  if (mmapTop - brkStart < MIN_HEAP) {
    throw new RangeError(
      `${image.source}: the image ends at 0x${brkStart.toString(16)}; the ${Math.max(room, 0)} bytes below the input region at 0x${Math.max(inputBase, 0).toString(16)} do not hold a ${MIN_STACK}-byte stack and ${MIN_HEAP} bytes of heap for the C library (memory ${memory} bytes)`,
    );
  }
  return { userMin: Number(IMAGE_MIN), memory, brkStart, mmapTop, stackBottom };
}

/** The process stack musl's _start reads, at the top of the guest's stack; `sp` is the initial rsp. */
export function libcProcessStack(image: ElfImage, layout: ProcessLayout, top: number, hwcap: number): { sp: bigint; bytes: Uint8Array } {
  const stack = buildProcessStack({
    top: BigInt(top),
    argv: ['kvmpool-guest'],
    env: [],
    execfn: 'kvmpool-guest',
    random: randomBytes(16),
    auxv: standardAuxv(image, PROGRAM_IDS, hwcap),
  });
  if (stack.sp < BigInt(layout.stackBottom)) throw new RangeError(`the process stack (${stack.bytes.length} bytes) does not fit the guest's stack`);
  return stack;
}

/** No files, output as prints, unknown syscalls ENOSYS: what an SDK guest's libc sees. */
const CONFIG: LinuxProgramConfig = { files: new Map(), maxOutput: SANDBOX_LIMITS.PRINT_BYTES, outputLimit: 'truncate', strict: false, ids: PROGRAM_IDS };

/**
 * The syscall layer of a musl guest. What the guest writes to stdout or stderr in one syscall
 * (a write, or a writev's whole vector) becomes one print of the call, bounded by PrintLog.
 */
export class LibcSyscalls extends SyscallLayer {
  readonly #prints: () => PrintLog;
  /** The chunks of the syscall being served (views of guest memory, read before it resumes). */
  #pending: Uint8Array[] = [];

  constructor(mem: Uint8Array, layout: ProcessLayout, host: LayerHost, prints: () => PrintLog) {
    super(mem, CONFIG, layout, host, LIBC_SCRATCH);
    this.#prints = prints;
  }

  override output(_which: 'stdout' | 'stderr', bytes: Uint8Array): void {
    this.#pending.push(bytes);
  }

  /** Serves the syscall in the scratch page, then hands what it wrote to the prints. */
  override serve(): void {
    super.serve();
    const p = this.#pending;
    if (p.length === 0) return;
    this.#pending = [];
    if (p.length === 1) {
      this.#prints().add(p[0]!);
      return;
    }
    const all = new Uint8Array(p.reduce((n, b) => n + b.length, 0));
    let at = 0;
    for (const b of p) {
      all.set(b, at);
      at += b.length;
    }
    this.#prints().add(all);
  }
}
