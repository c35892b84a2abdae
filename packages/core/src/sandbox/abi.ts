/**
 * The guest ABI of sandbox programs, mirrored from sdk/kvmpool.h: the call area, the ports
 * and the operations. Keep both in step.
 */
export const CALL_AREA = 0xc000n;
export const PORT_HOSTCALL = 0x700;
export const PORT_RETURN = 0x701;

export const OP = { PRINT: 1, ABORT: 2, CALL: 3 } as const;

/** Byte offsets of `struct kvmpool_call` fields. */
export const CALL = { OP: 0, A0: 8, A1: 16, A2: 24, A3: 32, A4: 40, A5: 48, RET: 56, VALUE: 64, SIZE: 72 } as const;

/** Where the guest image may live: above the call area, below the I/O regions. */
export const IMAGE_MIN = 0x10_0000n;
