/**
 * The host capability report behind `kvmpool caps`: what /dev/kvm offers a VMM (capabilities,
 * guest CPUID, feature MSRs, nested VMX controls), as a JSON-safe object and as text.
 */
import { readFileSync } from 'node:fs';
import type { Kvm, KvmModule } from '../kvm.js';
import type { KvmCpuidEntry } from '../ffi/index.js';
import { cpuidSignature } from '../cpu/cpuid.js';
import { hex } from '../util/size.js';
import { debugSupport, type DebugSupport } from '../debug/support.js';
import {
  VMX_CONTROL_FIELDS, VMX_MSR_FIRST, VMX_MSR_LAST, decodeVmxMsrs, vmxMsrName, type VmxControlField, type VmxMsrs,
} from './vmx-msrs.js';

// The decoder's public API, re-exported so the package index needs a single line for caps.
export {
  VMX_MSR, VMX_MSR_FIRST, VMX_MSR_LAST, VMX_CONTROL_FIELDS, VMX_MEMORY_TYPES, EPT_VPID_CAP_BITS, VMFUNC_BITS, CR0_BIT_NAMES,
  CR4_BIT_NAMES, controlSetting, decodeVmxBasic, decodeVmxControls, decodeVmxMisc, decodeVmxMsrs, vmxMsrName,
  type VmxMsrName, type VmxControlField, type VmxControlSetting, type VmxControl, type VmxControls, type VmxBasic,
  type VmxMisc, type VmxFixedBit, type VmxFixedBits, type VmxCapabilityBit, type VmxCapabilityBits, type VmxVmcsEnum,
  type VmxMsrs,
} from './vmx-msrs.js';

/** `T` as it looks after JSON: bigints (and MSR indices / control masks) become "0x…" strings. */
export type Jsonified<T> = T extends bigint
  ? string
  : T extends readonly (infer U)[]
    ? Jsonified<U>[]
    : T extends object
      ? { [K in keyof T]: K extends HexKey ? string : Jsonified<T[K]> }
      : T;
type HexKey = 'msr' | 'allowed0' | 'allowed1';
const HEX_KEYS: ReadonlySet<string> = new Set<HexKey>(['msr', 'allowed0', 'allowed1']);

export function jsonify<T>(value: T): Jsonified<T> {
  const walk = (v: unknown, key?: string): unknown => {
    if (typeof v === 'bigint') return hex(v);
    if (typeof v === 'number' && key !== undefined && HEX_KEYS.has(key)) return hex(v);
    if (Array.isArray(v)) return v.map((x) => walk(x));
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, k)]));
    }
    return v;
  };
  return walk(value) as Jsonified<T>;
}

export type CapsVmx =
  | { available: true; decoded: Jsonified<VmxMsrs>; unreadable: string[] }
  | { available: false; reason: string };

/** The host report of `buildCapsReport()` and `kvmpool caps --json`. */
export interface CapsReport {
  /** The KVM module (`kvm_intel`, `kvm_amd`, `kvm_pvm`). */
  module: KvmModule;
  /** KVM_GET_API_VERSION (12). */
  apiVersion: number;
  /** The device opened. */
  path: string;
  /** Bytes of each vCPU's kvm_run mapping. */
  vcpuMmapSize: number;
  /** vCPU limits per VM, as `kvm.vcpuLimits()`. */
  vcpus: {
    /** KVM_CAP_NR_VCPUS. */
    recommended: number;
    /** KVM_CAP_MAX_VCPUS. */
    max: number;
    /** KVM_CAP_MAX_VCPU_ID. */
    maxId: number;
  };
  /** Every KVM_CAP_* kvmpool knows. */
  capabilities: {
    /** The present ones, with KVM_CHECK_EXTENSION's answer. */
    present: Record<string, number>;
    /** How many are absent. */
    absentCount: number;
    /** Their names. */
    absent: string[];
  };
  /** What KVM_GET_SUPPORTED_CPUID offers a guest. */
  cpuid: {
    /** The vendor string (leaf 0), if any. */
    vendor: string | null;
    /** The brand string (leaves 0x80000002–4), if any. */
    brand: string | null;
    /** The hypervisor signature (leaf 0x40000000), if any. */
    hypervisorSignature: string | null;
    /** Feature flags by /proc/cpuinfo name. */
    features: Record<string, boolean>;
    /** How many leaves. */
    entryCount: number;
  };
  /** The MSR lists. */
  msrs: {
    /** Entries of KVM_GET_MSR_INDEX_LIST. */
    indexCount: number;
    /** Entries of KVM_GET_MSR_FEATURE_INDEX_LIST. */
    featureIndexCount: number;
    /** Feature MSR values (hex) by name or index. */
    featureMsrs: Record<string, string>;
    /** Listed by KVM_GET_MSR_FEATURE_INDEX_LIST but not returned by KVM_GET_MSRS. */
    unreadableFeatureMsrs: string[];
  };
  /** The decoded VMX capability MSRs, or why there are none. */
  vmx: CapsVmx;
  /** Guest debugging that works on this host, measured with throwaway VMs. */
  debug: DebugSupport;
}

