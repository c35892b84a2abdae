// Review: a Linux program's host call names its argument by pointer and length in its own
// memory. The argument is handed to the host function as it is, not copied first: a program
// with a large memory must not make the worker allocate a copy of (nearly) all of it per call
// (the call buffer refuses anything over 1 MiB anyway, after the copy).
import { describe, expect, it } from 'vitest';
import { KVMPOOL_SYSCALL, SCRATCH, SyscallLayer, type LayerHost, type ProcessLayout } from '@kvmpool/core/internal';

const MEMORY = 256 * 1024 * 1024;
const SCRATCH_AT = 0x1000;
const layout: ProcessLayout = { userMin: 0x10000, memory: MEMORY, brkStart: 0x40000, stackBottom: MEMORY - 0x40000, mmapTop: MEMORY - 0x41000 };

describe('review: host-call arguments', () => {
  it('a 200 MiB argument costs the host no 200 MiB copy', () => {
    const mem = new Uint8Array(MEMORY);
    let grew = -1;
    let seen = -1;
    const host: LayerHost = {
      markDirty: () => {},
      setSegmentBase: () => true,
      getSegmentBase: () => 0n,
      sleep: () => {},
      hostCall: (_name, arg) => {
        grew = process.memoryUsage().arrayBuffers - before;
        seen = arg.length;
        return new Uint8Array(0);
      },
    };
    const k = new SyscallLayer(mem, { files: new Map(), maxOutput: 4096, outputLimit: 'truncate', strict: false, ids: { uid: 1000, gid: 1000 } }, layout, host, SCRATCH_AT);
    mem.set(new TextEncoder().encode('f'), 0x20000);
    const v = new DataView(mem.buffer);
    const args = [0x20000, 1, 0x100000, 200 * 1024 * 1024, 0x30000, 16];
    v.setBigUint64(SCRATCH_AT + SCRATCH.NR, BigInt(KVMPOOL_SYSCALL.HOST_CALL), true);
    args.forEach((a, n) => v.setBigUint64(SCRATCH_AT + SCRATCH.ARGS + 8 * n, BigInt(a), true));
    const before = process.memoryUsage().arrayBuffers;
    k.serve();
    expect(seen).toBe(200 * 1024 * 1024);
    expect(grew).toBeLessThan(16 * 1024 * 1024);
  });
});
