/**
 * Decoding of the VMX capability MSRs 0x480–0x491 (Intel SDM Vol. 3, Appendix A). Pure: it takes
 * MSR values (as read from KVM's feature-MSR interface, or from anywhere else) and never touches
 * KVM. MSRs that are not in the input stay absent from the output; nothing is invented.
 */

export const VMX_MSR = {
  BASIC: 0x480,
  PINBASED_CTLS: 0x481,
  PROCBASED_CTLS: 0x482,
  EXIT_CTLS: 0x483,
  ENTRY_CTLS: 0x484,
  MISC: 0x485,
  CR0_FIXED0: 0x486,
  CR0_FIXED1: 0x487,
  CR4_FIXED0: 0x488,
  CR4_FIXED1: 0x489,
  VMCS_ENUM: 0x48a,
  PROCBASED_CTLS2: 0x48b,
  EPT_VPID_CAP: 0x48c,
  TRUE_PINBASED_CTLS: 0x48d,
  TRUE_PROCBASED_CTLS: 0x48e,
  TRUE_EXIT_CTLS: 0x48f,
  TRUE_ENTRY_CTLS: 0x490,
  VMFUNC: 0x491,
} as const;
export type VmxMsrName = keyof typeof VMX_MSR;

export const VMX_MSR_FIRST = 0x480;
export const VMX_MSR_LAST = 0x491;

/** The IA32_VMX_* name of an MSR index in 0x480–0x491, or undefined. */
export function vmxMsrName(index: number): `IA32_VMX_${VmxMsrName}` | undefined {
  const entry = Object.entries(VMX_MSR).find(([, v]) => v === index);
  return entry ? `IA32_VMX_${entry[0] as VmxMsrName}` : undefined;
}

// ---------------------------------------------------------------------------------------------
// Named bits

/** Memory types the SDM allows in IA32_VMX_BASIC[53:50]. */
export const VMX_MEMORY_TYPES: Readonly<Record<number, string>> = { 0: 'uncacheable', 6: 'write-back' };

/** The VM-execution / VM-exit / VM-entry control fields, their named bits and default1 bits. */
export const VMX_CONTROL_FIELDS = {
  pinbased: {
    title: 'pin-based VM-execution controls',
    default1: [1, 2, 4],
    names: {
      0: 'external-interrupt exiting', 3: 'NMI exiting', 5: 'virtual NMIs', 6: 'activate VMX-preemption timer',
      7: 'process posted interrupts',
    },
  },
  procbased: {
    title: 'primary processor-based VM-execution controls',
    default1: [1, 4, 5, 6, 8, 13, 14, 15, 16, 26],
    names: {
      2: 'interrupt-window exiting', 3: 'use TSC offsetting', 7: 'HLT exiting', 9: 'INVLPG exiting', 10: 'MWAIT exiting',
      11: 'RDPMC exiting', 12: 'RDTSC exiting', 15: 'CR3-load exiting', 16: 'CR3-store exiting', 19: 'CR8-load exiting',
      20: 'CR8-store exiting', 21: 'use TPR shadow', 22: 'NMI-window exiting', 23: 'MOV-DR exiting',
      24: 'unconditional I/O exiting', 25: 'use I/O bitmaps', 27: 'monitor trap flag', 28: 'use MSR bitmaps',
      29: 'MONITOR exiting', 30: 'PAUSE exiting', 31: 'activate secondary controls',
    },
  },
  procbased2: {
    title: 'secondary processor-based VM-execution controls',
    default1: [],
    names: {
      0: 'virtualize APIC accesses', 1: 'enable EPT', 2: 'descriptor-table exiting', 3: 'enable RDTSCP',
      4: 'virtualize x2APIC mode', 5: 'enable VPID', 6: 'WBINVD exiting', 7: 'unrestricted guest',
      8: 'APIC-register virtualization', 9: 'virtual-interrupt delivery', 10: 'PAUSE-loop exiting', 11: 'RDRAND exiting',
      12: 'enable INVPCID', 13: 'enable VM functions', 14: 'VMCS shadowing', 15: 'ENCLS exiting', 16: 'RDSEED exiting',
      17: 'enable PML', 18: 'EPT-violation #VE', 19: 'conceal VMX from PT', 20: 'enable XSAVES/XRSTORS',
      22: 'mode-based execute control for EPT', 23: 'sub-page write permissions for EPT',
      24: 'PT uses guest physical addresses', 25: 'use TSC scaling', 26: 'enable user wait and pause',
      28: 'enable ENCLV exiting',
    },
  },
  exit: {
    title: 'VM-exit controls',
    default1: [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 14, 16, 17],
    names: {
      2: 'save debug controls', 9: 'host address-space size', 12: 'load IA32_PERF_GLOBAL_CTRL',
      15: 'acknowledge interrupt on exit', 18: 'save IA32_PAT', 19: 'load IA32_PAT', 20: 'save IA32_EFER',
      21: 'load IA32_EFER', 22: 'save VMX-preemption timer value', 23: 'clear IA32_BNDCFGS', 24: 'conceal VMX from PT',
    },
  },
  entry: {
    title: 'VM-entry controls',
    default1: [0, 1, 2, 3, 4, 5, 6, 7, 8, 12],
    names: {
      2: 'load debug controls', 9: 'IA-32e mode guest', 10: 'entry to SMM', 11: 'deactivate dual-monitor treatment',
      13: 'load IA32_PERF_GLOBAL_CTRL', 14: 'load IA32_PAT', 15: 'load IA32_EFER', 16: 'load IA32_BNDCFGS',
      17: 'conceal VMX from PT',
    },
  },
} as const satisfies Record<string, { title: string; default1: readonly number[]; names: Readonly<Record<number, string>> }>;
export type VmxControlField = keyof typeof VMX_CONTROL_FIELDS;

