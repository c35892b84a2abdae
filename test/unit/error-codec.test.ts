// The error codec (encodeError / decodeError): every KvmpoolError subclass that
// packages/core/src/errors.ts defines comes back from a thread boundary as the same class, with
// its code, its own fields (bigints too), message, stack and a cause chain two levels deep.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as core from '@kvmpool/core/internal';
import {
  AbortError, ClosedError, DebugUnsupportedError, ElfError, GuestCrashError, GuestError, GuestLimitError, GuestMemoryError, HostFunctionError,
  KvmError, KvmUnsupportedError, KvmpoolError, SandboxTimeoutError, SandboxWorkerError, SnapshotError, VcpuStateError, VcpuThreadError,
  decodeError, encodeError, type EncodedError,
} from '@kvmpool/core/internal';

/** One instance of each class, every field set to a value its blank rebuild would not have. */
const SAMPLES: Record<string, () => KvmpoolError> = {
  KvmError: () => new KvmError('KVM_CREATE_VCPU', 22, 'EINVAL', 'Invalid argument', 'check the vCPU id'),
  KvmUnsupportedError: () => new KvmUnsupportedError('KVM_CAP_XSAVE', 'this host has no XSAVE'),
  ClosedError: () => new ClosedError('sandbox pool'),
  GuestMemoryError: () => new GuestMemoryError(0xdead_beef_f000n, 4096, 'no memory slot backs it'),
  GuestCrashError: () => new GuestCrashError(3, 'shutdown', 0x10_1234n, 'crash_in_local+0x2'),
  VcpuThreadError: () => new VcpuThreadError(2, 'exited with code 1'),
  VcpuStateError: () => new VcpuStateError(1, 'running', 'getRegs needs a paused vCPU'),
  SandboxTimeoutError: () => new SandboxTimeoutError('spin', 250, 'its initTimeoutMs'),
  GuestError: () => new GuestError('guest function fail returned error -22', -22),
  GuestLimitError: () => new GuestLimitError('hostFunctionName', 'names are at most 256 bytes'),
  HostFunctionError: () => new HostFunctionError('lookup', 'it threw'),
  SandboxWorkerError: () => new SandboxWorkerError('the worker died'),
  ElfError: () => new ElfError('/tmp/guest.elf', 'not an ELF file'),
  SnapshotError: () => new SnapshotError('/tmp/vm.snap', 'truncated at 4096 bytes'),
  DebugUnsupportedError: () => new DebugUnsupportedError('single-step', 0, 'kvm_pvm'),
  AbortError: () => new AbortError('sandbox call spin was aborted'),
};

/** The classes errors.ts defines as subclasses of KvmpoolError, read from its source. */
function subclassesInSource(): string[] {
  const src = readFileSync(new URL('../../packages/core/src/errors.ts', import.meta.url), 'utf8');
  const names = [...src.matchAll(/^export class (\w+) extends (\w+)/gm)].map((m) => ({ name: m[1]!, base: m[2]! }));
  const known = new Set(['KvmpoolError']);
  // Subclasses of subclasses too (in source order a base comes first).
  for (const { name, base } of names) if (known.has(base)) known.add(name);
  known.delete('KvmpoolError');
  return [...known].sort();
}

function setCause(e: Error, cause: unknown): Error {
  Object.defineProperty(e, 'cause', { value: cause, enumerable: false, configurable: true, writable: true });
  return e;
}

/** Across a thread (structured clone) and through the pool's JSON reply. */
const carriers: Record<string, (w: EncodedError) => EncodedError> = {
  'structured clone': (w) => structuredClone(w),
  JSON: (w) => JSON.parse(JSON.stringify(w)) as EncodedError,
};

describe('error codec', () => {
  it('has a sample for every KvmpoolError subclass errors.ts defines, and each is exported', () => {
    const classes = subclassesInSource();
    expect(classes.length).toBeGreaterThanOrEqual(16);
    expect(Object.keys(SAMPLES).sort()).toEqual(classes);
    const exported = core as unknown as Record<string, unknown>;
    for (const name of classes) {
      const cls = exported[name] as (abstract new (...args: never[]) => unknown) | undefined;
      expect(typeof cls, name).toBe('function');
      const e = SAMPLES[name]!();
      expect(e).toBeInstanceOf(cls!);
      expect(e).toBeInstanceOf(KvmpoolError);
      expect(e.name).toBe(name);
    }
  });

  for (const [carrier, carry] of Object.entries(carriers)) {
    it(`every subclass round-trips (${carrier}): class, code, fields, message, stack, and a cause two levels deep`, () => {
      for (const [name, make] of Object.entries(SAMPLES)) {
        const leaf = new RangeError(`leaf under ${name}`);
        const middle = new HostFunctionError('inner', `middle under ${name}`, leaf);
        const original = setCause(make(), middle) as KvmpoolError;
        const decoded = decodeError(carry(encodeError(original))) as KvmpoolError;

        const cls = (core as unknown as Record<string, new (...args: never[]) => KvmpoolError>)[name]!;
        expect(decoded, name).toBeInstanceOf(cls);
        expect(decoded).toBeInstanceOf(KvmpoolError);
        expect(decoded.name).toBe(name);
        expect(decoded.code).toBe(original.code);
        expect(decoded.message).toBe(original.message);
        expect(decoded.stack).toBe(original.stack);
        // Every own field (ioctl, errno, rip, symbol, vcpu, state, timeoutMs, status, path, cpl, …).
        expect({ ...decoded }, name).toEqual({ ...original });

        const c1 = decoded.cause as HostFunctionError;
        expect(c1, `${name}'s cause`).toBeInstanceOf(HostFunctionError);
        expect([c1.message, c1.function, c1.code, c1.stack]).toEqual([middle.message, 'inner', middle.code, middle.stack]);
        const c2 = c1.cause as RangeError;
        expect(c2, `${name}'s cause's cause`).toBeInstanceOf(RangeError);
        expect([c2.message, c2.stack, c2.cause]).toEqual([leaf.message, leaf.stack, undefined]);
      }
    });
  }

  it('the per-class fields are really carried (not only equal to what a blank instance has)', () => {
    const checks: [Error, Record<string, unknown>][] = [
      [new KvmError('KVM_CREATE_VCPU', 22, 'EINVAL', 'Invalid argument'), { ioctl: 'KVM_CREATE_VCPU', errno: 22, code: 'EINVAL' }],
      [new GuestMemoryError(0xdead_beef_f000n, 4096, 'x'), { address: 0xdead_beef_f000n, length: 4096 }],
      [new GuestCrashError(3, 'shutdown', 0x10_1234n, 'crash+0x4'), { vcpu: 3, exit: 'shutdown', rip: 0x10_1234n, symbol: 'crash+0x4' }],
      [new VcpuStateError(1, 'running', 'x'), { vcpu: 1, state: 'running' }],
      [new SandboxTimeoutError('spin', 250), { function: 'spin', timeoutMs: 250 }],
      [new GuestError('x', -22), { status: -22 }],
      [new DebugUnsupportedError('single-step', 0, 'kvm_pvm'), { feature: 'single-step', cpl: 0 }],
      [new AbortError(), { code: 'ABORT_ERR', name: 'AbortError' }],
    ];
    for (const [e, fields] of checks) expect(decodeError(structuredClone(encodeError(e)))).toMatchObject(fields);
  });
});
