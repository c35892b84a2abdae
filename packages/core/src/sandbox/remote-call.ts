/**
 * Host calls that run on the main thread, through the exit bus: the sandbox thread writes the
 * call into its slot's call buffer, posts a read on the slot's exit ring and waits; the
 * dispatcher's host-call device (host-call-device.ts) runs the (async) function, writes the
 * result back and answers the read.
 *
 * Call buffer: [u32 name length][u32 argument length][u32 result capacity][u32 result or error
 * length][i32 generation] then the name, then the argument; the result (or the error, as
 * reply-codec JSON) is written at DATA.
 *
 * A slot belongs to one call at a time, and the main thread alone decides which (CH.REMOTE_SLOT
 * in each request). When a worker stops waiting (deadline, cancel) it bumps GEN and says so in
 * its reply; the slot is then not handed out again until the device has settled the abandoned
 * call, and the device writes an answer only if GEN is still the one it read at the start: a
 * late answer is never applied to a later call.
 */
export const REMOTE_CALL_PORT = 0x702n;
export const CALL_BUFFER_BYTES = 1 << 20;
export const CB = { NAME_LEN: 0, ARG_LEN: 4, RESULT_CAP: 8, OUT_LEN: 12, GEN: 16, DATA: 20 } as const;
/** Int32 index of GEN. */
export const CB_GEN_WORD = CB.GEN / 4;
/** The status the device answers: ≥ 0 result length, or one of these. */
export const REMOTE_STATUS = { THREW: -1, TOO_LARGE: -2, UNKNOWN: -3 } as const;

export interface RemoteSlot {
  ring: SharedArrayBuffer;
  callBuffer: SharedArrayBuffer;
}
