/**
 * Host calls that run on the main thread, through the exit bus: the sandbox thread writes the
 * call into its slot's call buffer, posts a read on its exit ring and waits; the dispatcher's
 * host-call device runs the (async) function, writes the result back and answers the read.
 *
 * Call buffer: [u32 name length][u32 argument length][u32 result capacity][u32 result or error
 * length] then the name, then the argument; the result (or error text) is written at DATA.
 */
export const REMOTE_CALL_PORT = 0x702n;
export const CALL_BUFFER_BYTES = 1 << 20;
export const CB = { NAME_LEN: 0, ARG_LEN: 4, RESULT_CAP: 8, OUT_LEN: 12, DATA: 16 } as const;
/** The status the device answers: ≥ 0 result length, or one of these. */
export const REMOTE_STATUS = { THREW: -1, TOO_LARGE: -2, UNKNOWN: -3 } as const;

export interface RemoteSlot {
  ring: SharedArrayBuffer;
  callBuffer: SharedArrayBuffer;
}
