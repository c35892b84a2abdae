/** Ctrl-C (or SIGTERM) stops the guests and releases every fd, mapping and thread before exiting. */
import type { Machine, SandboxPool } from '@kvmpool/core';

const exitCode = (signal: NodeJS.Signals): number => (signal === 'SIGINT' ? 130 : 143);

export function releaseOnSignal(vm: Machine): void {
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\n${signal}: stopping the VM\n`);
    void vm.close().then(() => process.exit(exitCode(signal)));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}

/**
 * The same for a SandboxPool: aborts `calls` (pass its signal to every pool.call, so queued
 * calls never start and running ones are kicked out of their vCPU), then closes the pool —
 * its workers and their VMs — and exits.
 */
export function closePoolOnSignal(pool: SandboxPool, calls?: AbortController): void {
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\n${signal}: closing the sandbox pool\n`);
    calls?.abort(new Error(`${signal} received`));
    void pool.close().then(() => process.exit(exitCode(signal)));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}