/** IA32_VMX_EPT_VPID_CAP capability bits. */
export const EPT_VPID_CAP_BITS: Readonly<Record<number, string>> = {
  0: 'execute-only EPT translations', 6: 'page-walk length 4', 7: 'page-walk length 5', 8: 'EPT uncacheable memory type',
  14: 'EPT write-back memory type', 16: 'EPT 2MB pages', 17: 'EPT 1GB pages', 20: 'INVEPT',
  21: 'EPT accessed/dirty flags', 22: 'advanced EPT-violation exit info', 23: 'supervisor shadow-stack control',
  25: 'single-context INVEPT', 26: 'all-context INVEPT', 32: 'INVVPID', 40: 'individual-address INVVPID',
  41: 'single-context INVVPID', 42: 'all-context INVVPID', 43: 'single-context-retaining-globals INVVPID',
};

/** IA32_VMX_VMFUNC: VM functions that may be enabled. */
export const VMFUNC_BITS: Readonly<Record<number, string>> = { 0: 'EPTP switching' };

export const CR0_BIT_NAMES: Readonly<Record<number, string>> = {
  0: 'PE', 1: 'MP', 2: 'EM', 3: 'TS', 4: 'ET', 5: 'NE', 16: 'WP', 18: 'AM', 29: 'NW', 30: 'CD', 31: 'PG',
};
export const CR4_BIT_NAMES: Readonly<Record<number, string>> = {
  0: 'VME', 1: 'PVI', 2: 'TSD', 3: 'DE', 4: 'PSE', 5: 'PAE', 6: 'MCE', 7: 'PGE', 8: 'PCE', 9: 'OSFXSR', 10: 'OSXMMEXCPT',
  11: 'UMIP', 12: 'LA57', 13: 'VMXE', 14: 'SMXE', 16: 'FSGSBASE', 17: 'PCIDE', 18: 'OSXSAVE', 19: 'KL', 20: 'SMEP',
  21: 'SMAP', 22: 'PKE', 23: 'CET', 24: 'PKS', 25: 'UINTR',
};

// ---------------------------------------------------------------------------------------------
// Decoded shapes

/** How a control may be set: forced to 0, forced to 1, or the VMM's choice. */
export type VmxControlSetting = 'required-0' | 'required-1' | 'flexible';

export interface VmxControl {
  bit: number;
  /** The SDM's name for the control; null for a bit kvmpool has no name for (reserved or newer). */
  name: string | null;
  /** The bit is in the SDM's default1 class for this field. */
  default1: boolean;
  setting: VmxControlSetting;
}

