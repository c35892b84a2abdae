/**
 * VMX capability MSR decoding. Expected values are worked out by hand from the SDM (Vol. 3,
 * Appendix A) for MSR values as real Intel hosts report them; the comments show the arithmetic.
 */
import { describe, expect, it } from 'vitest';
import {
  controlSetting, decodeVmxMsrs, formatCapsReport, jsonify, vmxMsrName, type CapsReport, type VmxControls,
} from '@kvmpool/core/internal';

const setting = (c: VmxControls | undefined, bit: number): string | undefined => c?.controls.find((x) => x.bit === bit)?.setting;
const named = (c: VmxControls | undefined, name: string): string | undefined => c?.controls.find((x) => x.name === name)?.setting;

describe('IA32_VMX_BASIC (0x480)', () => {
  it('0x00da0400_00000004: revision 4, 1024-byte regions, write-back, true controls', () => {
    // high dword 0x00da0400: [44:32] = 0x400; bits 48..55 = 0xda = 0b1101_1010 -> 49, 51, 52, 54, 55.
    const { basic } = decodeVmxMsrs(new Map([[0x480, 0xda0400_00000004n]]));
    expect(basic).toEqual({
      msr: 0x480,
      raw: 0xda040000000004n,
      revisionId: 4,
      regionSize: 1024,
      physAddr32: false,
      dualMonitorSmm: true,
      memoryType: 6, // bits 53:50 = 0b0110
      memoryTypeName: 'write-back',
      insOutsInfo: true,
      trueControls: true,
      hwExceptionErrorCodeOptional: false,
    });
  });

  it('revision id is bits 30:0 only; bit 48 is the 32-bit address limit; type 0 is uncacheable', () => {
    const raw = (1n << 48n) | (0x1000n << 32n) | 0xffff_ffffn;
    const basic = decodeVmxMsrs(new Map([[0x480, raw]])).basic;
    expect(basic?.revisionId).toBe(0x7fff_ffff);
    expect(basic?.regionSize).toBe(4096);
    expect(basic?.physAddr32).toBe(true);
    expect(basic?.memoryType).toBe(0);
    expect(basic?.memoryTypeName).toBe('uncacheable');
    expect(basic?.trueControls).toBe(false);
    expect(basic?.dualMonitorSmm).toBe(false);
  });
});

