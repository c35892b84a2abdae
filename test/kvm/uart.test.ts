import { describe, expect, it } from 'vitest';
import { createMachine } from '@kvmpool/core';
import { buildFlatGuest, exampleGuest } from '../support/build-c.js';
import { imm32 } from '../support/guest.js';

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
    await using vm = await createMachine({ memory: '2 MiB' });
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
    await using vm = await createMachine({ memory: '2 MiB', vcpus });
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

  it('bulk output through the coalesced THR arrives complete and in order', async () => {
    const N = 40_000;
    const guest = Uint8Array.from([
      0x31, 0xc9, //                     xor  %ecx, %ecx
      0xbb, ...imm32(N), //              mov  $N, %ebx
      0x66, 0xba, 0xfd, 0x03, //   1:    mov  $0x3fd, %dx      (LSR)
      0xec, //                     2:    in   (%dx), %al
      0xa8, 0x20, //                     test $0x20, %al       (THRE)
      0x74, 0xfb, //                     jz   2b
      0x89, 0xc8, //                     mov  %ecx, %eax
      0x66, 0xba, 0xf8, 0x03, //         mov  $0x3f8, %dx      (THR, coalesced)
      0xee, //                           out  %al, (%dx)
      0xff, 0xc1, //                     inc  %ecx
      0x39, 0xd9, //                     cmp  %ebx, %ecx
      0x72, 0xea, //                     jb   1b
      0x66, 0xba, 0x01, 0x05, //         mov  $0x501, %dx      (debug exit)
      0x31, 0xc0, //                     xor  %eax, %eax
      0xee, //                           out  %al, (%dx)
    ]);
    await using vm = await createMachine({ memory: '2 MiB' });
    const chunks: Buffer[] = [];
    vm.serial(0).on('data', (c: Buffer) => chunks.push(c));
    vm.load(0x10000, guest);
    await vm.start({ entry: 0x10000n, stack: 0x100000n });
    expect(await vm.waitForExit()).toEqual({ reason: 'debug-exit', code: 0 });
    await new Promise((r) => setImmediate(r));
    const got = Buffer.concat(chunks);
    expect(got.length).toBe(N);
    const firstWrong = got.findIndex((b, i) => b !== (i & 0xff));
    expect(firstWrong).toBe(-1);
  });
});
