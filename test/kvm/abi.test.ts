import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { KVM_IOCTLS, abi } from '@kvmpool/core/internal';
import { buildC } from '../support/build-c.js';

// The kernel's own answer: a C program compiled against the machine's <linux/kvm.h>.
const kernel = new Map(
  execFileSync(buildC('kvm-abi.c'), { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((line) => {
      const [name, value] = line.split(' ');
      return [name!, Number(value)] as const;
    }),
);

describe('ABI: kvmpool against the kernel headers', () => {
  it('every struct layout has the kernel size', () => {
    const layouts = Object.values(abi).filter((v): v is { kind: 'struct'; name: string; size: number } =>
      typeof v === 'object' && v !== null && 'kind' in v && v.kind === 'struct');
    expect(layouts.length).toBeGreaterThan(30);
    const checked = layouts.filter((l) => kernel.has(l.name));
    expect(checked.length).toBeGreaterThanOrEqual(40);
    for (const l of checked) expect({ name: l.name, size: l.size }).toEqual({ name: l.name, size: kernel.get(l.name) });
  });

  it('the sync-regs area sits where the kernel puts it (kvm_run.s, and its parts)', () => {
    const run = abi.KVM_RUN_STRUCT.offsets;
    const sync = abi.KVM_SYNC_REGS.offsets;
    expect({ valid: run.kvm_valid_regs, s: run.s, sregs: sync.sregs, events: sync.events }).toEqual({
      valid: kernel.get('kvm_run.kvm_valid_regs'), s: kernel.get('kvm_run.s'),
      sregs: kernel.get('kvm_sync_regs.sregs'), events: kernel.get('kvm_sync_regs.events'),
    });
  });

  it('every ioctl number matches the kernel header', () => {
    for (const [name, value] of Object.entries(KVM_IOCTLS)) {
      expect(kernel.has(name), `${name} missing from the C fixture`).toBe(true);
      expect({ name, value }).toEqual({ name, value: kernel.get(name) });
    }
  });
});
