/**
 * The vCPU lifecycle: one state machine, read top to bottom (after Firecracker's `vstate/vcpu.rs`).
 *
 *   created ──run──▶ running ⇄ paused            (pause: REQUEST=pause + kick; resume: REQUEST=none)
 *      │               │  │                       a debug exit pauses the vCPU by itself
 *      │               │  └──▶ crashed           (the guest died: shutdown, internal error, failed entry)
 *      └──────────────▶└─────▶ stopped           (hlt, a stop port, REQUEST=stop from any state)
 *
 * Where each part lives:
 * - this file: the states, the shared control words, the typed requests and replies between the
 *   main thread and a vCPU thread, which request each state allows (`ALLOWED`, refused with a
 *   `VcpuStateError`), the kick protocol (both halves, with its memory-ordering argument) and
 *   the check every wait of the vCPU thread makes (`waitCheck`);
 * - machine/vcpu-handle.ts: the main thread's handle on one vCPU — sends requests, kicks,
 *   pauses, resumes, stops; owns (and closes) the vCPU's fds and mappings if its thread dies;
 * - machine/thread-pool.ts: the worker threads, kept for reuse, and message routing;
 * - worker/src/vcpu-thread.ts: the thread's side — serves requests in its event loop, runs
 *   the state transitions (running → paused → running…);
 * - worker/src/run-loop.ts: KVM_RUN and the exit's way to the devices; every wait in it is a
 *   safe point (it sees pause, stop and kicks), and a paused read goes on waiting after resume;
 * - devices/src/exit-ring.ts: the ring the run loop posts to and waits on;
 * - machine/machine.ts: all vCPUs together, pause holders, exit reasons, close.
 *
 * Requests travel as typed postMessage events (`VcpuRequest` → `VcpuReply`); errors cross with
 * `encodeError`, so they keep their class, code and cause. "running" includes a vCPU waiting
 * for a device (CONTROL.READ_PENDING); "paused" may too — it goes on waiting when resumed,
 * and its state cannot be saved until the device answers.
 *
 * Waits never miss a wake-up: a thread outside KVM_RUN sleeps on a generation word (CONTROL.WAKE
 * while paused, the ring's WAKE word in a device wait) read before it looks at its requests; the
 * main thread changes REQUEST or KICK_REQ first and bumps that word after.
 */
import type { EncodedError } from '../errors.js';
import { VcpuStateError } from '../errors.js';
import type { VcpuExit } from '../exits.js';
import type { KvmRegs, KvmSregs } from '../ffi/index.js';
import type { OwnedResources } from '../thread-resources.js';
import type { VcpuSnapshot } from '../vcpu-state.js';
import type { Translation } from '../vcpu.js';

// ─── States ─────────────────────────────────────────────────────────────────────────────────

export const VCPU_STATE = { created: 0, running: 1, paused: 2, stopped: 3, crashed: 4 } as const;
/** A vCPU's lifecycle state: `created` → `running` ⇄ `paused` → `stopped` or `crashed` (final). */
export type VcpuState = keyof typeof VCPU_STATE;
export const VCPU_STATE_NAME: readonly VcpuState[] = ['created', 'running', 'paused', 'stopped', 'crashed'];

/** True for the states a vCPU never leaves. */
export function isFinal(s: VcpuState): boolean {
  return s === 'stopped' || s === 'crashed';
}

// ─── Shared control words (one Int32Array per vCPU, in a SharedArrayBuffer) ───────────────

export const CONTROL = {
  /** A VCPU_STATE value; written by the thread only, notified on change. */
  STATE: 0,
  /** Bumped by the main thread for each kick. */
  KICK_REQ: 1,
  /** The last KICK_REQ the thread has seen at a safe point. */
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
  /** OWNED bits: what the thread holds open now; it clears each bit before it closes that. */
  OWNED: 8,
  /** 1 while a device read of this vCPU waits for its answer (paused or not). */
  READ_PENDING: 9,
  /**
   * Bumped (and notified) by the main thread after each request or kick: a paused thread
   * sleeps on it with the value it read before looking at REQUEST/KICK_REQ, so no change is
   * missed between its look and its sleep.
   */
  WAKE: 10,
  WORDS: 11,
} as const;

export const REQUEST = { none: 0, pause: 1, stop: 2 } as const;

/**
 * Resources a vCPU thread opens (its vCPU and /dev/kvm fds; the VM fd is the Machine's): the
 * main thread closes what is still marked in CONTROL.OWNED if the thread dies (thread-resources.ts).
 */
export { OWNED, type OwnedResources } from '../thread-resources.js';

/** The realtime signal that kicks a vCPU thread out of KVM_RUN (SIGRTMIN+6 under glibc). */
export const KICK_SIGNAL = 40;

