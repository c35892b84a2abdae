/**
 * The spin policy (devices/spin-policy.ts): no spin without a free core, a spin never longer
 * than its bound (≤ 100 µs), no spin for a waiter whose waits are long, and short waits bring
 * spinning back; a dispatcher spins only when asked to.
 */
import { describe, expect, it } from 'vitest';
import { AdaptiveSpin, Bus, Dispatcher, MAX_SPIN_US, createDoorbell, freeCores } from '@kvmpool/devices';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('spin policy', () => {
  it('never spins when no core is free, even for an answer that is already there', () => {
    const spin = new AdaptiveSpin(100, () => 0);
    let looks = 0;
    expect(spin.spin(() => ++looks > 0)).toBe(false);
    expect(looks).toBe(0);
  });

  it('a spin ends by its bound, which is at most MAX_SPIN_US; a bound of 0 never spins', () => {
    const spin = new AdaptiveSpin(1000, () => 1);
    expect(spin.boundUs).toBe(MAX_SPIN_US);
    const t0 = performance.now();
    expect(spin.spin(() => false)).toBe(false);
    expect(performance.now() - t0).toBeLessThan(50); // ≤ 100 µs; generous for a loaded host
    expect(spin.missed).toBe(1);
    let looks = 0;
    expect(new AdaptiveSpin(0, () => 1).spin(() => (looks++, true))).toBe(false);
    expect(looks).toBe(0);
  });

  it('long waits stop the spinning; short ones bring it back', async () => {
    const spin = new AdaptiveSpin(100, () => 1);
    for (let i = 0; i < 3; i++) {
      spin.spin(() => false);
      await sleep(5);
      spin.ended();
    }
    expect(spin.boundUs).toBe(0);
    let looks = 0;
    expect(spin.spin(() => (looks++, true))).toBe(false);
    expect(looks).toBe(0);
    spin.ended();
    for (let i = 0; i < 20; i++) {
      spin.spin(() => true);
      spin.ended();
    }
    expect(spin.boundUs).toBeGreaterThan(0);
    expect(spin.spin(() => true)).toBe(true);
  });

  it('reads the free cores of this host as a whole number', () => {
    expect(Number.isInteger(freeCores())).toBe(true);
  });

  it('a dispatcher refuses a spin bound outside 0–100 µs', () => {
    const bus = (): Bus => new Bus('pio');
    expect(() => new Dispatcher(bus(), bus(), createDoorbell(), { maxSpinUs: 101 })).toThrow(TypeError);
    expect(() => new Dispatcher(bus(), bus(), createDoorbell(), { maxSpinUs: 50 })).not.toThrow();
  });
});
