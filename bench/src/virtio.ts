/**
 * virtio devices against their host-side equivalents, with the guest driver of
 * examples/guests/virtio-guest.c (CPL 3, polling the used rings):
 *   virtio-blk-4k / -1m   a guest read of 4 KiB / 1 MiB from a file disk, one request at a time; a sample is
 *                         the time between two completions (the guest's whole cycle: completion seen, next
 *                         request made and notified, the read into guest RAM)
 *   host-read-4k / -1m    fs.readSync of the same bytes of the same file into a host buffer
 *   virtio-console-1m     1 MiB out of the virtio console (64 KiB buffers, 4 in flight), per MiB on the stream
 *   uart-bulk-1m          1 MiB out of the 16550 (one OUT per byte, coalesced PIO: the exit-bus benchmark's guest),
 *                         from the guest's first byte (start() excluded) to the last byte on the stream; 64 KiB
 *                         measured and scaled to 1 MiB
 * notify-exit pays the dispatcher's posted-write bound (postedWriteBoundMs, default 1 ms): the QueueNotify
 * write is posted (the vCPU does not wait), and a dozing dispatcher takes posted writes within the bound.
 *   notify-ioeventfd      one 8-byte virtio-rng request's cycle with QueueNotify through KVM_IOEVENTFD and the
 *                         watcher thread (Atomics.waitAsync wake of the main thread)
 *   notify-exit           the same with QueueNotify as an MMIO exit through the dispatcher
 *   wake-atomics /        why the watcher wakes the main thread with Atomics: a main → worker → main round trip
 *   wake-postmessage      answered with Atomics.notify (taken with Atomics.waitAsync) or with postMessage
 * Targets: virtio-console-1m ≥ 20× faster than uart-bulk-1m; virtio-blk-1m ≤ 2× host-read-1m.
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMachine, virtioBlk, virtioConsole, virtioRng, type Machine, type VirtioDeviceSpec } from '@kvmpool/core/internal';
import type { VirtioActivation } from '@kvmpool/devices';
import { uartBulkRun } from './exit-bus-uart.js';
import { runBenchmark, type BenchCase, type BenchOptions, type BenchReport, type Benchmark } from './harness.js';
import { CODE, MODE, STACK, virtioGuest, writeParams } from './virtio-guest.js';
import { wakeProbe } from './virtio-wake.js';

const MIB = 1 << 20;
const DISK_BYTES = 4 * MIB;
/** The UART moves ~100 KiB/s (one coalesced OUT per byte): measured over 64 KiB and scaled, as the exit-bus benchmark does. */
const UART_BYTES = 64 << 10;
/** Requests run (and dropped) before the measured ones of a batch. */
const WARM = 3;
const now = (): number => Number(process.hrtime.bigint());

/**
 * Stamps every completion (used-ring push) on the spec's queue `queue`. Not the device's process() calls: a
 * device takes every chain available, and a polling guest that sees a completion makes its next request
 * while the device is still in that loop, so one process() call may serve many requests in a row.
 */
function stamped(spec: VirtioDeviceSpec, queue: number, stamps: number[]): VirtioDeviceSpec {
  const d = spec.virtio;
  const activate = d.activate.bind(d);
  (d as { activate: (ctx: VirtioActivation) => void }).activate = (ctx: VirtioActivation) => {
    const q = ctx.queues[queue];
    if (q) {
      const push = q.push.bind(q);
      (q as { push: (head: number, written: number) => void }).push = (head: number, written: number) => {
        push(head, written);
        stamps.push(now());
      };
    }
    activate(ctx);
  };
  return spec;
}

/** Runs a fresh machine with `devices` and the guest in `mode` to its halt. */
async function runGuest(devices: VirtioDeviceSpec[], mode: number, arg0: number, arg1: number, onStart?: (m: Machine) => void): Promise<void> {
  const m = await createMachine({ memory: '8 MiB', devices });
  try {
    m.load(CODE, virtioGuest());
    writeParams(m, mode, arg0, arg1);
    onStart?.(m);
    await m.start({ entry: CODE, stack: STACK });
    const exit = await m.waitForExit();
    if (exit.reason !== 'halted') throw new Error(`virtio bench guest ended with ${exit.reason}${'error' in exit ? `: ${exit.error.message}` : ''}`);
  } finally {
    await m.close();
  }
}

/** `n` cycle times: the gaps between the last n + 1 stamps. */
function gaps(stamps: readonly number[], n: number): number[] {
  if (stamps.length < n + 1) throw new Error(`virtio bench: ${stamps.length} completions seen, ${n + 1} needed`);
  const tail = stamps.slice(-(n + 1));
  return tail.slice(1).map((t, i) => t - tail[i]!);
}

