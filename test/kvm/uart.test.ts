import { describe, expect, it } from 'vitest';
import { createVm } from '@kvmpool/core';
import { buildFlatGuest, exampleGuest } from '../support/build-c.js';

function collect(stream: NodeJS.ReadableStream): { text: () => string } {
  let text = '';
  stream.on('data', (c: Buffer) => (text += c.toString('latin1')));
  return { text: () => text };
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for guest output');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('16550 UART end to end', () => {
  it('the console guest prints its banner, echoes input (more than a FIFO of it) and exits on Ctrl-D', async () => {
    await using vm = await createVm({ memory: '2 MiB' });
    const serial = vm.serial(0);
    const out = collect(serial);
    vm.load(0x10000, buildFlatGuest(exampleGuest('console.S')));
    await vm.start({ entry: 0x10000n, stack: 0x100000n });
    await until(() => out.text().includes('Ctrl-D ends.\r\n'));
    const input = 'The quick brown fox jumps over the lazy dog 0123456789\r';
    serial.write(input);
    await until(() => out.text().includes('0123456789\r\n'));
    serial.write('\x04');
    expect(await vm.waitForExit()).toEqual({ reason: 'debug-exit', code: 0 });
    expect(out.text()).toBe(
      'kvmpool console guest (64-bit user mode). Type; Ctrl-D ends.\r\n' +
        'The quick brown fox jumps over the lazy dog 0123456789\r\n' +
        '\r\nbye\r\n',
    );
  });

  it('4 vCPUs share one UART under a guest spinlock: every line whole, the total right', async () => {
    const vcpus = 4;
    const n = 1_000_000n;
    await using vm = await createVm({ memory: '2 MiB', vcpus });
    const out = collect(vm.serial(0));
    vm.load(0x10000, buildFlatGuest(exampleGuest('smp.S')));
    await vm.start({
      entry: 0x10000n,
      stack: (i) => 0x100000n - BigInt(i) * 0x4000n,
      regs: (i) => ({ rdi: BigInt(i), rsi: BigInt(vcpus), rdx: n }),
    });
    expect(await vm.waitForExit()).toEqual({ reason: 'halted' });
    let expected = 0n;
    for (let i = 0n; i < n; i++) expected += i * i;
    expected &= 0xffff_ffff_ffff_ffffn;
    const lines = out.text().trimEnd().split('\n');
    expect(lines).toHaveLength(vcpus);
    const ids = lines.map((l) => Number(/^vcpu (\d): \d+$/.exec(l)?.[1]));
    expect(ids.sort()).toEqual([0, 1, 2, 3]);
    const sum = lines.reduce((s, l) => s + BigInt(l.split(': ')[1]!), 0n) & 0xffff_ffff_ffff_ffffn;
    expect(sum).toBe(expected);
    expect(vm.memory.readU64(0x30000)).toBe(expected);
  });
});
