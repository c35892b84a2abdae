/**
 * Console: a guest that prints a banner and echoes what you type, through the 16550 UART.
 * Ctrl-D ends it (the guest writes the debug-exit port); Ctrl-C stops the VM from the host.
 *   node examples/dist/console.js
 */
import { createMachine } from '@kvmpool/core';
import { GUEST_BASE, buildGuest } from './build-guest.js';
import { releaseOnSignal } from './signals.js';

await using vm = await createMachine({ memory: '2 MiB' });
releaseOnSignal(vm);
const serial = vm.serial(0);
serial.pipe(process.stdout);
if (process.stdin.isTTY) process.stdin.setRawMode(true); // keys straight to the guest; Ctrl-C still stops us
process.stdin.on('data', (d: Buffer) => {
  if (d.includes(0x03)) process.kill(process.pid, 'SIGINT');
});
process.stdin.pipe(serial);
vm.load(GUEST_BASE, buildGuest('console'));
await vm.start({ entry: GUEST_BASE, stack: 0x100000n });
const exit = await vm.waitForExit();
process.stdin.unpipe(serial);
process.stdin.pause();
if (process.stdin.isTTY) process.stdin.setRawMode(false);
if (exit.reason !== 'debug-exit') console.error(`\nconsole guest ended: ${exit.reason}`);
