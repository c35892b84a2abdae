/**
 * All-stop guest debugging of a machine: breakpoints and watchpoints on every vCPU, single
 * steps, and "continue until something stops". What the host cannot do at the guest's CPL
 * (see `debugSupport`) is refused with DebugUnsupportedError before the guest is touched.
 *
 * While the guest is stopped under the debugger, the debugger holds one pause hold on the
 * machine (`machine.holdPaused()`): an inspect or snapshot meanwhile does not let it run.
 */
import type { DebugStop, Machine, MachineExit, PauseHold } from '../machine/machine.js';
import type { GuestDebugConfig } from '../machine/vcpu-lifecycle.js';
import { DebugUnsupportedError, debugSupport, type DebugSupport, type DebugSupportLevel } from './support.js';

/** Why `step()` or `continue()` returned: a debug stop, the machine's end, or `interrupt()`. */
export type StopEvent =
  | {
    /** A vCPU stopped at a step, breakpoint or watchpoint. */
    kind: 'debug';
    /** Which vCPU, where and why. */
    stop: DebugStop;
  }
  | {
    /** The machine ended. */
    kind: 'exit';
    /** How. */
    exit: MachineExit;
  }
  | {
    /** `interrupt()` stopped the guest. */
    kind: 'interrupt';
  };

/**
 * Breakpoints, watchpoints and single steps on a `Machine`, with the other vCPUs held paused while one is
 * stopped. Each feature is checked against `debugSupport()` for the guest's CPL first: what the host cannot do
 * is refused with `DebugUnsupportedError` before the guest is touched. `detach()` clears everything and lets the
 * guest run.
 */
export class GuestDebugger {
  /** The machine being debugged. */
  readonly machine: Machine;
  /** What this host supports, from `debugSupport()`. */
  readonly support: DebugSupport;
  #breakpoints: bigint[] = [];
  #watchpoints: NonNullable<GuestDebugConfig['watchpoints']> = [];
  #waiters: ((e: StopEvent) => void)[] = [];
  #hold: PauseHold | undefined;
  readonly #onDebug = (stop: DebugStop): void => this.#deliver({ kind: 'debug', stop });
  readonly #onExit = (exit: MachineExit): void => this.#deliver({ kind: 'exit', exit });

  constructor(machine: Machine) {
    this.machine = machine;
    this.support = debugSupport(machine.kvm);
    machine.on('debug', this.#onDebug);
    machine.on('exit', this.#onExit);
  }

  #deliver(e: StopEvent): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w(e);
  }

  /** The next stop: a debug exit on any vCPU, the machine's exit, or `interrupt()`. */
  nextStop(): Promise<StopEvent> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** The privilege level vCPU `vcpu` runs at (it must be paused). */
  async cpl(vcpu: number): Promise<0 | 3> {
    const s = await this.machine.getSregs(vcpu);
    return (s.cs.selector & 3) === 3 ? 3 : 0;
  }

  async #require(vcpu: number, feature: keyof DebugSupportLevel): Promise<void> {
    const cpl = await this.cpl(vcpu);
    if (!this.support[cpl === 3 ? 'cpl3' : 'cpl0'][feature]) throw new DebugUnsupportedError(feature, cpl, this.machine.kvm.module);
  }

  #config(extra: GuestDebugConfig = {}): GuestDebugConfig {
    return { breakpoints: this.#breakpoints, watchpoints: this.#watchpoints, ...extra };
  }

  async #apply(extra: Partial<Record<number, GuestDebugConfig>> = {}): Promise<void> {
    for (let i = 0; i < this.machine.vcpuCount; i++) await this.machine.setGuestDebug(i, this.#config(extra[i]));
  }

  /** Sets the instruction breakpoints of every vCPU (machine paused). */
  async setBreakpoints(addresses: bigint[]): Promise<void> {
    if (addresses.length > 0) await this.#require(0, 'hardwareBreakpoints');
    if (addresses.length + this.#watchpoints.length > 4) throw new RangeError('at most 4 breakpoints and watchpoints together (x86 DR0–DR3)');
    this.#breakpoints = [...addresses];
    await this.#apply();
  }

  /** The instruction breakpoints set (guest addresses). */
  get breakpoints(): readonly bigint[] {
    return this.#breakpoints;
  }

  /** Sets the data watchpoints of every vCPU (machine paused). */
  async setWatchpoints(watchpoints: NonNullable<GuestDebugConfig['watchpoints']>): Promise<void> {
    if (watchpoints.length > 0) await this.#require(0, 'watchpoints');
    if (watchpoints.length + this.#breakpoints.length > 4) throw new RangeError('at most 4 breakpoints and watchpoints together (x86 DR0–DR3)');
    this.#watchpoints = [...watchpoints];
    await this.#apply();
  }

  /** The watchpoints set. */
  get watchpoints(): readonly NonNullable<GuestDebugConfig['watchpoints']>[number][] {
    return this.#watchpoints;
  }

  /**
   * Executes one instruction on vCPU `vcpu` (paused); the others stay paused. Resolves with
   * the stop after it (or the machine's exit).
   */
  async step(vcpu: number): Promise<StopEvent> {
    await this.#require(vcpu, 'singleStep');
    await this.machine.setGuestDebug(vcpu, this.#config({ singleStep: true }));
    const stop = this.nextStop();
    await this.machine.resumeVcpu(vcpu);
    const e = await stop;
    if (e.kind !== 'exit') await this.machine.setGuestDebug(vcpu, this.#config());
    return e;
  }

  /** Stops every vCPU and holds them stopped (one pause hold) until `continue()` or `detach()`. */
  async hold(): Promise<void> {
    this.#hold ??= await this.machine.holdPaused();
  }

  async #release(): Promise<void> {
    const h = this.#hold;
    this.#hold = undefined;
    await h?.release();
  }

  /**
   * Gives up the debugger's hold and the caller's `machine.pause()`, so every vCPU runs unless
   * another holder keeps them paused; resolves at the next stop, after holding all of them
   * paused again (all-stop).
   */
  async continue(): Promise<StopEvent> {
    const stop = this.nextStop();
    await this.#release();
    await this.machine.resume();
    const e = await stop;
    if (e.kind !== 'exit') await this.hold();
    return e;
  }

  /** Stops a `continue()` (gdb's Ctrl-C): holds every vCPU paused. */
  async interrupt(): Promise<void> {
    await this.hold();
    this.#deliver({ kind: 'interrupt' });
  }

  /** Clears every breakpoint and watchpoint and stops listening. */
  async detach(): Promise<void> {
    this.machine.off('debug', this.#onDebug);
    this.machine.off('exit', this.#onExit);
    this.#breakpoints = [];
    this.#watchpoints = [];
    await this.#apply();
    await this.#release();
  }
}
