/**
 * Out-of-range indices found on the device (core's edge-case rules): gather and scatter-add
 * record the first bad index in a small device buffer [op code, index, n] instead of reading or
 * writing out of bounds; the next read copies it back along with its data and throws, so no value
 * computed after a bad index reaches the user. The copy is made only after such a kernel ran.
 */
import { deviceIndexError } from '@sparsegrad/core/backend';
import type { Addon } from './native.ts';

const marked = new WeakSet<Error>();

export function isIndexError(e: unknown): boolean {
  return e instanceof Error && marked.has(e);
}

export function deviceIndexErrors(addon: Addon): { pointer(): number; check(): Promise<void> } {
  let ptr = 0;
  let pending = false;
  return {
    /** The flag buffer for a kernel's argument list; the next read checks it. */
    pointer() {
      if (!ptr) {
        ptr = addon.malloc(16);
        addon.memset32(ptr, 0, 4);
      }
      pending = true;
      return ptr;
    },
    async check() {
      if (!pending) return;
      pending = false;
      const [code, index, n] = new Int32Array(await addon.read(ptr, 12));
      const e = deviceIndexError(code, index, n);
      if (!e) return;
      addon.memset32(ptr, 0, 4);
      marked.add(e);
      throw e;
    },
  };
}
