// Supervision: a worker that dies is replaced with its channel and serve loop, its call fails
// with SandboxWorkerError, host-call slots are reused, and an idle pool lets the process end.
import { describe, expect, it } from 'vitest';
import { SandboxPool, SandboxWorkerError } from '@kvmpool/core';
import { buildSandboxGuest } from '../support/build-c.js';
import { runPoolChild } from '../support/pool-child.js';

const hostModule = new URL('../fixtures/pool-host-functions.mjs', import.meta.url);
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
const guest = (): string => buildSandboxGuest('pool-guest.c');

describe('SandboxPool supervision', () => {
  it('a worker that dies fails its call with SandboxWorkerError and is replaced, again and again', async () => {
    const pool = new SandboxPool({ guest: guest(), threads: 1, hostFunctions: hostModule });
    try {
      for (let i = 0; i < 3; i++) {
        await expect(pool.call('call_host', enc('die\0x'))).rejects.toThrow(SandboxWorkerError);
        expect(dec(await pool.call('call_host', enc(`upper\0round ${i}`)))).toBe(`ROUND ${i}`);
      }
      expect(pool.stats().workerReplacements).toBe(3);
    } finally {
      await pool.close();
    }
  });

  it('host-call slots of dead workers are released and reused', async () => {
    // Two threads have six slots (pool.ts: two per thread, two spare); a worker keeps the slot it
    // took for its first call. Were a dead worker's slot never released, four deaths and the two
    // live workers would hold all six, and the calls after the next death would find none.
    const pool = new SandboxPool({ guest: guest(), threads: 2, hostFunctions: hostModule, asyncHostFunctions: { twice: async (a) => `${dec(a)}${dec(a)}` } });
    try {
      for (let i = 0; i < 6; i++) {
        await expect(pool.call('call_host', enc('die\0x'))).rejects.toThrow(SandboxWorkerError);
        expect(dec(await pool.call('call_host', enc(`twice\0${i}`)))).toBe(`${i}${i}`);
      }
      const all = await Promise.all([0, 1, 2, 3].map((i) => pool.call('call_host', enc(`twice\0p${i}`))));
      expect(all.map(dec)).toEqual(['p0p0', 'p1p1', 'p2p2', 'p3p3']);
    } finally {
      await pool.close();
    }
  });

  it('an idle pool that is never closed does not keep the process alive', async () => {
    const result = await runPoolChild('idle');
    expect(result).toEqual({ code: 0, stdout: 'ping\n', killed: false });
  });

  it('an awaited close() finishes with the process otherwise idle (idle workers do not keep it alive, but the close does)', async () => {
    const result = await runPoolChild('close');
    expect(result).toEqual({ code: 0, stdout: 'ping\npong\nclosed\n', killed: false });
  });
});
