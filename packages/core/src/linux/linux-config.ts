/** The syscall layer's configuration from what a LinuxPool sends its workers. */
import type { LinuxWorkerProgram } from '../sandbox/pool-worker.js';
import type { LinuxProgramConfig } from './syscall-layer.js';

/** The uid and gid a program runs as (an unprivileged user, as a sandboxed program should see). */
export const PROGRAM_IDS = { uid: 1000, gid: 1000 } as const;

export function linuxConfig(p: Pick<LinuxWorkerProgram, 'files' | 'maxOutput' | 'outputLimit' | 'strict'>): LinuxProgramConfig {
  return { files: new Map(p.files), maxOutput: p.maxOutput, outputLimit: p.outputLimit, strict: p.strict, ids: PROGRAM_IDS };
}
