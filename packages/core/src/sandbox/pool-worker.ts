/**
 * Piscina worker of a SandboxPool: holds one warm sandbox VM, made in this thread, and runs
 * calls on it. Results and errors travel back as plain data (piscina's structured clone would
 * drop the error classes).
 */
import { workerData } from 'node:worker_threads';
import { RECORD_KIND, RingProducer } from '@kvmpool/devices';
import { parseElf } from '../loader/elf.js';
import { HostFunctionError, encodeError, type EncodedError } from '../errors.js';
import { CALL_CONTROL, SandboxVm, type SyncHostFunction } from './sandbox-vm.js';
import { CALL_BUFFER_BYTES, CB, REMOTE_CALL_PORT, REMOTE_STATUS, type RemoteSlot } from './remote-call.js';
import { CH, CHANNEL_META_BYTES, channelLayout } from './call-channel.js';

export interface PoolWorkerData {
  elf: Uint8Array;
  source: string;
  memory: number;
  inputSize: number;
  outputSize: number;
  kvmPath?: string;
  hostModule?: string;
  remoteNames: string[];
  slots: RemoteSlot[];
  /** One word per slot: 0 free, 1 taken. */
  claims: SharedArrayBuffer;
  doorbell: SharedArrayBuffer;
  /** Per-call control words (CALL_CONTROL.WORDS each), indexed by a request's control slot. */
  controls: SharedArrayBuffer;
  /** One call channel per worker (see call-channel.ts). */
  channels: SharedArrayBuffer[];
}

/** The one task each worker runs: serve calls on channel `channel` until told to stop. */
export interface ServeTask {
  channel: number;
}

const data = workerData as PoolWorkerData;

function claimSlot(): number {
  const claims = new Int32Array(data.claims);
  for (let i = 0; i < claims.length; i++) if (Atomics.compareExchange(claims, i, 0, 1) === 0) return i;
  return -1;
}

function remoteCaller(slotIndex: number): (name: string, arg: Uint8Array, cap: number) => Uint8Array {
  const slot = data.slots[slotIndex];
  if (!slot) {
    return (name) => {
      throw new HostFunctionError(name, 'no exit-bus slot is free for main-thread host calls in this worker');
    };
  }
  const ring = new RingProducer(slot.ring, data.doorbell);
  const buf = new Uint8Array(slot.callBuffer);
  const view = new DataView(slot.callBuffer);
  const status = new Uint8Array(4);
  const enc = new TextEncoder();
  return (name, arg, cap) => {
    const nameBytes = enc.encode(name);
    if (CB.DATA + nameBytes.length + arg.length > CALL_BUFFER_BYTES) {
      throw new HostFunctionError(name, `argument of ${arg.length} bytes does not fit the ${CALL_BUFFER_BYTES}-byte call buffer`);
    }
    view.setUint32(CB.NAME_LEN, nameBytes.length, true);
    view.setUint32(CB.ARG_LEN, arg.length, true);
    view.setUint32(CB.RESULT_CAP, Math.min(cap, CALL_BUFFER_BYTES - CB.DATA), true);
    buf.set(nameBytes, CB.DATA);
    buf.set(arg, CB.DATA + nameBytes.length);
    ring.request(RECORD_KIND.IO_IN, REMOTE_CALL_PORT, 4, status, () => 'go-on');
    const st = new DataView(status.buffer).getInt32(0, true);
    const len = view.getUint32(CB.OUT_LEN, true);
    const out = buf.slice(CB.DATA, CB.DATA + len);
    if (st >= 0) return out;
    const text = new TextDecoder().decode(out);
    if (st === REMOTE_STATUS.TOO_LARGE) throw new HostFunctionError(name, `returned more than the guest's buffer holds (${cap} bytes)`);
    throw new HostFunctionError(name, text || 'failed on the main thread');
  };
}

async function start(): Promise<SandboxVm> {
  let hostFunctions: Record<string, SyncHostFunction> = {};
  if (data.hostModule) {
    const mod = (await import(data.hostModule)) as Record<string, unknown>;
    const fns = (typeof mod.default === 'object' && mod.default !== null ? mod.default : mod) as Record<string, unknown>;
    for (const [k, v] of Object.entries(fns)) if (typeof v === 'function') hostFunctions[k] = v as SyncHostFunction;
  }
  return SandboxVm.create({
    image: parseElf(data.elf, data.source),
    memory: data.memory,
    inputSize: data.inputSize,
    outputSize: data.outputSize,
    hostFunctions,
    remoteNames: new Set(data.remoteNames),
    remoteCall: remoteCaller(claimSlot()),
    ...(data.kvmPath ? { kvmPath: data.kvmPath } : {}),
  });
}

const ready = start();
ready.catch(() => {}); // a start failure is reported through each call

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Serves calls on one channel: wait for a request, run it on the warm VM, write the reply. */
export default async function serve(task: ServeTask): Promise<void> {
  const buf = data.channels[task.channel];
  if (!buf) throw new RangeError(`sandbox worker: no channel ${task.channel}`);
  const h = new Int32Array(buf, 0, CH.WORDS);
  const bytes = new Uint8Array(buf);
  const at = channelLayout(data.inputSize, data.outputSize);
  let vm: SandboxVm | undefined;
  let startError: unknown;
  try {
    vm = await ready;
  } catch (e) {
    startError = e;
  }
  let seen = Atomics.load(h, CH.DONE);
  for (;;) {
    // Wait for a request (or stop); never spin.
    while (Atomics.load(h, CH.REQUEST) === seen && Atomics.load(h, CH.STOP) === 0) Atomics.wait(h, CH.REQUEST, seen, 1000);
    if (Atomics.load(h, CH.STOP) !== 0) return;
    const seq = Atomics.load(h, CH.REQUEST);
    const t0 = performance.now();
    const name = dec.decode(bytes.subarray(at.name, at.name + Atomics.load(h, CH.NAME_LEN)));
    const input = bytes.subarray(at.input, at.input + Atomics.load(h, CH.INPUT_LEN));
    const control = new Int32Array(data.controls, Atomics.load(h, CH.CONTROL_SLOT) * CALL_CONTROL.WORDS * 4, CALL_CONTROL.WORDS);
    let meta: { error?: EncodedError; prints: string[] };
    try {
      if (!vm) throw startError;
      const r = vm.call(name, input, { timeoutMs: Atomics.load(h, CH.TIMEOUT_MS), control });
      bytes.set(r.output, at.output);
      h[CH.OUTPUT_LEN] = r.output.length;
      h[CH.RESET_PAGES] = r.resetPages;
      h[CH.OK] = 1;
      meta = { prints: r.prints };
    } catch (e) {
      h[CH.OK] = 0;
      h[CH.OUTPUT_LEN] = 0;
      meta = { error: encodeError(e), prints: [] };
    }
    const json = enc.encode(JSON.stringify(meta)).subarray(0, CHANNEL_META_BYTES);
    bytes.set(json, at.meta);
    h[CH.META_LEN] = json.length;
    h[CH.MICROS] = Math.round((performance.now() - t0) * 1000);
    seen = seq;
    Atomics.store(h, CH.DONE, seq);
    Atomics.notify(h, CH.DONE);
  }
}
