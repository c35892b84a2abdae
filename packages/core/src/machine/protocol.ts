/**
 * The contract between a machine (main thread) and its vCPU worker threads: the init message,
 * the control API served through comlink, and the shared control words.
 */
import type { KvmRegs, KvmSregs } from '../ffi/index.js';
import type { VcpuSnapshot } from '../vcpu-state.js';
import type { Translation } from '../vcpu.js';
import type { VcpuExit } from '../exits.js';

/** vCPU thread states (Firecracker's vstate: Running ⇄ Paused → Exited). */
export const VCPU_STATE = { created: 0, running: 1, paused: 2, stopped: 3, crashed: 4 } as const;
export type VcpuState = keyof typeof VCPU_STATE;
export const VCPU_STATE_NAME: readonly VcpuState[] = ['created', 'running', 'paused', 'stopped', 'crashed'];

/**
 * Control words, one Int32Array per vCPU in a SharedArrayBuffer.
 * KICK_REQ is bumped by the main thread for each kick; the worker copies it to KICK_ACK when
 * it is out of KVM_RUN at a safe point, so the kicker knows the kick landed and stops retrying.
 */
export const CONTROL = {
  STATE: 0,
  KICK_REQ: 1,
  KICK_ACK: 2,
  TID: 3,
  /** What the main thread asks of the vCPU at its next safe point: a REQUEST value. */
  REQUEST: 4,
  /** Exits handled (wraps). */
  EXITS: 5,
  /** Kicks that found the vCPU inside KVM_RUN (EINTR). */
  KICKS_IN_RUN: 6,
  /** Times the thread left the paused state (a resume that already re-paused still counts). */
  RESUMES: 7,
  WORDS: 8,
} as const;

export const REQUEST = { none: 0, pause: 1, stop: 2 } as const;

/** The realtime signal that kicks a vCPU thread out of KVM_RUN (SIGRTMIN+6 under glibc). */
export const KICK_SIGNAL = 40;

/** A register the worker answers from shared state (a device's fast path). */
export interface FastPathEntry {
  bus: 'pio' | 'mmio';
  address: bigint;
  size: number;
  state: SharedArrayBuffer;
  index: number;
}

export interface VcpuThreadInit {
  vmFd: number;
  vcpuId: number;
  ring: SharedArrayBuffer;
  doorbell: SharedArrayBuffer;
  control: SharedArrayBuffer;
  fastPath: FastPathEntry[];
  /** Ports whose OUT makes the vCPU stop at once (e.g. a debug-exit device), in addition to being posted. */
  stopPorts: number[];
  /** The VM has coalesced zones: the thread takes KVM's coalesced ring at each exit. */
  coalesced: boolean;
}

/** Why a vCPU's run loop ended. */
export type RunEnd =
  | { reason: 'kicked' }
  | { reason: 'stopped' }
  | { reason: 'hlt' }
  | { reason: 'stop-port'; port: number }
  | { reason: 'crashed'; exit: VcpuExit; rip: bigint; description: string }
  /** A KVM_EXIT_DEBUG (single step, breakpoint, watchpoint): the thread pauses itself. */
  | { reason: 'debug'; pc: bigint; dr6: bigint; exception: number };

/** What a vCPU thread tells the main thread unasked (besides comlink answers). */
export type VcpuThreadEvent = { kvmpoolEvent: 'debug-stop'; vcpu: number; pc: bigint; dr6: bigint; exception: number };

/** Guest debugging of one vCPU: KVM_SET_GUEST_DEBUG with the x86 debug registers. */
export interface GuestDebugConfig {
  singleStep?: boolean;
  /** Up to four addresses; instruction breakpoints and watchpoints share DR0–DR3. */
  breakpoints?: bigint[];
  watchpoints?: { address: bigint; length: 1 | 2 | 4 | 8; kind: 'write' | 'access' }[];
  /** Intercept int3 (#BP) as a debug exit. */
  softwareBreakpoints?: boolean;
}

/** The control API a vCPU worker serves (through comlink), only while outside KVM_RUN. */
export interface VcpuThreadApi {
  init(init: VcpuThreadInit): { tid: number; vcpuFd: number };
  /** Sets up CPU mode, CPUID, entry and stack. */
  configure(config: VcpuConfig): void;
  /** Enters Running; resolves when the run loop ends for a reason other than a kick. */
  run(): Promise<RunEnd>;
  /** Enters Paused (call after kicking; the run loop has returned). */
  pause(): VcpuState;
  /** Back to Running. */
  resume(): VcpuState;
  getRegs(): KvmRegs;
  setRegs(regs: KvmRegs): void;
  getSregs(): KvmSregs;
  setSregs(sregs: KvmSregs): void;
  state(): VcpuState;
  /** The vCPU's whole state (paused or not yet started); completes a pending exit first. */
  saveState(irqchip: boolean): VcpuSnapshot;
  /** Loads a state `saveState` returned (before `run`). */
  loadState(state: VcpuSnapshot): void;
  /** Sets (or, with `{}`, clears) guest debugging; the vCPU must be paused or not started. */
  setGuestDebug(config: GuestDebugConfig): void;
  /** KVM_TRANSLATE through this vCPU's page tables. */
  translate(gva: bigint): Translation;
  /** Closes the vCPU fd in its own thread. */
  close(): void;
  /** Fault injection for tests: throws an uncaught exception in the thread on its next turn. */
  injectFault(message: string): void;
}

export interface VcpuConfig {
  mode: 'real' | 'protected' | 'paged' | 'long' | 'user';
  entry: bigint;
  stack: bigint;
  regs?: Partial<KvmRegs>;
  /** Make the vCPU runnable (secondary vCPUs under an in-kernel irqchip wait for INIT/SIPI). */
  runnable?: boolean;
  systemArea?: bigint;
}