// ─── The kick protocol ──────────────────────────────────────────────────────────────────────
//
// A kick brings the thread to its next safe point (outside KVM_RUN, no access half done) and
// is acknowledged there. One kick is one event: bump KICK_REQ, set kvm_run.immediate_exit,
// and send one signal unless an earlier kick is still unacknowledged (that one's signal or
// immediate_exit is on its way, and the thread reads KICK_REQ at the safe point it brings it
// to, so it sees this kick too). There is no resend.
//
// Why no kick is lost (x86-64: V8 compiles Atomics RMW to lock-prefixed instructions and
// Atomics.store to xchg, both full fences; a syscall is one too):
//   kicker:  RMW KICK_REQ  →  store immediate_exit=1  →  RMW-read KICK_ACK  →  signal if all acked
//   thread:  store immediate_exit=0  →  RMW-read KICK_REQ  →  store KICK_ACK  →  KVM_RUN
// - If the thread's read of KICK_REQ comes after the kicker's bump, it sees the kick now.
// - Otherwise its clear of immediate_exit came before the bump, so the kicker's set comes
//   after the clear and stays: a KVM_RUN entered later returns EINTR at once (KVM reads
//   immediate_exit at entry), and the next safe point sees the kick.
// - A thread already inside KVM_RUN (past the entry check) is reached by the signal. When the
//   kicker sends none because a kick k is outstanding, the kicker's read of KICK_ACK came
//   before the thread acknowledged k; the thread acknowledges k at a safe point after the
//   read of KICK_REQ before which it had cleared immediate_exit — if that read missed this
//   kick, immediate_exit=1 (fenced before the kicker's read of KICK_ACK) makes the next entry
//   return at once.
// The signal stays blocked outside KVM_RUN: the thread takes it with sigtimedwait after an
// EINTR and whenever it acknowledges elsewhere, so at most a couple are ever queued per vCPU.

/**
 * The main thread's half: records a kick. Returns the kick's number (to wait for its
 * acknowledgement) and whether a signal must be sent (no earlier kick is outstanding).
 */
export function recordKick(ctl: Int32Array, setImmediateExit: () => void): { want: number; signal: boolean } {
  const before = Atomics.add(ctl, CONTROL.KICK_REQ, 1);
  setImmediateExit();
  const ack = Atomics.or(ctl, CONTROL.KICK_ACK, 0); // an RMW: the fence after the store above
  return { want: (before + 1) | 0, signal: ack === before };
}

/** True once the thread has acknowledged kick number `want` (or a later one). */
export function kickAcknowledged(ctl: Int32Array, want: number): boolean {
  return ((Atomics.load(ctl, CONTROL.KICK_ACK) - want) | 0) >= 0;
}

/**
 * The thread's half, at a safe point: clears immediate_exit, acknowledges every kick so far;
 * returns true if there was one. `takeSignals` consumes kick signals already queued.
 */
export function acknowledgeKicks(ctl: Int32Array, clearImmediateExit: () => void, takeSignals: () => void): boolean {
  clearImmediateExit();
  const req = Atomics.or(ctl, CONTROL.KICK_REQ, 0); // an RMW: the fence after the store above
  if (req === Atomics.load(ctl, CONTROL.KICK_ACK)) return false;
  takeSignals();
  Atomics.store(ctl, CONTROL.KICK_ACK, req);
  Atomics.notify(ctl, CONTROL.KICK_ACK);
  return true;
}

/**
 * What every wait of the vCPU thread asks when it wakes: kicks are acknowledged (a wait is a
 * safe point), then the request decides whether to go on waiting.
 */
export function waitCheck(ctl: Int32Array, ack: () => void): () => 'go-on' | 'pause' | 'stop' {
  return () => {
    ack();
    const r = Atomics.load(ctl, CONTROL.REQUEST);
    return r === REQUEST.stop ? 'stop' : r === REQUEST.pause ? 'pause' : 'go-on';
  };
}

// ─── Requests and replies ───────────────────────────────────────────────────────────────────

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
  /** The no-irqchip interrupt controller's state (soft-irq.ts), for the vCPU that takes its interrupts. */
  softIrq?: SharedArrayBuffer;
  /** Longest spin for a read's answer before sleeping, µs (MachineOptions.vcpuSpinUs). */
  replySpinUs: number;
}

export interface VcpuConfig {
  mode: 'real' | 'protected' | 'paged' | 'long' | 'user';
  entry: bigint;
  stack: bigint;
  regs?: Partial<KvmRegs>;
  /** IDTR base (CpuModeOptions.idt). */
  idt?: bigint;
  /** Start with RFLAGS.IF set. */
  interruptsEnabled?: boolean;
  /** Make the vCPU runnable (secondary vCPUs under an in-kernel irqchip wait for INIT/SIPI). */
  runnable?: boolean;
  systemArea?: bigint;
}

