/**
 * 1,000 VM create/run/close cycles leave nothing behind. The cycles run in a plain Node process
 * (test/fixtures/lifecycle-child.mjs) rather than in the test runner's heap, whose own module
 * graph and allocations move RSS by several MiB over a run and would hide or fake a leak.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const CHILD = fileURLToPath(new URL('../fixtures/lifecycle-child.mjs', import.meta.url));

describe('VM lifecycle', () => {
  it('1,000 create/run/close cycles leave fds, mappings and RSS where they were', () => {
    const r = spawnSync(process.execPath, ['--expose-gc', CHILD], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const moved = JSON.parse(r.stdout) as { fds: number; maps: number; heapUsed: number; rssBeyondHeap: number };
    expect(moved.fds).toBe(0);
    expect(Math.abs(moved.maps)).toBeLessThanOrEqual(8);
    // The live heap stays flat, and RSS beyond V8's heap grows by less than 4 KiB a cycle
    // (a leaked 2 MiB guest memory, or a kvm_run mapping, per cycle would be far more).
    expect(moved.heapUsed).toBeLessThan(2 * 2 ** 20);
    expect(moved.rssBeyondHeap).toBeLessThan(4 * 2 ** 20);
  });
});
