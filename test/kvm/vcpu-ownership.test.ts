/**
 * Ownership on failure: whatever happens to a vCPU thread, its vCPU fd, its /dev/kvm fd and its
 * kvm_run mapping — and so the kernel VM — are released once the machine is closed; a Machine
 * that fails while it is built releases its VM fd; process.exit() is not held up by vCPUs.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { VcpuThreadError, createMachine, drainVcpuThreads } from '@kvmpool/core/internal';
import { within } from '../support/bounded.js';
import { SPIN } from '../support/machine-guests.js';

const CODE = 0x10000n;
const stack = (i: number): bigint => 0x80000n + BigInt(i) * 0x1000n;

/** This process's fds on /dev/kvm and KVM's anonymous inodes (VMs, vCPUs). */
function kvmFds(): Record<'kvm' | 'vm' | 'vcpu', number> {
  const n = { kvm: 0, vm: 0, vcpu: 0 };
  for (const fd of readdirSync('/proc/self/fd')) {
    let target = '';
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    if (target === '/dev/kvm') n.kvm++;
    else if (target === 'anon_inode:kvm-vm') n.vm++;
    else if (target.startsWith('anon_inode:kvm-vcpu')) n.vcpu++;
  }
  return n;
}
/** Mappings of vCPU fds (kvm_run): `anon_inode:kvm-vcpu:N`. */
const vcpuMaps = (): number => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('kvm-vcpu')).length;

async function baseline(): Promise<{ fds: ReturnType<typeof kvmFds>; maps: number }> {
  await drainVcpuThreads();
  return { fds: kvmFds(), maps: vcpuMaps() };
}

describe('vCPU ownership on failure', () => {
  it('a vCPU thread that dies: its vCPU fd, /dev/kvm fd and kvm_run mapping are closed from the main thread', async () => {
    const before = await baseline();
    const m = await createMachine({ memory: '2 MiB', vcpus: 2 });
    m.load(CODE, SPIN);
    await m.start({ entry: CODE, stack });
    // Each vCPU thread holds a vCPU fd, a /dev/kvm fd and a kvm_run mapping; the main thread a
    // mapping of each vCPU too.
    expect(kvmFds().vcpu - before.fds.vcpu).toBe(2);
    await m.pause(); // a thread serves requests (the fault too) outside KVM_RUN
    await m.injectThreadFault(1, 'boom');
    const exit = await within(m.waitForExit(), 10_000, 'the failed machine');
    expect(exit.reason).toBe('error');
    if (exit.reason === 'error') expect(exit.error).toBeInstanceOf(VcpuThreadError);
    await within(m.close(), 10_000, 'close()');
    expect(kvmFds()).toEqual(before.fds);
    expect(vcpuMaps()).toBe(before.maps);
  });

  it('a vCPU thread that stops answering is ended by close(), and what it held is closed', async () => {
    const before = await baseline();
    const m = await createMachine({ memory: '2 MiB', vcpus: 2 });
    m.load(CODE, SPIN);
    await m.start({ entry: CODE, stack });
    await m.pause(); // the thread is in its event loop: the fault blocks it for good
    await m.injectThreadFault(0, 'hang', { hang: true });
    await within(m.close(), 20_000, 'close() of a machine with a hung vCPU thread');
    expect(kvmFds()).toEqual(before.fds);
    expect(vcpuMaps()).toBe(before.maps);
  });

  it('a Machine whose construction throws (serial: 5) closes its VM and /dev/kvm fds', async () => {
    const before = await baseline();
    await expect(createMachine({ memory: '2 MiB', serial: 5 })).rejects.toThrow(/^serial: 5 UARTs requested/);
    expect(kvmFds()).toEqual(before.fds);
    await expect(createMachine({ memory: '1 TiB' })).rejects.toThrow(/^memory: /);
    expect(kvmFds()).toEqual(before.fds);
  });

  it('process.exit() while vCPUs compute at CPL 3 ends the process', () => {
    const script = `
      import { createMachine } from '@kvmpool/core';
      const m = await createMachine({ memory: '2 MiB', vcpus: 2 });
      m.load(0x10000, Uint8Array.from([${[...SPIN].join(',')}]));
      await m.start({ entry: 0x10000n, stack: (i) => 0x80000n + BigInt(i) * 0x1000n });
      process.exit(7);`;
    const file = join(process.cwd(), 'test', `.exit-probe-${process.pid}.mjs`);
    writeFileSync(file, script);
    let r: SpawnSyncReturns<string>;
    try {
      r = spawnSync(process.execPath, [file], { cwd: process.cwd(), timeout: 30_000, encoding: 'utf8' });
    } finally {
      rmSync(file, { force: true });
    }
    expect(r.stderr).toBe('');
    expect(r.signal).toBeNull(); // not killed by the time-out
    expect(r.status).toBe(7);
  });
});