/** Guest debugging of one vCPU: KVM_SET_GUEST_DEBUG with the x86 debug registers. */
/** Debug settings of one vCPU (KVM_SET_GUEST_DEBUG), as `GuestDebugger` applies them. */
export interface GuestDebugConfig {
  /** Stop after each instruction. */
  singleStep?: boolean;
  /** Up to four addresses; instruction breakpoints and watchpoints share DR0–DR3. */
  breakpoints?: bigint[];
  /** Data watchpoints: `address`, `length` 1, 2, 4 or 8 bytes (aligned), on `write` or any `access`. */
  watchpoints?: {
    /** Guest address watched (aligned to `length`). */
    address: bigint;
    /** Bytes watched. */
    length: 1 | 2 | 4 | 8;
    /** Stop on writes only, or on any read or write. */
    kind: 'write' | 'access';
  }[];
  /** Intercept int3 (#BP) as a debug exit. */
  softwareBreakpoints?: boolean;
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

/** Each request: its argument and its answer. */
export interface VcpuRequests {
  init: [VcpuThreadInit, { tid: number; owned: OwnedResources }];
  /** Sets up CPU mode, CPUID, entry and stack. */
  configure: [VcpuConfig, void];
  /** Enters running; answered when the run loop ends for good (hlt, stop, crash…). */
  run: [undefined, RunEnd];
  getRegs: [undefined, KvmRegs];
  setRegs: [KvmRegs, void];
  getSregs: [undefined, KvmSregs];
  setSregs: [KvmSregs, void];
  /** The vCPU's whole state; completes a pending exit first (refused while a read is pending). */
  saveState: [{ irqchip: boolean }, VcpuSnapshot];
  /** Loads a state `saveState` returned (before `run`). */
  loadState: [VcpuSnapshot, void];
  /** Sets (or, with `{}`, clears) guest debugging. */
  setGuestDebug: [GuestDebugConfig, void];
  /** KVM_TRANSLATE through this vCPU's page tables. */
  translate: [bigint, Translation];
  /** Closes the vCPU (fd, mapping) and the thread's /dev/kvm fd, in the thread. */
  close: [undefined, void];
  /**
   * Fault injection for tests: an uncaught exception in the thread on its next turn, or
   * (`hang`) a thread that stops answering (its event loop blocks for good).
   */
  injectFault: [{ message: string; hang: boolean }, void];
}
export type VcpuRequestType = keyof VcpuRequests;

const STILL: readonly VcpuState[] = ['created', 'paused'];
/** Reading registers also works once the vCPU has ended (a crashed guest's rip…). */
const READABLE: readonly VcpuState[] = ['created', 'paused', 'stopped', 'crashed'];
const SAVABLE: readonly VcpuState[] = ['created', 'paused', 'stopped'];
const ANY: readonly VcpuState[] = VCPU_STATE_NAME;

/**
 * The states in which each request is served; any other state gets a VcpuStateError. `init`
 * comes before there is a state. A vCPU in KVM_RUN cannot serve ioctls: pause it first.
 */
export const ALLOWED: Record<VcpuRequestType, readonly VcpuState[]> = {
  init: ANY,
  configure: ['created'],
  run: ['created'],
  getRegs: READABLE,
  setRegs: STILL,
  getSregs: READABLE,
  setSregs: STILL,
  saveState: SAVABLE,
  loadState: ['created'],
  setGuestDebug: STILL,
  translate: READABLE,
  close: ANY,
  injectFault: ANY,
};

/** The refusal of `request` in state `state` (undefined if the state allows it). */
export function refusal(vcpu: number, state: VcpuState, request: VcpuRequestType): VcpuStateError | undefined {
  if (ALLOWED[request].includes(state)) return undefined;
  const hint = state === 'running' ? '; pause it first' : '';
  return new VcpuStateError(vcpu, state, `${request}() is allowed only when it is ${ALLOWED[request].join(', ')}${hint}`);
}

/** main → thread */
export type VcpuRequest = { [K in VcpuRequestType]: { id: number; type: K; arg: VcpuRequests[K][0] } }[VcpuRequestType];

/** A vCPU stopped at a debug exit; the thread has paused itself. */
export interface DebugStopEvent {
  kvmpoolEvent: 'debug-stop';
  vcpu: number;
  pc: bigint;
  dr6: bigint;
  exception: number;
}

/** thread → main: the answer to request `id`, or an event nobody asked for. */
export type VcpuReply =
  | { kvmpoolReply: number; ok: true; value: unknown }
  | { kvmpoolReply: number; ok: false; error: EncodedError }
  | DebugStopEvent;

/** What a vCPU thread tells the main thread unasked. */
export type VcpuThreadEvent = DebugStopEvent;
