/**
 * The main-thread end of remote host calls (remote-call.ts): the slots, which the pool hands
 * to one worker call at a time, and the device on the dispatcher's PIO bus whose reads run the
 * async host functions. Main thread only: no locks, the bookkeeping is plain fields.
 */
import { Bus, Dispatcher, RingProducer, createDoorbell, createRingBuffer, type Device } from '@kvmpool/devices';
import { HostFunctionError } from '../errors.js';
import { toBytesOrEmpty } from '../util/bytes.js';
import { CALL_BUFFER_BYTES, CB, CB_GEN_WORD, REMOTE_CALL_PORT, REMOTE_STATUS, type RemoteSlot } from './remote-call.js';
import { boundedErrorJson } from './reply-codec.js';

export type AsyncHostFunction = (arg: Uint8Array) => unknown;

export class HostCallSlots {
  readonly slots: RemoteSlot[];
  readonly doorbell = createDoorbell();
  /** Per slot: the worker seat using it, or -1. */
  readonly #owner: number[];
  /** Per slot: host functions the device is still running for it. */
  readonly #pending: number[];
  readonly #dispatcher: Dispatcher;
  /** Late answers the device dropped (their call had been abandoned). */
  lateAnswers = 0;

  constructor(count: number, fns: Readonly<Record<string, AsyncHostFunction>>) {
    this.slots = Array.from({ length: count }, () => ({ ring: createRingBuffer(), callBuffer: new SharedArrayBuffer(CALL_BUFFER_BYTES) }));
    this.#owner = this.slots.map(() => -1);
    this.#pending = this.slots.map(() => 0);
    const pio = new Bus('pio');
    // The sandbox thread reads a 4-byte status: the range must hold the whole access.
    pio.register(REMOTE_CALL_PORT, 4, this.#device(fns));
    this.#dispatcher = new Dispatcher(pio, new Bus('mmio'), this.doorbell);
    this.slots.forEach((s, i) => this.#dispatcher.addRing(i, s.ring, this.doorbell));
    this.#dispatcher.start();
  }

  /** A slot nobody uses and no abandoned call still holds, now owned by `seat`; -1 if none. */
  acquire(seat: number): number {
    for (let i = 0; i < this.slots.length; i++) {
      if (this.#owner[i] === -1 && this.#pending[i] === 0) {
        this.#owner[i] = seat;
        return i;
      }
    }
    return -1;
  }

  /** `seat` gives slot `i` back; it is reused once no host function runs for it. */
  release(i: number): void {
    if (i >= 0 && i < this.slots.length) this.#owner[i] = -1;
  }

  /** Wakes a worker waiting on slot `i` (it then looks at its cancel flag and deadline). */
  wake(i: number): void {
    const slot = this.slots[i];
    if (slot) RingProducer.wake(slot.ring);
  }

  async stop(): Promise<void> {
    await this.#dispatcher.stop();
  }

  #device(fns: Readonly<Record<string, AsyncHostFunction>>): Device {
    const dec = new TextDecoder();
    return {
      name: 'sandbox-host-call',
      write: () => {},
      read: async (_offset, status, source) => {
        const i = source ?? -1;
        const slot = this.slots[i];
        const st = new DataView(status.buffer, status.byteOffset, 4);
        if (!slot) {
          st.setInt32(0, REMOTE_STATUS.UNKNOWN, true);
          return;
        }
        const buf = new Uint8Array(slot.callBuffer);
        const view = new DataView(slot.callBuffer);
        const words = new Int32Array(slot.callBuffer, 0, CB.DATA / 4);
        // The worker wrote the call before posting the read; the dispatcher's load of the ring
        // tail synchronises with its store, so these plain reads see the whole call.
        const gen = Atomics.load(words, CB_GEN_WORD);
        const nameLen = Math.min(view.getUint32(CB.NAME_LEN, true), CALL_BUFFER_BYTES - CB.DATA);
        const argLen = Math.min(view.getUint32(CB.ARG_LEN, true), CALL_BUFFER_BYTES - CB.DATA - nameLen);
        const cap = Math.min(view.getUint32(CB.RESULT_CAP, true), CALL_BUFFER_BYTES - CB.DATA);
        const name = dec.decode(buf.subarray(CB.DATA, CB.DATA + nameLen));
        const arg = buf.slice(CB.DATA + nameLen, CB.DATA + nameLen + argLen);
        const fn = Object.hasOwn(fns, name) ? fns[name] : undefined;
        let code: number;
        let out: Uint8Array;
        this.#pending[i]!++;
        try {
          if (!fn) throw new HostFunctionError(name, 'no such host function');
          out = toBytesOrEmpty(await fn(arg), `asyncHostFunctions.${name} result`);
          code = out.length;
          if (out.length > cap) {
            code = REMOTE_STATUS.TOO_LARGE;
            out = boundedErrorJson(new HostFunctionError(name, `returned ${out.length} bytes; the guest's buffer holds ${cap}`));
          }
        } catch (e) {
          code = REMOTE_STATUS.THREW;
          out = boundedErrorJson(e);
        } finally {
          // The dispatcher answers the ring read in a microtask after this promise settles;
          // the slot is free for another call only after that (setImmediate runs later).
          setImmediate(() => this.#pending[i]!--);
        }
        // An abandoned call's answer is dropped: its worker moved on (and bumped GEN).
        if (Atomics.load(words, CB_GEN_WORD) !== gen) {
          this.lateAnswers++;
          return;
        }
        buf.set(out, CB.DATA);
        view.setUint32(CB.OUT_LEN, out.length, true);
        st.setInt32(0, code, true);
      },
    };
  }
}