function blkCase(id: string, label: string, path: string, bytes: number): BenchCase {
  return {
    id,
    label,
    ratioVs: `host-read-${id.split('-').pop()!}`,
    async runBatch(n) {
      const stamps: number[] = [];
      await runGuest([stamped(virtioBlk({ backing: { path, readOnly: true } }), 0, stamps)], MODE.BENCH_BLK, bytes, n + WARM + 1);
      return gaps(stamps, n);
    },
  };
}

function hostReadCase(id: string, label: string, path: string, bytes: number): BenchCase {
  const buf = Buffer.alloc(bytes);
  return {
    id,
    label,
    runBatch(n) {
      const fd = openSync(path, 'r');
      try {
        const out: number[] = [];
        for (let i = 0; i < n; i++) {
          const t0 = now();
          if (readSync(fd, buf, 0, bytes, 0) !== bytes) throw new Error('host read: short read');
          out.push(now() - t0);
        }
        return out;
      } finally {
        closeSync(fd);
      }
    },
  };
}

function notifyCase(id: string, label: string, notify: 'ioeventfd' | 'exit'): BenchCase {
  return {
    id,
    label,
    ratioVs: 'notify-exit',
    async runBatch(n) {
      const stamps: number[] = [];
      await runGuest([stamped(virtioRng({ notify }), 0, stamps)], MODE.NOTIFY, n + WARM + 1, 0);
      return gaps(stamps, n);
    },
  };
}

export const virtio: Benchmark = {
  name: 'virtio',
  description: 'virtio-blk/console/rng in a machine vs host reads and the UART; ioeventfd vs MMIO-exit notifies',
  async run(options: BenchOptions): Promise<BenchReport> {
    const dir = mkdtempSync(join(tmpdir(), 'kvmpool-bench-virtio-'));
    const path = join(dir, 'disk.img');
    const image = Buffer.alloc(DISK_BYTES);
    for (let i = 0; i < image.length; i += 4) image.writeUInt32LE((i * 2654435761) >>> 0, i);
    writeFileSync(path, image);
    const wake = await wakeProbe();
    try {
      const consoleCase: BenchCase = {
        id: 'virtio-console-1m',
        label: '1 MiB out of the virtio console (64 KiB buffers, 4 in flight), per MiB',
        ratioVs: 'uart-bulk-1m',
        async runBatch(n) {
          const total = (n + 1) * MIB;
          const marks: number[] = [];
          let got = 0;
          await runGuest([virtioConsole()], MODE.BENCH_CONSOLE, total, 0, (m) => {
            m.virtioConsole(0).on('data', (chunk: Buffer) => {
              const before = Math.floor(got / MIB);
              got += chunk.length;
              for (let k = before; k < Math.floor(got / MIB); k++) marks.push(now());
            });
          });
          // The stream may hand over the last chunk a turn after the halt.
          for (let i = 0; i < 50 && got < total; i++) await new Promise((r) => setTimeout(r, 10));
          if (got !== total) throw new Error(`virtio console: ${got} of ${total} bytes`);
          return gaps(marks, n);
        },
      };
      const uartCase: BenchCase = {
        id: 'uart-bulk-1m',
        label: `1 MiB out of the 16550 (OUT per byte, coalesced PIO), start() excluded (${UART_BYTES >> 10} KiB measured, ×${MIB / UART_BYTES})`,
        async runBatch(n) {
          const out: number[] = [];
          for (let i = 0; i < n; i++) {
            const r = await uartBulkRun(UART_BYTES, false);
            if (r.misordered !== 0) throw new Error(`uart bulk: ${r.misordered} bytes out of order`);
            out.push((r.ns - r.startNs) * (MIB / UART_BYTES));
          }
          return out;
        },
      };
      const cases: BenchCase[] = [
        hostReadCase('host-read-4k', 'fs.readSync of 4 KiB of the disk file', path, 4096),
        blkCase('virtio-blk-4k', 'guest virtio-blk read of 4 KiB (file disk), completion to completion', path, 4096),
        hostReadCase('host-read-1m', 'fs.readSync of 1 MiB of the disk file', path, MIB),
        blkCase('virtio-blk-1m', 'guest virtio-blk read of 1 MiB (file disk), completion to completion', path, MIB),
        uartCase,
        consoleCase,
        notifyCase('notify-exit', 'rng 8-byte request, QueueNotify as an MMIO exit', 'exit'),
        notifyCase('notify-ioeventfd', 'rng 8-byte request, QueueNotify via KVM_IOEVENTFD + watcher thread', 'ioeventfd'),
        ...wake.cases,
      ];
      return await runBenchmark('virtio', cases, options.quick ? { iterations: 6, batch: 3 } : { iterations: 60, batch: 20 }, [
        { id: 'virtio-console-1m', maxRatio: 0.05 },
        { id: 'virtio-blk-1m', maxRatio: 2 },
      ]);
    } finally {
      await wake.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
