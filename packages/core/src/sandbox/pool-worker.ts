/**
 * A SandboxPool worker thread (started by pool-seat.ts): blocks the kick signal, publishes its
 * thread id, loads the host-function module, builds one warm sandbox VM in this thread, says
 * READY (or FAILED, with the error) through its call channel, then serves calls on it until
 * told to stop, and closes the VM. Replies are bounded binary records (reply-codec.ts).
 */
import { workerData } from 'node:worker_threads';
import { RECORD_KIND, RingProducer } from '@kvmpool/devices';
import { parseElf } from '../loader/elf.js';
import { AbortError, HostFunctionError, SandboxTimeoutError, SandboxWorkerError, decodeError } from '../errors.js';
import { KICK_SIGNAL } from '../machine/vcpu-lifecycle.js';
import { blockSignal, currentTid } from '../signals.js';
import { OwnedBlock } from '../thread-resources.js';
import { toBytesOrEmpty } from '../util/bytes.js';
import { CALL_CONTROL, SandboxVm, type SyncHostFunction } from './sandbox-vm.js';
import { CALL_BUFFER_BYTES, CB, CB_GEN_WORD, REMOTE_CALL_PORT, REMOTE_STATUS, type RemoteSlot } from './remote-call.js';
import { CALL_STAMP, CH, CHANNEL_REPLY_BYTES, CLAIM, HEADER_WORDS, SLOT, SLOTS, WORKER_STATE, channelLayout, slotOf, slotWord, stampView, wallMs } from './call-channel.js';
import { encodeReply, parseErrorJson } from './reply-codec.js';
import { LinuxVm, PIE_BASE, type LinuxStart } from '../linux/linux-vm.js';
import { decodeRunRequest, encodeRunResult } from '../linux/run-codec.js';
import { linuxConfig } from '../linux/linux-config.js';

/** What a LinuxPool's workers run instead of an SDK guest (linux/linux-pool.ts). */
export interface LinuxWorkerProgram {
  kind: 'linux';
  execPath: string;
  argv: string[];
  env: string[];
  files: [string, Uint8Array][];
  stackSize: number;
  start: LinuxStart;
  strict: boolean;
  maxOutput: number;
  outputLimit: 'error' | 'truncate';
  /** LinuxVmOptions.warmUp. */
  warmUp?: Uint8Array;
}

export interface PoolWorkerData {
  /** Set: the workers run this Linux program (the ELF in `elf`) rather than an SDK guest. */
  program?: LinuxWorkerProgram;
  elf: Uint8Array;
  source: string;
  memory: number;
  inputSize: number;
  outputSize: number;
  initTimeoutMs: number;
  kvmPath?: string;
  /** SandboxPoolOptions.warmUp (SDK guests). */
  warmUp?: { fn: string; input: Uint8Array };
  /** file: URL of the hostFunctions module, and the option as the user gave it (for messages). */
  hostModule?: string;
  hostModuleName?: string;
  remoteNames: string[];
  slots: RemoteSlot[];
  doorbell: SharedArrayBuffer;
  /** This worker's call channel (call-channel.ts). */
  channel: SharedArrayBuffer;
  /**
   * Where this thread reports its VM's fds, kvm_run mapping and timer (an OwnedBlock,
   * thread-resources.ts): the pool closes what is still marked there once the thread has
   * ended, so a terminated worker leaks nothing.
   */
  owned: SharedArrayBuffer;
}

const data = workerData as PoolWorkerData;
// Before anything can kick this thread: the kick signal stays blocked outside KVM_RUN (its
// default action would end the process), and only then may the main thread know our tid.
blockSignal(KICK_SIGNAL);
const h = new Int32Array(data.channel, 0, HEADER_WORDS);
Atomics.store(h, CH.WORKER_TID, currentTid());
const bytes = new Uint8Array(data.channel);
const at = channelLayout(data.inputSize, data.outputSize);
/** Each slot's words, reply area and control words (CALL_CONTROL layout: CANCEL, TID). */
const slots = Array.from({ length: SLOTS }, (_, i) => ({
  words: new Int32Array(data.channel, slotWord(i, 0) * 4, SLOT.WORDS),
  reply: bytes.subarray(at.slots[i]!.reply, at.slots[i]!.reply + CHANNEL_REPLY_BYTES),
  control: new Int32Array(data.channel, slotWord(i, SLOT.CANCEL) * 4, CALL_CONTROL.WORDS),
}));
const stamps = stampView(data.channel);