// ---------------------------------------------------------------------------------------------
// CPUID

type Reg = 'eax' | 'ebx' | 'ecx' | 'edx';
/** Feature flags by leaf/subleaf/register, named as in /proc/cpuinfo where it has a name. */
const CPUID_FEATURES: readonly { leaf: number; sub: number; reg: Reg; bits: Readonly<Record<number, string>> }[] = [
  { leaf: 1, sub: 0, reg: 'edx', bits: {
    0: 'fpu', 1: 'vme', 2: 'de', 3: 'pse', 4: 'tsc', 5: 'msr', 6: 'pae', 7: 'mce', 8: 'cx8', 9: 'apic', 11: 'sep', 12: 'mtrr',
    13: 'pge', 14: 'mca', 15: 'cmov', 16: 'pat', 17: 'pse36', 19: 'clflush', 23: 'mmx', 24: 'fxsr', 25: 'sse', 26: 'sse2',
    28: 'ht',
  } },
  { leaf: 1, sub: 0, reg: 'ecx', bits: {
    0: 'sse3', 1: 'pclmulqdq', 3: 'monitor', 5: 'vmx', 6: 'smx', 9: 'ssse3', 12: 'fma', 13: 'cx16', 15: 'pdcm', 17: 'pcid',
    19: 'sse4_1', 20: 'sse4_2', 21: 'x2apic', 22: 'movbe', 23: 'popcnt', 24: 'tsc_deadline_timer', 25: 'aes', 26: 'xsave',
    27: 'osxsave', 28: 'avx', 29: 'f16c', 30: 'rdrand', 31: 'hypervisor',
  } },
  { leaf: 7, sub: 0, reg: 'ebx', bits: {
    0: 'fsgsbase', 1: 'tsc_adjust', 2: 'sgx', 3: 'bmi1', 4: 'hle', 5: 'avx2', 7: 'smep', 8: 'bmi2', 9: 'erms', 10: 'invpcid',
    11: 'rtm', 14: 'mpx', 16: 'avx512f', 17: 'avx512dq', 18: 'rdseed', 19: 'adx', 20: 'smap', 21: 'avx512ifma',
    23: 'clflushopt', 24: 'clwb', 25: 'intel_pt', 28: 'avx512cd', 29: 'sha_ni', 30: 'avx512bw', 31: 'avx512vl',
  } },
  { leaf: 7, sub: 0, reg: 'ecx', bits: {
    1: 'avx512vbmi', 2: 'umip', 3: 'pku', 4: 'ospke', 5: 'waitpkg', 6: 'avx512_vbmi2', 7: 'shstk', 8: 'gfni', 9: 'vaes',
    10: 'vpclmulqdq', 11: 'avx512_vnni', 12: 'avx512_bitalg', 14: 'avx512_vpopcntdq', 16: 'la57', 22: 'rdpid',
    25: 'cldemote', 27: 'movdiri', 28: 'movdir64b', 31: 'pks',
  } },
  { leaf: 7, sub: 0, reg: 'edx', bits: {
    4: 'fsrm', 8: 'avx512_vp2intersect', 10: 'md_clear', 14: 'serialize', 16: 'tsxldtrk', 20: 'ibt', 22: 'amx_bf16',
    23: 'avx512_fp16', 24: 'amx_tile', 25: 'amx_int8', 26: 'spec_ctrl', 27: 'intel_stibp', 28: 'flush_l1d',
    29: 'arch_capabilities', 31: 'ssbd',
  } },
  { leaf: 0xd, sub: 1, reg: 'eax', bits: { 0: 'xsaveopt', 1: 'xsavec', 3: 'xsaves' } },
  { leaf: 0x8000_0001, sub: 0, reg: 'ecx', bits: { 0: 'lahf_lm', 2: 'svm', 5: 'abm', 6: 'sse4a', 8: '3dnowprefetch' } },
  { leaf: 0x8000_0001, sub: 0, reg: 'edx', bits: { 11: 'syscall', 20: 'nx', 26: 'pdpe1gb', 27: 'rdtscp', 29: 'lm' } },
];

