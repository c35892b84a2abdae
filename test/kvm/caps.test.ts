/** `kvmpool caps`: the real CLI (packages/core/dist/cli.js) against this host's /dev/kvm. */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { CapsReport } from '@kvmpool/core';

const CLI = fileURLToPath(new URL('../../packages/core/dist/cli.js', import.meta.url));

function kvmpool(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The KVM vendor module as /sys/module shows it (independently of kvmpool's own detection). */
function sysModule(): string {
  const found = ['kvm_intel', 'kvm_amd', 'kvm_pvm'].filter((m) => existsSync(`/sys/module/${m}`));
  return found[0] ?? 'unknown';
}

describe('kvmpool caps', () => {
  it('--json prints a valid report of this host', () => {
    const r = kvmpool('caps', '--json');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout) as CapsReport;
    expect(report.apiVersion).toBe(12);
    expect(report.module).toBe(sysModule());
    expect(report.path).toBe('/dev/kvm');
    expect(report.vcpuMmapSize).toBeGreaterThanOrEqual(4096);
    expect(report.vcpus.max).toBeGreaterThanOrEqual(report.vcpus.recommended);

    const present = Object.entries(report.capabilities.present);
    expect(present.length).toBeGreaterThan(0);
    expect(report.capabilities.present['KVM_CAP_USER_MEMORY']).toBeGreaterThan(0);
    expect(present.every(([name, v]) => name.startsWith('KVM_CAP_') && Number.isInteger(v) && v !== 0)).toBe(true);
    expect(report.capabilities.absentCount).toBe(report.capabilities.absent.length);

    expect(report.cpuid.entryCount).toBeGreaterThan(0);
    expect(report.cpuid.vendor).toMatch(/^(GenuineIntel|AuthenticAMD|HygonGenuine|CentaurHauls)$/);
    expect(typeof report.cpuid.features['lm']).toBe('boolean');

    for (const [index, value] of Object.entries(report.msrs.featureMsrs)) {
      expect(index).toMatch(/^0x[0-9a-f]+$/);
      expect(value).toMatch(/^0x[0-9a-f]+$/);
    }

    if (report.vmx.available) {
      expect(Object.keys(report.vmx.decoded).length).toBeGreaterThan(0);
    } else {
      expect(report.vmx.reason.length).toBeGreaterThan(0);
    }
  });

  it('text output names the module and says why VMX is or is not decoded', () => {
    const r = kvmpool('caps');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(sysModule());
    expect(r.stdout).toMatch(/API version\s+12/);
    expect(r.stdout).toMatch(/Nested VMX[\s\S]*(unavailable: \S|IA32_VMX_BASIC)/);
  });

  it('usage: --help on stdout; unknown commands and options on stderr with exit 2', () => {
    const help = kvmpool('--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('kvmpool caps [--json]');
    const unknown = kvmpool('frobnicate');
    expect(unknown.status).toBe(2);
    expect(unknown.stdout).toBe('');
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    expect(unknown.stderr).toContain('usage: kvmpool');
    expect(kvmpool('caps', '--bogus').status).toBe(2);
    expect(kvmpool().status).toBe(2);
  });

  it('--version prints the package name and the version in its package.json', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../packages/core/package.json', import.meta.url), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = kvmpool(flag);
      expect(r.status).toBe(0);
      expect(r.stdout).toBe(`@kvmpool/core ${pkg.version}\n`);
    }
    expect(kvmpool('--help').stdout).toContain('kvmpool --version');
  });

  it('a device that cannot be opened: the error and its hint, exit 1', () => {
    const r = kvmpool('caps', '--device', '/dev/no-such-kvm');
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/open\(\/dev\/no-such-kvm\): ENOENT .* — no KVM device/);
  });
});
