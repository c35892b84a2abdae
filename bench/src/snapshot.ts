/**
 * Snapshot and restore of a 64 MiB guest: a CPL 3 guest spinning, with a quarter of its memory
 * holding data (the rest zero, which snapshots skip). `snapshot-64m` times `vm.snapshot(path)`
 * (pause, vCPU and device state, sparse memory, file written); `restore-64m` times
 * `Machine.restore(path)` until the machine is ready to start. Reports the file size too.
 */
import { rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Machine, createMachine } from '@kvmpool/core/internal';
import { runBenchmark, type BenchCase, type BenchOptions, type BenchReport, type Benchmark } from './harness.js';

const MEMORY = 64 << 20;
const SPIN = Uint8Array.from([0x48, 0xff, 0xc0, 0xeb, 0xfb]); // 1: inc %rax; jmp 1b

function fillData(vm: Machine): void {
  // A quarter of the pages hold pseudo-random bytes, spread over the whole memory.
  const bytes = vm.memory.view(0, MEMORY);
  let x = 0x9e3779b9;
  for (let page = 64; page < MEMORY / 4096; page += 4) {
    for (let i = page * 4096; i < (page + 1) * 4096; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      bytes[i] = x & 0xff;
      bytes[i + 1] = (x >>> 8) & 0xff;
      bytes[i + 2] = (x >>> 16) & 0xff;
      bytes[i + 3] = (x >>> 24) & 0xff;
    }
  }
}

export const snapshot: Benchmark = {
  name: 'snapshot',
  description: 'snapshot and restore of a 64 MiB guest (a quarter of it data): time and file size',
  async run(options: BenchOptions): Promise<BenchReport> {
    const path = join(tmpdir(), `kvmpool-bench-${process.pid}.kvmsnap`);
    const vm = await createMachine({ memory: MEMORY });
    try {
      vm.load(0x10000, SPIN);
      fillData(vm);
      await vm.start({ entry: 0x10000n, stack: 0x80000n });
      let pages = 0;
      const snapshotCase: BenchCase = {
        id: 'snapshot-64m',
        label: 'vm.snapshot(): 64 MiB guest, 16 MiB of data, to a file',
        async runBatch(n) {
          const out: number[] = [];
          for (let i = 0; i < n; i++) {
            const t0 = process.hrtime.bigint();
            const info = await vm.snapshot(path);
            out.push(Number(process.hrtime.bigint() - t0));
            pages = info.pages;
          }
          return out;
        },
        extras: () => ({ file_bytes: statSync(path).size, pages, memory_bytes: MEMORY }),
      };
      const restoreCase: BenchCase = {
        id: 'restore-64m',
        label: 'Machine.restore(): the same file into a fresh VM, ready to start',
        ratioVs: 'snapshot-64m',
        async runBatch(n) {
          const out: number[] = [];
          for (let i = 0; i < n; i++) {
            const t0 = process.hrtime.bigint();
            const restored = await Machine.restore(path);
            out.push(Number(process.hrtime.bigint() - t0));
            await restored.close();
          }
          return out;
        },
        extras: () => ({ file_bytes: statSync(path).size }),
      };
      return await runBenchmark('snapshot', [snapshotCase, restoreCase], options.quick ? { iterations: 6, batch: 2 } : { iterations: 20, batch: 4 });
    } finally {
      await vm.close();
      rmSync(path, { force: true });
    }
  },
};
