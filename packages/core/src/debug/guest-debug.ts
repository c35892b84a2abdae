/** KVM_SET_GUEST_DEBUG from a readable configuration: control flags and DR0–DR3/DR7. */
import type { KvmGuestDebug } from '../ffi/index.js';
import type { GuestDebugConfig } from '../machine/vcpu-lifecycle.js';
import { GUEST_DEBUG } from '../vcpu.js';

const RW = { exec: 0b00n, write: 0b01n, access: 0b11n } as const;
const LEN = { 1: 0b00n, 2: 0b01n, 4: 0b11n, 8: 0b10n } as const;

export function guestDebugRegisters(config: GuestDebugConfig): Partial<KvmGuestDebug> {
  const slots: { address: bigint; rw: bigint; len: bigint }[] = [
    ...(config.breakpoints ?? []).map((address) => ({ address, rw: RW.exec, len: LEN[1] })),
    ...(config.watchpoints ?? []).map((w) => {
      if (w.address % BigInt(w.length) !== 0n) throw new RangeError(`watchpoint at 0x${w.address.toString(16)} is not aligned to its length ${w.length}`);
      return { address: w.address, rw: RW[w.kind], len: LEN[w.length] };
    }),
  ];
  if (slots.length > 4) throw new RangeError(`${slots.length} breakpoints and watchpoints asked for; x86 has 4 debug address registers`);
  let control = 0;
  if (config.singleStep) control |= GUEST_DEBUG.SINGLESTEP;
  if (slots.length > 0) control |= GUEST_DEBUG.USE_HW_BP;
  if (config.softwareBreakpoints) control |= GUEST_DEBUG.USE_SW_BP;
  if (control !== 0) control |= GUEST_DEBUG.ENABLE;
  const debugreg = new BigUint64Array(8);
  let dr7 = 0n;
  slots.forEach((s, i) => {
    debugreg[i] = s.address;
    dr7 |= 1n << BigInt(2 * i); // local enable
    dr7 |= s.rw << BigInt(16 + 4 * i);
    dr7 |= s.len << BigInt(18 + 4 * i);
  });
  debugreg[7] = dr7;
  return { control, debugreg };
}
