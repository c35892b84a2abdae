// Errors cross the worker boundary with their class, code, fields and cause.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostFunctionError, KvmError, KvmUnsupportedError, SandboxPool, SandboxWorkerError } from '@kvmpool/core';
import { buildSandboxGuest } from '../support/build-c.js';

const hostModule = new URL('../fixtures/pool-host-functions.mjs', import.meta.url);
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

class CustomFailure extends Error {
  override name = 'CustomFailure';
}

let pool: SandboxPool;
beforeAll(() => {
  pool = new SandboxPool({
    guest: buildSandboxGuest('pool-guest.c'),
    threads: 1,
    hostFunctions: hostModule,
    asyncHostFunctions: {
      rejects: async () => {
        throw new CustomFailure('custom async failure');
      },
    },
  });
});
afterAll(async () => {
  await pool.close();
});

describe('SandboxPool errors across threads', () => {
  it("a sync host function's error arrives as HostFunctionError whose cause is the original", async () => {
    const err = await pool.call('call_host', enc('typed\0')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostFunctionError);
    expect(err).toMatchObject({ code: 'ERR_KVMPOOL_HOST_FUNCTION', function: 'typed' });
    const cause = (err as Error).cause;
    expect(cause).toBeInstanceOf(TypeError);
    expect(cause).toMatchObject({ message: 'bad thing in the host', detail: 'kept' });
  });

  it("an async host function's rejection arrives as HostFunctionError whose cause keeps name and message", async () => {
    const err = await pool.call('call_host', enc('rejects\0')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostFunctionError);
    expect((err as Error).message).toMatch(/custom async failure/);
    expect((err as Error).cause).toMatchObject({ name: 'CustomFailure', message: 'custom async failure' });
  });

  it('a KvmUnsupportedError thrown in a host function stays that class', async () => {
    const err = await pool.call('call_host', enc('unsupported\0')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostFunctionError);
    expect((err as Error).cause).toBeInstanceOf(KvmUnsupportedError);
    expect((err as Error).cause).toMatchObject({ feature: 'teleport', code: 'ERR_KVMPOOL_UNSUPPORTED' });
  });

  it('a worker that cannot open KVM fails calls with SandboxWorkerError whose cause is the KvmError', async () => {
    const p = new SandboxPool({ guest: buildSandboxGuest('pool-guest.c'), threads: 1, kvmPath: '/dev/null' });
    try {
      const err = await p.call('echo', enc('x')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SandboxWorkerError);
      expect((err as Error).cause).toBeInstanceOf(KvmError);
      expect((err as Error).cause).toMatchObject({ code: 'ENOTTY' });
    } finally {
      await p.close();
    }
  });
});
