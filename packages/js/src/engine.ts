/** Where the QuickJS guest is: built by scripts/build-engine.mjs into dist/guest/ beside this file's output. */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const GUEST_PATH = fileURLToPath(new URL('./guest/quickjs-guest', import.meta.url));

/** Whether the guest has been built (it is, by this package's `build`). */
export function guestBuilt(): boolean {
  return existsSync(GUEST_PATH);
}

/** The QuickJS version the guest runs. */
export const QUICKJS_VERSION = '2021-03-27';
