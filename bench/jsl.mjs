import { JsSandboxPool } from '@kvmpool/js';
const pool = new JsSandboxPool({ threads: 1 });
await pool.ready?.();
for (let i = 0; i < 300; i++) await pool.eval('1+1');
const t0 = process.hrtime.bigint(); const c0 = process.cpuUsage();
const N = 3000;
for (let i = 0; i < N; i++) await pool.eval('1+1');
console.log('per call', Number(process.hrtime.bigint() - t0) / N / 1000, 'µs');
await pool.close();
