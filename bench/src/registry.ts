/** Every benchmark `npm run bench -- <name>` can run, by name. Add new ones here. */
import type { Benchmark } from './harness.js';
import { exitBus } from './exit-bus.js';
import { js } from './js.js';
import { lifecycle } from './lifecycle.js';
import { linux } from './linux.js';
import { queue } from './queue.js';
import { sandbox } from './sandbox.js';
import { snapshot } from './snapshot.js';
import { virtio } from './virtio.js';

export const BENCHMARKS: readonly Benchmark[] = [lifecycle, exitBus, sandbox, snapshot, linux, js, virtio, queue];

export function findBenchmark(name: string): Benchmark | undefined {
  return BENCHMARKS.find((b) => b.name === name);
}
