/** `Sandbox`: an SDK sandbox VM on the caller's thread, synchronous calls, pristine state per call. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { GuestCrashError, Sandbox, SandboxTimeoutError } from '@kvmpool/core';
import { buildSandboxGuest } from '../support/build-c.js';

const elf = new Uint8Array(readFileSync(buildSandboxGuest('hostile-guest.c')));
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

describe('Sandbox on the calling thread', () => {
  it('calls run synchronously here; a crash and a time-out fail only their call', () => {
    using sb = new Sandbox({ guest: elf, timeoutMs: 2000 });
    expect(sb.exports).toContain('echo');
    expect(dec(sb.call('echo', 'hello').output)).toBe('hello');
    expect(() => sb.call('crash')).toThrow(GuestCrashError);
    expect(() => sb.call('spin', '', { timeoutMs: 30 })).toThrow(SandboxTimeoutError);
    expect(dec(sb.call('echo', 'again').output)).toBe('again');
  });

  it('checks its options and refuses calls after close()', () => {
    expect(() => new Sandbox({ guest: elf, timeoutMs: -1 })).toThrow(RangeError);
    expect(() => new Sandbox({ guest: elf, memory: {} as unknown as string })).toThrow(TypeError);
    const sb = new Sandbox({ guest: elf });
    sb.close();
    sb.close();
    expect(() => sb.call('echo', 'x')).toThrow(/closed/);
  });
});