/** The call being served: what the host-call wait must watch. */
const current = { fn: '', deadline: Infinity, timeoutMs: 0, slot: slots[0]! };

async function loadHostFunctions(): Promise<Record<string, SyncHostFunction>> {
  const fns: Record<string, SyncHostFunction> = {};
  if (!data.hostModule) return fns;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(data.hostModule)) as Record<string, unknown>;
  } catch (e) {
    throw new SandboxWorkerError(`hostFunctions: cannot load ${data.hostModuleName ?? data.hostModule}: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  const table = (typeof mod.default === 'object' && mod.default !== null ? mod.default : mod) as Record<string, unknown>;
  for (const [k, v] of Object.entries(table)) if (typeof v === 'function') fns[k] = v as SyncHostFunction;
  return fns;
}

/** Host calls to the main thread through host-call slot SLOT.REMOTE_SLOT of the current request. */
function remoteCall(name: string, arg: Uint8Array, cap: number): Uint8Array {
  const index = current.slot.words[SLOT.REMOTE_SLOT]!;
  const slot = data.slots[index];
  if (!slot) throw new HostFunctionError(name, 'no host-call slot is free (abandoned host calls still hold them all)');
  const ring = producerFor(index, slot);
  const buf = new Uint8Array(slot.callBuffer);
  const view = new DataView(slot.callBuffer);
  const words = new Int32Array(slot.callBuffer, 0, CB.DATA / 4);
  const nameBytes = new TextEncoder().encode(name);
  if (CB.DATA + nameBytes.length + arg.length > CALL_BUFFER_BYTES) {
    throw new HostFunctionError(name, `argument of ${arg.length} bytes does not fit the ${CALL_BUFFER_BYTES}-byte call buffer`);
  }
  view.setUint32(CB.NAME_LEN, nameBytes.length, true);
  view.setUint32(CB.ARG_LEN, arg.length, true);
  view.setUint32(CB.RESULT_CAP, Math.min(cap, CALL_BUFFER_BYTES - CB.DATA), true);
  buf.set(nameBytes, CB.DATA);
  buf.set(arg, CB.DATA + nameBytes.length);
  const status = new Uint8Array(4);
  let stopped: 'cancel' | 'timeout' | undefined;
  // The wait looks at the cancel flag and the deadline before each sleep (≤ 50 ms; the main
  // thread also wakes it on cancel).
  const answered = ring.request(RECORD_KIND.IO_IN, REMOTE_CALL_PORT, 4, status, () => {
    if (Atomics.load(current.slot.control, CALL_CONTROL.CANCEL) !== 0) stopped = 'cancel';
    else if (performance.now() >= current.deadline) stopped = 'timeout';
    return stopped ? 'stop' : 'go-on';
  });
  if (!answered) {
    // Abandon: a late answer must see another generation, and the pool must not hand this
    // slot out again until the main thread has settled the call.
    Atomics.add(words, CB_GEN_WORD, 1);
    current.slot.words[SLOT.REMOTE_ABANDONED] = 1;
    if (stopped === 'cancel') throw new AbortError(`sandbox call ${current.fn} was aborted while host function ${name} ran`);
    throw Object.assign(new SandboxTimeoutError(current.fn, current.timeoutMs), { kind: 'host-call', hostFunction: name });
  }
  const st = new DataView(status.buffer).getInt32(0, true);
  const len = Math.min(view.getUint32(CB.OUT_LEN, true), CALL_BUFFER_BYTES - CB.DATA);
  const out = buf.slice(CB.DATA, CB.DATA + len);
  if (st >= 0) return out;
  const encoded = parseErrorJson(out);
  const cause = encoded ? decodeError(encoded) : undefined;
  if (cause instanceof HostFunctionError && cause.function === name) throw cause;
  if (st === REMOTE_STATUS.UNKNOWN) throw new HostFunctionError(name, 'no such host function');
  throw new HostFunctionError(name, cause?.message ?? 'failed on the main thread', cause);
}

const producers = new Map<number, RingProducer>();
function producerFor(index: number, slot: RemoteSlot): RingProducer {
  let p = producers.get(index);
  if (!p) producers.set(index, (p = new RingProducer(slot.ring, data.doorbell)));
  return p;
}

/**
 * Sync host functions with results checked as async ones are: a number or an object is a
 * TypeError (the VM makes it a HostFunctionError with that cause), never 0 bytes.
 */
function strict(fns: Record<string, SyncHostFunction>): Record<string, SyncHostFunction> {
  const out = Object.create(null) as Record<string, SyncHostFunction>;
  for (const [name, fn] of Object.entries(fns)) out[name] = (arg) => toBytesOrEmpty(fn(arg), `hostFunctions.${name} result`);
  return out;
}

function finish(state: number, error?: unknown): void {
  slots[0]!.words[SLOT.REPLY_LEN] = encodeReply(slots[0]!.reply, [], error);
  Atomics.store(h, CH.STATE, state);
  Atomics.notify(h, CH.STATE);
}

/** The one method serve() needs of a VM. */
interface CallableVm {
  call(name: string, input: Uint8Array, options: { timeoutMs: number; control: Int32Array }): { output: Uint8Array; prints: string[]; printsDropped: number; printBytesDropped: number; resetPages: number };
  close(): void;
}

/** A LinuxVm behind the call interface: the input is a run request, the output a run result (linux/run-codec.ts). */
function startLinux(program: LinuxWorkerProgram): CallableVm {
  const vm = LinuxVm.create({
    image: parseElf(data.elf, data.source, { loadBase: PIE_BASE, rejectInterp: true }),
    execPath: program.execPath,
    argv: program.argv,
    env: program.env,
    config: linuxConfig(program),
    memory: data.memory,
    stackSize: program.stackSize,
    start: program.start,
    ...(program.warmUp ? { warmUp: program.warmUp } : {}),
    initTimeoutMs: data.initTimeoutMs,
    owned: new OwnedBlock(data.owned),
    ...(data.kvmPath ? { kvmPath: data.kvmPath } : {}),
    ...(data.remoteNames.length > 0 ? { hostCall: (name: string, arg: Uint8Array) => remoteCall(name, arg, CALL_BUFFER_BYTES) } : {}),
  });
  return {
    call: (_name, input, options) => {
      const r = vm.run(decodeRunRequest(input), options);
      return { output: encodeRunResult(r, vm.start), prints: [], printsDropped: 0, printBytesDropped: 0, resetPages: r.stats.resetPages };
    },
    close: () => vm.close(),
  };
}

async function start(): Promise<CallableVm> {
  if (data.program) return startLinux(data.program);
  const hostFunctions = strict(await loadHostFunctions());
  return SandboxVm.create({
    image: parseElf(data.elf, data.source),
    memory: data.memory,
    inputSize: data.inputSize,
    outputSize: data.outputSize,
    hostFunctions,
    remoteNames: new Set(data.remoteNames),
    remoteCall,
    initTimeoutMs: data.initTimeoutMs,
    owned: new OwnedBlock(data.owned),
    ...(data.kvmPath ? { kvmPath: data.kvmPath } : {}),
    ...(data.warmUp ? { warmUp: data.warmUp } : {}),
  });
}

/**
 * Serves calls until STOP: wait for a request, claim it, run it on the warm VM, write the reply.
 * Requests are served in order (DONE + 1 next), whatever REQUEST has reached: with a pipelined
 * request posted (call-channel.ts) the next one starts at once. The wait sleeps at once, never
 * spins: measured with sequential calls, the next request is already posted when the worker is
 * back here 4 times in 5 (its own Atomics.notify of DONE, which wakes the main thread's
 * waitAsync, takes longer than the main thread's turn), and a spin of up to 100 µs caught 2 of
 * the other 106 on this host.
 */
function serve(vm: CallableVm): void {
  const dec = new TextDecoder();
  let seen = Atomics.load(h, CH.DONE);
  let name = '';
  let nameRaw = new Uint8Array(0);
  const waiting = (): boolean => Atomics.load(h, CH.REQUEST) === seen && Atomics.load(h, CH.STOP) === 0;
  for (;;) {
    while (waiting()) Atomics.wait(h, CH.REQUEST, seen);
    if (Atomics.load(h, CH.REQUEST) === seen) return; // stopped while idle
    const seq = (seen + 1) | 0;
    const slot = slots[slotOf(seq)]!;
    const w = slot.words;
    const area = at.slots[slotOf(seq)]!;
    if (Atomics.compareExchange(w, SLOT.CLAIM, CLAIM.POSTED, CLAIM.CLAIMED) === CLAIM.POSTED) {
      stamps[CALL_STAMP.SEEN] = wallMs();
      const t0 = performance.now();
      // The name is decoded only when it changed (a pool usually calls one function again and again).
      const len = Math.min(w[SLOT.NAME_LEN]!, 256);
      const raw = bytes.subarray(area.name, area.name + len);
      let same = len === nameRaw.length;
      for (let i = 0; same && i < len; i++) same = raw[i] === nameRaw[i];
      if (!same) {
        nameRaw = raw.slice();
        name = dec.decode(nameRaw);
      }
      const input = bytes.subarray(area.input, area.input + Math.min(Math.max(w[SLOT.INPUT_LEN]!, 0), data.inputSize));
      const timeoutMs = w[SLOT.TIMEOUT_MS]!;
      current.fn = name;
      current.timeoutMs = timeoutMs;
      current.deadline = timeoutMs > 0 ? t0 + timeoutMs : Infinity;
      current.slot = slot;
      w[SLOT.REMOTE_ABANDONED] = 0;
      let replyLen: number;
      try {
        const r = vm.call(name, input, { timeoutMs, control: slot.control });
        stamps[CALL_STAMP.CALLED] = wallMs();
        bytes.set(r.output, area.output);
        w[SLOT.OUTPUT_LEN] = r.output.length;
        w[SLOT.RESET_PAGES] = r.resetPages;
        w[SLOT.OK] = 1;
        replyLen = encodeReply(slot.reply, r.prints, undefined, r.printsDropped, r.printBytesDropped);
      } catch (e) {
        stamps[CALL_STAMP.CALLED] = wallMs();
        w[SLOT.OK] = 0;
        w[SLOT.OUTPUT_LEN] = 0;
        replyLen = encodeReply(slot.reply, [], e);
      }
      w[SLOT.REPLY_LEN] = replyLen;
      w[SLOT.MICROS] = Math.round((performance.now() - t0) * 1000);
      stamps[CALL_STAMP.DONE] = wallMs();
    }
    // else the main thread took the request back (CLAIM.STOLEN): it is answered without a run.
    seen = seq;
    Atomics.store(h, CH.DONE, seq);
    Atomics.notify(h, CH.DONE);
    if (Atomics.load(h, CH.STOP) !== 0) return;
  }
}

let vm: CallableVm | undefined;
try {
  vm = await start();
} catch (e) {
  finish(WORKER_STATE.FAILED, e);
  Atomics.store(h, CH.WORKER_TID, 0);
}
if (vm) {
  const owned = vm;
  // process.exit() in a host function ends this thread without unwinding: close the VM then.
  process.once('exit', () => owned.close());
  finish(WORKER_STATE.READY);
  try {
    serve(vm);
  } finally {
    vm.close();
    // Once this thread ends its id may be reused: nobody may kick it from here on.
    Atomics.store(h, CH.WORKER_TID, 0);
  }
}
