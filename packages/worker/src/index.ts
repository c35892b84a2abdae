/**
 * @kvmpool/worker: the vCPU thread. Machines start it from `@kvmpool/worker/vcpu-thread`.
 *
 * @packageDocumentation
 * @module @kvmpool/worker
 */
export { RunLoop, type FastRegisterView, type RunLoopOptions } from './run-loop.js';

/** The module specifier of the vCPU thread entry, for `new Worker(...)`. */
export const VCPU_THREAD_ENTRY = new URL('./vcpu-thread.js', import.meta.url);