function findLeaf(entries: readonly KvmCpuidEntry[], leaf: number, sub = 0): KvmCpuidEntry | undefined {
  return entries.find((e) => e.function === leaf && e.index === sub) ?? entries.find((e) => e.function === leaf);
}

const trimNul = (s: string): string => s.replace(/\0+$/, '');

function cpuidSection(entries: readonly KvmCpuidEntry[]): CapsReport['cpuid'] {
  const leaf0 = findLeaf(entries, 0);
  // The vendor string is EBX, EDX, ECX; cpuidSignature reads EBX, ECX, EDX (the hypervisor-leaf order).
  const vendor = leaf0 ? trimNul(cpuidSignature({ ebx: leaf0.ebx, ecx: leaf0.edx, edx: leaf0.ecx })) : null;
  const brandLeaves = [0x8000_0002, 0x8000_0003, 0x8000_0004].map((l) => findLeaf(entries, l));
  let brand: string | null = null;
  if (brandLeaves.every((e) => e !== undefined)) {
    const b = Buffer.alloc(48);
    brandLeaves.forEach((e, i) => (['eax', 'ebx', 'ecx', 'edx'] as const).forEach((r, j) => b.writeUInt32LE(e[r] >>> 0, i * 16 + j * 4)));
    brand = b.toString('latin1').replace(/\0.*$/s, '').trim() || null;
  }
  const hv = entries.find((e) => e.function === 0x4000_0000);
  const features: Record<string, boolean> = {};
  for (const { leaf, sub, reg, bits } of CPUID_FEATURES) {
    const e = entries.find((x) => x.function === leaf && x.index === sub);
    for (const [bit, name] of Object.entries(bits)) features[name] = e !== undefined && ((e[reg] >>> Number(bit)) & 1) === 1;
  }
  return { vendor, brand, hypervisorSignature: hv ? trimNul(cpuidSignature(hv)) : null, features, entryCount: entries.length };
}

// ---------------------------------------------------------------------------------------------
// MSRs and VMX

const FEATURE_MSR_NAMES: Readonly<Record<number, string>> = {
  0x8b: 'IA32_BIOS_SIGN_ID (microcode)', 0xce: 'MSR_PLATFORM_INFO', 0x10a: 'IA32_ARCH_CAPABILITIES',
  0x345: 'IA32_PERF_CAPABILITIES', 0x492: 'IA32_VMX_PROCBASED_CTLS3', 0x493: 'IA32_VMX_EXIT_CTLS2',
  0xc001_1029: 'MSR_AMD64_DE_CFG',
};

export function featureMsrName(index: number): string | undefined {
  return vmxMsrName(index) ?? FEATURE_MSR_NAMES[index];
}

const isVmxMsr = (i: number): boolean => i >= VMX_MSR_FIRST && i <= VMX_MSR_LAST;

