/** The vCPU thread protocol lives in vcpu-lifecycle.ts (one state machine); this name stays for importers. */
export * from './vcpu-lifecycle.js';
