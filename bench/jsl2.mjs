import { JsSandboxPool } from '@kvmpool/js';
import { LAST_CALL } from '@kvmpool/core/internal';
const pool = new JsSandboxPool({ threads: 1 });
for (let i = 0; i < 300; i++) await pool.eval('1+1');
const k = ['start', 'posted', 'seen', 'called', 'done', 'resumed', 'end'];
const acc = Object.fromEntries(k.slice(1).map((x) => [x, []]));
const tot = [];
for (let i = 0; i < 2000; i++) { const t0 = performance.now() + performance.timeOrigin; await pool.eval('1+1'); const t1 = performance.now() + performance.timeOrigin; tot.push((t1 - t0) * 1000); for (let j = 1; j < k.length; j++) acc[k[j]].push((LAST_CALL[k[j]] - LAST_CALL[k[j - 1]]) * 1000); acc.begin ??= []; acc.begin.push((LAST_CALL.start - t0) * 1000); acc.tail ??= []; acc.tail.push((t1 - LAST_CALL.end) * 1000); }
const med = (x) => x.sort((p, q) => p - q)[x.length >> 1].toFixed(1);
console.log('total', med(tot), Object.entries(acc).map(([n, v]) => `${n} ${med(v)}`).join(', '));
await pool.close();