function readParam(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function vmxUnavailableHint(module: KvmModule, svm: boolean): string {
  if (module === 'kvm_intel') {
    const nested = readParam('/sys/module/kvm_intel/parameters/nested');
    if (nested === 'N' || nested === '0') return '; kvm_intel is loaded with nested=N (reload it with nested=1)';
  }
  if (module === 'kvm_amd') return `; AMD hosts nest with SVM, not VMX (svm flag in supported CPUID: ${svm ? 'yes' : 'no'})`;
  return '';
}

interface VmxInputs {
  hasMsrFeatures: boolean;
  /** KVM_GET_MSR_FEATURE_INDEX_LIST. */
  listed: readonly number[];
  /** The feature MSRs KVM_GET_MSRS returned. */
  values: ReadonlyMap<number, bigint>;
  svm: boolean;
}

function vmxSection(kvm: Kvm, { hasMsrFeatures, listed, values, svm }: VmxInputs): CapsVmx {
  const where = `(module ${kvm.module})`;
  const unavailable = (reason: string): CapsVmx => ({ available: false, reason });
  if (!hasMsrFeatures) {
    return unavailable(`KVM_CAP_GET_MSR_FEATURES is absent: this KVM cannot report feature MSRs, so VMX capabilities are unknown ${where}`);
  }
  const vmxListed = listed.filter(isVmxMsr);
  if (vmxListed.length === 0) {
    const hint = vmxUnavailableHint(kvm.module, svm);
    return unavailable(`KVM_GET_MSR_FEATURE_INDEX_LIST lists none of 0x480–0x491: this host does not offer nested VMX ${where}${hint}`);
  }
  const vmxValues = new Map([...values].filter(([i]) => isVmxMsr(i)));
  if (vmxValues.size === 0) {
    return unavailable(`KVM_GET_MSRS on ${kvm.path} returned none of the ${vmxListed.length} VMX MSRs KVM lists ${where}`);
  }
  const unreadable = vmxListed.filter((i) => !vmxValues.has(i)).map((i) => hex(i));
  return { available: true, decoded: jsonify(decodeVmxMsrs(vmxValues)), unreadable };
}

/** Queries `kvm` for everything `kvmpool caps` shows. The result survives JSON.stringify unchanged. */
export function buildCapsReport(kvm: Kvm): CapsReport {
  const caps = kvm.capabilities();
  const present: Record<string, number> = {};
  const absent: string[] = [];
  for (const [name, value] of Object.entries(caps)) {
    if (value !== 0) present[name] = value;
    else absent.push(name);
  }
  const cpuid = cpuidSection(kvm.supportedCpuid());
  const listed = kvm.featureMsrIndexList();
  const values = kvm.featureMsrs(listed);
  const featureMsrs: Record<string, string> = {};
  for (const [index, value] of values) featureMsrs[hex(index)] = hex(value);
  return {
    module: kvm.module,
    apiVersion: kvm.apiVersion,
    path: kvm.path,
    vcpuMmapSize: kvm.vcpuMmapSize(),
    vcpus: kvm.vcpuLimits(),
    capabilities: { present, absentCount: absent.length, absent },
    cpuid,
    msrs: {
      indexCount: kvm.msrIndexList().length,
      featureIndexCount: listed.length,
      featureMsrs,
      unreadableFeatureMsrs: listed.filter((i) => !values.has(i)).map((i) => hex(i)),
    },
    vmx: vmxSection(kvm, {
      hasMsrFeatures: (caps.KVM_CAP_GET_MSR_FEATURES ?? 0) !== 0, listed, values, svm: cpuid.features['svm'] === true,
    }),
    debug: debugSupport(kvm),
  };
}

// ---------------------------------------------------------------------------------------------
// Text

/** Left-aligned columns (right-aligned where `right[i]`), two spaces apart, each line indented. */
function table(rows: readonly (readonly string[])[], indent = '  ', right: readonly boolean[] = []): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((row) => indent + row.map((c, i) => {
    const w = widths[i] ?? 0;
    if (right[i]) return c.padStart(w);
    return i === row.length - 1 ? c : c.padEnd(w);
  }).join('  ').trimEnd());
}

