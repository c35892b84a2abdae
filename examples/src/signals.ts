/** Ctrl-C (or SIGTERM) stops the vCPUs and releases every fd, mapping and thread before exiting. */
import type { Machine } from '@kvmpool/core';

export function releaseOnSignal(vm: Machine): void {
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\n${signal}: stopping the VM\n`);
    void vm.close().then(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}
