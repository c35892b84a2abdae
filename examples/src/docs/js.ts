// JavaScript in QuickJS inside a micro-VM: a pristine context per call, values as JSON, console
// output per call, errors with the script's name, message and stack, a host function.
import { JsError, JsSandboxPool } from '@kvmpool/js';

await using js = new JsSandboxPool({ threads: 1, timeoutMs: 2000, hostFunctions: { double: async (n: number) => n * 2 } });
console.log(await js.eval('JSON.stringify({ a: [1, 2, 3].map((x) => x * x) })'));
console.log(await js.call('(a, b) => a * b', 6, 7));
await js.eval('globalThis.leak = 1; Array.prototype.map = null');
console.log(`the next call sees: ${await js.eval('typeof leak + ", " + typeof [].map')}`);
const { value, logs } = await js.run({ code: 'console.log("hello from the guest"); 5' });
console.log(`value ${value}, logs ${JSON.stringify(logs.map((l) => l.text))}`);
console.log(`host: ${await js.eval('(async () => await host.double(21))()')}`);
try {
  await js.eval('null.x');
} catch (e) {
  if (!(e instanceof JsError)) throw e;
  console.log(`JsError: ${e.jsName}: ${e.jsMessage}`);
}
