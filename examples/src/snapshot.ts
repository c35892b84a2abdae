/**
 * Snapshot and restore: a guest prints a long deterministic sequence (a counter and a running
 * hash kept in guest memory); the VM is snapshotted mid-way and stopped; a fresh VM restored
 * from the file prints the rest. The two halves together must equal an uninterrupted run.
 *   node examples/dist/snapshot.js [--lines 300]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Machine, createMachine } from '@kvmpool/core';
import { GUEST_BASE, buildGuest } from './build-guest.js';

const { values } = parseArgs({ options: { lines: { type: 'string', default: '300' } } });
const lines = BigInt(values.lines);
const code = buildGuest('counter');

async function run(stopAfterBytes?: number, path?: string): Promise<string> {
  await using vm = await createMachine({ memory: '2 MiB' });
  let out = '';
  vm.serial(0).on('data', (c: Buffer) => (out += c.toString('latin1')));
  vm.load(GUEST_BASE, code);
  await vm.start({ entry: GUEST_BASE, stack: 0x100000n, regs: () => ({ rdi: lines }) });
  if (stopAfterBytes === undefined || !path) {
    await vm.waitForExit();
    return out;
  }
  while (out.length < stopAfterBytes) await new Promise((r) => setTimeout(r, 1));
  await vm.pause();
  await new Promise((r) => setImmediate(r));
  const info = await vm.snapshot(path);
  console.log(`snapshot after ${out.length} bytes of output: ${info.path}, ${(info.bytes / 1024).toFixed(1)} KiB (${info.pages} non-zero pages of 512), ${info.milliseconds.toFixed(1)} ms`);
  return out;
}

const dir = mkdtempSync(join(tmpdir(), 'kvmpool-snapshot-'));
try {
  const full = await run();
  const path = join(dir, 'counter.kvmsnap');
  const first = await run(Math.floor(full.length / 2), path);
  const t0 = performance.now();
  await using restored = await Machine.restore(path);
  console.log(`restored into a fresh VM in ${(performance.now() - t0).toFixed(1)} ms`);
  let rest = '';
  restored.serial(0).on('data', (c: Buffer) => (rest += c.toString('latin1')));
  await restored.start();
  const exit = await restored.waitForExit();
  const ok = first + rest === full;
  console.log(`first VM printed ${first.split('\n').length - 1} lines, the restored one ${rest.split('\n').length - 1} more, then ${exit.reason}`);
  console.log(`last line: ${full.trimEnd().split('\n').at(-1)}`);
  console.log(ok ? 'before + after the snapshot = the uninterrupted run: identical' : 'MISMATCH between the restored run and the uninterrupted one');
  if (!ok) process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
