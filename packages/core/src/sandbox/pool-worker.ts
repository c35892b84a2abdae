/**
 * Piscina worker of a SandboxPool: holds one warm sandbox VM, made in this thread, and runs
 * calls on it. Results and errors travel back as plain data (piscina's structured clone would
 * drop the error classes).
 */
import { workerData } from 'node:worker_threads';
import { RECORD_KIND, RingProducer } from '@kvmpool/devices';
import { parseElf } from '../loader/elf.js';
import { HostFunctionError } from '../errors.js';
import { CALL_CONTROL, SandboxVm, type SyncHostFunction } from './sandbox-vm.js';
import { CALL_BUFFER_BYTES, CB, REMOTE_CALL_PORT, REMOTE_STATUS, type RemoteSlot } from './remote-call.js';
import { encodeError, type EncodedError } from './wire-errors.js';

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
  /** Per-call control words (CALL_CONTROL.WORDS each), indexed by the task's `control` slot. */
  controls: SharedArrayBuffer;
}

export interface PoolTask {
  name: string;
  input: Uint8Array;
  timeoutMs: number;
  /** Slot of this call's control words in `controls`. */
  control: number;
}

export type PoolTaskResult =
  | { ok: true; output: Uint8Array; prints: string[]; resetPages: number; micros: number }
  | { ok: false; error: EncodedError; prints: string[]; micros: number };

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
let warm: SandboxVm | undefined;
ready.then((vm) => (warm = vm), () => {}); // a start failure is reported through each task

function runOn(vm: SandboxVm, task: PoolTask): PoolTaskResult {
  const t0 = performance.now();
  const control = new Int32Array(data.controls, task.control * CALL_CONTROL.WORDS * 4, CALL_CONTROL.WORDS);
  try {
    const r = vm.call(task.name, task.input, { timeoutMs: task.timeoutMs, control });
    return { ok: true, output: r.output, prints: r.prints, resetPages: r.resetPages, micros: (performance.now() - t0) * 1000 };
  } catch (e) {
    return { ok: false, error: encodeError(e), prints: [], micros: (performance.now() - t0) * 1000 };
  }
}

/** Synchronous once the VM is warm: no promise hop between piscina and the call. */
export default function runTask(task: PoolTask): PoolTaskResult | Promise<PoolTaskResult> {
  if (warm) return runOn(warm, task);
  return ready.then(
    (vm) => runOn(vm, task),
    (e: unknown) => ({ ok: false, error: encodeError(e), prints: [], micros: 0 }),
  );
}