export interface VmxControls {
  msr: number;
  raw: bigint;
  /** Bits 31:0: a 1 means the control must be 1. */
  allowed0: number;
  /** Bits 63:32: a 1 means the control may be 1. */
  allowed1: number;
  /** Every named control, then every unnamed bit whose setting is not required-0. Sorted by bit. */
  controls: VmxControl[];
  /** Bits that allowed-0 forces to 1 while allowed-1 forbids (never seen on real hardware); reported as required-1. */
  inconsistentBits: number[];
}

export interface VmxBasic {
  msr: number;
  raw: bigint;
  /** Bits 30:0. */
  revisionId: number;
  /** Bits 44:32: bytes to allocate for a VMXON / VMCS region. */
  regionSize: number;
  /** Bit 48: VMXON, VMCS and related addresses are limited to 32 bits. */
  physAddr32: boolean;
  /** Bit 49: dual-monitor treatment of SMIs and SMM. */
  dualMonitorSmm: boolean;
  /** Bits 53:50: memory type for VMCS and related structures. */
  memoryType: number;
  memoryTypeName: string;
  /** Bit 54: VM exits from INS/OUTS report instruction information. */
  insOutsInfo: boolean;
  /** Bit 55: the IA32_VMX_TRUE_*_CTLS MSRs exist (default1 controls may be cleared). */
  trueControls: boolean;
  /** Bit 56: VM entry may deliver a hardware exception with or without an error code. */
  hwExceptionErrorCodeOptional: boolean;
}

export interface VmxMisc {
  msr: number;
  raw: bigint;
  /** Bits 4:0: the preemption timer counts down each time TSC bit N changes. */
  preemptionTimerTscShift: number;
  /** Bit 5: VM exits store EFER.LMA into the "IA-32e mode guest" entry control. */
  storesLmaOnExit: boolean;
  /** Bits 8:6: activity states besides active (HLT, shutdown, wait-for-SIPI). */
  activityStates: string[];
  /** Bit 14: Intel PT may be used in VMX operation. */
  ptInVmx: boolean;
  /** Bit 15: RDMSR can read IA32_SMBASE in SMM. */
  smbaseReadableInSmm: boolean;
  /** Bits 24:16: number of CR3-target values. */
  cr3TargetCount: number;
  /** Bits 27:25: recommended maximum MSRs in each MSR load/store list, 512 × (N + 1). */
  maxMsrListEntries: number;
  /** Bit 28: IA32_SMM_MONITOR_CTL bit 2 (SMI blocking on VMXOFF) may be set. */
  smmVmxoffBlocking: boolean;
  /** Bit 29: VMWRITE can write any VMCS field, including VM-exit information fields. */
  vmwriteAnyField: boolean;
  /** Bit 30: VM entry can inject software interrupts/exceptions with instruction length 0. */
  zeroLengthInjection: boolean;
  /** Bits 63:32: MSEG revision identifier. */
  msegRevision: number;
}

export interface VmxFixedBit {
  bit: number;
  name: string | null;
}

/** IA32_VMX_CRn_FIXED0 (set bits must be 1) or IA32_VMX_CRn_FIXED1 (clear bits must be 0). */
export interface VmxFixedBits {
  msr: number;
  raw: bigint;
  /** Bits that are 1 in the MSR. */
  set: VmxFixedBit[];
  /** Named control-register bits that are 0 in the MSR. */
  clearNamed: string[];
}

export interface VmxCapabilityBit {
  bit: number;
  name: string;
  supported: boolean;
}

export interface VmxCapabilityBits {
  msr: number;
  raw: bigint;
  /** Every named bit with whether it is set. */
  bits: VmxCapabilityBit[];
  /** Set bits kvmpool has no name for. */
  unnamedSetBits: number[];
}

export interface VmxVmcsEnum {
  msr: number;
  raw: bigint;
  /** Bits 9:1: highest index value used in any VMCS field encoding. */
  highestIndex: number;
}

/** Whatever subset of 0x480–0x491 was given, decoded. Absent MSRs are absent keys. */
export interface VmxMsrs {
  basic?: VmxBasic;
  pinbased?: VmxControls;
  procbased?: VmxControls;
  exit?: VmxControls;
  entry?: VmxControls;
  misc?: VmxMisc;
  cr0Fixed0?: VmxFixedBits;
  cr0Fixed1?: VmxFixedBits;
  cr4Fixed0?: VmxFixedBits;
  cr4Fixed1?: VmxFixedBits;
  vmcsEnum?: VmxVmcsEnum;
  procbased2?: VmxControls;
  eptVpidCap?: VmxCapabilityBits;
  truePinbased?: VmxControls;
  trueProcbased?: VmxControls;
  trueExit?: VmxControls;
  trueEntry?: VmxControls;
  vmfunc?: VmxCapabilityBits;
}