describe('control MSRs: allowed-0 (low dword) and allowed-1 (high dword)', () => {
  it('controlSetting: a 1 in allowed-0 forces 1, a 0 in allowed-1 forces 0, otherwise flexible', () => {
    expect(controlSetting(0x16, 0x7f, 1)).toBe('required-1');
    expect(controlSetting(0x16, 0x7f, 7)).toBe('required-0');
    expect(controlSetting(0x16, 0x7f, 0)).toBe('flexible');
  });

  it('IA32_VMX_PINBASED_CTLS 0x0000007f_00000016', () => {
    // allowed-0 0x16 = bits 1, 2, 4 (the default1 class); allowed-1 0x7f = bits 0..6.
    const pin = decodeVmxMsrs(new Map([[0x481, 0x0000007f_00000016n]])).pinbased;
    expect(pin?.allowed0).toBe(0x16);
    expect(pin?.allowed1).toBe(0x7f);
    expect(pin?.controls.map((c) => c.bit)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    for (const bit of [1, 2, 4]) expect(pin?.controls.find((c) => c.bit === bit)).toEqual({ bit, name: null, default1: true, setting: 'required-1' });
    expect(named(pin, 'external-interrupt exiting')).toBe('flexible');
    expect(named(pin, 'NMI exiting')).toBe('flexible');
    expect(named(pin, 'virtual NMIs')).toBe('flexible');
    expect(named(pin, 'activate VMX-preemption timer')).toBe('flexible');
    expect(named(pin, 'process posted interrupts')).toBe('required-0');
    expect(pin?.inconsistentBits).toEqual([]);
  });

  it('IA32_VMX_PROCBASED_CTLS 0xfff9fffe_0401e172 vs TRUE_PROCBASED_CTLS 0xfff9fffe_04006172', () => {
    // allowed-0 0x0401e172 = bits 1,4,5,6,8,13,14,15,16,26; allowed-1 0xfff9fffe lacks bits 0, 17, 18.
    // The TRUE MSR's allowed-0 0x04006172 drops bits 15 and 16 (CR3-load/store exiting).
    const d = decodeVmxMsrs(new Map([[0x482, 0xfff9fffe_0401e172n], [0x48e, 0xfff9fffe_04006172n]]));
    expect(named(d.procbased, 'CR3-load exiting')).toBe('required-1');
    expect(named(d.procbased, 'CR3-store exiting')).toBe('required-1');
    expect(named(d.trueProcbased, 'CR3-load exiting')).toBe('flexible');
    expect(named(d.trueProcbased, 'CR3-store exiting')).toBe('flexible');
    expect(named(d.procbased, 'HLT exiting')).toBe('flexible');
    expect(named(d.procbased, 'CR8-load exiting')).toBe('flexible');
    expect(named(d.procbased, 'activate secondary controls')).toBe('flexible');
    expect(setting(d.procbased, 26)).toBe('required-1');
    // Unnamed bits forced to 0 (0, 17, 18) are not listed.
    expect(setting(d.procbased, 0)).toBeUndefined();
    expect(setting(d.procbased, 17)).toBeUndefined();
    expect(d.procbased?.controls.filter((c) => c.setting === 'required-1').map((c) => c.bit)).toEqual([1, 4, 5, 6, 8, 13, 14, 15, 16, 26]);
    expect(d.trueProcbased?.controls.filter((c) => c.setting === 'required-1').map((c) => c.bit)).toEqual([1, 4, 5, 6, 8, 13, 14, 26]);
    expect(d.trueProcbased?.msr).toBe(0x48e);
  });

  it('IA32_VMX_PROCBASED_CTLS2 0x0053ffbf_00000000', () => {
    // allowed-1 0x0053ffbf = bits 0-5, 7-17, 20, 22: WBINVD exiting (6), #VE (18), sub-page (23), TSC scaling (25) absent.
    const p2 = decodeVmxMsrs(new Map([[0x48b, 0x0053ffbf_00000000n]])).procbased2;
    expect(named(p2, 'enable EPT')).toBe('flexible');
    expect(named(p2, 'unrestricted guest')).toBe('flexible');
    expect(named(p2, 'WBINVD exiting')).toBe('required-0');
    expect(named(p2, 'enable PML')).toBe('flexible');
    expect(named(p2, 'EPT-violation #VE')).toBe('required-0');
    expect(named(p2, 'enable XSAVES/XRSTORS')).toBe('flexible');
    expect(named(p2, 'mode-based execute control for EPT')).toBe('flexible');
    expect(named(p2, 'sub-page write permissions for EPT')).toBe('required-0');
    expect(named(p2, 'use TSC scaling')).toBe('required-0');
    expect(p2?.controls.some((c) => c.setting === 'required-1')).toBe(false);
  });

  it('IA32_VMX_EXIT_CTLS 0x01ffffff_00036dff and ENTRY_CTLS 0x0003ffff_000011ff', () => {
    // exit allowed-0 0x36dff = bits 0-8, 10, 11, 13, 14, 16, 17 (exactly the default1 class); allowed-1 bits 0-24.
    // entry allowed-0 0x11ff = bits 0-8, 12; allowed-1 bits 0-17.
    const d = decodeVmxMsrs(new Map([[0x483, 0x01ffffff_00036dffn], [0x484, 0x0003ffff_000011ffn]]));
    expect(named(d.exit, 'save debug controls')).toBe('required-1');
    expect(named(d.exit, 'host address-space size')).toBe('flexible');
    expect(named(d.exit, 'load IA32_PAT')).toBe('flexible');
    expect(named(d.exit, 'conceal VMX from PT')).toBe('flexible');
    expect(d.exit?.controls.filter((c) => c.setting === 'required-1').every((c) => c.default1)).toBe(true);
    expect(named(d.entry, 'load debug controls')).toBe('required-1');
    expect(named(d.entry, 'IA-32e mode guest')).toBe('flexible');
    expect(named(d.entry, 'conceal VMX from PT')).toBe('flexible');
    expect(setting(d.entry, 12)).toBe('required-1');
    expect(setting(d.entry, 18)).toBeUndefined();
  });

  it('a bit forced to 1 by allowed-0 but not allowed by allowed-1 is flagged, and reported required-1', () => {
    const pin = decodeVmxMsrs(new Map([[0x481, 0x1n]])).pinbased;
    expect(pin?.inconsistentBits).toEqual([0]);
    expect(setting(pin, 0)).toBe('required-1');
  });
});

describe('IA32_VMX_MISC (0x485)', () => {
  it('0x7004c1e7', () => {
    // [4:0] = 7; bit 5; bits 6,7,8; bits 14,15; [24:16] = 4; [27:25] = 0; bits 28,29,30.
    expect(decodeVmxMsrs(new Map([[0x485, 0x7004c1e7n]])).misc).toEqual({
      msr: 0x485,
      raw: 0x7004c1e7n,
      preemptionTimerTscShift: 7,
      storesLmaOnExit: true,
      activityStates: ['HLT', 'shutdown', 'wait-for-SIPI'],
      ptInVmx: true,
      smbaseReadableInSmm: true,
      cr3TargetCount: 4,
      maxMsrListEntries: 512,
      smmVmxoffBlocking: true,
      vmwriteAnyField: true,
      zeroLengthInjection: true,
      msegRevision: 0,
    });
  });

  it('MSR-list size 512 * (N + 1) and the MSEG revision in the high dword', () => {
    const misc = decodeVmxMsrs(new Map([[0x485, 0x00000123_0e000000n]])).misc;
    expect(misc?.maxMsrListEntries).toBe(4096); // N = 7
    expect(misc?.msegRevision).toBe(0x123);
    expect(misc?.cr3TargetCount).toBe(0);
    expect(misc?.activityStates).toEqual([]);
  });
});

describe('fixed CR bits, VMCS_ENUM, EPT/VPID, VMFUNC', () => {
  it('CR0/CR4 FIXED0 (must be 1) and FIXED1 (clear = must be 0)', () => {
    const d = decodeVmxMsrs(new Map([[0x486, 0x80000021n], [0x487, 0xffffffffn], [0x488, 0x2000n], [0x489, 0x3767ffn]]));
    expect(d.cr0Fixed0?.set).toEqual([{ bit: 0, name: 'PE' }, { bit: 5, name: 'NE' }, { bit: 31, name: 'PG' }]);
    expect(d.cr0Fixed1?.clearNamed).toEqual([]);
    expect(d.cr4Fixed0?.set).toEqual([{ bit: 13, name: 'VMXE' }]);
    // 0x3767ff = bits 0-10, 13, 14, 16, 17, 18, 20, 21.
    expect(d.cr4Fixed1?.clearNamed).toEqual(['UMIP', 'LA57', 'KL', 'PKE', 'CET', 'PKS', 'UINTR']);
  });

  it('IA32_VMX_VMCS_ENUM 0x2e: highest index is bits 9:1 = 23', () => {
    expect(decodeVmxMsrs(new Map([[0x48a, 0x2en]])).vmcsEnum).toEqual({ msr: 0x48a, raw: 0x2en, highestIndex: 23 });
  });

  it('IA32_VMX_EPT_VPID_CAP 0x00000f01_06734141', () => {
    // low 0x06734141 = bits 0, 6, 8, 14, 16, 17, 20, 21, 22, 25, 26; high 0xf01 = bits 32, 40-43.
    const cap = decodeVmxMsrs(new Map([[0x48c, 0x00000f01_06734141n]])).eptVpidCap;
    expect(cap?.bits.filter((b) => b.supported).map((b) => b.bit)).toEqual([0, 6, 8, 14, 16, 17, 20, 21, 22, 25, 26, 32, 40, 41, 42, 43]);
    expect(cap?.bits.filter((b) => !b.supported).map((b) => b.name)).toEqual(['page-walk length 5', 'supervisor shadow-stack control']);
    expect(cap?.bits.find((b) => b.bit === 14)).toEqual({ bit: 14, name: 'EPT write-back memory type', supported: true });
    expect(cap?.unnamedSetBits).toEqual([]);
  });

  it('IA32_VMX_VMFUNC 0x1: EPTP switching', () => {
    expect(decodeVmxMsrs(new Map([[0x491, 1n]])).vmfunc?.bits).toEqual([{ bit: 0, name: 'EPTP switching', supported: true }]);
  });
});

describe('decodeVmxMsrs over a subset', () => {
  it('decodes only what is present and ignores other MSRs', () => {
    expect(decodeVmxMsrs(new Map())).toEqual({});
    const d = decodeVmxMsrs(new Map([[0x10a, 0xc00006dn], [0x481, 0x0000007f_00000016n]]));
    expect(Object.keys(d)).toEqual(['pinbased']);
  });

  it('names the MSRs', () => {
    expect(vmxMsrName(0x480)).toBe('IA32_VMX_BASIC');
    expect(vmxMsrName(0x48c)).toBe('IA32_VMX_EPT_VPID_CAP');
    expect(vmxMsrName(0x491)).toBe('IA32_VMX_VMFUNC');
    expect(vmxMsrName(0x10a)).toBeUndefined();
  });

  it('jsonify turns bigints, MSR indices and control masks into hex strings', () => {
    const j = jsonify(decodeVmxMsrs(new Map([[0x480, 0xda040000000004n], [0x481, 0x0000007f_00000016n]])));
    expect(j.basic?.raw).toBe('0xda040000000004');
    expect(j.basic?.msr).toBe('0x480');
    expect(j.pinbased?.allowed0).toBe('0x16');
    expect(j.pinbased?.allowed1).toBe('0x7f');
    expect(JSON.parse(JSON.stringify(j))).toEqual(j);
  });
});

describe('formatCapsReport', () => {
  const base: CapsReport = {
    module: 'kvm_intel', apiVersion: 12, path: '/dev/kvm', vcpuMmapSize: 12288,
    vcpus: { recommended: 4, max: 1024, maxId: 4096 },
    capabilities: { present: { KVM_CAP_IRQCHIP: 1, KVM_CAP_NR_MEMSLOTS: 32764 }, absentCount: 1, absent: ['KVM_CAP_PPC_HIOR'] },
    cpuid: { vendor: 'GenuineIntel', brand: null, hypervisorSignature: 'KVMKVMKVM', features: { vmx: true, svm: false }, entryCount: 2 },
    msrs: { indexCount: 40, featureIndexCount: 1, featureMsrs: { '0x10a': '0xc00006d' }, unreadableFeatureMsrs: [] },
    vmx: { available: false, reason: 'none listed' },
    debug: {
      cpl0: { singleStep: true, hardwareBreakpoints: true, softwareBreakpoints: true, watchpoints: true },
      cpl3: { singleStep: true, hardwareBreakpoints: true, softwareBreakpoints: false, watchpoints: true },
    },
  };

  it('renders decoded VMX controls as a table of required-0 / required-1 / flexible', () => {
    const decoded = jsonify(decodeVmxMsrs(new Map([
      [0x480, 0xda040000000004n], [0x481, 0x0000007f_00000016n], [0x48d, 0x0000007f_00000016n], [0x48c, 0x00000f01_06734141n],
    ])));
    const text = formatCapsReport({ ...base, vmx: { available: true, decoded, unreadable: [] } });
    expect(text).toMatch(/VMCS region size\s+1024 bytes/);
    expect(text).toMatch(/memory type\s+write-back \(6\)/);
    expect(text).toMatch(/pinbased\s+0\s+external-interrupt exiting\s+flexible\s+flexible/);
    expect(text).toMatch(/pinbased\s+1\s+\(reserved, default1\)\s+required-1\s+required-1/);
    expect(text).toMatch(/pinbased\s+7\s+process posted interrupts\s+required-0\s+required-0/);
    expect(text).toMatch(/procbased\s+\(MSR not reported\)/);
    expect(text).toContain('[page-walk length 5]');
    expect(text).toContain('IA32_VMX_VMFUNC: not reported');
  });

  it('says plainly when VMX or the brand string is unavailable', () => {
    const text = formatCapsReport(base);
    expect(text).toMatch(/CPL 3\s+yes\s+yes\s+no\s+yes/);
    expect(text).toContain('unavailable: none listed');
    expect(text).toMatch(/brand\s+none/);
    expect(text).toMatch(/KVM_CAP_NR_MEMSLOTS\s+32764/);
    expect(text).toMatch(/0x10a\s+IA32_ARCH_CAPABILITIES\s+0xc00006d/);
  });
});
