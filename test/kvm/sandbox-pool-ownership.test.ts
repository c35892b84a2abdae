// Ownership of a terminated worker's VM: when the pool has to end a worker thread that does not
// stop by itself (a sync host function blocked past the watchdog, a force-close), the thread's
// /dev/kvm fd, VM fd, vCPU fd, kvm_run mapping and POSIX timer are closed by the main thread
// once the thread is gone, so nothing of the kernel VM is left behind.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ClosedError, SandboxPool, SandboxTimeoutError } from '@kvmpool/core';
import { buildSandboxGuest } from '../support/build-c.js';

const hostModule = new URL('../fixtures/pool-host-functions.mjs', import.meta.url);
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
const guest = (): string => buildSandboxGuest('pool-guest.c');

interface KvmResources {
  kvmFds: number;
  vmFds: number;
  vcpuFds: number;
  vcpuMaps: number;
  timers: number;
}

/** What this process holds of KVM now: fds by target, kvm_run mappings, POSIX timers. */
function kvmResources(): KvmResources {
  const r: KvmResources = { kvmFds: 0, vmFds: 0, vcpuFds: 0, vcpuMaps: 0, timers: 0 };
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed meanwhile (the directory's own fd)
    }
    if (target === '/dev/kvm') r.kvmFds++;
    else if (target === 'anon_inode:kvm-vm') r.vmFds++;
    else if (target.startsWith('anon_inode:kvm-vcpu')) r.vcpuFds++;
  }
  r.vcpuMaps = readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('kvm-vcpu')).length;
  r.timers = readFileSync('/proc/self/timers', 'utf8').split('\n').filter((l) => l.startsWith('ID:')).length;
  return r;
}

/** Polls (bounded) until the process holds `want`; returns what it holds last. */
async function settleTo(want: KvmResources, boundMs = 10_000): Promise<KvmResources> {
  const end = Date.now() + boundMs;
  for (;;) {
    const now = kvmResources();
    if (JSON.stringify(now) === JSON.stringify(want) || Date.now() > end) return now;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('SandboxPool ownership of a terminated worker', () => {
  it('a worker replaced by the watchdog while a sync host function blocks leaves no fd, mapping or timer behind', async () => {
    const pool = new SandboxPool({ guest: guest(), threads: 1, hostFunctions: hostModule });
    try {
      expect(dec(await pool.call('echo', enc('warm')))).toBe('warm');
      const oneWorker = kvmResources();
      expect(oneWorker.vcpuFds).toBeGreaterThan(0);
      expect(oneWorker.timers).toBeGreaterThan(0);
      const err = await pool.call('call_host', enc('block\x003000'), { timeoutMs: 100 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SandboxTimeoutError);
      // Answered by the replacement; the old thread is terminated once past its retire grace.
      expect(dec(await pool.call('echo', enc('after')))).toBe('after');
      expect(pool.stats().workerReplacements).toBe(1);
      expect(await settleTo(oneWorker)).toEqual(oneWorker);
      expect(dec(await pool.call('echo', enc('still')))).toBe('still');
    } finally {
      await pool.close();
    }
  });

  it('close({ force: true }) during a blocked sync host function leaves no fd, mapping or timer behind', async () => {
    const before = kvmResources();
    const pool = new SandboxPool({ guest: guest(), threads: 1, hostFunctions: hostModule });
    expect(dec(await pool.call('echo', enc('warm')))).toBe('warm');
    expect(kvmResources()).not.toEqual(before);
    const blocked = pool.call('call_host', enc('block\x003000')).catch((e: unknown) => e);
    // Let the call reach the host function (not a timing assertion: the close is forced either way).
    await new Promise((r) => setTimeout(r, 300));
    await pool.close({ force: true });
    expect(await blocked).toBeInstanceOf(ClosedError);
    expect(await settleTo(before)).toEqual(before);
  });
});