// ---------------------------------------------------------------------------------------------
// Decoders

const bitOf = (v: bigint, bit: number): boolean => ((v >> BigInt(bit)) & 1n) === 1n;
const field = (v: bigint, lo: number, hi: number): number => Number((v >> BigInt(lo)) & ((1n << BigInt(hi - lo + 1)) - 1n));

export function decodeVmxBasic(raw: bigint): VmxBasic {
  const memoryType = field(raw, 50, 53);
  return {
    msr: VMX_MSR.BASIC,
    raw,
    revisionId: field(raw, 0, 30),
    regionSize: field(raw, 32, 44),
    physAddr32: bitOf(raw, 48),
    dualMonitorSmm: bitOf(raw, 49),
    memoryType,
    memoryTypeName: VMX_MEMORY_TYPES[memoryType] ?? `reserved (${memoryType})`,
    insOutsInfo: bitOf(raw, 54),
    trueControls: bitOf(raw, 55),
    hwExceptionErrorCodeOptional: bitOf(raw, 56),
  };
}

/** The setting a control bit allows, from the allowed-0 (low) and allowed-1 (high) halves. */
export function controlSetting(allowed0: number, allowed1: number, bit: number): VmxControlSetting {
  if ((allowed0 >>> bit) & 1) return 'required-1';
  if (((allowed1 >>> bit) & 1) === 0) return 'required-0';
  return 'flexible';
}

export function decodeVmxControls(kind: VmxControlField, msr: number, raw: bigint): VmxControls {
  const { names, default1 } = VMX_CONTROL_FIELDS[kind];
  const nameOf = names as Readonly<Record<number, string>>;
  const d1 = default1 as readonly number[];
  const allowed0 = field(raw, 0, 31);
  const allowed1 = field(raw, 32, 63);
  const controls: VmxControl[] = [];
  const inconsistentBits: number[] = [];
  for (let bit = 0; bit < 32; bit++) {
    const setting = controlSetting(allowed0, allowed1, bit);
    if ((allowed0 >>> bit) & 1 && !((allowed1 >>> bit) & 1)) inconsistentBits.push(bit);
    const name = nameOf[bit] ?? null;
    if (name === null && setting === 'required-0') continue;
    controls.push({ bit, name, default1: d1.includes(bit), setting });
  }
  return { msr, raw, allowed0, allowed1, controls, inconsistentBits };
}

export function decodeVmxMisc(raw: bigint): VmxMisc {
  const activityStates: string[] = [];
  if (bitOf(raw, 6)) activityStates.push('HLT');
  if (bitOf(raw, 7)) activityStates.push('shutdown');
  if (bitOf(raw, 8)) activityStates.push('wait-for-SIPI');
  return {
    msr: VMX_MSR.MISC,
    raw,
    preemptionTimerTscShift: field(raw, 0, 4),
    storesLmaOnExit: bitOf(raw, 5),
    activityStates,
    ptInVmx: bitOf(raw, 14),
    smbaseReadableInSmm: bitOf(raw, 15),
    cr3TargetCount: field(raw, 16, 24),
    maxMsrListEntries: 512 * (field(raw, 25, 27) + 1),
    smmVmxoffBlocking: bitOf(raw, 28),
    vmwriteAnyField: bitOf(raw, 29),
    zeroLengthInjection: bitOf(raw, 30),
    msegRevision: field(raw, 32, 63),
  };
}

export function decodeVmxFixed(msr: number, raw: bigint, names: Readonly<Record<number, string>>): VmxFixedBits {
  const set: VmxFixedBit[] = [];
  for (let bit = 0; bit < 64; bit++) if (bitOf(raw, bit)) set.push({ bit, name: names[bit] ?? null });
  const clearNamed = Object.entries(names).filter(([b]) => !bitOf(raw, Number(b))).map(([, n]) => n);
  return { msr, raw, set, clearNamed };
}