/** Words joined by spaces, wrapped at `width` columns, continuation lines indented like the first. */
function wrap(words: readonly string[], indent: string, width = 100): string[] {
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line && indent.length + line.length + 1 + w.length > width) {
      lines.push(indent + line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  lines.push(indent + (line || '(none)'));
  return lines;
}

/** Capabilities that only other architectures' KVM implements, left out of the text's absent list. */
const OTHER_ARCH_CAP = /^(ARM|PPC|S390|MIPS|SPAPR)_|^IRQ_(MPIC|XICS)$/;

const yesNo = (b: boolean): string => (b ? 'yes' : 'no');

function formatVmx(d: Jsonified<VmxMsrs>): string[] {
  const out: string[] = [];
  const b = d.basic;
  if (b) {
    out.push(`  IA32_VMX_BASIC ${b.raw}`, ...table([
      ['VMCS revision id', String(b.revisionId)],
      ['VMCS region size', `${b.regionSize} bytes`],
      ['memory type', `${b.memoryTypeName} (${b.memoryType})`],
      ['32-bit addresses only', yesNo(b.physAddr32)],
      ['dual-monitor SMM', yesNo(b.dualMonitorSmm)],
      ['INS/OUTS exit info', yesNo(b.insOutsInfo)],
      ['true controls', yesNo(b.trueControls)],
    ], '    '));
  } else out.push('  IA32_VMX_BASIC: not reported');
  const fields: [VmxControlField, keyof VmxMsrs, keyof VmxMsrs | undefined][] = [
    ['pinbased', 'pinbased', 'truePinbased'], ['procbased', 'procbased', 'trueProcbased'],
    ['procbased2', 'procbased2', undefined], ['exit', 'exit', 'trueExit'], ['entry', 'entry', 'trueEntry'],
  ];
  const rows: string[][] = [['FIELD', 'BIT', 'CONTROL', '*_CTLS', 'TRUE_*_CTLS']];
  for (const [kind, key, trueKey] of fields) {
    const plain = d[key] as Jsonified<VmxMsrs>['pinbased'];
    const tru = trueKey ? (d[trueKey] as Jsonified<VmxMsrs>['pinbased']) : undefined;
    if (!plain && !tru) {
      rows.push([kind, '', '(MSR not reported)', '', '']);
      continue;
    }
    // Union of both lists: each omits unnamed bits that it forces to 0.
    const bits = new Map([...(plain?.controls ?? []), ...(tru?.controls ?? [])].map((c) => [c.bit, c]));
    for (const c of [...bits.values()].sort((x, y) => x.bit - y.bit)) {
      const setting = (ctls: typeof plain): string => (ctls ? (ctls.controls.find((x) => x.bit === c.bit)?.setting ?? 'required-0') : '-');
      rows.push([kind, String(c.bit), c.name ?? (c.default1 ? '(reserved, default1)' : '(unnamed)'), setting(plain), setting(tru)]);
    }
  }
  out.push(
    '  Controls (required-0: must be 0, required-1: must be 1, flexible: VMM chooses)',
    ...wrap(fields.map(([k], i) => `${k} = ${VMX_CONTROL_FIELDS[k].title}${i < fields.length - 1 ? ';' : ''}`), '    '),
    ...table(rows, '    ', [false, true]),
  );
  const m = d.misc;
  if (m) {
    out.push(`  IA32_VMX_MISC ${m.raw}`, ...table([
      ['preemption timer', `counts at TSC >> ${m.preemptionTimerTscShift}`],
      ['activity states', m.activityStates.join(', ') || 'active only'],
      ['CR3-target values', String(m.cr3TargetCount)],
      ['max MSRs per list', String(m.maxMsrListEntries)],
      ['MSEG revision', String(m.msegRevision)],
      ['stores LMA on exit', yesNo(m.storesLmaOnExit)],
      ['VMWRITE any field', yesNo(m.vmwriteAnyField)],
    ], '    '));
  }
  const names = (f: Jsonified<VmxMsrs>['cr0Fixed0']): string =>
    f ? f.set.map((x) => x.name ?? `bit${x.bit}`).join(' ') || '(none)' : 'not reported';
  out.push('  Control registers in VMX operation', ...table([
    ['CR0 must be 1', names(d.cr0Fixed0)], ['CR0 must be 0', d.cr0Fixed1 ? d.cr0Fixed1.clearNamed.join(' ') || '(none)' : 'not reported'],
    ['CR4 must be 1', names(d.cr4Fixed0)], ['CR4 must be 0', d.cr4Fixed1 ? d.cr4Fixed1.clearNamed.join(' ') || '(none)' : 'not reported'],
  ], '    '));
  if (d.vmcsEnum) out.push(`  IA32_VMX_VMCS_ENUM: highest field index ${d.vmcsEnum.highestIndex}`);
  for (const [label, cap] of [['IA32_VMX_EPT_VPID_CAP', d.eptVpidCap], ['IA32_VMX_VMFUNC', d.vmfunc]] as const) {
    if (!cap) {
      out.push(`  ${label}: not reported`);
      continue;
    }
    out.push(`  ${label} ${cap.raw}`, '    supported:', ...wrap(cap.bits.filter((x) => x.supported).map((x) => `[${x.name}]`), '      '));
    const missing = cap.bits.filter((x) => !x.supported).map((x) => `[${x.name}]`);
    if (missing.length) out.push('    not supported:', ...wrap(missing, '      '));
  }
  return out;
}

/** Human-readable rendering of a report (also of one read back from `--json`). */
export function formatCapsReport(r: CapsReport): string {
  const out: string[] = [`kvmpool caps: ${r.path}`, '', 'Host'];
  out.push(...table([
    ['module', r.module],
    ['API version', String(r.apiVersion)],
    ['kvm_run mmap size', `${r.vcpuMmapSize} bytes`],
    ['vCPUs per VM', `recommended ${r.vcpus.recommended}, max ${r.vcpus.max}, max id ${r.vcpus.maxId}`],
  ]));
  const c = r.cpuid;
  const feats = Object.entries(c.features);
  out.push('', `Guest CPUID (KVM_GET_SUPPORTED_CPUID, ${c.entryCount} entries)`, ...table([
    ['vendor', c.vendor ?? '(leaf 0 not reported)'],
    ['brand', c.brand ?? 'none (leaves 0x80000002-4 absent or zero in the supported set)'],
    ['hypervisor leaf', c.hypervisorSignature === null ? '(0x40000000 not in the supported set)' : JSON.stringify(c.hypervisorSignature)],
  ]));
  out.push('  features present:', ...wrap(feats.filter(([, v]) => v).map(([k]) => k), '    '));
  out.push('  features absent:', ...wrap(feats.filter(([, v]) => !v).map(([k]) => k), '    '));

  const present = Object.entries(r.capabilities.present);
  out.push('', `Capabilities (KVM_CHECK_EXTENSION: ${present.length} present, ${r.capabilities.absentCount} absent)`);
  const half = Math.ceil(present.length / 2);
  const capRows = Array.from({ length: half }, (_, i) => {
    const [a, b] = [present[i], present[i + half]];
    return [a?.[0] ?? '', a ? String(a[1]) : '', b?.[0] ?? '', b ? String(b[1]) : ''];
  });
  out.push(...table([['NAME', 'VALUE', 'NAME', 'VALUE'], ...capRows], '  ', [false, true, false, true]));
  const absent = r.capabilities.absent.map((n) => n.replace(/^KVM_CAP_/, ''));
  const x86Absent = absent.filter((n) => !OTHER_ARCH_CAP.test(n));
  out.push(`  absent (KVM_CAP_*; ${absent.length - x86Absent.length} ARM/PPC/S390/MIPS-only ones not shown):`, ...wrap(x86Absent, '    '));

  const fm = Object.entries(r.msrs.featureMsrs);
  out.push('', 'MSRs', ...table([
    ['KVM_GET_MSR_INDEX_LIST', `${r.msrs.indexCount} MSRs`],
    ['KVM_GET_MSR_FEATURE_INDEX_LIST', `${r.msrs.featureIndexCount} MSRs, ${fm.length} readable`],
  ]));
  if (fm.length) {
    out.push(...table([['INDEX', 'NAME', 'VALUE'], ...fm.map(([i, v]) => [i, featureMsrName(Number(i)) ?? '', v])], '    '));
  }
  if (r.msrs.unreadableFeatureMsrs.length) out.push(`    listed but unreadable: ${r.msrs.unreadableFeatureMsrs.join(' ')}`);

  const yn = (b: boolean): string => (b ? 'yes' : 'no');
  out.push('', 'Guest debugging (probed with throwaway VMs)', ...table([
    ['', 'single-step', 'hw breakpoints', 'sw breakpoints (int3)', 'watchpoints'],
    ...(['cpl0', 'cpl3'] as const).map((l) => {
      const d = r.debug[l];
      return [l === 'cpl0' ? 'CPL 0' : 'CPL 3', yn(d.singleStep), yn(d.hardwareBreakpoints), yn(d.softwareBreakpoints), yn(d.watchpoints)];
    }),
  ]));

  out.push('', 'Nested VMX (IA32_VMX_* capability MSRs 0x480-0x491)');
  if (!r.vmx.available) out.push(`  unavailable: ${r.vmx.reason}`);
  else {
    out.push(...formatVmx(r.vmx.decoded));
    if (r.vmx.unreadable.length) out.push(`  listed but unreadable: ${r.vmx.unreadable.join(' ')}`);
  }
  return `${out.join('\n')}\n`;
}