export function decodeVmxCapabilityBits(msr: number, raw: bigint, names: Readonly<Record<number, string>>): VmxCapabilityBits {
  const bits = Object.entries(names).map(([b, name]) => ({ bit: Number(b), name, supported: bitOf(raw, Number(b)) }));
  const unnamedSetBits: number[] = [];
  for (let bit = 0; bit < 64; bit++) if (bitOf(raw, bit) && names[bit] === undefined) unnamedSetBits.push(bit);
  return { msr, raw, bits, unnamedSetBits };
}

/** Decodes whichever of the VMX capability MSRs 0x480–0x491 `values` holds. */
export function decodeVmxMsrs(values: ReadonlyMap<number, bigint>): VmxMsrs {
  const out: VmxMsrs = {};
  const get = (msr: number): bigint | undefined => values.get(msr);
  let v: bigint | undefined;
  if ((v = get(VMX_MSR.BASIC)) !== undefined) out.basic = decodeVmxBasic(v);
  if ((v = get(VMX_MSR.PINBASED_CTLS)) !== undefined) out.pinbased = decodeVmxControls('pinbased', VMX_MSR.PINBASED_CTLS, v);
  if ((v = get(VMX_MSR.PROCBASED_CTLS)) !== undefined) out.procbased = decodeVmxControls('procbased', VMX_MSR.PROCBASED_CTLS, v);
  if ((v = get(VMX_MSR.EXIT_CTLS)) !== undefined) out.exit = decodeVmxControls('exit', VMX_MSR.EXIT_CTLS, v);
  if ((v = get(VMX_MSR.ENTRY_CTLS)) !== undefined) out.entry = decodeVmxControls('entry', VMX_MSR.ENTRY_CTLS, v);
  if ((v = get(VMX_MSR.MISC)) !== undefined) out.misc = decodeVmxMisc(v);
  if ((v = get(VMX_MSR.CR0_FIXED0)) !== undefined) out.cr0Fixed0 = decodeVmxFixed(VMX_MSR.CR0_FIXED0, v, CR0_BIT_NAMES);
  if ((v = get(VMX_MSR.CR0_FIXED1)) !== undefined) out.cr0Fixed1 = decodeVmxFixed(VMX_MSR.CR0_FIXED1, v, CR0_BIT_NAMES);
  if ((v = get(VMX_MSR.CR4_FIXED0)) !== undefined) out.cr4Fixed0 = decodeVmxFixed(VMX_MSR.CR4_FIXED0, v, CR4_BIT_NAMES);
  if ((v = get(VMX_MSR.CR4_FIXED1)) !== undefined) out.cr4Fixed1 = decodeVmxFixed(VMX_MSR.CR4_FIXED1, v, CR4_BIT_NAMES);
  if ((v = get(VMX_MSR.VMCS_ENUM)) !== undefined) out.vmcsEnum = { msr: VMX_MSR.VMCS_ENUM, raw: v, highestIndex: field(v, 1, 9) };
  if ((v = get(VMX_MSR.PROCBASED_CTLS2)) !== undefined) out.procbased2 = decodeVmxControls('procbased2', VMX_MSR.PROCBASED_CTLS2, v);
  if ((v = get(VMX_MSR.EPT_VPID_CAP)) !== undefined) out.eptVpidCap = decodeVmxCapabilityBits(VMX_MSR.EPT_VPID_CAP, v, EPT_VPID_CAP_BITS);
  if ((v = get(VMX_MSR.TRUE_PINBASED_CTLS)) !== undefined) out.truePinbased = decodeVmxControls('pinbased', VMX_MSR.TRUE_PINBASED_CTLS, v);
  if ((v = get(VMX_MSR.TRUE_PROCBASED_CTLS)) !== undefined) out.trueProcbased = decodeVmxControls('procbased', VMX_MSR.TRUE_PROCBASED_CTLS, v);
  if ((v = get(VMX_MSR.TRUE_EXIT_CTLS)) !== undefined) out.trueExit = decodeVmxControls('exit', VMX_MSR.TRUE_EXIT_CTLS, v);
  if ((v = get(VMX_MSR.TRUE_ENTRY_CTLS)) !== undefined) out.trueEntry = decodeVmxControls('entry', VMX_MSR.TRUE_ENTRY_CTLS, v);
  if ((v = get(VMX_MSR.VMFUNC)) !== undefined) out.vmfunc = decodeVmxCapabilityBits(VMX_MSR.VMFUNC, v, VMFUNC_BITS);
  return out;
}
